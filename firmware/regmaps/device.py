"""The configuration space (0xC000..0xC3FF): reads and protected writes of the config.

    from firmware.regmaps.device import DeviceSpace, Routed
    class Settings(DeviceSpace): ...  # firmware/cfgstore.py: access, stage, command()
    space = settings                  # the settings owner is the space
    code = space.read(0xC040, 7, out, 0)
    code = space.write(0xC042, 1, src, 0, ctx)     # ctx: firmware.modbus.pdu.Caller

The rows are the table ROWS below (data: a constant when frozen); encode()/decode()
are its codec.
Writes (Modbus Application Protocol v1.1b3, section 7 exception codes):
- must cover whole rows, with no gap, and either config rows only (any sections: one
  change, all or nothing) or one special row; else 02 (Illegal Data Address), as
  for a read-only row;
- the unlock row needs no unlock (wrong password 03, locked out 06: "retry later");
- everything else needs this caller unlocked, else 01 (Illegal Function: the spec's
  "server in the wrong state to process a request of this type"; the address exists
  and reads work, so 02 would mislead, and 04 means a failure). The KSEM itself takes
  writes only over TLS (port 802, manual 5.14.2); a board here has no TLS, hence the
  password unlock;
- a config change is validated at once against the config with every write already
  accepted: a bad value is 03 and nothing changes; a full queue is 06; else queued,
  persisted and applied (firmware/staging.py), and the reply goes out at once.
Reads allocate (a few small objects): not the measurement path.
"""
import struct
from micropython import const

from firmware import config as config_mod

# ---- the table ------------------------------------------------------------
# The configuration register block (holding registers 0xC000..0xC3FF): a data table.
#
# A row: (address, registers, type, config key path, enum values or ""). Paths are
# dotted config keys (firmware/config.py); a digit is a list index. Types:
#     U16 uint16, BOOL 0/1, ENUM index into the row's values, U32/I32 high word
#     first, SF int16 SunSpec scale factor override (-32768 = none, follows the rating),
#     STR ASCII, NUL padded, IP4 two registers a.b / c.d, RAT exact number as
#     numerator uint64 then denominator uint64 (8 registers), PRESET a KSEM RS485 preset
#     (read: the one the port matches, 0 = user-defined; write 1..4: fills address, baud,
#     parity and stop; keys written in the same request override it),
#     UNLOCK password (ASCII, up to 16 registers, never readable), PWCHG old password
#     (16 registers) + new (16), written together, CMD commands, STAT read-only status,
#     SECRET a config string that is written like STR but always reads 0 (the MQTT
#     password, as the unlock row).
# Reads are open and show the config with accepted writes (even those still being
# committed). Writes: see the module doc. Commands (0xC030): firmware/cfgstore.py.

_BASE = const(0xC000)
_END = const(0xC3FF)        # 0xC400.. is the event log's

_U16 = const(0)
_BOOL = const(1)
_ENUM = const(2)
_U32 = const(3)
_I32 = const(4)
_SF = const(5)
_STR = const(6)
_IP4 = const(7)
_RAT = const(8)
_PRESET = const(9)
_UNLOCK = const(10)
_PWCHG = const(11)
_CMD = const(12)
_STAT = const(13)
_SECRET = const(14)
TYPE_NAMES = ("uint16", "bool", "enum", "uint32", "int32", "sunssf", "string", "ipv4",
              "rational", "preset", "password", "password change", "command", "status",
              "secret")

# KSEM RS485 presets (manual 5.14.1; digest 4.2): address, baud, parity, stop.
PRESETS = (
    ("user-defined", None),
    ("PIKO IQ/PLENTICORE", (1, 38400, "N", 2)),
    ("PIKO MP plus", (247, 19200, "E", 1)),
    ("PIKO CI", (1, 19200, "N", 2)),
    ("ENECTOR blackout", (2, 57600, "N", 2)),
)


