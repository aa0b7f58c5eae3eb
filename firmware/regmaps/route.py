"""Routing space: one holding-register space made of several, by address range.

    from firmware.regmaps.route import Routed
    holding = Routed(((0x0000, 0xBFFF, measurements), (0xC000, 0xC3FF, device)))

Each entry is (first address, last address, space) (firmware/modbus/space.py). A read
or write goes to the one space whose range holds all of [addr, addr + count); a range
that crosses two entries or falls in none is 02 (Illegal Data Address, Modbus
Application Protocol v1.1b3, 6.3), as a single space answers an address it lacks.
Routing allocates nothing (the measurement read path passes here).
"""


class Routed:
    def __init__(self, ranges):
        self.ranges = tuple(ranges)

    def _space(self, addr, count):
        last = addr + count - 1
        for lo, hi, sp in self.ranges:
            if lo <= addr <= hi:
                return sp if last <= hi else None
        return None

    def read(self, addr, count, out, off):
        sp = self._space(addr, count)
        if sp is None:
            return 2
        return sp.read(addr, count, out, off)

    def write(self, addr, count, src, soff, ctx=None):
        sp = self._space(addr, count)
        if sp is None:
            return 2
        return sp.write(addr, count, src, soff, ctx)
