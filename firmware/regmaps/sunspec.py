"""SunSpec map at 40000: "SunS", common model 1, meter model 203 (wye) or 201 (single
phase, config phases = 1), end marker (FC 03).

    from firmware.regmaps import sunspec
    sf = sunspec.scale_factors(config)      # {"W_SF": 0, ...}, fixed at construction
    rows = sunspec.rows(ident, config)
    groups = sunspec.GROUPS

Point order and sizes follow sunspec/models json/model_1.json and model_203.json (the
copies in pysunspec2 1.3.7; tests/test_regmaps.py compares every offset and L): model 1
at 40002 with L = 66, model 203 at 40070 with L = 105, end marker 0xFFFF/0 at 40177
(the KSEM layout since firmware 2.6.0, anchors-public-facts.md section 4). A single-phase
meter (1P2W wiring) presents model 201 there instead: same layout and length, phases B
and C not implemented.

Signs: W, VAR positive = import / Q1-Q2, as in firmware/snapshot.py; a SunSpec meter
counts energy delivered by the grid as "Imp", and evcc's kostal-ksem template reads
203:W as grid power with import positive. PF is in percent (PF_SF = -2: raw = PF*1e4)
with the sign of P. Energies are acc32 (wrap mod 2**32; the KSEM sent TotWhExp as a
signed int32 until 2025, ioBroker/AdapterRequests#672). Points we cannot measure read
SunSpec's not-implemented values (pysunspec2 mb.py): the line-to-line voltages (the
snapshot has no inter-phase angle), as the KSEM also leaves them out.

Scale factors are fixed when the map is built, from the rated range: clients may read
an SF once and keep it. The rated range is the current `i_max_a` per phase (63 A
direct, the CT primary for CT meters) on `phases` phases (3, or 1 for single-phase
wiring) at 253 V (230 V + 10 %, the top of the EN 50160 supply band). W/VA/VAR take
the finest SF with the total at that rating inside int16 (63 A, 3 phases: 47.8 kW ->
W_SF = 1, 10 W, as the KSEM), A the finest with the current sum at 120 % of the rating,
so no value inside the rating saturates; beyond it a value saturates at +-32767 rather
than wrapping. Config "sunspec_sf" ({"W_SF": 0, ...}) overrides single factors (finer
resolution, at the price of saturating inside the rating). Energy SFs keep ten years
at rated power inside one acc32 turn.
"""
from micropython import const
from firmware.regmaps.table import SIZES, text, p_div

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
_I16 = const(1)
_U32 = const(2)
_ACC32 = const(5)
_SSF = const(7)
_BF32 = const(8)
_STR8 = const(9)
_STR16 = const(10)
_NI = const(1)
_CONST = const(2)
_TEXT = const(3)
_INST = const(4)
_ENERGY = const(8)
_EVT = const(11)

BASE = 40000            # SUNS_BASE_ADDR_DEFAULT (pysunspec2)
_MODEL1_ADDR = const(40002)
_MODEL203_ADDR = const(40070)
_END_ADDR = const(40177)
GROUPS = ((BASE, _END_ADDR + 1),)
SUNS = 0x53756E53       # "SunS"

# Model 1 (common): (name, type, kind, ident key or value).
_M1 = (
    ("Mn", _STR16, _TEXT, "vendor"),
    ("Md", _STR16, _TEXT, "model"),
    ("Opt", _STR8, _TEXT, "options"),
    ("Vr", _STR8, _TEXT, "fw_version"),
    ("SN", _STR16, _TEXT, "serial"),
    ("DA", _U16, _CONST, "sunspec_da"),   # from config; writes come with config (Step 3)
    ("Pad", _U16, _CONST, 0),
)

_PH = ((_L1, "A"), (_L2, "B"), (_L3, "C"))

