"""The Modbus stack (firmware/modbus, drivers/rs485, boards/sim/uart) on the unix port.

One MicroPython process (tests/modbus_fixture_app.py) serves test spaces over TCP (any
unit id, cap 16, idle timeout 3 s), a second TCP port in "own id only" mode, and RTU on
two socat pty pairs at the KSEM presets: A = 38400 8N2 address 1, B = 19200 8E1
address 247. Clients are pymodbus where it can send the frame, raw sockets and raw pty
bytes where it refuses to (bad counts, broken headers, bad CRC).

Fixture map (see the app): holding 0..299 = 3a+1 (0..149 read-only, 150..299 writable),
holding 1000..1099 = 0x1000+a read-only, holding 5000..5009 raises, holding 9000.. live
counters, input 0..299 = 0x4000+a.

Linux ptys refuse the parity bit (the kernel forces CS8 without PARENB, and pyserial's
reconfigure then fails with EINVAL), so clients of port B open it with parity N; a pty
carries the same bytes either way, and the firmware side of B is set to 8E1.
"""
import asyncio
import os
import random
import select
import signal
import socket
import struct
import subprocess
import threading
import time
import tty

import pytest
from pymodbus.client import AsyncModbusTcpClient, ModbusSerialClient
from pymodbus.pdu import ExceptionResponse

from conftest import ROOT, MICROPYTHON, free_port, mpy_env, run_mpy

HOLD = lambda a: (3 * a + 1) & 0xFFFF   # noqa: E731
INPUT = lambda a: 0x4000 + a            # noqa: E731
PORT_A = (1, 38400, "N", 2)
PORT_B = (247, 19200, "E", 1)
STATS = 9000                            # RTU port i: 9000+8i ok, errors, other, broadcast


class Stack:
    def __init__(self, tmp):
        self.tmp = tmp
        self.procs = []
        self.tcp = free_port()
        self.tcp_own = free_port()
        self.a = str(tmp / "rs485-a")
        self.b = str(tmp / "rs485-b")

    def start(self, idle=3):
        for name in ("rs485-a", "rs485-b"):
            self.procs.append(subprocess.Popen(
                ["socat", "pty,raw,echo=0,link=%s/%s-dev" % (self.tmp, name),
                 "pty,raw,echo=0,link=%s/%s" % (self.tmp, name)],
                stderr=subprocess.DEVNULL))
        end = time.time() + 5
        while not all(os.path.exists(p) for p in (self.a, self.a + "-dev", self.b,
                                                     self.b + "-dev")):
            assert time.time() < end, "socat did not make the ptys"
            time.sleep(0.02)
        args = [MICROPYTHON, "tests/modbus_fixture_app.py", "--tcp", str(self.tcp),
                "--tcp-own", str(self.tcp_own), "--idle", str(idle), "--max", "16",
                "--rtu", "%s-dev,%d,%d,%s,%d" % ((self.a,) + PORT_A),
                "--rtu", "%s-dev,%d,%d,%s,%d" % ((self.b,) + PORT_B)]
        self.app = subprocess.Popen(args, cwd=str(ROOT), env=mpy_env(),
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(self.app)
        r, _, _ = select.select([self.app.stdout], [], [], 15)
        line = self.app.stdout.readline() if r else ""
        assert line.startswith("READY"), line + self.app.stderr.read()

    def stop(self):
        out = ""
        if self.app.poll() is None:
            self.app.send_signal(signal.SIGINT)
            try:
                out = self.app.communicate(timeout=5)[0]
            except subprocess.TimeoutExpired:
                self.app.kill()
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
                p.wait(5)
        return out


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = Stack(tmp_path_factory.mktemp("modbus"))
    s.start()
    yield s
    s.stop()


@pytest.fixture
def alive(stack):
    """Every test ends by checking that the server still answers a fresh client."""
    yield stack
    assert stack.app.poll() is None, "server died: " + stack.app.stderr.read()
    assert tcp_xfer(stack.tcp, pdu_read(3, 0, 2), tid=0x7777) == \
        (0x7777, 1, bytes([3, 4, 0, 1, 0, 4]))


# ---- raw TCP helpers ----

def mbap(tid, pdu, unit=1, proto=0, length=None):
    ln = len(pdu) + 1 if length is None else length
    return struct.pack(">HHHB", tid, proto, ln, unit) + pdu


def pdu_read(fc, addr, count):
    return struct.pack(">BHH", fc, addr, count)


def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=2)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def recv_exact(s, n, timeout=2.0):
    s.settimeout(timeout)
    buf = b""
    while len(buf) < n:
        d = s.recv(n - len(buf))
        if not d:
            raise EOFError("closed after %d bytes" % len(buf))
        buf += d
    return buf


def recv_adu(s, timeout=2.0):
    """One MBAP response: (tid, unit, pdu)."""
    h = recv_exact(s, 7, timeout)
    tid, proto, ln, unit = struct.unpack(">HHHB", h)
    assert proto == 0
    return tid, unit, recv_exact(s, ln - 1, timeout)


def tcp_xfer(port, pdu, tid=1, unit=1):
    with connect(port) as s:
        s.sendall(mbap(tid, pdu, unit))
        return recv_adu(s)


def closed_within(s, timeout):
    """True if the peer closes (EOF or reset) within timeout, with no data first."""
    s.settimeout(timeout)
    try:
        return s.recv(100) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def silent(s, timeout=0.3):
    s.settimeout(timeout)
    try:
        d = s.recv(100)
    except socket.timeout:
        return True
    raise AssertionError("expected silence, got %r" % d)


# ---- raw RTU helpers ----

