"""Config validation: bad values are refused with the key named; calibration is exact."""
import json
from fractions import Fraction

import pytest

CASES = [
    ({"metering": {"cycle_ms": 300}}, "metering.cycle_ms"),
    ({"metering": {"nominal_hz": 55}}, "metering.nominal_hz"),
    ({"metering": {"wiring": "3P3W"}}, "metering.wiring"),
    ({"metering": {"ct_enabled": 1}}, "metering.ct_enabled"),
    ({"metering": {"ct_primary_a": 0}}, "metering.ct_primary_a"),
    ({"metering": {"ct_primary_a": 5001}}, "metering.ct_primary_a"),
    ({"metering": {"ct_primary_a": 100.5}}, "metering.ct_primary_a"),
    ({"metering": {"bogus": 1}}, "metering.bogus: unknown key"),
    ({"metering": 5}, "metering: must be an object"),
    ({"calibration": {"v_per_code": -1}}, "calibration.v_per_code"),
    ({"calibration": {"v_per_code": "x"}}, "calibration.v_per_code"),
    ({"calibration": {"v_per_code": 9.395996e-05}}, "calibration.v_per_code"),   # a float
    ({"calibration": {"v_per_code": "1.2.3"}}, "calibration.v_per_code"),
    ({"calibration": {"v_per_code": "-1e-4"}}, "calibration.v_per_code"),
    ({"calibration": {"i_per_code": [1, 0]}}, "calibration.i_per_code"),
    ({"calibration": {"w_per_code": "0"}}, "calibration.w_per_code"),
    ({"calibration": {"bogus": "1"}}, "calibration.bogus: unknown key"),
    ({"calibration": {"gains": [[0, 0, 0], [0, 0, 0]]}}, "calibration.gains"),
    ({"calibration": {"gains": [[0, 0, 0], [0, 1 << 23, 0], [0, 0, 0]]}},
     "calibration.gains[1][1]"),
    ({"calibration": {"phcal": [0, 0, 1024]}}, "calibration.phcal[2]"),
    ({"modbus": {"rs485_a": {"address": 0}}}, "modbus.rs485_a.address"),
    ({"modbus": {"rs485_b": {"address": 248}}}, "modbus.rs485_b.address"),
    ({"modbus": {"rs485_a": {"baud": 4800}}}, "modbus.rs485_a.baud"),
    ({"modbus": {"rs485_b": {"parity": "X"}}}, "modbus.rs485_b.parity"),
    ({"modbus": {"rs485_a": {"stop": 3}}}, "modbus.rs485_a.stop"),
    ({"modbus": {"rs485_a": {"enabled": "yes"}}}, "modbus.rs485_a.enabled"),
    ({"modbus": {"tcp": {"port": 70000}}}, "modbus.tcp.port"),
    ({"modbus": {"tcp": {"max_clients": 0}}}, "modbus.tcp.max_clients"),
    ({"modbus": {"tcp": {"own_id_only": 1}}}, "modbus.tcp.own_id_only"),
    ({"modbus": {"sunspec_da": 0}}, "modbus.sunspec_da"),
    ({"identity": {"serial": "x" * 33}}, "identity.serial"),
    ({"identity": {"product_id": -1}}, "identity.product_id"),
]


@pytest.mark.parametrize("cfg,needle", CASES)
def test_bad_config_names_the_key(mpy, cfg, needle):
    res = mpy(r"""
import json
from firmware import config
from boards.sim.board import SimBoard
try:
    config.validate(json.loads(%r), SimBoard.CALIBRATION); r = None
except config.ConfigError as e:
    r = str(e)
print("@@JSON", json.dumps(r))
""" % json.dumps(cfg))
    assert res is not None and needle in res


def test_defaults_and_derived(mpy):
    res = mpy(r"""
import json
from firmware import config
from boards.sim.board import SimBoard
CAL = SimBoard.CALIBRATION
c = config.validate({"metering": {"cycle_ms": 500, "ct_enabled": True, "ct_primary_a": 250}},
                    CAL)
d = config.validate(None, CAL)
c60 = config.validate({"metering": {"nominal_hz": 60}}, CAL)
print("@@JSON", json.dumps({"ratio": config.ct_ratio(c), "ratio_d": config.ct_ratio(d),
      "lc": config.line_cycles(c), "lc_d": config.line_cycles(d),
      "lc60": config.line_cycles(c60), "untouched": config.DEFAULTS["metering"]["cycle_ms"]}))
""")
    assert res["ratio"] == [250, 5] and res["ratio_d"] == [1, 1]
    # LINECYC counts half cycles: 500 ms at 50 Hz = 50, 200 ms = 20, 200 ms at 60 Hz = 24.
    assert res["lc"] == 50 and res["lc_d"] == 20 and res["lc60"] == 24
    assert res["untouched"] == 200


