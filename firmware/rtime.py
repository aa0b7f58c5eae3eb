"""Clock, tariff indexes, demand and loss correction together: one 1 s task, one record.

    from firmware.rtime import RecTime
    rt = RecTime(meter.energy, events, board, vfs)   # after the counters' restore
    rt.configure(cfg)                    # "time", "records", "tariff", "demand", "losses"
    sup.spawn("rtime", rt.run)           # tariff, demand, losses each second; save
    sup.spawn("sntp", rt.sntp)           # when time.ntp_server is set
    rt.save()                            # also at stop

Everything here runs in its own task from the meter's counters (never in the metering
cycle). The record `/rtime` (littlefs; written to `/rtime.new` and renamed, which
littlefs does atomically) holds the per-class and corrected counters with the meter
totals they were last synced to, the tariff class then, and the demand maxima. At boot
the meter's totals (restored first, firmware/persist.py) are compared with the saved
ones: what the meter counted after the save goes to the class saved (the one in force
then), and what the record has beyond the meter's (the counter record being older)
is taken back from it, so the per-class counters always add up to the totals' growth:
nothing lost, nothing counted twice.
"""
import struct
from micropython import const

from firmware import tz
from firmware.demand import Demand
from firmware.events import EV_TARIFF_CORRUPT, EV_TIME_UNKNOWN
from firmware.losses import Losses
from firmware.persist import crc32
from firmware.tariff import Tariff, KINDS, MAX_CLASSES
from firmware.walltime import WallClock, sntp_task

_MAGIC = b"RT01"
_N_T = const(36)               # MAX_CLASSES x KINDS
_FMT = "<4s36i36i12iB16i4i12i12l12L12L2LiI"   # see _pack
_PATH = "/rtime"


class RecTime:
    def __init__(self, energy, events, board, vfs=None, persist_s=60):
        self.board = board
        self.clock = board.clock
        self.events = events
        self.vfs = vfs
        self.persist_s = persist_s
        self.wall = WallClock(board.clock, events, board.time_utc())
        if not self.wall.valid():
            events.add(board.clock.ticks_ms(), EV_TIME_UNKNOWN)
        self.tariff = Tariff(energy)
        self.demand = Demand(energy, events, board.clock, getattr(board, "overrun_out", None))
        self.losses = Losses(energy)
        self.z = (0, False)
        self.cfg = None
        self.restored = False
        self.restore()

    def configure(self, cfg):
        self.cfg = cfg
        self.z = tz.zone(cfg["time"]["tz"])
        self.tariff.configure(cfg)
        self.demand.configure(cfg)
        self.losses.configure(cfg["losses"])
        self.persist_s = cfg["storage"]["persist_s"]

    def step(self, dt_ms):
        """One tick (the task's body; tests call it with a virtual clock)."""
        utc = self.wall.utc()
        cls = self.tariff.tick(utc)
        month = -1
        if utc is not None:
            y, mo = tz.fields(utc + tz.offset(self.z, utc))[:2]
            month = y * 12 + mo - 1
        self.demand.tick(utc, month, cls, dt_ms)
        self.losses.tick(dt_ms)

    async def run(self):
        import asyncio
        clock = self.clock
        last = clock.now_us()
        saved = last
        while True:
            await asyncio.sleep_ms(1000)
            now = clock.now_us()
            self.step((now - last) // 1000)
            last = now
            if self.vfs is not None and now - saved >= self.persist_s * 1000000:
                saved = now
                try:
                    self.save()
                except OSError:
                    pass               # the next period tries again

    async def sntp(self):
        t = self.cfg["time"]
        if t["ntp_server"]:
            await sntp_task(self.wall, t["ntp_server"], t["ntp_interval_s"])

    # ---- the record ----
    def _pack(self):
        t, lc, d = self.tariff, self.losses, self.demand
        return struct.pack(_FMT, _MAGIC, *(list(t.hi) + list(t.lo) + [
            v for k in range(KINDS) for v in (t._phi[k], t._plo[k])] + [t.cls]
            + list(lc.hi) + list(lc.lo) + list(lc.frac) + list(lc._p) + list(d.max_w)
            + list(d.max_t) + list(d.over_s) + list(d.bill_start) + [d.month, 0]))

    def save(self):
        if self.vfs is None:
            return
        b = self._pack()
        c = crc32(b)
        with self.vfs.open(_PATH + ".new", "wb") as f:
            f.write(b)
            f.write(struct.pack("<I", c))
        try:
            self.vfs.remove(_PATH)
        except OSError:
            pass
        self.vfs.rename(_PATH + ".new", _PATH)

    def restore(self):
        if self.vfs is None:
            return
        for p in (_PATH, _PATH + ".new"):   # a cut between remove and rename: .new
            try:
                with self.vfs.open(p, "rb") as f:
                    b = f.read()
            except OSError:
                continue
            n = struct.calcsize(_FMT)
            if len(b) == n + 4 and b[:4] == _MAGIC and \
                    struct.unpack("<I", b[n:])[0] == crc32(b[:n]):
                self._load(struct.unpack(_FMT, b[:n]))
                self.restored = True
                return
            self.events.add(self.clock.ticks_ms(), EV_TARIFF_CORRUPT)

    def _load(self, v):
        t, lc, d = self.tariff, self.losses, self.demand
        i = 1
        for a in (t.hi, t.lo):
            for k in range(_N_T):
                a[k] = v[i]
                i += 1
        for k in range(KINDS):
            t._phi[k] = v[i]
            t._plo[k] = v[i + 1]
            i += 2
        t.cls = v[i] if v[i] < MAX_CLASSES else 0
        i += 1
        for a in (lc.hi, lc.lo, lc.frac, lc._p, d.max_w, d.max_t, d.over_s, d.bill_start):
            for k in range(len(a)):
                a[k] = v[i]
                i += 1
        d.month = v[i]
        # Reconcile with the meter's restored totals (module doc): the difference goes
        # to (or comes back from) the class saved; the corrected counters carry on from
        # the saved totals when the meter is ahead, else from the meter's.
        t.sync()
        e = lc.energy
        for k in range(6):
            if e.hi[24 + k] * 1000000 + e.lo[24 + k] < lc._p[2 * k] * 1000000 + lc._p[2 * k + 1]:
                lc.mark()
                break
        d.mark()
