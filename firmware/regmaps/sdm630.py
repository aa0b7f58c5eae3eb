"""Eastron SDM630-compatible input registers (FC 04, IEEE 754 float32, high word first).

    from firmware.regmaps import sdm630
    rows = sdm630.rows()
    groups = sdm630.GROUPS

Addresses from the SDM630 Modbus protocol as used by volkszaehler/mbmd sdm.go and
Tasmota xnrg_10_sdm630 (anchors-public-facts.md section 6); the KOSTAL "KEM P" is this
map too. Units as the SDM630: V, A, W, VA, var, degrees, Hz, kWh, kvarh, kVAh.
Signs as firmware/snapshot.py: import positive; PF carries the sign of P; the phase
angle is the current's lag behind the voltage folded into -180..180 degrees: per phase
as the chip measures it, in total (0x42) the angle of the total P and Q, atan2(Q, P).
Import/export kvarh are Q1+Q2 / Q3+Q4; "total" energies are import + export.

What the meter cannot know (demand, THD, line-to-line voltages, neutral current, Ah)
reads 0.0 rather than NaN: an inverter summing registers keeps a usable number.
Unlisted addresses inside the three parameter blocks (GROUPS) read 0.0 as well, so
block reads such as 0x00..0x4F work; addresses outside the blocks give exception 2.
As the Eastron protocol states for its float meters, a read that starts or ends
inside a float gives exception 2 and a read of more than 40 parameters (80 registers)
gives an exception (3 here); config "sdm630_max_regs" changes the limit (0 = none).
"""
from micropython import const
from firmware.regmaps.table import div_of

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
_ANGLE_CDEG = const(6)
_F_MHZ = const(7)
_E_ACTIVE_IMPORT = const(0)
_E_ACTIVE_EXPORT = const(1)
_E_REACTIVE_Q1 = const(2)
_E_REACTIVE_Q2 = const(3)
_E_REACTIVE_Q3 = const(4)
_E_REACTIVE_Q4 = const(5)
_E_APPARENT_IMPORT = const(6)
_E_APPARENT_EXPORT = const(7)
_F32 = const(6)
_NA = const(0)
_INST = const(4)
_ANGLE = const(10)
_PQANGLE = const(12)
_ENERGY = const(8)
_ESUM = const(9)

GROUPS = ((0x0000, 0x006B), (0x00C8, 0x010D), (0x014E, 0x017D))
MAX_REGS = 80

_KWH = const(1000000)   # mWh per kWh
_W = const(-1000)       # W, var, VA: p_div(1000) (table.div_of)
_P_IMP = const(1 << _E_ACTIVE_IMPORT)
_P_ALL = const(_P_IMP | (1 << _E_ACTIVE_EXPORT))
_Q_IMP = const((1 << _E_REACTIVE_Q1) | (1 << _E_REACTIVE_Q2))
_Q_EXP = const((1 << _E_REACTIVE_Q3) | (1 << _E_REACTIVE_Q4))
_S_ALL = const((1 << _E_APPARENT_IMPORT) | (1 << _E_APPARENT_EXPORT))

_PHASES = (_L1, _L2, _L3)
_LN = (" L1", " L2", " L3")
_LL = (" L1-L2", " L2-L3", " L3-L1")

