"""The wall clock and its SNTP client (firmware/walltime.py).

Two servers. A real one: Debian's chrony (`make chrony`), started here as our own
chronyd in the foreground with a config in the test's directory: a free UDP port on
127.0.0.1, `local stratum 8` (it serves the host's clock), no command port, and -x so it
never sets the system clock; -U and -u <our user> let it run without root. It fails the
chrony test when it cannot start (a declared dependency); NO_CHRONY=1 skips that test.
A small SNTP responder written below from RFC 4330, independent of the firmware's code,
covers what chrony never sends: it answers in mode 4 from the host's clock, or with a
Kiss-o'-Death, a wrong originate or a bad stratum when told to.
"""
import os
import pwd
import shutil
import socket
import struct
import subprocess
import threading
import time

import pytest

from conftest import run_mpy

NTP_1970 = 2208988800
CHRONYD = shutil.which("chronyd") or "/usr/sbin/chronyd"


def sntp_ask(port, timeout=0.2):
    """One client request (RFC 4330 section 5) from here: (LI, mode, stratum, server's
    transmit time as Unix seconds) of the reply that echoes our stamp, or None."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        req = bytearray(48)
        req[0] = (4 << 3) | 3
        stamp = os.urandom(8)
        req[40:48] = stamp
        s.sendto(req, ("127.0.0.1", port))
        b = s.recv(512)
    except OSError:
        return None
    finally:
        s.close()
    if len(b) < 48 or b[24:32] != stamp:
        return None
    sec, frac = struct.unpack_from(">II", b, 40)
    return b[0] >> 6, b[0] & 7, b[1], sec - NTP_1970 + frac / 2 ** 32


@pytest.fixture
def chronyd(tmp_path):
    """Our own chronyd on a free port of 127.0.0.1; yields the port once it answers."""
    if os.environ.get("NO_CHRONY") == "1":
        pytest.skip("NO_CHRONY=1: the test against chronyd is skipped")
    if not os.path.exists(CHRONYD):
        pytest.fail("chronyd is not installed: `make chrony` (Debian's chrony is a declared"
                    " dependency of the tests; NO_CHRONY=1 skips this test)")
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("127.0.0.1", 0))
    port = u.getsockname()[1]
    u.close()
    conf = tmp_path / "chrony.conf"
    conf.write_text(f"""port {port}
bindaddress 127.0.0.1
allow 127.0.0.1
local stratum 8
cmdport 0
pidfile {tmp_path / "chronyd.pid"}
driftfile {tmp_path / "chrony.drift"}
""")
    log_path = tmp_path / "chronyd.log"
    # -x: never set the system clock; -d: foreground, log to stderr; -U: no root needed;
    # -u: stay our own user (as root it would switch to _chrony, which cannot write here)
    user = pwd.getpwuid(os.geteuid()).pw_name
    with open(log_path, "w") as log:
        p = subprocess.Popen([CHRONYD, "-x", "-d", "-U", "-u", user, "-f", str(conf)],
                             stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            if p.poll() is not None:
                pytest.fail(f"chronyd exited ({p.returncode}) before answering:\n"
                            + log_path.read_text())
            reply = sntp_ask(port)
            if reply is not None:
                break
            if time.monotonic() > deadline:
                pytest.fail(f"chronyd did not answer on 127.0.0.1:{port} within 10 s:\n"
                            + log_path.read_text())
        yield port, reply
    finally:
        p.terminate()
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


class Responder:
    def __init__(self, mode="ok", offset_s=0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.mode = mode
        self.offset_s = offset_s
        self.requests = []
        self.stop = False
        self.t = threading.Thread(target=self.serve, daemon=True)
        self.t.start()

    def serve(self):
        while not self.stop:
            try:
                data, addr = self.sock.recvfrom(512)
            except socket.timeout:
                continue
            self.requests.append(data)
            now = time.time() + self.offset_s
            sec = int(now) + NTP_1970
            frac = int((now % 1) * 2 ** 32)
            li_vn_mode = (0 << 6) | (4 << 3) | 4
            stratum = {"kod": 0, "stratum16": 16}.get(self.mode, 2)
            refid = b"RATE" if self.mode == "kod" else b"GPS\x00"
            origin = data[40:48] if self.mode != "origin" else b"\x01" * 8
            reply = struct.pack(">BBbb", li_vn_mode, stratum, 6, -20) + bytes(8) + refid
            reply += struct.pack(">II", sec & 0xFFFFFFFF, frac) + origin
            reply += struct.pack(">IIII", sec & 0xFFFFFFFF, frac, sec & 0xFFFFFFFF, frac)
            self.sock.sendto(reply, addr)

    def close(self):
        self.stop = True
        self.t.join()
        self.sock.close()


PROG = """
import asyncio, json
from boards.sim.clock import RealClock
from firmware.events import EventLog
from firmware import walltime as W
clock = RealClock()
ev = EventLog(16, 64)
wall = W.WallClock(clock, ev)
async def main():
    t = asyncio.create_task(W.sntp_task(wall, '127.0.0.1', 3600, port=%d, timeout_ms=1000))
    for _ in range(100):
        await asyncio.sleep_ms(20)
        if wall.valid() or ev.count(33):
            break
    t.cancel()
