"""Meter configuration: defaults, validation with messages that name the key.

    from firmware import config
    cfg = config.validate({"metering": {"cycle_ms": 500}})   # merged over defaults()
    config.ConfigError: "metering.cycle_ms: must be one of (200, 500), got 300"

A validated config is nested dicts (cfg["section"]["key"]) whose sequences are tuples
(calibration's excepted); config.DEFAULTS is defaults(), built when asked for.

Later steps persist it and accept Modbus writes through `validate`; nothing is applied
that did not pass here.

Calibration: the driver reports chip codes; four constants turn them into physical
units, and they belong to the board's analog front end, so the board supplies them
(`board.CALIBRATION`, passed here as `calibration`); a config may override any key.
    v_per_code   V per xVRMS code          i_per_code   A per xIRMS code (meter input)
    w_per_code   W per xWATT/xFVAR/xVA code  wh_per_lsb   Wh per xWATTHR/xFVARHR/xVAHR LSB
Each is an EXACT number, never a float (a board's float32 would round it, and the
scale constants derived from it must come out the same bit for bit everywhere):
- a decimal string, e.g. "9.395996e-05", "0.0185", "1.262671E-4" (parsed exactly), or
- a positive integer, or
- a rational [numerator, denominator] of positive integers, e.g. [353907, 3766572000].
`rational(cfg, key)` gives (numerator, denominator); firmware/metering.py derives its
integer scale constants from these with integers only. gains / phcal are the chip's
per-phase trim registers (a production meter is calibrated per unit with them).
"""

from micropython import const

# Sequences of the defaults are tuples of constants (flash when frozen); a validated
# config keeps these very objects for a value equal to its default (no heap).
_DAY = const(((0, 0), (1440, 0), (1440, 0), (1440, 0), (1440, 0), (1440, 0), (1440, 0),
              (1440, 0)))
_ZEROS16 = const((0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))


