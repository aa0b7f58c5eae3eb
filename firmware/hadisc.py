"""Home Assistant MQTT discovery and the state message: both built from one data table.

    from firmware import hadisc
    for i in range(hadisc.COUNT):
        topic, payload = hadisc.config(i, names)      # retained, once per connection
    payload = hadisc.state(snap)                      # the state topic's JSON

Entities: one per row of _INST (per block L1, L2, L3, total) and of _ENERGY. A row gives
(JSON key, snapshot index, name, device_class, unit, decimals of the fixed-point value).
device_class / unit pairs follow Home Assistant's sensor documentation (device classes:
voltage V, current A, power W, reactive_power var, apparent_power VA, power_factor with
no unit, frequency Hz, energy kWh, reactive_energy kvarh); apparent energy has no
device class there, so it goes without one (unit kVAh). Energy counters are
state_class total_increasing (the Energy dashboard takes import/export as they are), the
rest measurement. Values are exact decimals written from the integers (no float): the
counters as "kWh.6 decimals" from e_hi (whole kWh) and e_lo (mWh, firmware/snapshot.py).
"""
from micropython import const

from firmware.snapshot import PHASE_NAMES, ENERGY_NAMES

# Snapshot indices (firmware/snapshot.py) as private consts, so the tables below are
# literal constants (flash when frozen); tests/test_mqtt.py checks they mirror it.
_U_MV = const(0)
_I_MA = const(1)
_P_MW = const(2)
_Q_MVAR = const(3)
_S_MVA = const(4)
_PF_E4 = const(5)
_F_MHZ = const(7)
_QUADRANT = const(8)
_NQ = const(9)
_NE = const(8)
# (key, inst index, name, device_class, unit, decimals): value = int / 10**decimals.
# P, Q, S are in 10 mW units (snapshot.POWER_UNIT_MW): 2 decimals of W.
_INST = const((
    ("u", _U_MV, "voltage", "voltage", "V", 3),
    ("i", _I_MA, "current", "current", "A", 3),
    ("p", _P_MW, "active power", "power", "W", 2),
    ("q", _Q_MVAR, "reactive power", "reactive_power", "var", 2),
    ("s", _S_MVA, "apparent power", "apparent_power", "VA", 2),
    ("pf", _PF_E4, "power factor", "power_factor", "", 4),
    ("f", _F_MHZ, "frequency", "frequency", "Hz", 3),
    ("quadrant", _QUADRANT, "quadrant", "", "", 0),
))
_NI = const(8)            # rows of _INST
# Energy kinds in snapshot order (ENERGY_NAMES): (name, device_class, unit).
_ENERGY = const((
    ("active energy import", "energy", "kWh"),
    ("active energy export", "energy", "kWh"),
    ("reactive energy Q1", "reactive_energy", "kvarh"),
    ("reactive energy Q2", "reactive_energy", "kvarh"),
    ("reactive energy Q3", "reactive_energy", "kvarh"),
    ("reactive energy Q4", "reactive_energy", "kvarh"),
    ("apparent energy import", "", "kVAh"),
    ("apparent energy export", "", "kVAh"),
))
_PER_BLOCK = const(16)    # _NI + _NE entities per block


COUNT = const(64)         # entities: 4 blocks of _PER_BLOCK


def dec(v, places):
    """Integer v / 10**places as an exact decimal literal."""
    if not places:
        return str(v)
    s = "-" if v < 0 else ""
    v = abs(v)
    p = 10 ** places
    return "%s%d.%0*d" % (s, v // p, places, v % p)


def state(snap):
    """The state topic's JSON: {"seq": n, "L1": {"u": .., .., "active_import": ..}, ..}."""
    inst, hi, lo = snap.inst, snap.e_hi, snap.e_lo
    parts = ['{"seq":%d' % snap.seq]
    for b in range(4):
        base = b * _NQ
        parts.append(',"%s":{' % PHASE_NAMES[b])
        for k in range(_NI):
            row = _INST[k]
            parts.append('%s"%s":%s' % ("," if k else "", row[0],
                                        dec(inst[base + row[1]], row[5])))
        for k in range(_NE):
            c = b * _NE + k
            parts.append(',"%s":%d.%06d' % (ENERGY_NAMES[k], hi[c], lo[c]))
        parts.append("}")
    parts.append("}")
    return "".join(parts)


def _q(s):
    """A JSON string literal (the config's strings are printable ASCII)."""
    return '"%s"' % s.replace("\\", "\\\\").replace('"', '\\"')


def config(i, n):
    """(topic, payload) of entity i. n: dict with node, prefix (discovery), base (the
    meter's topics), serial, vendor, model, sw."""
    b, k = divmod(i, _PER_BLOCK)
    ph = PHASE_NAMES[b]
    if k < _NI:
        key, _, name, dc, unit, _ = _INST[k]
        sc = "" if key == "quadrant" else "measurement"
    else:
        key = ENERGY_NAMES[k - _NI]
        name, dc, unit = _ENERGY[k - _NI]
        sc = "total_increasing"
    obj = "%s_%s" % (ph.lower(), key)
    uid = "%s_%s" % (n["node"], obj)
    # default_entity_id: object_id's replacement (deprecated since Home Assistant
    # 2025.10, ignored from 2026.4).
    p = ['{"name":%s,"unique_id":%s,"default_entity_id":%s,"state_topic":%s,'
         '"value_template":"{{ value_json.%s.%s }}","availability_topic":%s'
         % (_q("%s %s" % (ph, name)), _q(uid), _q("sensor." + uid),
            _q(n["base"] + "/state"), ph, key,
            _q(n["base"] + "/status"))]
    if dc:
        p.append(',"device_class":"%s"' % dc)
    if unit:
        p.append(',"unit_of_measurement":"%s"' % unit)
    if sc:
        p.append(',"state_class":"%s"' % sc)
    p.append(',"device":{"identifiers":[%s],"name":%s,"manufacturer":%s,"model":%s,'
             '"serial_number":%s,"sw_version":%s}}'
             % (_q(n["node"]), _q("%s %s" % (n["vendor"], n["serial"])), _q(n["vendor"]),
                _q(n["model"]), _q(n["serial"]), _q(n["sw"])))
    return "%s/sensor/%s/%s/config" % (n["prefix"], n["node"], obj), "".join(p)
