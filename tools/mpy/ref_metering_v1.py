"""The metering engine's cycle before the kernels (firmware/meterk.py), kept for
`make bench` only: the same Meter with the previous _publish/_finish (a call per value
through fixmath's functions, copied below), measured in the same run as a reference.

    from tools.mpy.ref_metering_v1 import use_ref_engine
    use_ref_engine(meter)      # this meter now runs the old per-value path
"""
from micropython import const

from drivers.ade7880 import (RAW_N, R_VRMS, R_IRMS, R_WATT, R_FVAR, R_VA,
                             R_PERIOD, R_ANGLE, R_WATTHR, R_FVARHR, R_VAHR, RMS_FULL_SCALE)
from firmware.events import EV_OVERLOAD
from firmware.metering import Meter
from firmware.snapshot import (P_SAT, NQ, N_COUNTERS, TOTAL, U_MV, I_MA, P_MW, Q_MVAR,
                               S_MVA, PF_E4, ANGLE_CDEG, F_MHZ, QUADRANT, ST_CHIP_OK,
                               ST_SINGLE_PHASE, ST_STALE, ST_LIVE_SHIFT, ST_OVERLOAD)

ANGLE_MIN_VA = const(16384)
_PERIOD_CLOCK_MHZ = const(256000000)
_LIVE_MV = const(50000)
_LOST_MV = const(40000)
_KV = const(0)
_KI = const(4)
_KP = const(8)

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


class RefMeter(Meter):
    def _publish(self, now, with_energy):
        raw = self.raw
        b = self.back
        inst = b.inst
        k = self._k
        wired = self._wired
        live = 0
        nlive = 0
        period1 = 0                 # period of the first live phase
        tp = tq = ts = ti = tu = 0
        cp = cq = cs = 0            # power codes summed (net), for the total's class
        nep = neq = nes = 0         # window LSBs summed (net three-phase)
        self._signs = -2            # PHSIGN not read this cycle (read only if needed)
        over = 0                    # inputs beyond full scale: bit 2ph V, 2ph+1 I
        for ph in range(3):
            blk = ph * NQ
            if not wired >> ph & 1:
                for j in range(NQ):
                    inst[blk + j] = 0
                continue
            base = ph * RAW_N
            if raw[base + R_VRMS] > RMS_FULL_SCALE:
                over |= 1 << (2 * ph)
            if raw[base + R_IRMS] > RMS_FULL_SCALE:
                over |= 2 << (2 * ph)
            wp = raw[base + R_WATT]
            wq = raw[base + R_FVAR]
            ws = raw[base + R_VA]
            u = scale(raw[base + R_VRMS], k, _KV)
            i = scale(raw[base + R_IRMS], k, _KI)
            p = scale(wp, k, _KP)
            q = scale(wq, k, _KP)
            s = scale(ws, k, _KP)
            inst[blk + U_MV] = u
            inst[blk + I_MA] = i
            inst[blk + P_MW] = p
            inst[blk + Q_MVAR] = q
            inst[blk + S_MVA] = s
            inst[blk + PF_E4] = pf_e4(wp, ws)
            quad = quadrant(wp, wq)     # codes: finer than the scaled values
            inst[blk + QUADRANT] = quad
            # Live: above 50 V, lost below 40 V (hysteresis against flicker).
            if u >= (_LOST_MV if self.live >> ph & 1 else _LIVE_MV):
                live |= 1 << ph
                nlive += 1
                tu += u
            # f = 256 kHz / (xPERIOD + 1); ANGLEx counts the same clock from the voltage
            # to the current zero crossing (datasheet, period and angle measurement).
            period = raw[base + R_PERIOD] + 1
            if period > 1 and u > 0:
                inst[blk + F_MHZ] = rdiv(_PERIOD_CLOCK_MHZ, period)
                if not period1:
                    period1 = period
                    inst[TOTAL + F_MHZ] = inst[blk + F_MHZ]
                # The power registers resolve the angle to 0.01 degree once S is large
                # enough; below, ANGLEx's half tick (0.035 degree at 50 Hz).
                if ws >= ANGLE_MIN_VA:
                    inst[blk + ANGLE_CDEG] = atan2_cdeg(wq, wp)
                else:
                    inst[blk + ANGLE_CDEG] = angle_from_delay(raw[base + R_ANGLE], period,
                                                              quad)
            else:
                inst[blk + F_MHZ] = 0
                inst[blk + ANGLE_CDEG] = 0
            tp += p
            tq += q
            ts += s
            ti += i
            cp += wp
            cq += wq
            cs += ws
            if with_energy:
                ep = raw[base + R_WATTHR]
                eq = raw[base + R_FVARHR]
                es = raw[base + R_VAHR]
                self._count(ph, wp, wq, ep, eq, es)
                nep += ep
                neq += eq
                nes += es
        inst[TOTAL + U_MV] = tu // nlive if nlive else 0
        inst[TOTAL + I_MA] = ti
        inst[TOTAL + P_MW] = tp
        inst[TOTAL + Q_MVAR] = tq
        inst[TOTAL + S_MVA] = ts
        inst[TOTAL + PF_E4] = pf_e4(cp, cs)
        inst[TOTAL + QUADRANT] = quadrant(cp, cq)
        inst[TOTAL + ANGLE_CDEG] = 0
        if not period1:
            inst[TOTAL + F_MHZ] = 0
        # Window length: LINECYC half cycles of the live phases at the first live
        # phase's period, (xPERIOD + 1) / 256 kHz per cycle (README: its resolution).
        b.window_us = (self.chip.line_cycles * period1 * 125 // 64
                       if with_energy and period1 else 0)
        if with_energy:
            self._count(3, cp, cq, nep, neq, nes)
        self._live_now = live
        status = ST_CHIP_OK if self._chip_ok else 0
        if over:
            # The ADC clipped: U, I, P, Q and S of that phase read low (the chip sees a
            # flattened waveform). One event when it starts; the status bit while it lasts.
            status |= ST_OVERLOAD
            if over & ~self._over:
                self.events.add(now, EV_OVERLOAD, over)
        self._over = over
        if self._wired == 1:          # 1P2W (Meter keeps no single_phase flag)
            status |= ST_SINGLE_PHASE
        if not with_energy:
            status |= ST_STALE
        self._finish(b, now, status | live << ST_LIVE_SHIFT)

    def _finish(self, b, now, status):
        reg = self.energy
        hi, lo = b.e_hi, b.e_lo
        for c in range(N_COUNTERS):
            hi[c] = reg.hi[c]
            lo[c] = reg.lo[c]
        f = self.front
        b.seq = f.seq + 1
        b.t_ms = now
        b.status = status
        b.events = self.events.total
        # Publish: one reference swap, so a reader sees either cycle, never half of two.
        self.back = f
        self.front = b


def use_ref_engine(meter):
    """Route this meter's cycle through the copy above (instance attributes win over
    the class's methods; MicroPython cannot reassign __class__)."""
    meter._publish = lambda now, with_energy: RefMeter._publish(meter, now, with_energy)
    meter._finish = lambda b, now, status: RefMeter._finish(meter, b, now, status)
