"""The configuration register block (holding registers 0xC000..0xC3FF): a data table.

A row: (address, registers, type, config key path, enum values or ""). Paths are
dotted config keys (firmware/config.py); a digit is a list index. Types:
    U16 bool 0/1, ENUM index into the row's values, U32/I32 high word first,
    SF int16 SunSpec scale factor override (-32768 = none, follows the rating),
    STR ASCII, NUL padded, IP4 two registers a.b / c.d, RAT exact number as
    numerator uint64 then denominator uint64 (8 registers), PRESET a KSEM RS485 preset
    (read: the one the port matches, 0 = user-defined; write 1..4: fills address, baud,
    parity and stop; keys written in the same request override it),
    UNLOCK password (ASCII, up to 16 registers, never readable), PWCHG old password
    (16 registers) + new (16), written together, CMD commands, STAT read-only status.
Reads are open and show the config with accepted writes (even those still being
committed). Writes: see firmware/regmaps/device.py.
"""
from micropython import const

BASE = const(0xC000)
END = const(0xC3FF)        # 0xC400.. is the event log's

U16 = const(0)
BOOL = const(1)
ENUM = const(2)
U32 = const(3)
I32 = const(4)
SF = const(5)
STR = const(6)
IP4 = const(7)
RAT = const(8)
PRESET = const(9)
UNLOCK = const(10)
PWCHG = const(11)
CMD = const(12)
STAT = const(13)
TYPE_NAMES = ("uint16", "bool", "enum", "uint32", "int32", "sunssf", "string", "ipv4",
              "rational", "preset", "password", "password change", "command", "status")

# Commands (CMD register 0xC030): each needs an unlock.
CMD_RESTART = const(1)
CMD_NETWORK_RESET = const(2)     # DHCP on
CMD_PASSWORD_RESET = const(3)    # back to the factory password
CMD_FACTORY_RESET = const(4)     # config, counters, password, events: delivery state

# KSEM RS485 presets (manual 5.14.1; digest 4.2): address, baud, parity, stop.
PRESETS = (
    ("user-defined", None),
    ("PIKO IQ/PLENTICORE", (1, 38400, "N", 2)),
    ("PIKO MP plus", (247, 19200, "E", 1)),
    ("PIKO CI", (1, 19200, "N", 2)),
    ("ENECTOR blackout", (2, 57600, "N", 2)),
)
PARITY = ("N", "E", "O")
WIRING = ("3P4W", "1P2W")
SF_NAMES = ("A_SF", "V_SF", "Hz_SF", "W_SF", "VA_SF", "VAR_SF", "PF_SF", "TotWh_SF",
            "TotVAh_SF", "TotVArh_SF")


