"""The load curve (Enedis) and the KSEM 5-minute log, on flash rings; the CT checks.

    from firmware.records import Records
    rec = Records(vfs, meter, events, clock, utc, cfg)  # utc() -> s since 1970 or None
    rec.load()                   # at boot: newest records -> next seqs, CT year maximum
    sup.spawn("records", lambda: rec.run(1))   # a step a second: samples, boundaries, writes
    rec.step(utc_s, uptime_s)    # what run() does each second (tests drive it directly)
    rec.record(ch, seq)          # True and rec.buf holds the record (ch LC or KS)
    rec.find(ch, t)              # seq of the first record stamped at or after t

A task, never the metering cycle: each step reads the meter's published snapshot
(meter.front, no allocation) and, at a period boundary, writes one record (a file
open: a few transient objects) to a firmware/ring.py Ring. Records are never in the
heap beyond the one record buffer `buf`. Both layouts are big-endian and ARE the
Modbus record images (firmware/regmaps/rings.py serves them as stored).

Load curve, ring /rec/lc (LC_N = 5,760 records: 40 days at 10 minutes), periods aligned
to UTC (config records.period_min: 5, 10, 15, 30, 60). At each boundary, the total
block's cumulative counters as they are then, so the energy of any interval is the
difference of two records (nothing is lost or counted twice across a cut: the
counters are persisted, firmware/persist.py). Record (74 bytes, 36 registers + CRC):
     0 u32 seq   4 u32 UTC of the boundary (0: untimed)   8 u16 flags   10 u16 period min
    12 u16 x3 average U L1..L3 over the period (10 mV)    18 u16 seconds observed
    20 6 x (u32 kWh, u32 mWh 0..999999): active import, export, reactive Q1..Q4
    68 u16 CT check: the year's largest 5-minute phase current (0.1 A)
    70 u16 its year's first day (days since 1970)          72 CRC (firmware/ring.py)
KSEM log, ring /rec/ks (KS_N = 4,320: 15 days of 5 minutes, KSEM manual 3.5.1, digest
5.1), record (82 bytes, 40 registers + CRC), averages over the period:
     0 u32 seq   4 u32 UTC   8 u16 flags   10 u16 seconds observed
    12 u32 x4 P import L1, L2, L3, total (W)    28 u32 x4 P export (W)
    44 i32 x4 Q (var, Q1/Q2 positive)          60 u16 x3 U (10 mV)
    66 u32 x3 I (10 mA)   78 u16 f (mHz)       80 CRC
P and Q come from the counters' differences over the seconds observed (uptime since
the period's start: true elapsed time even when the clock is set; energy over time); U, I, f from sums of the per-second samples (integers).
Flags: F_INCOMPLETE the period was not wholly observed (boot, clock set, time gained or
lost); F_GAP boundaries were missed before this one (no supply, or the clock jumped
forward); F_UNTIMED no valid time: UTC 0, periods counted from boot; F_CLOCK the clock
was set during the period; F_BOOT the first record since boot.
Stamps only grow: after the clock is set backwards, the next record waits for the
first boundary after the newest one stored (its period flagged), so a time search
(binary, find()) stays valid; untimed records (UTC 0) sort as oldest.

CT checks (Enedis DTR 2.4.3.5.3, digest 4.3; only with metering.ct_enabled): event
ct_over_120 when a phase's current reaches 120 % of the CT's primary ("ne doit en
aucun cas etre atteint"), again after it fell below 110 %; ct_over_110 when it stays
above 110 % for records.ct_sustain_s (default 600 s: the usual 10-minute integration
period, digest 2.1; "depasse de facon durable" gives no time); ct_underused when, over
365 days, the largest 5-minute phase current stayed below the bottom of the CT's
useful range for its class (records.ct_class: 0.2SE 0.2 %, 0.2S 20 %, 0.5 40 % of the
primary: the lower bounds of digest 4.3's formulas).
"""
import struct
from array import array
from micropython import const

from firmware import events as _ev
from firmware.ring import Ring

# Public: firmware/regmaps/rings.py and the tests use them. The rest is private (a
# `_NAME = const()` takes no global slot: the module's dict stays small).
LC = const(0)
KS = const(1)
LC_REC = const(74)
KS_REC = const(82)
KS_PERIOD = const(300)
_LC_N = const(5760)
_KS_N = const(4320)

