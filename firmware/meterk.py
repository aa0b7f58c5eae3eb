"""Metering-cycle kernels, plain build: the engine's per-cycle arithmetic in three calls.

    from firmware import meterk                  # metering.py takes meterk_viper if it compiles
    st = meterk.phases(raw, meterk.W64, k, snap.inst, wired | live << 3)
    r = meterk.count(raw, meterk.W64, pending, energy, wired, -2)   # 1: read PHSIGN, call again
    meterk.copy32(snap.e_hi, energy.hi, 32)

One loop over the phases per call instead of a call per value: scaling (fixmath's
14-bit limbs), PF, quadrant, angle, frequency, liveness, then the energy classes and
the exact counter adds. meterk_viper.py holds the same functions under
@micropython.viper (rp2, esp32, unix: machine words, no bytecode dispatch); this file
runs where the port has no native emitter (the WebAssembly port). ptr32 is the identity
here, where indexing the array itself reads the same value; W64 is 0 (raw is indexed
by slot). Arrays passed as ptr32 are 4-byte ('i'), except raw (the driver's array('l'):
8-byte slots on a 64-bit port, read by their low word and sign-extended there).
"""
from micropython import const

W64 = 0     # plain indexing: no 8-byte slots to step over


def ptr32(b):
    return b


# @@KERNELS: from here on meterk.py and meterk_viper.py hold the same code
# (tests/test_meterk.py); every intermediate stays below 2**30, so plain bytecode on a
# 32-bit port allocates nothing and a board's 32-bit viper words never overflow.

# Raw window layout (drivers/ade7880.py R_*, RAW_N; tests/test_meterk.py checks it) and
# snapshot layout (firmware/snapshot.py; U..S in the order the scale loop writes them).
_RAW_N = const(11)
_R_VRMS = const(0)
_R_PERIOD = const(6)
_R_ANGLE = const(7)
_R_WATTHR = const(8)
_NQ = const(9)
_TOTAL = const(27)
_PF = const(5)
_ANG = const(6)
_F = const(7)
_QUAD = const(8)
_NE = const(8)
_FULL = const(3766572)      # drivers/ade7880.py RMS_FULL_SCALE: ADC clipped above
_SAT = const(357913941)     # firmware/snapshot.py P_SAT
_CODE_MAX = const(268435456)   # 2**28: codes are clamped here (registers hold 24 bits)
_E_MAX = const(134217727)   # energies above 2**27 - 1 LSBs per window: general path
_MIN_VA = const(16384)      # xVA codes above which atan2 of the powers beats ANGLEx
_LIVE_MV = const(50000)     # a phase is live from 50 V up ...
_LOST_MV = const(40000)     # ... and lost below 40 V
_PEND_MAX = const(4)        # LSBs a block may hold back against its class
_PICO = const(1000000000)   # pWh per mWh
_MILLI = const(1000000)     # mWh per kWh

# atan(i / 64) in 1e-4 degree, i = 0..64 (and 64 again, so index 64 + 1 is valid).
# Integers so the angle is the same on every build; a test checks it against math.atan.
_ATAN = (0, 8952, 17899, 26838, 35763, 44672, 53558, 62419, 71250, 80047, 88807, 97524,
         106197, 114820, 123391, 131906, 140362, 148757, 157086, 165348, 173540, 181660,
         189704, 197672, 205560, 213369, 221094, 228737, 236294, 243765, 251148, 258444,
         265651, 272768, 279795, 286731, 293578, 300333, 306997, 313571, 320054, 326446,
         332749, 338962, 345085, 351120, 357067, 362926, 368699, 374386, 379987, 385505,
         390939, 396290, 401560, 406749, 411859, 416891, 421844, 426722, 431524, 436252,
         440906, 445489, 450000, 450000)


