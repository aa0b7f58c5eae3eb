"""The engine's cycle kernels (firmware/meterk.py, its viper twin meterk_viper.py).

The viper build runs on the unix port (and the boards), the plain one everywhere (the
WebAssembly port has no native emitter): the same inputs go through both on the unix
port and must give the same words; the plain one runs on the 32-bit runtime too, where
it must allocate nothing on the extreme inputs (any intermediate of 2**30 or more would
be a heap-allocated long int there, and would overflow a board's 32-bit viper word).
Truth is computed here with exact rationals: the scaled values from the scale constant
as held, PF, frequency and the ANGLEx angle exactly rounded, the atan2 angle from
math.atan2; the counters against the exact reference of tests/test_counting.py and the
Python general path (Meter._count), LSB for LSB.
"""
import json
import math
import random
import re
from fractions import Fraction
from pathlib import Path

import pytest

from conftest import RUNTIMES, run_parallel
from test_counting import AGREE, GEN, reference

ROOT = Path(__file__).resolve().parent.parent
RAW_N, NQ, TOTAL = 11, 9, 27
P_SAT = (2 ** 30 - 1) // 3
FULL = 3766572


def _consts(rel):
    text = (ROOT / rel).read_text()
    return dict(re.findall(r"^_?(\w+) = const\((-?\w+)\)", text, re.M))


def test_plain_and_viper_kernels_are_the_same_code():
    def body(name):
        text = (ROOT / "firmware" / name).read_text()
        return [ln for ln in text.split("# @@KERNELS", 1)[1].splitlines()
                if ln.strip() != "@micropython.viper"]

    a, b = body("meterk.py"), body("meterk_viper.py")
    assert a == b and len(a) > 300
    assert (ROOT / "firmware" / "meterk_viper.py").read_text().count("@micropython.viper") == 3


def test_viper_source_has_no_long_int_literals():
    """A literal of 2**30 or more is a long-int object on a 32-bit port, which viper
    cannot mix with machine ints (a compile error on the board only)."""
    code = re.sub(r'""".*?"""', "", (ROOT / "firmware/meterk_viper.py").read_text(),
                  flags=re.S)
    code = re.sub(r"#.*", "", code)
    lits = [int(x, 0) for x in re.findall(r"\b(0x[0-9a-fA-F]+|\d+)\b", code)]
    assert lits and max(lits) < 2 ** 30


def test_layout_constants_are_the_driver_and_snapshot_ones():
    k = _consts("firmware/meterk.py")
    drv = _consts("drivers/ade7880.py")
    snap = _consts("firmware/snapshot.py")
    met = _consts("firmware/metering.py")
    assert k["RAW_N"] == drv["RAW_N"] and k["R_VRMS"] == drv["R_VRMS"] == "0"
    for name in ("R_PERIOD", "R_ANGLE", "R_WATTHR"):
        assert k[name] == drv[name]
    # the scale loop writes U..S at raw index j = snapshot index j
    assert [drv[n] for n in ("R_VRMS", "R_IRMS", "R_WATT", "R_FVAR", "R_VA")] == \
        [snap[n] for n in ("U_MV", "I_MA", "P_MW", "Q_MVAR", "S_MVA")] == list("01234")
    assert drv["R_FVARHR"] == "9" and drv["R_VAHR"] == "10"
    for a, b in (("NQ", "NQ"), ("TOTAL", "TOTAL"), ("PF", "PF_E4"), ("ANG", "ANGLE_CDEG"),
                 ("F", "F_MHZ"), ("QUAD", "QUADRANT"), ("NE", "NE"), ("SAT", "P_SAT")):
        assert k[a] == snap[b], a
    assert int(k["FULL"]) == int(drv["RMS_FULL_SCALE"])
    assert k["PEND_MAX"] == met["PEND_MAX"]
    # counter kinds in the order count() books them
    assert [snap[n] for n in ("E_ACTIVE_IMPORT", "E_ACTIVE_EXPORT", "E_REACTIVE_Q1",
                              "E_REACTIVE_Q2", "E_REACTIVE_Q3", "E_REACTIVE_Q4",
                              "E_APPARENT_IMPORT", "E_APPARENT_EXPORT")] == list("01234567")