_F_INCOMPLETE = const(1)
_F_GAP = const(2)
_F_UNTIMED = const(4)
_F_CLOCK = const(8)
_F_BOOT = const(16)

# firmware/snapshot.py: U_MV, I_MA, F_MHZ (quantities), NQ per block, TOTAL (total
# block's first), NE counters per block (tests/test_records.py checks the records
# against the snapshot's own fields)
_U_MV = const(0)
_I_MA = const(1)
_F_MHZ = const(7)
_ST_STALE = const(4)    # a snapshot published without a window (re-init): values zeroed
_NQ = const(9)
_TOTAL = const(27)
_NE = const(8)

_CT_MIN_PERMILLE = const((2, 200, 400))    # bottom of the useful range, per class
_YEAR_DAYS = const(365)
# Indexes of Records.st (per channel: + LC or + KS).
_END = const(0)
_TIMED = const(2)
_FL = const(4)
_T0 = const(6)
_LT = const(8)
_HLT = const(9)
_LU = const(10)
_UPS = const(11)
_UPR = const(12)
_OVER = const(13)
_O120 = const(14)
_YMAX = const(15)
_YDAY = const(16)
_PER = const(17)                # firmware/regmaps/rings.py reads the period here
_RATING = const(18)
_CTMIN = const(19)
_SUST = const(20)
# KSEM: counters at the period start (hi, lo per block x 6 kinds); then sums of
# samples: U x3, I x3, f, n (KS), U x3, n (LC).
_PV = const(21)
_SU = const(69)
_NST = const(81)


