"""Native (viper) transfer loop and checker for drivers/ade7880.py's read program.

Imported only where the port has a native emitter (rp2, esp32, unix); elsewhere the
import fails at compile time and the driver uses its plain-Python loop and checker,
which give the same frames and values (tests/test_driver_fast.py compares both on the
unix port).

The program (drivers/ade7880.py _program) is one buffer holding every read's frames
back to back: per frame 3 header bytes (op, address MSB first: the template, never
overwritten) and its data bytes (the last reply). Per read k, d holds two uint16:
  d[2k]      v, the offset of the value's data bytes (its address was sent at v - 2);
  d[2k + 1]  flags | slot << 8: width 1/2/4 (bits 0-2), 8: 16-bit signed, 16: read
             twice (frames: value, LAST_ADD, value again; else value, LAST_RWDATA of
             its width, LAST_ADD), 32: not stored (a single read: the caller takes the
             bytes).
Machine words only: no Python int is built, so nothing is allocated.
"""
import micropython


@micropython.viper
def xfer(spi, cs, buf: ptr8, d: ptr16, k0: int, k1: int, fv, s: ptr8):
    """The frames of reads k0..k1-1, each its own CS cycle, clocked in the scratch frame
    s (fv[n]: its view of n data bytes): header copied in, zeros sent as data, the
    reply's data copied back into buf."""
    k = k0
    while k < k1:
        o = int(d[2 * k]) - 3
        f = int(d[2 * k + 1])
        w = f & 7
        i = 0
        n = w
        while i < 3:
            s[0] = buf[o]
            s[1] = buf[o + 1]
            s[2] = buf[o + 2]
            j = 0
            while j < n:
                s[3 + j] = 0
                j += 1
            b = fv[n]
            cs(0)
            spi.write_readinto(b, b)
            cs(1)
            j = 0
            while j < n:
                buf[o + 3 + j] = s[3 + j]
                j += 1
            o += 3 + n
            i += 1
            n = w
            if f & 16:
                if i == 1:
                    n = 2                   # LAST_ADD, then the value again
            elif i == 2:
                n = 2                       # LAST_RWDATA, then LAST_ADD
        k += 1


@micropython.viper
def check(buf: ptr8, d: ptr16, k0: int, k1: int, raw: ptr32, wide: int, bad: ptr8) -> int:
    """Verify reads k0..k1-1: the value's bytes equal its check bytes (LAST_RWDATA or
    the second read) and LAST_ADD the address sent; a confirmed read is stored into
    raw as a signed 32-bit word (array('l'): 4-byte slots, or 8 with wide=1 on a 64-bit
    port), a failed one marked in bad and not stored. Returns the number failed."""
    nbad = 0
    k = k0
    while k < k1:
        v = int(d[2 * k])
        f = int(d[2 * k + 1])
        w = f & 7
        if f & 16:
            a = v + w + 3
            c = a + 5
        else:
            c = v + w + 3
            a = c + w + 3
        ok = 1
        j = 0
        while j < w:
            if buf[v + j] != buf[c + j]:
                ok = 0
            j += 1
        if buf[a] != buf[v - 2] or buf[a + 1] != buf[v - 1]:
            ok = 0
        if ok:
            bad[k] = 0
            if not f & 32:
                if w == 4:
                    x = (int(buf[v]) << 24) | (int(buf[v + 1]) << 16) | (int(buf[v + 2]) << 8) \
                        | int(buf[v + 3])
                    neg = int(buf[v]) >> 7
                elif w == 2:
                    x = (int(buf[v]) << 8) | int(buf[v + 1])
                    neg = 0
                    if f & 8 and x & 0x8000:
                        x = x - 0x10000
                        neg = 1
                else:
                    x = int(buf[v])
                    neg = 0
                s = f >> 8
                if wide:
                    raw[2 * s] = x
                    raw[2 * s + 1] = 0 - neg      # sign extension into the upper word (LE)
                else:
                    raw[s] = x
        else:
            bad[k] = 1
            nbad += 1
        k += 1
    return nbad
