"""Metering-cycle benchmark on the unix port (run by tools/bench.py).

Prints one JSON line: median/p99 time per cycle with the simulator in the loop and with
the recorded SPI replay (driver + engine, and the driver alone: health + read_window),
bytes allocated per steady-state cycle (gc.disable(); gc.mem_alloc() before/after N
cycles, divided by N), SPI frames per cycle, the engine alone (Meter._publish on the
cycle's codes: scale, classify, count, publish); and the same replay figures for the
reference, tools/mpy/ref_ade7880_v1.py (the driver before the fast path) with
tools/mpy/ref_metering_v1.py (the engine before the kernels), measured in this run in
interleaved blocks, with old/new time ratios and the RP2040 projection of the
driver's own work plus the engine.
"""
import gc
import json
import sys
import time
from array import array

from tools.mpy.driver_cycle import SCN, alloc, driver_cycle, setup

N = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
BLOCK = 40          # cycles per interleaved block (a multiple of the replay period 8)
RP2040_X = (60, 90)  # an RP2040 at 125 MHz against this machine (issue 6, item 5)
TARGET_MS = 10       # per cycle on the RP2040


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
    # Bytes the cycle allocates: the simulator's own stepping (which allocates) runs
    # with the collector on, each poll with it off.
    a = 0
    for _ in range(100):
        h.step_to_next_window()
        gc.collect()
        gc.disable()
        a0 = gc.mem_alloc()
        h.meter.poll()
        a += gc.mem_alloc() - a0
        gc.enable()
    return stats(t), a / 100


def block(h, raw, t_de, t_dr, t_en, at):
    for k in range(BLOCK):
        t0 = time.ticks_us()
        h.poll_replayed()
        t_de[at + k] = time.ticks_diff(time.ticks_us(), t0)
    for k in range(BLOCK):
        t0 = time.ticks_us()
        driver_cycle(h, raw)
        t_dr[at + k] = time.ticks_diff(time.ticks_us(), t0)
    # The engine alone on the last polled cycle's codes (this window needs no PHSIGN
    # read, so no SPI frame is taken from the replay: checked in main).
    m = h.meter
    for k in range(BLOCK):
        t0 = time.ticks_us()
        m._publish(0, True)
        t_en[at + k] = time.ticks_diff(time.ticks_us(), t0)


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


def _engine_path():
    from firmware import metering
    return metering.K.__name__.split(".")[-1]


def main():
    sim_stats, alloc_sim = sim_run(N)
    runs = {}
    for name, ref in (("new", False), ("ref", True)):
        h, raw = setup(ref)
        runs[name] = (h, raw)
    nb = max(1, N // BLOCK)
    t = {name: (array("l", [0] * (nb * BLOCK)), array("l", [0] * (nb * BLOCK)),
                array("l", [0] * (nb * BLOCK))) for name in runs}
    spi_at = {name: runs[name][0].chip._spi.i for name in runs}
    for b in range(nb):                 # interleaved: both see the same machine load
        for name in ("new", "ref"):
            h, raw = runs[name]
            block(h, raw, t[name][0], t[name][1], t[name][2], b * BLOCK)
    for name in runs:                   # whole cycles only: the replay is where it began
        if runs[name][0].chip._spi.i != spi_at[name]:
            raise SystemExit("the engine took SPI frames from the replay (%s)" % name)
    out = {"cycles": nb * BLOCK, "with_simulator": sim_stats,
           "alloc_bytes_per_cycle_with_simulator": alloc_sim}
    for name in ("new", "ref"):
        h, raw = runs[name]
        a = alloc(h, raw, 400)
        r = {"driver_engine": stats(t[name][0]), "driver": stats(t[name][1]),
             "engine": stats(t[name][2]),
             "frames_per_cycle": a["frames_per_cycle"],
             "alloc_bytes_per_cycle": a["driver_engine"],
             "alloc_bytes_per_driver_cycle": a["driver_cycle"],
             "spi_errors": a["spi_errors"], "native": getattr(h.chip, "native", False),
             "replay_stub_us": stub_us(h)}
        r["driver_own_us"] = r["driver"]["median_us"] - r["replay_stub_us"]
        own = r["driver_own_us"] + r["engine"]["median_us"]
        r["rp2040"] = {"driver_own_engine_us": own, "factors": RP2040_X,
                       "projected_ms": [own * x / 1000 for x in RP2040_X],
                       "target_ms": TARGET_MS}
        out[name] = r
    new, ref = out["new"], out["ref"]
    # Keys kept from the earlier benchmark (tools/bench.py summary).
    out["frames_per_cycle"] = new["frames_per_cycle"]
    out["driver_engine"] = new["driver_engine"]
    out["alloc_bytes_per_cycle"] = new["alloc_bytes_per_cycle"]
    out["ratio_old_new"] = {
        k: ref[k]["median_us"] / max(1, new[k]["median_us"])
        for k in ("driver", "driver_engine", "engine")}
    out["ratio_old_new"]["driver_own"] = ref["driver_own_us"] / max(1, new["driver_own_us"])
    out["ratio_old_new"]["driver_own_engine"] = (ref["rp2040"]["driver_own_engine_us"] /
                                                 max(1, new["rp2040"]["driver_own_engine_us"]))
    out["engine_native"] = _engine_path()
    print("@@JSON", json.dumps(out))


main()