def defaults():
    """The default config, a new dict at each call (a module-level dict would stay on
    the heap: the defaults are code, in flash when frozen)."""
    return {
        "metering": {
            "cycle_ms": 200,        # KSEM: measuring cycle 200 ms or 500 ms (manual 5.14.3)
            "nominal_hz": 50,       # 50 or 60; sets COMPMODE.SELFREQ and LINECYC
            "wiring": "3P4W",       # or "1P2W": L1 + N only (KSEM manual 4.7)
            "ct_enabled": False,    # external CTs (KSEM: above 63 A direct)
            "ct_primary_a": 100,    # 1..5000 A primary, secondary fixed at 5 A (KSEM 5.15.4)
        },
        # "calibration": from the board (see above): v_per_code, i_per_code, w_per_code,
        # wh_per_lsb, gains (per phase L1, L2, L3: [IGAIN, VGAIN, PGAIN] register values,
        # signed 24-bit, factor 1 + gain / 2**23) and phcal (3 values 0..1023).
        # Modbus slaves. RS485 defaults are the KSEM G2 factory presets (manual 5.14.1):
        # A = PLENTICORE / PIKO IQ (address 1, 38400 8N2), B = PIKO MP plus (247, 19200 8E1).
        "modbus": {
            # role (KSEM port arbitration, manual 5.14.1): "slave" serves the maps, "master"
            # hands the port to the push (section "push"), "off" leaves it silent.
            "rs485_a": {"enabled": True, "address": 1, "baud": 38400, "parity": "N", "stop": 2,
                        "role": "slave"},
            "rs485_b": {"enabled": True, "address": 247, "baud": 19200, "parity": "E",
                        "stop": 1, "role": "slave"},
            # The KSEM ships TCP off; energy managers and inverters expect it, so it is on
            # here (port 502 on a board; the host run uses its TCP_PORT).
            "tcp": {"enabled": True, "port": 502, "max_clients": 10, "idle_s": 60,
                    "own_id_only": False},
            "sunspec_da": 1,
            # SunSpec scale factor overrides, e.g. {"W_SF": 1}: by default they follow the
            # rated range (firmware/regmaps/sunspec.py) so no value inside it saturates.
            "sunspec_sf": None,
        },
        "identity": {
            "vendor": "OpenMeter",
            "model": "3P-ADE7880",
            "serial": "00000000",
            "hw_version": "1.0",
            "product_id": 18514,     # KSEM PnP product id (anchors section 4)
        },
        # Energy counters are written to flash every persist_s seconds (and at once when the
        # supply fails): a crash without warning loses at most this long (firmware/persist.py).
        "storage": {"persist_s": 60},
        # Load curve and KSEM log (firmware/records.py): the load curve's period (Enedis:
        # 10 minutes usual, digest 2.1), the CT class (its useful range's bottom, digest
        # 4.3) and how long above 110 % of the CT primary counts as sustained.
        # Records (issue 12): clock/tariffs/demand/losses (firmware/rtime.py) and the load
        # curve / KSEM log rings (firmware/records.py). Off by default: with them the
        # firmware's 32-bit heap is over its 64 KB budget (README, Benchmarks); read at boot.
        "records": {"enabled": True, "period_min": 10, "ct_class": "0.2S", "ct_sustain_s": 600},
        # Network (KSEM manual 6.4): DHCP by default; the static settings apply with dhcp off.
        # hostname "" = derived from the serial (hostname(cfg)), as the KSEM names itself
        # after its serial; letters, digits and hyphens only (RFC 1123).
        "network": {"dhcp": True, "ip": "192.168.1.100", "netmask": "255.255.255.0",
                    "gateway": "192.168.1.1", "dns": "192.168.1.1", "hostname": ""},
        # MQTT with Home Assistant discovery (firmware/mqtt.py). client_id "" = from the
        # serial; topics <topic_prefix>/<client_id>/state and /status.
        "mqtt": {"enabled": False, "url": "mqtt://192.168.1.2:1883", "user": "", "password": "",
                 "client_id": "", "keepalive_s": 60, "interval_s": 1,
                 "topic_prefix": "openmeter", "discovery": True,
                 "discovery_prefix": "homeassistant"},
        # Modbus master push (firmware/pushmb.py; KSEM manual 5.14.2-5.14.3). tcp: 10 slots
        # {host, port, unit, enabled} (a shorter list is padded; an unused slot is null);
        # rtu.slaves: 10 addresses, 0 = none.
        "push": {"mode": "cycle", "interval_s": 10, "timeout_ms": 1000, "retries": 3,
                 "groups": {"inst_total": True, "inst_phases": True, "energy_total": True,
                            "energy_phases": True},
                 "tcp": None, "rtu": {"port": None, "slaves": None}},
        # Clock (firmware/walltime.py): SNTP server ("" = none) and interval; the zone for
        # local time (firmware/tz.py RULES or "+HH:MM").
        "time": {"ntp_server": "", "ntp_interval_s": 3600, "tz": "Europe/Paris"},
        # Tariff calendar (firmware/tariff.py): class names ("" = unused, from the end), per
        # day type 8 switch points [minute of day, class] (1440 = unused), seasons
        # [from MMDD, to MMDD, class shift] ([0, 0, 0] unused), holidays MMDD (0 unused).
        "tariff": {"classes": ("BASE", "", "", "", "", ""), "wd": _DAY, "sat": _DAY,
                   "sun": _DAY, "seasons": ((0, 0, 0), (0, 0, 0)), "holidays": _ZEROS16,
                   "fr_holidays": False},
        # Demand (firmware/demand.py): subscribed power Ps per class (W, 0 = none), the
        # warning threshold k in percent of Ps (Enedis: 80..100, default 90).
        "demand": {"ps_w": (0, 0, 0, 0, 0, 0), "k_pct": 90},
        # Loss correction (firmware/losses.py, Enedis section 4): off by default; Joule
        # coefficients in per-mille (import 1000..1060, export 940..1000), iron losses in W,
        # tangent shift Ktg in hundredths (0.09 = 9).
        "losses": {"enabled": False, "kj_import": 1000, "kj_export": 1000, "kf_w": 0,
                   "ktg": 9},
    }


