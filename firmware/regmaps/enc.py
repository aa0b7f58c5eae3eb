"""Register-image kernels: encode a page's live rows, copy image bytes. Plain build.

    from firmware.regmaps import enc       # table.py picks enc_viper where it compiles
    enc.refresh(space, snap, p0, p1, evt)  # encode the stale pages p0..p1 into space.image
    enc.copy(dst, doff, src, soff, n)      # dst[doff:doff+n] = src[soff:soff+n], no slice

Rows are compiled by table.py into parallel arrays on the space: op (type << 4 | source),
pos (byte offset in image), ra, rb (source operands), rdi (divisor: divs[rdi]); page p holds
rows first[p] .. last[p]-1 and is current while stamp[p] == gen. Every value is
computed with small ints only (below 2**29 except the int32 sources themselves), so the
same code gives the same bytes on a 32-bit and a 64-bit MicroPython, as viper or as plain
bytecode, and allocates nothing (while the counters summed into one row stay below
2**30 kWh together: ten years at 3 x 5000 A x 253 V are 3.3e8 kWh): energies go from (e_hi, e_lo) to uint64/acc32 bytes
one byte at a time, float32 bits come from integer long division (no float object).
enc_viper.py holds the same functions under @micropython.viper; ptr8/16/32 are the
identity here, where indexing the buffer itself does the same.
"""
from array import array
from micropython import const


def ptr8(b):
    return b


ptr16 = ptr8
ptr32 = ptr8

_T_U16 = const(0)
_T_I16 = const(1)
_T_U32 = const(2)
_T_I32 = const(3)
_T_U64 = const(4)
_T_ACC32 = const(5)
_T_F32 = const(6)
_S_INST = const(0)
_S_IMP = const(1)
_S_EXP = const(2)
_S_QUAD = const(3)
_S_ANGLE = const(4)
_S_EVT = const(5)
_S_ENERGY = const(6)
_S_PQANGLE = const(7)
_MILLI = const(1000000)
# Integer literals stay below 2**30: on a 32-bit port a bigger one is a long-int object,
# which viper cannot mix with machine ints; nor may constants fold into one (mpy-cross
# folds 0x3FFFFFFF * 2 + 1): 2**31 - 1 is built at run time from a local.
# @@KERNELS: from here on enc.py and enc_viper.py hold the same code (tests/test_encode.py)

# atan(2**-k) in 1e-5 degree, k = 0..21 (CORDIC steps of the P/Q angle; checked against
# math.atan in tests/test_encode.py)
_ATAN = array("i", (4500000, 2656505, 1403624, 712502, 357633, 178991, 89517, 44761,
                    22381, 11191, 5595, 2798, 1399, 699, 350, 175, 87, 44, 22, 11, 5, 3))


def copy(dst, doff: int, src, soff: int, n: int):
    d = ptr8(dst)
    s = ptr8(src)
    i = 0
    while i < n:
        d[doff + i] = s[soff + i]
        i += 1