# ------------------------------------------------------------------ phases(): truth

def scaled(x, k):
    w, m1, m0, xmax = k
    if abs(x) > xmax:
        return P_SAT if x > 0 else -P_SAT
    r = w + Fraction(m1 * 2 ** 14 + m0, 2 ** 28)
    v = math.floor(abs(x) * r + Fraction(1, 2))
    return v if x >= 0 else -v


def pf(a, b):
    if b <= 0:
        return 0
    v = 10000 if abs(a) >= b else math.floor(Fraction(abs(a) * 10000, b) + Fraction(1, 2))
    return -v if a < 0 else v


def quadrant(p, q):
    if p > 0:
        return 1 if q >= 0 else 4
    if p < 0:
        return 3 if q <= 0 else 2
    return 2 if q > 0 else (4 if q < 0 else 0)


def delay_angle(ticks, period, quad):
    a = math.floor(Fraction(min(ticks, period) * 36000, period) + Fraction(1, 2)) % 36000
    if not quad:
        return a
    mid = quad * 9000 - 4500                  # middle of the power signs' quadrant
    d = (a - mid + 18000) % 36000 - 18000
    if abs(d) > 9000:                         # half a period off: the other crossing
        d = (d + 36000) % 36000 - 18000
    return (mid + max(-4500, min(4499, d))) % 36000


def truth(raw, kk, ctl):
    """(inst, return word, angles to compare within 1 unit) of one window."""
    wired, was = ctl & 7, ctl >> 3
    out = [0] * 36
    approx = {}
    live = over = period1 = nlive = 0
    tot = [0] * 5
    codes = [0, 0, 0]
    for ph in range(3):
        if not wired >> ph & 1:
            continue
        r = raw[ph * RAW_N:(ph + 1) * RAW_N]
        blk = ph * NQ
        for j in range(5):
            out[blk + j] = scaled(r[j], kk[min(j, 2) * 4:min(j, 2) * 4 + 4])
            tot[j] += out[blk + j]
        for j in (0, 1):
            if r[j] > FULL:
                over |= (1 + j) << (2 * ph)
        wp, wq, ws = r[2], r[3], r[4]
        codes = [codes[0] + wp, codes[1] + wq, codes[2] + ws]
        out[blk + 5] = pf(wp, ws)
        out[blk + 8] = quad = quadrant(wp, wq)
        u = out[blk]
        if u >= (40000 if was >> ph & 1 else 50000):
            live |= 1 << ph
            nlive += 1
        period = r[6] + 1
        if period > 1 and u > 0:
            out[blk + 7] = math.floor(Fraction(256000000, period) + Fraction(1, 2))
            if not period1:
                period1 = period
                out[TOTAL + 7] = out[blk + 7]
            if ws >= 16384:
                approx[blk + 6] = math.degrees(math.atan2(wq, wp)) % 360 * 100
            else:
                out[blk + 6] = delay_angle(r[7], period, quad)
    lu = sum(out[ph * NQ] for ph in range(3) if live >> ph & 1)
    out[TOTAL] = lu // nlive if nlive else 0
    out[TOTAL + 1:TOTAL + 5] = tot[1:5]
    out[TOTAL + 5] = pf(codes[0], codes[2])
    out[TOTAL + 8] = quadrant(codes[0], codes[1])
    return out, live | over << 3 | period1 << 9, approx