def crc16(b):
    c = 0xFFFF
    for x in b:
        c ^= x
        for _ in range(8):
            c = (c >> 1) ^ 0xA001 if c & 1 else c >> 1
    return c


def rtu(addr, pdu):
    b = bytes([addr]) + pdu
    return b + struct.pack("<H", crc16(b))


class Pty:
    """The master's end of a pty pair, raw bytes."""

    def __init__(self, path):
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(self.fd)
        self.drain()

    def write(self, b):
        os.write(self.fd, b)

    def read(self, n=None, quiet=0.1, first=0.3):
        """Bytes until n arrived, or until `quiet` s of silence (waiting up to `first` s
        for the first byte). A reply takes t3.5 (2 ms) plus processing: 0.3 s of
        silence means none is coming."""
        buf = b""
        wait = first
        while n is None or len(buf) < n:
            r, _, _ = select.select([self.fd], [], [], wait)
            if not r:
                break
            buf += os.read(self.fd, 1024)
            wait = quiet
        return buf

    def drain(self):
        self.read(quiet=0.02, first=0.02)

    def xfer(self, frame, n=None):
        self.write(frame)
        return self.read(n)

    def close(self):
        os.close(self.fd)


def rtu_ok(reply, addr, pdu):
    assert reply == rtu(addr, pdu), reply.hex()


def stats(stack, port):
    r = tcp_xfer(stack.tcp, pdu_read(3, STATS + 8 * port, 4))[2]
    return dict(zip(("ok", "errors", "other", "broadcast"), struct.unpack(">4H", r[2:])))


def serial_client(stack, which):
    addr, baud, _parity, stop = PORT_A if which == "A" else PORT_B
    path = stack.a if which == "A" else stack.b
    # parity N on the pty: see the module docstring.
    c = ModbusSerialClient(path, baudrate=baud, parity="N", stopbits=stop, timeout=1,
                           retries=0)
    assert c.connect()
    return c, addr


def run(coro):
    return asyncio.run(coro)


# ======================= codec units (no I/O) =======================

def test_crc16_matches_the_spec_and_a_reference(mpy):
    rnd = random.Random(7)
    bufs = [bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 300))) for _ in range(20)]
    got = mpy("""
import json
from firmware.modbus.crc import crc16, append, check
bufs = %r
b = bytearray(b"\\x01\\x03\\x00\\x00\\x00\\x0a\\x00\\x00")
n = append(b, 6)
print("@@JSON", json.dumps({"check": crc16(b"123456789"), "frame": bytes(b).hex(), "n": n,
      "ok": check(b, 8), "bad": check(b"\\x01\\x03\\x00\\x00\\x00\\x0a\\xc5\\xce", 8),
      "rand": [crc16(x) for x in bufs], "part": crc16(b"xx123456789yy", 2, 11)}))
""" % (bufs,))
    assert got["check"] == 0x4B37          # CRC-16/MODBUS catalogue check value
    assert got["frame"] == "01030000000ac5cd"      # CRC 0xCDC5, low byte first
    assert got["n"] == 8 and got["ok"] is True and got["bad"] is False
    assert got["rand"] == [crc16(b) for b in bufs]
    assert got["part"] == 0x4B37


def test_device_id_splits_long_objects_with_more_follows(mpy):
    got = mpy("""
import json
from firmware.modbus.pdu import Dispatcher
from tests.spaces import EmptySpace
ident = {0: b"V" * 100, 1: b"P" * 100, 2: b"R" * 100, 3: b"U" * 30}
d = Dispatcher(EmptySpace(), EmptySpace(), ident)
out = bytearray(300)
res = []
oid = 0
for _ in range(4):
    n = d.handle(bytes([0x2B, 0x0E, 2, oid]), 4, out, 0)
    res.append(bytes(out[:n]).hex())
    if out[4] != 0xFF:
        break
    oid = out[5]
errs = []
for bad in ({1: b"x", 2: b"y"}, {0: b"a", 1: b"b", 2: b"c" * 245}):
    try:
        Dispatcher(EmptySpace(), EmptySpace(), bad)
        errs.append(None)
    except ValueError as e:
        errs.append(str(e))
print("@@JSON", json.dumps({"res": res, "errs": errs}))
""")
    pdus = [bytes.fromhex(h) for h in got["res"]]
    assert len(pdus) == 2
    first, second = pdus
    assert len(first) <= 253 and len(second) <= 253
    # head: 2B 0E code=2 conformity=0x82 (regular, stream + individual) more next count
    assert first[:4] == bytes([0x2B, 0x0E, 2, 0x82])
    assert first[4] == 0xFF and first[5] == 2 and first[6] == 2
    assert first[7:9] == bytes([0, 100]) and first[109:111] == bytes([1, 100])
    assert second[4:7] == bytes([0, 0, 2])
    assert second[7:9] == bytes([2, 100]) and second[109:111] == bytes([3, 30])
    assert all(e is not None for e in got["errs"])


def test_spaces_are_all_or_nothing(mpy):
    got = mpy("""
import json
from tests.spaces import ArraySpace, SpaceSet
a = ArraySpace(10, 5, writable=((10, 12),), init=lambda x: x)
b = ArraySpace(20, 5, writable=False)
s = SpaceSet(b, a)
out = bytearray(20)
r = [s.read(10, 5, out, 0), bytes(out[:10]).hex(), s.read(14, 2, out, 0), s.read(9, 1, out, 0),
     s.read(15, 5, out, 0), s.write(10, 2, b"\\x12\\x34\\x56\\x78", 0), a.get(10), a.get(11),
     s.write(11, 2, b"\\xff\\xff\\xff\\xff", 0), a.get(11), a.get(12), s.write(20, 1, b"\\0\\1", 0)]
try:
    SpaceSet(ArraySpace(0, 10), ArraySpace(9, 2))
    r.append("no error")
except ValueError:
    r.append("overlap")
print("@@JSON", json.dumps(r))
""")
    assert got == [0, "000a000b000c000d000e", 2, 2, 2, 0, 0x1234, 0x5678,
                   2, 0x5678, 12, 2, "overlap"]