# Literal rows (no code at import): frozen, the table is a constant in flash.
ROWS = (
    (0xC000, 16, _UNLOCK, "unlock", ""),
    (0xC010, 32, _PWCHG, "password", ""),
    (0xC030, 1, _CMD, "command", ""),
    (0xC031, 1, _STAT, "lockout_s", ""),
    (0xC032, 1, _STAT, "failures", ""),
    (0xC033, 1, _STAT, "unlock_s", ""),
    (0xC034, 1, _STAT, "pending", ""),
    (0xC035, 1, _STAT, "committed", ""),
    (0xC036, 1, _STAT, "refused", ""),
    (0xC040, 1, _PRESET, "modbus.rs485_a.preset", ""),
    (0xC041, 1, _BOOL, "modbus.rs485_a.enabled", ""),
    (0xC042, 1, _U16, "modbus.rs485_a.address", ""),
    (0xC043, 2, _U32, "modbus.rs485_a.baud", ""),
    (0xC045, 1, _ENUM, "modbus.rs485_a.parity", ("N", "E", "O")),
    (0xC046, 1, _U16, "modbus.rs485_a.stop", ""),
    (0xC047, 1, _ENUM, "modbus.rs485_a.role", ("slave", "master", "off")),
    (0xC050, 1, _PRESET, "modbus.rs485_b.preset", ""),
    (0xC051, 1, _BOOL, "modbus.rs485_b.enabled", ""),
    (0xC052, 1, _U16, "modbus.rs485_b.address", ""),
    (0xC053, 2, _U32, "modbus.rs485_b.baud", ""),
    (0xC055, 1, _ENUM, "modbus.rs485_b.parity", ("N", "E", "O")),
    (0xC056, 1, _U16, "modbus.rs485_b.stop", ""),
    (0xC057, 1, _ENUM, "modbus.rs485_b.role", ("slave", "master", "off")),
    (0xC060, 1, _BOOL, "modbus.tcp.enabled", ""),
    (0xC061, 1, _U16, "modbus.tcp.port", ""),
    (0xC062, 1, _U16, "modbus.tcp.max_clients", ""),
    (0xC063, 2, _U32, "modbus.tcp.idle_s", ""),
    (0xC065, 1, _BOOL, "modbus.tcp.own_id_only", ""),
    (0xC070, 1, _U16, "metering.cycle_ms", ""),
    (0xC071, 1, _U16, "metering.nominal_hz", ""),
    (0xC072, 1, _ENUM, "metering.wiring", ("3P4W", "1P2W")),
    (0xC073, 1, _BOOL, "metering.ct_enabled", ""),
    (0xC074, 1, _U16, "metering.ct_primary_a", ""),
    (0xC078, 1, _U16, "storage.persist_s", ""),
    (0xC079, 1, _U16, "records.period_min", ""),
    (0xC07A, 1, _ENUM, "records.ct_class", ("0.2SE", "0.2S", "0.5")),
    (0xC07B, 1, _U16, "records.ct_sustain_s", ""),
    (0xC07C, 1, _BOOL, "records.enabled", ""),
    (0xC080, 1, _U16, "modbus.sunspec_da", ""),
    (0xC081, 1, _SF, "modbus.sunspec_sf.A_SF", ""),
    (0xC082, 1, _SF, "modbus.sunspec_sf.V_SF", ""),
    (0xC083, 1, _SF, "modbus.sunspec_sf.Hz_SF", ""),
    (0xC084, 1, _SF, "modbus.sunspec_sf.W_SF", ""),
    (0xC085, 1, _SF, "modbus.sunspec_sf.VA_SF", ""),
    (0xC086, 1, _SF, "modbus.sunspec_sf.VAR_SF", ""),
    (0xC087, 1, _SF, "modbus.sunspec_sf.PF_SF", ""),
    (0xC088, 1, _SF, "modbus.sunspec_sf.TotWh_SF", ""),
    (0xC089, 1, _SF, "modbus.sunspec_sf.TotVAh_SF", ""),
    (0xC08A, 1, _SF, "modbus.sunspec_sf.TotVArh_SF", ""),
    (0xC090, 16, _STR, "identity.vendor", ""),
    (0xC0A0, 16, _STR, "identity.model", ""),
    (0xC0B0, 16, _STR, "identity.serial", ""),
    (0xC0C0, 8, _STR, "identity.hw_version", ""),
    (0xC0C8, 1, _U16, "identity.product_id", ""),
    (0xC0D0, 1, _BOOL, "network.dhcp", ""),
    (0xC0D1, 2, _IP4, "network.ip", ""),
    (0xC0D3, 2, _IP4, "network.netmask", ""),
    (0xC0D5, 2, _IP4, "network.gateway", ""),
    (0xC0D7, 2, _IP4, "network.dns", ""),
    (0xC0E0, 16, _STR, "network.hostname", ""),
    (0xC100, 8, _RAT, "calibration.v_per_code", ""),
    (0xC108, 8, _RAT, "calibration.i_per_code", ""),
    (0xC110, 8, _RAT, "calibration.w_per_code", ""),
    (0xC118, 8, _RAT, "calibration.wh_per_lsb", ""),
    (0xC120, 2, _I32, "calibration.gains.0.0", ""),
    (0xC122, 2, _I32, "calibration.gains.0.1", ""),
    (0xC124, 2, _I32, "calibration.gains.0.2", ""),
    (0xC126, 2, _I32, "calibration.gains.1.0", ""),
    (0xC128, 2, _I32, "calibration.gains.1.1", ""),
    (0xC12A, 2, _I32, "calibration.gains.1.2", ""),
    (0xC12C, 2, _I32, "calibration.gains.2.0", ""),
    (0xC12E, 2, _I32, "calibration.gains.2.1", ""),
    (0xC130, 2, _I32, "calibration.gains.2.2", ""),
    (0xC132, 1, _U16, "calibration.phcal.0", ""),
    (0xC133, 1, _U16, "calibration.phcal.1", ""),
    (0xC134, 1, _U16, "calibration.phcal.2", ""),
    # clock, records, tariff calendar, demand, loss correction (issue 12)
    (0xC140, 16, _STR, "time.ntp_server", ""),
    (0xC150, 2, _U32, "time.ntp_interval_s", ""),
    (0xC152, 8, _STR, "time.tz", ""),
    (0xC160, 4, _STR, "tariff.classes.0", ""),
    (0xC164, 4, _STR, "tariff.classes.1", ""),
    (0xC168, 4, _STR, "tariff.classes.2", ""),
    (0xC16C, 4, _STR, "tariff.classes.3", ""),
    (0xC170, 4, _STR, "tariff.classes.4", ""),
    (0xC174, 4, _STR, "tariff.classes.5", ""),
    (0xC178, 1, _BOOL, "tariff.fr_holidays", ""),
    (0xC180, 1, _U16, "tariff.wd.0.0", ""),
    (0xC181, 1, _U16, "tariff.wd.0.1", ""),
    (0xC182, 1, _U16, "tariff.wd.1.0", ""),
    (0xC183, 1, _U16, "tariff.wd.1.1", ""),
    (0xC184, 1, _U16, "tariff.wd.2.0", ""),
    (0xC185, 1, _U16, "tariff.wd.2.1", ""),
    (0xC186, 1, _U16, "tariff.wd.3.0", ""),
    (0xC187, 1, _U16, "tariff.wd.3.1", ""),
    (0xC188, 1, _U16, "tariff.wd.4.0", ""),
    (0xC189, 1, _U16, "tariff.wd.4.1", ""),
    (0xC18A, 1, _U16, "tariff.wd.5.0", ""),
    (0xC18B, 1, _U16, "tariff.wd.5.1", ""),
    (0xC18C, 1, _U16, "tariff.wd.6.0", ""),
    (0xC18D, 1, _U16, "tariff.wd.6.1", ""),
    (0xC18E, 1, _U16, "tariff.wd.7.0", ""),
    (0xC18F, 1, _U16, "tariff.wd.7.1", ""),
    (0xC190, 1, _U16, "tariff.sat.0.0", ""),
    (0xC191, 1, _U16, "tariff.sat.0.1", ""),
    (0xC192, 1, _U16, "tariff.sat.1.0", ""),
    (0xC193, 1, _U16, "tariff.sat.1.1", ""),
    (0xC194, 1, _U16, "tariff.sat.2.0", ""),
    (0xC195, 1, _U16, "tariff.sat.2.1", ""),
    (0xC196, 1, _U16, "tariff.sat.3.0", ""),
    (0xC197, 1, _U16, "tariff.sat.3.1", ""),
    (0xC198, 1, _U16, "tariff.sat.4.0", ""),
    (0xC199, 1, _U16, "tariff.sat.4.1", ""),
    (0xC19A, 1, _U16, "tariff.sat.5.0", ""),
    (0xC19B, 1, _U16, "tariff.sat.5.1", ""),
    (0xC19C, 1, _U16, "tariff.sat.6.0", ""),
    (0xC19D, 1, _U16, "tariff.sat.6.1", ""),
    (0xC19E, 1, _U16, "tariff.sat.7.0", ""),
    (0xC19F, 1, _U16, "tariff.sat.7.1", ""),
    (0xC1A0, 1, _U16, "tariff.sun.0.0", ""),
    (0xC1A1, 1, _U16, "tariff.sun.0.1", ""),
    (0xC1A2, 1, _U16, "tariff.sun.1.0", ""),
    (0xC1A3, 1, _U16, "tariff.sun.1.1", ""),
    (0xC1A4, 1, _U16, "tariff.sun.2.0", ""),
    (0xC1A5, 1, _U16, "tariff.sun.2.1", ""),
    (0xC1A6, 1, _U16, "tariff.sun.3.0", ""),
    (0xC1A7, 1, _U16, "tariff.sun.3.1", ""),
    (0xC1A8, 1, _U16, "tariff.sun.4.0", ""),
    (0xC1A9, 1, _U16, "tariff.sun.4.1", ""),
    (0xC1AA, 1, _U16, "tariff.sun.5.0", ""),
    (0xC1AB, 1, _U16, "tariff.sun.5.1", ""),
    (0xC1AC, 1, _U16, "tariff.sun.6.0", ""),
    (0xC1AD, 1, _U16, "tariff.sun.6.1", ""),
    (0xC1AE, 1, _U16, "tariff.sun.7.0", ""),
    (0xC1AF, 1, _U16, "tariff.sun.7.1", ""),
    (0xC1B0, 1, _U16, "tariff.seasons.0.0", ""),
    (0xC1B1, 1, _U16, "tariff.seasons.0.1", ""),
    (0xC1B2, 1, _U16, "tariff.seasons.0.2", ""),
    (0xC1B3, 1, _U16, "tariff.seasons.1.0", ""),
    (0xC1B4, 1, _U16, "tariff.seasons.1.1", ""),
    (0xC1B5, 1, _U16, "tariff.seasons.1.2", ""),
    (0xC1C0, 1, _U16, "tariff.holidays.0", ""),
    (0xC1C1, 1, _U16, "tariff.holidays.1", ""),
    (0xC1C2, 1, _U16, "tariff.holidays.2", ""),
    (0xC1C3, 1, _U16, "tariff.holidays.3", ""),
    (0xC1C4, 1, _U16, "tariff.holidays.4", ""),
    (0xC1C5, 1, _U16, "tariff.holidays.5", ""),
    (0xC1C6, 1, _U16, "tariff.holidays.6", ""),
    (0xC1C7, 1, _U16, "tariff.holidays.7", ""),
    (0xC1C8, 1, _U16, "tariff.holidays.8", ""),
    (0xC1C9, 1, _U16, "tariff.holidays.9", ""),
    (0xC1CA, 1, _U16, "tariff.holidays.10", ""),
    (0xC1CB, 1, _U16, "tariff.holidays.11", ""),
    (0xC1CC, 1, _U16, "tariff.holidays.12", ""),
    (0xC1CD, 1, _U16, "tariff.holidays.13", ""),
    (0xC1CE, 1, _U16, "tariff.holidays.14", ""),
    (0xC1CF, 1, _U16, "tariff.holidays.15", ""),
    (0xC1D0, 2, _U32, "demand.ps_w.0", ""),
    (0xC1D2, 2, _U32, "demand.ps_w.1", ""),
    (0xC1D4, 2, _U32, "demand.ps_w.2", ""),
    (0xC1D6, 2, _U32, "demand.ps_w.3", ""),
    (0xC1D8, 2, _U32, "demand.ps_w.4", ""),
    (0xC1DA, 2, _U32, "demand.ps_w.5", ""),
    (0xC1DC, 1, _U16, "demand.k_pct", ""),
    (0xC1E0, 1, _BOOL, "losses.enabled", ""),
    (0xC1E1, 1, _U16, "losses.kj_import", ""),
    (0xC1E2, 1, _U16, "losses.kj_export", ""),
    (0xC1E3, 2, _U32, "losses.kf_w", ""),
    (0xC1E5, 1, _U16, "losses.ktg", ""),
    # Modbus master push (firmware/pushmb.py): settings, RTU slaves, 10 TCP targets.
    (0xC200, 1, _ENUM, "push.mode", ("cycle", "interval_last", "interval_mean")),
    (0xC201, 1, _U16, "push.interval_s", ""),
    (0xC202, 1, _U16, "push.timeout_ms", ""),
    (0xC203, 1, _U16, "push.retries", ""),
    (0xC204, 1, _BOOL, "push.groups.inst_total", ""),
    (0xC205, 1, _BOOL, "push.groups.inst_phases", ""),
    (0xC206, 1, _BOOL, "push.groups.energy_total", ""),
    (0xC207, 1, _BOOL, "push.groups.energy_phases", ""),
    (0xC208, 1, _ENUM, "push.rtu.port", (None, "a", "b")),
    (0xC210, 1, _U16, "push.rtu.slaves.0", ""),
    (0xC211, 1, _U16, "push.rtu.slaves.1", ""),
    (0xC212, 1, _U16, "push.rtu.slaves.2", ""),
    (0xC213, 1, _U16, "push.rtu.slaves.3", ""),
    (0xC214, 1, _U16, "push.rtu.slaves.4", ""),
    (0xC215, 1, _U16, "push.rtu.slaves.5", ""),
    (0xC216, 1, _U16, "push.rtu.slaves.6", ""),
    (0xC217, 1, _U16, "push.rtu.slaves.7", ""),
    (0xC218, 1, _U16, "push.rtu.slaves.8", ""),
    (0xC219, 1, _U16, "push.rtu.slaves.9", ""),
    (0xC220, 16, _STR, "push.tcp.0.host", ""),
    (0xC230, 1, _U16, "push.tcp.0.port", ""),
    (0xC231, 1, _U16, "push.tcp.0.unit", ""),
    (0xC232, 1, _BOOL, "push.tcp.0.enabled", ""),
    (0xC234, 16, _STR, "push.tcp.1.host", ""),
    (0xC244, 1, _U16, "push.tcp.1.port", ""),
    (0xC245, 1, _U16, "push.tcp.1.unit", ""),
    (0xC246, 1, _BOOL, "push.tcp.1.enabled", ""),
    (0xC248, 16, _STR, "push.tcp.2.host", ""),
    (0xC258, 1, _U16, "push.tcp.2.port", ""),
    (0xC259, 1, _U16, "push.tcp.2.unit", ""),
    (0xC25A, 1, _BOOL, "push.tcp.2.enabled", ""),
    (0xC25C, 16, _STR, "push.tcp.3.host", ""),
    (0xC26C, 1, _U16, "push.tcp.3.port", ""),
    (0xC26D, 1, _U16, "push.tcp.3.unit", ""),
    (0xC26E, 1, _BOOL, "push.tcp.3.enabled", ""),
    (0xC270, 16, _STR, "push.tcp.4.host", ""),
    (0xC280, 1, _U16, "push.tcp.4.port", ""),
    (0xC281, 1, _U16, "push.tcp.4.unit", ""),
    (0xC282, 1, _BOOL, "push.tcp.4.enabled", ""),
    (0xC284, 16, _STR, "push.tcp.5.host", ""),
    (0xC294, 1, _U16, "push.tcp.5.port", ""),
    (0xC295, 1, _U16, "push.tcp.5.unit", ""),
    (0xC296, 1, _BOOL, "push.tcp.5.enabled", ""),
    (0xC298, 16, _STR, "push.tcp.6.host", ""),
    (0xC2A8, 1, _U16, "push.tcp.6.port", ""),
    (0xC2A9, 1, _U16, "push.tcp.6.unit", ""),
    (0xC2AA, 1, _BOOL, "push.tcp.6.enabled", ""),
    (0xC2AC, 16, _STR, "push.tcp.7.host", ""),
    (0xC2BC, 1, _U16, "push.tcp.7.port", ""),
    (0xC2BD, 1, _U16, "push.tcp.7.unit", ""),
    (0xC2BE, 1, _BOOL, "push.tcp.7.enabled", ""),
    (0xC2C0, 16, _STR, "push.tcp.8.host", ""),
    (0xC2D0, 1, _U16, "push.tcp.8.port", ""),
    (0xC2D1, 1, _U16, "push.tcp.8.unit", ""),
    (0xC2D2, 1, _BOOL, "push.tcp.8.enabled", ""),
    (0xC2D4, 16, _STR, "push.tcp.9.host", ""),
    (0xC2E4, 1, _U16, "push.tcp.9.port", ""),
    (0xC2E5, 1, _U16, "push.tcp.9.unit", ""),
    (0xC2E6, 1, _BOOL, "push.tcp.9.enabled", ""),
    # MQTT (firmware/mqtt.py; status registers 0xD200..: firmware/mqtt.py Mqtt.read)
    (0xC300, 1, _BOOL, "mqtt.enabled", ""),
    (0xC301, 1, _U16, "mqtt.keepalive_s", ""),
    (0xC302, 1, _U16, "mqtt.interval_s", ""),
    (0xC303, 1, _BOOL, "mqtt.discovery", ""),
    (0xC310, 32, _STR, "mqtt.url", ""),
    (0xC330, 16, _STR, "mqtt.user", ""),
    (0xC340, 16, _SECRET, "mqtt.password", ""),
    (0xC350, 12, _STR, "mqtt.client_id", ""),
    (0xC360, 16, _STR, "mqtt.topic_prefix", ""),
    (0xC370, 16, _STR, "mqtt.discovery_prefix", ""),
)

