"""Integer energy registers that never lose or repeat a count.

    from firmware.energy import EnergyRegisters, PICO_PER_MILLI
    regs = EnergyRegisters(32)
    regs.add(i, amount_pico)          # amount in 1e-12 Wh (varh, VAh), >= 0
    regs.milli(i)                     # whole mWh counted so far

Why integers: a float32 counter at 1e6 Wh steps by 0.06 Wh, so small increments vanish
(../shared/design.md). Each register is three small ints: hi (whole kWh), lo (0..999999
mWh) and frac (0..999999999 pWh not yet a whole mWh). Every pWh added is kept: frac
carries the remainder to the next add, so the sum of all adds equals
hi * 1e15 + lo * 1e9 + frac exactly. All three stay below 2**30, which keeps them
MicroPython small ints on a 32-bit board (no heap allocation to update them).
"""
from array import array
from micropython import const

PICO_PER_MILLI = const(1000000000)
MILLI_PER_HI = const(1000000)


class EnergyRegisters:
    def __init__(self, n):
        self.hi = array("l", [0] * n)
        self.lo = array("l", [0] * n)
        self.frac = array("l", [0] * n)

    def add(self, i, pico):
        f = self.frac[i] + pico
        if f >= PICO_PER_MILLI:
            m = f // PICO_PER_MILLI
            f -= m * PICO_PER_MILLI
            lo = self.lo[i] + m
            if lo >= MILLI_PER_HI:
                h = lo // MILLI_PER_HI
                lo -= h * MILLI_PER_HI
                self.hi[i] += h
            self.lo[i] = lo
        self.frac[i] = f

    def milli(self, i):
        return self.hi[i] * MILLI_PER_HI + self.lo[i]

    def pico(self, i):
        """Everything ever added to register i, exactly (a long int; tests, persistence)."""
        return (self.hi[i] * MILLI_PER_HI + self.lo[i]) * PICO_PER_MILLI + self.frac[i]

    def restore(self, i, pico):
        """Set register i to an exact total (from persistence in a later step)."""
        if pico < 0:
            raise ValueError("energy register cannot be negative: %r" % (pico,))
        milli, self.frac[i] = divmod(pico, PICO_PER_MILLI)
        self.hi[i], self.lo[i] = divmod(milli, MILLI_PER_HI)
