"""MQTT and Home Assistant discovery (issue 13, item 2) against a real broker.

Truths: Debian's mosquitto (started here on a free port with a generated config),
paho-mqtt as the subscriber, Home Assistant's sensor documentation for the
device_class / unit / state_class rules (HA_UNITS below), the MQTT 3.1.1 last will
(delivered by the broker, not by us), the host run's snapshot.json and Modbus reads.
"""
import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from decimal import Decimal
from pathlib import Path

import pytest

from conftest import ROOT, free_port, run_mpy
from test_host_run import HostRun

paho = pytest.importorskip("paho.mqtt.client")

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
pytestmark = pytest.mark.skipif(not os.path.exists(MOSQUITTO) or
                                not (ROOT / "lib" / "umqtt" / "simple.py").exists(),
                                reason="make setup: mosquitto and lib/umqtt")

# Home Assistant sensor docs (developers.home-assistant.io, entity_sensor; device
# classes): allowed units per device class used here; power_factor: no unit or %.
HA_UNITS = {"voltage": {"V", "mV", "kV"}, "current": {"A", "mA"},
            "power": {"W", "kW", "mW"}, "reactive_power": {"var", "kvar"},
            "apparent_power": {"VA", "kVA"}, "power_factor": {None, "%"},
            "frequency": {"Hz", "kHz"}, "energy": {"Wh", "kWh", "MWh"},
            "reactive_energy": {"varh", "kvarh"}}
ENERGY_LIKE = {"energy", "reactive_energy"}
SCN = {"frequency_hz": 50.0, "phases": {
    "L1": {"v_rms": 231.0, "i_rms": 12.5, "phi_deg": 10.0},
    "L2": {"v_rms": 229.5, "i_rms": 8.2, "phi_deg": 200.0},
    "L3": {"v_rms": 230.4, "i_rms": 3.1, "phi_deg": 318.0}}}
SERIAL = "SN4711"
NODE = "openmeter_sn4711"
BASE = "openmeter/" + NODE


class Broker:
    def __init__(self, tmp, auth=None):
        self.port = free_port()
        self.conf = tmp / "mosquitto.conf"
        # user: as root mosquitto would switch to "mosquitto", which cannot read the
        # password file in pytest's private tmp (no effect when not root).
        text = "listener %d 127.0.0.1\npersistence false\nuser %s\n" % (
            self.port, getpass.getuser())
        if auth:                           # (user, password): no anonymous clients
            pw = tmp / "passwd"
            subprocess.run([shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd",
                            "-b", "-c", str(pw), auth[0], auth[1]], check=True,
                           capture_output=True)
            pw.chmod(0o600)
            text += "allow_anonymous false\npassword_file %s\n" % pw
        else:
            text += "allow_anonymous true\n"
        self.conf.write_text(text)
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("mosquitto did not start")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)


class Sub:
    """paho subscriber on '#': every message as (topic, payload, retain)."""

    def __init__(self, port, auth=None):
        self.msgs = []
        self.lock = threading.Lock()
        self.c = paho.Client(paho.CallbackAPIVersion.VERSION2)
        if auth:
            self.c.username_pw_set(*auth)
        self.c.on_message = self._on
        self.c.on_connect = lambda c, *a: c.subscribe("#")
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()

    def _on(self, c, u, m):
        with self.lock:
            self.msgs.append((m.topic, m.payload, m.retain))

    def wait(self, pred, timeout=15):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.lock:
                hit = [m for m in self.msgs if pred(m)]
            if hit:
                return hit
            time.sleep(0.05)
        raise AssertionError("no such message; topics: %s"
                             % sorted({m[0] for m in self.msgs})[:20])

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path)
    yield b
    b.stop()


def host(tmp, broker_port, **mq):
    cfg = {"identity": {"serial": SERIAL},
           "mqtt": dict({"enabled": True, "url": "mqtt://127.0.0.1:%d" % broker_port,
                         "keepalive_s": 10}, **mq)}
    (tmp / "cfg.json").write_text(json.dumps(cfg))
    h = HostRun(tmp, SCN, extra=("--config", str(tmp / "cfg.json")))
    h.wait_line(lambda l: l.startswith("READY"))
    return h


def mb(h):
    from pymodbus.client import ModbusTcpClient
    c = ModbusTcpClient("127.0.0.1", port=h.port, timeout=3, retries=0)
    assert c.connect()
    return c