def test_calibration_comes_from_the_board_or_the_config(mpy_any):
    res = mpy_any(r"""
import json
from firmware import config
from boards.sim.board import SimBoard
out = {}
try:
    config.validate()
except config.ConfigError as e:
    out["none"] = str(e)
full = dict(SimBoard.CALIBRATION)
del full["phcal"]
try:
    config.validate({"calibration": full})
except config.ConfigError as e:
    out["one_missing"] = str(e)
full["phcal"] = [1, 2, 3]
out["own"] = config.validate({"calibration": full})["calibration"]["phcal"]
out["board"] = config.validate(None, SimBoard.CALIBRATION)["calibration"]["v_per_code"]
print("@@JSON", json.dumps(out))
""")
    assert "calibration.v_per_code: missing" in res["none"]
    assert "calibration.phcal: missing" in res["one_missing"]
    assert res["own"] == [1, 2, 3] and res["board"] == "9.395996e-05"


def test_validate_returns_an_independent_copy(mpy_any):
    """Editing one validated config in place changes neither DEFAULTS, the board's
    calibration, the input, nor a later validation."""
    res = mpy_any(r"""
import json
from firmware import config
from boards.sim.board import SimBoard
cfg = {"calibration": {"phcal": [5, 6, 7]}}
a = config.validate(cfg, SimBoard.CALIBRATION)
a["calibration"]["gains"][0][0] = 99
a["calibration"]["phcal"][0] = 1000
a["metering"]["cycle_ms"] = 500
a["modbus"]["rs485_a"]["address"] = 9
b = config.validate(None, SimBoard.CALIBRATION)
print("@@JSON", json.dumps({"gain": b["calibration"]["gains"][0][0],
      "board_gain": SimBoard.CALIBRATION["gains"][0][0], "input": cfg["calibration"]["phcal"],
      "phcal": b["calibration"]["phcal"], "cycle": b["metering"]["cycle_ms"],
      "addr": b["modbus"]["rs485_a"]["address"],
      "defaults_addr": config.DEFAULTS["modbus"]["rs485_a"]["address"]}))
""")
    assert res == {"gain": 0, "board_gain": 0, "input": [5, 6, 7], "phcal": [0, 0, 0],
                   "cycle": 200, "addr": 1, "defaults_addr": 1}


EXACT = ["9.395996e-05", "1.262671E-4", "0.0185", "+12.5", "3", "7e2", ".5", "2.", 17,
         [353907, 3766572000], [6, 4]]


def test_exact_numbers_parse_exactly(mpy_any):
    res = mpy_any(r"""
import json
from firmware import config
print("@@JSON", json.dumps([list(config.parse_exact("x", v)) for v in json.loads(%r)]))
""" % json.dumps(EXACT))
    for v, (n, d) in zip(EXACT, res):
        want = Fraction(v[0], v[1]) if isinstance(v, list) else Fraction(str(v))
        assert Fraction(n, d) == want and (n, d) == (want.numerator, want.denominator), v


# Scale constants against an exact rational reference (Python fractions, CPython).
CAL = {"v_per_code": "9.395996e-05", "i_per_code": "2.346652e-05",
       "w_per_code": "1.849616e-02", "wh_per_lsb": "1.262671e-04"}


def reference_constants(cal, ct):
    n, d = (ct, 5) if ct else (1, 1)
    out = []
    for key, mul in (("v_per_code", Fraction(1000)), ("i_per_code", Fraction(1000 * n, d)),
                     ("w_per_code", Fraction(1000 * n, 10 * d))):
        r = Fraction(cal[key]) * mul if isinstance(cal[key], str) else \
            Fraction(*cal[key]) * mul
        w = r.numerator // r.denominator
        m = (r - w) * 2 ** 28
        m = int(m + Fraction(1, 2)) if m - int(m) != Fraction(1, 2) else int(m) + 1
        if m == 2 ** 28:
            w, m = w + 1, 0
        out += [w, m >> 14, m & 0x3FFF]
    ke = Fraction(cal["wh_per_lsb"]) * 10 ** 12 * n / d
    out.append(int(ke + Fraction(1, 2)))            # half up
    return out


