"""The event log on flash: the RAM ring of firmware/events.py, kept as a ring of
fixed-size CRC'd records in one littlefs file, so it survives restarts.

    from firmware.eventstore import EventStore
    ev = EventStore(vfs, events, clock, board.time_utc)   # the counters' littlefs
    ev.load()                  # at boot: newest valid record -> next seq (bad ones: event)
    sup.spawn("evlog", ev.run) # flushes pending events in batches, never in the cycle
    ev.flush()                 # at supply failure, after the counter record (best effort)
    ev.record(seq, buf, off)   # one record in its Modbus form (firmware/regmaps/eventlog.py)

Events are added to the RAM ring as before (EventLog.add: no flash, no allocation); event
number k since boot gets seq = base + k, base being the newest seq on flash at boot + 1.
The task writes what is pending every 10 s (_FLUSH_S), or sooner once 8 (_FLUSH_N) are
pending; the RAM ring (32) bounds what a storm between two flushes may drop (event
log_lost). UTC is taken at the flush: board.time_utc() minus the event's age.

File /ev/log (a firmware/ring.py Ring): RING slots of 16 bytes; seq s lives in slot (s - 1) % RING, little-endian:
    0 u32 seq (1.., 0 = never written)   4 u32 uptime ms (ticks_ms)   8 u32 UTC s or 0
    12 u8 code   13 u8 arg   14 u16 low half of the CRC-32 (IEEE, as zlib) of bytes 0..13
A flush rewrites the slots it fills in one open/close: littlefs commits a file
atomically, so a cut leaves the old or the new file; the CRC (and the slot a seq must
sit in) catch what littlefs does not check. At boot every slot is checked; the newest
valid seq continues the numbering and bad slots are counted (event log_corrupt).
"""
import asyncio
import struct
from micropython import const

from firmware import events as _ev
from firmware.ring import Ring

RING = const(256)
_REC = const(16)
_FLUSH_S = const(10)
_FLUSH_N = const(8)


class EventStore:
    def __init__(self, vfs, events, clock, time_utc=None):
        self.events = events
        self.clock = clock
        self.time_utc = time_utc
        self.base = 1           # seq of event number 0 since boot
        self.flushed = 0        # events (since boot) written or given up
        self.stored = 0         # valid records on flash
        self._buf = bytearray(_REC)
        self.ring = Ring(vfs, "/ev/log", RING, _REC)    # the generic CRC'd ring
        try:
            vfs.mkdir("/ev")
        except OSError:
            pass                # already there
        events.store = self

    def newest(self):
        """Seq of the newest event (flash or RAM), 0 when none."""
        return self.base + self.events.total - 1 if self.events.total or self.base > 1 else 0

    # ---- boot ----
    def load(self):
        """Scan the file: the newest valid seq continues the numbering."""
        newest, n, bad = self.ring.load(self._buf)
        self.base = newest + 1
        self.stored = n
        if bad:
            self.events.add(self.clock.ticks_ms(), _ev.EV_LOG_CORRUPT, min(bad, 255))
        return newest

    def clear(self):
        """Factory reset: the log on flash and every event so far are gone; numbering
        starts again at 1 with the next event."""
        try:
            self.ring.vfs.remove("/ev/log")
        except OSError:
            pass                # no log yet
        self.base = 1 - self.events.total
        self.flushed = self.events.total
        self.stored = 0

    # ---- writing ----
    def flush(self):
        """Write every pending event still in the RAM ring (one open/close); returns
        how many. OSError from the flash: event log_failed, the events stay pending."""
        ev = self.events
        total = ev.total
        k = self.flushed
        if k >= total:
            return 0
        lost = 0
        while k < total and ev.at(k) is None:
            k += 1              # overwritten in RAM before this flush
            lost += 1
        now = self.clock.ticks_ms()
        utc = self.time_utc() if self.time_utc is not None else None
        b = self._buf
        ring = self.ring
        n = 0
        try:
            try:
                while k < total:
                    t, code, arg = ev.at(k)
                    seq = self.base + k
                    u = 0
                    if utc:
                        u = utc - ((now - t) & 0x3FFFFFFF) // 1000
                    struct.pack_into("<IIIBB", b, 0, seq, t & 0x3FFFFFFF, u, code, arg)
                    ring.encode(b)
                    ring.put(seq, b)        # one open/close for the batch
                    k += 1
                    n += 1
            finally:
                ring.close()
        except OSError as e:
            self.events.add(now, _ev.EV_LOG_FAILED, e.args[0] if e.args else 0)
            return 0
        self.flushed = k
        self.stored = min(RING, self.stored + n)
        if lost:
            self.events.add(now, _ev.EV_LOG_LOST, min(lost, 255))
        return n

    async def run(self):
        """Flush every 10 s, or as soon as 8 are pending (run it under
        the supervisor; flash writes happen here, never in the metering cycle)."""
        waited = 0
        while True:
            await asyncio.sleep_ms(1000)
            waited += 1
            p = self.events.total - self.flushed
            if waited > 0 and (p >= _FLUSH_N or (p and waited >= _FLUSH_S)):
                # A refused flush (event log_failed) is retried a minute later, not
                # every second with one more event each time.
                waited = 0 if self.flush() or self.flushed == self.events.total else -59
            elif not p:
                waited = 0

    # ---- reading (Modbus) ----
    def record(self, seq, out, off):
        """Event seq as 8 big-endian registers at out[off:off+16]: seq u32, uptime s u32,
        UTC u32, code u16, arg u16; all zero when it is not stored (any more). From RAM
        while pending, else from flash (opens the file: allocates)."""
        for i in range(16):
            out[off + i] = 0
        if seq < 1:
            return False
        k = seq - self.base
        ev = self.events
        if self.flushed <= k < ev.total:    # pending: from RAM
            e = ev.at(k)
            if e is None:
                return False        # dropped before a flush
            else:
                t, code, arg = e
                u = 0
                utc = self.time_utc() if self.time_utc is not None else None
                if utc:
                    u = utc - ((self.clock.ticks_ms() - t) & 0x3FFFFFFF) // 1000
                struct.pack_into(">IIIHH", out, off, seq, t // 1000, u, code, arg)
                return True
        elif k >= ev.total:
            return False
        b = self._buf
        if not self.ring.read(seq, b):
            return False
        s, t, u, code, arg = struct.unpack_from("<IIIBB", b, 0)
        struct.pack_into(">IIIHH", out, off, s, t // 1000, u, code, arg)
        return True
