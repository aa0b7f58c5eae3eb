"""Power cuts end to end on the host run: L1 cut in the scenario's timeline, the
firmware process SIGKILLed 100 ms after the cut (the supply capacitor ran out), then a
restart: nothing counted before the cut is lost and the supply failure is in the event
log. And a SIGKILL with the supply on: at most one persist interval lost.

Truth: physics of the scenario (230 V x 40 A, cos phi 1: 2,555.6 mWh per second), the
counters the first run published in snapshot.json before the cut, the sim board's
RUN_DIR/sim_t0 (wall time of the timeline's zero) and the event log read with pymodbus.
The restart runs the same voltage with no current: it adds nothing, so what it shows
is exactly what was restored.
"""
import json
import os
import signal
import subprocess
import sys
import time

from conftest import ROOT, free_port
from hostproc import children, kill_all

P_MW = 230.0 * 40.0 * 1000.0           # mW on L1
MWH_PER_S = P_MW / 3600.0
CUT_S = 4.05                            # mid-window: windows end every 200 ms
KEY = "active_import_mwh"


def write_scn(path, i_rms, cut=None):
    s = {"frequency_hz": 50.0, "phases": {"L1": {"v_rms": 230.0, "i_rms": i_rms, "phi_deg": 0.0}}}
    if cut is not None:
        s["timeline"] = [{"at_s": cut, "phases": {"L1": {"v_rms": 0.0, "i_rms": 0.0}}}]
    path.write_text(json.dumps(s))
    return path


def start(run_dir, scn, cfg, port):
    p = subprocess.Popen([sys.executable, str(ROOT / "tools" / "host_run.py"), "--scenario",
                          str(scn), "--tcp-port", str(port), "--run-dir", str(run_dir),
                          "--config", str(cfg)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         cwd=str(ROOT))
    for line in p.stdout:
        if line.startswith("READY"):
            return p, time.time()
    raise AssertionError("no READY")


def firmware_pid(launcher):
    for pid, cmd in children(launcher.pid).items():
        if "micropython" in cmd and "boards.sim.run" in cmd:
            return pid
    raise AssertionError("no firmware process: %r" % children(launcher.pid))


def power_cut(p):
    """SIGKILL the firmware itself (no KeyboardInterrupt, no last record), then the
    launcher and socat."""
    kids = children(p.pid)
    os.kill(firmware_pid(p), signal.SIGKILL)
    p.kill()
    p.communicate(timeout=30)
    kill_all(kids)


def energy(run_dir):
    with open(os.path.join(str(run_dir), "snapshot.json")) as f:
        return json.load(f)["energy"]["total"][KEY]


def events(port):
    """{seq: (code, arg)} of every event in the log, over Modbus TCP."""
    from pymodbus.client import ModbusTcpClient
    c = ModbusTcpClient("127.0.0.1", port=port)
    assert c.connect()
    try:
        h = c.read_holding_registers(0xC400, count=16, device_id=1).registers
        newest = h[1] << 16 | h[2]
        out = {}
        for s in range(max(1, newest - h[0] + 1), newest + 1, 8):
            c.write_registers(0xC406, [s >> 16, s & 0xFFFF], device_id=1)
            w = c.read_holding_registers(0xC410, count=64, device_id=1).registers
            for i in range(8):
                seq = w[8 * i] << 16 | w[8 * i + 1]
                if seq:
                    out[seq] = (w[8 * i + 6], w[8 * i + 7])
        return out
    finally:
        c.close()


def restart_and_read(run_dir, tmp_path, cfg):
    port = free_port()
    p, _ = start(run_dir, write_scn(tmp_path / "idle.json", 0.0), cfg, port)
    try:
        restored = energy(run_dir)            # written at READY, after one idle cycle
        log = events(port)
    finally:
        p.send_signal(signal.SIGINT)
        p.communicate(timeout=30)
    return restored, log


def cut_once(tmp_path):
    tmp_path.mkdir()
    run_dir = tmp_path / "run"
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"storage": {"persist_s": 3600}}))   # no periodic record
    scn = write_scn(tmp_path / "s.json", 40.0, cut=CUT_S)
    p, ready = start(run_dir, scn, cfg, free_port())
    try:
        with open(run_dir / "sim_t0") as f:
            t0 = int(f.read()) / 1e9
        cut = t0 + CUT_S
        before = None
        while time.time() < cut - 0.05:
            before = energy(run_dir)             # the run's report, at most 1 s old
            time.sleep(0.02)
        # SIGKILL 300 ms after the cut: the host run's stand-in for the hold-up. Whether
        # a board's write fits its real 40 ms is shown on its flash figures (README,
        # persistence); here the path is what is tested, and two test workers on a
        # 2-core machine may keep the firmware off the CPU for 100 ms.
        time.sleep(max(0.0, cut + 0.3 - time.time()))
        power_cut(p)
        killed = time.time()
    finally:
        kill_all(children(p.pid))
    restored, log = restart_and_read(run_dir, tmp_path, cfg)
    print("L1 cut: startup %.2f s, reported before %.1f, restored %.1f mWh, killed %.0f ms "
          "after the cut" % (ready - t0, before, restored, (killed - cut) * 1000))
    return ready - t0, before, restored, log


def test_l1_cut_then_sigkill_keeps_every_count(tmp_path):
    # The firmware must get the CPU during the 300 ms after the cut (its hold-up): on a
    # machine shared with other test runs it may not, and nothing is written, exactly
    # as a board whose CPU stalled would lose it. Such a run proves nothing either way,
    # so up to three are made; the last one decides.
    for attempt in range(3):
        startup, before, restored, log = cut_once(tmp_path / str(attempt))
        if restored > 0:
            break
    # Nothing counted before the cut is lost: at least what the run reported before it,
    # and all windows up to the cut: the DSP ran from before READY (startup) to the cut,
    # less the window in progress at the cut (200 ms, never finished: L1 carried the
    # only zero crossings).
    assert restored >= before > 0
    assert restored >= MWH_PER_S * (CUT_S - startup - 0.2) - 1
    # Nothing invented: no more than the physics up to the cut.
    assert restored <= MWH_PER_S * CUT_S + 1
    # The supply failure is in the log, before the restart's boot and restore.
    codes = [log[s][0] for s in sorted(log)]
    boots = [i for i, c in enumerate(codes) if c == 28]
    assert len(boots) == 2 and 22 in codes[:boots[1]], codes
    assert 20 in codes[boots[1]:]                    # counters restored


def test_sigkill_with_the_supply_on_loses_at_most_one_interval(tmp_path):
    run_dir = tmp_path / "run"
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"storage": {"persist_s": 10}}))
    scn = write_scn(tmp_path / "s.json", 40.0)
    p, ready = start(run_dir, scn, cfg, free_port())
    try:
        time.sleep(12.5)                         # one periodic record at ~10 s
        at_kill = energy(run_dir)                # at most 1 s old
        power_cut(p)
    finally:
        kill_all(children(p.pid))
    restored, log = restart_and_read(run_dir, tmp_path, cfg)
    print("SIGKILL: at kill %.1f, restored %.1f mWh" % (at_kill, restored))
    # At most one interval (10 s) and the snapshot's age (1 s) behind; never more than
    # was counted by the kill (which is at most 1.2 s after the snapshot).
    assert at_kill - MWH_PER_S * 11.5 <= restored <= at_kill + MWH_PER_S * 1.5
    assert restored > 0
    codes = [c for c, _ in (log[s] for s in sorted(log))]
    assert 22 not in codes and codes.count(28) == 2
