"""Configuration registers, password and lockout, config records (issue 10, item 4).

Truths: the register layout is checked against bytes packed here by CPython's struct
from the config values (big-endian, Modbus Application Protocol 4.2), the schema against
firmware/config.py's own validated defaults (every leaf has a row), the password hash
against CPython's hashlib, the record CRC against zlib. Lockout timing runs on the sim
board's VirtualClock. Codec and access logic run on both runtimes; littlefs (power cuts
at every block write) only on the unix port.
"""
import hashlib
import struct
import zlib

import pytest

CAL = {"v_per_code": "9.395996e-05", "i_per_code": [353907, 3766572000],
       "w_per_code": 7, "wh_per_lsb": "1.262671E-4",
       "gains": [[1, -2, 3], [-8388608, 8388607, 0], [5, 6, -7]], "phcal": [0, 512, 1023]}
CFG = {
    "metering": {"cycle_ms": 500, "nominal_hz": 60, "wiring": "1P2W", "ct_enabled": True,
                 "ct_primary_a": 400},
    "modbus": {"rs485_a": {"enabled": False, "address": 17, "baud": 115200, "parity": "O",
                           "stop": 1},
               "rs485_b": {"enabled": True, "address": 1, "baud": 19200, "parity": "N",
                           "stop": 2},
               "tcp": {"enabled": True, "port": 1502, "max_clients": 3, "idle_s": 70000,
                       "own_id_only": True},
               "sunspec_da": 9, "sunspec_sf": {"W_SF": -2, "TotWh_SF": 1}},
    "identity": {"vendor": "ACME", "model": "M-1", "serial": "SN42", "hw_version": "2.1",
                 "product_id": 4660},
    "storage": {"persist_s": 90},
    "records": {"enabled": True, "period_min": 15, "ct_class": "0.5", "ct_sustain_s": 900},
    "time": {"ntp_server": "pool.ntp.org", "ntp_interval_s": 1024, "tz": "+05:30"},
    "tariff": {"classes": ["HPH", "HCH", "HPE", "HCE", "", ""],
               "wd": [[360, 0], [1320, 1]] + [[1440, 0]] * 6,
               "sat": [[0, 1]] + [[1440, 0]] * 7, "sun": [[0, 1]] + [[1440, 0]] * 7,
               "seasons": [[401, 1031, 2], [0, 0, 0]], "holidays": [1225, 101] + [0] * 14,
               "fr_holidays": True},
    "demand": {"ps_w": [36000, 36000, 30000, 30000, 0, 0], "k_pct": 85},
    "losses": {"enabled": True, "kj_import": 1010, "kj_export": 990, "kf_w": 70000,
               "ktg": 9},
    "network": {"dhcp": False, "ip": "10.1.2.3", "netmask": "255.255.0.0",
                "gateway": "10.1.0.1", "dns": "9.9.9.9", "hostname": "meter-7"},
    "mqtt": {"enabled": True, "url": "mqtt://10.1.0.5:1884", "user": "meter",
             "password": "pw1", "client_id": "m7", "keepalive_s": 30, "interval_s": 5,
             "topic_prefix": "site/a", "discovery": False, "discovery_prefix": "ha"},
    "calibration": CAL,
    # Modbus master push (firmware/pushmb.py): every slot given, as validate() pads them.
    "push": {"mode": "interval_mean", "interval_s": 900, "timeout_ms": 2500, "retries": 4,
             "groups": {"inst_total": True, "inst_phases": False, "energy_total": True,
                        "energy_phases": False},
             "tcp": [{"host": "plc-%d.local" % i, "port": 1500 + i, "unit": i,
                      "enabled": i % 2 == 0} for i in range(10)],
             "rtu": {"port": "a", "slaves": [3, 4, 0, 0, 0, 0, 0, 0, 0, 247]}},
}
CFG["modbus"]["rs485_a"]["role"] = "master"
CFG["modbus"]["rs485_b"]["role"] = "off"