# ======================= Modbus TCP, pymodbus client =======================

def test_tcp_reads_with_pymodbus(alive):
    async def go():
        c = AsyncModbusTcpClient("127.0.0.1", port=alive.tcp, timeout=2, retries=0)
        await c.connect()
        try:
            r1 = await c.read_holding_registers(0, count=125)
            r2 = await c.read_input_registers(175, count=125)
            r3 = await c.read_holding_registers(1099, count=1, device_id=42)
            r4 = await c.read_holding_registers(299, count=1)
        finally:
            c.close()
        return r1, r2, r3, r4
    r1, r2, r3, r4 = run(go())
    assert r1.registers == [HOLD(a) for a in range(125)]
    assert r2.registers == [INPUT(a) for a in range(175, 300)]
    assert r3.registers == [0x1000 + 1099] and r3.dev_id == 42   # any unit id answered
    assert r4.registers == [HOLD(299)]


def test_tcp_writes_with_pymodbus(alive):
    vals = [(7919 * i) & 0xFFFF for i in range(123)]

    async def go():
        c = AsyncModbusTcpClient("127.0.0.1", port=alive.tcp, timeout=2, retries=0)
        await c.connect()
        try:
            w1 = await c.write_register(150, 0xBEEF)
            w2 = await c.write_registers(160, vals)
            r = await c.read_holding_registers(150, count=1)
            r2 = await c.read_holding_registers(160, count=123)
            e = await c.write_register(149, 1)          # read-only
            e2 = await c.write_registers(148, [1, 2, 3, 4])   # straddles read-only
            r3 = await c.read_holding_registers(148, count=4)
        finally:
            c.close()
        return w1, w2, r, r2, e, e2, r3
    w1, w2, r, r2, e, e2, r3 = run(go())
    assert not w1.isError() and w1.registers == [0xBEEF]
    assert not w2.isError() and w2.address == 160 and w2.count == 123
    assert r.registers == [0xBEEF] and r2.registers == vals
    assert isinstance(e, ExceptionResponse) and e.exception_code == 2
    assert isinstance(e2, ExceptionResponse) and e2.exception_code == 2
    assert r3.registers == [HOLD(148), HOLD(149), 0xBEEF, HOLD(151)]   # nothing written


def test_tcp_device_identification_with_pymodbus(alive):
    async def go():
        c = AsyncModbusTcpClient("127.0.0.1", port=alive.tcp, timeout=2, retries=0)
        await c.connect()
        try:
            out = [await c.read_device_information(read_code=code, object_id=oid)
                   for code, oid in ((1, 0), (2, 0), (3, 0), (4, 4), (1, 0x50), (2, 3),
                                     (4, 0x50))]
        finally:
            c.close()
        return out
    basic, regular, extended, one, restart, from3, missing = run(go())
    assert basic.information == {0: b"OpenMeter", 1: b"KSEM-G2-SIM", 2: b"0.1.0"}
    assert basic.conformity == 0x83 and basic.more_follows == 0
    assert set(regular.information) == {0, 1, 2, 3, 4}
    assert extended.information[0x80] == b"extended-object" and len(extended.information) == 6
    assert one.information == {4: b"Sim meter"}
    assert restart.information == basic.information   # unknown start object: from 0
    assert set(from3.information) == {3, 4}
    assert isinstance(missing, ExceptionResponse) and missing.exception_code == 2


# ======================= Modbus TCP, raw frames =======================