RUN_PHASES = r"""
import gc, json
from array import array
from tools.mpy.cycle_harness import Harness
CASES = json.loads(%r)
KERNELS = [("plain", "firmware.meterk")] + %r
res = {"k": {}, "out": {}, "alloc": {}}
for name, cfg in CASES["cfgs"].items():      # the scale table the config gives the meter
    res["k"][name] = list(Harness({"phases": {}}, cfg, start=False).meter._k)
def run(mod, name):
    out = []
    raw = array("l", [0] * 33)
    inst = array("i", [0] * 36)
    k = array("i", res["k"][name])
    used = 0
    # One collection per run, not per case: with the collector off mem_alloc() still
    # counts every byte a call allocates (mem_alloc() scans the whole heap, so the heap
    # is kept small: 6 MB holds the 2.1 MB of results; at 32 MB this test took a minute)
    gc.collect(); gc.disable()
    for case in CASES["raws"]:
        for j in range(33):
            raw[j] = case[0][j]
        for j in range(36):
            inst[j] = -7            # every slot must be written
        a0 = gc.mem_alloc()
        st = mod.phases(raw, mod.W64, k, inst, case[1])
        used += gc.mem_alloc() - a0
        out.append([st, list(inst)])
    gc.enable()
    return out, used
for kname, modname in KERNELS:
    mod = __import__(modname, None, None, ["x"])
    for name in CASES["cfgs"]:
        o, used = run(mod, name)
        res["out"][kname + "/" + name] = o
        res["alloc"][kname + "/" + name] = used
print("@@JSON", json.dumps(res))
"""

CFGS = {"direct": None,
        "ct5000": {"metering": {"ct_enabled": True, "ct_primary_a": 5000}},
        "ct1": {"metering": {"ct_enabled": True, "ct_primary_a": 1}},
        "ct37": {"metering": {"ct_enabled": True, "ct_primary_a": 37}}}


def phase_cases():
    rnd = random.Random(6)
    cases = []

    def ph(v, i, p, q, s, per, ang):
        return [v, i, p, q, s, 0, per, ang, 0, 0, 0]

    edges = [ph(FULL, FULL, -(1 << 23), (1 << 23) - 1, (1 << 24) - 1, 5119, 1000),
             ph(FULL + 1, FULL + 9, (1 << 23) - 1, -(1 << 23), 1 << 23, 4266, 4266),
             ph(2 ** 24 - 1, 2 ** 24 - 1, 0, 0, 0, 0, 0),
             ph(3, 1, 1, 0, 0, 65535, 65535),
             ph(2000000, 3000, 0, 5, 7, 5119, 2559),         # 90 deg, tiny S: ANGLEx
             ph(2000000, 3000, -5, 0, 7, 5119, 2560),        # 180 deg
             ph(2000000, 3000, 0, -9, 9, 5119, 5119),        # 270 deg
             ph(2000000, 3000, 3, -1, 4, 5119, 5200),        # ticks beyond the period
             ph(2000000, 3000, -16000, 9000, 16383, 5119, 100),   # delay half a period off
             ph(2000000, 3000, 16000, -300, 16384, 5119, 0),      # atan2 from here
             ph(200000, 3000, 5, 5, 0, 5119, 10)]            # S = 0: PF 0
    for e in edges:
        cases.append([e + e + e, 7 | 7 << 3])
        cases.append([e + edges[0] + edges[3], 7])
    for _ in range(300):
        row = []
        for _ in range(3):
            s = rnd.choice([rnd.randrange(0, 1 << 24), rnd.randrange(0, 20000), 0])
            p = rnd.choice([rnd.randrange(-(1 << 23), 1 << 23), rnd.randrange(-s - 1, s + 1),
                            0])
            q = rnd.choice([rnd.randrange(-(1 << 23), 1 << 23), rnd.randrange(-s - 1, s + 1),
                            0])
            per = rnd.choice([rnd.randrange(3800, 5800), 0, 65535, rnd.randrange(0, 65536)])
            row += ph(rnd.choice([rnd.randrange(0, 1 << 24), rnd.randrange(0, 3500000),
                                  rnd.randrange(1500000, 2500000)]),
                      rnd.randrange(0, 1 << 24), p, q, s, per, rnd.randrange(0, per + 50))
        cases.append([row, rnd.randrange(0, 64)])
    return cases


