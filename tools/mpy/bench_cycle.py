"""Metering-cycle benchmark on the unix port (run by tools/bench.py).

Prints one JSON line: median/p99 time per cycle with the simulator in the loop and with
the recorded SPI replay (driver + engine only), and bytes allocated per steady-state
cycle (gc.disable(); gc.mem_alloc() before/after N cycles, divided by N).
"""
import gc
import json
import sys
import time
from array import array

from tools.mpy.cycle_harness import Harness

N = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
SCN = {"frequency_hz": 50.0, "phases": {
    "L1": {"v_rms": 231.0, "i_rms": 12.5, "phi_deg": 184.0},
    "L2": {"v_rms": 229.5, "i_rms": 8.2, "phi_deg": 25.0},
    "L3": {"v_rms": 230.4, "i_rms": 3.1, "phi_deg": 318.0}}}


def stats(t):
    s = sorted(t)
    return {"median_us": s[len(s) // 2], "p99_us": s[len(s) * 99 // 100], "n": len(s)}


h = Harness(SCN)
h.run_windows(5)
# 1) with the simulator: time the engine's poll only (the chip's window end is
#    computed in advance() before the timer starts, but SPI frames still run the sim).
t_sim = array("l", [0] * N)
for k in range(N):
    h.step_to_next_window()
    t0 = time.ticks_us()
    h.meter.poll()
    t_sim[k] = time.ticks_diff(time.ticks_us(), t0)


def alloc_of(fn, n):
    # In a function: new module globals would grow the globals dict and be counted.
    gc.collect()
    gc.disable()
    a0 = gc.mem_alloc()
    for k in range(n):
        fn()
    a1 = gc.mem_alloc()
    gc.enable()
    return a1 - a0


def sim_cycle():
    h.step_to_next_window()
    h.meter.poll()


alloc_sim = alloc_of(sim_cycle, 100) / 100

# 2) driver + engine alone on a recorded cycle.
h.replay()
for k in range(10):
    h.poll_replayed()
t_rep = array("l", [0] * N)
for k in range(N):
    t0 = time.ticks_us()
    h.poll_replayed()
    t_rep[k] = time.ticks_diff(time.ticks_us(), t0)
alloc = alloc_of(h.poll_replayed, N)
print("@@JSON", json.dumps({
    "cycles": N, "frames_per_cycle": h.frames_per_cycle,
    "with_simulator": stats(t_sim), "alloc_bytes_per_cycle_with_simulator": alloc_sim,
    "driver_engine": stats(t_rep), "alloc_bytes_per_cycle": alloc / N,
    "alloc_bytes_total": alloc}))
