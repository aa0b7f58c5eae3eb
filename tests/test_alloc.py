"""Allocation of the metering cycle, in bytes (stable, unlike timings), on both runtimes.

The driver and engine run on a recorded cycle of SPI traffic (tools/mpy/cycle_harness.py
ReplaySPI), so the simulator's own allocations are not counted: on a board the SPI bus
is hardware. gc.disable(); gc.mem_alloc() before and after N cycles, inside a function.
Windows export on L1 and import on L2 and L3, at the top of the CT range (5000:5, rated
currents) and at 63 A direct; on the 32-bit runtime every intermediate above 2**30
would be a heap-allocated long int.
"""
import pytest

CT = {"frequency_hz": 50.0, "ct_primary_a": 5000, "phases": {
    "L1": {"v_rms": 253.0, "i_rms": 5000.0, "phi_deg": 184.0},
    "L2": {"v_rms": 229.5, "i_rms": 4200.0, "phi_deg": 25.0},
    "L3": {"v_rms": 230.4, "i_rms": 3100.0, "phi_deg": 318.0}}}
CT_CFG = {"metering": {"ct_enabled": True, "ct_primary_a": 5000}}
DIRECT = {"frequency_hz": 50.0, "phases": {
    "L1": {"v_rms": 231.0, "i_rms": 63.0, "phi_deg": 184.0},
    "L2": {"v_rms": 229.5, "i_rms": 63.0, "phi_deg": 25.0},
    "L3": {"v_rms": 230.4, "i_rms": 3.1, "phi_deg": 318.0}}}

HEAD = r"""
import gc, json
from tools.mpy.cycle_harness import Harness
h = Harness(json.loads(%r), json.loads(%r))
h.run_windows(3)
"""

MEASURE = r"""
def measure(fn, n):
    # Inside a function: new module globals would grow the globals dict and count.
    ok = 0
    gc.collect(); gc.disable()
    a0 = gc.mem_alloc()
    for _ in range(n):
        if fn():
            ok += 1
    a1 = gc.mem_alloc()
    gc.enable()
    return a1 - a0, ok
"""


def _json(x):
    import json
    return json.dumps(x)


@pytest.mark.parametrize("scn,cfg", [(CT, CT_CFG), (DIRECT, None)], ids=["ct5000", "direct63"])
def test_engine_cycle_allocates_nothing(mpy_any, scn, cfg):
    """The engine's part of a cycle (scale, classify, count, publish) on real windows."""
    res = mpy_any(HEAD % (_json(scn), _json(cfg)) + MEASURE + r"""
m = h.meter
e0 = [m.energy.pico(i) for i in range(32)]
def engine():
    m._publish(0, True)
    return True
used, ok = measure(engine, 200)
moved = [m.energy.pico(i) - e0[i] for i in range(32)]
print("@@JSON", json.dumps({"bytes": used, "ok": ok, "moved": moved,
      "p": [m.front.inst[9 * b + 2] for b in range(4)]}))
""")
    assert res["ok"] == 200 and res["bytes"] == 0
    # export on L1, import on L2 and L3: the counters really moved that way
    mv = res["moved"]
    assert mv[1] > 0 and mv[0] == 0 and mv[8] > 0 and mv[16] > 0
    assert res["p"][0] < 0 < res["p"][1] and res["p"][2] > 0


def test_energy_register_add_allocates_nothing(mpy_any):
    res = mpy_any(r"""
import gc, json
from firmware.energy import EnergyRegisters
r = EnergyRegisters(2)
r.set_scale(126267100 * 1000)        # CT 5000:5
r.add(1, 999999999)
""" + MEASURE + r"""
def adds():
    r.add_lsb(0, 34000)
    r.add(1, (1 << 30) - 1)
    return True
used, ok = measure(adds, 300)
print("@@JSON", json.dumps({"bytes": used, "p0": r.pico(0), "p1": r.pico(1)}))
""")
    assert res["bytes"] == 0
    assert res["p0"] == 300 * 34000 * 126267100000
    assert res["p1"] == 999999999 + 300 * ((1 << 30) - 1)


@pytest.mark.parametrize("scn,cfg", [(CT, CT_CFG), (DIRECT, None)], ids=["ct5000", "direct63"])
def test_steady_state_cycle_allocates_nothing(mpy_any, scn, cfg):
    """Driver + engine, the whole steady-state cycle, on both runtimes."""
    res = mpy_any(HEAD % (_json(scn), _json(cfg)) + MEASURE + r"""
h.replay()
for _ in range(5):
    h.poll_replayed()
seq0 = h.meter.front.seq
e0 = h.meter.energy.pico(0) + h.meter.energy.pico(1)
used, ok = measure(h.poll_replayed, 500)
print("@@JSON", json.dumps({"bytes": used, "ok": ok, "seq": h.meter.front.seq - seq0,
      "energy_moved": h.meter.energy.pico(0) + h.meter.energy.pico(1) != e0}))
""")
    # The cycles really ran (published, counted energy) and allocated nothing.
    assert res["ok"] == 500 and res["seq"] == 500 and res["energy_moved"]
    assert res["bytes"] == 0
