"""Tariff classes from a weekly calendar, and energy counters per class.

    from firmware.tariff import Tariff, class_at
    t = Tariff(meter.energy)           # the meter's exact counters (firmware/energy.py)
    t.configure(cfg)                   # config "tariff" and "time.tz" (firmware/config.py)
    t.tick(wall.utc())                 # once a second, in a task (never in the cycle)
    t.cls, t.milli(cls, kind)          # current class; Wh x 1000 counted in a class (kind
                                       # 0 import, 1 export, 2..5 Q1..Q4)

Calendar (config "tariff", Enedis digest 2.2: "heure et type de jour de la semaine :
lundi à vendredi, samedi, dimanche et jours fériés"): up to 6 class names; per day type
(wd Monday-Friday, sat, sun = Sunday and holidays) 8 switch points [minute of day, class]
ascending, minute 1440 = unused; a day starts in the class of its last point (so
[[360, HP], [1320, HC]] is HC from 22:00 to 06:00). Seasons: up to 2 [from MMDD, to MMDD,
shift] (inclusive, may wrap the year; [0, 0, 0] = unused): inside, the class is
(class + shift) mod classes, e.g. classes HPH, HCH, HPE, HCE and shift 2 for summer.
Holidays: 16 MMDD (0 = unused) and optionally the French public holidays (Code du
travail L3133-1: 8 fixed dates and Easter Monday, Ascension, Whit Monday).
Local time comes from firmware/tz.py. Without a valid time the class stays as it was.

Counters: per class 6 kinds (import, export Wh; Q1..Q4 varh) as whole mWh in two
small-int arrays (kWh, mWh 0..999999), fed by diffing the meter's three-phase total
counters (firmware/snapshot.py TOTAL block) each tick: what the meter counted goes to
the current class, so the per-class counters always add up to the totals' growth.
"""
from array import array
from micropython import const

from firmware import tz

MAX_CLASSES = const(6)
_KINDS = const(6)                # import, export, Q1, Q2, Q3, Q4 (snapshot E_* 0..5)
_TOTAL0 = const(24)              # firmware/snapshot.py: block TOTAL (3) x NE (8)
_MILLI = const(1000000)
_LO = const(36)                  # MAX_CLASSES x KINDS
_BASE = const(72)
# French public holidays on fixed dates (MMDD): a tuple, in flash
_FR_FIXED = const((101, 501, 508, 714, 815, 1101, 1111, 1225))


def n_classes(tc):
    n = 0
    while n < len(tc["classes"]) and tc["classes"][n]:
        n += 1
    return n


def class_at(tc, local_s):
    """The tariff class at local time local_s (seconds since 1970, local)."""
    y, mo, d, h, mi, _, wd = tz.fields(local_s)
    md = mo * 100 + d
    hol = md in tc["holidays"]
    if not hol and tc["fr_holidays"]:
        # fixed dates, Easter Monday, Ascension, Whit Monday
        e = local_s // 86400 - tz.easter(y)
        hol = md in _FR_FIXED or e == 1 or e == 39 or e == 50
    if wd == 6 or hol:
        table = tc["sun"]
    else:
        table = tc["sat"] if wd == 5 else tc["wd"]
    m = h * 60 + mi
    cls = -1
    last = 0
    for p in table:
        if p[0] < 1440:
            last = p[1]
            if p[0] <= m:
                cls = p[1]
    if cls < 0:
        cls = last                   # before the first switch: the day before's last
    for s in tc["seasons"]:
        if s[0]:
            inside = s[0] <= md <= s[1] if s[0] <= s[1] else (md >= s[0] or md <= s[1])
            if inside:
                cls += s[2]
                break
    return cls % n_classes(tc)


class Tariff:
    def __init__(self, energy):
        self.energy = energy
        # per counter i: kWh at [i], mWh 0..999999 at [_LO + i]; then the totals at the
        # last sync (kWh, mWh) at [_BASE + 2k]: one array, one heap object
        c = self.c = array("i", bytes(4 * (_BASE + 2 * _KINDS)))
        self.cls = 0
        self.tc = None
        self.z = (0, False)
        self._key = -1               # local minute of the last lookup
        for k in range(_KINDS):      # the totals now: the base of the first sync
            c[_BASE + 2 * k] = energy.hi[_TOTAL0 + k]
            c[_BASE + 2 * k + 1] = energy.lo[_TOTAL0 + k]

    def configure(self, cfg):
        self.tc = cfg["tariff"]
        self.z = tz.zone(cfg["time"]["tz"])
        self._key = -1

    def sync(self):
        """Add the totals' growth since the last sync (mWh; negative for a restore's
        reconciliation) to the current class."""
        e = self.energy
        c = self.c
        b = self.cls * _KINDS
        for k in range(_KINDS):
            h = e.hi[_TOTAL0 + k]
            lo = e.lo[_TOTAL0 + k]
            j = _BASE + 2 * k
            d = (h - c[j]) * _MILLI + lo - c[j + 1]
            if d:
                c[j] = h
                c[j + 1] = lo
                i = b + k
                lo = c[_LO + i] + d
                if lo >= _MILLI or lo < 0:
                    q = lo // _MILLI
                    lo -= q * _MILLI
                    c[i] += q
                c[_LO + i] = lo

    def tick(self, utc_s):
        self.sync()
        if utc_s is None or self.tc is None:
            return self.cls
        loc = utc_s + tz.offset(self.z, utc_s)
        key = loc // 60
        if key != self._key:
            self._key = key
            self.cls = class_at(self.tc, loc)
        return self.cls

    def milli(self, cls, kind):
        i = cls * _KINDS + kind
        return self.c[i] * _MILLI + self.c[_LO + i]