DUMP = r"""
import json
from firmware import config
from firmware.regmaps import device as t
from firmware.regmaps.device import encode
cfg = config.validate(json.loads(%r))
rows = []
for r in t.ROWS:
    buf = bytearray(2 * r[1])
    if r[2] < 10:                # config rows (10.. are the special ones)
        encode(r, cfg, buf, 0)
    rows.append([r[0], r[1], t.TYPE_NAMES[r[2]], r[3], list(r[4]), buf.hex()])
def leaves(d, p):
    out = []
    for k in d:
        v = d[k]
        q = p + k
        if isinstance(v, dict):
            out += leaves(v, q + ".")
        elif isinstance(v, (list, tuple)) and not k.endswith("_code"):   # a row per item
            for i in range(len(v)):                                   # (not rationals)
                if isinstance(v[i], (list, tuple)):
                    out += [q + ".%%d.%%d" %% (i, j) for j in range(len(v[i]))]
                elif isinstance(v[i], dict):
                    out += leaves(v[i], q + ".%%d." %% i)
                else:
                    out.append(q + ".%%d" %% i)
        else:
            out.append(q)
    return out
print("@@JSON", json.dumps({"rows": rows, "leaves": leaves(cfg, "")}))
"""


def _u64pair(num, den):
    return struct.pack(">QQ", num, den)


def expected(path, typ, n, v):
    """The registers of value v, packed independently of the firmware."""
    if typ in ("uint16", "bool"):
        return struct.pack(">H", int(v))
    if typ == "uint32":
        return struct.pack(">I", v)
    if typ == "int32":
        return struct.pack(">i", v)
    if typ == "sunssf":
        return struct.pack(">h", v) if v is not None else b"\x80\x00"
    if typ == "string":
        return v.encode().ljust(2 * n, b"\0")
    if typ == "ipv4":
        return bytes(int(x) for x in v.split("."))
    raise AssertionError(typ)


def value(cfg, path):
    obj = cfg
    for p in path.split("."):
        obj = obj[int(p)] if p.isdigit() else (obj or {}).get(p)
    return obj


def test_table_covers_the_schema_and_encodes_each_value(mpy_any):
    import json
    res = mpy_any(DUMP % json.dumps(CFG))
    rows = res["rows"]
    # Inside 0xC000..0xC3FF, sorted, no overlap.
    for a, b in zip(rows, rows[1:]):
        assert a[0] + a[1] <= b[0]
    assert rows[0][0] == 0xC000 and rows[-1][0] + rows[-1][1] - 1 <= 0xC3FF
    paths = {r[3] for r in rows}
    # Every leaf of the schema has a row (sunspec_sf has one per factor below).
    leaves = set(res["leaves"]) - {"modbus.sunspec_sf.W_SF", "modbus.sunspec_sf.TotWh_SF"}
    assert leaves <= paths, leaves - paths
    for sf in ("A_SF", "V_SF", "Hz_SF", "W_SF", "VA_SF", "VAR_SF", "PF_SF", "TotWh_SF",
               "TotVAh_SF", "TotVArh_SF"):
        assert "modbus.sunspec_sf." + sf in paths
    cfgx = dict(CFG, calibration=CAL)
    for addr, n, typ, path, enum, hexv in rows:
        got = bytes.fromhex(hexv)
        assert len(got) == 2 * n
        if typ in ("password", "password change", "command", "status", "secret"):
            assert got == bytes(2 * n)
            continue
        v = value(cfgx, path)
        if typ == "enum":
            assert got == struct.pack(">H", enum.index(v)), path
        elif typ == "preset":
            # rs485_b (1, 19200, N, 2) is the PIKO CI preset (3); rs485_a none of them.
            assert got == struct.pack(">H", 3 if "rs485_b" in path else 0)
        elif typ == "rational":
            from fractions import Fraction
            from decimal import Decimal
            f = Fraction(Decimal(v)) if isinstance(v, str) else (
                Fraction(v[0], v[1]) if isinstance(v, list) else Fraction(v))
            assert got == _u64pair(f.numerator, f.denominator), path
        elif path.startswith("modbus.sunspec_sf."):
            assert got == expected(path, typ, n, CFG["modbus"]["sunspec_sf"].get(
                path.rsplit(".", 1)[1])), path
        else:
            assert got == expected(path, typ, n, v), path


