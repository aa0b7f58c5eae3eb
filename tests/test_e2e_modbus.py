"""End to end: the firmware booted by the host run, read by real Modbus masters.

pymodbus over TCP and over both RS485 ptys at the KSEM presets (A: address 1, 38400 8N2;
B: address 247, 19200 8E1), and pysunspec2 scanning over TCP and RTU. Every map is
checked against the scenario's physics and against RUN_DIR/snapshot.json.

Linux ptys refuse the parity bit (the kernel clears PARENB and pyserial's reconfigure
fails with EINVAL), so masters open port B with parity N: a pty carries bytes, not
bits, and the firmware's port keeps its 8E1 setting (and its 19200 baud t3.5).
"""
import json
import math
import struct
import threading
import time

import pytest
from pymodbus.client import ModbusSerialClient, ModbusTcpClient

from test_host_run import HostRun

# A commercial site behind 400:5 CTs: large flows so that every counter, even in whole
# Wh (SunSpec acc32 reads 0 as "not implemented"), moves within a second or two.
SCN = {"frequency_hz": 50.0, "ct_primary_a": 400, "phases": {
    "L1": {"v_rms": 231.0, "i_rms": 300.0, "phi_deg": 160.0},    # PV export, Q2
    "L2": {"v_rms": 229.5, "i_rms": 120.0, "phi_deg": 25.0},     # import, Q1
    "L3": {"v_rms": 230.4, "i_rms": 60.0, "phi_deg": 318.0}}}    # import, Q4
CFG = {"metering": {"ct_enabled": True, "ct_primary_a": 400}}


@pytest.fixture(scope="module")
def meter(tmp_path_factory):
    d = tmp_path_factory.mktemp("e2e")
    (d / "cfg.json").write_text(json.dumps(CFG))
    h = HostRun(d, SCN, extra=("--config", str(d / "cfg.json")))
    h.wait_line(lambda l: l.startswith("READY"))
    time.sleep(3.0)      # counters well above one Wh
    yield h
    h.stop()


def tcp(h, **kw):
    c = ModbusTcpClient("127.0.0.1", port=h.port, timeout=3, **kw)
    assert c.connect()
    return c


def rtu(h, which):
    if which == "A":
        c = ModbusSerialClient(str(h.run_dir / "rs485-a"), baudrate=38400, parity="N",
                               stopbits=2, timeout=1, retries=0)
    else:
        c = ModbusSerialClient(str(h.run_dir / "rs485-b"), baudrate=19200, parity="N",
                               stopbits=1, timeout=1, retries=0)
    assert c.connect()
    return c


TRANSPORTS = [("tcp", 1), ("A", 1), ("B", 247)]


def client(h, which):
    return tcp(h) if which == "tcp" else rtu(h, which)


def u32(r, i):
    return (r[i] << 16) | r[i + 1]


def i32(r, i):
    v = u32(r, i)
    return v - (1 << 32) if v & 0x80000000 else v


def u64(r, i):
    return (r[i] << 48) | (r[i + 1] << 32) | (r[i + 2] << 16) | r[i + 3]


def f32(r, i):
    return struct.unpack(">f", struct.pack(">HH", r[i], r[i + 1]))[0]


def physics():
    out = {}
    for name, ph in SCN["phases"].items():
        r = math.radians(ph["phi_deg"])
        v, i = ph["v_rms"], ph["i_rms"]
        out[name] = {"p": v * i * math.cos(r), "q": v * i * math.sin(r), "s": v * i,
                     "u": v, "i": i, "pf": math.cos(r)}
    out["total"] = {k: sum(out[n][k] for n in ("L1", "L2", "L3")) for k in ("p", "q", "s", "i")}
    return out