def _check_phases(res, cases, kernels):
    for name in CFGS:
        kk = res["k"][name]
        outs = {kn: res["out"][kn + "/" + name] for kn in kernels}
        for kn in kernels[1:]:
            assert outs[kn] == outs[kernels[0]], (kn, name)     # identical words
        for (raw, ctl), (st, inst) in zip(cases, outs[kernels[0]]):
            want, wst, approx = truth(raw, kk, ctl)
            assert st == wst, (name, raw, ctl)
            for j in range(36):
                if j in approx:
                    d = abs(inst[j] - approx[j])
                    assert min(d, 36000 - d) <= 1, (name, j, raw, inst[j], approx[j])
                else:
                    assert inst[j] == want[j], (name, j, raw, ctl, inst[j], want[j])


def test_phases_against_exact_truth_both_kernels_unix(mpy):
    cases = phase_cases()
    code = RUN_PHASES % (json.dumps({"cfgs": CFGS, "raws": cases}),
                         [("viper", "firmware.meterk_viper")])
    res = mpy(code, timeout=300, heapsize="6m")
    _check_phases(res, cases, ["viper", "plain"])
    assert max(res["alloc"].values()) == 0


def test_phases_plain_on_32_bit_exact_and_allocation_free(mpy32):
    """At CT 5000:5 and 1:5, full-scale and clipped codes, negative powers: every
    intermediate stays a small int (0 bytes) and every value is the exact one."""
    cases = phase_cases()
    res = mpy32(RUN_PHASES % (json.dumps({"cfgs": CFGS, "raws": cases}), []), timeout=300)
    _check_phases(res, cases, ["plain"])
    assert max(res["alloc"].values()) == 0


def test_phases_beyond_the_registers_saturate_alike(mpy):
    """Codes no chip register holds (32-bit extremes): both kernels give the same words,
    the powers saturate with their sign, periods and angles stay in range."""
    ext = [-(2 ** 31), 2 ** 31 - 1, -1, 2 ** 28 + 1, -(2 ** 28) - 1]
    cases = []
    rnd = random.Random(7)
    for _ in range(200):
        cases.append([[rnd.choice(ext) for _ in range(33)], rnd.randrange(0, 64)])
    res = mpy(RUN_PHASES % (json.dumps({"cfgs": CFGS, "raws": cases}),
                            [("viper", "firmware.meterk_viper")]), timeout=300, heapsize="6m")
    for name in CFGS:
        assert res["out"]["viper/" + name] == res["out"]["plain/" + name]
        for (raw, ctl), (st, inst) in zip(cases, res["out"]["plain/" + name]):
            for ph in range(3):
                if ctl >> ph & 1:
                    w = raw[ph * RAW_N + 2]
                    if abs(w) > 2 ** 28:
                        assert inst[ph * NQ + 2] == (P_SAT if w > 0 else -P_SAT)
                    assert 0 <= inst[ph * NQ + 6] < 36000
                    assert abs(inst[ph * NQ + 5]) <= 10000


# ------------------------------------------------------------------- count(): truth