WRITE = r"""
import json
from firmware import config
from firmware.regmaps import device as t
from firmware.regmaps.device import decode
cfg = config.validate(None, json.loads(%r))
out = {}
for addr, hexv in json.loads(%r):
    row = [r for r in t.ROWS if r[0] == addr][0]
    top = row[3].split(".")[0]
    work = {top: config._copy(cfg[top])}
    try:
        decode(row, bytes.fromhex(hexv), 0, work)
        new = config.patch(cfg, work, json.loads(%r))
        out[row[3]] = ["ok", new]
    except ValueError as e:      # the codec's ("register value: ...") or validation's
        out[row[3]] = ["refused" if str(e).startswith("register value") else "invalid",
                       str(e)]
print("@@JSON", json.dumps(out))
"""


def test_register_writes_decode_to_config_values(mpy_any):
    import json
    writes = [
        (0xC043, struct.pack(">I", 9600)),              # rs485_a.baud
        (0xC055, struct.pack(">H", 2)),                 # rs485_b.parity -> "O"
        (0xC050, struct.pack(">H", 1)),                 # rs485_b preset PIKO IQ/PLENTICORE
        (0xC063, struct.pack(">I", 86400)),             # tcp.idle_s
        (0xC072, struct.pack(">H", 1)),                 # wiring -> 1P2W
        (0xC084, struct.pack(">h", -3)),                # W_SF
        (0xC0B0, b"AB-12".ljust(32, b"\0")),            # serial
        (0xC0D1, bytes((172, 16, 0, 9))),               # ip
        (0xC100, _u64pair(1, 10643)),                   # v_per_code exact rational
        (0xC122, struct.pack(">i", -123456)),           # gains[0][1]
        (0xC134, struct.pack(">H", 77)),                # phcal[2]
        # refused by the codec (-> 03): a bool of 2, an enum out of range, text after NUL
        (0xC061, struct.pack(">H", 2)),
        (0xC045, struct.pack(">H", 3)),
        (0xC090, b"AB\0C".ljust(32, b"\0")),
        # refused by validation (-> 03): baud 1234, cycle 300, a hostname with "_"
        (0xC053, struct.pack(">I", 1234)),
        (0xC070, struct.pack(">H", 300)),
        (0xC0E0, b"my_meter".ljust(32, b"\0")),
    ]
    cal = json.dumps(CAL)
    res = mpy_any(WRITE % (cal, json.dumps([(a, b.hex()) for a, b in writes]), cal))
    ok = {k: v[1] for k, v in res.items() if v[0] == "ok"}
    assert ok["modbus.rs485_a.baud"]["modbus"]["rs485_a"]["baud"] == 9600
    assert ok["modbus.rs485_b.parity"]["modbus"]["rs485_b"]["parity"] == "O"
    b = ok["modbus.rs485_b.preset"]["modbus"]["rs485_b"]
    assert (b["address"], b["baud"], b["parity"], b["stop"]) == (1, 38400, "N", 2)
    assert ok["modbus.tcp.idle_s"]["modbus"]["tcp"]["idle_s"] == 86400
    assert ok["metering.wiring"]["metering"]["wiring"] == "1P2W"
    assert ok["modbus.sunspec_sf.W_SF"]["modbus"]["sunspec_sf"] == {"W_SF": -3}
    assert ok["identity.serial"]["identity"]["serial"] == "AB-12"
    assert ok["network.ip"]["network"]["ip"] == "172.16.0.9"
    assert ok["calibration.v_per_code"]["calibration"]["v_per_code"] == [1, 10643]
    g = ok["calibration.gains.0.1"]["calibration"]["gains"]
    assert g == [[1, -123456, 3], [-8388608, 8388607, 0], [5, 6, -7]]
    assert ok["calibration.phcal.2"]["calibration"]["phcal"] == [0, 512, 77]
    for k in ("modbus.tcp.port",):          # 0xC061 is tcp.port: 2 is a valid port
        assert k in ok
    assert res["modbus.rs485_a.parity"][0] == "refused"
    assert res["identity.vendor"][0] == "refused"
    for k, word in (("modbus.rs485_b.baud", "baud"), ("metering.cycle_ms", "cycle_ms"),
                    ("network.hostname", "hostname")):
        assert res[k][0] == "invalid" and word in res[k][1], res[k]


