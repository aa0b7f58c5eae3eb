"""Modbus master push, as the KSEM's (manual 5.14.2-5.14.3, digest 4.3-4.4).

    from firmware.pushmb import Pusher
    push = Pusher(meter, ports, events, clock)   # ports: firmware.ports.ModbusPorts
    push.configure(cfg)                          # validated config, section "push"
    sup.spawn("push", push.run)
    push.silent                                  # a target in error: bus LED orange

The meter writes its own KSEM register images with FC 16 (Modbus Application Protocol
v1.1b3, 6.12) at the same addresses into up to 10 TCP slaves and the RTU slaves of a
port whose role is "master", by the KSEM's groups: instantaneous totals 0-27, per
phase 40-145, energy totals 512-551, per-phase energies 592-791 (KSEM/PnP and SunSpec
are never pushed). The registers come from the KSEM map itself (ports.meas.read(),
the same rows the slave ports serve): nothing is encoded twice. FC 16 carries at most
123 registers (6.12), so a group is sent in chunks of that size.

Timing (config push.mode): "cycle" after every published snapshot; "interval_last"
every interval_s with the values at its end; "interval_mean" the mean of every
snapshot of the interval for the instantaneous values (energies are never averaged:
the counters at the end). The mean is integer: per value, two 15-bit limbs (v >> 15
and v & 0x7FFF) summed in small ints; 18,000 cycles (1 h at 200 ms) stay below
2**30 in each limb, checked by config (interval_s <= 3600). The sums, the means and
the energies of the interval's last snapshot are one int32 array (no Snapshot copy);
for its reads the KSEM space takes the Pusher itself as its meter (front: itself,
status_now()) and snapshot (inst, e_hi, e_lo: views into that array; seq), so the
registers come out of the same map rows. P+/P- etc. are split from the mean of the
signed value, the quadrant from the signs of the mean P and Q.

One task follows the snapshots (and sums the mean); each push round runs in a task
beside it, so no cycle is missed while slaves answer; a push that falls due while the
last one is still out is skipped (counted: Pusher.c[_C_SKIPPED]), never queued. One FC 16 frame buffer (MBAP + PDU + CRC: the MBAP's unit id byte is where
an RTU frame's address goes, so the RTU frame is the TCP frame from offset 6). A round
fills the buffer once per chunk and writes it to every TCP target at once, then awaits
their replies, each in a task with its own timeout_ms, before the next chunk: one
request in flight per target, as most slaves take no pipelining. A target that does not answer in time,
answers an exception, or cannot be connected, is in error (event, bus LED) and is
retried after a backoff (timeout_ms for `retries` attempts, then doubling to 60 s):
connecting runs in a task of its own, so a dead host never holds the round, metering
or the slave ports. RTU slaves are asked one at a time (a bus is half duplex), each
reply waited for timeout_ms; a silent RTU slave is skipped during its backoff.
"""
import asyncio
from array import array
from time import ticks_diff, ticks_add
from micropython import const

from firmware.modbus import crc