RUN_COUNT = "BITS = @BITS@\n" + GEN.replace("self.signed(32)", "self.signed(BITS)") + \
    AGREE + r"""
import json
from tools.mpy.cycle_harness import Harness
from drivers.ade7880 import RAW_N, R_WATTHR, R_FVARHR, R_VAHR, R_WATT, R_FVAR, R_VA
from firmware import metering
def rand_windows(n, seed):       # test_counting's generator, registers of BITS bits
    g = Gen(seed)
    while n:
        w = g.window()
        if agree(w):
            n -= 1
            yield w
DATA = json.loads(@WIN@)
def WINDOWS():
    return rand_windows(DATA[0], DATA[1]) if DATA[0] else DATA[2]
SG = @SG@
res = {}
for kname, modname in @KERN@:
    metering.K = __import__(modname, None, None, ["x"])
    h = Harness({"phases": {}}, json.loads(@CFG@), start=False)
    m = h.meter
    reads = [0]
    def signs():
        reads[0] += 1
        return SG
    m.chip.phase_signs = signs
    if kname == "general":
        def pub(now, with_energy, m=m):
            m._signs = -2
            m._count_all()
        m._publish = pub
    pend = []
    for w in WINDOWS():
        for ph in range(3):
            b = ph * RAW_N
            m.raw[b + R_WATTHR], m.raw[b + R_FVARHR], m.raw[b + R_VAHR] = w[6 * ph:6 * ph + 3]
            m.raw[b + R_WATT], m.raw[b + R_FVAR], m.raw[b + R_VA] = w[6 * ph + 3:6 * ph + 6]
        m._publish(0, True)
        pend.append(list(m.pending))
    res[kname] = {"c": [str(m.energy.pico(i)) for i in range(32)], "pend": pend[-400:],
                  "reads": reads[0], "e_hi": list(m.front.e_hi), "e_lo": list(m.front.e_lo),
                  "hi": list(m.energy.hi), "lo": list(m.energy.lo)}
print("@@JSON", json.dumps(res))
"""

KE_DIRECT = 126267100


def run_count(run, windows, sg, kernels, cfg, bits=32):
    """windows: a list, or (count, seed) of test_counting's random windows."""
    data = [0, 0, windows] if isinstance(windows, list) else list(windows) + [None]
    code = (RUN_COUNT.replace("@WIN@", repr(json.dumps(data))).replace("@SG@", str(sg))
            .replace("@BITS@", str(bits))
            .replace("@KERN@", repr(kernels)).replace("@CFG@", repr(json.dumps(cfg))))
    return run(code, timeout=600, heapsize="32m") if run.__name__ == "run_mpy" \
        else run(code, timeout=600)


def jitter_windows(n, seed):
    """Windows near zero: LSBs within the pending jitter, zero power registers (PHSIGN
    decides), sign changes, and a few large ones."""
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        w = []
        for _ in range(3):
            e = [rnd.choice([rnd.randint(-6, 6), 0, rnd.randint(-3000, 3000)])
                 for _ in range(2)]
            es = rnd.choice([0, rnd.randint(0, 9), rnd.randint(0, 4000)])
            c = [rnd.choice([0, rnd.randint(-400, 400), rnd.randint(-(1 << 23), 1 << 23)])
                 for _ in range(2)]
            w += e + [es] + c + [rnd.randint(0, 1 << 23)]
        out.append(w)
    return out


@pytest.mark.parametrize("sg", [0, 0x77, 0x21, -1], ids=["pos", "neg", "mixed", "unreadable"])
def test_count_kernels_book_as_the_general_path(mpy, sg):
    """Viper and plain kernels against Meter._count (Python ints) on windows in the
    jitter zone: the same counters, pending LSBs and PHSIGN reads; and counters +
    pending equal, per block, exactly what the windows latched."""
    win = jitter_windows(400, 11 + (sg & 0xFF))
    res = run_count(mpy, win, sg, [("viper", "firmware.meterk_viper"),
                                   ("plain", "firmware.meterk"), ("general", "firmware.meterk")],
                    None)
    g = res["general"]
    for kn in ("viper", "plain"):
        assert res[kn]["c"] == g["c"] and res[kn]["pend"] == g["pend"], kn
        assert res[kn]["reads"] == g["reads"], kn
        assert res[kn]["e_hi"] == res[kn]["hi"] and res[kn]["e_lo"] == res[kn]["lo"]
    if sg != -1:
        assert g["reads"] > 0                    # PHSIGN really decided some windows
    c = [int(x) for x in g["c"]]
    pend = g["pend"][-1]
    for blk in range(4):
        phs = range(3) if blk == 3 else [blk]
        ep = sum(w[6 * p] for w in win for p in phs)
        eq = sum(w[6 * p + 1] for w in win for p in phs)
        es = sum(abs(w[6 * p + 2]) for w in win for p in phs)
        b = 8 * blk
        assert c[b] - c[b + 1] + pend[2 * blk] * KE_DIRECT == ep * KE_DIRECT
        assert (c[b + 2] + c[b + 3] - c[b + 4] - c[b + 5] + pend[2 * blk + 1] * KE_DIRECT
                == eq * KE_DIRECT)
        assert c[b + 6] + c[b + 7] == es * KE_DIRECT