def __getattr__(name):
    # config.DEFAULTS as before: built on demand
    if name == "DEFAULTS":
        return defaults()
    raise AttributeError(name)


# Keys replaced as a whole by patch() (a dict of optional overrides, not a section).
_WHOLE = const(("sunspec_sf",))
PUSH_MODES = ("cycle", "interval_last", "interval_mean")     # firmware/pushmb.py
_PUSH_TARGETS = const(10)
_NO_TARGETS = const((None, None, None, None, None, None, None, None, None, None))
_NO_SLAVES = const((0, 0, 0, 0, 0, 0, 0, 0, 0, 0))
_ROLES = const(("slave", "master", "off"))

_CYCLES_MS = const((200, 500))
_BAUDS = const((9600, 19200, 38400, 57600, 115200))
_WIRINGS = const(("3P4W", "1P2W"))
_CT_SECONDARY_A = const(5)
_PERIODS_MIN = const((5, 10, 15, 30, 60))
CT_CLASSES = ("0.2SE", "0.2S", "0.5")      # firmware/records.py CT_CLASSES

_CAL_EXACT = const(("v_per_code", "i_per_code", "w_per_code", "wh_per_lsb"))
_CAL_KEYS = const(("v_per_code", "i_per_code", "w_per_code", "wh_per_lsb", "gains",
                   "phcal"))


class ConfigError(ValueError):
    pass


def parse_exact(path, v):
    """An exact positive number (see the module doc) as a reduced (num, den)."""
    num = den = 0
    if isinstance(v, int) and not isinstance(v, bool):
        num, den = v, 1
    elif isinstance(v, (list, tuple)) and len(v) == 2 and all(
            isinstance(x, int) and not isinstance(x, bool) for x in v):
        num, den = v[0], v[1]
    elif isinstance(v, str):
        num, den = _decimal(v)
    if num <= 0 or den <= 0:
        raise ConfigError('%s: must be an exact positive number: a decimal string like '
                          '"9.395996e-05", an integer or [numerator, denominator], got %r'
                          % (path, v))
    a, b = num, den          # their greatest common divisor
    while b:
        a, b = b, a % b
    return num // a, den // a


def _decimal(t):
    """'1.5e-3' -> (15, 10000); (0, 0) if not a plain decimal."""
    t = t.strip().lower()
    exp = 0
    if "e" in t:
        t, e = t.split("e", 1)
        if e[:1] in "+-" and e[1:].isdigit() and e[1:]:
            exp = int(e)
        elif e.isdigit():
            exp = int(e)
        else:
            return 0, 0
        if not -30 <= exp <= 30:
            return 0, 0
    if t[:1] == "+":
        t = t[1:]
    parts = t.split(".")
    if len(parts) > 2:
        return 0, 0
    whole, frac = parts[0], parts[1] if len(parts) == 2 else ""
    if not (whole + frac) or not (whole + frac).isdigit():
        return 0, 0
    num = int(whole + frac)
    exp -= len(frac)
    return (num * 10 ** exp, 1) if exp >= 0 else (num, 10 ** -exp)


def rational(cfg, key):
    """(numerator, denominator) of a validated config's calibration.<key>."""
    return parse_exact("calibration." + key, cfg["calibration"][key])


def _num(path, v, lo, hi, integer=False):
    ok = isinstance(v, int) if integer else isinstance(v, (int, float))
    if isinstance(v, bool) or not ok or not lo <= v <= hi:
        raise ConfigError("%s: must be %s in %s..%s, got %r"
                          % (path, "an integer" if integer else "a number", lo, hi, v))
    return v


def _copy(v):
    """Deep copy of dicts, lists and tuples, sequences as lists (a config to edit)."""
    if isinstance(v, dict):
        return {k: _copy(v[k]) for k in v}
    if isinstance(v, (list, tuple)):
        return [_copy(x) for x in v]
    return v


