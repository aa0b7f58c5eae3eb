"""The load curve and the KSEM 5-minute log over Modbus: holding registers 0xCC00..0xCFFF
(a space, see firmware/modbus/space.py), FC 03; the select registers written with FC 06/16.

    from firmware.regmaps.rings import RingsSpace, space_of
    space = RingsSpace(records)
    space_of(meter)      # the meter's records' one space (its select kept across config
                         # changes), None without records: (0xCC00, 0xCFFF, it) in ports.py

Two blocks of the same layout: the load curve at 0xCC00, the KSEM log at 0xCE00.
Offsets from the block's base; u32 = two registers, high word first:
    +0   u16  records stored (at most the ring size)
    +1   u32  seq of the newest record (0: none)
    +3   u16  ring size (5,760 load-curve records: 40 days at 10 minutes; 4,320 KSEM:
              15 days of 5 minutes)
    +4   u32  seq of the oldest record stored (0: none)
    +6   u32  select by index (read/write): seq of the window's first record; 0 (the
              default): the newest two. Above the newest seq: exception 03.
    +8   u32  select by time (write): UTC s; the select becomes the first record stamped
              at or after it (binary search over the stamps), exception 03 when none.
              Reads back the last time written.
    +10  u16  period s (load curve: records.period_min x 60; KSEM: 300)
    +11  u16  records per window (2)   +12 u16 registers per record (36 / 40)
    +13..+15  reserved, read 0
    +16  the window: 2 records, ascending seq, as stored (firmware/records.py: load
         curve 36 registers, KSEM 40); all zero for a seq not stored.
A request must lie within one block's served registers (+0..+87 load curve, +0..+95
KSEM), else exception 02. The select is shared by every master: a reader checks each
record's seq. Reads of an unchanged window come from a preallocated image (no
allocation); a new record or a new select refills it from flash (a file open).
"""
from micropython import const

# firmware/records.py's LC, KS, KS_PERIOD and (LC_REC - 2) / 2, (KS_REC - 2) / 2: copied,
# not imported, so that this module (which the ports import at every boot) does not load
# firmware/records.py when records are off
_LC = const(0)
_KS = const(1)
_KS_PERIOD = const(300)
_REGS = const((36, 40))         # registers per record, per channel
_PER = const(17)                # firmware/records.py: Records.st[_PER], the period s
_BASE = const(0xCC00)
_BLOCK = const(0x200)
_WINDOW = const(2)
_HEAD = const(16)
_TSEL = const(2)                # RingsSpace.sel: index select per channel at 0, 1; time
_KEY = const(4)                 # select at 2, 3; the image's block, first seq, newest at 4..6


class RingsSpace:
    def __init__(self, records):
        self.rec = records
        self.sel = [0, 0, 0, 0, -1, -1, -1]     # the selects and the image's key (_TSEL, _KEY)
        self._img = bytearray(_WINDOW * 2 * _REGS[_KS])     # one image, either block

    def read(self, addr, count, out, off):
        ch = (addr - _BASE) // _BLOCK
        a = addr - _BASE - ch * _BLOCK
        if ch > _KS or a + count > _HEAD + _WINDOW * _REGS[ch]:
            return 2
        r = self.rec
        img = self._img
        k = self.sel
        first = k[ch] or max(1, r.seq[ch] - _WINDOW + 1)
        if a + count > _HEAD and (k[_KEY] != ch or k[_KEY + 1] != first
                                  or k[_KEY + 2] != r.seq[ch]):
            # the window changed (a new record, a new select): refill the image from flash
            n = 2 * _REGS[ch]
            for w in range(_WINDOW):
                s = first + w
                ok = s <= r.seq[ch] and s >= r.oldest(ch) and r.record(ch, s)
                for i in range(n):
                    img[w * n + i] = r.buf[i] if ok else 0
            k[_KEY] = ch
            k[_KEY + 1] = first
            k[_KEY + 2] = r.seq[ch]
        o = off
        for i in range(a, a + count):
            if i >= _HEAD:
                j = 2 * (i - _HEAD)
                out[o] = img[j]
                out[o + 1] = img[j + 1]
                o += 2
                continue
            v = 0
            if i == 0:
                v = r.stored[ch]
            elif i <= 2:
                v = r.seq[ch]
            elif i == 3:
                v = r.rings[ch].n
            elif i <= 5:
                v = r.oldest(ch)
            elif i <= 7:
                v = self.sel[ch]
            elif i <= 9:
                v = self.sel[_TSEL + ch]
            elif i == 10:
                v = r.st[_PER] if ch == _LC else _KS_PERIOD
            elif i == 11:
                v = _WINDOW
            elif i == 12:
                v = _REGS[ch]
            if i == 1 or i == 4 or i == 6 or i == 8:
                v >>= 16                # u32: high word first
            out[o] = (v >> 8) & 0xFF
            out[o + 1] = v & 0xFF
            o += 2
        return 0

    def write(self, addr, count, src, soff, ctx=None):
        ch = (addr - _BASE) // _BLOCK
        a = addr - _BASE - ch * _BLOCK
        if ch > _KS or a < 6 or a + count > 10 or (a < 8 < a + count):
            return 2                    # the index select or the time select, not both
        t = a >= 8
        sel = self.sel
        v = sel[_TSEL + ch] if t else sel[ch]
        base = 8 if t else 6
        for i in range(count):
            w = (src[soff + 2 * i] << 8) | src[soff + 2 * i + 1]
            if a + i == base:
                v = (w << 16) | (v & 0xFFFF)
            else:
                v = (v & 0xFFFF0000) | w
        r = self.rec
        if t:
            s = r.find(ch, v)
            if not s:
                return 3
            sel[_TSEL + ch] = v
            sel[ch] = s
            return 0
        if v > r.seq[ch]:
            return 3
        sel[ch] = v
        return 0


def space_of(meter):
    r = getattr(meter, "records", None)
    if r is None:
        return None
    if r.space is None:
        r.space = RingsSpace(r)
    return r.space