def status_regs(c):
    r = c.read_holding_registers(0xD200, count=10, device_id=1)
    assert not r.isError(), r
    v = r.registers
    return {"connected": v[0], "enabled": v[1], "sent": v[2] << 16 | v[3],
            "drops": v[4] << 16 | v[5], "err": v[6], "connects": v[7] << 16 | v[8]}


def test_discovery_schema_state_matches_snapshot_and_status_registers(tmp_path, broker):
    sub = Sub(broker.port)
    h = host(tmp_path, broker.port, keepalive_s=5)
    try:
        sub.wait(lambda m: m[0] == BASE + "/state")
        t_conn = time.monotonic()
        disc = sub.wait(lambda m: m[0].startswith("homeassistant/"))
        time.sleep(0.5)
        disc = [m for m in sub.msgs if m[0].startswith("homeassistant/")]
        assert len(disc) == 64 and all(m[2] or True for m in disc)
        ids, dev_ids = set(), set()
        energy_imp_exp = []
        for topic, payload, _ in disc:
            p = json.loads(payload)
            parts = topic.split("/")
            assert parts[0] == "homeassistant" and parts[1] == "sensor" and \
                parts[2] == NODE and parts[4] == "config", topic
            # Required for a discovered sensor tied to a device (HA MQTT docs).
            for k in ("name", "unique_id", "state_topic", "availability_topic",
                      "value_template", "device"):
                assert k in p, (topic, k)
            assert p["state_topic"] == BASE + "/state"
            # object_id is deprecated (HA 2025.10, dropped 2026.4): default_entity_id
            assert "object_id" not in p
            assert p["default_entity_id"] == "sensor." + p["unique_id"]
            assert p["availability_topic"] == BASE + "/status"
            d = p["device"]
            assert d["identifiers"] == [NODE] and d["serial_number"] == SERIAL
            assert d["manufacturer"] and d["model"] and d["sw_version"]
            dev_ids.add(json.dumps(d, sort_keys=True))
            assert p["unique_id"] not in ids
            ids.add(p["unique_id"])
            dc, unit, sc = p.get("device_class"), p.get("unit_of_measurement"), \
                p.get("state_class")
            if dc is not None:
                assert unit in HA_UNITS[dc], (topic, dc, unit)
            if dc in ENERGY_LIKE or (unit or "").endswith("h"):
                assert sc == "total_increasing", topic
            else:
                assert sc in ("measurement", None), topic
            if dc == "energy":
                energy_imp_exp.append(parts[3])
        assert len(dev_ids) == 1                    # one device
        assert {"total_active_import", "total_active_export"} <= set(energy_imp_exp)
        # The birth message, retained (a late subscriber sees it too).
        late = Sub(broker.port)
        late.wait(lambda m: m[0] == BASE + "/status" and m[1] == b"online" and m[2])
        late.close()
        # State messages around a snapshot.json (written on its own schedule): the
        # scenario is steady, so the instantaneous values are those of the snapshot,
        # and each energy counter of the snapshot lies between the two states'.
        found = None
        end = time.monotonic() + 15
        while found is None and time.monotonic() < end:
            time.sleep(0.3)
            try:
                snap = h.snapshot()
            except (ValueError, OSError):
                continue
            sts = [json.loads(pl, parse_float=Decimal) for t, pl, _ in list(sub.msgs)
                   if t == BASE + "/state"]
            lo = [x for x in sts if x["seq"] <= snap["seq"]]
            hi = [x for x in sts if x["seq"] >= snap["seq"]]
            if lo and hi:
                found = lo[-1], hi[0], snap
        assert found, "no state messages around a snapshot.json"
        st, st2, snap = found
        for ph in ("L1", "L2", "L3", "total"):
            a, b = st[ph], snap["phases"][ph]
            assert a["u"] * 1000 == b["u_mv"] and a["i"] * 1000 == b["i_ma"]
            assert a["p"] * 1000 == b["p_mw"] and a["q"] * 1000 == b["q_mvar"]
            assert a["s"] * 1000 == b["s_mva"] and a["pf"] * 10000 == b["pf_e4"]
            assert a["f"] * 1000 == b["f_mhz"] and a["quadrant"] == b["quadrant"]
            for k, v in snap["energy"][ph].items():
                name = k.rsplit("_", 1)[0]
                assert a[name] * 1000000 <= v <= st2[ph][name] * 1000000, (ph, k)
                assert (a[name] * 1000000) % 1 == 0     # whole mWh: exact decimals
        assert st["L1"]["quadrant"] == 1 and st["L2"]["quadrant"] == 3
        # Status registers over Modbus.
        c = mb(h)
        s = status_regs(c)
        assert s["connected"] == 1 and s["enabled"] == 1 and s["connects"] == 1
        assert s["sent"] >= 1 and s["err"] == 0
        r = c.write_registers(0xD200, [0], device_id=1)
        assert r.isError() and r.exception_code == 2
        # Keep-alive 5 s: PINGREQ every 2.5 s although states go out every second, so
        # the broker's PINGRESPs keep the session (1.5 x keep-alive = 7.5 s) alive.
        time.sleep(max(0.0, 8.5 - (time.monotonic() - t_conn)))
        s = status_regs(c)
        assert s["connected"] == 1 and s["connects"] == 1 and s["err"] == 0
        c.close()
    finally:
        sub.close()
        h.stop()
        broker.stop()


