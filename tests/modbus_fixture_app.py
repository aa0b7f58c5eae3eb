"""MicroPython entry that serves test register spaces over Modbus TCP and RTU.

    micropython tests/modbus_fixture_app.py --tcp 15020 [--tcp-own 15021]
        [--rtu PATH,ADDR,BAUD,PARITY,STOP ...] [--idle 60] [--max 10]
        [--frame-ms 2000] [--stall MS,EVERY_MS]

Prints `READY tcp=<port> ...` once every port serves; SIGINT closes the servers
and prints `CLOSED`. Maps (addresses are what the tests rely on):
- holding 0..299: value 3*a+1 at start; 0..149 read-only, 150..299 writable.
- holding 1000..1099 read-only, value 0x1000+a (300..999 is a gap).
- holding 5000..5009: raises on every access (-> exception 04).
- holding 9000..9031: live counters (see Stats) of the RTU ports and TCP server.
- holding 7000..7009: who wrote (caller context): a write to 7000 stores the value and
  the writer: 7001 = its connection number, 7002 = 1 for TCP, 2 for RTU port A, 3 for
  B. Writing 0x5A5A to 7003 unlocks 7004 for that caller only (ctx.state); 7004
  answers 02 to a caller that has not unlocked; 7003 reads 1 when the reading caller
  has unlocked.
- input 0..299: value 0x4000+a, read-only.

--stall MS,EVERY_MS: a task blocks the whole event loop (time.sleep_ms) for MS every
EVERY_MS, as a flash erase with interrupts off does on a board. Stats 9031 counts
TCP partial frames dropped.
"""
import asyncio
import sys
import time

from tests.spaces import ArraySpace, SpaceSet, EmptySpace
from firmware.modbus.pdu import Dispatcher
from firmware.modbus.rtu import RtuSlave
from firmware.modbus.tcp import TcpServer

IDENT = {0: b"OpenMeter", 1: b"KSEM-G2-SIM", 2: b"0.1.0", 3: b"https://example.invalid",
         4: b"Sim meter", 0x80: b"extended-object"}


class Broken(EmptySpace):
    start = 5000
    end = 5010

    def read(self, addr, count, out, off):
        raise RuntimeError("sensor gone")

    def write(self, addr, count, src, soff, ctx=None):
        raise RuntimeError("sensor gone")


class Who(EmptySpace):
    """Shows which caller wrote, and a per-caller unlock (see the module docstring)."""
    start = 7000
    end = 7010
    _PORTS = {"tcp": 1, "rtu-a": 2, "rtu-b": 3}

    def __init__(self):
        self.value = 0
        self.conn = 0
        self.port = 0
        self.locked_value = 0
        self.reader = None

    def read(self, addr, count, out, off):
        if addr < self.start or addr + count > self.end:
            return 2
        for k in range(count):
            a = addr + k
            v = (self.value, self.conn, self.port, 0, self.locked_value)[a - 7000] \
                if a < 7005 else 0
            out[off + 2 * k] = v >> 8
            out[off + 2 * k + 1] = v & 0xFF
        return 0

    def write(self, addr, count, src, soff, ctx=None):
        if addr < self.start or addr + count > self.start + 5 or ctx is None:
            return 2
        for k in range(count):
            a = addr + k
            v = (src[soff + 2 * k] << 8) | src[soff + 2 * k + 1]
            if a == 7004 and ctx.state != "unlocked":
                return 2
        for k in range(count):
            a = addr + k
            v = (src[soff + 2 * k] << 8) | src[soff + 2 * k + 1]
            if a == 7000:
                self.value = v
                self.conn = ctx.conn
                self.port = self._PORTS.get(ctx.port, 9)
            elif a == 7003:
                ctx.state = "unlocked" if v == 0x5A5A else None
            elif a == 7004:
                self.locked_value = v
        return 0