# Literal rows (no code at import): frozen, the table is a constant in flash.
ROWS = (
    (0xC000, 16, UNLOCK, "unlock", ""),
    (0xC010, 32, PWCHG, "password", ""),
    (0xC030, 1, CMD, "command", ""),
    (0xC031, 1, STAT, "lockout_s", ""),
    (0xC032, 1, STAT, "failures", ""),
    (0xC033, 1, STAT, "unlock_s", ""),
    (0xC034, 1, STAT, "pending", ""),
    (0xC035, 1, STAT, "committed", ""),
    (0xC036, 1, STAT, "refused", ""),
    (0xC040, 1, PRESET, "modbus.rs485_a.preset", ""),
    (0xC041, 1, BOOL, "modbus.rs485_a.enabled", ""),
    (0xC042, 1, U16, "modbus.rs485_a.address", ""),
    (0xC043, 2, U32, "modbus.rs485_a.baud", ""),
    (0xC045, 1, ENUM, "modbus.rs485_a.parity", ("N", "E", "O")),
    (0xC046, 1, U16, "modbus.rs485_a.stop", ""),
    (0xC050, 1, PRESET, "modbus.rs485_b.preset", ""),
    (0xC051, 1, BOOL, "modbus.rs485_b.enabled", ""),
    (0xC052, 1, U16, "modbus.rs485_b.address", ""),
    (0xC053, 2, U32, "modbus.rs485_b.baud", ""),
    (0xC055, 1, ENUM, "modbus.rs485_b.parity", ("N", "E", "O")),
    (0xC056, 1, U16, "modbus.rs485_b.stop", ""),
    (0xC060, 1, BOOL, "modbus.tcp.enabled", ""),
    (0xC061, 1, U16, "modbus.tcp.port", ""),
    (0xC062, 1, U16, "modbus.tcp.max_clients", ""),
    (0xC063, 2, U32, "modbus.tcp.idle_s", ""),
    (0xC065, 1, BOOL, "modbus.tcp.own_id_only", ""),
    (0xC070, 1, U16, "metering.cycle_ms", ""),
    (0xC071, 1, U16, "metering.nominal_hz", ""),
    (0xC072, 1, ENUM, "metering.wiring", ("3P4W", "1P2W")),
    (0xC073, 1, BOOL, "metering.ct_enabled", ""),
    (0xC074, 1, U16, "metering.ct_primary_a", ""),
    (0xC078, 1, U16, "storage.persist_s", ""),
    (0xC080, 1, U16, "modbus.sunspec_da", ""),
    (0xC081, 1, SF, "modbus.sunspec_sf.A_SF", ""),
    (0xC082, 1, SF, "modbus.sunspec_sf.V_SF", ""),
    (0xC083, 1, SF, "modbus.sunspec_sf.Hz_SF", ""),
    (0xC084, 1, SF, "modbus.sunspec_sf.W_SF", ""),
    (0xC085, 1, SF, "modbus.sunspec_sf.VA_SF", ""),
    (0xC086, 1, SF, "modbus.sunspec_sf.VAR_SF", ""),
    (0xC087, 1, SF, "modbus.sunspec_sf.PF_SF", ""),
    (0xC088, 1, SF, "modbus.sunspec_sf.TotWh_SF", ""),
    (0xC089, 1, SF, "modbus.sunspec_sf.TotVAh_SF", ""),
    (0xC08A, 1, SF, "modbus.sunspec_sf.TotVArh_SF", ""),
    (0xC090, 16, STR, "identity.vendor", ""),
    (0xC0A0, 16, STR, "identity.model", ""),
    (0xC0B0, 16, STR, "identity.serial", ""),
    (0xC0C0, 8, STR, "identity.hw_version", ""),
    (0xC0C8, 1, U16, "identity.product_id", ""),
    (0xC0D0, 1, BOOL, "network.dhcp", ""),
    (0xC0D1, 2, IP4, "network.ip", ""),
    (0xC0D3, 2, IP4, "network.netmask", ""),
    (0xC0D5, 2, IP4, "network.gateway", ""),
    (0xC0D7, 2, IP4, "network.dns", ""),
    (0xC0E0, 16, STR, "network.hostname", ""),
    (0xC100, 8, RAT, "calibration.v_per_code", ""),
    (0xC108, 8, RAT, "calibration.i_per_code", ""),
    (0xC110, 8, RAT, "calibration.w_per_code", ""),
    (0xC118, 8, RAT, "calibration.wh_per_lsb", ""),
    (0xC120, 2, I32, "calibration.gains.0.0", ""),
    (0xC122, 2, I32, "calibration.gains.0.1", ""),
    (0xC124, 2, I32, "calibration.gains.0.2", ""),
    (0xC126, 2, I32, "calibration.gains.1.0", ""),
    (0xC128, 2, I32, "calibration.gains.1.1", ""),
    (0xC12A, 2, I32, "calibration.gains.1.2", ""),
    (0xC12C, 2, I32, "calibration.gains.2.0", ""),
    (0xC12E, 2, I32, "calibration.gains.2.1", ""),
    (0xC130, 2, I32, "calibration.gains.2.2", ""),
    (0xC132, 1, U16, "calibration.phcal.0", ""),
    (0xC133, 1, U16, "calibration.phcal.1", ""),
    (0xC134, 1, U16, "calibration.phcal.2", ""),
)