@pytest.mark.parametrize("ct", [None, 1, 35, 86, 100, 107, 400, 4999, 5000])
def test_constants_equal_exact_rationals(mpy_any, ct):
    cfg = {"metering": {"ct_enabled": bool(ct), "ct_primary_a": ct or 100}}
    res = mpy_any(r"""
import json
from firmware import config
from firmware.metering import derive_constants
from boards.sim.board import SimBoard
k = derive_constants(config.validate(json.loads(%r), SimBoard.CALIBRATION))
print("@@JSON", json.dumps(k))
""" % json.dumps(cfg))
    got = [res[j] for j in (0, 1, 2, 4, 5, 6, 8, 9, 10, 12)]
    assert got == reference_constants(CAL, ct)
    # today's float derivation of ke gives the same integer (bit-for-bit counters)
    n, d = (ct, 5) if ct else (1, 1)
    assert res[12] == int(1.262671e-04 * 1e12 * n / d + 0.5)


@pytest.mark.parametrize("cal,needle", [
    ({"wh_per_lsb": "1e-20"}, "calibration.wh_per_lsb"),          # < 1 pWh per LSB
    ({"wh_per_lsb": "100"}, "calibration.wh_per_lsb"),            # > 10 Wh per LSB at CT
    ({"v_per_code": "1e-15"}, "calibration.v_per_code"),          # rounds to 0
    ({"w_per_code": "1e9"}, "calibration.w_per_code"),            # beyond any unit range
])
def test_unrepresentable_factor_is_refused_in_apply_config(mpy_any, cal, needle):
    res = mpy_any(r"""
import json
from tools.mpy.cycle_harness import Harness
from firmware import config
h = Harness({"phases": {"L1": {"v_rms": 230, "i_rms": 1}}})
k0 = list(h.meter._k)
cfg = config.validate({"metering": {"ct_enabled": True, "ct_primary_a": 5000},
                       "calibration": json.loads(%r)}, h.board.CALIBRATION)
try:
    h.meter.apply_config(cfg); r = None
except config.ConfigError as e:
    r = str(e)
print("@@JSON", json.dumps({"err": r, "kept": list(h.meter._k) == k0}))
""" % json.dumps(cal))
    assert res["err"] and needle in res["err"] and res["kept"]


HEAP = r"""
import gc, json
from firmware import config
from boards.sim.board import SimBoard
CAL = SimBoard.CALIBRATION
STORED = json.dumps(config.validate(None, CAL))       # the default config as /cfg/c holds it
TARIFF = {"tariff": {"classes": ["HP", "HC", "", "", "", ""],
                     "wd": [[0, 1], [360, 0], [1320, 1]] + [[1440, 0]] * 5}}
K = [None]
R = {}
A = [0]
# First use interns and grows a few things once: not the config's.
config.validate(json.loads(STORED), CAL)
config.validate(TARIFF, CAL)
gc.collect()
#@@CHUNK
A[0] = gc.mem_alloc()
#@@CHUNK
K[0] = config.validate(None, CAL)
gc.collect()
#@@CHUNK
R["defaults"] = gc.mem_alloc() - A[0]
K[0] = None
gc.collect()
#@@CHUNK
A[0] = gc.mem_alloc()
#@@CHUNK
K[0] = config.validate(json.loads(STORED), CAL)
gc.collect()
#@@CHUNK
R["stored"] = gc.mem_alloc() - A[0]
K[0] = None
gc.collect()
#@@CHUNK
A[0] = gc.mem_alloc()
#@@CHUNK
K[0] = config.validate(TARIFF, CAL)
gc.collect()
#@@CHUNK
R["tariff"] = gc.mem_alloc() - A[0]
c = K[0]["tariff"]
R["wd"] = [type(c["wd"]).__name__, list(c["wd"][2])]
R["sat_shared"] = c["sat"] is config.defaults()["tariff"]["sat"]
print("@@JSON", json.dumps(R))
"""


def test_validated_config_heap_on_32_bit():
    """What a board keeps of its config (32-bit heap): the sections' dicts; sequences
    are tuples, and a value equal to its default is the default's constant (code, in
    flash when frozen), so a config read back from its JSON record costs what the
    defaults cost (before: 2.8 KB for the defaults, about 0.5 KB more from JSON)."""
    from conftest import run_mpy32
    r = run_mpy32(HEAP)
    assert 0 < r["defaults"] <= 1536, r
    assert abs(r["stored"] - r["defaults"]) <= 16, r
    # A tariff of its own costs its own tuples (the other two day tables stay the
    # defaults'; as lists, the three took 0.9 KB).
    assert r["defaults"] < r["tariff"] <= r["defaults"] + 512, r
    assert r["wd"] == ["tuple", [1320, 1]] and r["sat_shared"] is True