def _frozen(v):
    """A copy of v with its lists as tuples (a validated config's sequences)."""
    if isinstance(v, (list, tuple)):
        return tuple(_frozen(x) for x in v)
    return _copy(v)


def _merge(base, over, path):
    """Merge `over` into `base` (a new dict of this module's, changed in place); what
    comes from `over` is copied, so the result shares nothing mutable with it. Where the
    default is a tuple, the value becomes one; a value equal to its default is the
    default's own object (a constant in the code: nothing on the heap)."""
    for k in over:
        if k not in base:
            raise ConfigError("%s%s: unknown key" % (path, k))
        b, v = base[k], over[k]
        if (b is None or k in _WHOLE) and (v is None or isinstance(v, dict)):
            base[k] = _copy(v)
        elif isinstance(b, dict):
            if not isinstance(v, dict):
                raise ConfigError("%s%s: must be an object" % (path, k))
            _merge(b, v, path + k + ".")
        else:
            v = _frozen(v) if isinstance(b, tuple) else _copy(v)
            # Equal to the default (a stored config's strings, read from JSON): the
            # default's constant. Same type only: True == 1, and 1 is no bool here.
            base[k] = b if type(v) is type(b) and v == b else v
    return base


def validate(cfg=None, calibration=None):
    """Merge cfg over the defaults (and its calibration over the board's `calibration`
    dict) and check every value. Returns a new dict that shares nothing mutable with
    either: editing it never changes the defaults, the board's calibration or a later
    result. Its sequences are tuples, except calibration's (lists, as the board's)."""
    if cfg is None:
        cfg = {}
    if not isinstance(cfg, dict):
        raise ConfigError("config: must be an object")
    c = defaults()
    cal = c["calibration"] = dict.fromkeys(_CAL_KEYS)
    if calibration:
        for k in calibration:
            if k not in _CAL_KEYS:
                raise ConfigError("board calibration.%s: unknown key" % k)
            cal[k] = _copy(calibration[k])
    _merge(c, cfg, "")
    cal = c["calibration"]
    for k in _CAL_KEYS:
        if cal[k] is None:
            raise ConfigError("calibration.%s: missing (the board gives no default)" % k)
    m = c["metering"]
    if m["cycle_ms"] not in _CYCLES_MS:
        raise ConfigError("metering.cycle_ms: must be one of %r, got %r"
                          % (_CYCLES_MS, m["cycle_ms"]))
    if m["nominal_hz"] not in (50, 60) or isinstance(m["nominal_hz"], bool):
        raise ConfigError("metering.nominal_hz: must be 50 or 60, got %r" % (m["nominal_hz"],))
    if m["wiring"] not in _WIRINGS:
        raise ConfigError("metering.wiring: must be one of %r, got %r" % (_WIRINGS, m["wiring"]))
    if not isinstance(m["ct_enabled"], bool):
        raise ConfigError("metering.ct_enabled: must be true or false, got %r"
                          % (m["ct_enabled"],))
    _num("metering.ct_primary_a", m["ct_primary_a"], 1, 5000, integer=True)
    for k in _CAL_EXACT:
        parse_exact("calibration." + k, cal[k])
    g = cal["gains"]
    if not isinstance(g, list) or len(g) != 3:
        raise ConfigError("calibration.gains: must be 3 rows [IGAIN, VGAIN, PGAIN]")
    for ph in range(3):
        if not isinstance(g[ph], list) or len(g[ph]) != 3:
            raise ConfigError("calibration.gains[%d]: must be [IGAIN, VGAIN, PGAIN]" % ph)
        for k in range(3):
            _num("calibration.gains[%d][%d]" % (ph, k), g[ph][k], -(1 << 23), (1 << 23) - 1,
                 integer=True)
    pc = cal["phcal"]
    if not isinstance(pc, list) or len(pc) != 3:
        raise ConfigError("calibration.phcal: must be 3 values")
    for ph in range(3):
        _num("calibration.phcal[%d]" % ph, pc[ph], 0, 1023, integer=True)
    mb = c["modbus"]
    for port in ("rs485_a", "rs485_b"):
        p = mb[port]
        path = "modbus.%s." % port
        if not isinstance(p["enabled"], bool):
            raise ConfigError(path + "enabled: must be true or false, got %r" % (p["enabled"],))
        _num(path + "address", p["address"], 1, 247, integer=True)
        if p["baud"] not in _BAUDS or isinstance(p["baud"], bool):
            raise ConfigError(path + "baud: must be one of %r, got %r" % (_BAUDS, p["baud"]))
        if p["parity"] not in ("N", "E", "O"):
            raise ConfigError(path + "parity: must be N, E or O, got %r" % (p["parity"],))
        if p["stop"] not in (1, 2) or isinstance(p["stop"], bool):
            raise ConfigError(path + "stop: must be 1 or 2, got %r" % (p["stop"],))
        if p["role"] not in _ROLES:
            raise ConfigError(path + "role: must be one of %r, got %r" % (_ROLES, p["role"]))
    _push(c["push"], mb)
    t = mb["tcp"]
    for k in ("enabled", "own_id_only"):
        if not isinstance(t[k], bool):
            raise ConfigError("modbus.tcp.%s: must be true or false, got %r" % (k, t[k]))
    _num("modbus.tcp.port", t["port"], 1, 65535, integer=True)
    _num("modbus.tcp.max_clients", t["max_clients"], 1, 32, integer=True)
    _num("modbus.tcp.idle_s", t["idle_s"], 1, 86400, integer=True)
    _num("modbus.sunspec_da", mb["sunspec_da"], 1, 247, integer=True)
    sf = mb["sunspec_sf"]
    if sf is not None:
        if not isinstance(sf, dict):
            raise ConfigError("modbus.sunspec_sf: must be an object of scale factors, "
                              "e.g. {\"W_SF\": 1}, got %r" % (sf,))
        for k in sf:
            if isinstance(sf[k], bool) or not isinstance(sf[k], int):
                raise ConfigError("modbus.sunspec_sf.%s: must be an integer, got %r"
                                  % (k, sf[k]))
    idn = c["identity"]
    for k, n in (("vendor", 32), ("model", 32), ("serial", 32), ("hw_version", 16)):
        if not isinstance(idn[k], str) or len(idn[k]) > n:
            raise ConfigError("identity.%s: must be a string of at most %d characters, got %r"
                              % (k, n, idn[k]))
    _num("identity.product_id", idn["product_id"], 0, 65535, integer=True)
    _num("storage.persist_s", c["storage"]["persist_s"], 10, 3600, integer=True)
    _records(c["records"])
    n = c["network"]
    if not isinstance(n["dhcp"], bool):
        raise ConfigError("network.dhcp: must be true or false, got %r" % (n["dhcp"],))
    for k in ("ip", "netmask", "gateway", "dns"):
        ipv4("network." + k, n[k])
    h = n["hostname"]
    # RFC 1123 labels: letters, digits, hyphens, not first or last ("" = from the serial)
    if not isinstance(h, str) or len(h) > 32 or h[:1] == "-" or h[-1:] == "-" or not all(
            ("a" <= ch.lower() <= "z") or ("0" <= ch <= "9") or ch == "-" for ch in h):
        raise ConfigError("network.hostname: letters, digits and hyphens (not first or "
                          "last), at most 32, got %r" % (h,))
    _check_mqtt(c["mqtt"])
    _check_records(c)
    return c


