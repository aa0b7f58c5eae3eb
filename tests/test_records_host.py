"""tools/records_dump.py against the host run: the load curve and the KSEM log read over
Modbus TCP (pymodbus) into CSV and a PNG.

The run's records are accelerated (RECORDS_SPEED=60: README "The host run"): a 5-minute
period passes in 5 s, while the meter measures in real time, so the records' averages
are the real power / 60. Truth: the scenario's physics (3 x 230 V x 10 A, cos phi 1:
6,900 W; 13,800 W from the timeline's step at 12 s).
"""
import csv
import json
import os
import subprocess
import sys
import time

from conftest import ROOT, free_port
from hostproc import children, kill_all

SPEED = 60


def test_dump_csv_png_against_host_run(tmp_path):
    ph = {"v_rms": 230.0, "i_rms": 10.0, "phi_deg": 0.0}
    scn = {"frequency_hz": 50.0, "phases": {"L1": ph, "L2": ph, "L3": ph},
           "timeline": [{"at_s": 12.0, "phases": {k: {"i_rms": 20.0}
                                                   for k in ("L1", "L2", "L3")}}]}
    (tmp_path / "scn.json").write_text(json.dumps(scn))
    (tmp_path / "cfg.json").write_text(json.dumps({"records": {"enabled": True, "period_min": 5}}))
    port = free_port()
    env = dict(os.environ, RECORDS_SPEED=str(SPEED))
    p = subprocess.Popen([sys.executable, str(ROOT / "tools" / "host_run.py"), "--scenario",
                          str(tmp_path / "scn.json"), "--tcp-port", str(port), "--run-dir",
                          str(tmp_path / "run"), "--config", str(tmp_path / "cfg.json")],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         cwd=str(ROOT), env=env)
    try:
        for line in p.stdout:
            if line.startswith("READY"):
                break
        else:
            raise AssertionError("no READY")
        time.sleep(24)
        out = tmp_path / "dump"
        r = subprocess.run([sys.executable, str(ROOT / "tools" / "records_dump.py"),
                            "--port", str(port), "--out", str(out)],
                           capture_output=True, text=True, timeout=120, cwd=str(ROOT))
        assert r.returncode == 0, r.stdout + r.stderr
    finally:
        kids = children(p.pid)
        p.send_signal(2)
        try:
            p.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
        kill_all(kids)
    lc = list(csv.DictReader(open(out / "loadcurve.csv")))
    ks = list(csv.DictReader(open(out / "ksemlog.csv")))
    assert len(lc) >= 3 and len(ks) >= 3
    seqs = [int(x["seq"]) for x in lc]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert all(int(x["utc"]) % 300 == 0 for x in lc + ks)
    assert "boot" in lc[0]["flags"]
    # whole periods: the records' averages x SPEED = the scenario's power (2 %: the
    # steps run on a loaded host and the speed-up turns jitter into period length)
    full = [x for x in ks[1:] if not x["flags"]]
    assert full
    for x in full:
        w = int(x["p_import_total_w"]) * SPEED
        assert abs(w - 6900) < 140 or abs(w - 13800) < 280 or 6900 < w < 13800, x
        assert abs(float(x["u_l1_v"]) - 230.0) < 0.5 and int(x["p_export_total_w"]) == 0
        assert abs(float(x["f_hz"]) - 50.0) < 0.01
    lcd = [x for x in lc if x["p_import_kw"]]
    assert lcd and all(float(x["p_export_kw"]) == 0 for x in lcd)
    assert max(float(x["p_import_kw"]) for x in lcd) * SPEED > 13.0
    assert all(abs(float(x["q1_kvar"])) * SPEED < 0.3 for x in lcd)   # cos phi 1
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    assert (out / "records.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
