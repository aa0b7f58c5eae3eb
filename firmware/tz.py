"""Local time from UTC with integers: civil dates and the zone rules in config "time.tz".

    from firmware import tz
    z = tz.zone("Europe/Paris")      # (standard offset s, EU summer time?); ValueError names it
    off = tz.offset(z, utc_s)        # 3600 (CET) or 7200 (CEST)
    y, mo, d, h, mi, s, wd = tz.fields(utc_s + off)   # wd 0 = Monday

Zones: the names in RULES, or a fixed offset "+HH:MM" / "-HH:MM". The EU rule (Directive
2000/84/EC): summer time from the last Sunday of March to the last Sunday of October,
changing at 01:00 UTC in every EU zone, one hour ahead of standard time. Dates use the
days-from-civil arithmetic of the proleptic Gregorian calendar (day 0 = 1970-01-01, a
Thursday); every intermediate stays small except seconds since 1970 themselves.
"""
from micropython import const

_DAY = const(86400)
# name, standard offset (s), EU summer time
RULES = (("UTC", 0, False), ("Europe/Paris", 3600, True), ("Europe/Berlin", 3600, True),
         ("Europe/Brussels", 3600, True), ("Europe/London", 0, True),
         ("Europe/Lisbon", 0, True), ("Europe/Helsinki", 7200, True))


def days_from_civil(y, m, d):
    """Days since 1970-01-01 of a Gregorian date (m 1..12, d 1..31)."""
    if m <= 2:
        y -= 1
    era = y // 400
    yoe = y - era * 400                          # 0..399
    mp = m - 3 if m > 2 else m + 9               # March = 0
    doy = (153 * mp + 2) // 5 + d - 1            # 0..365
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def civil_from_days(z):
    """(y, m, d) of a day number (inverse of days_from_civil)."""
    z += 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (1 if m <= 2 else 0), m, d


def last_sunday(y, m):
    """Day number of the last Sunday of month m of year y."""
    nd = days_from_civil(y + 1, 1, 1) if m == 12 else days_from_civil(y, m + 1, 1)
    last = nd - 1
    return last - ((last + 3) % 7 + 1) % 7     # weekday (last + 3) % 7: 0 = Monday


def zone(name):
    """(standard offset s, EU summer time) of a zone name or "+HH:MM"/"-HH:MM"."""
    for r in RULES:
        if r[0] == name:
            return r[1], r[2]
    if isinstance(name, str) and len(name) == 6 and name[0] in "+-" and name[3] == ":" \
            and name[1:3].isdigit() and name[4:].isdigit():
        h, mi = int(name[1:3]), int(name[4:])
        if h <= 14 and mi < 60 and h * 60 + mi <= 840:
            s = (h * 60 + mi) * 60
            return (-s if name[0] == "-" else s), False
    raise ValueError("time.tz: must be one of %s or +HH:MM/-HH:MM (at most 14:00), got %r"
                     % (", ".join(r[0] for r in RULES), name))


def offset(z, utc_s):
    """Seconds to add to UTC for local time in zone z (from zone()): with EU summer time,
    an hour more in [last Sunday of March 01:00 UTC, last Sunday of October 01:00 UTC)."""
    if not z[1]:
        return z[0]
    y = civil_from_days(utc_s // _DAY)[0]
    if last_sunday(y, 3) * _DAY + 3600 <= utc_s < last_sunday(y, 10) * _DAY + 3600:
        return z[0] + 3600
    return z[0]


def fields(t):
    """(y, mo, d, h, mi, s, wd) of seconds since 1970 (wd 0 = Monday)."""
    days = t // _DAY
    sod = t - days * _DAY
    y, mo, d = civil_from_days(days)
    return y, mo, d, sod // 3600, sod // 60 % 60, sod % 60, (days + 3) % 7   # 1970-01-01: Thu


def easter(y):
    """Day number of Easter Sunday (Gregorian computus, anonymous algorithm)."""
    a = y % 19
    b, c = y // 100, y % 100
    d, e = b // 4, b % 4
    g = (8 * b + 13) // 25
    h = (19 * a + b - d - g + 15) % 30
    i, k = c // 4, c % 4
    l = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 19 * l) // 433
    month = (h + l - 7 * m + 90) // 25
    return days_from_civil(y, month, (h + l - 7 * m + 33 * month + 19) % 32)