# Per-phase triples at address, address+2, address+4: (address, kind, a, b, divisor,
# name); a is the snapshot quantity (added to the phase block) or unused for energies.
_PER_PHASE = (
    (0x0000, _INST, _U_MV, 0, 1000, "V"),
    (0x0006, _INST, _I_MA, 0, 1000, "I"),
    (0x000C, _INST, _P_MW, 0, _W, "P"),
    (0x0012, _INST, _S_MVA, 0, _W, "VA"),
    (0x0018, _INST, _Q_MVAR, 0, _W, "var"),
    (0x001E, _INST, _PF_E4, 0, 10000, "PF"),
    (0x0024, _ANGLE, _ANGLE_CDEG, 0, 100, "phase angle"),
    (0x00C8, _NA, 0, 0, 1, "V L-L"),
    (0x00EA, _NA, 0, 0, 1, "V THD"),
    (0x00F0, _NA, 0, 0, 1, "I THD"),
    (0x0102, _NA, 0, 0, 1, "I demand"),
    (0x0108, _NA, 0, 0, 1, "I max demand"),
    (0x014E, _NA, 0, 0, 1, "V L-L THD"),
    (0x015A, _ENERGY, 0, _E_ACTIVE_IMPORT, _KWH, "import kWh"),
    (0x0160, _ENERGY, 0, _E_ACTIVE_EXPORT, _KWH, "export kWh"),
    (0x0166, _ESUM, 0, _P_ALL, _KWH, "total kWh"),
    (0x016C, _ESUM, 0, _Q_IMP, _KWH, "import kvarh"),
    (0x0172, _ESUM, 0, _Q_EXP, _KWH, "export kvarh"),
    (0x0178, _ESUM, 0, _Q_IMP | _Q_EXP, _KWH, "total kvarh"),
)

# System values: (address, kind, a, b, divisor, name).
_SYSTEM = (
    (0x002A, _INST, _TOTAL + _U_MV, 0, 1000, "V average"),
    (0x002E, _INST, _TOTAL + _I_MA, 0, 3000, "I average"),
    (0x0030, _INST, _TOTAL + _I_MA, 0, 1000, "I sum"),
    (0x0034, _INST, _TOTAL + _P_MW, 0, _W, "P total"),
    (0x0038, _INST, _TOTAL + _S_MVA, 0, _W, "VA total"),
    (0x003C, _INST, _TOTAL + _Q_MVAR, 0, _W, "var total"),
    (0x003E, _INST, _TOTAL + _PF_E4, 0, 10000, "PF total"),
    (0x0042, _PQANGLE, _TOTAL, 0, 100000, "phase angle total"),   # atan2(Q, P) of the totals
    (0x0046, _INST, _TOTAL + _F_MHZ, 0, 1000, "frequency"),
    (0x0048, _ENERGY, _TOTAL, _E_ACTIVE_IMPORT, _KWH, "import kWh"),
    (0x004A, _ENERGY, _TOTAL, _E_ACTIVE_EXPORT, _KWH, "export kWh"),
    (0x004C, _ESUM, _TOTAL, _Q_IMP, _KWH, "import kvarh"),
    (0x004E, _ESUM, _TOTAL, _Q_EXP, _KWH, "export kvarh"),
    (0x0050, _ESUM, _TOTAL, _S_ALL, _KWH, "kVAh"),
    (0x0052, _NA, 0, 0, 1, "Ah"),
    (0x0054, _NA, 0, 0, 1, "P demand"),
    (0x0056, _NA, 0, 0, 1, "P max demand"),
    (0x0064, _NA, 0, 0, 1, "VA demand"),
    (0x0066, _NA, 0, 0, 1, "VA max demand"),
    (0x0068, _NA, 0, 0, 1, "I neutral demand"),
    (0x006A, _NA, 0, 0, 1, "I neutral max demand"),
    (0x00CE, _NA, 0, 0, 1, "V L-L average"),
    (0x00E0, _NA, 0, 0, 1, "I neutral"),
    (0x00F8, _NA, 0, 0, 1, "V THD average"),
    (0x00FA, _NA, 0, 0, 1, "I THD average"),
    (0x0154, _NA, 0, 0, 1, "V L-L THD average"),
    (0x0156, _ESUM, _TOTAL, _P_ALL, _KWH, "total kWh"),
    (0x0158, _ESUM, _TOTAL, _Q_IMP | _Q_EXP, _KWH, "total kvarh"),
)


def rows():
    out = []
    for addr, kind, a, b, div, name in _PER_PHASE:
        sfx = _LL if "L-L" in name else _LN
        for n, blk in enumerate(_PHASES):
            if kind == _INST or kind == _ANGLE:
                aa = blk + a
            elif kind == _NA:
                aa = 0
            else:
                aa = blk
            out.append((addr + 2 * n, _F32, kind, aa, b, div_of(div), name + sfx[n]))
    for addr, kind, a, b, div, name in _SYSTEM:
        out.append((addr, _F32, kind, a, b, div_of(div), name))
    return out
