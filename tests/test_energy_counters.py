"""Integer energy registers on the unix port: no count lost or repeated.

Ten years of 1 s increments is 315,360,000 adds (about 3 min per profile on the unix
port), too long for `make test`; `make soak` runs them in full. Here the real add_lsb()
runs the first and the last two million seconds of the ten years, the last starting
from the exact state that ten years minus two million seconds must have reached
(exact arithmetic on MicroPython's long ints), and every step is checked against the
exact running total. Since add_lsb() depends only on the state and the increment, this
covers every carry pattern the full run meets at those rates.
"""
import pytest

YEAR_S = 365 * 24 * 3600
TEN_YEARS = 10 * YEAR_S

# Increments the engine produces: LSB count x pWh per LSB (config.py default 1.262671e-4
# Wh -> 126267100 pWh). 1 W for 1 s = 1/3600 Wh = 2.2 LSB, 50 kW = 110,000 LSB: the chip
# carries the fraction, so per second the engine sees floor-based LSB counts.
KE = 126267100


def lsb_per_second(watts):
    # Exact rational LSB/s: watts / (wh_per_lsb * 3600) with wh_per_lsb = KE / 1e12.
    return (watts * 10**12, KE * 3600)


CODE = r"""
import json
from firmware.energy import EnergyRegisters, PICO_PER_MILLI
KE = %d
NUM, DEN = %d, %d
def lsb_total(t):          # LSBs the chip hands out in the first t seconds (floor)
    return t * NUM // DEN
def run(r, t0, steps):
    bad = 0
    add = r.add_lsb            # the engine's path: LSBs x the scale
    prev = lsb_total(t0)
    exact = r.pico(0)
    for t in range(t0 + 1, t0 + steps + 1):
        cur = lsb_total(t)
        add(0, cur - prev)
        exact += (cur - prev) * KE
        prev = cur
        if t %% 65536 == 0 and r.pico(0) != exact:
            bad += 1
    return bad, r.pico(0) == exact
r = EnergyRegisters(1)
r.set_scale(KE)
bad1, ok1 = run(r, 0, %d)
r2 = EnergyRegisters(1)
r2.set_scale(KE)
t0 = %d - %d
r2.restore(0, lsb_total(t0) * KE)
bad2, ok2 = run(r2, t0, %d)
end = lsb_total(%d) * KE
print("@@JSON", json.dumps({"ok1": ok1, "bad1": bad1, "ok2": ok2, "bad2": bad2,
      "final": r2.pico(0) == end, "hi": r2.hi[0], "lo": r2.lo[0], "frac": r2.frac[0],
      "milli": r2.milli(0), "end_milli": end // PICO_PER_MILLI}))
"""


@pytest.mark.parametrize("watts", [1, 50000])
def test_ten_years_of_seconds_lose_nothing(mpy, watts):
    num, den = lsb_per_second(watts)
    # At 1 W a second adds 0.28 mWh: two million seconds are needed for the kWh part to
    # carry. At 50 kW (13.9 Wh a second, long ints: twice as slow) it carries every 72 s,
    # so half a million seconds still run about 7,000 kWh carries and every mWh one.
    steps = 2_000_000 if watts == 1 else 500_000
    res = mpy(CODE % (KE, num, den, steps, TEN_YEARS, steps, steps, TEN_YEARS), timeout=300)
    assert res["ok1"] and res["bad1"] == 0
    assert res["ok2"] and res["bad2"] == 0 and res["final"]
    # Exact: the counter shows every whole mWh of the ten years' energy.
    exact_pwh = (TEN_YEARS * num // den) * KE
    assert res["milli"] == exact_pwh // 10**9 == res["end_milli"]
    # And every stored part stays a 31-bit small int on a 32-bit board.
    for part in ("hi", "lo", "frac"):
        assert 0 <= res[part] < 2**30


def test_carries_at_every_boundary(mpy):
    # Increments that land exactly on, just under and over each carry boundary.
    res = mpy(r"""
import json
from firmware.energy import EnergyRegisters
r = EnergyRegisters(3)
exact = 0
fails = []
incs = [0, 1, 999999999, 1, 1000000000, 999999999999999, 1, 10**18 + 7, 123456789, 5]
for k, d in enumerate(incs):
    r.add(1, d)
    exact += d
    if r.pico(1) != exact or not (0 <= r.frac[1] < 10**9 and 0 <= r.lo[1] < 10**6):
        fails.append(k)
print("@@JSON", json.dumps({"fails": fails, "exact": exact, "got": r.pico(1),
      "others": [r.pico(0), r.pico(2)]}))
""")
    assert res["fails"] == []
    assert res["got"] == res["exact"]
    assert res["others"] == [0, 0]


def test_restore_rejects_negative(mpy):
    res = mpy(r"""
import json
from firmware.energy import EnergyRegisters
r = EnergyRegisters(1)
try:
    r.restore(0, -1); msg = None
except ValueError as e:
    msg = str(e)
r.restore(0, 12345678901234567890)
print("@@JSON", json.dumps({"msg": msg, "back": r.pico(0)}))
""")
    assert "negative" in res["msg"]
    assert res["back"] == 12345678901234567890


def test_add_lsb_is_exact_at_every_limb(mpy_any):
    """add_lsb (LSBs x scale by base-10**4 limbs, no long int on 32 bits) against the
    exact product, for scales up to its limit and counts up to 1e10."""
    res = mpy_any(r"""
import json
from firmware.energy import EnergyRegisters, SCALE_MAX, COUNT_MAX
x = 0x2545F491
def rnd(m):
    global x
    x ^= (x << 13) & 0xFFFFFFFF; x ^= x >> 17; x ^= (x << 5) & 0xFFFFFFFF
    return x %% m
bad = 0
for scale in (1, 9999, 10000, 126267100, 126267100000, 999999999999, SCALE_MAX):
    r = EnergyRegisters(1)
    r.set_scale(scale)
    exact = 0
    top = min(COUNT_MAX, 10 ** 21 // scale)    # hi stays < 2**30 kWh (a 32-bit slot)
    for k in range(%d):
        n = (rnd(10000), rnd(100000000), rnd(top + 1), 0, 9999, 10000)[k %% 6] %% (top + 1)
        r.add_lsb(0, n)
        exact += n * scale
        if r.pico(0) != exact or not 0 <= r.frac[0] < 10**9 or not 0 <= r.lo[0] < 10**6:
            bad += 1
print("@@JSON", json.dumps({"bad": bad}))
""" % 600)
    assert res["bad"] == 0
