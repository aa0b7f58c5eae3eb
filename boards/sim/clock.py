"""Clocks for the sim board: one real, one virtual, same interface.

    from boards.sim.clock import VirtualClock, RealClock
    clk = VirtualClock()          # tests: hours of simulated time in no time
    clk.advance_us(1_000_000)
    clk.now_us()                  # -> 1000000, an ever-growing int

`now_us()` never wraps (unlike time.ticks_us), so the simulated chip can do exact
integer arithmetic on absolute times. `ticks_ms()/ticks_us()` return values in the
port's ticks domain so firmware code can keep using time.ticks_diff on them.
"""
import time

_TICKS_MASK = 0x3FFFFFFF  # unix port ticks period is 2**30


class RealClock:
    """Wall clock: monotonic microseconds since construction (plus start_us)."""

    def __init__(self, start_us=0):
        self._last = time.ticks_us()
        self._now = start_us

    def now_us(self):
        # Accumulate ticks_diff so the result keeps growing past the ticks wrap; must be
        # called within half the ticks period (~9 min on the unix port) to stay exact.
        t = time.ticks_us()
        self._now += time.ticks_diff(t, self._last)
        self._last = t
        return self._now

    def ticks_ms(self):
        return time.ticks_ms()

    def ticks_us(self):
        return time.ticks_us()

    def sleep_us(self, n):
        time.sleep_us(n)

    def sleep_ms(self, n):
        time.sleep_ms(n)


class VirtualClock:
    """Simulated time that only moves when told to."""

    def __init__(self, start_us=0):
        if start_us < 0:
            raise ValueError("start_us must be >= 0, got %r" % (start_us,))
        self._now = int(start_us)

    def now_us(self):
        return self._now

    def advance_us(self, n):
        if n < 0:
            raise ValueError("time cannot go backwards (advance_us(%r))" % (n,))
        self._now += int(n)
        return self._now

    def advance_ms(self, n):
        return self.advance_us(int(n) * 1000)

    def ticks_ms(self):
        return (self._now // 1000) & _TICKS_MASK

    def ticks_us(self):
        return self._now & _TICKS_MASK

    # Sleeping on a virtual clock just moves it on.
    def sleep_us(self, n):
        self.advance_us(n)

    def sleep_ms(self, n):
        self.advance_us(int(n) * 1000)