def parse_url(url):
    """mqtt://host[:port] -> (host, port); ValueError naming the URL."""
    if not url.startswith("mqtt://"):
        raise ValueError("must be mqtt://host[:port], got %r" % url)
    hp = url[7:].rstrip("/")
    host, port = hp, 1883
    if ":" in hp:
        host, p = hp.rsplit(":", 1)
        if not p.isdigit() or not 0 < int(p) < 65536:
            raise ValueError("bad port in %r" % url)
        port = int(p)
    if not host or "/" in host:
        raise ValueError("no host in %r" % url)
    return host, port


def _check_mqtt(q):
    for k in ("enabled", "discovery"):
        if not isinstance(q[k], bool):
            raise ConfigError("mqtt.%s: must be true or false, got %r" % (k, q[k]))
    # Lengths: the config registers' string rows (firmware/regmaps/device.py).
    for k, n in (("url", 64), ("user", 32), ("password", 32), ("client_id", 23),
                 ("topic_prefix", 32), ("discovery_prefix", 32)):
        v = q[k]
        if not isinstance(v, str) or len(v) > n or not all(" " <= ch <= "~" for ch in v):
            raise ConfigError("mqtt.%s: must be printable ASCII of at most %d characters, "
                              "got %r" % (k, n, v))
    # Topic levels: no wildcards, no empty level (MQTT 3.1.1, 4.7); the client id's
    # 23 characters are the limit every broker must accept (3.1.3.1).
    for k in ("client_id", "topic_prefix", "discovery_prefix"):
        v = q[k]
        if "+" in v or "#" in v or (k != "client_id" and (not v or "//" in v or
                                                          v[0] == "/" or v[-1] == "/")):
            raise ConfigError("mqtt.%s: not a topic level (no +, #, empty level), got %r"
                              % (k, v))
    if "/" in q["client_id"]:
        raise ConfigError("mqtt.client_id: no '/', got %r" % (q["client_id"],))
    try:
        parse_url(q["url"])
    except ValueError as e:
        raise ConfigError("mqtt.url: %s" % e)
    _num("mqtt.keepalive_s", q["keepalive_s"], 5, 3600, integer=True)
    _num("mqtt.interval_s", q["interval_s"], 1, 3600, integer=True)