ACCESS = r"""
import json
from boards.sim.clock import VirtualClock
from firmware.events import EventLog, EV_UNLOCK_FAILED, EV_LOCKED_OUT
from firmware.cfgstore import Access, factory_password, rule_error, pw_hash
from firmware.modbus.pdu import Caller
clk = VirtualClock()
ev = EventLog(64)
fp = factory_password("SN1", b"\x01\x02")
a = Access(clk, ev, fp, unlock_ms=1000, lock_base_ms=10000, lock_max_ms=35000)
log = []
def step(tag, code):
    log.append([tag, clk.ticks_ms() - t0, code, a.fails])
t0 = clk.ticks_ms()
tcp1, tcp2, rtu = Caller("tcp", 1), Caller("tcp", 2), Caller("rtu-a")
for i in range(4):
    step("wrong", a.unlock(tcp1, "Wrongpass"))
step("right", a.unlock(tcp1, fp))                  # resets the count
out = {"fp": fp, "fp_rule": rule_error(fp), "fp2": factory_password("SN2", b"\x01\x02"),
       "fp3": factory_password("SN1", b"\x01\x03"),
       "a1": a.allowed(tcp1), "a2": a.allowed(tcp2), "artu": a.allowed(rtu)}
clk.advance_ms(900)
out["renewed"] = a.allowed(tcp1)                     # renews to +1000
clk.advance_ms(900)
out["still"] = a.allowed(tcp1)
clk.advance_ms(1001)
out["expired"] = a.allowed(tcp1)
# Lockouts: 5 wrong -> 10 s; attempts inside refused, not checked, not extending it.
for i in range(5):
    step("wrong", a.unlock(tcp2, "Wrongpass"))
step("during", a.unlock(tcp2, fp))
clk.advance_ms(9999)
step("during", a.unlock(tcp2, "Wrongpass"))
clk.advance_ms(1)
out["left_at_end"] = a.lock_left_ms()
for i in range(5):
    step("wrong", a.unlock(tcp2, "Wrongpass"))
clk.advance_ms(19999)
step("during2", a.unlock(tcp2, fp))
clk.advance_ms(1)
for i in range(5):
    step("wrong", a.unlock(tcp2, "Wrongpass"))
out["third"] = a.lock_left_ms()                      # 40 s capped at 35 s
clk.advance_ms(35000)
for i in range(5):
    step("wrong", a.unlock(tcp2, "Wrongpass"))
out["fourth"] = a.lock_left_ms()
clk.advance_ms(35000)
step("right", a.unlock(tcp2, fp))
out["level_after_right"] = a.level
# Password change: rules, old password, then only the new one works; unlocks end.
out["weak"] = [rule_error(p) for p in ("Abcdefg", "abcdefgh", "ABCDEFGH", "Abcdefg1",
                                       "Abcdefgh", "A" * 16 + "b" * 17)]
out["chg_bad_rule"] = a.change(fp, "short")
out["chg_wrong_old"] = a.change("Nottheone", "NewSecretPw")
out["allowed_before"] = a.allowed(tcp2)
out["chg"] = a.change(fp, "NewSecretPw")
out["allowed_after"] = a.allowed(tcp2)
out["old_now"] = a.unlock(rtu, fp)
out["new_now"] = a.unlock(rtu, "NewSecretPw")
out["salt"] = a.salt.hex()
out["hash"] = a.hash.hex()
rec = a.dump()
b = Access(clk, ev, fp)
b.load(rec)
out["reloaded"] = b.unlock(None, "NewSecretPw")
out["dump_has_pw"] = b"NewSecretPw" in rec
b.reset()
out["after_reset"] = [b.unlock(None, "NewSecretPw"), b.unlock(None, fp)]
out["log"] = log
out["events"] = [[c, g] for t, c, g in ev.recent_args() if c in (EV_UNLOCK_FAILED, EV_LOCKED_OUT)]
print("@@JSON", json.dumps(out))
"""


