"""Integer-only arithmetic of the metering engine, exact on a 32-bit MicroPython.

    from firmware.fixmath import scale, scale_constant, pf_e4, atan2_cdeg, quadrant
    k = array("l", scale_constant(num, den) + ...)   # when the config is applied
    scale(code, k, 0)                                # round(code x num / den), no long int

Every function of the cycle keeps its intermediates below 2**30, so on a 32-bit board
(31-bit small ints) nothing is allocated. A scale r = num/den is held as its integer
part W and its fraction rounded to 28 bits, split in two 14-bit limbs M1, M0:
round(x r) = x W + round(x (M1 2**14 + M0) / 2**28), computed from 14-bit pieces of x.
"""
from micropython import const
from firmware.snapshot import P_SAT   # a phase value's limit: a sum of three stays < 2**30

FRAC_BITS = const(28)
ANGLE_MIN_VA = const(16384)  # xVA codes above which atan2 of the powers beats ANGLEx

# atan(i / 64) in 1e-4 degree, i = 0..64 (and 64 again, so index 64 + 1 is valid).
# Integers so the angle is the same on every build; a test checks it against math.atan.
_ATAN = (0, 8952, 17899, 26838, 35763, 44672, 53558, 62419, 71250, 80047, 88807, 97524,
         106197, 114820, 123391, 131906, 140362, 148757, 157086, 165348, 173540, 181660,
         189704, 197672, 205560, 213369, 221094, 228737, 236294, 243765, 251148, 258444,
         265651, 272768, 279795, 286731, 293578, 300333, 306997, 313571, 320054, 326446,
         332749, 338962, 345085, 351120, 357067, 362926, 368699, 374386, 379987, 385505,
         390939, 396290, 401560, 406749, 411859, 416891, 421844, 426722, 431524, 436252,
         440906, 445489, 450000, 450000)


def quadrant(p, q):
    """1..4 by the half-open rule [k*90, (k+1)*90) degrees, 0 when there is no power:
    P > 0, Q >= 0 is Q1; P <= 0, Q > 0 is Q2; P < 0, Q <= 0 is Q3; P >= 0, Q < 0 is Q4."""
    if p > 0:
        return 1 if q >= 0 else 4
    if p < 0:
        return 3 if q <= 0 else 2
    if q > 0:
        return 2
    if q < 0:
        return 4
    return 0


def rdiv(a, b):
    """a / b rounded half up, b > 0, integers only."""
    return (2 * a + b) // (2 * b)


def scale(x, k, j):
    """round(x * r) for the scale r at k[j..j+3], half away from zero, saturating at
    +-P_SAT; every product stays below 2**30 (no long int on a 32-bit board)."""
    neg = x < 0
    if neg:
        x = -x
    if x > k[j + 3]:
        r = P_SAT
    else:
        x1 = x >> 14
        x0 = x & 0x3FFF
        m1 = k[j + 1]
        m0 = k[j + 2]
        # x * M / 2**28 = x1 m1 + (x1 m0 + x0 m1) / 2**14 + x0 m0 / 2**28, rounded.
        r = x * k[j] + x1 * m1 + ((x1 * m0 + x0 * m1 + ((x0 * m0) >> 14) + 0x2000) >> 14)
    return -r if neg else r


def scale_constant(num, den, limit=P_SAT):
    """[W, fraction high limb, low limb, largest unsaturated code] of the scale num/den.
    ValueError if it cannot be represented. Integers only (long ints allowed: this runs
    when a config is applied, not in the cycle)."""
    w = num // den
    m = ((num - w * den) * (1 << (FRAC_BITS + 1)) + den) // (2 * den)
    if m >> FRAC_BITS:
        w += 1
        m = 0
    if w == 0 and m == 0:
        raise ValueError("rounds to 0 at 2**-28")
    if w > limit:
        raise ValueError("more than %d units per code" % limit)
    # Largest code whose scaled value stays <= limit (monotone in x).
    xmax = min(((limit << FRAC_BITS) + (1 << (FRAC_BITS - 1))) // ((w << FRAC_BITS) + m)
               + 2, (1 << 28) - 1)
    while xmax > 0 and xmax * w + ((xmax * m + (1 << (FRAC_BITS - 1))) >> FRAC_BITS) > limit:
        xmax -= 1
    return [w, m >> 14, m & 0x3FFF, xmax]


def pf_e4(a, b):
    """round(a * 10000 / b) for |a| <= b < 1e8 (codes), sign of a; 0 when b <= 0."""
    if b <= 0:
        return 0
    neg = a < 0
    if neg:
        a = -a
    if a >= b:
        q = 10000
    else:
        q = 0
        for _ in range(4):        # long division by decimal digits: a * 10 < 1e9
            a *= 10
            d = a // b
            a -= d * b
            q = q * 10 + d
        if a >= b - a:
            q += 1
    return -q if neg else q


def atan2_cdeg(q, p):
    """Angle of the vector (p, q) in 0.01 degree, 0..35999 (|p|, |q| < 2**23): octant
    reduction, the ratio to 18 bits by long division, the table interpolated (error
    below 0.0013 degree)."""
    ax = p if p >= 0 else -p
    ay = q if q >= 0 else -q
    if ay > ax:
        mn, mx = ax, ay
    else:
        mn, mx = ay, ax
    if mx == 0:
        return 0
    t = 0
    r = mn
    for _ in range(3):            # 6 bits per step: r << 6 < 2**29
        r <<= 6
        d = r // mx
        r -= d * mx
        t = (t << 6) | d
    i = t >> 12
    lo = _ATAN[i]
    a = lo + (((_ATAN[i + 1] - lo) * (t & 4095)) >> 12)     # 1e-4 degree, 0..45 deg
    if ay > ax:
        a = 900000 - a
    if p < 0:
        a = 1800000 - a
    if q < 0:
        a = 3600000 - a
    return ((a + 50) // 100) % 36000


def angle_from_delay(ticks, period, quad):
    """ANGLEx (256 kHz ticks from the voltage to the current zero crossing) in 0.01
    degree, kept inside the quadrant the power signs give: the register resolves half
    a tick (0.035 degree at 50 Hz), so just below 180 or 360 it can round onto the
    next quadrant's edge; a delay half a period off is folded back by 180 degrees."""
    if ticks > period:
        ticks = period
    a = rdiv(ticks * 36000, period) % 36000
    if not quad:
        return a
    mid = quad * 9000 - 4500
    d = (a - mid + 18000) % 36000 - 18000      # -18000..17999 from the quadrant's middle
    if d > 9000 or d < -9000:
        d = (d + 36000) % 36000 - 18000        # the other half period
    if d < -4500:
        d = -4500
    elif d > 4499:
        d = 4499
    return (mid + d) % 36000