# (Constants are private: a module's public names cost RAM in its dict on a board;
# const tuples are literal constants, flash when frozen.)
# KSEM manual 5.14.3 register groups, (first, count), in config order.
_GROUPS = const(((0, 28), (40, 106), (512, 40), (592, 200)))
_GROUP_KEYS = const(("inst_total", "inst_phases", "energy_total", "energy_phases"))
# firmware/snapshot.py indices and firmware/events.py codes, mirrored (tests check).
_NQ = const(9)
_P_MW = const(2)
_Q_MVAR = const(3)
_QUADRANT = const(8)
_N_COUNTERS = const(32)
_ST_STALE = const(4)        # snapshot status: published while the chip re-initialises
_PUSH_MODES = const(("cycle", "interval_last", "interval_mean"))   # firmware/config.py
_EV_PUSH_ERROR = const(44)
_EV_PUSH_OK = const(45)
_EV_PUSH_EXCEPTION = const(46)
# interval_mean's int32 array (Pusher.inst, None in the other modes): the means of
# the _NV instantaneous values (first: so it is the view's inst), their limb sums hi
# (v >> 15) and lo (v & 0x7FFF), the snapshot count, then the energies e_hi, e_lo.
_NV = const(36)             # _NQ * 4
_M_HI = const(36)
_M_LO = const(72)
_M_N = const(108)
_M_EHI = const(109)
_M_ELO = const(141)
_M_LEN = const(173)
_MAX_TCP = const(10)
_MAX_RTU = const(10)
_FC16_MAX = const(123)      # Application Protocol 6.12: 1..123 registers
_HDR = const(13)            # MBAP 7 + FC, address, quantity, byte count
_BUF = const(13 + 246 + 2)  # + 123 registers + CRC (RTU)
_RX = const(12)             # the longest reply: MBAP 7 + FC 16 echo 5
_BACKOFF_MAX_MS = const(60000)
_POLL_MS = const(10)        # wait for a new snapshot
_ST_IDLE = const(0)         # not configured / not tried yet
_ST_OK = const(1)
_ST_ERROR = const(2)
_CONNECTING = const(0x10)   # state flag: a connect task runs (TCP targets)
# Last error codes (status block): 0 none, 1..11 the slave's exception code,
_E_TIMEOUT = const(0x100)    # no (complete) reply within timeout_ms
_E_CONNECT = const(0x101)    # could not connect (refused, unreachable, name)
_E_REPLY = const(0x102)      # a reply that is not the answer to the request
_RTU_BASE = const(_MAX_TCP)  # target index of the first RTU slave
_N = const(_MAX_TCP + _MAX_RTU)
_RX_RTU = const(_BUF + _RX * _MAX_TCP)   # the RTU port's reply area in the buffer
_H_ERR = const(_N)          # Pusher.h: state 0.._N-1, then the last errors, ...
_H_FAILS = const(2 * _N)    # ... the consecutive failures, ...
_H_TID = const(3 * _N)      # ... the MBAP transaction id, ...
_H_BUSY = const(3 * _N + 1)  # ... 1 while a round is out
_C_SKIPPED = const(3 * _N)  # Pusher.c, after the per-target counters and deadlines
# Status block (holding registers, read-only; wave-2 range 0xD000..0xD3FF):
#   0xD000 targets in error, 0xD001..2 push rounds (uint32), 0xD003 mode (config.PUSH_MODES index);
#   per target t at 0xD010 + 8 t (TCP 0..9, then RTU slaves 10..19): state (0 not
#   tried, 1 ok, 2 error), last error (exception code 1..11, 0x100 timeout, 0x101
#   connect, 0x102 bad reply), successes (uint32), failures (uint32), 2 reserved.
_STATUS_BASE = const(0xD000)
_STATUS_END = const(0xD1FF)
_STATUS_TARGETS = const(0x10)


