"""The host run contract: READY line, snapshot.json, scenario reload, clean stop, refusal.

Starts tools/host_run.py as `make run` does (CPython launcher, socat pty pairs, the
firmware on the MicroPython unix port) and talks to it only through the contract.
"""
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import free_port
from hostproc import listening

ROOT = Path(__file__).resolve().parent.parent
READY_RE = re.compile(r"^READY tcp=127\.0\.0\.1:(\d+) rs485_a=(\S+) rs485_b=(\S+)$")


class HostRun:
    def __init__(self, tmp_path, scenario, extra=()):
        tmp_path.mkdir(parents=True, exist_ok=True)
        self.run_dir = tmp_path / "run"
        self.scn_path = tmp_path / "scenario.json"
        self.scn_path.write_text(json.dumps(scenario) if not isinstance(scenario, str)
                                 else scenario)
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "tools" / "host_run.py"), "--scenario",
             str(self.scn_path), "--tcp-port", str(self.port), "--run-dir",
             str(self.run_dir), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=str(ROOT))
        self.lines = []

    def wait_line(self, pred, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                if self.proc.poll() is not None:
                    break
                continue
            line = line.rstrip("\n")
            self.lines.append(line)
            if pred(line):
                return line
        raise AssertionError("no matching line; output:\n" + "\n".join(self.lines[-40:]))

    def snapshot(self):
        return json.loads((self.run_dir / "snapshot.json").read_text())

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            out, _ = self.proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        self.lines += out.splitlines()
        return self.proc.returncode


SCN = {"frequency_hz": 50.0, "phases": {
    "L1": {"v_rms": 230.0, "i_rms": 10.0, "phi_deg": 0.0},
    "L2": {"v_rms": 230.0, "i_rms": 5.0, "phi_deg": 90.5},
    "L3": {"v_rms": 230.0, "i_rms": 2.0, "phi_deg": 200.0}}}


@pytest.fixture
def host(tmp_path):
    h = HostRun(tmp_path, SCN)
    yield h
    h.stop()


def test_ready_line_snapshot_reload_and_clean_stop(host):
    ready = host.wait_line(lambda l: l.startswith("READY"))
    m = READY_RE.match(ready)
    assert m, ready
    assert int(m.group(1)) == host.port
    assert m.group(2) == str(host.run_dir / "rs485-a")
    assert m.group(3) == str(host.run_dir / "rs485-b")
    assert os.path.exists(m.group(2)) and os.path.exists(m.group(3))   # socat ptys
    assert sum(1 for l in host.lines if l.startswith("READY")) == 1
    snap = host.snapshot()
    l1 = snap["phases"]["L1"]
    assert l1["u_mv"] == pytest.approx(230000, rel=1e-3)
    assert l1["p_mw"] == pytest.approx(2300000, rel=1e-3)
    assert snap["phases"]["L2"]["quadrant"] == 2
    assert snap["phases"]["L3"]["quadrant"] == 3
    for ph in ("L1", "L2", "L3", "total"):
        assert set(snap["energy"][ph]) == {
            "active_import_mwh", "active_export_mwh", "reactive_q1_mvarh",
            "reactive_q2_mvarh", "reactive_q3_mvarh", "reactive_q4_mvarh",
            "apparent_import_mvah", "apparent_export_mvah"}
    # The table comes once per second.
    host.wait_line(lambda l: l.startswith("f = 50.000 Hz"))
    # Snapshot rewritten once per second: the cycle number moves on.
    seq0 = host.snapshot()["seq"]
    time.sleep(1.3)
    snap1 = host.snapshot()
    assert snap1["seq"] > seq0
    assert snap1["energy"]["L1"]["active_import_mwh"] > 0
    # Scenario edit: the chip follows within 1 s; the next snapshot shows it.
    new = json.loads(json.dumps(SCN))
    new["phases"]["L1"]["i_rms"] = 20.0
    new["phases"]["L1"]["phi_deg"] = 180.0
    t_edit = time.monotonic()
    host.scn_path.write_text(json.dumps(new))
    host.wait_line(lambda l: l.startswith("SCENARIO reloaded"), timeout=5)
    assert time.monotonic() - t_edit < 1.0
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        p = host.snapshot()["phases"]["L1"]["p_mw"]
        if p == pytest.approx(-4600000, rel=1e-3):
            break
        time.sleep(0.1)
    assert p == pytest.approx(-4600000, rel=1e-3)
    # A broken edit is reported and the last good scenario kept.
    host.scn_path.write_text('{"phases": {"L1": {"v_rms": "high"}}}')
    err = host.wait_line(lambda l: l.startswith("SCENARIO ERROR"), timeout=5)
    assert "phases.L1.v_rms" in err
    time.sleep(1.2)
    assert host.snapshot()["phases"]["L1"]["p_mw"] == pytest.approx(-4600000, rel=1e-3)
    # SIGTERM: clean stop, final snapshot written, exit 0, ptys gone with socat.
    e_before = host.snapshot()["energy"]["L1"]["active_export_mwh"]
    rc = host.stop(signal.SIGTERM)
    assert rc == 0
    assert "STOPPED" in host.lines
    assert host.snapshot()["energy"]["L1"]["active_export_mwh"] >= e_before


def test_sigint_stops_cleanly(tmp_path):
    h = HostRun(tmp_path, SCN)
    h.wait_line(lambda l: l.startswith("READY"))
    assert h.stop(signal.SIGINT) == 0
    assert "STOPPED" in h.lines


@pytest.mark.parametrize("text,needle", [
    ('{"phases": {"L2": {"v_rms": 230, "i_rms": -1, "phi_deg": 0}}}', "phases.L2.i_rms"),
    ('{"frequency_hz": 80, "phases": {"L1": {"v_rms": 230, "i_rms": 1}}}', "frequency_hz"),
    ('{"phases": {"L4": {"v_rms": 230}}}', "L4"),
    ('{"phases": {"L1": {"v_rms": 230}}, "timeline": [{"at_s": 5}, {"at_s": 2}]}',
     "timeline"),
    ('{"phases": ', "JSON"),
])
def test_bad_scenario_refused(tmp_path, text, needle):
    h = HostRun(tmp_path, text)
    rc = h.proc.wait(timeout=20)
    out = h.proc.stdout.read()
    assert rc == 2, out
    assert "READY" not in out
    assert "ERROR scenario" in out and needle in out, out


def test_tcp_port_in_use_is_refused(tmp_path):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        port = busy.getsockname()[1]
        p = subprocess.run([sys.executable, str(ROOT / "tools" / "host_run.py"), "--tcp-port",
                            str(port), "--run-dir", str(tmp_path / "run")],
                           capture_output=True, text=True, timeout=30, cwd=str(ROOT))
    finally:
        busy.close()
    assert p.returncode == 2
    assert "ERROR tcp port %d" % port in p.stdout
    assert "READY" not in p.stdout


def test_bad_config_refused(tmp_path):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"modbus": {"rs485_b": {"address": 300}}}))
    h = HostRun(tmp_path, SCN, extra=("--config", str(cfg)))
    rc = h.proc.wait(timeout=20)
    out = h.proc.stdout.read()
    assert rc == 2 and "READY" not in out
    assert "ERROR config" in out and "modbus.rs485_b.address" in out, out