class Stats(EmptySpace):
    """9000 + 8*i: RTU port i ok, errors, other, broadcast; 9024..: TCP counters."""
    start = 9000
    end = 9032

    def __init__(self):
        self.rtu = []
        self.tcp = []

    def _value(self, a):
        i = a - 9000
        if i < 24:
            port, f = divmod(i, 8)
            if port >= len(self.rtu) or f > 3:
                return 0
            s = self.rtu[port].stats
            return (s.ok, s.errors, s.other, s.broadcast)[f]
        if not self.tcp:
            return 0
        s = self.tcp[0].stats
        return (s.accepted, s.active, s.evicted, s.refused, s.timeouts, s.bad_frames,
                s.requests, s.dropped)[i - 24]

    def read(self, addr, count, out, off):
        if addr < self.start or addr + count > self.end:
            return 2
        for k in range(count):
            v = self._value(addr + k) & 0xFFFF
            out[off + 2 * k] = v >> 8
            out[off + 2 * k + 1] = v & 0xFF
        return 0


def build():
    stats = Stats()
    holding = SpaceSet(
        ArraySpace(0, 300, writable=((150, 300),), init=lambda a: (3 * a + 1) & 0xFFFF),
        ArraySpace(1000, 100, writable=False, init=lambda a: 0x1000 + a),
        Broken(), stats, Who())
    inputs = ArraySpace(0, 300, writable=False, init=lambda a: 0x4000 + a)
    return holding, inputs, stats


def parse(argv):
    opts = {"tcp": None, "tcp_own": None, "rtu": [], "idle": 60, "max": 10,
            "frame_ms": 2000, "stall": None}
    i = 0
    while i < len(argv):
        k, v = argv[i], argv[i + 1]
        if k == "--tcp":
            opts["tcp"] = int(v)
        elif k == "--tcp-own":
            opts["tcp_own"] = int(v)
        elif k == "--rtu":
            path, addr, baud, parity, stop = v.split(",")
            opts["rtu"].append((path, int(addr), int(baud), parity, int(stop)))
        elif k == "--idle":
            opts["idle"] = float(v)
        elif k == "--max":
            opts["max"] = int(v)
        elif k == "--frame-ms":
            opts["frame_ms"] = int(v)
        elif k == "--stall":
            opts["stall"] = tuple(int(x) for x in v.split(","))
        else:
            raise ValueError("unknown option " + k)
        i += 2
    return opts


async def main(opts):
    from boards.sim.uart import PtyUART
    from drivers.rs485 import RS485
    holding, inputs, stats = build()
    d_tcp = Dispatcher(holding, inputs, IDENT)
    d_rtu = Dispatcher(holding, inputs, IDENT, rtu=True)
    servers = []
    tasks = []
    ready = []
    if opts["tcp"]:
        s = TcpServer(d_tcp, max_clients=opts["max"], idle_s=opts["idle"],
                      frame_ms=opts["frame_ms"])
        await s.start("127.0.0.1", opts["tcp"])
        servers.append(s)
        stats.tcp.append(s)
        ready.append("tcp=%d" % opts["tcp"])
    if opts["tcp_own"]:
        s = TcpServer(d_tcp, max_clients=4, idle_s=opts["idle"], unit_id=1, own_id_only=True)
        await s.start("127.0.0.1", opts["tcp_own"])
        servers.append(s)
        ready.append("tcp_own=%d" % opts["tcp_own"])
    for i, (path, addr, baud, parity, stop) in enumerate(opts["rtu"]):
        port = RS485(PtyUART(path), None, baud, parity, stop)
        slave = RtuSlave(port, d_rtu, address=addr, baud=baud, parity=parity, stop=stop,
                         name="rtu-" + "ab"[i])
        stats.rtu.append(slave)
        tasks.append(asyncio.create_task(slave.run()))
        ready.append("rtu=%s" % path)
    if opts["stall"]:
        tasks.append(asyncio.create_task(stall(*opts["stall"])))
    RUNNING.extend(servers)
    RUNNING.extend(tasks)
    print("READY " + " ".join(ready))
    while True:
        await asyncio.sleep(3600)


RUNNING = []


async def stall(ms, every_ms):
    # Blocks the loop outright, as code running with interrupts off would.
    while True:
        await asyncio.sleep_ms(every_ms)
        time.sleep_ms(ms)


async def shutdown():
    # SIGINT surfaces outside the loop; close what main() left running.
    for x in RUNNING:
        if isinstance(x, TcpServer):
            x.close()
        else:
            x.cancel()
    for x in RUNNING:
        if isinstance(x, TcpServer):
            await x.wait_closed()


if __name__ == "__main__":
    try:
        asyncio.run(main(parse(sys.argv[1:])))
    except KeyboardInterrupt:
        asyncio.run(shutdown())
    print("CLOSED")
