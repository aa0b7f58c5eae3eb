"""RTU framing by PDU length (firmware/modbus/rtu.py): a multidrop bus with a stalled loop.

The bus is a socat pty pair: CPython writes what a master and another slave put on the
line (requests to slaves 2 and 3 and their responses, then our request) and reads what
the firmware answers. The firmware's loop is blocked by time.sleep_ms for 15 ms or 40 ms
every 200 ms (tests/modbus_fixture_app.py --stall), so the other slave's traffic and our
request often sit in the pty buffer together when it wakes: a framer that relies on
t3.5 measured by Python merges them and loses our request. The truth is the Modbus
Serial Line spec: every request of ours gets its reply, byte for byte, and nothing is
ever sent for another address's frame.

The framing units (no I/O) run on both runtimes with a fake port; answer() is measured
for allocation there.
"""
import os
import random
import select
import struct
import subprocess
import time

import pytest

from conftest import ROOT, MICROPYTHON, free_port, mpy_env
from test_modbus_stack import Pty, rtu, pdu_read, tcp_xfer, HOLD

OURS = 1


def crc_ok(frame):
    from test_modbus_stack import crc16
    return len(frame) >= 4 and struct.pack("<H", crc16(frame[:-2])) == frame[-2:]


class Bus:
    def __init__(self, tmp, stall):
        self.tmp = tmp
        self.tcp = free_port()
        dev, cli = str(tmp / "bus-dev"), str(tmp / "bus")
        self.socat = subprocess.Popen(["socat", "pty,raw,echo=0,link=" + dev,
                                       "pty,raw,echo=0,link=" + cli], stderr=subprocess.DEVNULL)
        end = time.time() + 5
        while not (os.path.exists(dev) and os.path.exists(cli)):
            assert time.time() < end, "socat did not make the ptys"
            time.sleep(0.02)
        args = [MICROPYTHON, "tests/modbus_fixture_app.py", "--tcp", str(self.tcp),
                "--rtu", "%s,%d,38400,N,2" % (dev, OURS)]
        if stall:
            args += ["--stall", "%d,200" % stall]
        self.app = subprocess.Popen(args, cwd=str(ROOT), env=mpy_env(), stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
        r, _, _ = select.select([self.app.stdout], [], [], 15)
        line = self.app.stdout.readline() if r else ""
        assert line.startswith("READY"), line + self.app.stderr.read()
        self.pty = Pty(cli)

    def stats(self):
        r = tcp_xfer(self.tcp, pdu_read(3, 9000, 4))[2]
        return dict(zip(("ok", "errors", "other", "broadcast"), struct.unpack(">4H", r[2:])))

    def close(self):
        self.pty.close()
        self.app.terminate()
        self.app.wait(5)
        self.socat.terminate()
        self.socat.wait(5)


def other_traffic(rnd):
    """Frames another master/slave pair puts on the bus: (request, response) pairs for
    slaves 2 and 3, responses whose data holds our address and function codes."""
    out = []
    a, n = rnd.randrange(100), rnd.randrange(1, 20)
    data = bytes(rnd.choice((1, 3, 4, 0x10, 0x83, rnd.randrange(256))) for _ in range(2 * n))
    out.append(rtu(2, pdu_read(3, a, n)))
    out.append(rtu(2, bytes([3, 2 * n]) + data))
    k = rnd.randrange(1, 6)
    w = bytes([0x10, 0, a, 0, k, 2 * k]) + bytes([OURS, 3] * k)
    out.append(rtu(3, w))
    out.append(rtu(3, w[:5]))
    out.append(rtu(2, pdu_read(4, a, 2)))
    out.append(rtu(2, bytes([0x84, 2])))                  # an exception response
    return out


@pytest.mark.parametrize("stall_ms", [15, 40])
def test_rtu_loses_nothing_on_a_busy_bus_with_a_stalled_loop(tmp_path, stall_ms):
    bus = Bus(tmp_path, stall_ms)
    rnd = random.Random(stall_ms)
    sent = answered = wrong = others = 0
    stray = b""
    try:
        s0 = bus.stats()
        deadline = time.time() + 8
        while time.time() < deadline and sent < 400:
            for f in other_traffic(rnd):
                bus.pty.write(f)
                others += 1
                time.sleep(0.002)          # just over t3.5 (1.75 ms) between frames
            a, n = rnd.randrange(150), rnd.randrange(1, 60)
            bus.pty.write(rtu(OURS, pdu_read(3, a, n)))
            sent += 1
            want = rtu(OURS, bytes([3, 2 * n]) + struct.pack(">%dH" % n,
                                                            *map(HOLD, range(a, a + n))))
            got = bus.pty.read(len(want), quiet=0.5, first=1.0)
            if got == want:
                answered += 1
            else:
                wrong += 1
                stray += got
        stray += bus.pty.read(quiet=0.3, first=0.3)     # nothing may come after the last
        s1 = bus.stats()
    finally:
        bus.close()
    print("stall %d ms: %d requests of ours, %d answered, %d frames for others, stats %r"
          % (stall_ms, sent, answered, others, {k: s1[k] - s0[k] for k in s1}))
    assert sent >= 100
    assert answered == sent and wrong == 0 and stray == b""
    # Every frame on the bus was told apart: each other frame counted once, no garbage.
    assert s1["other"] - s0["other"] == others
    assert s1["errors"] - s0["errors"] == 0 and s1["ok"] - s0["ok"] == sent


# ---- framing units on both runtimes (fake port, no I/O) ----

FAKE = r"""
import json, gc
from firmware.modbus.rtu import RtuSlave
from firmware.modbus.pdu import Dispatcher
from firmware.modbus.crc import crc16

class Port:
    baudrate = 38400; parity = "N"; stop = 2; char_us = 287
    def init(self, b, p, s): pass

class Regs:
    # Zero-allocation space: register a holds 3a+1 (byte loop, no slices).
    start = 0; end = 300
    def read(self, addr, count, out, off):
        if addr + count > 300:
            return 2
        for i in range(count):
            v = (3 * (addr + i) + 1) & 0xFFFF
            out[off + 2 * i] = v >> 8
            out[off + 2 * i + 1] = v & 0xFF
        return 0
    def write(self, addr, count, src, soff, ctx=None):
        return 2

def frame(addr, pdu):
    b = bytearray([addr]) + bytearray(pdu)
    c = crc16(b)
    return bytes(b) + bytes([c & 0xFF, c >> 8])

s = RtuSlave(Port(), Dispatcher(Regs(), Regs(), ("v", "p", "r"), rtu=True), address=1,
             baud=38400, parity="N", stop=2)

def load(data):
    s._reset()
    s._rx[:len(data)] = data
    s._n = len(data)

def frames(data, silent):
    # What the scanner finds: (address, length) per frame, answers for ours.
    load(data)
    out = []
    while True:
        ln = s._next(silent)
        if not ln:
            break
        p = s._p
        m = s.answer(p, ln)
        out.append([s._rx[p], ln, bytes(s._tx[:m]).hex()])
        s._p = p + ln
        s._anchor = True
    return out
"""


def test_rtu_frames_by_length_through_garbage(mpy_any):
    got = mpy_any(FAKE + r"""
req = frame(1, b"\x03\x00\x0a\x00\x02")
other_rsp = frame(2, b"\x03\x04\x01\x03\x00\x0a")        # looks like ours inside
other_req16 = frame(3, b"\x10\x00\x01\x00\x02\x04\x01\x03\x00\x00")
exc = frame(4, b"\x83\x02")
devid = frame(5, b"\x2b\x0e\x01\x81\x00\x00\x02\x00\x03abc\x01\x02xy")
res = {}
res["merged"] = frames(other_rsp + other_req16 + exc + devid + req, False)
res["garbage_not_silent"] = frames(b"\xff\x00\x99" + req, False)
e0 = s.stats.errors
res["garbage_silent"] = frames(b"\xff\x00\x99" + req, True)
res["garbage_errors"] = s.stats.errors - e0
res["partial"] = frames(req[:5], False)
res["short_fc08_silent"] = frames(frame(1, b"\x08\x00\x00"), True)
res["short_fc08_waits"] = frames(frame(1, b"\x08\x00\x00"), False)
res["bad_crc_silent"] = frames(req[:-1] + bytes([req[-1] ^ 1]), True)
res["other_addr_request"] = frames(frame(7, b"\x03\x00\x00\x00\x01"), False)
res["stats"] = [s.stats.ok, s.stats.other, s.stats.errors]
print("@@JSON", json.dumps(res))
""")
    want_reply = "010304001f0022"          # regs 10, 11 = 31, 34
    ours = [1, 8, None]
    merged = got["merged"]
    assert [f[:2] for f in merged] == [[2, 9], [3, 13], [4, 5], [5, 19], [1, 8]]
    assert [f[2] for f in merged[:4]] == [""] * 4          # never an answer to others
    assert merged[4][2].startswith(want_reply) and crc_ok(bytes.fromhex(merged[4][2]))
    assert got["garbage_not_silent"] == []                 # wait for silence to hunt
    assert [f[:2] for f in got["garbage_silent"]] == [[1, 8]]
    assert got["garbage_errors"] == 1                      # one garbage run
    assert got["partial"] == []
    assert got["short_fc08_silent"][0][:2] == [1, 6]        # sized by silence, echoed
    assert got["short_fc08_silent"][0][2][:6] == "010800"
    assert got["short_fc08_waits"] == []
    assert got["bad_crc_silent"] == []
    assert got["other_addr_request"] == [[7, 8, ""]]
    del ours


def test_rtu_answer_allocates_nothing(mpy_any):
    got = mpy_any(FAKE + r"""
def measure():
    req = frame(1, b"\x03\x00\x00\x00\x7d")                # 125 registers
    w = frame(1, b"\x06\x00\x01\x00\x02")                  # refused write (exception 02)
    load(req)
    s.answer(0, 8)
    gc.collect(); gc.disable()
    a0 = gc.mem_alloc()
    total = 0
    for _ in range(50):
        total += s.answer(0, 8)                            # CRC check, dispatch, CRC
    a1 = gc.mem_alloc()
    load(w)
    for _ in range(50):
        total += s.answer(0, 8)
    a2 = gc.mem_alloc()
    gc.enable()
    return a1 - a0, a2 - a1, total, bytes(s._tx[:5]).hex()
r = measure()
print("@@JSON", json.dumps({"read": r[0], "write": r[1], "total": r[2], "exc": r[3]}))
""")
    assert got["total"] == 50 * (5 + 250) + 50 * 5
    assert got["exc"] == "018602c3a1"                      # exception 02 with its CRC
    assert got["read"] == 0 and got["write"] == 0


def test_rtu_serving_loop_allocates_only_the_ports_coroutines(mpy):
    """The whole loop (recv, framing, t3.5, answer, send) on the unix port: per reply it
    allocates what the port's own async recv() and send() calls cost, nothing more."""
    got = mpy(FAKE + r"""
import asyncio
REQ = frame(1, b"\x03\x00\x00\x00\x0a")

class APort(Port):
    left = 0
    sent = 0
    async def recv(self, mv):
        while not self.left:
            await asyncio.sleep_ms(0)
        self.left -= 1
        mv[0:8] = REQ
        return 8
    def read_now(self, mv):
        return 0
    def silent_us(self):
        return 10000              # the line has been quiet for 10 ms
    async def send(self, buf, n):
        self.sent += 1

port = APort()
s = RtuSlave(port, Dispatcher(Regs(), Regs(), ("v", "p", "r"), rtu=True), address=1,
             baud=38400, parity="N", stop=2)
mv = bytearray(16)

async def main():
    t = asyncio.create_task(s.run())
    port.left = 5
    while port.sent < 5:
        await asyncio.sleep_ms(0)
    gc.collect(); gc.disable()
    a0 = gc.mem_alloc()
    port.left = 100
    while port.sent < 105:
        await asyncio.sleep_ms(0)
    a1 = gc.mem_alloc()
    t.cancel()
    await asyncio.sleep_ms(0)
    # The port's two calls alone, as the loop makes them.
    a2 = gc.mem_alloc()
    for _ in range(100):
        port.left = 1
        await port.recv(mv)
        await port.send(mv, 8)
    a3 = gc.mem_alloc()
    gc.enable()
    return (a1 - a0) // 100, (a3 - a2) // 100

loop_b, port_b = asyncio.run(main())
print("@@JSON", json.dumps({"loop": loop_b, "port": port_b, "ok": s.stats.ok}))
""")
    print("RTU reply, whole loop: %d bytes per reply, of which the port's coroutines %d"
          % (got["loop"], got["port"]))
    assert got["ok"] == 105
    assert got["loop"] == got["port"]
