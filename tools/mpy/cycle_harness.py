"""Drive the metering cycle on the unix port in virtual time (tests and `make bench`).

    from tools.mpy.cycle_harness import Harness
    h = Harness(scenario_obj)          # SimBoard on a VirtualClock, App, meter started
    h.run_windows(10)                  # advance to each window end, poll the engine
    h.replay()                         # swap the SPI for a recorded cycle (no simulator)
    h.poll_replayed()                  # one cycle of driver + engine only

The replay lets the benchmark and the allocation test measure the driver and the engine
alone: the simulator is a host part and its own allocations are not the firmware's.
"""
from array import array

from boards.sim import scenario as scenario_mod
from boards.sim.board import SimBoard
from boards.sim.clock import VirtualClock
from firmware.app import App


class RecordingSPI:
    def __init__(self, spi):
        self.spi = spi
        self.frames = []

    def write_readinto(self, tx, rx):
        self.spi.write_readinto(tx, rx)
        self.frames.append(bytes(rx))


class ReplaySPI:
    """Answers the driver's frames from a recording, frame by frame and cyclically,
    allocating nothing. A whole-frame copy (C speed, like a hardware SPI) so the
    benchmark times the driver, not the replay; a frame whose length does not match the
    recording (the driver left the recorded sequence) gets what fits, then zeros."""

    def __init__(self, frames):
        self.data = b"".join(frames)
        mv = memoryview(self.data)
        views = []
        p = 0
        for f in frames:
            views.append(mv[p:p + len(f)])
            p += len(f)
        self.views = tuple(views)
        self.i = 0

    def write_readinto(self, tx, rx):
        v = self.views[self.i]
        self.i = self.i + 1 if self.i + 1 < len(self.views) else 0
        n = len(v)
        if n == len(rx):
            rx[:] = v
            return
        for k in range(len(rx)):
            rx[k] = v[k] if k < n else 0


# The replay needs no chip select; a builtin costs what machine.Pin's call costs on a
# board (a C call), not a Python function call.
_no_cs = abs


class Harness:
    def __init__(self, scn, cfg=None, start=True):
        if isinstance(scn, dict):
            scn = scenario_mod.parse(scn)
        self.clock = VirtualClock()
        self.board = SimBoard(scn, clock=self.clock)
        self.app = App(self.board, cfg)
        self.meter = self.app.meter
        self.chip = self.app.chip
        self.sim = self.board.chip
        if start:
            self.meter.start()

    def step_to_next_window(self, max_us=2000000):
        """Advance virtual time to the chip's next window end, let it raise IRQ0."""
        sim = self.sim
        sim.advance()
        nxt = sim.next_event_us()
        now = self.clock.now_us()
        if nxt is None or nxt - now > max_us:
            self.clock.advance_us(max_us)
        else:
            self.clock.advance_us(max(0, nxt - now))
        sim.advance()

    def run_windows(self, n):
        published = 0
        for _ in range(n):
            self.step_to_next_window()
            if self.meter.poll():
                published += 1
        return published

    def advance_ms(self, ms, step_ms=10):
        """Run in small steps like the firmware's poll loop (for timeouts)."""
        for _ in range(ms // step_ms):
            self.clock.advance_us(step_ms * 1000)
            self.sim.advance()
            self.meter.poll()

    def replay(self):
        """Record the SPI traffic of whole cycles, then serve the driver from it. The
        driver's traffic repeats every CYCLE_PERIOD cycles (health() reads CHECKSUM
        every few cycles), so that many are recorded and replayed in turn."""
        period = getattr(type(self.chip), "CYCLE_PERIOD", 1)
        rec = RecordingSPI(self.chip._spi)
        self.chip._spi = rec
        for _ in range(period):
            self.step_to_next_window()
            if not self.meter.poll():
                raise RuntimeError("no window to record")
        self.chip._spi = ReplaySPI(rec.frames)
        self.chip._cs = _no_cs
        self.frames_per_cycle = len(rec.frames) / period

    def poll_replayed(self):
        self.chip.irq_pending = True
        return self.meter.poll()
