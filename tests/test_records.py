"""Load curve and KSEM 5-minute log (firmware/records.py) on flash rings (firmware/ring.py),
over simulated days with a fake clock: boundaries, averages against the counters,
clock set forwards and backwards, power cut, untimed, ring wrap, torn record, CT checks.

The truth is independent of the firmware: a model load of known constant powers drives
the snapshot's counters (energy = power x time, exact integers) and the records must give
back those powers. The pure parts run on both runtimes over an in-memory filesystem;
littlefs (unix port) once for the real file layer.
"""
import struct

import pytest

LIB = r"""
import json, struct
from firmware import config
from firmware.records import Records, LC, KS
from firmware.snapshot import Snapshot, NQ, NE, U_MV, I_MA, F_MHZ, TOTAL
from firmware.events import EventLog

class MemFile:
    def __init__(self, fs, name, data):
        self.fs = fs; self.name = name; self.b = bytearray(data); self.pos = 0
    def readinto(self, buf):
        n = min(len(buf), len(self.b) - self.pos)
        for i in range(n):
            buf[i] = self.b[self.pos + i]
        self.pos += n
        return n
    def write(self, d):
        e = self.pos + len(d)
        if e > len(self.b):
            self.b.extend(bytes(e - len(self.b)))
        for i in range(len(d)):
            self.b[self.pos + i] = d[i]
        self.pos = e
        return len(d)
    def seek(self, p):
        self.pos = p
    def close(self):
        self.fs.files[self.name] = bytes(self.b)
    def __enter__(self):
        return self
    def __exit__(self, *a):
        self.close()

class MemFs:
    def __init__(self):
        self.files = {}
    def mkdir(self, p):
        pass
    def open(self, name, mode):
        if mode == "wb":
            return MemFile(self, name, b"")
        if name not in self.files:
            raise OSError(2)
        return MemFile(self, name, self.files[name])

class Clk:
    def ticks_ms(self):
        return 0

class World:
    # Constant powers per phase (W, import positive) and reactive (var): the counters
    # are energy = power x supplied time, exact in mWh (P multiples of 36 W).
    def __init__(self, p=(1800, 720, -360), q=(360, -180, -72), u=(230100, 229900, 231000),
                 i=(5000, 3000, 1500), f=50010):
        self.p = p; self.q = q; self.u = u; self.i = i; self.f = f
        self.s = 0
        self.snap = Snapshot()
        self.front = self.snap
        self.fill()
    def fill(self):
        sn = self.snap
        tot = [0] * NE
        for ph in range(3):
            sn.inst[ph * NQ + U_MV] = self.u[ph]
            sn.inst[ph * NQ + I_MA] = self.i[ph]
            e = [0] * NE
            p, q = self.p[ph], self.q[ph]
            e[0 if p >= 0 else 1] = abs(p) * self.s * 10 // 36
            quad = (2 if q >= 0 else 5) if p >= 0 else (3 if q >= 0 else 4)
            e[quad] = abs(q) * self.s * 10 // 36
            for k in range(NE):
                sn.e_hi[ph * NE + k] = e[k] // 1000000
                sn.e_lo[ph * NE + k] = e[k] % 1000000
                tot[k] += e[k]
        for k in range(NE):
            sn.e_hi[3 * NE + k] = tot[k] // 1000000
            sn.e_lo[3 * NE + k] = tot[k] % 1000000
        sn.inst[TOTAL + F_MHZ] = self.f
    def advance(self, dt):
        self.s += dt
        self.fill()

def new(fs, w, cfg=None, sizes=None):
    ev = EventLog(32)
    c = config.validate(cfg or {}, {"v_per_code": 1, "i_per_code": 1, "w_per_code": 1,
                                    "wh_per_lsb": 1, "gains": [[0, 0, 0]] * 3,
                                    "phcal": [0, 0, 0]})
    kw = {"sizes": sizes} if sizes else {}
    r = Records(fs, w, ev, Clk(), None, c, **kw)
    r.load()
    return r, ev

def run(r, w, utc, up, seconds, step=5, supply=True):
    # utc None: no valid time; returns the utc and uptime reached
    for _ in range(seconds // step):
        if supply:
            w.advance(step)
        utc = None if utc is None else utc + step
        up += step
        r.step(utc, up)
    return utc, up

def dump(r):
    out = []
    for ch in (LC, KS):
        lst = []
        for s in range(r.oldest(ch), r.seq[ch] + 1):
            lst.append(bytes(r.buf[:r.rings[ch].rec]).hex() if r.record(ch, s) else None)
        out.append(lst)
    return out
"""