def _records(r):
    if not isinstance(r["enabled"], bool):
        raise ConfigError("records.enabled: must be true or false, got %r" % (r["enabled"],))
    if r["period_min"] not in _PERIODS_MIN or isinstance(r["period_min"], bool):
        raise ConfigError("records.period_min: must be one of %r, got %r"
                          % (_PERIODS_MIN, r["period_min"]))
    if r["ct_class"] not in CT_CLASSES:
        raise ConfigError("records.ct_class: must be one of %r, got %r"
                          % (CT_CLASSES, r["ct_class"]))
    _num("records.ct_sustain_s", r["ct_sustain_s"], 60, 3600, integer=True)
def _push(p, mb):
    """Check section "push" in place; pads tcp and rtu.slaves to 10 slots (an unused
    TCP slot becomes None)."""
    if p["mode"] not in PUSH_MODES:
        raise ConfigError("push.mode: must be one of %r, got %r" % (PUSH_MODES, p["mode"]))
    # <= 3600 s: 18,000 cycles of 200 ms keep the mean's limb sums below 2**30
    _num("push.interval_s", p["interval_s"], 1, 3600, integer=True)
    _num("push.timeout_ms", p["timeout_ms"], 50, 60000, integer=True)
    _num("push.retries", p["retries"], 0, 10, integer=True)
    g = p["groups"]
    for k in g:
        if not isinstance(g[k], bool):
            raise ConfigError("push.groups.%s: must be true or false, got %r" % (k, g[k]))
    t = p["tcp"]
    if t is None:
        t = []
    if not isinstance(t, list) or len(t) > _PUSH_TARGETS:
        raise ConfigError("push.tcp: must be a list of at most %d targets, got %r"
                          % (_PUSH_TARGETS, t))
    slots = list(_NO_TARGETS)
    for i in range(_PUSH_TARGETS):
        e = {"host": "", "port": 502, "unit": 1, "enabled": False}
        if i < len(t) and t[i] is not None:
            if not isinstance(t[i], dict):
                raise ConfigError("push.tcp.%d: must be an object" % i)
            for k in t[i]:
                if k not in e:
                    raise ConfigError("push.tcp.%d.%s: unknown key" % (i, k))
            e.update(t[i])
        path = "push.tcp.%d." % i
        h = e["host"]
        if not isinstance(h, str) or len(h) > 32 or not all(
                "!" <= ch <= "~" for ch in h):
            raise ConfigError(path + "host: must be a host name or IP address of at most "
                              "32 characters, got %r" % (h,))
        _num(path + "port", e["port"], 1, 65535, integer=True)
        _num(path + "unit", e["unit"], 0, 255, integer=True)
        if not isinstance(e["enabled"], bool):
            raise ConfigError(path + "enabled: must be true or false, got %r"
                              % (e["enabled"],))
        if e["enabled"] and not h:
            raise ConfigError(path + "host: needed when the target is enabled")
        # An unused slot is None: ten dicts would cost about 1.4 KB of a board's heap.
        if h or e["port"] != 502 or e["unit"] != 1:
            slots[i] = e
    p["tcp"] = tuple(slots) if any(slots) else _NO_TARGETS
    r = p["rtu"]
    if r["port"] not in (None, "a", "b"):
        raise ConfigError('push.rtu.port: must be "a", "b" or null, got %r' % (r["port"],))
    s = r["slaves"]
    if s is None:
        s = []
    if not isinstance(s, list) or len(s) > _PUSH_TARGETS:
        raise ConfigError("push.rtu.slaves: must be a list of at most %d addresses, got %r"
                          % (_PUSH_TARGETS, s))
    for i in range(len(s)):
        _num("push.rtu.slaves.%d" % i, s[i], 0, 247, integer=True)
    s = tuple(s) + _NO_SLAVES[len(s):]
    r["slaves"] = _NO_SLAVES if s == _NO_SLAVES else s
    if r["port"] is not None and mb["rs485_" + r["port"]]["role"] != "master":
        raise ConfigError('push.rtu.port: port %s must have modbus.rs485_%s.role "master"'
                          % (r["port"], r["port"]))


