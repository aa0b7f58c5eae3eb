"""The ADE7880 driver's share of a metering cycle, on a recorded replay (bench and tests).

    from tools.mpy.driver_cycle import setup, alloc
    h, raw = setup(ref=False)     # Harness on the simulator, then replaying whole cycles
    alloc(h, raw, 100)            # bytes allocated per driver cycle / read_window / cycle

Runs on the unix port and on the 32-bit WebAssembly port. ref=True swaps in
tools/mpy/ref_ade7880_v1.py (the driver before the fast path) and
tools/mpy/ref_metering_v1.py (the engine's cycle before the kernels) for comparison.
A driver cycle is what the engine asks of the chip each window: health() then
read_window(raw); on the replay that consumes exactly one poll's frames.
"""
import gc
from array import array

from drivers.ade7880 import RAW_N
from tools.mpy.cycle_harness import Harness

SCN = {"frequency_hz": 50.0, "phases": {
    "L1": {"v_rms": 231.0, "i_rms": 12.5, "phi_deg": 184.0},
    "L2": {"v_rms": 229.5, "i_rms": 8.2, "phi_deg": 25.0},
    "L3": {"v_rms": 230.4, "i_rms": 3.1, "phi_deg": 318.0}}}


def use_ref(h):
    from tools.mpy.ref_ade7880_v1 import ADE7880 as Ref
    old = h.chip
    ref = Ref(h.board.spi, h.board.cs, irq0=h.sim.irq0, line_cycles=old.line_cycles,
              zx_phases=old.zx_phases, sixty_hz=old.sixty_hz, gains=old.gains,
              phcal=old.phcal)
    h.chip = h.app.chip = h.meter.chip = ref


def setup(ref=False, scn=None, windows=5):
    h = Harness(scn or SCN, start=False)
    if ref:
        use_ref(h)
        from tools.mpy.ref_metering_v1 import use_ref_engine
        use_ref_engine(h.meter)
    h.meter.start()
    h.run_windows(windows)
    h.replay()
    raw = array("l", [0] * (3 * RAW_N))
    for _ in range(2 * getattr(type(h.chip), "CYCLE_PERIOD", 1)):
        h.poll_replayed()
    return h, raw


def driver_cycle(h, raw):
    chip = h.chip
    chip.irq_pending = True
    chip.health()
    return chip.read_window(raw)


def _bytes(fn, a, b, n):
    # In a function: new module globals would grow the globals dict and be counted.
    gc.collect()
    gc.disable()
    a0 = gc.mem_alloc()
    for _ in range(n):
        fn(a, b)
    a1 = gc.mem_alloc()
    gc.enable()
    return a1 - a0


def _poll(h, _):
    h.poll_replayed()


def alloc(h, raw, n):
    """Bytes per call: driver cycle (health + read_window), driver + engine (poll).
    n should be a multiple of the driver's CYCLE_PERIOD (the replay's length)."""
    out = {"driver_cycle": _bytes(driver_cycle, h, raw, n) / n,
           "driver_engine": _bytes(_poll, h, None, n) / n,
           "frames_per_cycle": h.frames_per_cycle, "spi_errors": h.chip.spi_errors}
    return out


def main(n=96):
    import json
    import sys
    res = {"bits": 64 if sys.maxsize > 2 ** 31 else 32}
    for name, ref in (("new", False), ("ref", True)):
        h, raw = setup(ref)
        res[name] = alloc(h, raw, n)
    print("@@JSON", json.dumps(res))