EXCEPTIONS = [
    ("unsupported FC 01", bytes([0x01, 0, 0, 0, 1]), bytes([0x81, 1])),
    ("1-byte PDU FC 07", bytes([0x07]), bytes([0x87, 1])),
    ("FC 08 not on TCP", bytes([0x08, 0, 0, 0x12, 0x34]), bytes([0x88, 1])),
    ("FC 03 count 0", pdu_read(3, 0, 0), bytes([0x83, 3])),
    ("FC 03 count 126", pdu_read(3, 0, 126), bytes([0x83, 3])),
    ("FC 04 count 0", pdu_read(4, 0, 0), bytes([0x84, 3])),
    ("FC 04 count 126", pdu_read(4, 0, 126), bytes([0x84, 3])),
    # 6.3 state diagram: the quantity is checked before the address.
    ("FC 03 count 0 outside map", pdu_read(3, 300, 0), bytes([0x83, 3])),
    ("FC 16 count 0 outside map", bytes([0x10, 1, 144, 0, 0, 0]), bytes([0x90, 3])),
    ("FC 03 start outside", pdu_read(3, 300, 1), bytes([0x83, 2])),
    ("FC 03 end outside", pdu_read(3, 290, 11), bytes([0x83, 2])),
    ("FC 03 across a gap", pdu_read(3, 299, 2), bytes([0x83, 2])),
    ("FC 03 past 0xFFFF", pdu_read(3, 0xFFFF, 2), bytes([0x83, 2])),
    ("FC 04 start outside", pdu_read(4, 300, 1), bytes([0x84, 2])),
    ("FC 04 end outside", pdu_read(4, 250, 51), bytes([0x84, 2])),
    ("FC 03 map fails", pdu_read(3, 5000, 2), bytes([0x83, 4])),
    ("FC 03 PDU too short", bytes([3, 0, 0, 0]), bytes([0x83, 3])),
    ("FC 03 PDU too long", bytes([3, 0, 0, 0, 1, 0]), bytes([0x83, 3])),
    ("FC 06 read-only", bytes([6, 0, 50, 0, 1]), bytes([0x86, 2])),
    ("FC 06 unmapped", bytes([6, 1, 144, 0, 1]), bytes([0x86, 2])),
    ("FC 06 map fails", bytes([6, 0x13, 0x88, 0, 1]), bytes([0x86, 4])),
    ("FC 06 PDU too short", bytes([6, 0, 150, 0]), bytes([0x86, 3])),
    ("FC 16 count 0", bytes([0x10, 0, 150, 0, 0, 0]), bytes([0x90, 3])),
    # 124 registers cannot fit a 253-byte PDU: the count is refused before the length.
    ("FC 16 count 124", bytes([0x10, 0, 150, 0, 124, 248]) + bytes(246), bytes([0x90, 3])),
    ("FC 16 byte count odd", bytes([0x10, 0, 150, 0, 2, 3, 0, 1, 0]), bytes([0x90, 3])),
    ("FC 16 data shorter than byte count", bytes([0x10, 0, 150, 0, 2, 4, 0, 1]),
     bytes([0x90, 3])),
    ("FC 16 unmapped", bytes([0x10, 1, 144, 0, 1, 2, 0, 1]), bytes([0x90, 2])),
    ("FC 16 past 0xFFFF", bytes([0x10, 0xFF, 0xFF, 0, 2, 4, 0, 1, 0, 2]), bytes([0x90, 2])),
    ("FC 16 map fails", bytes([0x10, 0x13, 0x88, 0, 1, 2, 0, 1]), bytes([0x90, 4])),
    ("FC 43 other MEI type", bytes([0x2B, 0x0D, 1, 0]), bytes([0xAB, 1])),
    ("FC 43/14 read code 0", bytes([0x2B, 0x0E, 0, 0]), bytes([0xAB, 3])),
    ("FC 43/14 read code 5", bytes([0x2B, 0x0E, 5, 0]), bytes([0xAB, 3])),
    ("FC 43/14 short", bytes([0x2B, 0x0E, 1]), bytes([0xAB, 3])),
    ("FC 43/14 unknown object", bytes([0x2B, 0x0E, 4, 0x33]), bytes([0xAB, 2])),
]


@pytest.mark.parametrize("name,pdu,want", EXCEPTIONS, ids=[e[0] for e in EXCEPTIONS])
def test_tcp_exception_responses(alive, name, pdu, want):
    tid = random.randrange(65536)
    unit = random.randrange(256)
    assert tcp_xfer(alive.tcp, pdu, tid=tid, unit=unit) == (tid, unit, want)


def test_tcp_diagnostics_counts_and_unit_ids_in_one_connection(alive):
    with connect(alive.tcp) as s:
        for tid, unit in ((1, 0), (2, 0xFF), (3, 0x11), (0xFFFF, 247)):
            s.sendall(mbap(tid, pdu_read(3, 20, 3), unit))
            assert recv_adu(s) == (tid, unit, bytes([3, 6]) + struct.pack(
                ">3H", *map(HOLD, range(20, 23))))


def test_tcp_own_id_only_answers_gateway_exception(alive):
    want = bytes([3, 2]) + struct.pack(">H", HOLD(7))
    with connect(alive.tcp_own) as s:
        for unit, pdu in ((1, want), (0, want), (255, want), (5, bytes([0x83, 0x0B])),
                          (247, bytes([0x83, 0x0B]))):
            s.sendall(mbap(9, pdu_read(3, 7, 1), unit))
            assert recv_adu(s) == (9, unit, pdu)


def test_tcp_frame_torn_across_segments(alive):
    want = bytes([3, 4]) + struct.pack(">2H", HOLD(10), HOLD(11))
    frame = mbap(0x1234, pdu_read(3, 10, 2))
    with connect(alive.tcp) as s:
        for cuts in ((3,), (7,), (9,), (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11)):
            parts, last = [], 0
            for c in cuts + (len(frame),):
                parts.append(frame[last:c])
                last = c
            for p in parts[:-1]:
                s.sendall(p)
                silent(s, 0.05)
            s.sendall(parts[-1])
            assert recv_adu(s) == (0x1234, 1, want)


def test_tcp_pipelined_requests_answered_in_order(alive):
    reqs = [(i, pdu_read(3, 10 + i, 1 + i)) for i in range(6)]
    reqs.insert(3, (100, pdu_read(3, 0, 126)))           # an exception in the middle
    reqs.append((101, bytes([0x10, 1, 34, 0, 2, 4, 0, 7, 0, 8])))    # 290, 291
    reqs.append((102, pdu_read(4, 120, 2)))
    blob = b"".join(mbap(t, p) for t, p in reqs)
    with connect(alive.tcp) as s:
        s.sendall(blob[:-5])                             # the last one torn
        time.sleep(0.05)
        s.sendall(blob[-5:])
        got = [recv_adu(s) for _ in reqs]
    assert [g[0] for g in got] == [t for t, _ in reqs]
    for (tid, pdu), (_, _, resp) in zip(reqs, got):
        if tid < 100:
            a, n = struct.unpack(">HH", pdu[1:])
            assert resp == bytes([3, 2 * n]) + struct.pack(">%dH" % n,
                                                          *map(HOLD, range(a, a + n)))
    assert got[3][2] == bytes([0x83, 3])
    assert got[-2][2] == bytes([0x10, 1, 34, 0, 2])
    assert got[-1][2] == bytes([4, 4, 0x40, 120, 0x40, 121])