# --- RUN_DIR lock (issue 9 item 9) ---------------------------------------------

def test_second_run_on_same_run_dir_is_refused(tmp_path):
    from pymodbus.client import ModbusSerialClient
    first = HostRun(tmp_path, SCN)
    try:
        first.wait_line(lambda l: l.startswith("READY"))
        lock = first.run_dir / "lock"
        assert lock.read_text().strip() == str(first.proc.pid)
        links = {p: os.readlink(first.run_dir / p) for p in ("rs485-a", "rs485-a-dev")}
        p = subprocess.run([sys.executable, str(ROOT / "tools" / "host_run.py"),
                            "--tcp-port", str(free_port()), "--run-dir",
                            str(first.run_dir)],
                           capture_output=True, text=True, timeout=30, cwd=str(ROOT))
        assert p.returncode == 2
        assert "READY" not in p.stdout
        assert ("ERROR run dir %s: in use by process %d (lock %s)"
                % (first.run_dir, first.proc.pid, lock)) in p.stdout, p.stdout + p.stderr
        # The first run keeps its links and still answers on them.
        assert {q: os.readlink(first.run_dir / q) for q in links} == links
        c = ModbusSerialClient(str(first.run_dir / "rs485-a"), baudrate=38400, parity="N",
                               stopbits=2, timeout=2)
        assert c.connect()
        try:
            r = c.read_holding_registers(0x2001, count=1, device_id=1)
        finally:
            c.close()
        assert r.registers == [18514]                     # the PnP product id
    finally:
        assert first.stop() == 0
    assert lock.read_text() == ""                         # released at stop


def test_stale_lock_is_taken_over(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "lock").write_text("%d\n" % dead.pid)
    h = HostRun(tmp_path, SCN)
    try:
        h.wait_line(lambda l: l.startswith("READY"))
        assert (run_dir / "lock").read_text().strip() == str(h.proc.pid)
        assert any("lock %s of process %d (no longer running) taken over"
                   % (run_dir / "lock", dead.pid) in l for l in h.lines), h.lines
    finally:
        assert h.stop() == 0


# --- READY for disabled endpoints (item 10), HOST (item 11) ----------------------

def test_ready_says_off_for_disabled_endpoints(tmp_path):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"modbus": {"tcp": {"enabled": False},
                                          "rs485_b": {"enabled": False}}}))
    h = HostRun(tmp_path, SCN, extra=("--config", str(cfg)))
    try:
        ready = h.wait_line(lambda l: l.startswith("READY"))
        assert ready == "READY tcp=off rs485_a=%s/rs485-a rs485_b=off" % h.run_dir
        assert listening(h.port) is None
    finally:
        assert h.stop() == 0