def _check_records(c):
    t = c["time"]
    s = t["ntp_server"]
    if not isinstance(s, str) or len(s) > 32 or not all(
            "a" <= ch.lower() <= "z" or "0" <= ch <= "9" or ch in ".-:" for ch in s):
        raise ConfigError("time.ntp_server: a host name or address of at most 32 "
                          "characters, or \"\" for none, got %r" % (s,))
    _num("time.ntp_interval_s", t["ntp_interval_s"], 64, 86400, integer=True)
    if not isinstance(t["tz"], str) or not 0 < len(t["tz"]) <= 16:
        raise ConfigError("time.tz: a zone name or \"+HH:MM\", got %r" % (t["tz"],))
    if c["records"]["enabled"]:
        # The zone table loads with the records only (a boot without them keeps its
        # module objects off the heap); a config that turns them on is checked in full.
        from firmware import tz
        try:
            tz.zone(t["tz"])
        except ValueError as e:
            raise ConfigError(str(e))
    tc = c["tariff"]
    names = tc["classes"]
    if not isinstance(names, tuple) or len(names) != 6 or not names[0] or not all(
            isinstance(n, str) and len(n) <= 8 for n in names):
        raise ConfigError("tariff.classes: 6 names of at most 8 characters, the first "
                          "not empty, got %r" % (names,))
    n = 0
    while n < 6 and names[n]:
        n += 1
    if any(names[n:]):
        raise ConfigError("tariff.classes: unused names must come last, got %r" % (names,))
    for day in ("wd", "sat", "sun"):
        pts = tc[day]
        if not isinstance(pts, tuple) or len(pts) != 8:
            raise ConfigError("tariff.%s: must be 8 switch points [minute, class]" % day)
        prev = -1
        for i in range(8):
            p = pts[i]
            path = "tariff.%s.%d" % (day, i)
            if not isinstance(p, tuple) or len(p) != 2:
                raise ConfigError(path + ": must be [minute of day, class], got %r" % (p,))
            _num(path + ".0", p[0], 0, 1440, integer=True)
            _num(path + ".1", p[1], 0, n - 1, integer=True)
            if p[0] < 1440 and p[0] <= prev:
                raise ConfigError(path + ": switch minutes must ascend, got %r" % (p[0],))
            if p[0] < 1440:
                prev = p[0]
        if prev < 0:
            raise ConfigError("tariff.%s: needs at least one switch point" % day)
    ss = tc["seasons"]
    if not isinstance(ss, tuple) or len(ss) != 2:
        raise ConfigError("tariff.seasons: must be 2 [from MMDD, to MMDD, shift]")
    for i in range(2):
        s = ss[i]
        if not isinstance(s, tuple) or len(s) != 3:
            raise ConfigError("tariff.seasons.%d: must be [from MMDD, to MMDD, shift]" % i)
        if s[0] or s[1]:
            _mmdd("tariff.seasons.%d.0" % i, s[0])
            _mmdd("tariff.seasons.%d.1" % i, s[1])
        _num("tariff.seasons.%d.2" % i, s[2], 0, 5, integer=True)
    h = tc["holidays"]
    if not isinstance(h, tuple) or len(h) != 16:
        raise ConfigError("tariff.holidays: must be 16 dates MMDD (0 = unused)")
    for i in range(16):
        if h[i]:
            _mmdd("tariff.holidays.%d" % i, h[i])
    if not isinstance(tc["fr_holidays"], bool):
        raise ConfigError("tariff.fr_holidays: must be true or false, got %r"
                          % (tc["fr_holidays"],))
    d = c["demand"]
    if not isinstance(d["ps_w"], tuple) or len(d["ps_w"]) != 6:
        raise ConfigError("demand.ps_w: must be 6 powers in W (one per tariff class)")
    for i in range(6):
        _num("demand.ps_w.%d" % i, d["ps_w"][i], 0, 100000000, integer=True)
    _num("demand.k_pct", d["k_pct"], 80, 100, integer=True)
    lo = c["losses"]
    if not isinstance(lo["enabled"], bool):
        raise ConfigError("losses.enabled: must be true or false, got %r" % (lo["enabled"],))
    _num("losses.kj_import", lo["kj_import"], 1000, 1060, integer=True)
    _num("losses.kj_export", lo["kj_export"], 940, 1000, integer=True)
    _num("losses.kf_w", lo["kf_w"], 0, 100000, integer=True)
    _num("losses.ktg", lo["ktg"], 0, 100, integer=True)