def test_password_unlock_and_lockout(mpy_any):
    r = mpy_any(ACCESS)
    fp = r["fp"]
    assert len(fp) == 10 and fp.isalpha() and r["fp_rule"] is None
    assert any(c.isupper() for c in fp) and any(c.islower() for c in fp)
    assert len({fp, r["fp2"], r["fp3"]}) == 3          # serial and unique id both count
    assert (r["a1"], r["a2"], r["artu"]) == (True, False, False)
    assert (r["renewed"], r["still"], r["expired"]) == (True, True, False)
    log = r["log"]
    assert [x[2] for x in log[:5]] == [3, 3, 3, 3, 0] and log[4][3] == 0
    # First lockout: the right password inside it is refused with 06 and not counted.
    assert [x[2] for x in log[5:10]] == [3] * 5
    assert log[10][:1] == ["during"] and log[10][2] == 6
    assert log[11][2] == 6 and r["left_at_end"] == 0
    # Second: 20 s (doubled); third capped at 35 s; it stays capped.
    assert log[17][0] == "during2" and log[17][2] == 6
    assert r["third"] == 35000 and r["fourth"] == 35000
    assert log[-1][0] == "right" and log[-1][2] == 0 and r["level_after_right"] == 0
    assert r["weak"][:4] == ["8 to 32 letters", "upper and lower case",
                             "upper and lower case", "letters only"]
    assert r["weak"][4] is None and r["weak"][5] == "8 to 32 letters"
    assert r["chg_bad_rule"] == 3 and r["chg_wrong_old"] == 3
    assert r["allowed_before"] is True and r["chg"] == 0 and r["allowed_after"] is False
    assert r["old_now"] == 3 and r["new_now"] == 0
    # The stored hash is 64 rounds of SHA-256 over (previous + salt), as CPython computes.
    salt = bytes.fromhex(r["salt"])
    d = salt + b"NewSecretPw"
    for _ in range(64):
        d = hashlib.sha256(d + salt).digest()
    assert d.hex() == r["hash"]
    assert r["reloaded"] == 0 and r["dump_has_pw"] is False
    assert r["after_reset"] == [3, 0]
    fails = [e for e in r["events"] if e[0] == 24]
    locks = [e[1] for e in r["events"] if e[0] == 25]
    # + 3: the wrong old password of a change, the old one after it, the one after reset
    assert len(fails) == sum(1 for x in log if x[0] == "wrong") + 3
    assert locks == [1, 1, 1, 1]          # minutes, rounded up: 10 s, 20 s, 35 s, 35 s


RECORD = r"""
import json
from firmware.cfgstore import record, parse
r = record(7, b'{"a": 1}')
bad = bytearray(r)
bad[14] ^= 1
print("@@JSON", json.dumps({"rec": bytes(r).hex(), "parsed": [parse(r)[0], parse(r)[1].decode()],
      "bad": parse(bad), "short": parse(r[:-1])}))
"""


def test_config_record_format(mpy_any):
    r = mpy_any(RECORD)
    rec = bytes.fromhex(r["rec"])
    body = b"CF\x01\x00" + struct.pack("<II", 7, 8) + b'{"a": 1}'
    assert rec == body + struct.pack("<I", zlib.crc32(body))
    assert r["parsed"] == [7, '{"a": 1}'] and r["bad"] is None and r["short"] is None


ROUTE = r"""
import json
from tests.spaces import ArraySpace
from firmware.regmaps.device import Routed
a = ArraySpace(0, 100)
b = ArraySpace(0xC000, 16, writable=False)
r = Routed(((0, 0xBFFF, a), (0xC000, 0xC3FF, b)))
out = bytearray(300)
res = {"in_a": r.read(10, 5, out, 0), "cross": r.read(0xBFFF, 2, out, 0),
       "in_b": r.read(0xC000, 16, out, 0), "past_b_space": r.read(0xC00F, 2, out, 0),
       "none": r.read(0xC400, 1, out, 0), "w_b": r.write(0xC000, 1, b"\0\1", 0),
       "w_a": r.write(1, 1, b"\0\1", 0), "w_cross": r.write(0xBFFF, 2, b"\0\1\0\1", 0)}
print("@@JSON", json.dumps(res))
"""


