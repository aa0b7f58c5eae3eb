"""Bounded event log: what happened to the meter, for the engine, LEDs and Modbus.

    from firmware.events import EventLog
    log = EventLog(16)
    log.add(t_ms, code)
    log.count(code); log.total; log.recent()

Fixed-size ring (no growth) and per-code counters; codes are small ints owned by the
module that raises them (drivers/ade7880.py EV_* for the chip).
"""
from array import array


class EventLog:
    def __init__(self, size=16, ncodes=16):
        self._t = array("l", [0] * size)
        self._code = bytearray(size)
        self._counts = array("l", [0] * ncodes)
        self.total = 0

    def add(self, t_ms, code):
        i = self.total % len(self._code)
        self._t[i] = t_ms
        self._code[i] = code
        if code < len(self._counts):
            self._counts[code] += 1
        self.total += 1

    def count(self, code):
        return self._counts[code]

    def recent(self):
        """Oldest first, as (t_ms, code) pairs (allocates; not for the hot path)."""
        n = len(self._code)
        first = max(0, self.total - n)
        return [(self._t[k % n], self._code[k % n]) for k in range(first, self.total)]