def _child_pid(pid):
    """The host run's MicroPython child (its other children are socat)."""
    for k in Path("/proc/%d/task/%d/children" % (pid, pid)).read_text().split():
        if b"micropython" in Path("/proc/%s/cmdline" % k).read_bytes():
            return int(k)
    raise AssertionError("host run has no MicroPython child")


def test_broker_down_restart_reconnect_then_last_will_on_sigkill(tmp_path, broker):
    h = host(tmp_path, broker.port)
    sub = Sub(broker.port)
    try:
        sub.wait(lambda m: m[0] == BASE + "/status" and m[1] == b"online")
        c = mb(h)
        broker.stop()
        sub.close()
        seq0 = h.snapshot()["seq"]
        time.sleep(2.5)
        # Nothing blocked: metering advanced, Modbus answers, the outage is visible.
        assert h.snapshot()["seq"] > seq0 + 5
        s = status_regs(c)
        assert s["connected"] == 0 and s["err"] != 0
        assert s["drops"] >= 1               # the queue is bounded: oldest dropped
        broker.start()
        sub = Sub(broker.port)
        sub.wait(lambda m: m[0] == BASE + "/state", timeout=20)
        s = status_regs(c)
        assert s["connected"] == 1 and s["connects"] >= 2
        c.close()
        sub.wait(lambda m: m[0] == BASE + "/status" and m[1] == b"online")
        os.kill(_child_pid(h.proc.pid), signal.SIGKILL)   # no DISCONNECT: the will
        sub.wait(lambda m: m[0] == BASE + "/status" and m[1] == b"offline", timeout=20)
    finally:
        sub.close()
        h.stop()


SILENT = r'''
import asyncio, json
from firmware import config
from firmware.events import EventLog
from firmware.mqtt import Mqtt
from firmware.snapshot import Snapshot
class M: front = Snapshot()
class C:
    def ticks_ms(self):
        import time
        return time.ticks_ms()
cal = {"v_per_code": 1, "i_per_code": 1, "w_per_code": 1, "wh_per_lsb": 1,
       "gains": [[0, 0, 0]] * 3, "phcal": [0, 0, 0]}
cfg = config.validate({"mqtt": {"enabled": True, "url": "mqtt://127.0.0.1:%d"}}, cal)
ev = EventLog(8)
m = Mqtt(M(), cfg, C(), ev)
m.timeout_ms = 1500
ticks = [0]
async def tick():
    while True:
        await asyncio.sleep_ms(10)
        ticks[0] += 1
async def main():
    asyncio.create_task(tick())
    t = asyncio.create_task(m.run())
    asyncio.create_task(m.sample())
    await asyncio.sleep_ms(1400)       # CONNECT sent, CONNACK never comes
    during = ticks[0]
    await asyncio.sleep_ms(1200)
    t.cancel()
    print("@@JSON", json.dumps({"during": during, "err": m.err, "connected": m.connected,
                                "drops": m.drops, "queued": m.qn,
                                "codes": [ev.at(k)[1] for k in range(ev.total)]}))
asyncio.run(main())
'''


def test_silent_broker_never_blocks_the_loop():
    """A broker that takes the TCP connection and never answers (CONNACK never comes):
    the loop keeps running (a 10 ms ticker ticks all along), the session gives up at
    its time-out (ETIMEDOUT), logs it once, and the queue stays bounded."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)                      # never accepted: the kernel completes the handshake
    try:
        r = run_mpy(SILENT % srv.getsockname()[1])
    finally:
        srv.close()
    assert r["during"] > 10            # umqtt.simple's own connect(): 0 (README)
    assert r["err"] == 110 and r["connected"] == 0
    assert r["queued"] == 1 and r["drops"] >= 1     # 2.6 s of 1 s samples, one slot
    assert r["codes"].count(53) == 1


STALE = SILENT.split("ticks = [0]")[0].replace("m.timeout_ms = 1500\n", "") + r"""
from firmware.snapshot import ST_STALE
M.front.seq = 5
M.front.status = ST_STALE               # zeroed while the chip re-initialises
async def main():
    t = asyncio.create_task(m.run())
    asyncio.create_task(m.sample())
    await asyncio.sleep_ms(2600)        # two samples while stale
    M.front.seq = 6
    M.front.status = 0
    M.front.inst[0] = 230000
    await asyncio.sleep_ms(2200)        # two fresh samples
    t.cancel()
    print("@@JSON", json.dumps({"sent": m.sent, "connected": m.connected}))
