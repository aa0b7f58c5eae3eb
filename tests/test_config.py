"""Config validation on the unix port: bad values are refused with the key named."""
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
    import json
    res = mpy(r"""
import json
from firmware import config
try:
    config.validate(json.loads(%r)); r = None
except config.ConfigError as e:
    r = str(e)
print("@@JSON", json.dumps(r))
""" % json.dumps(cfg))
    assert res is not None and needle in res


def test_defaults_and_derived(mpy):
    res = mpy(r"""
import json
from firmware import config
c = config.validate({"metering": {"cycle_ms": 500, "ct_enabled": True, "ct_primary_a": 250}})
d = config.validate()
c60 = config.validate({"metering": {"nominal_hz": 60}})
print("@@JSON", json.dumps({"ratio": config.ct_ratio(c), "ratio_d": config.ct_ratio(d),
      "lc": config.line_cycles(c), "lc_d": config.line_cycles(d),
      "lc60": config.line_cycles(c60), "untouched": config.DEFAULTS["metering"]["cycle_ms"]}))
""")
    assert res["ratio"] == [250, 5] and res["ratio_d"] == [1, 1]
    # LINECYC counts half cycles: 500 ms at 50 Hz = 50, 200 ms = 20, 200 ms at 60 Hz = 24.
    assert res["lc"] == 50 and res["lc_d"] == 20 and res["lc60"] == 24
    assert res["untouched"] == 200