def phases(raw, w64: int, kk, out, ctl: int) -> int:
    """One window's instantaneous values into out (a Snapshot's inst) from raw (codes,
    RAW_N per phase) with the scale table kk (fixmath.scale_constant: W, fraction high
    and low 14-bit limbs, largest unsaturated code; for U, I and the powers).
    ctl = wired phases | phases live before << 3. Returns live | clipped inputs << 3 |
    period of the first live phase << 9. w64: raw has 8-byte slots (64-bit viper)."""
    r = ptr32(raw)
    k = ptr32(kk)
    o = ptr32(out)
    wired = ctl & 7
    live = 0
    nlive = 0
    over = 0
    period1 = 0
    tu = 0
    ti = 0
    tp = 0
    tq = 0
    ts = 0
    cp = 0
    cq = 0
    cs = 0
    ph = 0
    while ph < 4:
        blk = ph * _NQ
        u = 0
        wp = 0
        wq = 0
        ws = 0
        per = 0
        tk = 0
        if ph == 3:
            o[_TOTAL] = tu // nlive if nlive else 0
            o[_TOTAL + 1] = ti
            o[_TOTAL + 2] = tp
            o[_TOTAL + 3] = tq
            o[_TOTAL + 4] = ts
            wp = cp
            wq = cq
            ws = cs
        elif ((wired >> ph) & 1) == 0:
            j = 0
            while j < _NQ:
                o[blk + j] = 0
                j += 1
            ph += 1
            continue
        else:
            # Load VRMS..ANGLE; codes clamped to +-2**28 (the registers hold 24 bits,
            # scale() saturates below 2**28 anyway), period and angle to 16 bits.
            base = ph * _RAW_N
            j = 0
            while j < 8:
                x = int(r[(base + j) << w64])
                if w64:
                    x = (x << 32) >> 32
                if j >= _R_PERIOD:
                    if x < 0:
                        x = 0
                    elif x > 65535:
                        x = 65535
                    if j == _R_PERIOD:
                        per = x
                    else:
                        tk = x
                    j += 1
                    continue
                if x > _CODE_MAX:
                    x = _CODE_MAX
                elif x < 0 - _CODE_MAX:
                    x = 0 - _CODE_MAX
                if j < 2 and x > _FULL:
                    over |= (1 + j) << (2 * ph)
                if j == 2:
                    wp = x
                elif j == 3:
                    wq = x
                elif j == 4:
                    ws = x
                # round(x r) half away from zero, saturating at +-P_SAT (R_PF is 5:
                # not scaled). x M / 2**28 = x1 m1 + (x1 m0 + x0 m1) / 2**14 +
                # x0 m0 / 2**28 with 14-bit pieces; every product below 2**30.
                if j < 5:
                    kj = 0 if j == 0 else (4 if j == 1 else 8)
                    xm = int(k[kj + 3])
                    if x > xm:
                        v = _SAT
                    elif x < 0 - xm:
                        v = 0 - _SAT
                    else:
                        neg = 0
                        if x < 0:
                            x = 0 - x
                            neg = 1
                        x1 = x >> 14
                        x0 = x & 0x3FFF
                        m1 = int(k[kj + 1])
                        m0 = int(k[kj + 2])
                        v = x * int(k[kj]) + x1 * m1 + (
                            (x1 * m0 + x0 * m1 + ((x0 * m0) >> 14) + 0x2000) >> 14)
                        if neg:
                            v = 0 - v
                    o[blk + j] = v
                    if j == 0:
                        u = v
                    elif j == 1:
                        ti += v
                    elif j == 2:
                        tp += v
                    elif j == 3:
                        tq += v
                    else:
                        ts += v
                j += 1
            cp += wp
            cq += wq
            cs += ws
        # PF = round(P * 1e4 / S) on codes, sign of P, by decimal long division (a * 10
        # < 1e9 below 2**26: no chip code reaches it; beyond, both are halved).
        pf = 0
        if ws > 0:
            a = wp
            b = ws
            neg = 0
            if a < 0:
                a = 0 - a
                neg = 1
            while b >= 0x4000000:
                a >>= 1
                b >>= 1
            if a >= b:
                pf = 10000
            else:
                j = 0
                while j < 4:
                    a *= 10
                    d = a // b
                    a -= d * b
                    pf = pf * 10 + d
                    j += 1
                if a >= b - a:
                    pf += 1
            if neg:
                pf = 0 - pf
        o[blk + _PF] = pf
        # Quadrant by the half-open rule [k*90, (k+1)*90) degrees on the codes.
        quad = 0
        if wp > 0:
            quad = 1 if wq >= 0 else 4
        elif wp < 0:
            quad = 3 if wq <= 0 else 2
        elif wq > 0:
            quad = 2
        elif wq < 0:
            quad = 4
        o[blk + _QUAD] = quad
        if ph == 3:
            o[_TOTAL + _ANG] = 0
            if period1 == 0:
                o[_TOTAL + _F] = 0
            break
        # Live: above 50 V, lost below 40 V (hysteresis against flicker).
        if u >= (_LOST_MV if (ctl >> (3 + ph)) & 1 else _LIVE_MV):
            live |= 1 << ph
            nlive += 1
            tu += u
        # f = 256 kHz / (xPERIOD + 1); ANGLEx counts the same clock from the voltage
        # to the current zero crossing (datasheet, period and angle measurement).
        period = per + 1
        if period > 1 and u > 0:
            f = (512000000 + period) // (2 * period)
            o[blk + _F] = f
            if period1 == 0:
                period1 = period
                o[_TOTAL + _F] = f
            ang = 0
            if ws >= _MIN_VA:
                # atan2(Q, P) in 0.01 degree: octant reduction, the ratio to 18 bits
                # by long division (6 bits a step: r << 6 < 2**30), the table
                # interpolated (error below 0.0013 degree).
                ax = wp if wp >= 0 else 0 - wp
                ay = wq if wq >= 0 else 0 - wq
                mn = ax
                mx = ay
                if ay <= ax:
                    mn = ay
                    mx = ax
                while mx >= 0x1000000:
                    mn >>= 1
                    mx >>= 1
                if mx == 0:
                    mx = 1      # no power at all: mn is 0 too, so the angle is 0
                t = 0
                rr = mn
                j = 0
                while j < 3:
                    rr <<= 6
                    d = rr // mx
                    rr -= d * mx
                    t = (t << 6) | d
                    j += 1
                i = t >> 12
                lo = int(_ATAN[i])
                a = lo + (((int(_ATAN[i + 1]) - lo) * (t & 4095)) >> 12)
                if ay > ax:
                    a = 900000 - a
                if wp < 0:
                    a = 1800000 - a
                if wq < 0:
                    a = 3600000 - a
                ang = ((a + 50) // 100) % 36000
            else:
                # ANGLEx in 0.01 degree, kept inside the quadrant of the power signs:
                # it resolves half a tick, so next to 180 or 360 it can round onto the
                # next quadrant's edge; a delay half a period off folds back 180 deg.
                # round(ticks 36000 / period) = 500 q + round(1000 r / period) with
                # 72 ticks = q period + r (no product beyond 2**30).
                if tk > period:
                    tk = period
                q = (72 * tk) // period
                rr = 72 * tk - q * period
                ang = (500 * q + (1000 * rr + period) // (2 * period)) % 36000
                if quad:
                    mid = quad * 9000 - 4500
                    d = (ang - mid + 18000) % 36000 - 18000
                    if d > 9000 or d < -9000:
                        d = (d + 36000) % 36000 - 18000
                    if d < -4500:
                        d = -4500
                    elif d > 4499:
                        d = 4499
                    ang = (mid + d) % 36000
            o[blk + _ANG] = ang
        else:
            o[blk + _F] = 0
            o[blk + _ANG] = 0
        ph += 1
    return live | over << 3 | period1 << 9


def count(raw, w64: int, pend, reg, wired: int, sg: int) -> int:
    """Book one window's energies (chip LSBs) in reg (firmware/energy.py
    EnergyRegisters), per phase and for the net total, by the rules of
    firmware/metering.py (_count, _sign: the general path, same results). pend: the
    8 held-back LSB counts. sg: PHSIGN (-2 not read, -1 unreadable). Returns 0 when
    booked; 1 when PHSIGN is needed and sg is -2, 2 when an energy is beyond +-_E_MAX
    (no chip latches that much in a window): then nothing was changed."""
    r = ptr32(raw)
    pe = ptr32(pend)
    need = 0
    ph = 0
    while ph < 3:
        if (wired >> ph) & 1:
            base = ph * _RAW_N
            j = 0
            while j < 3:
                x = int(r[(base + _R_WATTHR + j) << w64])
                if w64:
                    x = (x << 32) >> 32
                if x > _E_MAX or x < 0 - _E_MAX:
                    return 2
                j += 1
        ph += 1
    rh = ptr32(reg.hi)
    rl = ptr32(reg.lo)
    rf = ptr32(reg.frac)
    sk = ptr32(reg.limbs)
    k0 = int(sk[0])
    k1 = int(sk[1])
    k2 = int(sk[2])
    k3 = int(sk[3])
    # pass 0 finds whether PHSIGN is needed (before anything changes), pass 1 books
    pas = 0 if sg == -2 else 1
    while pas < 2:
        blk = 0
        tep = 0
        teq = 0
        tes = 0
        tcp = 0
        tcq = 0
        while blk < 4:
            if blk < 3:
                if ((wired >> blk) & 1) == 0:
                    blk += 1
                    continue
                base = blk * _RAW_N
                ep = int(r[(base + _R_WATTHR) << w64])
                eq = int(r[(base + _R_WATTHR + 1) << w64])
                es = int(r[(base + _R_WATTHR + 2) << w64])
                wp = int(r[(base + 2) << w64])
                wq = int(r[(base + 3) << w64])
                if w64:
                    ep = (ep << 32) >> 32
                    eq = (eq << 32) >> 32
                    es = (es << 32) >> 32
                    wp = (wp << 32) >> 32
                    wq = (wq << 32) >> 32
                if wp > _CODE_MAX:
                    wp = _CODE_MAX
                elif wp < 0 - _CODE_MAX:
                    wp = 0 - _CODE_MAX
                if wq > _CODE_MAX:
                    wq = _CODE_MAX
                elif wq < 0 - _CODE_MAX:
                    wq = 0 - _CODE_MAX
                tep += ep
                teq += eq
                tes += es
                tcp += wp
                tcq += wq
            else:
                ep = tep
                eq = teq
                es = tes
                wp = tcp
                wq = tcq
            pa = int(pe[2 * blk])
            pq = int(pe[2 * blk + 1])
            if w64:
                pa = (pa << 32) >> 32
                pq = (pq << 32) >> 32
            n = pa + ep
            nq = pq + eq
            if pas == 0:
                if blk < 3 and ((n <= _PEND_MAX and n >= 0 - _PEND_MAX and wp == 0 and
                                 (n or eq or es or pq)) or
                                (nq <= _PEND_MAX and nq >= 0 - _PEND_MAX and wq == 0 and nq)):
                    need = 1
                blk += 1
                continue
            # Class of the active energy: its own sign beyond the jitter, else the
            # power register's, else PHSIGN (phases), else the LSBs' (+1 at zero).
            if n > _PEND_MAX:
                sp = 1
            elif n < 0 - _PEND_MAX:
                sp = -1
            elif wp:
                sp = 1 if wp > 0 else -1
            elif blk < 3 and sg >= 0 and (n or eq or es or pq):
                sp = -1 if (sg >> blk) & 1 else 1
            else:
                sp = -1 if n < 0 else 1
            c = blk * _NE
            i1 = 0
            a1 = 0
            i2 = 0
            a2 = 0
            i3 = 0
            a3 = 0
            if (n > 0 and sp < 0) or (n < 0 and sp > 0):
                pe[2 * blk] = n         # against the class, sub-LSB jitter: hold it back
            else:
                pe[2 * blk] = 0
                if n > 0:
                    i1 = c
                    a1 = n
                elif n < 0:
                    i1 = c + 1
                    a1 = 0 - n
            if nq > _PEND_MAX:
                sq = 1
            elif nq < 0 - _PEND_MAX:
                sq = -1
            elif wq:
                sq = 1 if wq > 0 else -1
            elif blk < 3 and sg >= 0 and nq:
                sq = -1 if (sg >> (4 + blk)) & 1 else 1
            else:
                sq = -1 if nq < 0 else 1
            if (nq > 0 and sq < 0) or (nq < 0 and sq > 0):
                pe[2 * blk + 1] = nq
            else:
                pe[2 * blk + 1] = 0
                if nq > 0:
                    i2 = c + (2 if sp > 0 else 3)     # Q1 / Q2
                    a2 = nq
                elif nq < 0:
                    i2 = c + (5 if sp > 0 else 4)     # Q4 / Q3
                    a2 = 0 - nq
            if es:
                i3 = c + (6 if sp > 0 else 7)         # apparent import / export
                a3 = es if es > 0 else 0 - es
            j = 0
            while j < 3:
                if j == 0:
                    i = i1
                    m = a1
                elif j == 1:
                    i = i2
                    m = a2
                else:
                    i = i3
                    m = a3
                j += 1
                if m == 0:
                    continue
                # reg[i] += m x scale pWh exactly (EnergyRegisters.add_lsb): m and the
                # scale in base-10**4 limbs, every partial product below 3e8.
                n0 = m % 10000
                t = m // 10000
                n1 = t % 10000
                n2 = t // 10000
                c1 = n0 * k1 + n1 * k0
                c2 = n0 * k2 + n1 * k1 + n2 * k0
                c3 = n0 * k3 + n1 * k2 + n2 * k1
                mw = 0
                f = int(rf[i]) - _PICO + n0 * k0
                if f >= 0:
                    mw += 1
                    f -= _PICO
                if c1:
                    q = c1 // 100000
                    f += (c1 - q * 100000) * 10000
                    mw += q
                    if f >= 0:
                        mw += 1
                        f -= _PICO
                if c2:
                    q = c2 // 10
                    f += (c2 - q * 10) * 100000000
                    mw += q
                    if f >= 0:
                        mw += 1
                        f -= _PICO
                rf[i] = f + _PICO
                q = 0
                if c3:
                    q = c3 // 1000
                    mw += (c3 - q * 1000) * 1000
                q += (n1 * k3 + n2 * k2) * 10 + n2 * k3 * 100000
                lo = int(rl[i]) + mw
                if lo >= _MILLI:
                    h = lo // _MILLI
                    lo -= h * _MILLI
                    q += h
                rl[i] = lo
                rh[i] = int(rh[i]) + q
            blk += 1
        if pas == 0 and need:
            return 1
        pas += 1
    return 0


def copy32(dst, src, n: int):
    """dst[0:n] = src[0:n] for 4-byte arrays, without a slice (the snapshot's counters)."""
    d = ptr32(dst)
    s = ptr32(src)
    i = 0
    while i < n:
        d[i] = s[i]
        i += 1
