"""Counting: the engine's counters against exact references, on both runtimes.

- 10,000 random windows across each energy register's signed range, at CT 5000:5 and
  direct: every counter equals, to the pWh, what the previous engine (scale factors
  in 64-bit products, rounding ke = wh_per_lsb x 1e12 x CT half up) counted, written
  here as an exact Python reference of that algorithm.
"""
import json

import pytest

from conftest import RUNTIMES, run_parallel

KE_DIRECT = 126267100          # pWh per LSB: "1.262671e-04" Wh x 1e12, exact

GEN = r"""
class Gen:                      # xorshift32, the same sequence on every runtime
    def __init__(self, seed):
        self.x = seed
    def next(self):
        x = self.x
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self.x = x
        return x
    def signed(self, bits):
        v = self.next() & ((1 << bits) - 1)
        return v - (1 << bits) if v >> (bits - 1) else v
    def window(self):
        # per phase: WATTHR, FVARHR (signed 32-bit), VAHR (>= 0), and power codes with
        # the same signs (24-bit), as a real window's are
        w = []
        for ph in range(3):
            ep = self.signed(32); eq = self.signed(32); es = self.signed(32) & 0x7FFFFFFF
            k = self.next() % 31 + 1
            w += [ep, eq, es, ep >> (8 + k % 9), eq >> (8 + k % 9), es >> 9]
        return w
"""


def quadrant(p, q):
    if p > 0:
        return 1 if q >= 0 else 4
    if p < 0:
        return 3 if q <= 0 else 2
    return 2 if q > 0 else (4 if q < 0 else 0)


def reference(windows, ke):
    """The previous engine's _count: pWh = LSB x ke, booked by the window's signs."""
    c = [0] * 32
    for w in windows:
        tot = [0, 0, 0]
        for ph in range(3):
            ep, eq, es = (x * ke for x in w[6 * ph:6 * ph + 3])
            book(c, ph * 8, ep, eq, es)
            tot = [tot[0] + ep, tot[1] + eq, tot[2] + es]
        book(c, 24, *tot)
    return c


def book(c, b, ep, eq, es):
    if ep > 0:
        c[b] += ep
    elif ep < 0:
        c[b + 1] += -ep
    quad = quadrant(ep, eq)
    if quad:
        c[b + 1 + quad] += abs(eq)
    if es:
        c[b + (7 if ep < 0 else 6)] += es


AGREE = r"""
def agree(w):
    # Keep windows whose power-register signs are those of the energies, per phase and
    # net: there the old rule (energy signs) and the new (finer quantities) book alike.
    sums = [0] * 6
    for ph in range(3):
        for j in range(6):
            sums[j] += w[6 * ph + j]
    for blk in [w[6 * ph:6 * ph + 6] for ph in range(3)] + [sums]:
        for e, p in ((blk[0], blk[3]), (blk[1], blk[4])):
            if (e > 0) != (p > 0) or (e < 0) != (p < 0):
                return False
    return True
"""


def py_windows(n, seed):
    ns = {}
    exec(GEN + AGREE, ns)
    g = ns["Gen"](seed)
    out = []
    while len(out) < n:
        w = g.window()
        if ns["agree"](w):
            out.append(w)
    return out


FIRMWARE = GEN + AGREE + r"""
import json
from tools.mpy.cycle_harness import Harness
from drivers.ade7880 import RAW_N, R_WATTHR, R_FVARHR, R_VAHR, R_WATT, R_FVAR, R_VA
h = Harness({"phases": {}}, json.loads(CFG), start=False)
m = h.meter
g = Gen(SEED)
n = 0
while n < COUNT:
    w = g.window()
    if not agree(w):
        continue
    n += 1
    for ph in range(3):
        b = ph * RAW_N
        m.raw[b + R_WATTHR], m.raw[b + R_FVARHR], m.raw[b + R_VAHR] = w[6 * ph:6 * ph + 3]
        m.raw[b + R_WATT], m.raw[b + R_FVAR], m.raw[b + R_VA] = w[6 * ph + 3:6 * ph + 6]
    m._publish(0, True)
print("@@JSON", json.dumps({"c": [str(m.energy.pico(i)) for i in range(32)],
      "ke": m.energy.scale}))
"""