# Model 203 (wye meter): (name, type, kind, a, b, scale factor point).
_M203 = (
    ("A", _I16, _INST, _TOTAL + _I_MA, 0, "A_SF"),   # sum of phase currents
    ("AphA", _I16, _INST, _L1 + _I_MA, 0, "A_SF"),
    ("AphB", _I16, _INST, _L2 + _I_MA, 0, "A_SF"),
    ("AphC", _I16, _INST, _L3 + _I_MA, 0, "A_SF"),
    ("A_SF", _SSF, _CONST, 0, 0, None),
    ("PhV", _I16, _INST, _TOTAL + _U_MV, 0, "V_SF"),  # mean of the live phases (above 50 V)
    ("PhVphA", _I16, _INST, _L1 + _U_MV, 0, "V_SF"),
    ("PhVphB", _I16, _INST, _L2 + _U_MV, 0, "V_SF"),
    ("PhVphC", _I16, _INST, _L3 + _U_MV, 0, "V_SF"),
    ("PPV", _I16, _NI, 0, 0, None),
    ("PhVphAB", _I16, _NI, 0, 0, None),
    ("PhVphBC", _I16, _NI, 0, 0, None),
    ("PhVphCA", _I16, _NI, 0, 0, None),
    ("V_SF", _SSF, _CONST, 0, 0, None),
    ("Hz", _I16, _INST, _TOTAL + _F_MHZ, 0, "Hz_SF"),
    ("Hz_SF", _SSF, _CONST, 0, 0, None),
    ("W", _I16, _INST, _TOTAL + _P_MW, 0, "W_SF"),
    ("WphA", _I16, _INST, _L1 + _P_MW, 0, "W_SF"),
    ("WphB", _I16, _INST, _L2 + _P_MW, 0, "W_SF"),
    ("WphC", _I16, _INST, _L3 + _P_MW, 0, "W_SF"),
    ("W_SF", _SSF, _CONST, 0, 0, None),
    ("VA", _I16, _INST, _TOTAL + _S_MVA, 0, "VA_SF"),
    ("VAphA", _I16, _INST, _L1 + _S_MVA, 0, "VA_SF"),
    ("VAphB", _I16, _INST, _L2 + _S_MVA, 0, "VA_SF"),
    ("VAphC", _I16, _INST, _L3 + _S_MVA, 0, "VA_SF"),
    ("VA_SF", _SSF, _CONST, 0, 0, None),
    ("VAR", _I16, _INST, _TOTAL + _Q_MVAR, 0, "VAR_SF"),
    ("VARphA", _I16, _INST, _L1 + _Q_MVAR, 0, "VAR_SF"),
    ("VARphB", _I16, _INST, _L2 + _Q_MVAR, 0, "VAR_SF"),
    ("VARphC", _I16, _INST, _L3 + _Q_MVAR, 0, "VAR_SF"),
    ("VAR_SF", _SSF, _CONST, 0, 0, None),
    ("PF", _I16, _INST, _TOTAL + _PF_E4, 0, "PF_SF"),
    ("PFphA", _I16, _INST, _L1 + _PF_E4, 0, "PF_SF"),
    ("PFphB", _I16, _INST, _L2 + _PF_E4, 0, "PF_SF"),
    ("PFphC", _I16, _INST, _L3 + _PF_E4, 0, "PF_SF"),
    ("PF_SF", _SSF, _CONST, 0, 0, None),
)
# Energy groups of model 203: (point name, energy kind, scale factor point); each is
# the total then phases A, B, C ("TotWhExp", "TotWhExpPhA", ...).
_M203_E = (
    (("TotWhExp", _E_ACTIVE_EXPORT), ("TotWhImp", _E_ACTIVE_IMPORT), "TotWh_SF"),
    (("TotVAhExp", _E_APPARENT_EXPORT), ("TotVAhImp", _E_APPARENT_IMPORT), "TotVAh_SF"),
    (("TotVArhImpQ1", _E_REACTIVE_Q1), ("TotVArhImpQ2", _E_REACTIVE_Q2),
     ("TotVArhExpQ3", _E_REACTIVE_Q3), ("TotVArhExpQ4", _E_REACTIVE_Q4), "TotVArh_SF"),
)

# Fixed scale factors; the others come from the rating (scale_factors).
_FIXED_SF = (("V_SF", -1), ("Hz_SF", -2), ("PF_SF", -2))
_U_MAX_V = const(253)   # 230 V + 10 % (EN 50160 supply voltage band)
_I16_MAX = const(32767)
_ACC32_TURN = 1 << 32
_TEN_YEARS_H = const(87600)


def _fit_int16(max_base):
    """Finest SF (>= -3) with max_base / 10**SF inside int16."""
    sf = -3
    while max_base * 10 ** max(0, -sf) > _I16_MAX * 10 ** max(0, sf):
        sf += 1
    return sf


def _fit_acc32(wh):
    """Finest SF (>= -3) with wh / 10**SF below one acc32 turn."""
    sf = -3
    while wh * 10 ** max(0, -sf) >= _ACC32_TURN * 10 ** max(0, sf):
        sf += 1
    return sf