asyncio.run(main())
import time
print('@@JSON', json.dumps({'utc': wall.utc_ms(), 'host': int(time.time() * 1000),
      'source': wall.source, 'failed': [a for _, c, a in ev.recent_args() if c == 33],
      'set': ev.count(32)}))
"""


@pytest.mark.parametrize("mode,offset", [("ok", 0), ("ok", -86400 * 400)])
def test_sntp_sets_clock_from_responder(mode, offset):
    r = Responder(mode, offset)
    try:
        got = run_mpy(PROG % r.port)
    finally:
        r.close()
    req = r.requests[0]
    assert len(req) == 48 and req[0] == 0x23     # LI 0, VN 4, mode 3 (RFC 4330 section 5)
    assert got["source"] == 2 and got["set"] == 1 and not got["failed"]
    # the responder's clock is the host's plus offset; the round trip is local
    assert abs(got["utc"] - (got["host"] + offset * 1000)) < 500


PROG_TWICE = """
import asyncio, json, time
from boards.sim.clock import RealClock
from firmware.events import EventLog
from firmware import walltime as W
clock = RealClock()
ev = EventLog(16, 64)
wall = W.WallClock(clock, ev)
sets = []
async def main():
    t = asyncio.create_task(W.sntp_task(wall, '127.0.0.1', 1, port=%d, timeout_ms=1000,
                                        retry_s=1))
    for _ in range(800):
        await asyncio.sleep_ms(10)
        if ev.count(32) > len(sets):
            sets.append({'utc': wall.utc_ms(), 'host': int(time.time() * 1000),
                         'source': wall.source, 'step': wall.last_step_ms})
        if len(sets) == 2 or ev.count(33):
            break
    t.cancel()
asyncio.run(main())
print('@@JSON', json.dumps({'sets': sets, 'valid': wall.valid(),
      'failed': [a for _, c, a in ev.recent_args() if c == 33],
      'logged': [a for _, c, a in ev.recent_args() if c == 32]}))
"""


def test_sntp_sets_clock_from_chronyd(chronyd):
    port, first = chronyd
    # what our own probe got: a served time (LI 0, mode 4) at the configured stratum,
    # so the server is our chronyd with our config, not one of the system's
    assert first[:3] == (0, 4, 8)
    assert abs(first[3] - time.time()) < 1
    got = run_mpy(PROG_TWICE % port)
    assert not got["failed"], got
    assert got["valid"] and len(got["sets"]) == 2, got
    assert got["logged"] == [2, 2]          # clock_set, source 2 SNTP (README, event 32)
    for s in got["sets"]:
        assert s["source"] == 2             # register 0xC803: 2 SNTP (README)
        # chronyd serves the host's clock; the round trip is local
        assert abs(s["utc"] - s["host"]) < 1000, s
    # the second set is the next poll, interval_s (1 s) later; it finds the wall clock
    # already right: a small step
    assert got["sets"][1]["host"] - got["sets"][0]["host"] >= 900, got
    assert abs(got["sets"][1]["step"]) < 1000, got


@pytest.mark.parametrize("mode,code", [("kod", 5), ("stratum16", 3), ("origin", 4)])
def test_sntp_refuses_bad_replies(mode, code):
    r = Responder(mode)
    try:
        got = run_mpy(PROG % r.port)
    finally:
        r.close()
    assert got["utc"] is None and got["set"] == 0
    assert got["failed"] == [code]      # a wrong originate: ignored until the timeout, then reported


def test_clock_runs_and_steps(mpy_any):
    got = mpy_any("""
from boards.sim.clock import VirtualClock
from firmware.events import EventLog
from firmware import walltime as W
c = VirtualClock()
ev = EventLog(16, 64)
w = W.WallClock(c, ev, boot_utc=0)          # an unset RTC: unknown
out = [w.valid(), w.utc()]
w.set(1767225600, W.SRC_MODBUS)             # 2026-01-01 00:00:00
c.advance_us(2500000)
out += [w.utc(), w.utc_ms() - 1767225600000]
w.set(1767225500, W.SRC_SNTP)               # backwards 102 s
out += [w.last_step_ms, w.utc()]
c.advance_us(1000000)
w.set(1767229200, W.SRC_SNTP)               # forwards
out += [w.last_step_ms, ev.count(32), [a for _, k, a in ev.recent_args() if k == 32]]
try:
    w.set(12, 3); out.append('accepted')
except ValueError as e:
    out.append(str(e))
print('@@JSON'); import json; print(json.dumps(out))
""")
    assert got[:4] == [False, None, 1767225602, 2500]
    assert got[4:6] == [-102500, 1767225500]
    assert got[6:9] == [3699000, 3, [3, 2, 2]]
    assert got[9] == "clock: UTC seconds must be 2020..2106, got 12"
