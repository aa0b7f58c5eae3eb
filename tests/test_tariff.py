"""Tariff calendar and per-class counters (firmware/tariff.py). The truth: local times
from the system tz database (zoneinfo) and an HP/HC rule written here in CPython."""
import datetime
import json
import zoneinfo

import pytest

PARIS = zoneinfo.ZoneInfo("Europe/Paris")
UNUSED = [[1440, 0]] * 7

HPHC = {"classes": ["HP", "HC", "", "", "", ""],
        "wd": [[360, 0], [1320, 1]] + [[1440, 0]] * 6,
        "sat": [[0, 1]] + UNUSED, "sun": [[0, 1]] + UNUSED,
        "seasons": [[0, 0, 0], [0, 0, 0]], "holidays": [1225] + [0] * 15,
        "fr_holidays": True}


def utc_of(y, mo, d, h, mi, fold=0):
    return int(datetime.datetime(y, mo, d, h, mi, tzinfo=PARIS, fold=fold).timestamp())


def hphc_truth(t):
    """HP 06:00-22:00 Monday-Friday outside holidays, else HC (independent rule)."""
    d = datetime.datetime.fromtimestamp(t, PARIS)
    hol = {(1, 1), (5, 1), (5, 8), (7, 14), (8, 15), (11, 1), (11, 11), (12, 25)}
    easter = {2026: datetime.date(2026, 4, 5)}[d.year]      # published date
    moveable = {easter + datetime.timedelta(days=k) for k in (1, 39, 50)}
    if d.weekday() >= 5 or (d.month, d.day) in hol or d.date() in moveable:
        return 1
    return 0 if 6 * 60 <= d.hour * 60 + d.minute < 22 * 60 else 1


CASES = [  # (local time, class): DST days, holidays, weekends
    ((2026, 3, 27, 5, 59), 1), ((2026, 3, 27, 6, 0), 0), ((2026, 3, 27, 21, 59), 0),
    ((2026, 3, 27, 22, 0), 1), ((2026, 3, 29, 12, 0), 1), ((2026, 3, 30, 5, 59), 1),
    ((2026, 3, 30, 6, 0), 0), ((2026, 4, 6, 12, 0), 1), ((2026, 4, 7, 12, 0), 0),
    ((2026, 5, 14, 12, 0), 1), ((2026, 5, 25, 12, 0), 1), ((2026, 7, 14, 12, 0), 1),
    ((2026, 10, 24, 12, 0), 1), ((2026, 10, 26, 5, 59), 1), ((2026, 10, 26, 6, 0), 0),
    ((2026, 12, 24, 12, 0), 0), ((2026, 12, 25, 12, 0), 1),
]


def test_class_changes_at_local_times(mpy_any):
    ts = [utc_of(*lt) for lt, _ in CASES]
    got = mpy_any("""
from firmware import tariff, tz
tc = %s
z = tz.zone('Europe/Paris')
print('@@JSON'); import json
print(json.dumps([tariff.class_at(tc, t + tz.offset(z, t)) for t in %r]))
""" % (json.dumps(HPHC).replace("true", "True"), ts))
    assert got == [c for _, c in CASES]
    assert got == [hphc_truth(t) for t in ts]


def test_seasons_shift_classes(mpy_any):
    tc = dict(HPHC, classes=["HPH", "HCH", "HPE", "HCE", "", ""],
              seasons=[[401, 1031, 2], [0, 0, 0]])
    cases = [((2026, 3, 31, 12, 0), 0), ((2026, 4, 1, 12, 0), 2), ((2026, 4, 1, 3, 0), 3),
             ((2026, 10, 31, 12, 0), 3), ((2026, 11, 2, 12, 0), 0), ((2026, 11, 2, 3, 0), 1)]
    ts = [utc_of(*lt) for lt, _ in cases]
    got = mpy_any("""
from firmware import tariff, tz
tc = %s
z = tz.zone('Europe/Paris')
print('@@JSON'); import json
print(json.dumps([tariff.class_at(tc, t + tz.offset(z, t)) for t in %r]))
""" % (json.dumps(tc).replace("true", "True"), ts))
    assert got == [c for _, c in cases]


def test_counters_add_up_across_both_dst_changes(mpy_any):
    # Two days around each change, one tick a minute; before each tick the meter counts
    # a known amount (mWh) on every total kind; the energy between two ticks belongs to
    # the class in force at the first.
    starts = [utc_of(2026, 3, 29, 0, 0), utc_of(2026, 10, 25, 0, 0)]   # Sunday, Monday
    got = mpy_any("""
from firmware.energy import EnergyRegisters
from firmware import tariff, config
from boards.sim.board import SimBoard
cfg = config.validate({'tariff': %s}, SimBoard.CALIBRATION)
out = []
for start in %r:
    e = EnergyRegisters(32)
    for k in range(6):
        e.restore(24 + k, (123456789 + k) * 10**12)    # totals already running
    t = tariff.Tariff(e)
    t.configure(cfg)
    base = [e.milli(24 + k) for k in range(6)]
    classes = []
    t.tick(start)
    for m in range(1, 2 * 1440 + 1):
        for k in range(6):
            e.add(24 + k, ((m * 37 + k * 11) %% 1000) * 10**9 + 777 * 10**6)
        classes.append(t.cls)
        t.tick(start + 60 * m)
    out.append([classes, [[t.milli(c, k) for k in range(6)] for c in range(2)],
                [e.milli(24 + k) - base[k] for k in range(6)]])
print('@@JSON'); import json; print(json.dumps(out))
""" % (json.dumps(HPHC).replace("true", "True"), starts))
    for start, (classes, per, totals) in zip(starts, got):
        truth = [hphc_truth(start + 60 * (m - 1)) for m in range(1, 2 * 1440 + 1)]
        assert classes == truth and truth.count(0) == 16 * 60
        for k in range(6):
            # whole mWh: the sub-mWh carry (0.777 mWh a minute) lands on the later tick
            exp = [0, 0]
            carry = 0
            for m in range(1, 2 * 1440 + 1):
                carry += ((m * 37 + k * 11) % 1000) * 1000 + 777
                exp[truth[m - 1]] += carry // 1000
                carry %= 1000
            assert [per[0][k], per[1][k]] == exp
            assert per[0][k] + per[1][k] == totals[k]