@pytest.mark.parametrize("host,bound", [(None, "0100007F"), ("0.0.0.0", "00000000")])
def test_host_option_sets_the_listen_address(tmp_path, host, bound):
    h = HostRun(tmp_path, SCN, extra=("--host", host) if host else ())
    try:
        ready = h.wait_line(lambda l: l.startswith("READY"))
        assert ready.split()[1] == "tcp=%s:%d" % (host or "127.0.0.1", h.port)
        assert listening(h.port) == bound           # the kernel's view of the socket
        from pymodbus.client import ModbusTcpClient
        c = ModbusTcpClient("127.0.0.1", port=h.port, timeout=3)
        assert c.connect()
        try:
            assert c.read_holding_registers(0x2001, count=1, device_id=1).registers == [18514]
        finally:
            c.close()
    finally:
        assert h.stop() == 0


@pytest.mark.skipif(not shutil.which("make"), reason="make not installed")
def test_make_passes_host_from_its_command_line_only():
    def dry(*args, env=None):
        return subprocess.run(["make", "-n", "-o", "setup", "run", *args], cwd=str(ROOT),
                              capture_output=True, text=True, env=env).stdout
    assert "--host 127.0.0.1 " in dry()
    assert "--host 0.0.0.0 " in dry("HOST=0.0.0.0")
    # tcsh exports HOST as the machine's name: it must not move the listener.
    assert "--host 127.0.0.1 " in dry(env=dict(os.environ, HOST="somebox"))


# --- warnings for silent mismatches (item 6) ------------------------------------

def _ready_snapshot(tmp_path, scn, cfg):
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    h = HostRun(tmp_path, scn, extra=("--config", str(tmp_path / "cfg.json")))
    try:
        h.wait_line(lambda l: l.startswith("READY"))
        return [l for l in h.lines if l.startswith("WARNING")], h.snapshot()
    finally:
        assert h.stop() == 0


CT_SCN = {"phases": {"L1": {"v_rms": 230.0, "i_rms": 100.0, "phi_deg": 0.0}},
          "ct_primary_a": 200}


def test_ct_in_scenario_but_not_in_config_warns(tmp_path):
    warn, snap = _ready_snapshot(tmp_path, CT_SCN, {})
    assert len(warn) == 1, warn
    assert "ct_primary_a 200 A" in warn[0] and "metering.ct_enabled false" in warn[0]
    assert "40 times too low" in warn[0]
    # ...which is what the meter then reads: 100 A on the line, 2.5 A shown.
    assert snap["phases"]["L1"]["i_ma"] == pytest.approx(100000 / 40, rel=2e-3)


def test_other_ct_primary_warns_and_matching_one_does_not(tmp_path):
    warn, snap = _ready_snapshot(tmp_path / "a", CT_SCN,
                                 {"metering": {"ct_enabled": True, "ct_primary_a": 400}})
    assert len(warn) == 1 and "metering.ct_primary_a 400 A" in warn[0] and "x2" in warn[0]
    assert snap["phases"]["L1"]["i_ma"] == pytest.approx(200000, rel=2e-3)
    warn, snap = _ready_snapshot(tmp_path / "b", CT_SCN,
                                 {"metering": {"ct_enabled": True, "ct_primary_a": 200}})
    assert warn == []
    assert snap["phases"]["L1"]["i_ma"] == pytest.approx(100000, rel=2e-3)


def test_live_phases_with_1p2w_wiring_warn(tmp_path):
    warn, snap = _ready_snapshot(tmp_path / "a", SCN, {"metering": {"wiring": "1P2W"}})
    assert len(warn) == 1 and "L2 and L3 live" in warn[0] and "1P2W" in warn[0]
    assert snap["phases"]["L2"]["i_ma"] == 0 and snap["phases"]["L3"]["i_ma"] == 0
    one = {"phases": {"L1": SCN["phases"]["L1"]}}
    warn, _ = _ready_snapshot(tmp_path / "b", one, {"metering": {"wiring": "1P2W"}})
    assert warn == []
    # Three live phases on a 3P4W meter, or L1 alone on it, are both fine.
    warn, _ = _ready_snapshot(tmp_path / "c", one, {})
    assert warn == []


def test_host_not_of_this_machine_is_refused(tmp_path):
    p = subprocess.run([sys.executable, str(ROOT / "tools" / "host_run.py"), "--tcp-port",
                        str(free_port()), "--host", "192.0.2.1", "--run-dir",
                        str(tmp_path / "run")],       # 192.0.2.1: TEST-NET-1, RFC 5737
                       capture_output=True, text=True, timeout=30, cwd=str(ROOT))
    assert p.returncode == 2
    assert "cannot listen on 192.0.2.1 (not an address of this machine)" in p.stdout
    assert "READY" not in p.stdout