asyncio.run(main())
"""


def test_stale_snapshot_is_not_published(broker):
    """A snapshot published while the chip re-initialises (ST_STALE, zeroed) is no
    state: the broker keeps the last one; fresh snapshots are published again."""
    sub = Sub(broker.port)
    try:
        r = run_mpy(STALE % broker.port)
        states = sub.wait(lambda m: m[0].endswith("/state"))
        time.sleep(0.3)
        with sub.lock:
            seqs = [json.loads(p)["seq"] for t, p, _ in sub.msgs if t.endswith("/state")]
    finally:
        sub.close()
    assert states and r["connected"] == 1
    assert seqs and set(seqs) == {6}, seqs        # never the stale one
    assert r["sent"] == len(seqs)


UNIT = r'''
import json
from firmware import hadisc, config
from firmware.snapshot import Snapshot
from firmware.regmaps import device
s = Snapshot()
s.inst[0] = 230123; s.inst[2] = -123456; s.inst[5] = -9876; s.inst[8] = 4
s.e_hi[0] = 999999; s.e_lo[0] = 7; s.e_hi[31] = 12; s.e_lo[31] = 999999
out = {"state": hadisc.state(s), "dec": [hadisc.dec(-5, 3), hadisc.dec(1000005, 6),
                                         hadisc.dec(7, 0)]}
cal = {"v_per_code": 1, "i_per_code": 1, "w_per_code": 1, "wh_per_lsb": 1,
       "gains": [[0, 0, 0]] * 3, "phcal": [0, 0, 0]}
errs = []
for bad in ({"url": "tcp://x:1"}, {"url": "mqtt://h:70000"}, {"interval_s": 0},
            {"topic_prefix": "a/+/b"}, {"client_id": "x" * 24}, {"discovery": "yes"}):
    try:
        config.validate({"mqtt": bad}, cal)
        errs.append(None)
    except config.ConfigError as e:
        errs.append(str(e))
out["errs"] = errs
cfg = config.validate({"mqtt": {"password": "s3cret", "user": "u"}}, cal)
rows = [r for r in device.ROWS if r[3].startswith("mqtt.")]
regs = {}
for r in rows:
    b = bytearray(2 * r[1])
    device.encode(r, cfg, b, 0)
    regs[r[3]] = bytes(b).rstrip(b"\0").decode()
w = {"mqtt": dict(cfg["mqtt"])}
pw = [r for r in rows if r[3] == "mqtt.password"][0]
device.decode(pw, b"n3w" + bytes(29), 0, w)
out["regs"] = regs
out["written"] = w["mqtt"]["password"]
print("@@JSON", json.dumps(out))
'''


def test_state_json_exact_config_errors_and_rows(mpy_any):
    r = mpy_any(UNIT)
    st = json.loads(r["state"], parse_float=Decimal)
    assert st["L1"]["u"] == Decimal("230.123") and st["L1"]["p"] == Decimal("-1234.56")
    assert st["L1"]["pf"] == Decimal("-0.9876") and st["L1"]["quadrant"] == 4
    assert st["L1"]["active_import"] == Decimal("999999.000007")     # e_hi kWh + e_lo mWh
    assert st["total"]["apparent_export"] == Decimal("12.999999")
    assert r["dec"] == ["-0.005", "1.000005", "7"]
    names = ["mqtt.url", "mqtt.url", "mqtt.interval_s", "mqtt.topic_prefix",
             "mqtt.client_id", "mqtt.discovery"]
    for e, n in zip(r["errs"], names):
        assert e and e.startswith(n + ":"), (e, n)
    assert r["regs"]["mqtt.password"] == ""            # write-only: reads 0
    assert r["regs"]["mqtt.user"] == "u"
    assert r["regs"]["mqtt.discovery_prefix"] == "homeassistant"
    assert r["written"] == "n3w"


def test_heap_share_32bit():
    """The MQTT part's live objects on the 32-bit port (tools/mpy/mqtt_heap32.py): the
    Mqtt object (counters, stand-in socket, names) and a session's umqtt.simple client
    within 1 KB (README "MQTT and Home Assistant" has all the figures)."""
    from conftest import WASM_PKG, WASM_RUN
    if shutil.which("node") is None or not WASM_PKG.exists():
        pytest.fail("the 32-bit MicroPython is not installed: make wasm32")
    p = subprocess.run(["node", str(WASM_RUN), "--lib", str(ROOT / "lib"),
                        str(ROOT / "tools" / "mpy" / "mqtt_heap32.py")],
                       capture_output=True, text=True, timeout=120, cwd=str(ROOT))
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout.split("@@JSON", 1)[1].strip().splitlines()[0])
    # 736 B measured (Mqtt 512: no snapshot copy; a session's client 224); the part
    # with its modules and umqtt.simple's residue (704 B) is asserted against its share
    # in tests/test_heap32.py
    assert r["mqtt_object"] + r["session_client"] <= 1024, r
    assert 0 < r["umqtt_residue"] <= 1024, r
    assert r["state_len"] > 1000 and r["discovery_len"] > 300, r


def test_enabled_over_modbus_as_the_readme_shows(tmp_path):
    """MQTT off at boot (nothing built: 0xD200 is 02), then the README's worked example
    against a broker that wants credentials: a wrong password is refused by the broker
    (CONNACK 4 or 5 in the last-error register), the right one connects; the password
    reads back as zeros."""
    from test_config_e2e import start, tcp, unlock, words, settle
    broker = Broker(tmp_path, auth=("meter", "secret"))
    sub = Sub(broker.port, auth=("meter", "secret"))
    (tmp_path / "cfg.json").write_text(json.dumps({"identity": {"serial": SERIAL}}))
    h = start(tmp_path, "--config", str(tmp_path / "cfg.json"))
    try:
        c = tcp(h)
        r = c.read_holding_registers(0xD200, count=10, device_id=1)
        assert r.isError() and r.exception_code == 2
        assert unlock(c, h.password) == 0
        r = c.write_registers(0xC310, words("mqtt://127.0.0.1:%d" % broker.port, 32)
                              + words("meter", 16) + words("wrong", 16), device_id=1)
        assert not r.isError(), r
        assert not c.write_registers(0xC300, [1], device_id=1).isError()
        settle(c)
        for _ in range(100):
            s = status_regs(c)
            if s["err"]:
                break
            time.sleep(0.05)
        assert s["err"] in (0x104, 0x105) and s["connected"] == 0, s
        assert not c.write_registers(0xC340, words("secret", 16), device_id=1).isError()
        settle(c)
        sub.wait(lambda m: m[0] == BASE + "/state")
        assert status_regs(c)["connected"] == 1
        pw = c.read_holding_registers(0xC340, count=16, device_id=1).registers
        assert pw == [0] * 16
        user = c.read_holding_registers(0xC330, count=16, device_id=1).registers
        assert b"".join(x.to_bytes(2, "big") for x in user).rstrip(b"\0") == b"meter"
        c.close()
    finally:
        sub.close()
        h.stop()
        broker.stop()


def test_private_consts_mirror_the_names_they_stand_for():
    # firmware/hadisc.py and firmware/mqtt.py keep snapshot indices and event codes as
    # private consts (no globals on a board, literal tables): each must equal its source.
    import re
    import sys
    sys.path.insert(0, str(ROOT / "tools"))
    import export_maps  # noqa: F401  (its shim: micropython.const on CPython)
    from firmware import events, snapshot
    n = 0
    for mod, srcs in (("hadisc", (snapshot,)), ("mqtt", (events, snapshot))):
        text = (ROOT / "firmware" / (mod + ".py")).read_text()
        for name, val in re.findall(r"^_([A-Z][A-Z0-9_]*) = const\((\d+)\)", text, re.M):
            src = [s for s in srcs if hasattr(s, name)]
            if src:
                assert getattr(src[0], name) == int(val), (mod, name, val)
                n += 1
    assert n == 15
    from firmware import hadisc
    assert hadisc.COUNT == 4 * (len(hadisc._INST) + snapshot.NE)
    assert [r[1] for r in hadisc._INST] == [snapshot.U_MV, snapshot.I_MA, snapshot.P_MW,
                                            snapshot.Q_MVAR, snapshot.S_MVA, snapshot.PF_E4,
                                            snapshot.F_MHZ, snapshot.QUADRANT]
    assert len(hadisc._ENERGY) == snapshot.NE == len(snapshot.ENERGY_NAMES)