class Records:
    def __init__(self, vfs, meter, events, clock, utc, cfg, sizes=(_LC_N, _KS_N)):
        self.meter = meter
        self.events = events
        self.clock = clock
        self.utc = utc
        # the one record buffer; a ring reads and writes whole slots, so a load curve
        # record is a view of its first LC_REC bytes, made only around a file access
        self.buf = bytearray(KS_REC)
        try:
            vfs.mkdir("/rec")
        except OSError:
            pass                                # already there
        self.rings = (Ring(vfs, "/rec/lc", sizes[LC], LC_REC, True),    # sizes: tests
                      Ring(vfs, "/rec/ks", sizes[KS], KS_REC, True))
        # Per channel (LC, KS): newest seq, valid records, newest stored stamp.
        self.seq = [0, 0]
        self.stored = [0, 0]
        self.last = [0, 0]
        # The rest of the state in one int array (one heap object), indexed by the
        # _consts above: per channel the next boundary (0: not started), its time domain
        # (1 UTC, 0 uptime), pending flags, period start (uptime s); the last step's UTC
        # and uptime, uptime s and ms, the CT checks and the config's values; from _PV
        # the KSEM's counters at its period start, from _SU the sums of samples in
        # 10 mV / 10 mA / mHz: an hour of them stays below 2**30 (small ints on a board).
        self.st = array("i", bytes(4 * _NST))
        self.st[_FL + LC] = self.st[_FL + KS] = _F_INCOMPLETE | _F_BOOT
        self.space = None                       # firmware/regmaps/rings.py, when served
        self.apply_config(cfg)

    def apply_config(self, cfg):
        from firmware.config import CT_CLASSES
        r = cfg["records"]
        p = r["period_min"] * 60
        if self.st[_END + LC] and p != self.st[_PER]:
            self.st[_END + LC] = 0                  # restart on the new grid
            self.st[_FL + LC] |= _F_INCOMPLETE
        self.st[_PER] = p               # period s (firmware/regmaps/rings.py reads it here)
        m = cfg["metering"]
        self.st[_RATING] = m["ct_primary_a"] * 1000 if m["ct_enabled"] else 0
        self.st[_CTMIN] = _CT_MIN_PERMILLE[CT_CLASSES.index(r["ct_class"])]
        self.st[_SUST] = r["ct_sustain_s"]

    # ---- boot ----
    def load(self):
        bad = 0
        for ch in (LC, KS):
            newest, n, b = self.rings[ch].load(
                memoryview(self.buf)[:LC_REC] if ch == LC else self.buf, False)
            bad += b
            self.seq[ch] = newest
            self.stored[ch] = n
            if newest and self.record(ch, newest):
                self.last[ch] = struct.unpack_from(">I", self.buf, 4)[0]
                if ch == LC:
                    self.st[_YMAX], self.st[_YDAY] = struct.unpack_from(">HH", self.buf, 68)
        if bad:
            self.events.add(self.clock.ticks_ms(), _ev.EV_RECORD_CORRUPT, min(bad, 255))

    # ---- every second ----
    async def run(self, speed):
        """A step a second. speed > 1 (the host run's RECORDS_SPEED only): the records'
        time runs that many times faster than the meter's, from the UTC at the first
        step; averages then read power / speed (for exercising records and tools)."""
        import asyncio
        import time
        last = self.clock.ticks_ms()
        base = None
        st = self.st
        while True:
            await asyncio.sleep_ms(1000 // speed)
            now = self.clock.ticks_ms()
            d = time.ticks_diff(now, last) * speed + st[_UPR]
            last = now
            st[_UPS] += d // 1000              # uptime s and ms: no long int
            st[_UPR] = d % 1000
            utc = self.utc()
            if speed > 1 and utc is not None:
                if base is None:
                    base = utc - st[_UPS]
                utc = base + st[_UPS]
            self.step(utc, st[_UPS])

    def step(self, utc, up):
        st = self.st
        if utc is not None and st[_HLT]:
            d = (utc - st[_LT]) - (up - st[_LU])
            if d > 2 or d < -2:                 # the clock was set
                for ch in (LC, KS):
                    st[_FL + ch] |= _F_CLOCK | _F_INCOMPLETE
        st[_HLT] = 0 if utc is None else 1
        st[_LT] = utc or 0
        st[_LU] = up
        snap = self.meter.front
        timed = utc is not None
        t = utc if timed else up
        for ch in (LC, KS):                     # each channel's period boundary
            p = st[_PER] if ch == LC else KS_PERIOD
            end = st[_END + ch]
            last = self.last[ch]
            if not end or timed != st[_TIMED + ch]:
                if end:
                    st[_FL + ch] |= _F_INCOMPLETE    # time gained or lost mid-period
                b = t - t % p + p
                if timed and last >= b:         # stamps only grow
                    b = last - last % p + p
                st[_END + ch] = b
                st[_TIMED + ch] = timed
                if end:
                    continue                    # the period goes on, flagged
            else:
                if t < end:
                    continue
                b = t - t % p                   # the newest boundary passed
                if b > end or (timed and last and b - last > p):
                    st[_FL + ch] |= _F_GAP
                if not timed:
                    st[_FL + ch] |= _F_UNTIMED
                self._write(ch, b if timed else 0, up, snap)
                st[_END + ch] = b + p
            # a period starts: uptime (true elapsed time, whatever the clock does), sums
            st[_T0 + ch] = up
            if ch == LC:
                for k in range(_SU + 8, _SU + 12):
                    st[k] = 0
                continue
            for k in range(_SU, _SU + 8):
                st[k] = 0
            for b in range(4):
                for k in range(6):
                    st[_PV + 2 * (b * 6 + k)] = snap.e_hi[b * _NE + k]
                    st[_PV + 2 * (b * 6 + k) + 1] = snap.e_lo[b * _NE + k]
        # this second's sample: the sums, the CT checks. A stale snapshot (the chip
        # being re-initialised: its values are zeros, not a measurement) is no sample:
        # it would pull the period's averages down (n counts the samples taken).
        if snap.status & _ST_STALE:
            return
        inst = snap.inst
        imax = 0
        for ph in range(3):
            u = inst[ph * _NQ + _U_MV] // 10
            i = inst[ph * _NQ + _I_MA]
            st[_SU + ph] += u
            st[_SU + 8 + ph] += u
            st[_SU + 3 + ph] += i // 10
            if i > imax:
                imax = i
        st[_SU + 6] += inst[_TOTAL + _F_MHZ]
        st[_SU + 7] += 1
        st[_SU + 11] += 1
        r = st[_RATING]
        if not r:
            return
        now = self.clock.ticks_ms()
        if imax * 10 >= r * 12:
            if not st[_O120]:
                st[_O120] = 1
                self.events.add(now, _ev.EV_CT_OVER_120, min(255, imax * 100 // r))
        if imax * 10 > r * 11:
            st[_OVER] += 1
            if st[_OVER] == st[_SUST]:
                self.events.add(now, _ev.EV_CT_OVER_110, min(255, st[_SUST] // 60))
        else:
            st[_OVER] = 0
            st[_O120] = 0

    def _write(self, ch, stamp, up, snap):
        b = self.buf
        st = self.st
        seq = self.seq[ch] + 1
        dt = max(1, up - st[_T0 + ch])
        if ch == LC:
            n = st[_SU + 11] or 1
            struct.pack_into(">IIHHHHHH", b, 0, seq, stamp, st[_FL + ch], st[_PER] // 60,
                             st[_SU + 8] // n, st[_SU + 9] // n, st[_SU + 10] // n,
                             min(dt, 65535))
            hi = snap.e_hi
            lo = snap.e_lo
            base = (_TOTAL // _NQ) * _NE
            for k in range(6):
                struct.pack_into(">II", b, 20 + 8 * k, hi[base + k], lo[base + k])
            struct.pack_into(">HH", b, 68, st[_YMAX], st[_YDAY])
        else:
            n = st[_SU + 7] or 1
            struct.pack_into(">IIHH", b, 0, seq, stamp, st[_FL + ch], min(dt, 65535))
            imax = 0
            e = [0] * 6                       # mWh / mvarh over the period (transient)
            for blk in range(4):
                for k in range(6):
                    j = blk * _NE + k
                    i = _PV + 2 * (blk * 6 + k)
                    e[k] = (snap.e_hi[j] - st[i]) * 1000000 + snap.e_lo[j] - st[i + 1]
                # W = mWh x 3.6 / s, rounded half up
                struct.pack_into(">I", b, 12 + 4 * blk, (e[0] * 36 + 5 * dt) // (10 * dt))
                struct.pack_into(">I", b, 28 + 4 * blk, (e[1] * 36 + 5 * dt) // (10 * dt))
                q = e[2] + e[3] - e[4] - e[5]
                struct.pack_into(">i", b, 44 + 4 * blk, (q * 36 + 5 * dt) // (10 * dt))
            for ph in range(3):
                struct.pack_into(">H", b, 60 + 2 * ph, st[_SU + ph] // n)
                i = st[_SU + 3 + ph] // n
                struct.pack_into(">I", b, 66 + 4 * ph, i)
                if i > imax:
                    imax = i
            struct.pack_into(">H", b, 78, st[_SU + 6] // n)
            self._year(stamp, imax // 10)
        ring = self.rings[ch]
        mv = memoryview(b)[:LC_REC] if ch == LC else b
        ring.encode(mv, 0)
        try:
            ring.write(seq, mv)
        except OSError as e:
            self.events.add(self.clock.ticks_ms(), _ev.EV_RECORDS_FAILED,
                            e.args[0] if e.args else 0)
            return
        self.seq[ch] = seq
        self.stored[ch] = min(ring.n, self.stored[ch] + 1)
        self.st[_FL + ch] = 0
        if stamp:
            self.last[ch] = stamp

    def _year(self, utc, a10):
        """The CT's useful range: the year's largest 5-minute phase current (0.1 A)."""
        if a10 > self.st[_YMAX]:
            self.st[_YMAX] = min(a10, 65535)
        if not utc:
            return
        day = utc // 86400
        if not self.st[_YDAY]:
            self.st[_YDAY] = day
        elif day - self.st[_YDAY] >= _YEAR_DAYS:
            r = self.st[_RATING]
            if r and self.st[_YMAX] * 100 * 1000 < r * self.st[_CTMIN]:
                self.events.add(self.clock.ticks_ms(), _ev.EV_CT_UNDERUSED,
                                min(255, self.st[_YMAX] * 100 * 100 // r))
            self.st[_YMAX] = 0
            self.st[_YDAY] = day

    # ---- reading (Modbus, the dump tool) ----
    def oldest(self, ch):
        return self.seq[ch] - self.stored[ch] + 1 if self.stored[ch] else 0

    def record(self, ch, seq):
        """True when record seq of channel ch is stored; it is then in self.buf."""
        return self.rings[ch].read(seq, memoryview(self.buf)[:LC_REC] if ch == LC else self.buf)

    def find(self, ch, t):
        """Seq of the first stored record stamped at or after UTC t (binary search:
        stamps grow, untimed ones sort as oldest); 0 when none."""
        lo = self.oldest(ch)
        hi = self.seq[ch]
        if not lo:
            return 0
        found = 0
        while lo <= hi:
            mid = (lo + hi) // 2
            u = struct.unpack_from(">I", self.buf, 4)[0] if self.record(ch, mid) else 0
            if u >= t and u:
                found = mid
                hi = mid - 1
            else:
                lo = mid + 1
        return found
