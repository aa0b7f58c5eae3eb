"""Allocation of the metering cycle, in bytes (stable, unlike timings).

The driver and engine run on a recorded cycle of SPI traffic (tools/mpy/cycle_harness.py
ReplaySPI), so the simulator's own allocations are not counted: on a board the SPI bus
is hardware. gc.disable(); gc.mem_alloc() before and after N cycles.
"""


def test_steady_state_cycle_allocates_nothing(mpy):
    res = mpy(r"""
import gc, json
from tools.mpy.cycle_harness import Harness
h = Harness({"frequency_hz": 50.0, "phases": {
    "L1": {"v_rms": 231.0, "i_rms": 12.5, "phi_deg": 184.0},
    "L2": {"v_rms": 229.5, "i_rms": 8.2, "phi_deg": 25.0},
    "L3": {"v_rms": 230.4, "i_rms": 3.1, "phi_deg": 318.0}}})
h.run_windows(3)
h.replay()
for _ in range(5):
    h.poll_replayed()
seq0 = h.meter.front.seq
e0 = h.meter.energy.pico(0) + h.meter.energy.pico(1)
def measure(n):
    # Inside a function: new module globals would grow the globals dict and count.
    ok = 0
    gc.collect(); gc.disable()
    a0 = gc.mem_alloc()
    for _ in range(n):
        if h.poll_replayed():
            ok += 1
    a1 = gc.mem_alloc()
    gc.enable()
    return a1 - a0, ok
used, ok = measure(500)
print("@@JSON", json.dumps({"bytes": used, "ok": ok, "seq": h.meter.front.seq - seq0,
      "energy_moved": h.meter.energy.pico(0) + h.meter.energy.pico(1) != e0}))
""")
    # The cycles really ran (published, counted energy) and allocated nothing.
    assert res["ok"] == 500 and res["seq"] == 500 and res["energy_moved"]
    assert res["bytes"] == 0
