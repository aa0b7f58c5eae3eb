"""KOSTAL KSEM internal register map and KSEM/RM PnP block (FC 03, big-endian words).

    from firmware.regmaps import ksem
    rows = ksem.rows(ident)          # table rows, see firmware/regmaps/table.py
    groups = ksem.GROUPS

Layout by OBIS index, as the KSEM does (anchors-public-facts.md section 4, from the
KOSTAL "Interface Description KSEM" and the openWB / pmcgn / hs_kostalKSEM clients):
instantaneous value of OBIS index n at register 2*(n-1) (total 1..14, L1 21.., L2 41..,
L3 61..), energy of index n at 512 + 4*(n-1) as uint64. Powers are uint32 in 0.1 W /
0.1 var / 0.1 VA; "+" and "-" are the unsigned import and export parts of the signed
value (one of each pair is 0). Q+ = QI + QII and Q- = QIII + QIV, for power and energy
(IEC 62053-23 / Enedis four-quadrant convention). QI..QIV at OBIS 5..8 (registers
8..15, 528..543) follow the OBIS pattern; the anchors mark that as inferred.
Registers inside a group that this table leaves out read 0: the total block's OBIS
11/12 (registers 20..23: no total current/voltage in the anchored map), per-phase
OBIS 34..40 (66..79 etc.) and energy indexes 31..40 of each phase block.

PnP block 0x2000..0x2038 (8192..8248): product id at 0x2001 (KSEM ids 18498, 18514,
18530 in the Victron probe; default 18514), hardware version 0x2002, firmware version
0x2003 (uint16, major << 8 | minor), serial number as a 32-character string at
0x2024..0x2033. Sources disagree on the serial (0x2024 per cFos, 0x2033 read as one
uint16 per pmcgn, who found it "not populated correctly"): a 16-register string at
0x2024 ends exactly at 0x2033, so both readers see part of the same string.
"""
from micropython import const
from firmware.regmaps.table import expand, text

# Snapshot indices (firmware/snapshot.py) and table codes (firmware/regmaps/table.py)
# as this module's own consts: the tables below are then literal constants, kept in
# flash by a frozen build (imported names would build them in RAM at import).
# tests/test_heap32.py checks each against the name it mirrors.
_L1 = const(0)
_L2 = const(9)
_L3 = const(18)
_TOTAL = const(27)
_U_MV = const(0)
_I_MA = const(1)
_P_MW = const(2)
_Q_MVAR = const(3)
_S_MVA = const(4)
_PF_E4 = const(5)
_F_MHZ = const(7)
_E_ACTIVE_IMPORT = const(0)
_E_ACTIVE_EXPORT = const(1)
_E_REACTIVE_Q1 = const(2)
_E_REACTIVE_Q2 = const(3)
_E_REACTIVE_Q3 = const(4)
_E_REACTIVE_Q4 = const(5)
_E_APPARENT_IMPORT = const(6)
_E_APPARENT_EXPORT = const(7)
_U16 = const(0)
_U32 = const(2)
_I32 = const(3)
_U64 = const(4)
_STR16 = const(10)
_CONST = const(2)
_TEXT = const(3)
_INST = const(4)
_IMP = const(5)
_EXP = const(6)
_QUAD = const(7)
_ENERGY = const(8)
_ESUM = const(9)

# Register groups the KSEM answers (KSEM manual section 5.14.3 register groups) + PnP.
GROUPS = ((0, 27), (40, 145), (512, 551), (592, 791), (8192, 8248))