# ---- the codec and the space ------------------------------------------------
_EXC_FUNCTION = const(1)
_EXC_ADDRESS = const(2)
_EXC_VALUE = const(3)
_NONE16 = const(0x8000)        # SF: no override (SunSpec's int16 "not implemented")
_SPECIAL = const((_UNLOCK, _PWCHG, _CMD, _STAT))


def _get(cfg, path):
    obj = cfg
    for p in path.split("."):
        if obj is None:
            return None
        obj = obj[int(p)] if p.isdigit() else obj.get(p)
    return obj


def encode(row, cfg, out, o):
    """Registers of a config row (not a special one) into out[o:], big-endian."""
    _, n, typ, path, enum = row
    if typ == _PRESET:
        p = _get(cfg, path[:path.rfind(".")])
        p = (p["address"], p["baud"], p["parity"], p["stop"])
        v = 0
        for i in range(1, len(PRESETS)):
            if PRESETS[i][1] == p:
                v = i
    elif path == "network.hostname":
        v = config_mod.hostname(cfg)
    else:
        v = _get(cfg, path)
        if v is None and (typ == _U16 or typ == _BOOL or typ == _STR):
            v = "" if typ == _STR else 0      # an unused push slot (config: None)
    if typ == _U16 or typ == _BOOL or typ == _PRESET:
        struct.pack_into(">H", out, o, int(v) & 0xFFFF)
    elif typ == _ENUM:
        struct.pack_into(">H", out, o, enum.index(v) if v in enum else 0xFFFF)
    elif typ == _U32 or typ == _I32:
        struct.pack_into(">I" if typ == _U32 else ">i", out, o, v)
    elif typ == _SF:
        struct.pack_into(">H", out, o, _NONE16 if v is None else v & 0xFFFF)
    elif typ == _SECRET:
        out[o:o + 2 * n] = bytes(2 * n)        # write-only: reads 0
    elif typ == _STR:
        b = v.encode()[:2 * n]
        out[o:o + 2 * n] = b + bytes(2 * n - len(b))
    elif typ == _IP4:
        out[o:o + 4] = bytes(config_mod.ipv4(path, v))
    elif typ == _RAT:
        num, den = config_mod.parse_exact(path, v)
        if num >> 64 or den >> 64:        # a decimal beyond 64 bits: all ones
            num = den = (1 << 64) - 1
        struct.pack_into(">II", out, o, num >> 32, num & 0xFFFFFFFF)
        struct.pack_into(">II", out, o + 8, den >> 32, den & 0xFFFFFFFF)


