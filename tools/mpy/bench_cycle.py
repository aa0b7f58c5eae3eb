"""Metering-cycle benchmark on the unix port (run by tools/bench.py).

Prints one JSON line: median/p99 time per cycle with the simulator in the loop and with
the recorded SPI replay (driver + engine, and the driver alone: health + read_window),
bytes allocated per steady-state cycle (gc.disable(); gc.mem_alloc() before/after N
cycles, divided by N), SPI frames per cycle; and the same replay figures for
tools/mpy/ref_ade7880_v1.py (the driver before the fast path), measured in this run in
interleaved blocks, with old/new time ratios.
"""
import gc
import json
import sys
import time
from array import array

from tools.mpy.driver_cycle import SCN, alloc, driver_cycle, setup

N = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
BLOCK = 40          # cycles per interleaved block (a multiple of the replay period 8)


def stats(t):
    s = sorted(t)
    return {"median_us": s[len(s) // 2], "p99_us": s[len(s) * 99 // 100], "n": len(s)}


def sim_run(n):
    from tools.mpy.cycle_harness import Harness
    h = Harness(SCN)
    h.run_windows(5)
    # The chip's window end is computed in advance() before the timer starts, but SPI
    # frames still run the simulator.
    t = array("l", [0] * n)
    for k in range(n):
        h.step_to_next_window()
        t0 = time.ticks_us()
        h.meter.poll()
        t[k] = time.ticks_diff(time.ticks_us(), t0)
    gc.collect()
    gc.disable()
    a0 = gc.mem_alloc()
    for _ in range(100):
        h.step_to_next_window()
        h.meter.poll()
    a = gc.mem_alloc() - a0
    gc.enable()
    return stats(t), a / 100


def block(h, raw, t_de, t_dr, at):
    for k in range(BLOCK):
        t0 = time.ticks_us()
        h.poll_replayed()
        t_de[at + k] = time.ticks_diff(time.ticks_us(), t0)
    for k in range(BLOCK):
        t0 = time.ticks_us()
        driver_cycle(h, raw)
        t_dr[at + k] = time.ticks_diff(time.ticks_us(), t0)


def stub_us(h, reps=101):
    """Median time per cycle of the replay's own calls (CS twice + write_readinto per
    frame) on a copy of the recording: on a board that is C (machine.SPI/Pin), here
    Python, so it is subtracted to show the driver's own work."""
    from tools.mpy.cycle_harness import ReplaySPI
    views = h.chip._spi.views
    spi = ReplaySPI([bytes(v) for v in views])
    bufs = [bytearray(len(v)) for v in views]
    cs = h.chip._cs
    n = int(h.frames_per_cycle)
    t = array("l", [0] * reps)
    for r in range(reps):
        spi.i = 0
        t0 = time.ticks_us()
        for i in range(n):
            cs(0)
            spi.write_readinto(bufs[i], bufs[i])
            cs(1)
        t[r] = time.ticks_diff(time.ticks_us(), t0)
    return stats(t)["median_us"]


def main():
    sim_stats, alloc_sim = sim_run(N)
    runs = {}
    for name, ref in (("new", False), ("ref", True)):
        h, raw = setup(ref)
        runs[name] = (h, raw)
    nb = max(1, N // BLOCK)
    t = {name: (array("l", [0] * (nb * BLOCK)), array("l", [0] * (nb * BLOCK)))
         for name in runs}
    for b in range(nb):                 # interleaved: both see the same machine load
        for name in ("new", "ref"):
            h, raw = runs[name]
            block(h, raw, t[name][0], t[name][1], b * BLOCK)
    out = {"cycles": nb * BLOCK, "with_simulator": sim_stats,
           "alloc_bytes_per_cycle_with_simulator": alloc_sim}
    for name in ("new", "ref"):
        h, raw = runs[name]
        a = alloc(h, raw, 400)
        r = {"driver_engine": stats(t[name][0]), "driver": stats(t[name][1]),
             "frames_per_cycle": a["frames_per_cycle"],
             "alloc_bytes_per_cycle": a["driver_engine"],
             "alloc_bytes_per_driver_cycle": a["driver_cycle"],
             "spi_errors": a["spi_errors"], "native": getattr(h.chip, "native", False),
             "replay_stub_us": stub_us(h)}
        r["driver_own_us"] = r["driver"]["median_us"] - r["replay_stub_us"]
        out[name] = r
    new, ref = out["new"], out["ref"]
    # Keys kept from the earlier benchmark (tools/bench.py summary).
    out["frames_per_cycle"] = new["frames_per_cycle"]
    out["driver_engine"] = new["driver_engine"]
    out["alloc_bytes_per_cycle"] = new["alloc_bytes_per_cycle"]
    out["ratio_old_new"] = {
        k: ref[k]["median_us"] / max(1, new[k]["median_us"]) for k in ("driver", "driver_engine")}
    out["ratio_old_new"]["driver_own"] = ref["driver_own_us"] / max(1, new["driver_own_us"])
    print("@@JSON", json.dumps(out))


main()