def _agree_windows(n, seed, bits):
    ns = {}
    exec(GEN.replace("self.signed(32)", "self.signed(%d)" % bits) + AGREE, ns)
    g = ns["Gen"](seed)
    out = []
    while len(out) < n:
        w = g.window()
        if ns["agree"](w):
            out.append(w)
    return out


def _random_count_args(run, ct):
    n, seed = 10000, 0x51EE + (ct or 0)
    cfg = {"metering": {"ct_enabled": True, "ct_primary_a": ct}} if ct else None
    kern = [("plain", "firmware.meterk")]
    if run.__name__ == "run_mpy":
        kern.append(("viper", "firmware.meterk_viper"))
    return n, seed, cfg, kern


@pytest.fixture(scope="module")
def random_count_runs():
    """Every (runtime, CT) run of the test below side by side (one process per core),
    once for the module: each parametrized test checks its own."""
    keys = [(rt, ct) for rt in RUNTIMES for ct in (None, 5000)]

    def one(key):
        run = RUNTIMES[key[0]]
        n, seed, cfg, kern = _random_count_args(run, key[1])
        return run_count(run, (n, seed), 0, kern, cfg, bits=28)
    return dict(zip(keys, run_parallel(one, keys)))


@pytest.mark.parametrize("ct", [None, 5000])
def test_count_kernel_exact_on_random_windows(mpy_any, ct, random_count_runs):
    """10,000 random windows with registers across +-2**27 LSBs (the kernel's range; a
    window at full scale latches a few 10**4): counters equal, to the pWh, the exact
    reference of tests/test_counting.py, on the 32-bit runtime too (plain kernel); on
    the unix port the viper kernel gives the same."""
    n, seed, cfg, kern = _random_count_args(mpy_any, ct)
    win = _agree_windows(n, seed, 28)
    rt = "unix" if mpy_any.__name__ == "run_mpy" else "wasm32"
    res = random_count_runs[(rt, ct)]
    want = reference(win, KE_DIRECT * (ct or 5) // 5)
    for kn, _ in kern:
        assert [int(x) for x in res[kn]["c"]] == want, kn
    assert all(want)


RUN_COUNT_ALLOC = r"""
import gc, json
from array import array
from firmware import meterk
from firmware.energy import EnergyRegisters
raw = array("l", [0] * 33)
pend = array("i", [0] * 8)
reg = EnergyRegisters(32)
reg.set_scale(%d)
for ph in range(3):
    b = ph * 11
    raw[b + 8] = %d if ph != 1 else -%d
    raw[b + 9] = -%d
    raw[b + 10] = %d
    raw[b + 2] = -(1 << 23) if ph == 1 else (1 << 23) - 1
    raw[b + 3] = -(1 << 23)
def go(n):
    gc.collect(); gc.disable()
    a0 = gc.mem_alloc()
    r = 0
    for _ in range(n):
        r += meterk.count(raw, meterk.W64, pend, reg, 7, -2)
    used = gc.mem_alloc() - a0
    gc.enable()
    return used, r
used, r = go(50)
print("@@JSON", json.dumps({"bytes": used, "r": r,
      "c": [str(reg.pico(i)) for i in range(32)], "pend": list(pend)}))
"""


def test_count_plain_on_32_bit_at_the_range_edge_allocates_nothing(mpy32):
    """The largest window the kernel takes (2**27 - 1 LSBs per register, three phases
    summed into the total) at the largest scale (CT 5000:5): no long int, exact."""
    e = 2 ** 27 - 1
    ke = KE_DIRECT * 1000
    res = mpy32(RUN_COUNT_ALLOC % (ke, e, e, e, e))
    assert res["bytes"] == 0 and res["r"] == 0 and res["pend"] == [0] * 8
    c = [int(x) for x in res["c"]]
    n = 50
    one = e * ke * n
    # L1 and L3: import, Q4, apparent import; L2: export, Q3, apparent export
    assert [c[i] for i in (0, 5, 6, 9, 12, 15, 16, 21, 22)] == [one] * 9
    # net total: import e, Q4 3e, apparent 3e (import, as P is)
    assert [c[24], c[29], c[30]] == [one, 3 * one, 3 * one]
    assert sum(c) == 16 * one                                       # nothing else moved


def test_count_refuses_beyond_its_range_and_the_general_path_books_it(mpy_any):
    res = mpy_any(RUN_COUNT_ALLOC.replace("used, r = go(50)", "used, r = go(1)")
                  % (KE_DIRECT, 2 ** 27, 5, 5, 5))
    assert res["r"] == 2 and all(x == "0" for x in res["c"])      # nothing changed


# ------------------------------------------- the whole cycle against the engine before

RUN_VS_REF = r"""
import json
from tools.mpy.cycle_harness import Harness
from tools.mpy.ref_metering_v1 import use_ref_engine
SCN = json.loads(%r)
CFG = json.loads(%r)
hs = [Harness(SCN, CFG), Harness(SCN, CFG)]
use_ref_engine(hs[1].meter)
diff = []
n = 0
for k in range(%d):
    got = []
    for h in hs:
        h.step_to_next_window()
        h.meter.poll()
        f = h.meter.front
        got.append([list(f.inst), list(f.e_hi), list(f.e_lo), f.status, f.window_us,
                    [h.meter.energy.pico(i) for i in range(32)], list(h.meter.pending)])
    if got[0] != got[1]:
        diff.append(k)
    n += 1
print("@@JSON", json.dumps({"n": n, "diff": diff, "last": got[0][0],
                            "e": [str(x) for x in got[0][5]]}))
"""


@pytest.mark.parametrize("scn,cfg", [
    ({"frequency_hz": 50.0, "phases": {
        "L1": {"v_rms": 231.0, "i_rms": 12.5, "phi_deg": 184.0},
        "L2": {"v_rms": 229.5, "i_rms": 8.2, "phi_deg": 25.0},
        "L3": {"v_rms": 230.4, "i_rms": 3.1, "phi_deg": 318.0}}}, None),
    ({"frequency_hz": 60.0, "ct_primary_a": 5000, "phases": {
        "L1": {"v_rms": 253.0, "i_rms": 5000.0, "phi_deg": 95.0},
        "L2": {"v_rms": 229.5, "i_rms": 4200.0, "phi_deg": 200.0},
        "L3": {"v_rms": 230.4, "i_rms": 3100.0, "phi_deg": 270.0}}},
     {"metering": {"ct_enabled": True, "ct_primary_a": 5000}}),
    ({"frequency_hz": 50.0, "phases": {      # tiny currents: ANGLEx angles, jitter, PHSIGN
        "L1": {"v_rms": 230.0, "i_rms": 0.05, "phi_deg": 89.99},
        "L2": {"v_rms": 35.0, "i_rms": 0.02, "phi_deg": 180.0},
        "L3": {"v_rms": 230.0, "i_rms": 0.0, "phi_deg": 0.0}}}, None),
], ids=["default", "ct5000_60hz", "near_zero"])
def test_cycle_equals_the_engine_before_the_kernels(mpy_any, scn, cfg):
    """The simulated chip is deterministic in virtual time: the same windows through the
    kernels and through the previous engine (tools/mpy/ref_metering_v1.py, Python ints)
    give the same snapshots, counters and pending LSBs, cycle after cycle."""
    res = mpy_any(RUN_VS_REF % (json.dumps(scn), json.dumps(cfg), 25), timeout=600)
    assert res["n"] == 25 and res["diff"] == []
    assert any(res["last"]) and any(int(x) for x in res["e"])    # it really measured
