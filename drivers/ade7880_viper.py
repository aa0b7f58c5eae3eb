"""Native (viper) checker for drivers/ade7880.py's read programs.

Imported only where the port has a native emitter (rp2, esp32, unix); elsewhere the
import fails at compile time and the driver uses its plain-Python checker, which gives
the same values (tests/test_driver_fast.py compares both on the unix port).

check() walks reads k0..k1-1 of a program. Per read, d holds six uint16:
  value data offset in rx, check data offset in rx (the LAST_RWDATA echo or a second
  read of the same register), LAST_ADD data offset in rx, address offset in tx, flags
  (width 1/2/4 in bits 0-2, bit 3: 16-bit signed), slot in raw.
A read whose value bytes equal its check bytes (and LAST_ADD the address sent) is
stored into raw as a signed 32-bit word (array('l'): 4-byte slots, or 8 with wide=1 on
a 64-bit port); a read that fails is marked in bad and not stored. Returns the number
of failed reads. Machine words only: no Python int is built, so nothing is allocated.
"""
import micropython


@micropython.viper
def check(rx: ptr8, tx: ptr8, d: ptr16, k0: int, k1: int, raw: ptr32, wide: int,
          bad: ptr8) -> int:
    nbad = 0
    k = k0
    while k < k1:
        e = k * 6
        v = int(d[e])
        c = int(d[e + 1])
        a = int(d[e + 2])
        f = int(d[e + 4])
        w = f & 7
        ok = 1
        j = 0
        while j < w:
            if rx[v + j] != rx[c + j]:
                ok = 0
            j += 1
        t = int(d[e + 3])
        if rx[a] != tx[t] or rx[a + 1] != tx[t + 1]:
            ok = 0
        if ok:
            bad[k] = 0
            if w == 4:
                x = (int(rx[v]) << 24) | (int(rx[v + 1]) << 16) | (int(rx[v + 2]) << 8) | int(rx[v + 3])
                neg = int(rx[v]) >> 7
            elif w == 2:
                x = (int(rx[v]) << 8) | int(rx[v + 1])
                neg = 0
                if f & 8 and x & 0x8000:
                    x = x - 0x10000
                    neg = 1
            else:
                x = int(rx[v])
                neg = 0
            s = int(d[e + 5])
            if wide:
                raw[2 * s] = x
                raw[2 * s + 1] = 0 - neg      # sign extension into the upper word (little endian)
            else:
                raw[s] = x
        else:
            bad[k] = 1
            nbad += 1
        k += 1
    return nbad