def refresh(sp, snap, p0: int, p1: int, evt: int):
    stamp = ptr32(sp.stamp)
    first = ptr16(sp.first)
    last = ptr16(sp.last)
    gen = int(sp.gen)
    img = ptr8(sp.image)
    ops = ptr8(sp.op)
    pos = ptr16(sp.pos)
    ra = ptr16(sp.ra)
    rb = ptr16(sp.rb)
    rd = ptr32(sp.divs)
    rdi = ptr8(sp.rdi)
    inst = snap.inst
    ehi = snap.e_hi
    elo = snap.e_lo
    done = 0
    while p0 <= p1:
        if stamp[p0] == gen:
            p0 += 1
            continue
        stamp[p0] = gen
        i = first[p0]
        if i < done:
            i = done   # a row across the page edge is encoded once
        i1 = last[p0]
        if i1 > done:
            done = i1
        p0 += 1
        while i < i1:
            op = ops[i]
            t = op >> 4
            s = op & 15
            a = ra[i]
            b = rb[i]
            d = rd[rdi[i]]
            p = pos[i]
            i += 1
            neg = 0
            q = 0
            r = 0
            if s == _S_ENERGY:
                # Sum the masked counters of the block as (whole kWh, mWh) small ints.
                hi = 0
                lo = 0
                while b:
                    if b & 1:
                        hi += int(ehi[a])
                        lo += int(elo[a])
                    b >>= 1
                    a += 1
                hi += lo // _MILLI
                lo = lo % _MILLI
                if t != _T_F32:
                    # floor((hi * 1e6 + lo) / d), d divides 1e6 or 1e6 divides d, written
                    # big-endian one byte at a time: no intermediate reaches 2**29.
                    if d <= _MILLI:
                        m = _MILLI // d
                        c = lo // d
                    else:
                        m = 0
                        c = hi // (d // _MILLI)
                    j = p + (7 if t == _T_U64 else 3)
                    while j >= p:
                        c += (hi & 255) * m
                        img[j] = c & 255
                        c >>= 8
                        hi >>= 8
                        j -= 1
                    continue
                q = hi
                r = lo
                d = _MILLI
            else:
                v = 0
                if s == _S_INST:
                    v = int(inst[a])
                elif s == _S_IMP:
                    if int(inst[b]) >= 0:
                        v = int(inst[a])
                elif s == _S_EXP:
                    if int(inst[b]) < 0:
                        v = int(inst[a])
                elif s == _S_QUAD:
                    if int(inst[b >> 3]) == (b & 7):
                        v = int(inst[a])
                elif s == _S_ANGLE:
                    v = int(inst[a])
                    if v >= 18000:
                        v -= 36000
                elif s == _S_PQANGLE:
                    # atan2(Q, P) in 1e-5 degree, -180..180 (180 reads -180, as the
                    # folded chip angle): CORDIC vectoring on the pair scaled to
                    # 2**26..2**27, so every step stays below 2**29.
                    x = int(inst[a])
                    y = int(inst[b])
                    if x or y:
                        if x < 0:
                            x = 0 - x
                            y = 0 - y
                            v = 18000000 if y < 0 else -18000000
                        mx = 0 - y if y < 0 else y
                        if x > mx:
                            mx = x
                        while mx >= 134217728:
                            x >>= 1
                            y >>= 1
                            mx >>= 1
                        while mx < 67108864:
                            x <<= 1
                            y <<= 1
                            mx <<= 1
                        at = ptr32(_ATAN)
                        k = 0
                        while k < 22:
                            w = y >> k
                            if y > 0:
                                y -= x >> k
                                x += w
                                v += at[k]
                            else:
                                y += x >> k
                                x -= w
                                v -= at[k]
                            k += 1
                        if v > 17999999:      # the steps' error must not cross the fold
                            v = 17999999
                        elif v < -18000000:
                            v = -18000000
                else:
                    v = evt
                if s == _S_IMP or s == _S_EXP or s == _S_QUAD:
                    if v < 0:
                        v = 0 - v
                if v < 0:
                    neg = 1
                    v = 0 - v
                q = v // d
                r = v - q * d
                if t != _T_F32:
                    # Nearest, halves away from zero; saturate rather than wrap.
                    if r >= d - r:
                        q += 1
                    if neg:
                        q = 0 - q
                    if t == _T_U16:
                        if q < 0:
                            q = 0
                        if q > 65535:
                            q = 65535
                    elif t == _T_I16:
                        if q < -32767:
                            q = -32767
                        if q > 32767:
                            q = 32767
                    elif t == _T_U32:
                        if q < 0:
                            q = 0
                        elif q >> 31:
                            q = 0x3FFFFFFF
                            q += q + 1          # 2**31 - 1 without a literal a 32-bit port cannot hold
                    elif q >> 31 > 0:
                        q = 0x3FFFFFFF
                        q += q + 1          # 2**31 - 1 without a literal a 32-bit port cannot hold
                    elif q >> 30 < -1:   # below -2**30 (rare): check the int32 end
                        if q + 0x3FFFFFFF + 0x3FFFFFFF + 1 < 0:
                            q = -0x3FFFFFFF
                            q += q - 1          # -(2**31 - 1), likewise
                    if t == _T_U16 or t == _T_I16:
                        img[p] = (q >> 8) & 255
                        img[p + 1] = q & 255
                    else:
                        img[p] = (q >> 24) & 255
                        img[p + 1] = (q >> 16) & 255
                        img[p + 2] = (q >> 8) & 255
                        img[p + 3] = q & 255
                    continue
            # float32 nearest to q + r / d (0 <= r < d < 2**30), ties to even, by integer
            # long division: no float object, and no intermediate reaches 2**31.
            if q == 0 and r == 0:
                img[p] = 0
                img[p + 1] = 0
                img[p + 2] = 0
                img[p + 3] = 0
                continue
            m = 0
            e = 0
            k = 0
            if q:
                x = q
                while x:
                    x >>= 1
                    e += 1
                e -= 1
                if e > 23:
                    sh = e - 23
                    m = q >> sh
                    rem = q & ((1 << sh) - 1)
                    half = 1 << (sh - 1)
                    if rem > half:
                        m += 1
                    elif rem == half:
                        if r:
                            m += 1
                        elif m & 1:
                            m += 1
                    k = -1   # rounded already
                else:
                    m = q
                    k = 23 - e
            else:
                e = -1
                r <<= 1
                while r < d:
                    r <<= 1
                    e -= 1
                r -= d
                m = 1
                k = 23
            while k > 0:
                r <<= 1
                m <<= 1
                if r >= d:
                    r -= d
                    m |= 1
                k -= 1
            if k == 0:   # round on the remainder: nearest, ties to even
                if r > d - r:
                    m += 1
                elif r == d - r:
                    if m & 1:
                        m += 1
            if m >> 24:
                m >>= 1
                e += 1
            e += 127
            img[p] = (neg << 7) | (e >> 1)
            img[p + 1] = ((e & 1) << 7) | ((m >> 16) & 127)
            img[p + 2] = (m >> 8) & 255
            img[p + 3] = m & 255