class Pusher:
    def __init__(self, meter, ports, events, clock):
        self.meter = meter
        self.ports = ports
        self.events = events
        self.clock = clock
        # The frame, then one reply area per TCP target (their replies are read
        # concurrently) and one for the RTU port.
        self.buf = bytearray(_BUF + _RX * (_MAX_TCP + 1))
        n = _MAX_TCP + _MAX_RTU
        # Per target (n each, one array per type: each array costs its header):
        # h = state (_ST_*, _CONNECTING), last error, consecutive failures (_H_*),
        # then the MBAP transaction id and the busy flag; c = successes, failures,
        # ticks_ms of the next attempt, then the pushes skipped (due while one was
        # still out).
        self.h = array("H", [0] * (3 * n + 2))
        self.c = array("l", [0] * (3 * n + 1))
        self._streams = [None] * _MAX_TCP       # (reader, writer) per TCP target
        self.inst = None                       # interval_mean only (_M_*)
        self.rounds = 0
        self.silent = False
        self.cfg = None

    # ---- configuration ----
    def configure(self, cfg):
        """Take a validated config; targets whose settings changed start afresh."""
        p = cfg["push"]
        old = self.cfg
        self.cfg = p
        if p["mode"] != "interval_mean":
            if self.inst is not None:          # its 0.7 KB go back to the heap
                self.inst = self.e_hi = self.e_lo = None
        elif self.inst is None:
            self.inst = a = array("i", [0] * _M_LEN)
            mv = memoryview(a)
            self.front = self                  # the view the KSEM space reads (_chunk)
            self.e_hi = mv[_M_EHI:_M_ELO]
            self.e_lo = mv[_M_ELO:]
            self.seq = 0
        else:
            for i in range(_M_HI, _M_EHI):     # the sums start again (not the means:
                self.inst[i] = 0               # a round may still be reading them)
        self._t0 = None
        for i in range(_MAX_TCP):
            t = p["tcp"][i]
            if old is None or old["tcp"][i] != t:
                self._drop(i)
                self.h[i] = _ST_IDLE
                self.h[_H_FAILS + i] = 0
                self.c[2 * _N + i] = self.clock.ticks_ms()
        for j in range(_MAX_RTU):
            if old is None or old["rtu"] != p["rtu"]:
                self.h[_RTU_BASE + j] = _ST_IDLE
                self.h[_H_FAILS + _RTU_BASE + j] = 0
        self.silent = False
        for i in range(_N):
            if self.h[i] & 3 == _ST_ERROR:
                self.silent = True

    def port(self):
        """The RS485 port object of the configured RTU master port, or None."""
        name = self.cfg["rtu"]["port"]
        if name is None or self.ports is None or name not in self.ports.masters:
            return None          # roles are taken at boot: no port with two owners
        return self.ports.rs485.get(name)

    # ---- interval_mean: the sums, the means ----
    def _add(self, snap):
        if snap.status & _ST_STALE:   # zeros while the chip re-initialises: no sample
            return
        a = self.inst
        s = snap.inst
        for i in range(_NV):
            v = s[i]
            a[_M_HI + i] += v >> 15
            a[_M_LO + i] += v & 0x7FFF
        a[_M_N] += 1

    def _finish(self, last):
        """The means of inst (rounded half up) and last's energies into the view."""
        a = self.inst
        e, f = last.e_hi, last.e_lo
        for i in range(_N_COUNTERS):
            a[_M_EHI + i] = e[i]
            a[_M_ELO + i] = f[i]
        self.seq = last.seq
        n = a[_M_N]
        s = last.inst
        for i in range(_NV):
            if not n:
                a[i] = s[i]
                continue
            sh = a[_M_HI + i]
            qh, rh = sh // n, sh % n                # floor: qh * n + rh, 0 <= rh < n
            ql, rl = a[_M_LO + i] // n, a[_M_LO + i] % n
            rest = (rh << 15) + rl                  # < n * 2**15 < 2**30
            q = rest // n
            rest -= q * n
            a[i] = (qh << 15) + ql + q + (1 if rest >= n - rest else 0)
        b = 0
        while n and b < _NV:                       # quadrant of the mean P and Q (a
            p = a[b + _P_MW]                       # range with a step allocates)
            q = a[b + _Q_MVAR]
            a[b + _QUADRANT] = 0 if p == 0 and q == 0 else (
                (1 if q >= 0 else 4) if p >= 0 else (2 if q >= 0 else 3))
            b += _NQ

    def status_now(self):                          # as the meter's (the view)
        return self.meter.status_now()

    # ---- status ----
    def _good(self, i):
        self.c[i] += 1
        self.h[_H_FAILS + i] = 0
        self.h[_H_ERR + i] = 0
        if self.h[i] & 3 == _ST_ERROR:
            self.events.add(self.clock.ticks_ms(), _EV_PUSH_OK, i)
        self.h[i] = _ST_OK

    def _bad(self, i, code):
        now = self.clock.ticks_ms()
        self.c[_N + i] += 1
        self.h[_H_ERR + i] = code
        k = self.h[_H_FAILS + i]
        if k < 0xFFFF:
            self.h[_H_FAILS + i] = k + 1
        if self.h[i] & 3 != _ST_ERROR:
            self.events.add(now, _EV_PUSH_EXCEPTION if code < 0x100 else _EV_PUSH_ERROR, i)
        self.h[i] = _ST_ERROR
        self.silent = True
        # Backoff: timeout_ms for the first `retries` failures, then doubling (60 s max).
        t = self.cfg["timeout_ms"]
        extra = k + 1 - self.cfg["retries"]
        d = t if extra <= 0 else min(t << min(extra, 16), _BACKOFF_MAX_MS)
        self.c[2 * _N + i] = ticks_add(now, d)
        if i < _MAX_TCP:
            self._drop(i)

    # ---- TCP ----
    def _drop(self, i):
        s = self._streams[i]
        self._streams[i] = None
        if s is not None:
            try:
                s[1].close()
            except OSError:
                pass

    async def _connect(self, i, host, port, timeout):
        try:
            try:
                s = await asyncio.wait_for_ms(asyncio.open_connection(host, port), timeout)
            except Exception:                  # refused, unreachable, name, timeout
                self._bad(i, _E_CONNECT)
                return
            t = self.cfg["tcp"][i]
            if t is not None and t["host"] == host and t["port"] == port:   # unchanged
                self._streams[i] = s
            else:
                s[1].close()
        finally:
            self.h[i] &= ~_CONNECTING

    async def _reply(self, i, tid):
        """Read the FC 16 reply (MBAP 7 + 5 bytes) to transaction tid of target i: 0 or
        an error code."""
        r, w = self._streams[i]
        await w.drain()
        o = _BUF + _RX * i
        rx = memoryview(self.buf)[o:o + _RX]
        while True:
            got = 0
            need = 9                          # an exception reply's length
            while got < need:
                c = await r.readinto(rx[got:need])
                if not c:
                    return _E_REPLY             # closed by the slave
                got += c
                if got >= 8 and rx[7] == 16:
                    need = 12
            if (rx[0] << 8 | rx[1]) == tid:
                break
            # A late reply to an earlier request (its round was cancelled): skip it.
        if rx[7] != 16:
            return rx[8] if rx[7] == 0x90 and rx[8] else _E_REPLY
        return 0

    async def _round(self):
        try:
            live = 0
            for i in range(_MAX_TCP):
                if self._streams[i] is not None:       # only enabled slots connect
                    live |= 1 << i
            port = self.port()
            g = self.cfg["groups"]
            for k in range(4):
                if not g[_GROUP_KEYS[k]]:
                    continue
                a, left = _GROUPS[k]
                while left:                  # FC 16 requests of <= 123 registers
                    n = min(left, _FC16_MAX)
                    live = await self._chunk(a, n, live, port)
                    if live < 0:
                        return
                    a += n
                    left -= n
            for i in range(_MAX_TCP):
                if live >> i & 1:
                    self._good(i)
            self.rounds += 1
            s = False
            for i in range(_N):
                if self.h[i] & 3 == _ST_ERROR:
                    s = True
            self.silent = s
        finally:
            self.h[_H_BUSY] = 0        # a push may start again (run())

    async def _chunk(self, a, n, live, port):
        """Registers a..a+n-1 to every live TCP target (bit i of live) and the RTU
        slaves; the targets still live, or -1 when the registers cannot be read."""
        b = self.buf
        sp = self.ports.meas
        if self.inst is not None:
            # The space reads `front` and `status_now()` of its meter: for this one
            # synchronous read, this object, whose front holds the means.
            keep = sp._meter
            sp._meter = self
            try:
                code = sp.read(a, n, b, _HDR)
            finally:
                sp._meter = keep
        else:
            code = sp.read(a, n, b, _HDR)
        if code:
            return -1
        b[7] = 16
        b[8] = a >> 8
        b[9] = a & 0xFF
        b[10] = 0
        b[11] = n
        b[12] = 2 * n
        tcp = self.cfg["tcp"]
        ln = _HDR + 2 * n
        tid = self.h[_H_TID]
        self.h[_H_TID] = (tid + 1) & 0xFFFF
        b[0] = tid >> 8
        b[1] = tid & 0xFF
        b[2] = b[3] = 0
        b[4] = (ln - 6) >> 8
        b[5] = (ln - 6) & 0xFF
        frame = memoryview(b)[:ln]
        for i in range(_MAX_TCP):
            if live >> i & 1:
                b[6] = tcp[i]["unit"]
                try:
                    self._streams[i][1].write(frame)
                except OSError:
                    live &= ~(1 << i)
                    self._bad(i, _E_CONNECT)
        # One request in flight per target (many slaves take no pipelining): every
        # target's reply is awaited in a task of its own, each with the full timeout,
        # so a silent one costs the others nothing but the wait; then the next chunk.
        timeout = self.cfg["timeout_ms"]
        waits = [asyncio.create_task(asyncio.wait_for_ms(self._reply(i, tid), timeout))
                 for i in range(_MAX_TCP) if live >> i & 1]
        if port is not None:
            await self._rtu_chunk(port, ln)
        k = 0
        for i in range(_MAX_TCP):
            if live >> i & 1:
                try:
                    code = await waits[k]          # a task: its exception comes here
                except asyncio.TimeoutError:
                    code = _E_TIMEOUT
                except OSError:
                    code = _E_CONNECT
                except Exception:              # its stream dropped meanwhile (a new
                    code = 0                   # config): not the target's fault
                k += 1
                if code:
                    self._bad(i, code)
                    live &= ~(1 << i)
        for i in range(_MAX_TCP):
            if self._streams[i] is None:       # failed (dropped) in this chunk
                live &= ~(1 << i)
        return live

    # ---- RTU ----
    async def _rtu_chunk(self, port, ln):
        """This chunk (already in the buffer) to every RTU slave of the port."""
        b = self.buf
        now = self.clock.ticks_ms()
        slaves = self.cfg["rtu"]["slaves"]
        for j in range(_MAX_RTU):
            addr = slaves[j]
            i = _RTU_BASE + j
            if not addr or (self.h[i] & 3 == _ST_ERROR
                            and ticks_diff(now, self.c[2 * _N + i]) < 0):
                continue                     # none, or silent: in its backoff
            b[6] = addr
            c = crc.crc16(b, 6, ln)          # RTU ADU: buf[6:ln + 2], CRC low byte first
            b[ln] = c & 0xFF
            b[ln + 1] = c >> 8
            n = ln - 4
            # The bus silent for t3.5 between frames (Modbus over Serial Line 2.5.1.1:
            # 3.5 characters, 1.75 ms fixed above 19200 baud), then drop line noise.
            await asyncio.sleep_ms(max(2, port.char_us * 7 // 2000 + 1))
            mv = memoryview(b)
            while port.read_now(mv[_RX_RTU:]):
                pass
            await port.send(mv[6:], n)
            try:
                code = await asyncio.wait_for_ms(self._rtu_reply(port, addr),
                                                 self.cfg["timeout_ms"])
            except asyncio.TimeoutError:
                code = _E_TIMEOUT
            if code:
                self._bad(i, code)
            else:
                self._good(i)

    async def _rtu_reply(self, port, addr):
        rx = memoryview(self.buf)[_RX_RTU:]
        got = 0
        need = 5
        while got < need:
            got += await port.recv(rx[got:8])
            if got >= 2:
                need = 8 if rx[1] == 16 else 5
        c = crc.crc16(self.buf, _RX_RTU, _RX_RTU + need - 2)
        if rx[0] != addr or rx[need - 2] != c & 0xFF or rx[need - 1] != c >> 8:
            return _E_REPLY
        if rx[1] != 16:
            return rx[2] if rx[1] == 0x90 and rx[2] else _E_REPLY
        return 0

    # ---- the task ----
    async def run(self):
        seq = self.meter.front.seq
        while True:
            await asyncio.sleep_ms(_POLL_MS)
            f = self.meter.front
            if f.seq == seq or self.cfg is None:
                continue
            seq = f.seq
            p = self.cfg
            for k in _GROUP_KEYS:
                if p["groups"][k]:
                    break
            else:
                continue                 # no group to push
            tcp = 0                      # TCP targets to connect now: in tasks of
            now = self.clock.ticks_ms()  # their own, every cycle (connected before
            for i in range(_MAX_TCP):    # the interval ends)
                t = p["tcp"][i]
                if t is None or not t["enabled"]:
                    continue
                tcp = 1
                st = self.h[i]
                if (self._streams[i] is None and not st & _CONNECTING and
                        (st & 3 != _ST_ERROR or ticks_diff(now, self.c[2 * _N + i]) >= 0)):
                    self.h[i] |= _CONNECTING
                    asyncio.create_task(self._connect(i, t["host"], t["port"],
                                                      p["timeout_ms"]))
            if not tcp and (self.port() is None or not any(p["rtu"]["slaves"])):
                continue                 # no target
            mode = self.cfg["mode"]
            if mode != "cycle":
                a = self.inst
                if self._t0 is None:       # the interval starts after this snapshot
                    self._t0 = f.t_ms      # (the sums are zero: configure, or below)
                    continue
                if a is not None:
                    self._add(f)
                if ticks_diff(f.t_ms, self._t0) < self.cfg["interval_s"] * 1000:
                    continue
                self._t0 = f.t_ms
                if a is not None:
                    if not self.h[_H_BUSY]:
                        self._finish(f)
                    for i in range(_M_HI, _M_EHI):     # the next interval's sums
                        a[i] = 0
                if self.h[_H_BUSY]:        # the last push still out: skip this one
                    self.c[_C_SKIPPED] += 1
                    continue
            elif self.h[_H_BUSY]:
                self.c[_C_SKIPPED] += 1
                continue
            # The round runs beside this loop, so every cycle still reaches the mean
            # while slaves answer (or time out).
            self.h[_H_BUSY] = 1
            asyncio.create_task(self._round())

    # ---- the status space (0xD000..0xD1FF, read-only; firmware/modbus/space.py) ----
    def read(self, addr, count, out, off):
        if addr < _STATUS_BASE or addr + count - 1 > _STATUS_END:
            return 2
        for r in range(count):
            a = addr + r - _STATUS_BASE
            i, k = (a - _STATUS_TARGETS) >> 3, (a - _STATUS_TARGETS) & 7
            v = 0
            if a == 0:
                for j in range(_MAX_TCP + _MAX_RTU):
                    v += self.h[j] & 3 == _ST_ERROR
            elif a == 1 or a == 2:
                v = self.rounds >> 16 if a == 1 else self.rounds
            elif a == 3:
                v = _PUSH_MODES.index(self.cfg["mode"]) if self.cfg else 0
            elif a < _STATUS_TARGETS or i >= _MAX_TCP + _MAX_RTU or k > 5:
                pass
            elif k == 0:
                v = self.h[i] & 3
            elif k == 1:
                v = self.h[_H_ERR + i]
            else:
                v = self.c[i if k < 4 else _N + i]
                v = v >> 16 if k & 1 == 0 else v
            out[off + 2 * r] = v >> 8 & 0xFF
            out[off + 2 * r + 1] = v & 0xFF
        return 0

    def write(self, addr, count, src, soff, ctx=None):
        return 2         # read-only: as a read-only config row (regmaps/device.py)

    def close(self):
        for i in range(_MAX_TCP):
            self._drop(i)