def _text(src, so, n):
    b = bytes(src[so:so + 2 * n])
    end = b.find(b"\x00")
    if end >= 0:
        if b[end:].strip(b"\x00"):
            raise ValueError("register value: text after NUL")
        b = b[:end]
    for c in b:
        if c < 0x20 or c > 0x7E:
            raise ValueError("register value: not printable ASCII")
    return b.decode()


def decode(row, src, so, work):
    """Set the row's value from src[so:] into work (a copy of the config's sections);
    ValueError when the registers cannot be a value of this type."""
    _, n, typ, path, enum = row
    u = (src[so] << 8) | src[so + 1]
    if typ == _U16:
        v = u
    elif typ == _BOOL:
        if u > 1:
            raise ValueError("register value: bool")
        v = u == 1
    elif typ == _ENUM:
        if u >= len(enum):
            raise ValueError("register value: enum")
        v = enum[u]
    elif typ == _U32 or typ == _I32:
        v = struct.unpack_from(">I" if typ == _U32 else ">i", src, so)[0]
    elif typ == _SF:
        v = None if u == _NONE16 else (u - 0x10000 if u & 0x8000 else u)
    elif typ == _STR or typ == _SECRET:
        v = _text(src, so, n)
    elif typ == _IP4:
        v = "%d.%d.%d.%d" % tuple(src[so:so + 4])
    elif typ == _RAT:
        a, b, c, d = struct.unpack_from(">IIII", src, so)
        v = [(a << 32) | b, (c << 32) | d]
    elif typ == _PRESET:
        if u >= len(PRESETS):
            raise ValueError("register value: preset")
        if u:
            port = _get(work, path[:path.rfind(".")])
            (port["address"], port["baud"], port["parity"], port["stop"]) = PRESETS[u][1]
        return
    parts = path.split(".")
    obj = work
    for p in parts[:-1]:
        if p.isdigit():
            if obj[int(p)] is None:
                obj[int(p)] = {}      # an unused push slot: validate() fills the rest
            obj = obj[int(p)]
        else:
            if obj.get(p) is None:
                obj[p] = {}        # sunspec_sf: None until a factor is set
            obj = obj[p]
    last = parts[-1]
    if last.isdigit():
        obj[int(last)] = v
    elif v is None and typ == _SF:
        obj.pop(last, None)
    else:
        obj[last] = v