@pytest.mark.parametrize("which,unit", TRANSPORTS)
def test_ksem_map_matches_physics_and_snapshot(meter, which, unit):
    c = client(meter, which)
    try:
        tot = c.read_holding_registers(0, count=28, device_id=unit).registers
        phases = [c.read_holding_registers(b, count=26, device_id=unit).registers
                  for b in (40, 80, 120)]
        snap0 = meter.snapshot()
        energy = c.read_holding_registers(512, count=40, device_id=unit).registers
        e_l1 = c.read_holding_registers(592, count=40, device_id=unit).registers
        pnp = c.read_holding_registers(0x2001, count=3, device_id=unit).registers
    finally:
        c.close()
    ph = physics()
    snap = meter.snapshot()
    # Totals, 0.1 W units; P+ / P- are the unsigned import/export parts.
    p = ph["total"]["p"]
    assert u32(tot, 0) == 0 and u32(tot, 2) / 10 == pytest.approx(-p, rel=1e-3)
    assert u32(tot, 2) == round(-snap["phases"]["total"]["p_mw"] / 100) or \
        abs(u32(tot, 2) - (-snap["phases"]["total"]["p_mw"] / 100)) <= 1
    q = ph["total"]["q"]                              # net Q > 0, P < 0: quadrant II
    assert u32(tot, 4) / 10 == pytest.approx(q, rel=1e-3) and u32(tot, 6) == 0
    assert [u32(tot, 8 + 2 * k) for k in range(4)].count(0) == 3
    assert u32(tot, 10) / 10 == pytest.approx(q, rel=1e-3)          # QII holds |Q|
    assert u32(tot, 16) == 0 and u32(tot, 18) / 10 == pytest.approx(ph["total"]["s"], rel=1e-3)
    assert i32(tot, 24) / 1000 == pytest.approx(p / ph["total"]["s"], abs=1.5e-3)
    assert u32(tot, 26) == 50000                                     # mHz
    for k, name in enumerate(("L1", "L2", "L3")):
        r, x = phases[k], ph[name]
        assert u32(r, 20) == pytest.approx(x["i"] * 1000, rel=1e-3)   # mA
        assert u32(r, 22) == pytest.approx(x["u"] * 1000, abs=1)      # mV
        assert i32(r, 24) / 1000 == pytest.approx(x["pf"], abs=1.5e-3)
        signed_p = (u32(r, 0) - u32(r, 2)) / 10
        assert signed_p == pytest.approx(x["p"], rel=1e-3)
        assert u32(r, 20) == snap["phases"][name]["i_ma"]
        assert u32(r, 22) == snap["phases"][name]["u_mv"]
    # Energies: uint64 in 0.1 Wh = floor(mWh / 100), between two snapshot writes.
    for off, key in ((0, "active_import_mwh"), (4, "active_export_mwh"),
                     (32, "apparent_import_mvah"), (36, "apparent_export_mvah")):
        lo = snap0["energy"]["total"][key] // 100
        # The snapshot file lags the live counters by up to 1 s (~8 Wh here).
        assert lo - 2 <= u64(energy, off) <= lo + 400, (key, u64(energy, off), lo)
    assert u64(energy, 4) > 0 and u64(energy, 0) == 0                # net export
    assert u64(e_l1, 4) >= u64(energy, 4)                             # L1 exports more
    # Q+ = QI + QII, Q- = QIII + QIV.
    assert u64(energy, 8) == u64(energy, 16) + u64(energy, 20)
    assert u64(energy, 12) == u64(energy, 24) + u64(energy, 28)
    assert pnp[0] == 18514


@pytest.mark.parametrize("which,unit", TRANSPORTS)
def test_sdm630_map(meter, which, unit):
    c = client(meter, which)
    try:
        a = c.read_input_registers(0, count=36, device_id=unit).registers
        b = c.read_input_registers(0x34, count=24, device_id=unit).registers
    finally:
        c.close()
    ph = physics()
    for k, name in enumerate(("L1", "L2", "L3")):
        x = ph[name]
        assert f32(a, 2 * k) == pytest.approx(x["u"], rel=1e-3)
        assert f32(a, 6 + 2 * k) == pytest.approx(x["i"], rel=1e-3)
        assert f32(a, 12 + 2 * k) == pytest.approx(x["p"], rel=1e-3)
        assert f32(a, 18 + 2 * k) == pytest.approx(x["s"], rel=1e-3)
        assert f32(a, 24 + 2 * k) == pytest.approx(x["q"], rel=1e-3)
        assert f32(a, 30 + 2 * k) == pytest.approx(x["pf"], abs=1.5e-3)
    assert f32(b, 0) == pytest.approx(ph["total"]["p"], rel=1e-3)       # 0x34
    assert f32(b, 0x46 - 0x34) == pytest.approx(50.0, abs=0.01)          # Hz
    snap = meter.snapshot()
    exp_kwh = snap["energy"]["total"]["active_export_mwh"] / 1e6
    assert f32(b, 0x4A - 0x34) == pytest.approx(exp_kwh, abs=0.02)       # export kWh
    assert f32(b, 0x48 - 0x34) == 0.0                                    # import kWh


def sunspec_device(h, which):
    import sunspec2.modbus.client as sc
    if which == "tcp":
        return sc.SunSpecModbusClientDeviceTCP(slave_id=1, ipaddr="127.0.0.1", ipport=h.port)
    return sc.SunSpecModbusClientDeviceRTU(slave_id=1, name=str(h.run_dir / "rs485-a"),
                                           baudrate=38400, parity="N", timeout=1)


