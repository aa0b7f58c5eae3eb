"""Clock, tariff indexes, demand and loss correction together: one 1 s task, one record.

    from firmware.rtime import RecTime
    rt = RecTime(meter.energy, events, board, vfs)   # after the counters' restore
    rt.configure(cfg)                    # "time", "records", "tariff", "demand", "losses"
    sup.spawn("rtime", rt.run)           # tariff, demand, losses each second; save
    sup.spawn("sntp", rt.sntp)           # SNTP client for time.ntp_server ("" = none)
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
from micropython import const

from firmware import tz
from firmware.demand import Demand
from firmware.losses import Losses
from firmware.tariff import Tariff
from firmware.walltime import WallClock

# consts: in the code (flash when frozen), no global slot
_MAGIC = const(b"RT01")
# magic, tariff class, billing month, then tariff.c (84), losses.c (24), demand.v (43)
_FMT = const("<4sBi84i24i43I")
_PATH = const("/rtime")
_NEW = const("/rtime.new")
_CLASSES = const(6)             # firmware/tariff.py MAX_CLASSES


class RecTime:
    def __init__(self, energy, events, board, vfs=None, persist_s=60):
        self.events = events
        self.vfs = vfs
        self.persist_s = persist_s
        self.wall = WallClock(board.clock, events, board.time_utc())
        if not self.wall.valid():
            from firmware.events import EV_TIME_UNKNOWN
            events.add(board.clock.ticks_ms(), EV_TIME_UNKNOWN)
        self.tariff = Tariff(energy)
        self.demand = Demand(energy, events, board.clock, getattr(board, "overrun_out", None))
        self.losses = Losses(energy)
        self.cfg = None
        if vfs is None:
            return
        # The record (module doc): the newest valid one, reconciled with the meter's
        # restored totals.
        import struct
        from firmware.persist import crc32
        v = None
        for p in (_PATH, _NEW):         # a cut between remove and rename: .new
            try:
                with vfs.open(p, "rb") as f:
                    b = f.read()
            except OSError:
                continue
            n = struct.calcsize(_FMT)
            if len(b) == n + 4 and b[:4] == _MAGIC and \
                    struct.unpack("<I", b[n:])[0] == crc32(b[:n]):
                v = struct.unpack(_FMT, b[:n])
                break
            from firmware.events import EV_TARIFF_CORRUPT
            events.add(board.clock.ticks_ms(), EV_TARIFF_CORRUPT)
        if v is None:
            return
        t, lc, d = self.tariff, self.losses, self.demand
        t.cls = v[1] if v[1] < _CLASSES else 0
        d.month = v[2]
        i = 3
        for a in (t.c, lc.c, d.v):
            for k in range(len(a)):
                a[k] = v[i]
                i += 1
        # the difference goes to (or comes back from) the class saved; the corrected
        # counters carry on from the saved totals when the meter is ahead, else from
        # the meter's
        t.sync()
        e = lc.energy
        for k in range(6):
            p = lc.c[12 + 2 * k] * 1000000 + lc.c[13 + 2 * k]     # losses.py _P
            if e.hi[24 + k] * 1000000 + e.lo[24 + k] < p:
                lc.mark()
                break
        d.mark()

    def configure(self, cfg):
        self.cfg = cfg
        self.tariff.configure(cfg)          # and the zone: tariff.z
        self.demand.configure(cfg)
        self.losses.configure(cfg["losses"])
        self.persist_s = cfg["storage"]["persist_s"]

    def step(self, dt_ms):
        """One tick (the task's body; tests call it with a virtual clock)."""
        utc = self.wall.utc()
        cls = self.tariff.tick(utc)
        month = -1
        if utc is not None:
            y, mo = tz.fields(utc + tz.offset(self.tariff.z, utc))[:2]
            month = y * 12 + mo - 1
        self.demand.tick(utc, month, cls, dt_ms)
        self.losses.tick(dt_ms)

    async def run(self):
        import asyncio
        clock = self.wall.clock
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
        """The SNTP client for the configured server, restarted when the config
        changes (a new server, or one after a Kiss-o'-Death DENY)."""
        import asyncio
        from firmware.walltime import sntp_task
        while True:
            cfg = self.cfg
            t = cfg["time"]
            task = None
            if t["ntp_server"]:
                task = asyncio.create_task(sntp_task(self.wall, t["ntp_server"],
                                                     t["ntp_interval_s"]))
            try:
                while self.cfg is cfg:
                    await asyncio.sleep(5)
            finally:
                if task is not None:
                    task.cancel()

    # ---- the record ----
    def save(self):
        if self.vfs is None:
            return
        import struct
        from firmware.persist import crc32
        t, lc, d = self.tariff, self.losses, self.demand
        b = struct.pack(_FMT, _MAGIC, t.cls, d.month, *(list(t.c) + list(lc.c) + list(d.v)))
        c = crc32(b)
        with self.vfs.open(_NEW, "wb") as f:
            f.write(b)
            f.write(struct.pack("<I", c))
        try:
            self.vfs.remove(_PATH)
        except OSError:
            pass
        self.vfs.rename(_NEW, _PATH)