class DeviceSpace:
    """The space's code; firmware/cfgstore.py's Settings (access, stage, command())
    inherits it: one object, no separate space on the heap."""

    def _rows(self, addr, count):
        """Rows overlapping [addr, addr + count) as (first, last) indices into ROWS."""
        first = last = -1
        end = addr + count
        for i in range(len(ROWS)):
            a, n = ROWS[i][0], ROWS[i][1]
            if a < end and a + n > addr:
                if first < 0:
                    first = i
                last = i
        return first, last

    def read(self, addr, count, out, off):
        if addr < _BASE or addr + count - 1 > _END:
            return _EXC_ADDRESS
        for i in range(2 * count):
            out[off + i] = 0
        first, last = self._rows(addr, count)
        if first < 0:
            return 0
        s = self
        st = s.stage
        cfg = st._ahead or s.app.cfg
        a = s.access
        stat = {"lockout_s": (a.lock_left_ms() + 999) // 1000, "failures": a.fails,
                "unlock_s": a.unlock_ms // 1000, "pending": st.pending(),
                "committed": st.committed, "refused": st.refused}
        for i in range(first, last + 1):
            row = ROWS[i]
            a, n, typ = row[0], row[1], row[2]
            buf = bytearray(2 * n)
            if typ == _STAT:
                struct.pack_into(">H", buf, 0, stat[row[3]] & 0xFFFF)
            elif typ not in _SPECIAL:       # unlock, passwords, command read 0
                encode(row, cfg, buf, 0)
            lo = max(a, addr)
            hi = min(a + n, addr + count)
            out[off + 2 * (lo - addr):off + 2 * (hi - addr)] = buf[2 * (lo - a):2 * (hi - a)]
        return 0

    def write(self, addr, count, src, soff, ctx=None):
        if addr < _BASE or addr + count - 1 > _END:
            return _EXC_ADDRESS
        first, last = self._rows(addr, count)
        if first < 0:
            return _EXC_ADDRESS
        row = ROWS[first]
        typ = row[2]
        s = self
        if typ == _UNLOCK:           # from its start, up to its 16 registers
            if addr != row[0] or count > row[1]:
                return _EXC_ADDRESS
            try:
                pw = _text(src, soff, count)
            except ValueError:
                pw = "\x00"           # a wrong password all the same: counted
            return s.access.unlock(ctx, pw)
        # Whole rows, no gaps, and no special row among several.
        if addr != row[0] or ROWS[last][0] + ROWS[last][1] != addr + count:
            return _EXC_ADDRESS
        for i in range(first, last):
            if ROWS[i][0] + ROWS[i][1] != ROWS[i + 1][0]:
                return _EXC_ADDRESS
            if ROWS[i][2] in _SPECIAL or ROWS[i + 1][2] in _SPECIAL:
                return _EXC_ADDRESS
        if typ == _STAT:
            return _EXC_ADDRESS
        if not s.access.allowed(ctx):
            return _EXC_FUNCTION
        if typ == _PWCHG:
            try:
                old = _text(src, soff, 16)
                new = _text(src, soff + 32, 16)
            except ValueError:
                return _EXC_VALUE
            if len(s.stage._queue) >= s.stage.depth:
                return 6                   # the new password could not be stored
            code = s.access.change(old, new)
            if code == 0:
                s.stage.call(0)            # job 0: persist the secrets record
            return code
        if typ == _CMD:
            return s.command((src[soff] << 8) | src[soff + 1], ctx)
        base = s.stage._ahead or s.app.cfg
        work = {}
        try:
            for i in range(first, last + 1):
                top = ROWS[i][3].split(".")[0]
                if top not in work:
                    work[top] = config_mod._copy(base[top])
                decode(ROWS[i], src, soff + 2 * (ROWS[i][0] - addr), work)
        except ValueError:
            return _EXC_VALUE
        return s.stage.stage(work, ctx)


# ---- routing ---------------------------------------------------------------
# Routing space: one holding-register space made of several, by address range (here,
# not a module of its own: each module costs its globals dict and more on the heap).
#
#     holding = Routed(((0x0000, 0xBFFF, measurements), (0xC000, 0xC3FF, device)))
#
# Each entry is (first address, last address, space) (firmware/modbus/space.py). A read
# or write goes to the one space whose range holds all of [addr, addr + count); a range
# that crosses two entries or falls in none is 02 (Illegal Data Address, Modbus
# Application Protocol v1.1b3, 6.3), as a single space answers an address it lacks.
# Routing allocates nothing (the measurement read path passes here).
class Routed:
    def __init__(self, ranges):
        self.ranges = tuple(ranges)

    def read(self, addr, count, out, off):
        last = addr + count - 1
        for lo, hi, sp in self.ranges:
            if lo <= addr <= hi:
                return sp.read(addr, count, out, off) if last <= hi else 2
        return 2

    def write(self, addr, count, src, soff, ctx=None):
        last = addr + count - 1
        for lo, hi, sp in self.ranges:
            if lo <= addr <= hi:
                return sp.write(addr, count, src, soff, ctx) if last <= hi else 2
        return 2