def test_routed_space(mpy):
    r = mpy(ROUTE)
    assert r == {"in_a": 0, "cross": 2, "in_b": 0, "past_b_space": 2, "none": 2,
                 "w_b": 2, "w_a": 0, "w_cross": 2}


# ---------------------------------------------------------------- littlefs (unix)

CUTS = r"""
import os, json
from boards.sim.blockdev import SimFlash
from firmware.cfgstore import Slots
OLD = json.dumps({"v": "old", "pad": "x" * 700}).encode()
NEW = json.dumps({"v": "new", "pad": "y" * 900}).encode()
def mount(f, fresh=False):
    if fresh:
        os.VfsLfs2.mkfs(f)
    return os.VfsLfs2(f)
# How many block writes one save takes.
f = SimFlash(16)
v = mount(f, True)
s = Slots(v, "/cfg/c")
s.save(OLD)
w0 = f.writes
s.save(NEW)
total = f.writes - w0
seen = []
for k in range(total + 1):
    f = SimFlash(16)
    v = mount(f, True)
    s = Slots(v, "/cfg/c")
    s.save(b"first")
    s.save(OLD)
    f.cut_power_after(k)
    try:
        s.save(NEW)
        done = True
    except OSError:
        done = False
    g = f.reboot()
    s2 = Slots(mount(g), "/cfg/c")
    got = s2.load()
    seen.append([k, done, json.loads(got)["v"] if got else None])
    # After the cut the next save still works and wins.
    s2.save(NEW)
    assert Slots(mount(g.reboot()), "/cfg/c").load() == NEW
print("@@JSON", json.dumps({"total": total, "seen": seen}))
"""


def test_config_save_cut_at_every_block_write(mpy):
    r = mpy(CUTS)
    assert r["total"] >= 2
    for k, done, v in r["seen"]:
        assert v in ("old", "new"), (k, v)
        if done:
            assert v == "new", k
    assert r["seen"][0][2] == "old" and r["seen"][-1][2] == "new"


BOOT = r"""
import asyncio, json, os
from boards.sim import scenario
from boards.sim.board import SimBoard
from firmware.app import App
SCN = scenario.parse({"frequency_hz": 50.0, "phases": {"L1": {"v_rms": 230.0, "i_rms": 1.0, "phi_deg": 0.0}}})
out = {}
b = SimBoard(SCN)
app = App(b, {"storage": {"persist_s": 30}})          # given: stored
out["n1"] = app.settings.note
out["fp"] = app.settings.access.factory
flash = b.flash
b2 = SimBoard(SCN); b2.flash = flash.reboot()
app2 = App(b2)                                        # none given: the stored one
out["n2"] = app2.settings.note
out["p2"] = app2.cfg["storage"]["persist_s"]
out["fp2"] = app2.settings.access.factory
b3 = SimBoard(SCN); b3.flash = flash.reboot()
app3 = App(b3, {"storage": {"persist_s": 40}})        # given again: replaces it
b4 = SimBoard(SCN); b4.flash = b3.flash.reboot()
app4 = App(b4)
out["p4"] = app4.cfg["storage"]["persist_s"]
b5 = SimBoard(SCN)
out["p5"] = App(b5).cfg["storage"]["persist_s"]       # a fresh flash: defaults
print("@@JSON", json.dumps(out))
"""


def test_boot_config_given_stored_or_defaults(mpy):
    r = mpy(BOOT)
    assert r["n1"].startswith("given config stored")
    assert r["n2"] == "stored config used" and r["p2"] == 30
    assert r["p4"] == 40 and r["p5"] == 60
    assert r["fp"] == r["fp2"]