@pytest.mark.parametrize("which", ["tcp", "A"])
def test_pysunspec2_scan_and_model_203(meter, which):
    d = sunspec_device(meter, which)
    try:
        d.scan()          # raises or logs "Model error" on a bad length or marker
        assert 1 in d.models and 203 in d.models
        # pysunspec2 records length/marker mismatches per model as error_info.
        for mid in (1, 203):
            assert d.models[mid][0].error_info == "", d.models[mid][0].error_info
        assert [m.model_id for m in d.model_list] == [1, 203]
        m = d.models[203][0]
        m.read()
        common = d.models[1][0]
        common.read()
    finally:
        d.close()
    assert common.Mn.cvalue == "OpenMeter"
    assert common.Vr.cvalue
    ph = physics()
    w_q = 10 ** m.W_SF.value                  # the scale factor's own resolution
    assert m.W.cvalue == pytest.approx(ph["total"]["p"], abs=w_q)
    assert m.WphB.cvalue == pytest.approx(ph["L2"]["p"], abs=w_q)
    assert m.A.cvalue == pytest.approx(ph["total"]["i"], abs=10 ** m.A_SF.value)
    assert m.AphA.cvalue == pytest.approx(300.0, abs=10 ** m.A_SF.value)
    assert m.PhVphA.cvalue == pytest.approx(231.0, abs=0.1)
    assert m.Hz.cvalue == pytest.approx(50.0, abs=0.01)
    snap = meter.snapshot()["energy"]["total"]
    e_q = 10 ** m.TotWh_SF.value + 10          # SF resolution + 1 s of snapshot lag
    assert m.TotWhExp.cvalue == pytest.approx(snap["active_export_mwh"] / 1000, abs=e_q)
    assert m.TotWhImp.cvalue in (None, 0)      # acc32 0 reads "not implemented"
    assert snap["active_import_mwh"] == 0
    q_q = 10 ** m.TotVArh_SF.value + 10
    for pt, key in (("TotVArhImpQ1", "reactive_q1_mvarh"), ("TotVArhImpQ2", "reactive_q2_mvarh"),
                    ("TotVArhExpQ3", "reactive_q3_mvarh"), ("TotVArhExpQ4", "reactive_q4_mvarh")):
        want = snap[key] / 1000
        got = getattr(m, pt).cvalue
        assert (got or 0) == pytest.approx(want, abs=q_q), pt
    assert m.TotVArhImpQ2.cvalue > 0      # the net total sits in quadrant II


def test_load_8_tcp_clients_and_both_rtu_ports(meter):
    """A few thousand requests at once over TCP (8 clients) and both RTU ports: 0 fail."""
    errors = []
    counts = {}

    def worker(name, make, unit, n):
        ok = 0
        c = make()
        try:
            for k in range(n):
                try:
                    r = c.read_holding_registers(40 * (k % 4), count=26, device_id=unit)
                    if r.isError() or len(r.registers) != 26:
                        errors.append((name, k, str(r)))
                    else:
                        ok += 1
                except Exception as e:          # noqa: BLE001 - any failure counts
                    errors.append((name, k, repr(e)))
        finally:
            c.close()
        counts[name] = ok

    threads = [threading.Thread(target=worker, args=("tcp%d" % i, lambda: tcp(meter), 1, 400))
               for i in range(8)]
    threads.append(threading.Thread(target=worker, args=("A", lambda: rtu(meter, "A"), 1, 150)))
    threads.append(threading.Thread(target=worker, args=("B", lambda: rtu(meter, "B"), 247, 100)))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    assert errors == []
    assert sum(counts.values()) == 8 * 400 + 150 + 100


def test_50_idle_sockets_do_not_lock_out_a_good_client(meter):
    import socket
    idle = []
    try:
        for _ in range(50):
            s = socket.create_connection(("127.0.0.1", meter.port), timeout=2)
            idle.append(s)
        time.sleep(0.3)
        c = tcp(meter)
        try:
            r = c.read_holding_registers(0, count=28, device_id=1)
            assert not r.isError() and len(r.registers) == 28
        finally:
            c.close()
    finally:
        for s in idle:
            s.close()


@pytest.mark.parametrize("which,unit", TRANSPORTS)
def test_firmware_exceptions(meter, which, unit):
    """The real maps answer the spec's exceptions: 02 outside the map or not writable,
    03 bad count; and keep serving afterwards."""
    c = client(meter, which)
    try:
        def exc(r):
            return r.exception_code if r.isError() else None
        assert exc(c.read_holding_registers(28, count=1, device_id=unit)) == 2   # gap 28..39
        assert exc(c.read_holding_registers(26, count=4, device_id=unit)) == 2   # ends in gap
        assert c.read_holding_registers(40177, count=2, device_id=unit).registers == [0xFFFF, 0]
        assert exc(c.read_holding_registers(40179, count=1, device_id=unit)) == 2  # past SunSpec
        assert exc(c.write_register(0, 5, device_id=unit)) == 2                  # read-only
        assert exc(c.write_registers(512, [1, 2], device_id=unit)) == 2
        assert exc(c.read_input_registers(0, count=81, device_id=unit)) == 3     # SDM630 max 80
        assert exc(c.read_input_registers(1, count=2, device_id=unit)) == 2      # mid-float
        r = c.read_holding_registers(0, count=28, device_id=unit)
        assert not r.isError() and len(r.registers) == 28
    finally:
        c.close()