def _random_windows_code(ct):
    n, seed = 10000, 0x1234567 + (ct or 0)
    cfg = {"metering": {"ct_enabled": True, "ct_primary_a": ct}} if ct else None
    code = FIRMWARE.replace("CFG", repr(json.dumps(cfg))).replace("SEED", str(seed))
    return n, seed, code.replace("COUNT", str(n))


@pytest.fixture(scope="module")
def random_window_runs():
    """Every (runtime, CT) run of the test below side by side (one process per core),
    once for the module: each parametrized test checks its own."""
    keys = [(rt, ct) for rt in RUNTIMES for ct in (None, 5000)]
    return dict(zip(keys, run_parallel(
        lambda k: RUNTIMES[k[0]](_random_windows_code(k[1])[2], timeout=600), keys)))


@pytest.mark.parametrize("ct", [None, 5000])
def test_counters_bit_for_bit_on_random_windows(mpy_any, ct, random_window_runs):
    n, seed, _ = _random_windows_code(ct)
    res = random_window_runs[("unix" if mpy_any.__name__ == "run_mpy" else "wasm32", ct)]
    ke = KE_DIRECT * (ct or 5) // 5
    assert res["ke"] == ke
    want = reference(py_windows(n, seed), ke)
    assert [int(x) for x in res["c"]] == want
    assert all(want)          # every counter was exercised


def test_atan_table_against_math(mpy):
    """meterk's atan table (integers, so every build agrees) is atan(i/64) in 1e-4 deg."""
    import math
    res = mpy(r"""
import json
from firmware import meterk
print("@@JSON", json.dumps(list(meterk._ATAN)))
""")
    want = [round(math.degrees(math.atan(i / 64)) * 10000) for i in range(65)]
    assert res == want + [want[-1]]


def test_powers_saturate_never_wrap(mpy_any):
    """Codes beyond the unit range (CT 5000:5, full-scale ADC) read +-P_SAT per phase,
    3 x P_SAT in total: small ints on 32 bits, the sign kept."""
    res = mpy_any(r"""
import json
from tools.mpy.cycle_harness import Harness
from drivers.ade7880 import RAW_N, R_WATT, R_FVAR, R_VA, R_VRMS, R_IRMS
from firmware.snapshot import P_SAT
h = Harness({"phases": {}}, {"metering": {"ct_enabled": True, "ct_primary_a": 5000}},
            start=False)
m = h.meter
for ph in range(3):
    b = ph * RAW_N
    m.raw[b + R_WATT] = -(1 << 23) if ph == 0 else (1 << 23) - 1
    m.raw[b + R_FVAR] = 1691230         # full scale PMAX / 16
    m.raw[b + R_VA] = (1 << 23) - 1
    m.raw[b + R_VRMS] = 3766572
    m.raw[b + R_IRMS] = 3766572
m._publish(0, False)
i = m.front.inst
print("@@JSON", json.dumps({"sat": P_SAT, "p": [i[2], i[11], i[20], i[29]],
      "q": [i[3], i[30]], "s": i[31], "i": i[1], "u": i[0]}))
""")
    sat = res["sat"]
    assert sat == (2**30 - 1) // 3
    assert res["p"] == [-sat, sat, sat, sat] and res["q"] == [sat, 3 * sat]
    assert res["s"] == 3 * sat < 2**30
    # current and voltage at full scale are inside the range: 88,388 A primary, 353.9 V
    assert abs(res["i"] - 88388000) < 900 and abs(res["u"] - 353907) < 5   # 7-digit cal
