"""The event log over Modbus: holding registers 0xC400..0xC7FF (a space, see
firmware/modbus/space.py), read with FC 03, the select register written with FC 06/16.

    from firmware.regmaps.eventlog import EventLogSpace
    space = EventLogSpace(events.store)   # (0xC400, 0xC7FF, space) in ports.py's Routed

Offsets from 0xC400; u32 = two registers, high word first:
    +0   u16  events stored (flash and not yet flushed, at most the ring size)
    +1   u32  seq of the newest event (0: none)
    +3   u16  ring size (RING records on flash)
    +4   u32  seq of the oldest event stored (0: none)
    +6   u32  select (read/write): seq of the window's first record; 0 (the default):
              the newest 8 events. Above the newest seq: exception 03.
    +8   u16  records per window (8)   +9  u16 registers per record (8)
    +10..+15  reserved, read 0
    +16  the window: 8 records of 8 registers, ascending seq:
              seq u32, uptime s u32 (ticks_ms / 1000), UTC s u32 (0: unknown),
              code u16 (firmware/events.py), arg u16; all zero for a seq not stored.
The select is shared by every master: a reader checks each record's seq. Other
addresses of 0xC400..0xC7FF answer exception 02 (the router, firmware/regmaps/device.py
Routed, sends only requests wholly inside the block here). Reads of an unchanged window come
from a preallocated image (no allocation); a new event or a new select refills it.
"""
from micropython import const

from firmware.eventstore import RING

_BASE = const(0xC400)
_WINDOW = const(8)
_REC_REGS = const(8)
_HEAD = const(16)
_END = const(_HEAD + _WINDOW * _REC_REGS)     # 80 registers served


class EventLogSpace:
    def __init__(self, store):
        self.store = store
        self.select = 0
        self._img = bytearray(2 * _WINDOW * _REC_REGS)
        self._first = -1        # seq of the image's first record
        self._key = -1          # events.total when it was filled
        self._flushed = -1      # and the store's flushed count (RAM or flash source)

    def read(self, addr, count, out, off):
        a = addr - _BASE
        if a < 0 or a + count > _END:
            return 2
        img = self._img
        if a + count > _HEAD:           # the window: refilled when it changed
            st = self.store
            first = self.select or max(1, st.newest() - _WINDOW + 1)
            if first != self._first or st.events.total != self._key \
                    or st.flushed != self._flushed:
                for r in range(_WINDOW):
                    st.record(first + r, img, 2 * _REC_REGS * r)
                self._first = first
                self._key = st.events.total
                self._flushed = st.flushed
        st = self.store
        ev = st.events
        n = min(RING, st.stored + ev.total - st.flushed)     # events stored
        newest = st.newest()
        o = off
        for i in range(a, a + count):
            if i >= _HEAD:
                j = 2 * (i - _HEAD)
                out[o] = img[j]
                out[o + 1] = img[j + 1]
                o += 2
                continue
            v = 0                       # reserved registers read 0
            if i == 0:
                v = n
            elif i <= 2:
                v = newest
            elif i == 3:
                v = RING
            elif i <= 5:
                v = newest - n + 1 if n else 0
            elif i <= 7:
                v = self.select
            elif i <= 9:
                v = _WINDOW if i == 8 else _REC_REGS
            if i == 1 or i == 4 or i == 6:
                v >>= 16                # u32: high word first
            out[o] = (v >> 8) & 0xFF
            out[o + 1] = v & 0xFF
            o += 2
        return 0

    def write(self, addr, count, src, soff, ctx=None):
        a = addr - _BASE
        if a < 6 or a + count > 8:
            return 2                    # only the select register is writable
        v = self.select
        for i in range(count):
            w = (src[soff + 2 * i] << 8) | src[soff + 2 * i + 1]
            if a + i == 6:
                v = (w << 16) | (v & 0xFFFF)
            else:
                v = (v & 0xFFFF0000) | w
        if v > self.store.newest():
            return 3
        self.select = v
        return 0