def test_tcp_burst_without_reading_stalls_only_that_client(alive):
    """80000 pipelined reads (10 MB of replies, more than the kernel buffers hold) from a
    client that reads nothing at first: the server's socket fills, that connection waits
    for it to drain (nothing is queued in our memory), other clients are still answered
    promptly, and then every reply comes, in order."""
    n = 80000
    blob = b"".join(mbap(i & 0xFFFF, pdu_read(3, i % 90, 60)) for i in range(n))
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", alive.tcp))
    with s:
        sender = threading.Thread(target=s.sendall, args=(blob,))
        sender.start()
        time.sleep(0.5)                        # the server is stuck on a full socket now
        for k in range(3):
            t0 = time.time()
            assert tcp_xfer(alive.tcp, pdu_read(3, k, 1), tid=k) == \
                (k, 1, bytes([3, 2]) + struct.pack(">H", HOLD(k)))
            assert time.time() - t0 < 1.0
        size = 9 + 120
        got = bytearray()
        s.settimeout(10)
        while len(got) < n * size:
            d = s.recv(1 << 20)
            assert d, "closed after %d replies" % (len(got) // size)
            got += d
        sender.join(5)
        assert not sender.is_alive()
    assert len(got) == n * size
    for i in range(n):
        head = struct.unpack_from(">HHHBBB", got, i * size)
        assert head == (i & 0xFFFF, 0, size - 6, 1, 3, 120), (i, head)
    for i in (0, 1, 4567, n - 1):
        a = i % 90
        assert got[i * size + 9:(i + 1) * size] == struct.pack(">60H", *map(HOLD, range(a, a + 60)))


def test_tcp_length_field_larger_than_data_waits_for_it(alive):
    with connect(alive.tcp) as s:
        s.sendall(mbap(0x42, pdu_read(3, 0, 1), length=10))   # claims 9 PDU bytes, has 5
        silent(s, 0.3)
        s.sendall(bytes(4))                                    # now 9: a malformed FC 03
        assert recv_adu(s) == (0x42, 1, bytes([0x83, 3]))
        s.sendall(mbap(0x43, pdu_read(3, 1, 1)))               # stream still in step
        assert recv_adu(s) == (0x43, 1, bytes([3, 2, 0, 4]))


def test_tcp_length_field_smaller_than_data(alive):
    with connect(alive.tcp) as s:
        # Length 4 takes unit + 3 PDU bytes (03 00 00): malformed -> 03. The two bytes
        # left over (00 01) start a header that never becomes valid.
        s.sendall(mbap(0x50, pdu_read(3, 0, 1), length=4))
        assert recv_adu(s) == (0x50, 1, bytes([0x83, 3]))
        s.sendall(b"\x00\x01\x00\x00\xff\xff")    # proto 0, then length 0xFFFF
        assert closed_within(s, 2)


@pytest.mark.parametrize("header", [
    mbap(1, pdu_read(3, 0, 1), proto=1),
    mbap(1, pdu_read(3, 0, 1), proto=0x8000),
    mbap(1, b"", length=1),
    mbap(1, pdu_read(3, 0, 1), length=0),
    mbap(1, pdu_read(3, 0, 1), length=255),
    mbap(1, bytes([0x10, 0, 100, 0, 127, 254]) + bytes(254)),   # 261-byte ADU: oversize
], ids=["proto1", "proto8000", "len1", "len0", "len255", "oversize"])
def test_tcp_bad_mbap_closes_that_connection_only(alive, header):
    with connect(alive.tcp) as other:
        with connect(alive.tcp) as s:
            s.sendall(header)
            assert closed_within(s, 2)
        other.sendall(mbap(5, pdu_read(4, 0, 1)))
        assert recv_adu(other) == (5, 1, bytes([4, 2, 0x40, 0]))


def test_tcp_garbage_closes_and_server_survives(alive):
    rnd = random.Random(3)
    blobs = [bytes(rnd.randrange(256) for _ in range(n)) for n in (8, 100, 1000, 5000)]
    blobs += [bytes(64), b"\xff" * 300, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"]
    for blob in blobs:
        with connect(alive.tcp) as s:
            try:
                s.sendall(blob)
            except (BrokenPipeError, ConnectionResetError):
                continue          # closed while we were still sending: fine
            assert closed_within(s, 2), blob[:16]


def test_tcp_truncated_mbap_and_idle_timeout(alive):
    t0 = time.time()
    half = connect(alive.tcp)
    half.sendall(mbap(1, pdu_read(3, 0, 1))[:4])         # truncated header, then nothing
    quiet = connect(alive.tcp)
    quiet.sendall(mbap(2, pdu_read(3, 0, 1)))
    assert recv_adu(quiet)[0] == 2
    gone = connect(alive.tcp)
    gone.sendall(mbap(3, pdu_read(3, 0, 1))[:5])
    gone.close()                                          # truncated, then hang up
    # The server keeps serving others meanwhile.
    assert tcp_xfer(alive.tcp, pdu_read(3, 2, 1)) == (1, 1, bytes([3, 2, 0, 7]))
    assert not closed_within(half, 1.5)                   # 2 s partial-frame bound not due
    assert closed_within(half, 4)                         # dropped: frame_ms 2 s
    t_half = time.time() - t0
    assert closed_within(quiet, 3)                        # 3 s idle timeout
    assert 1.9 < t_half < time.time() - t0 < 6.5
    half.close()
    quiet.close()


def test_tcp_concurrent_clients_rtu_load_and_idle_sockets(alive):
    """8 pymodbus TCP clients x 400 reads and pymodbus on both RTU ports (2 x 300) at once,
    with 50 idle sockets around."""
    evicted0 = struct.unpack(">H", tcp_xfer(alive.tcp, pdu_read(3, 9026, 1))[2][2:])[0]
    idle = []
    for _ in range(50):
        idle.append(connect(alive.tcp))
    rtu_res = {}

    def rtu_loop(which, n):
        c, addr = serial_client(alive, which)
        ok = 0
        try:
            for i in range(n):
                a = (i * 7) % 200
                r = c.read_input_registers(a, count=10 + i % 50, device_id=addr)
                if not r.isError() and r.registers == [INPUT(x) for x in
                                                       range(a, a + 10 + i % 50)]:
                    ok += 1
        finally:
            c.close()
        rtu_res[which] = ok

    threads = [threading.Thread(target=rtu_loop, args=(w, 300)) for w in "AB"]
    for t in threads:
        t.start()

    async def client(k):
        c = AsyncModbusTcpClient("127.0.0.1", port=alive.tcp, timeout=3, retries=0)
        await c.connect()
        bad = 0
        try:
            for i in range(400):
                a = (k * 31 + i) % 90          # read-only part: 0..149
                r = await c.read_holding_registers(a, count=60, device_id=k + 1)
                if r.isError() or r.registers != [HOLD(x) for x in range(a, a + 60)]:
                    bad += 1
        except Exception:
            bad += 1000
        finally:
            c.close()
        return bad

    async def all_clients():
        return await asyncio.gather(*(client(k) for k in range(8)))

    bad = run(all_clients())
    for t in threads:
        t.join(60)
    assert bad == [0] * 8
    assert rtu_res == {"A": 300, "B": 300}
    # A good client is still answered with 50 idle sockets open.
    assert tcp_xfer(alive.tcp, pdu_read(3, 3, 1)) == (1, 1, bytes([3, 2, 0, 10]))
    # Cap 16: the idle ones made way (never-used connections go first).
    r = tcp_xfer(alive.tcp, pdu_read(3, 9024, 6))[2]
    accepted, active, evicted, refused, timeouts, bad_frames = struct.unpack(">6H", r[2:])
    # 50 idle + 8 clients in 16 slots: at least 42 closed, never an active client.
    assert evicted - evicted0 >= 42 and active <= 16 and refused == 0
    open_idle = sum(not closed_within(s, 0.01) for s in idle)
    assert open_idle <= 16
    for s in idle:
        s.close()


def test_clean_shutdown_on_sigint(tmp_path):
    port = free_port()
    app = subprocess.Popen([MICROPYTHON, "tests/modbus_fixture_app.py", "--tcp", str(port)],
                           cwd=str(ROOT), env=mpy_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert app.stdout.readline().startswith("READY")
        s = connect(port)
        s.sendall(mbap(1, pdu_read(3, 0, 1)))
        assert recv_adu(s)[0] == 1
        app.send_signal(signal.SIGINT)
        out = app.communicate(timeout=5)[0]
        assert app.returncode == 0 and "CLOSED" in out
        assert closed_within(s, 1)
        s.close()
    finally:
        if app.poll() is None:
            app.kill()


# ======================= Modbus RTU =======================

@pytest.mark.parametrize("which", ["A", "B"])
def test_rtu_pymodbus_happy_paths(alive, which):
    c, addr = serial_client(alive, which)
    base = 200 if which == "A" else 250
    try:
        r = c.read_holding_registers(0, count=125, device_id=addr)
        assert r.registers == [HOLD(a) for a in range(125)]
        r = c.read_input_registers(290, count=10, device_id=addr)
        assert r.registers == [INPUT(a) for a in range(290, 300)]
        w = c.write_register(base, 0x1234, device_id=addr)
        assert not w.isError()
        vals = list(range(base, base + 40))
        w = c.write_registers(base + 1, vals, device_id=addr)
        assert not w.isError() and w.count == 40
        r = c.read_holding_registers(base, count=41, device_id=addr)
        assert r.registers == [0x1234] + vals
        r = c.read_device_information(read_code=1, device_id=addr)
        assert r.information == {0: b"OpenMeter", 1: b"KSEM-G2-SIM", 2: b"0.1.0"}
        r = c.diag_query_data(b"\xa5\x37", device_id=addr)
        assert not r.isError() and r.message == b"\xa5\x37"
        e = c.read_holding_registers(300, count=1, device_id=addr)
        assert isinstance(e, ExceptionResponse) and e.exception_code == 2
    finally:
        c.close()


RTU_EXC = [
    ("count 126", pdu_read(3, 0, 126), bytes([0x83, 3])),
    ("count 0", pdu_read(4, 0, 0), bytes([0x84, 3])),
    ("start outside", pdu_read(3, 300, 1), bytes([0x83, 2])),
    ("end outside", pdu_read(4, 290, 11), bytes([0x84, 2])),
    ("map fails", pdu_read(3, 5000, 1), bytes([0x83, 4])),
    ("write read-only", bytes([6, 0, 1, 0, 1]), bytes([0x86, 2])),
    ("FC 08 sub-function 1", bytes([8, 0, 1, 0, 0]), bytes([0x88, 1])),
    ("FC 07", bytes([7]), bytes([0x87, 1])),
    ("FC 16 count 124", bytes([0x10, 0, 150, 0, 124, 248]) + bytes(244), bytes([0x90, 3])),
]


@pytest.mark.parametrize("which", ["A", "B"])
def test_rtu_exception_responses(alive, which):
    addr = (PORT_A if which == "A" else PORT_B)[0]
    p = Pty(alive.a if which == "A" else alive.b)
    try:
        for name, pdu, want in RTU_EXC:
            assert p.xfer(rtu(addr, pdu), 5) == rtu(addr, want), name
        # FC 08/00 echoes any data, including none.
        assert p.xfer(rtu(addr, bytes([8, 0, 0]))) == rtu(addr, bytes([8, 0, 0]))
        assert p.read() == b""                # and nothing else came
    finally:
        p.close()


def test_rtu_silence_on_bad_crc_other_address_and_runts(alive):
    before = [stats(alive, 0), stats(alive, 1)]
    pa, pb = Pty(alive.a), Pty(alive.b)
    try:
        good_a, good_b = rtu(1, pdu_read(3, 0, 1)), rtu(247, pdu_read(3, 0, 1))
        bad_crc = good_a[:-1] + bytes([good_a[-1] ^ 0x01])
        assert pa.xfer(bad_crc) == b""
        assert pa.xfer(rtu(2, pdu_read(3, 0, 1))) == b""          # another slave
        assert pa.xfer(rtu(247, pdu_read(3, 0, 1))) == b""        # B's address on A
        assert pb.xfer(rtu(1, pdu_read(3, 0, 1))) == b""          # A's address on B
        assert pb.xfer(good_b[:-2] + good_b[-1:] + good_b[-2:-1]) == b""   # CRC swapped
        assert pa.xfer(b"\x01\x03") == b""                        # runt
        assert pa.xfer(good_a) == rtu(1, bytes([3, 2, 0, 1]))     # and still answers
        assert pb.xfer(good_b) == rtu(247, bytes([3, 2, 0, 1]))
    finally:
        pa.close()
        pb.close()
    after = [stats(alive, 0), stats(alive, 1)]
    assert after[0]["errors"] - before[0]["errors"] == 2
    assert after[0]["other"] - before[0]["other"] == 2
    assert after[1]["errors"] - before[1]["errors"] == 1
    assert after[1]["other"] - before[1]["other"] == 1
    assert after[0]["ok"] - before[0]["ok"] >= 1


def test_rtu_broadcast_writes_without_reply(alive):
    before = [stats(alive, 0)["broadcast"], stats(alive, 1)["broadcast"]]
    pa, pb = Pty(alive.a), Pty(alive.b)
    try:
        assert pa.xfer(rtu(0, bytes([6, 1, 39, 0xCA, 0xFE]))) == b""      # 295
        assert pb.xfer(rtu(0, bytes([0x10, 1, 40, 0, 2, 4, 0x12, 0x34, 0x56, 0x78]))) == b""
        assert pa.xfer(rtu(0, pdu_read(3, 0, 1))) == b""           # a read: ignored
        assert pa.xfer(rtu(0, bytes([6, 0, 50, 0, 1]))) == b""     # refused: still silent
    finally:
        pa.close()
        pb.close()
    r = tcp_xfer(alive.tcp, pdu_read(3, 295, 3))[2]
    assert r == bytes([3, 6, 0xCA, 0xFE, 0x12, 0x34, 0x56, 0x78])
    assert tcp_xfer(alive.tcp, pdu_read(3, 50, 1))[2] == bytes([3, 2]) + struct.pack(
        ">H", HOLD(50))
    # Counted when carried out: one write on each port (the refused one is not).
    assert [stats(alive, 0)["broadcast"] - before[0], stats(alive, 1)["broadcast"] - before[1]] \
        == [1, 1]


def test_rtu_torn_gapped_and_oversize_frames(alive):
    p = Pty(alive.a)
    e0 = stats(alive, 0)["errors"]
    try:
        good = rtu(1, pdu_read(3, 20, 2))
        want = rtu(1, bytes([3, 4]) + struct.pack(">2H", HOLD(20), HOLD(21)))
        p.write(good[:3])
        p.write(good[3:])                     # back to back: one frame
        assert p.read() == want
        p.write(good[:4])
        time.sleep(0.05)                      # > t3.5: two broken frames
        p.write(good[4:])
        assert p.read() == b""
        p.write(bytes(range(256)) + bytes(44))   # 300 bytes: longer than any ADU
        assert p.read() == b""
        big = rtu(1, bytes([0x10, 0, 150, 0, 123, 246]) + bytes(246))   # 255-byte ADU
        assert p.xfer(big) == rtu(1, bytes([0x10, 0, 150, 0, 123]))
        assert p.xfer(good) == want
    finally:
        p.close()
    assert stats(alive, 0)["errors"] - e0 == 3


# ======================= driver and slave units (fakes, no pty) =======================

def run_mpy_async(code, timeout=30):
    """run_mpy with the unix port's frozen asyncio on the path."""
    p = subprocess.run([MICROPYTHON, "-c", code], capture_output=True, text=True,
                       timeout=timeout, env=mpy_env(), cwd=str(ROOT))
    assert p.returncode == 0 and "@@JSON" in p.stdout, p.stdout + p.stderr
    import json
    return json.loads(p.stdout.split("@@JSON", 1)[1].strip().splitlines()[0])


def test_rs485_driver_raises_de_only_while_sending():
    got = run_mpy_async("""
import asyncio, json
from time import ticks_us, ticks_diff
from drivers.rs485 import RS485

class Pin:
    def __init__(self, uart):
        self.v = None
        self.uart = uart
        self.log = []
    def value(self, v):
        self.v = v
        self.log.append((v, self.uart.txdone() if self.uart.t_end else None))

class Uart:
    # Bytes leave at the configured rate after write() queues them (like a FIFO).
    def __init__(self):
        self.t_end = None
        self.writes = []
    def init(self, baudrate, bits, parity, stop):
        self.cfg = (baudrate, bits, parity, stop)
    def write(self, b):
        self.writes.append((bytes(b), self.de.v))
        self.t_end = ticks_us() + len(b) * self.char_us
        return len(b)
    def txdone(self):
        return ticks_diff(ticks_us(), self.t_end) >= 0
    def readinto(self, b):
        return None

async def main():
    u = Uart()
    de = Pin(u)
    u.de = de
    port = RS485(u, de, baudrate=9600, parity="E", stop=1)
    u.char_us = port.char_us
    t0 = ticks_us()
    await port.send(bytearray(b"0123456789" * 3), 25)
    dt = ticks_diff(ticks_us(), t0)
    errs = []
    for bad in ((9600, "X", 1), (9600, "N", 3), (1, "N", 1)):
        try:
            port.init(*bad)
        except ValueError as e:
            errs.append(str(e))
    print("@@JSON", json.dumps({"log": de.log, "writes": [[w.decode(), v] for w, v in u.writes],
          "cfg": u.cfg, "char_us": port.char_us, "dt": dt, "errs": errs}))
asyncio.run(main())
""")
    assert got["cfg"] == [9600, 8, 0, 1]          # 8 data bits, even parity = 0
    assert got["char_us"] == 1146                 # 11 bits at 9600 baud
    assert got["writes"] == [["0123456789012345678901234", 1]]   # DE high while writing
    # DE: low at start, high (nothing queued yet), then low only once the UART is empty.
    assert got["log"][0] == [0, None] and got["log"][1] == [1, None]
    assert got["log"][-1] == [0, True] and len(got["log"]) == 3
    assert got["dt"] >= 25 * 1146                 # the whole frame's time on the wire
    assert len(got["errs"]) == 3


def test_rtu_slave_settings_enable_and_timing():
    got = run_mpy_async("""
import asyncio, json
from time import ticks_us, ticks_diff
from firmware.modbus.rtu import RtuSlave, preset
from firmware.modbus.pdu import Dispatcher
from tests.spaces import ArraySpace
from firmware.modbus.crc import append

class Port:
    # Duck-typed transceiver: frames are handed over whole, replies recorded.
    def __init__(self):
        self.inbox = []
        self.sent = []
        self.ev = asyncio.Event()
        self.rx_us = ticks_us()
    def init(self, baud, parity, stop):
        self.baudrate, self.parity, self.stop = baud, parity, stop
        self.char_us = (((parity != "N") + 9 + stop) * 1000000 + baud - 1) // baud
    async def recv(self, mv):
        while not self.inbox:
            self.ev.clear()
            await self.ev.wait()
        d = self.inbox.pop(0)
        mv[:len(d)] = d
        self.rx_us = ticks_us()
        return len(d)
    def read_now(self, mv):
        if not self.inbox:
            return 0
        d = self.inbox.pop(0)     # bytes already there (e.g. while disabled)
        mv[:len(d)] = d
        return len(d)
    def silent_us(self):
        return ticks_diff(ticks_us(), self.rx_us)
    async def send(self, buf, n):
        self.sent.append((bytes(buf[:n]).hex(), ticks_diff(ticks_us(), self.rx_us)))
    def feed(self, b):
        f = bytearray(len(b) + 2)
        f[:len(b)] = b
        append(f, len(b))
        self.inbox.append(bytes(f))
        self.ev.set()

async def main():
    port = Port()
    d = Dispatcher(ArraySpace(0, 10, init=lambda a: a), ArraySpace(0, 1), ("v", "p", "r"), rtu=True)
    s = RtuSlave(port, d, enabled=False, **preset("piko_mp_plus"))
    t = asyncio.create_task(s.run())
    res = {"t35_b": s.t35_us, "settings": s.settings()}
    port.feed(b"\\xf7\\x03\\x00\\x01\\x00\\x01")
    await asyncio.sleep_ms(30)
    res["sent_disabled"] = len(port.sent)
    s.configure(enabled=True)
    await asyncio.sleep_ms(5)
    port.feed(b"\\xf7\\x03\\x00\\x02\\x00\\x01")
    await asyncio.sleep_ms(30)
    res["sent"] = port.sent[:]
    errs = []
    for kw in ({"address": 0}, {"address": 248}, {"baud": 12345}, {"parity": "M"}, {"stop": 3}):
        try:
            s.configure(**kw)
        except ValueError:
            errs.append(1)
    res["errs"] = errs
    res["after_errs"] = s.settings()
    s.configure(**preset("plenticore"))
    res["t35_a"] = s.t35_us
    s.configure(baud=9600)
    res["t35_9600_8n2"] = s.t35_us
    port.feed(b"\\x01\\x03\\x00\\x03\\x00\\x01")
    await asyncio.sleep_ms(30)
    res["sent_a"] = port.sent[-1][0]
    t.cancel()
    print("@@JSON", json.dumps(res))
asyncio.run(main())
""")
    assert got["t35_b"] == 2006                    # 3.5 x 573 us: 19200 8E1 (11 bits)
    assert got["settings"] == {"enabled": False, "address": 247, "baud": 19200,
                               "parity": "E", "stop": 1}
    assert got["sent_disabled"] == 0               # a disabled port stays silent
    assert len(got["sent"]) == 1
    reply, delay_us = got["sent"][0]
    assert reply.startswith("f7030200" + "02")
    assert delay_us >= got["t35_b"]                # reply only after t3.5 of silence
    assert got["errs"] == [1] * 5 and got["after_errs"] == got["settings"] | {"enabled": True}
    assert got["t35_a"] == 1750                    # fixed above 19200 baud
    assert got["t35_9600_8n2"] == 4011             # 3.5 x 1146 us
    assert got["sent_a"].startswith("01030200" + "03")
