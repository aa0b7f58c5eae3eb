"""tools/rs485_bench.py against the host run's RS485 ptys (README "RS485 bench test").

The host run (tools/host_run.py, as `make run`) serves RS485 A (address 1, 38400 8N2)
and B (247, 19200 8E1) on socat pty pairs. The bench passes on both with the meter's
settings and fails clearly with a wrong baud; its frames and readings are checked
against pymodbus (CRC and a serial client). Unix port only: ptys (README, Runtimes).
"""
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from pymodbus.client import ModbusSerialClient
from pymodbus.framer.rtu import FramerRTU

from conftest import ROOT, free_port

sys.path.insert(0, str(ROOT / "tools"))
import rs485_bench as bench  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("socat") is None, reason="socat missing (make socat)")


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    d = tmp_path_factory.mktemp("bench")
    log = open(d / "out.txt", "w")
    p = subprocess.Popen([sys.executable, str(ROOT / "tools" / "host_run.py"), "--tcp-port",
                          str(free_port()), "--run-dir", str(d / "run")],
                         stdout=log, stderr=subprocess.STDOUT, cwd=str(ROOT))
    try:
        deadline = time.time() + 60
        ready = None
        while time.time() < deadline and ready is None:
            for ln in (d / "out.txt").read_text().splitlines():
                if ln.startswith("READY "):
                    ready = dict(kv.split("=", 1) for kv in ln.split()[1:])
            time.sleep(0.1)
        assert ready, (d / "out.txt").read_text()
        yield ready
    finally:
        p.send_signal(signal.SIGINT)
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
        log.close()


def bench_run(*args):
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "rs485_bench.py"), *args],
                       capture_output=True, text=True, timeout=120, cwd=str(ROOT))
    return r.returncode, r.stdout, r.stderr


def test_crc_and_frames_match_pymodbus():
    for req in (bench.read_req(1, 3, 0, 10), bench.read_req(247, 4, 0x34, 2),
                bench.frame(bytes((0, 0x41, 0xC0, 0, 0, 1)))):
        assert req[-2:] == FramerRTU.compute_CRC(req[:-2]).to_bytes(2, "big")
    # Spec V1.02 2.5.1.1: 750 us / 1.75 ms above 19200 baud, else 1.5 / 3.5 characters.
    assert bench.t15_t35(38400, "N", 2) == (0.00075, 0.00175)
    t15, t35 = bench.t15_t35(9600, "E", 1)
    assert abs(t35 - 3.5 * 11 / 9600) < 1e-12 and abs(t15 - 1.5 * 11 / 9600) < 1e-12
    # Blocks cover each published row once, none longer than the SDM630's 80 registers.
    assert all(0 < n <= bench.MAX_REGS for _, _, _, n in bench.blocks())


def test_bench_passes_on_both_ports(host):
    rc, out, err = bench_run("--device", host["rs485_a"], "--baud", "38400", "--parity", "N",
                             "--stop", "2", "--address", "1", "--count", "3", "--progress",
                             "--timeout", "2", "--silence", "0.3")
    assert rc == 0, out + err
    assert "RESULT PASS" in out and "FAIL" not in out
    n = len(bench.blocks())
    assert "maps read: %d blocks x 3 rounds, %d replies good" % (n, 3 * n) in out
    assert "illegal address -> 02" in out and "illegal function -> 01" in out
    assert "p50" in out and "p99" in out
    assert "%d/%d requests" % (3 * n, 3 * n) in err    # the progress bar's last state
    rc, out, err = bench_run("--device", host["rs485_b"], "--baud", "19200", "--parity", "E",
                             "--stop", "1", "--address", "247", "--timeout", "2",
                             "--silence", "0.3")
    assert rc == 0 and "RS485 B matches" in out, out + err


def test_wrong_baud_fails_clearly(host):
    rc, out, err = bench_run("--device", host["rs485_a"], "--baud", "9600", "--timeout", "2",
                             "--silence", "0.3")
    assert rc == 1 and "RESULT FAIL" in out, out + err
    assert "FAIL  line settings: no enabled RS485 port of the meter is set to address 1 " \
        "9600 8N2 (A: on address 1 38400 8N2" in out
    rc, out, err = bench_run("--device", host["rs485_a"], "--address", "9", "--timeout", "0.3")
    assert rc == 1 and "no reply from address 9" in out, out + err


def test_readings_match_pymodbus(host):
    """Constant blocks (PnP identity, SunSpec model 1, config) read the same by both."""
    line = bench.Line(host["rs485_a"], 38400, "N", 2, 1.0)
    c = ModbusSerialClient(host["rs485_a"], baudrate=38400, parity="N", stopbits=2, timeout=1)
    assert c.connect()
    try:
        for start, count in ((8193, 3), (40000, 70), (0xC040, 7), (0xC090, 48)):
            ours, e, _ = bench.read_regs(line, 1, 3, start, count)
            assert e is None, e
            r = c.read_holding_registers(start, count=count, device_id=1)
            assert not r.isError() and r.registers == ours, (start, ours, r)
    finally:
        c.close()
        line.s.close()
