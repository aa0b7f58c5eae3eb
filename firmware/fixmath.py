"""Integer scale constants of the metering engine, exact on a 32-bit MicroPython.

    from firmware.fixmath import scale_constant
    k = array("i", scale_constant(num, den) + ...)   # when the config is applied

A scale r = num/den is held as its integer part W and its fraction rounded to 28 bits,
split in two 14-bit limbs M1, M0, with the largest code that does not saturate:
round(x r) = x W + round(x (M1 2**14 + M0) / 2**28), computed from 14-bit pieces of x
so that every product stays below 2**30 (firmware/meterk.py phases(), once per value
per cycle).
"""
from micropython import const
from firmware.snapshot import P_SAT   # a phase value's limit: a sum of three stays < 2**30

_FRAC_BITS = const(28)


def scale_constant(num, den, limit=P_SAT):
    """[W, fraction high limb, low limb, largest unsaturated code] of the scale num/den.
    ValueError if it cannot be represented. Integers only (long ints allowed: this runs
    when a config is applied, not in the cycle)."""
    w = num // den
    m = ((num - w * den) * (1 << (_FRAC_BITS + 1)) + den) // (2 * den)
    if m >> _FRAC_BITS:
        w += 1
        m = 0
    if w == 0 and m == 0:
        raise ValueError("rounds to 0 at 2**-28")
    if w > limit:
        raise ValueError("more than %d units per code" % limit)
    # Largest code whose scaled value stays <= limit (monotone in x).
    xmax = min(((limit << _FRAC_BITS) + (1 << (_FRAC_BITS - 1))) // ((w << _FRAC_BITS) + m)
               + 2, (1 << 28) - 1)
    while xmax > 0 and xmax * w + ((xmax * m + (1 << (_FRAC_BITS - 1))) >> _FRAC_BITS) > limit:
        xmax -= 1
    return [w, m >> 14, m & 0x3FFF, xmax]
