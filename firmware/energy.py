"""Integer energy registers that never lose or repeat a count.

    from firmware.energy import EnergyRegisters, PICO_PER_MILLI
    regs = EnergyRegisters(32)
    regs.set_scale(126267100)         # pWh (pvarh, pVAh) per chip LSB, from the config
    regs.add_lsb(i, n)                # n >= 0 chip LSBs: adds n * scale pWh exactly
    regs.add(i, amount_pico)          # or an amount in 1e-12 Wh, >= 0
    regs.milli(i)                     # whole mWh counted so far

Why integers: a float32 counter at 1e6 Wh steps by 0.06 Wh, so small increments vanish
(../shared/design.md). Each register is three small ints: hi (whole kWh), lo (0..999999
mWh) and frac (0..999999999 pWh not yet a whole mWh). Every pWh added is kept: frac
carries the remainder to the next add, so the sum of all adds equals
hi * 1e15 + lo * 1e9 + frac exactly. All three stay below 2**30, which keeps them
MicroPython small ints on a 32-bit board (no heap allocation to update them).

add_lsb multiplies without long ints: the scale (< 1e13 pWh, 10 Wh per LSB) and the
count (< 1e10) are split into base-10**4 limbs, so every partial product and every sum
below stays under 2**30 (a 32-bit board's small-int range). add() of an amount below
2**30 allocates nothing either; larger amounts are exact but use long ints.
"""
from array import array
from micropython import const

PICO_PER_MILLI = const(1000000000)
MILLI_PER_HI = const(1000000)
SCALE_MAX = const(9999999999999)   # pWh per LSB: 4 limbs, top limb < 1000 (see add_lsb)
COUNT_MAX = const(9999999999)      # LSBs per add: 3 limbs, top limb < 100
_B = const(10000)                  # limb base


class EnergyRegisters:
    def __init__(self, n):
        # 4-byte slots on every port ('i'): firmware/meterk_viper.py reads them as words.
        self.hi = array("i", bytes(4 * n))
        self.lo = array("i", bytes(4 * n))
        self.frac = array("i", bytes(4 * n))
        self.limbs = array("i", [0, 0, 0, 0])   # scale in base-10**4 limbs, low first
        self._f = array("i", [0, 0, 0])      # scale = f0 * 1e9 + f1 * 1e5 + f2 (fast path)
        self.scale = 0

    def set_scale(self, pico_per_lsb):
        if not 0 < pico_per_lsb <= SCALE_MAX:
            raise ValueError("energy scale must be 1..%d pWh per LSB, got %r"
                             % (SCALE_MAX, pico_per_lsb))
        k = self.limbs
        v = pico_per_lsb
        for j in range(4):
            k[j] = v % _B
            v //= _B
        f = self._f
        f[0] = pico_per_lsb // PICO_PER_MILLI
        v = pico_per_lsb - f[0] * PICO_PER_MILLI
        f[1] = v // 100000
        f[2] = v - f[1] * 100000
        self.scale = pico_per_lsb

    def add(self, i, pico):
        m = 0
        if pico >= PICO_PER_MILLI:
            m = pico // PICO_PER_MILLI     # not divmod: its tuple would be allocated
            pico -= m * PICO_PER_MILLI
        # frac - 1e9 + pico stays inside +-1e9: no small-int overflow on 32 bits.
        f = self.frac[i] - PICO_PER_MILLI + pico
        if f >= 0:
            m += 1
        else:
            f += PICO_PER_MILLI
        self.frac[i] = f
        if m:
            self._milli(i, m)

    def _milli(self, i, m):
        lo = self.lo[i] + m
        if lo >= MILLI_PER_HI:
            h = lo // MILLI_PER_HI
            lo -= h * MILLI_PER_HI
            self.hi[i] += h
        self.lo[i] = lo

    def add_lsb(self, i, n):
        """Add n (0..COUNT_MAX) LSBs of the scale set by set_scale, exactly."""
        if n < _B:
            # Most windows: n < 1e4, so n * f2 < 1e9 pWh, n * f1 < 1e8 (1e5 pWh units)
            # and n * f0 < 1e8 mWh.
            k = self._f
            m = n * k[0]
            f = self.frac[i] - PICO_PER_MILLI + n * k[2]
            if f >= 0:
                m += 1
                f -= PICO_PER_MILLI
            t = n * k[1]
            if t:
                q = t // 10000
                f += (t - q * 10000) * 100000
                m += q
                if f >= 0:
                    m += 1
                    f -= PICO_PER_MILLI
            self.frac[i] = f + PICO_PER_MILLI
            if m:
                self._milli(i, m)
            return
        k = self.limbs
        k0 = k[0]
        k1 = k[1]
        k2 = k[2]
        k3 = k[3]
        n0 = n % _B
        n = n // _B
        n1 = n % _B
        n2 = n // _B
        # n * scale = sum c_p * 10**(4p); each c_p < 3e8.
        c1 = n0 * k1 + n1 * k0
        c2 = n0 * k2 + n1 * k1 + n2 * k0
        c3 = n0 * k3 + n1 * k2 + n2 * k1
        # pWh parts below 1e9, added one at a time to frac - 1e9 (never past +-1e9).
        m = 0
        f = self.frac[i] - PICO_PER_MILLI + n0 * k0
        if f >= 0:
            m += 1
            f -= PICO_PER_MILLI
        if c1:
            q = c1 // 100000          # c1 * 1e4 pWh = q mWh + (c1 % 1e5) * 1e4 pWh
            f += (c1 - q * 100000) * 10000
            m += q
            if f >= 0:
                m += 1
                f -= PICO_PER_MILLI
        if c2:
            q = c2 // 10              # c2 * 1e8 pWh = q mWh + (c2 % 10) * 1e8 pWh
            f += (c2 - q * 10) * 100000000
            m += q
            if f >= 0:
                m += 1
                f -= PICO_PER_MILLI
        self.frac[i] = f + PICO_PER_MILLI
        q = 0
        if c3:
            q = c3 // 1000            # c3 * 1e12 pWh = q kWh + (c3 % 1000) * 1e3 mWh
            m += (c3 - q * 1000) * 1000
        if not m and not q:
            return
        if n1 or n2:                # c4 * 1e16 pWh = 10 c4 kWh; c5 * 1e20 = 1e5 c5 kWh
            q += (n1 * k3 + n2 * k2) * 10 + n2 * k3 * 100000
        lo = self.lo[i] + m
        if lo >= MILLI_PER_HI:
            h = lo // MILLI_PER_HI
            lo -= h * MILLI_PER_HI
            q += h
        self.lo[i] = lo
        if q:
            self.hi[i] += q

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
