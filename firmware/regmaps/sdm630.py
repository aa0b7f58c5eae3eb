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
from firmware.snapshot import (L1, L2, L3, TOTAL, U_MV, I_MA, P_MW, Q_MVAR, S_MVA, PF_E4,
                               ANGLE_CDEG, F_MHZ, E_ACTIVE_IMPORT, E_ACTIVE_EXPORT,
                               E_REACTIVE_Q1, E_REACTIVE_Q2, E_REACTIVE_Q3, E_REACTIVE_Q4,
                               E_APPARENT_IMPORT, E_APPARENT_EXPORT)
from firmware.regmaps.table import F32, NA, INST, ANGLE, PQANGLE, ENERGY, ESUM, p_div

GROUPS = ((0x0000, 0x006B), (0x00C8, 0x010D), (0x014E, 0x017D))
MAX_REGS = 80

_KWH = 1000000          # mWh per kWh
_W = p_div(1000)        # snapshot power unit per W, var, VA
_P_IMP = 1 << E_ACTIVE_IMPORT
_P_ALL = _P_IMP | (1 << E_ACTIVE_EXPORT)
_Q_IMP = (1 << E_REACTIVE_Q1) | (1 << E_REACTIVE_Q2)
_Q_EXP = (1 << E_REACTIVE_Q3) | (1 << E_REACTIVE_Q4)
_S_ALL = (1 << E_APPARENT_IMPORT) | (1 << E_APPARENT_EXPORT)

_PHASES = (L1, L2, L3)
_LN = (" L1", " L2", " L3")
_LL = (" L1-L2", " L2-L3", " L3-L1")

# Per-phase triples at address, address+2, address+4: (address, kind, a, b, divisor,
# name); a is the snapshot quantity (added to the phase block) or unused for energies.
_PER_PHASE = (
    (0x0000, INST, U_MV, 0, 1000, "V"),
    (0x0006, INST, I_MA, 0, 1000, "I"),
    (0x000C, INST, P_MW, 0, _W, "P"),
    (0x0012, INST, S_MVA, 0, _W, "VA"),
    (0x0018, INST, Q_MVAR, 0, _W, "var"),
    (0x001E, INST, PF_E4, 0, 10000, "PF"),
    (0x0024, ANGLE, ANGLE_CDEG, 0, 100, "phase angle"),
    (0x00C8, NA, 0, 0, 1, "V L-L"),
    (0x00EA, NA, 0, 0, 1, "V THD"),
    (0x00F0, NA, 0, 0, 1, "I THD"),
    (0x0102, NA, 0, 0, 1, "I demand"),
    (0x0108, NA, 0, 0, 1, "I max demand"),
    (0x014E, NA, 0, 0, 1, "V L-L THD"),
    (0x015A, ENERGY, 0, E_ACTIVE_IMPORT, _KWH, "import kWh"),
    (0x0160, ENERGY, 0, E_ACTIVE_EXPORT, _KWH, "export kWh"),
    (0x0166, ESUM, 0, _P_ALL, _KWH, "total kWh"),
    (0x016C, ESUM, 0, _Q_IMP, _KWH, "import kvarh"),
    (0x0172, ESUM, 0, _Q_EXP, _KWH, "export kvarh"),
    (0x0178, ESUM, 0, _Q_IMP | _Q_EXP, _KWH, "total kvarh"),
)

# System values: (address, kind, a, b, divisor, name).
_SYSTEM = (
    (0x002A, INST, TOTAL + U_MV, 0, 1000, "V average"),
    (0x002E, INST, TOTAL + I_MA, 0, 3000, "I average"),
    (0x0030, INST, TOTAL + I_MA, 0, 1000, "I sum"),
    (0x0034, INST, TOTAL + P_MW, 0, _W, "P total"),
    (0x0038, INST, TOTAL + S_MVA, 0, _W, "VA total"),
    (0x003C, INST, TOTAL + Q_MVAR, 0, _W, "var total"),
    (0x003E, INST, TOTAL + PF_E4, 0, 10000, "PF total"),
    (0x0042, PQANGLE, TOTAL, 0, 100000, "phase angle total"),   # atan2(Q, P) of the totals
    (0x0046, INST, TOTAL + F_MHZ, 0, 1000, "frequency"),
    (0x0048, ENERGY, TOTAL, E_ACTIVE_IMPORT, _KWH, "import kWh"),
    (0x004A, ENERGY, TOTAL, E_ACTIVE_EXPORT, _KWH, "export kWh"),
    (0x004C, ESUM, TOTAL, _Q_IMP, _KWH, "import kvarh"),
    (0x004E, ESUM, TOTAL, _Q_EXP, _KWH, "export kvarh"),
    (0x0050, ESUM, TOTAL, _S_ALL, _KWH, "kVAh"),
    (0x0052, NA, 0, 0, 1, "Ah"),
    (0x0054, NA, 0, 0, 1, "P demand"),
    (0x0056, NA, 0, 0, 1, "P max demand"),
    (0x0064, NA, 0, 0, 1, "VA demand"),
    (0x0066, NA, 0, 0, 1, "VA max demand"),
    (0x0068, NA, 0, 0, 1, "I neutral demand"),
    (0x006A, NA, 0, 0, 1, "I neutral max demand"),
    (0x00CE, NA, 0, 0, 1, "V L-L average"),
    (0x00E0, NA, 0, 0, 1, "I neutral"),
    (0x00F8, NA, 0, 0, 1, "V THD average"),
    (0x00FA, NA, 0, 0, 1, "I THD average"),
    (0x0154, NA, 0, 0, 1, "V L-L THD average"),
    (0x0156, ESUM, TOTAL, _P_ALL, _KWH, "total kWh"),
    (0x0158, ESUM, TOTAL, _Q_IMP | _Q_EXP, _KWH, "total kvarh"),
)


def rows():
    out = []
    for addr, kind, a, b, div, name in _PER_PHASE:
        sfx = _LL if "L-L" in name else _LN
        for n, blk in enumerate(_PHASES):
            if kind == INST or kind == ANGLE:
                aa = blk + a
            elif kind == NA:
                aa = 0
            else:
                aa = blk
            out.append((addr + 2 * n, F32, kind, aa, b, div, name + sfx[n]))
    for addr, kind, a, b, div, name in _SYSTEM:
        out.append((addr, F32, kind, a, b, div, name))
    return out