def _mmdd(path, v):
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v % 100 <= (
            0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)[v // 100 if v < 1300 else 0]:
        raise ConfigError("%s: must be a date MMDD like 1225, got %r" % (path, v))


def ipv4(path, v):
    """(a, b, c, d) of a dotted quad string; ConfigError naming path otherwise."""
    parts = v.split(".") if isinstance(v, str) else ()
    if len(parts) != 4 or not all(p.isdigit() and len(p) <= 3 and int(p) <= 255
                                  for p in parts):
        raise ConfigError("%s: must be an IPv4 address like 192.168.1.10, got %r" % (path, v))
    return tuple(int(p) for p in parts)


def hostname(cfg):
    """The configured hostname, or the one derived from the serial (KSEM style)."""
    h = cfg["network"]["hostname"]
    if h:
        return h
    s = "".join(ch for ch in cfg["identity"]["serial"]
                if "a" <= ch.lower() <= "z" or "0" <= ch <= "9")
    return ("OpenMeter-" + s)[:32]


def patch(current, change, calibration=None):
    """A validated config: `change` (a partial config) merged over `current` (a
    validated one). ConfigError names the first bad key; `current` is never changed."""
    if not isinstance(change, dict):
        raise ConfigError("config: must be an object")
    return validate(_merge(_copy(current), change, ""), calibration)


def ct_ratio(cfg):
    """(numerator, denominator) applied to currents, powers and energies."""
    m = cfg["metering"]
    if m["ct_enabled"]:
        return m["ct_primary_a"], _CT_SECONDARY_A
    return 1, 1


def line_cycles(cfg):
    """LINECYC half cycles for one metering cycle at the nominal frequency."""
    m = cfg["metering"]
    return m["cycle_ms"] * 2 * m["nominal_hz"] // 1000