T0 = 1700000123          # not on a boundary


def lc(h):
    b = bytes.fromhex(h)
    seq, utc, fl, pmin, u1, u2, u3, cov = struct.unpack_from(">IIHHHHHH", b, 0)
    e = [struct.unpack_from(">II", b, 20 + 8 * k) for k in range(6)]
    return {"seq": seq, "utc": utc, "fl": fl, "pmin": pmin, "u": (u1, u2, u3), "cov": cov,
            "e": [hi * 1000000 + lo for hi, lo in e]}


def ks(h):
    b = bytes.fromhex(h)
    seq, utc, fl, cov = struct.unpack_from(">IIHH", b, 0)
    return {"seq": seq, "utc": utc, "fl": fl, "cov": cov,
            "pi": struct.unpack_from(">4I", b, 12), "pe": struct.unpack_from(">4I", b, 28),
            "q": struct.unpack_from(">4i", b, 44), "u": struct.unpack_from(">3H", b, 60),
            "i": struct.unpack_from(">3I", b, 66), "f": struct.unpack_from(">H", b, 78)[0]}


INC, GAP, UNT, CLK, BOOT = 1, 2, 4, 8, 16


def test_day_boundaries_averages_powercut(mpy_any):
    """Six hours, a 70-minute power cut, three more hours: stamps on the UTC grid,
    averages = counter differences / period = the model's powers, the gap flagged and
    the energy across it equal to what was supplied (nothing lost or counted twice)."""
    code = LIB + r"""
fs = MemFs()
w = World()
r, ev = new(fs, w)
utc, up = run(r, w, %d, 0, 6 * 3600)
s_before = w.s
# power cut: 70 minutes without supply, then a new boot on the same flash
utc += 4200
r2, ev2 = new(fs, w)
first = [r2.seq[LC], r2.seq[KS]]
utc, up = run(r2, w, utc, 0, 3 * 3600)
print("@@JSON", json.dumps({"d": dump(r2), "first": first, "s": w.s}))
""" % T0
    res = mpy_any(code)
    L = [lc(h) for h in res["d"][0]]
    K = [ks(h) for h in res["d"][1]]
    assert len(L) == 6 * 6 + 3 * 6            # every boundary passed with supply
    boot2 = res["first"][0] + 1
    for a, b in zip(L, L[1:]):
        assert b["seq"] == a["seq"] + 1 and b["utc"] > a["utc"]
        assert b["utc"] % 600 == 0
        if b["seq"] == boot2:
            assert b["fl"] == BOOT | INC | GAP and b["utc"] - a["utc"] == 600 * 8
            # energy across the cut: what was supplied, no more
            assert b["e"][0] - a["e"][0] < 600 * 2520 * 10 // 36 + 1
            continue
        assert b["fl"] == 0 and b["utc"] - a["utc"] == 600 and b["pmin"] == 10
        # average P+ total over the period from the counter difference: 1800 + 720 W
        assert (b["e"][0] - a["e"][0]) * 36 // 10 // 600 == 2520
        assert (b["e"][1] - a["e"][1]) * 36 // 10 // 600 == 360
        # per quadrant (var): Q1 360 (L1), Q4 180 (L2), Q3 72 (L3)
        q = [(b["e"][k] - a["e"][k]) * 36 // 10 // 600 for k in range(2, 6)]
        assert q == [360, 0, 72, 180]
        assert b["u"] == (23010, 22990, 23100) and b["cov"] == 600
    assert L[0]["fl"] & (BOOT | INC) == BOOT | INC
    # total energy of all records = model energy over the supplied seconds between them
    assert L[-1]["e"][0] - L[0]["e"][0] <= res["s"] * 2520 * 10 // 36
    for k in K:
        assert k["utc"] % 300 == 0
        if k["fl"]:
            continue
        assert k["pi"] == (1800, 720, 0, 2520) and k["pe"] == (0, 0, 360, 360)
        assert k["q"] == (360, -180, -72, 108)
        assert k["u"] == (23010, 22990, 23100) and k["i"] == (500, 300, 150)
        assert k["f"] == 50010 and k["cov"] == 300
    assert sum(1 for k in K if k["fl"] & GAP) == 1


def test_clock_set_untimed_wrap_find_torn(mpy_any):
    code = LIB + r"""
fs = MemFs()
w = World()
r, ev = new(fs, w, sizes=(30, 20))
utc, up = run(r, w, None, 0, 1500)              # no time yet: untimed
utc, up = run(r, w, %d, up, 3600)                # time set
utc, up = run(r, w, utc + 3600, up, 1800)        # clock set forward one hour
utc, up = run(r, w, utc - 2700, up, 5400)        # backward 45 minutes
utc, up = run(r, w, utc, up, 5 * 3600, step=10)  # wrap both rings
d = dump(r)
t = struct.unpack_from(">I", bytes.fromhex(d[0][10]), 4)[0]
found = [r.find(LC, t), r.find(LC, t - 1), r.find(LC, 0), r.find(LC, 2 ** 31)]
n = r.seq[LC]
# torn newest record: half rewritten
name = r.rings[LC]._name(((n - 1) %% 30) // r.rings[LC].per)
b = bytearray(fs.files[name])
o = (((n - 1) %% 30) %% r.rings[LC].per) * 74
for i in range(o + 30, o + 74):
    b[i] = 0xA5
fs.files[name] = bytes(b)
r2, ev2 = new(fs, w, sizes=(30, 20))
print("@@JSON", json.dumps({"d": d, "found": found, "seq": [r.seq[LC], r.seq[KS]],
      "stored": [r.stored[LC], r.stored[KS]], "after": [r2.seq[LC], r2.stored[LC]],
      "bad": ev2.count(21)}))
""" % T0
    res = mpy_any(code)
    L = [lc(h) for h in res["d"][0]]
    assert res["stored"] == [30, 20] and len(L) == 30 and len(res["d"][1]) == 20
    assert all(h is not None for h in res["d"][0] + res["d"][1])
    stamps = [x["utc"] for x in L]
    assert stamps == sorted(stamps) and len(set(stamps)) == 30
    assert res["found"][0] == L[10]["seq"] and res["found"][1] == L[10]["seq"]
    assert res["found"][2] == L[0]["seq"] and res["found"][3] == 0
    assert res["after"] == [res["seq"][0] - 1, 29] and res["bad"] == 1


def test_clock_flags_and_untimed(mpy_any):
    code = LIB + r"""
fs = MemFs()
w = World()
r, ev = new(fs, w)
utc, up = run(r, w, None, 0, 1500)
utc, up = run(r, w, %d, up, 3600)
utc, up = run(r, w, utc + 3600, up, 1800)
utc, up = run(r, w, utc - 2700, up, 5400)
print("@@JSON", json.dumps({"d": dump(r)}))
""" % T0
    L = [lc(h) for h in mpy_any(code)["d"][0]]
    unt = [x for x in L if x["fl"] & UNT]
    assert len(unt) == 2 and all(x["utc"] == 0 for x in unt)     # 1500 s from boot
    timed = [x for x in L if x["utc"]]
    assert timed[0]["fl"] & INC and timed[0]["utc"] % 600 == 0
    st = [x["utc"] for x in timed]
    assert st == sorted(st) and len(set(st)) == len(st)             # stamps only grow
    fwd = [x for x in timed if x["fl"] & CLK and x["fl"] & GAP]
    assert len(fwd) == 1
    back = [x for x in timed if x["fl"] & CLK and not x["fl"] & GAP]
    assert len(back) == 1
    # after the backward step no record until the clock passed the newest stamp again
    i = timed.index(back[0])
    assert back[0]["utc"] - timed[i - 1]["utc"] == 600
    # the energy between any two records is the supplied time's: counters never jump
    for a, b in zip(L, L[1:]):
        assert 0 <= b["e"][0] - a["e"][0] <= (b["cov"] + 5) * 2520 * 10 // 36 + 1


def test_ct_checks(mpy_any):
    code = LIB + r"""
fs = MemFs()
w = World(i=(115000, 3000, 1500))
r, ev = new(fs, w, {"metering": {"ct_enabled": True, "ct_primary_a": 100}})
utc, up = run(r, w, %d, 0, 590, step=1)
a = [ev.count(40), ev.count(41)]
utc, up = run(r, w, utc, up, 20, step=1)
b = [ev.count(40), ev.count(41)]
w.i = (121000, 0, 0); w.fill()
utc, up = run(r, w, utc, up, 30, step=1)
w.i = (50000, 0, 0); w.fill()
utc, up = run(r, w, utc, up, 5, step=1)
w.i = (125000, 0, 0); w.fill()
utc, up = run(r, w, utc, up, 5, step=1)
c = [ev.count(40), ev.count(41)]
# the useful range (0.2S: 20 %% of 100 A): a year whose largest 5-minute current is 19 A
YMAX, YDAY = 15, 16          # firmware/records.py: _YMAX, _YDAY in Records.st
r.st[YMAX] = 0; r.st[YDAY] = 0
r._year(%d, 190)
r._year(%d + 364 * 86400, 150)
d = ev.count(42)
r._year(%d + 365 * 86400, 150)
e = [ev.count(42), r.st[YMAX]]
r.st[YMAX] = 0; r.st[YDAY] = 0
r._year(%d, 210)
r._year(%d + 366 * 86400, 10)
print("@@JSON", json.dumps({"a": a, "b": b, "c": c, "d": d, "e": e, "f": ev.count(42)}))
""" % ((T0,) + (T0,) * 3 + (T0,) * 2)
    res = mpy_any(code)
    assert res["a"] == [0, 0] and res["b"] == [1, 0]     # 600 s above 110 %
    assert res["c"] == [1, 2]                            # 120 % twice, re-armed below 110 %
    assert res["d"] == 0 and res["e"] == [1, 0] and res["f"] == 1


def test_littlefs_rings(mpy):
    """The real file layer: littlefs on the sim flash (RP2040 size), segments, reload."""
    code = LIB + r"""
import os
from boards.sim.blockdev import SimFlash
flash = SimFlash(352)
os.VfsLfs2.mkfs(flash)
fs = os.VfsLfs2(flash)
w = World()
r, ev = new(fs, w)
utc, up = run(r, w, %d, 0, 12 * 3600, step=10)
r2, ev2 = new(fs, w)
names = sorted(os.listdir("/") if False else fs.ilistdir("/rec"))
print("@@JSON", json.dumps({"seq": [r.seq[LC], r.seq[KS]], "again": [r2.seq[LC], r2.seq[KS],
      r2.stored[LC], r2.last[LC] == r.last[LC]], "files": len(names),
      "d": dump(r2)[0][-3:], "bad": ev2.count(21)}))
""" % T0
    res = mpy(code)
    assert res["seq"] == [72, 144] and res["again"] == [72, 144, 72, True]
    assert res["files"] == 2 + 3 and res["bad"] == 0     # 55 LC / 49 KS per 4 KB segment
    L = [lc(h) for h in res["d"]]
    assert [x["utc"] % 600 for x in L] == [0, 0, 0]


def test_registers_window_select(mpy_any):
    """0xCC00 / 0xCE00: header, window as stored, select by index and by time, errors,
    and a steady read that allocates nothing."""
    code = LIB + r"""
import gc
from firmware.regmaps.rings import RingsSpace
fs = MemFs()
w = World()
r, ev = new(fs, w)
utc, up = run(r, w, %d, 0, 3 * 3600, step=10)
sp = RingsSpace(r)
def regs(a, n):
    out = bytearray(2 * n)
    e = sp.read(a, n, out, 0)
    return e or [int.from_bytes(out[i:i + 2], "big") for i in range(0, 2 * n, 2)]
def wr(a, vals):
    return sp.write(a, len(vals), b"".join(v.to_bytes(2, "big") for v in vals), 0)
res = {"lh": regs(0xCC00, 16), "lw": regs(0xCC10, 72), "kh": regs(0xCE00, 16),
       "kw": regs(0xCE10, 80)}
r.record(LC, 5)
res["rec5"] = bytes(r.buf[:72]).hex()
res["sel"] = wr(0xCC06, [0, 5])
res["w5"] = regs(0xCC10, 72)
t = res["w5"][2] << 16 | res["w5"][3]
res["tsel"] = [wr(0xCC08, [(t - 1) >> 16, (t - 1) & 0xFFFF]), regs(0xCC06, 4)]
res["errs"] = [regs(0xCC00, 89), regs(0xCE00, 97), regs(0xD000, 1), wr(0xCC00, [1]),
               wr(0xCC06, [0, 999]), wr(0xCC08, [0xFFFF, 0xFFFF]), wr(0xCC07, [0, 0]),
               regs(0xCC58, 1), len(regs(0xCC57, 1)), len(regs(0xCE5F, 1)), regs(0xCE60, 1)]
out = bytearray(192)
sp.read(0xCE00, 96, out, 0)
def steady():
    gc.collect(); gc.disable()
    a0 = gc.mem_alloc()
    for _ in range(20):
        sp.read(0xCE00, 96, out, 0)
    a = gc.mem_alloc() - a0
    gc.enable()
    return a
res["alloc"] = steady()
print("@@JSON", json.dumps(res))
""" % T0
    res = mpy_any(code)
    h = res["lh"]
    assert h[0] == 18 and (h[1] << 16 | h[2]) == 18 and h[3] == 5760
    assert (h[4] << 16 | h[5]) == 1 and h[10:13] == [600, 2, 36] and h[13:] == [0] * 3
    k = res["kh"]
    assert k[0] == 36 and k[3] == 4320 and k[10:13] == [300, 2, 40]
    # default window: the newest two, as stored
    lw = res["lw"]
    assert (lw[0] << 16 | lw[1]) == 17 and (lw[36] << 16 | lw[37]) == 18
    kw = res["kw"]
    assert (kw[0] << 16 | kw[1]) == 35 and kw[6:14] == [0, 1800, 0, 720, 0, 0, 0, 2520]
    w5 = res["w5"]
    assert bytes.fromhex(res["rec5"]) == b"".join(v.to_bytes(2, "big") for v in w5[:36])
    t = w5[2] << 16 | w5[3]
    assert res["tsel"][0] == 0 and res["tsel"][1] == [0, 5, (t - 1) >> 16, (t - 1) & 0xFFFF]
    assert res["errs"] == [2, 2, 2, 2, 3, 3, 2, 2, 1, 1, 2]
    assert res["alloc"] == 0


def test_stale_snapshots_are_no_samples(mpy_any):
    """A snapshot the meter publishes while it re-initialises the chip (ST_STALE, its
    values zeroed) is not a measurement: the averages of U, I and f stay those of the
    samples taken (under load the host run once averaged L1 at 226 V: one zeroed sample
    in 60), while the energies still come from the counters."""
    code = LIB + r"""
from firmware.snapshot import ST_STALE
fs = MemFs()
w = World()
r, ev = new(fs, w)
utc, up = run(r, w, %d, 0, 600)           # aligned, clean periods first
for k in range(60):                       # one 5-minute period, 1 s steps
    w.advance(1)
    utc += 1
    up += 1
    stale = k %% 7 == 3
    if stale:                             # what Meter._publish_stale leaves
        for i in range(len(w.snap.inst)):
            w.snap.inst[i] = 0
        w.snap.status = ST_STALE
    r.step(utc, up)
    if stale:
        w.snap.status = 0
        w.fill()
utc, up = run(r, w, utc, up, 900)
print("@@JSON", json.dumps({"d": dump(r)}))
""" % T0
    res = mpy_any(code)
    K = [ks(h) for h in res["d"][1]]
    full = [k for k in K if not k["fl"]]
    assert len(full) >= 3
    for k in full:
        assert k["u"] == (23010, 22990, 23100) and k["i"] == (500, 300, 150), k
        assert k["f"] == 50010 and k["pi"] == (1800, 720, 0, 2520), k
