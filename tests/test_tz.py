"""firmware/tz.py against CPython's datetime and the system tz database (zoneinfo)."""
import datetime
import random
import zoneinfo

import pytest

UTC = datetime.timezone.utc


def _stamps():
    # the EU rule is in force from 1996 (France had no summer time before 1976)
    rnd = random.Random(12)
    ts = [rnd.randrange(820454400, 4102444800) for _ in range(300)]
    # around every EU change 2020..2030: the second before, at, after (01:00 UTC)
    for y in range(2020, 2031):
        for m in (3, 10):
            last = max(d for d in range(25, 32)
                       if datetime.date(y, m, d).weekday() == 6)
            t = int(datetime.datetime(y, m, last, 1, 0, tzinfo=UTC).timestamp())
            ts += [t - 3601, t - 1, t, t + 1, t + 3599]
    return ts


@pytest.mark.parametrize("name", ["Europe/Paris", "Europe/London", "UTC"])
def test_local_fields_match_tzdata(mpy_any, name):
    ts = _stamps()
    got = mpy_any("""
from firmware import tz
z = tz.zone(%r)
out = []
for t in %r:
    out.append(list(tz.fields(t + tz.offset(z, t))) + [tz.offset(z, t)])
print('@@JSON'); import json; print(json.dumps(out))
""" % (name, ts))
    zi = zoneinfo.ZoneInfo(name)
    for t, g in zip(ts, got):
        d = datetime.datetime.fromtimestamp(t, zi)
        assert g == [d.year, d.month, d.day, d.hour, d.minute, d.second, d.weekday(),
                     int(d.utcoffset().total_seconds())], (t, g)


def test_dst_edges_paris(mpy_any):
    # 2026-03-29: 02:00..02:59 local does not exist; 2026-10-25: 02:00..02:59 twice.
    got = mpy_any("""
from firmware import tz
z = tz.zone('Europe/Paris')
def loc(t):
    return list(tz.fields(t + tz.offset(z, t))[3:5])
s = tz.days_from_civil(2026, 3, 29) * 86400 + 3600     # 01:00 UTC
e = tz.days_from_civil(2026, 10, 25) * 86400 + 3600
print('@@JSON'); import json
print(json.dumps([loc(s - 1), loc(s), loc(e - 3600), loc(e - 1), loc(e), loc(e + 3599)]))
""")
    assert got == [[1, 59], [3, 0], [2, 0], [2, 59], [2, 0], [2, 59]]


def test_civil_roundtrip_and_easter(mpy_any):
    got = mpy_any("""
from firmware import tz
ok = all(tz.days_from_civil(*tz.civil_from_days(z)) == z for z in range(-800000, 800000, 997))
e = [list(tz.civil_from_days(tz.easter(y))) for y in (2024, 2025, 2026, 2027, 2038)]
print('@@JSON'); import json; print(json.dumps([ok, e, tz.days_from_civil(2000, 3, 1)]))
""")
    assert got[0] is True
    # published Easter dates
    assert got[1] == [[2024, 3, 31], [2025, 4, 20], [2026, 4, 5], [2027, 3, 28],
                      [2038, 4, 25]]
    assert got[2] == (datetime.date(2000, 3, 1) - datetime.date(1970, 1, 1)).days


def test_zone_names_and_fixed(mpy_any):
    got = mpy_any("""
from firmware import tz
out = [list(tz.zone('+05:30')), list(tz.zone('-03:00')), list(tz.zone('UTC'))]
for bad in ('Mars/Olympus', '+15:00', '0530', 5):
    try:
        tz.zone(bad); out.append('accepted')
    except ValueError as e:
        out.append(str(e))
print('@@JSON'); import json; print(json.dumps(out))
""")
    assert got[:3] == [[19800, False], [-10800, False], [0, False]]
    for msg, bad in zip(got[3:], ("'Mars/Olympus'", "'+15:00'", "'0530'", "5")):
        assert msg.startswith("time.tz:") and msg.endswith(bad)