def scale_factors(config):
    i_max = config.get("i_max_a", 63)
    if not isinstance(i_max, int) or i_max < 1:
        raise ValueError("i_max_a must be a whole number of A >= 1, got %r" % (i_max,))
    phases = config.get("phases", 3)
    if phases not in (1, 3):
        raise ValueError("phases must be 1 or 3, got %r" % (phases,))
    sf = dict(_FIXED_SF)
    sf["A_SF"] = _fit_int16(phases * i_max * 6 // 5)   # current sum, 20 % overload
    p_total = phases * i_max * _U_MAX_V
    for name in ("W_SF", "VA_SF", "VAR_SF"):
        sf[name] = _fit_int16(p_total)
    e_sf = _fit_acc32(p_total * _TEN_YEARS_H)
    for name in ("TotWh_SF", "TotVAh_SF", "TotVArh_SF"):
        sf[name] = e_sf
    over = config.get("sunspec_sf", {})
    if not isinstance(over, dict):
        raise ValueError("sunspec_sf must map scale factor names to ints, got %r" % (over,))
    for name, v in over.items():
        # -3..6: the divisor 10**(3 + SF) must stay a small int on a 32-bit board
        if name not in sf or not isinstance(v, int) or not -3 <= v <= 6:
            raise ValueError("sunspec_sf: bad scale factor %s=%r (names: %s; -3..6)"
                             % (name, v, ", ".join(sorted(sf))))
        sf[name] = v
    return sf


_POWER_SF = ("W_SF", "VA_SF", "VAR_SF")   # snapshot power unit (table.P_UNIT_MW)


def _div(sf_name, sf):
    # Decimal exponent of the snapshot unit per base unit: mA, mV, mHz, mW, mWh -> 3;
    # PF_E4 in percent (1e-4 = 0.01 %) -> 2.
    e = (2 if sf_name == "PF_SF" else 3) + sf[sf_name]
    if e < 0:
        raise ValueError("%s=%d is finer than the snapshot resolution" % (sf_name, sf[sf_name]))
    return p_div(10 ** e) if sf_name in _POWER_SF else 10 ** e


def _meter_model(sf, phases):
    """Points of model 203, or of model 201 for single-phase wiring: the same layout
    (model_201.json: L = 105, the line-to-line voltages named PPVphAB..); phases B and
    C, which a single-phase meter does not have, read not-implemented there."""
    pts = []
    one = phases == 1
    for name, typ, kind, a, b, sfn in _M203:
        if one and (name.endswith("phB") or name.endswith("phC")):
            kind = _NI
        if one and name.startswith("PhVph") and len(name) == 7:
            name = "PPV" + name[3:]       # PhVphAB -> PPVphAB (model 201 names)
        if typ == _SSF:
            pts.append((name, typ, _CONST, sf[name], 0, 1))
        elif sfn is None or kind == _NI:
            pts.append((name, typ, kind, a, b, 1))
        else:
            pts.append((name, typ, kind, a, b, _div(sfn, sf)))
    for group in _M203_E:
        sfn = group[-1]
        d = _div(sfn, sf)
        for name, kind in group[:-1]:
            pts.append((name, _ACC32, _ENERGY, _TOTAL, kind, d))
            for blk, ph in _PH:
                if one and ph != "A":
                    pts.append((name + "Ph" + ph, _ACC32, _NI, 0, 0, 1))
                else:
                    pts.append((name + "Ph" + ph, _ACC32, _ENERGY, blk, kind, d))
        pts.append((sfn, _SSF, _CONST, sf[sfn], 0, 1))
    pts.append(("Evt", _BF32, _EVT, 0, 0, 1))
    return pts


def _lay(addr, model_id, pts, out):
    """Append ID, L and the points at addr; return the next model's address."""
    n = 0
    for p in pts:
        n += SIZES[p[1]]
    out.append((addr, _U16, _CONST, model_id, 0, 1, "ID"))
    out.append((addr + 1, _U16, _CONST, n, 0, 1, "L"))
    a = addr + 2
    for name, typ, kind, x, y, div in pts:
        out.append((a, typ, kind, x, y, div, name))
        a += SIZES[typ]
    return a


def rows(ident, config):
    m1 = []
    for name, typ, kind, key in _M1:
        if kind == _TEXT:
            m1.append((name, typ, _TEXT, text(ident.get(key, ""), typ), 0, 1))
        elif isinstance(key, str):
            m1.append((name, typ, _CONST, int(config.get(key, 1)), 0, 1))
        else:
            m1.append((name, typ, _CONST, key, 0, 1))
    out = [(BASE, _U32, _CONST, SUNS, 0, 1, "SunS")]
    a = _lay(_MODEL1_ADDR, 1, m1, out)
    if a != _MODEL203_ADDR:
        raise ValueError("model 1 ends at %d" % a)
    phases = config.get("phases", 3)
    mid = 201 if phases == 1 else 203
    a = _lay(_MODEL203_ADDR, mid, _meter_model(scale_factors(config), phases), out)
    if a != _END_ADDR:
        raise ValueError("model %d ends at %d" % (mid, a))
    out.append((_END_ADDR, _U16, _CONST, 0xFFFF, 0, 1, "ID"))
    out.append((_END_ADDR + 1, _U16, _CONST, 0, 0, 1, "L"))
    return out