# Power values of one block: (offset, type, kind, a, b, divisor, name); snapshot unit
# -> 0.1 W (100 mW).
_P = const(-100)         # 100 mW: p_div(100) (table.div_of)
_POWER = (
    (0, _U32, _IMP, _P_MW, _P_MW, _P, "P+"),         # OBIS x.4.0 active import
    (2, _U32, _EXP, _P_MW, _P_MW, _P, "P-"),         # active export
    (4, _U32, _IMP, _Q_MVAR, _Q_MVAR, _P, "Q+"),     # reactive, QI + QII
    (6, _U32, _EXP, _Q_MVAR, _Q_MVAR, _P, "Q-"),     # reactive, QIII + QIV
    (8, _U32, _QUAD, 0, 1, _P, "QI"),              # |Q| while in quadrant I, else 0
    (10, _U32, _QUAD, 0, 2, _P, "QII"),
    (12, _U32, _QUAD, 0, 3, _P, "QIII"),
    (14, _U32, _QUAD, 0, 4, _P, "QIV"),
    (16, _U32, _IMP, _S_MVA, _P_MW, _P, "S+"),       # apparent while P >= 0
    (18, _U32, _EXP, _S_MVA, _P_MW, _P, "S-"),       # apparent while P < 0
)
_TOTAL_TAIL = (
    (24, _I32, _INST, _PF_E4, 0, 10, "PF"),          # OBIS 13: 1e-4 -> 0.001
    (26, _U32, _INST, _F_MHZ, 0, 1, "f"),            # OBIS 14: mHz = 0.001 Hz
)
_PHASE_TAIL = (
    (20, _U32, _INST, _I_MA, 0, 1, "I"),             # OBIS 31/51/71: mA
    (22, _U32, _INST, _U_MV, 0, 1, "U"),             # OBIS 32/52/72: mV
    (24, _I32, _INST, _PF_E4, 0, 10, "PF"),          # OBIS 33/53/73: 0.001
)
# Energies of one block: uint64, mWh -> 0.1 Wh (floor).
_Q_IMP = const((1 << _E_REACTIVE_Q1) | (1 << _E_REACTIVE_Q2))
_Q_EXP = const((1 << _E_REACTIVE_Q3) | (1 << _E_REACTIVE_Q4))
_E_ROWS = (
    (0, _U64, _ENERGY, 0, _E_ACTIVE_IMPORT, 100, "E P+"),    # OBIS x.8.0
    (4, _U64, _ENERGY, 0, _E_ACTIVE_EXPORT, 100, "E P-"),
    (8, _U64, _ESUM, 0, _Q_IMP, 100, "E Q+"),
    (12, _U64, _ESUM, 0, _Q_EXP, 100, "E Q-"),
    (16, _U64, _ENERGY, 0, _E_REACTIVE_Q1, 100, "E QI"),
    (20, _U64, _ENERGY, 0, _E_REACTIVE_Q2, 100, "E QII"),
    (24, _U64, _ENERGY, 0, _E_REACTIVE_Q3, 100, "E QIII"),
    (28, _U64, _ENERGY, 0, _E_REACTIVE_Q4, 100, "E QIV"),
    (32, _U64, _ENERGY, 0, _E_APPARENT_IMPORT, 100, "E S+"),
    (36, _U64, _ENERGY, 0, _E_APPARENT_EXPORT, 100, "E S-"),
)
_T_BLOCK = ((0, _TOTAL, "total"),)
_PHASES = ((40, _L1, "L1"), (80, _L2, "L2"), (120, _L3, "L3"))
_E_BLOCKS = ((512, _TOTAL, "total"), (592, _L1, "L1"), (672, _L2, "L2"), (752, _L3, "L3"))

_PNP_BASE = const(0x2000)
DEFAULT_PRODUCT_ID = 18514


def version_code(v):
    """uint16 of a version: an int as is, "major.minor[...]" as major << 8 | minor."""
    if isinstance(v, int):
        return v & 0xFFFF
    parts = str(v).split(".")
    try:
        major = int(parts[0])
        minor = int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        return 0
    return ((major & 0xFF) << 8) | (minor & 0xFF)


def rows(ident):
    """All rows of the KSEM internal map and PnP block for this identity."""
    out = expand(_T_BLOCK, _POWER + _TOTAL_TAIL)
    out += expand(_PHASES, _POWER + _PHASE_TAIL)
    out += expand(_E_BLOCKS, _E_ROWS)
    out += [
        (_PNP_BASE + 1, _U16, _CONST, ident.get("product_id", DEFAULT_PRODUCT_ID), 0, 1,
         "product id"),
        (_PNP_BASE + 2, _U16, _CONST, version_code(ident.get("hw_version", 0)), 0, 1,
         "hardware version"),
        (_PNP_BASE + 3, _U16, _CONST, version_code(ident.get("fw_version", 0)), 0, 1,
         "firmware version"),
        (_PNP_BASE + 0x24, _STR16, _TEXT, text(ident.get("serial", ""), _STR16), 0, 1,
         "serial number"),
    ]
    return out
