"""Modbus master push (firmware/pushmb.py) against real slaves: pymodbus servers.

The slaves are pymodbus (not ours): TCP servers in a thread of this process, and an RTU
server on a socat pty pair. Their holding registers start at a sentinel (0xA5A5), so a
group that is not configured shows untouched. The firmware runs on the unix port with
the sim board; the register images the slaves hold are compared with what the meter
serves on its own KSEM map (FC 03 through the same holding space the ports serve).
"""
import asyncio
import json
import os
import shutil
import subprocess
import threading
import time

import pytest
from pymodbus.datastore import (ModbusDeviceContext, ModbusSequentialDataBlock,
                                ModbusServerContext)
from pymodbus.server import ModbusTcpServer, ModbusSerialServer
from pymodbus.framer import FramerType
from pymodbus.client import ModbusTcpClient, ModbusSerialClient

from conftest import ROOT, run_mpy, free_port

SENTINEL = 0xA5A5
SIZE = 800
# KSEM manual 5.14.3 register groups (digest 4.4), as (first, last) inclusive.
GROUPS = {"inst_total": (0, 27), "inst_phases": (40, 145), "energy_total": (512, 551),
          "energy_phases": (592, 791)}


class Slaves:
    """pymodbus slaves in one background asyncio loop."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.servers = []
        self.stores = []

    def _ctx(self, ids=None):
        def dev():
            # pymodbus: block address = PDU address + 1
            return ModbusDeviceContext(hr=ModbusSequentialDataBlock(1, [SENTINEL] * SIZE))
        if ids is None:
            return ModbusServerContext(devices=dev(), single=True), None
        return ModbusServerContext(devices={i: dev() for i in ids}, single=False), None

    def tcp(self, port, ctx=None):
        if ctx is None:
            ctx, dev = self._ctx()

        async def go():
            srv = ModbusTcpServer(ctx, address=("127.0.0.1", port))
            asyncio.ensure_future(srv.serve_forever())
            for _ in range(100):
                if srv.transport is not None:
                    break
                await asyncio.sleep(0.02)
            return srv
        srv = asyncio.run_coroutine_threadsafe(go(), self.loop).result(10)
        self.servers.append(srv)

    def rtu(self, path, ids, baud, parity, stop):
        """An RTU slave answering `ids` on the pty `path`."""
        ctx, _ = self._ctx(ids)

        async def go():
            srv = ModbusSerialServer(ctx, framer=FramerType.RTU, port=path, baudrate=baud,
                                     parity=parity, stopbits=stop,
                                     ignore_missing_devices=True)
            asyncio.ensure_future(srv.serve_forever())
            await asyncio.sleep(0.3)
            return srv
        srv = asyncio.run_coroutine_threadsafe(go(), self.loop).result(10)
        self.servers.append(srv)

    def stop_one(self, srv):
        asyncio.run_coroutine_threadsafe(srv.shutdown(), self.loop).result(10)

    def close(self):
        for s in self.servers:
            try:
                self.stop_one(s)
            except Exception:
                pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def regs(port, lo, hi, unit=1):
    """Holding registers lo..hi of the slave on `port` (TCP port, or a serial device
    path), read back with a pymodbus client (FC 03, at most 100 per request)."""
    if isinstance(port, str):
        c = ModbusSerialClient(port, baudrate=19200, parity="N", stopbits=1, timeout=2,
                               retries=0)
    else:
        c = ModbusTcpClient("127.0.0.1", port=port, timeout=3)
    assert c.connect()
    out = []
    try:
        while lo <= hi:
            n = min(100, hi - lo + 1)
            r = c.read_holding_registers(lo, count=n, device_id=unit)
            assert not r.isError(), r
            out += r.registers
            lo += n
    finally:
        c.close()
    return out


BOOT = r"""
import asyncio, json
from boards.sim.board import SimBoard
from boards.sim import scenario
from firmware.app import App
SCN = scenario.parse(%(scn)s)

def image(app, lo, hi):
    res = []
    while lo <= hi:        # FC 03 reads at most 125 registers
        n = min(100, hi - lo + 1)
        out = bytearray(2 * n)
        assert app.ports.holding.read(lo, n, out, 0) == 0
        res += [(out[2 * k] << 8) | out[2 * k + 1] for k in range(n)]
        lo += n
    return res

def status(app):
    return image(app, 0xD000, 0xD0AF)
"""

SCN = {"frequency_hz": 50.0, "phases": {
    "L1": {"v_rms": 230.0, "i_rms": 10.0, "phi_deg": 30.0},
    "L2": {"v_rms": 229.0, "i_rms": 20.0, "phi_deg": 200.0},
    "L3": {"v_rms": 231.0, "i_rms": 5.0, "phi_deg": 330.0}}}


def boot(scn=SCN):
    return BOOT % {"scn": json.dumps(scn)}


def final_round(wait_ms=1200):
    """Let the round in flight finish (no new one: run() waits while cfg is None),
    freeze metering, push one last round, then read the meter's own map."""
    return r"""
    cfg = app.push.cfg
    app.push.cfg = None
    await asyncio.sleep_ms(%d)
    app.supervisor.cancel_all()
    await asyncio.sleep_ms(50)
    app.push.cfg = cfg
    await app.push._round()
    await asyncio.sleep_ms(50)
""" % wait_ms


@pytest.fixture
def slaves():
    s = Slaves()
    yield s
    s.close()


def test_tcp_push_groups_land_at_ksem_addresses(slaves):
    ports = [free_port(), free_port()]
    for p in ports:
        slaves.tcp(p)
    cfg = {"push": {"groups": {"inst_phases": False},
                    "tcp": [{"host": "127.0.0.1", "port": ports[0], "unit": 1,
                             "enabled": True},
                            {"host": "localhost", "port": ports[1], "unit": 7,
                             "enabled": True}]}}
    res = run_mpy(boot() + r"""
async def main():
    app = App(SimBoard(SCN), %r)
    await app.start(tcp_port=0)
    await asyncio.sleep_ms(1500)
    seq = app.meter.front.seq
""" % cfg + final_round() + r"""
    print("@@JSON", json.dumps({"seq": seq, "rounds": app.push.rounds,
        "img": {k: image(app, lo, hi) for k, (lo, hi) in %r.items()},
        "status": status(app), "silent": app.push.silent}))
asyncio.run(main())
""" % GROUPS)
    assert res["rounds"] >= 3 and res["seq"] >= 3           # cycle mode: pushes follow cycles
    for dev in ports:
        for k, (lo, hi) in GROUPS.items():
            got = regs(dev, lo, hi)
            if k == "inst_phases":
                assert got == [SENTINEL] * (hi - lo + 1)     # group off: never written
            else:
                assert got == res["img"][k], k
        # Nothing outside the groups (28..39 and the rest) is written.
        assert regs(dev, 28, 39) == [SENTINEL] * 12
        assert regs(dev, 146, 511) == [SENTINEL] * 366
    assert res["img"]["inst_total"][2:4] != [0, 0]          # P- (net export) was pushed
    st = res["status"]
    assert st[0] == 0 and not res["silent"]
    for t in (0, 1):
        row = st[0x10 + 8 * t:0x18 + 8 * t]
        assert row[0] == 1 and row[1] == 0                  # ok, no error
        assert (row[2] << 16 | row[3]) >= 3 and (row[4] << 16 | row[5]) == 0
    assert st[0x10 + 8 * 2] == 0                            # target 2: not configured


def test_dead_slave_marked_in_error_metering_keeps_cycle(slaves):
    ports = [free_port() for _ in range(10)]
    for p in ports[:9]:
        slaves.tcp(p)
    # Target 9: nothing listens (connect refused). Target 5: a socket that accepts but
    # never answers (a hung PLC).
    import socket
    mute = socket.socket()
    mute.bind(("127.0.0.1", 0))
    mute.listen(4)
    mute_port = mute.getsockname()[1]
    slaves.stop_one(slaves.servers[5])
    tcp = [{"host": "127.0.0.1", "port": p, "unit": 1, "enabled": True} for p in ports]
    tcp[5]["port"] = mute_port
    cfg = {"metering": {"cycle_ms": 200},
           "push": {"timeout_ms": 300, "retries": 0, "tcp": tcp}}
    try:
        res = run_mpy(boot() + r"""
async def main():
    app = App(SimBoard(SCN), %r)
    await app.start(tcp_port=0)
    t0 = app.board.clock.ticks_ms(); s0 = app.meter.front.seq
    await asyncio.sleep_ms(3000)
    dt = app.board.clock.ticks_ms() - t0; ds = app.meter.front.seq - s0
    ev = [(t, c, a) for t, c, a in app.events.recent_args() if 44 <= c <= 51]
    st = status(app)
    silent = app.push.silent
    bus = app.indicators.names()["bus"]
""" % cfg + final_round(500) + r"""
    print("@@JSON", json.dumps({"dt": dt, "ds": ds, "ev": ev, "status": st, "t0": t0,
        "silent": silent, "bus": bus, "img": image(app, 0, 27)}))
asyncio.run(main())
""")
    finally:
        mute.close()
    # Metering kept its 200 ms cycle: 3 s -> about 15 snapshots (one may straddle).
    assert res["ds"] >= res["dt"] // 200 - 2
    st = res["status"]
    assert st[0] == 2 and res["silent"]
    assert res["bus"].startswith("orange")
    for t in range(10):
        row = st[0x10 + 8 * t:0x18 + 8 * t]
        if t in (5, 9):
            assert row[0] == 2
            assert row[1] == (0x100 if t == 5 else 0x101)     # timeout / refused
        else:
            assert row[0] == 1 and row[1] == 0 and (row[4] << 16 | row[5]) == 0
            assert regs(ports[t], 0, 27) == res["img"]
    errs = [a for t, c, a in res["ev"] if c == 44]
    assert sorted(errs) == [5, 9]                   # one event per target entering error
    # The hung slave is in error once its 300 ms deadline passes after the first push
    # it got (metering's first cycles, then the connect): well inside 2 s of the start.
    t5 = [t for t, c, a in res["ev"] if c == 44 and a == 5][0]
    assert 300 <= t5 - res["t0"] < 2000


TIMELINE = dict(SCN, timeline=[{"at_s": 1.5, "phases": {"L1": {"i_rms": 20.0}}},
                               {"at_s": 2.5, "phases": {"L1": {"v_rms": 240.0,
                                                               "i_rms": 20.0,
                                                               "phi_deg": 30.0}}}])


def interval_run(slaves, mode):
    port = free_port()
    slaves.tcp(port)
    cfg = {"metering": {"cycle_ms": 200},
           "push": {"mode": mode, "interval_s": 1,
                    "tcp": [{"host": "127.0.0.1", "port": port, "enabled": True}]}}
    res = run_mpy(boot(TIMELINE) + r"""
from firmware.snapshot import L1, U_MV, I_MA, P_MW, TOTAL, E_ACTIVE_IMPORT
async def main():
    app = App(SimBoard(SCN), %r)
    snaps = {}
    rounds = []
    async def tap():                 # every published snapshot: L1 U, I, P
        seq = -1
        while True:
            f = app.meter.front
            if f.seq != seq:
                seq = f.seq
                snaps[seq] = (f.t_ms, f.inst[L1 + U_MV], f.inst[L1 + I_MA], f.inst[L1 + P_MW])
            await asyncio.sleep_ms(2)
    asyncio.create_task(tap())
    await app.start(tcp_port=0)
    push = app.push
    orig = push._round
    async def wrapped():             # the snapshot each push ends its interval with
        f = app.meter.front
        rounds.append((f.seq, f.t_ms, f.energy_mwh(TOTAL, E_ACTIVE_IMPORT)))
        await orig()
    push._round = wrapped
    await asyncio.sleep_ms(3600)
    push.cfg = None                  # no new round (run() waits for a config) ...
    await asyncio.sleep_ms(1000)     # ... and the one in flight completes
    app.supervisor.cancel_all()
    await asyncio.sleep_ms(100)
    print("@@JSON", json.dumps({"snaps": snaps, "rounds": rounds, "ok": push.c[0],
                                "fail": push.c[20]}))
asyncio.run(main())
""" % cfg)
    snaps = {int(k): v for k, v in res["snaps"].items()}
    return port, res, snaps


def u32(r, a):
    return r[a] << 16 | r[a + 1]


def test_interval_mean_against_scenario_timeline(slaves):
    port, res, snaps = interval_run(slaves, "interval_mean")
    rounds = res["rounds"]
    assert len(rounds) >= 2 and res["fail"] == 0 and res["ok"] == len(rounds)
    # Pushes every interval: end snapshots 1 s apart (plus about a cycle: the first
    # snapshot at or past the interval ends it).
    for (s0, t0, _), (s1, t1, _) in zip(rounds, rounds[1:]):
        assert 1000 <= t1 - t0 <= 1000 + 2 * 200
    # The last push's interval: the snapshots after the previous push's, up to its own.
    (prev, _, _), (end, _, e_end) = rounds[-2], rounds[-1]
    cyc = [snaps[s] for s in range(prev + 1, end + 1)]
    assert len(cyc) == end - prev >= 4
    # Physics (hand values of the timeline): L1 carries 10 A then 20 A at 230 V, then
    # 240 V; a window that straddles a change lies between.
    for _, u, i, _ in cyc:
        assert 229000 <= u <= 241000 and 9900 <= i <= 20100
    n = len(cyc)

    def mean(vals):                  # integer mean, rounded half up
        s = sum(vals)
        return (2 * s + n) // (2 * n)
    mu, mi, mp = (mean([c[k] for c in cyc]) for k in (1, 2, 3))
    r = regs(port, 40, 65)
    assert u32(r, 40 + 20 - 40) == mi            # OBIS 31: I L1, mA
    assert u32(r, 40 + 22 - 40) == mu            # OBIS 32: U L1, mV
    p = u32(r, 0) - u32(r, 2)                    # P+ - P-, 0.1 W
    assert p == (mp + 5) // 10 if mp >= 0 else -((-mp + 5) // 10)
    # A value that changed inside the interval gives a mean strictly between.
    if min(c[2] for c in cyc) < 15000 < max(c[2] for c in cyc):
        assert 10000 < mi < 20000
    # Energies are never averaged: the counter at the end of the interval.
    e = regs(port, 512, 515)
    assert (e[0] << 48 | e[1] << 32 | e[2] << 16 | e[3]) == e_end // 100


def test_interval_last_sends_the_values_at_the_end(slaves):
    port, res, snaps = interval_run(slaves, "interval_last")
    rounds = res["rounds"]
    assert len(rounds) >= 2 and res["fail"] == 0
    end = rounds[-1][0]
    _, u, i, _ = snaps[end]
    r = regs(port, 40, 65)
    assert u32(r, 20) == i and u32(r, 22) == u


@pytest.fixture
def pty_b(tmp_path):
    socat = shutil.which("socat")
    if not socat:
        pytest.skip("socat not installed")
    dev, peer = tmp_path / "rs485-b-dev", tmp_path / "rs485-b"
    proc = subprocess.Popen([socat, "pty,raw,echo=0,link=%s" % dev,
                             "pty,raw,echo=0,link=%s" % peer],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(500):
        if dev.exists() and peer.exists():
            break
        time.sleep(0.01)
    yield tmp_path
    proc.terminate()
    proc.wait(5)


def test_rtu_master_port_writes_its_slaves(slaves, pty_b):
    # Port B is the master (its slave role off); slaves 3 and 17 take the writes, 9 is
    # not served.
    # (8N1: a pty refuses pyserial's even parity, termios EINVAL.)
    slaves.rtu(str(pty_b / "rs485-b"), (3, 17), 19200, "N", 1)
    back = str(pty_b / "rs485-b-dev")     # after the run: read back from the meter's end
    cfg = {"modbus": {"rs485_b": {"role": "master", "parity": "N"}},
           "push": {"timeout_ms": 200, "retries": 0,
                    "groups": {"energy_phases": False},
                    "rtu": {"port": "b", "slaves": [3, 9, 17]}}}
    res = run_mpy(boot() + r"""
async def main():
    app = App(SimBoard(SCN, run_dir=%r), %r)
    await app.start(tcp_port=0)
    await asyncio.sleep_ms(2500)
    rtu_b_served = app.ports.rtu["b"].stats.last_ms
""" % (str(pty_b), cfg) + final_round(800) + r"""
    print("@@JSON", json.dumps({"status": status(app), "rounds": app.push.rounds,
        "img": {k: image(app, lo, hi) for k, (lo, hi) in %r.items()},
        "served": rtu_b_served}))
asyncio.run(main())
""" % GROUPS)
    st = res["status"]
    assert res["served"] is None                    # the slave role is not running on B
    for j, addr in enumerate((3, 9, 17)):
        row = st[0x10 + 8 * (10 + j):0x18 + 8 * (10 + j)]
        if addr == 9:
            # pymodbus 3.16 answers an id it does not serve with exception 04 (its
            # ignore_missing_devices does not catch it): an exception reply, in error.
            assert row[0] == 2 and row[1] in (4, 0x100)
            continue
        assert row[0] == 1 and row[1] == 0 and u32(row, 2) >= 2, (addr, row)
        for k, (lo, hi) in GROUPS.items():
            got = regs(back, lo, hi, unit=addr)
            if k == "energy_phases":
                assert got == [SENTINEL] * (hi - lo + 1)
            else:
                assert got == res["img"][k], (addr, k)


# ---- unit level, both runtimes ----

CONFIG_CASES = r"""
import json
from firmware import config
from boards.sim.board import SimBoard
CAL = SimBoard.CALIBRATION
def err(c):
    try:
        config.validate(c, CAL)
    except config.ConfigError as e:
        return str(e)
    return None
ok = config.validate({"push": {"tcp": [{"host": "plc.local", "port": 1502, "unit": 3,
                                        "enabled": True}],
                               "rtu": {"slaves": [5, 7]}}}, CAL)
master = config.validate({"modbus": {"rs485_a": {"role": "master"}},
                          "push": {"rtu": {"port": "a", "slaves": [5]}}}, CAL)
print("@@JSON", json.dumps({
    "tcp": ok["push"]["tcp"], "slaves": ok["push"]["rtu"]["slaves"],
    "roles": [ok["modbus"]["rs485_a"]["role"], master["modbus"]["rs485_a"]["role"]],
    "errs": [err(c) for c in (
        {"push": {"mode": "sometimes"}},
        {"push": {"interval_s": 3601}},
        {"push": {"timeout_ms": 10}},
        {"push": {"groups": {"inst_total": 1}}},
        {"push": {"groups": {"sunspec": True}}},
        {"push": {"tcp": [{"host": "", "enabled": True}]}},
        {"push": {"tcp": [{"host": "a b"}]}},
        {"push": {"tcp": [{"host": "x", "port": 0}]}},
        {"push": {"tcp": [{"host": "x", "unit": 256}]}},
        {"push": {"tcp": [{"host": "x", "user": "u"}]}},
        {"push": {"tcp": [{}] * 11}},
        {"push": {"rtu": {"port": "c"}}},
        {"push": {"rtu": {"port": "b", "slaves": [5]}}},
        {"push": {"rtu": {"slaves": [248]}}},
        {"modbus": {"rs485_b": {"role": "client"}}},
    )]}))
"""


def test_push_config_validated_and_padded(mpy_any):
    res = mpy_any(CONFIG_CASES)
    assert len(res["tcp"]) == 10 and res["tcp"][0] == {"host": "plc.local", "port": 1502,
                                                       "unit": 3, "enabled": True}
    assert res["tcp"][1:] == [None] * 9      # unused slots cost no dict
    assert res["slaves"] == [5, 7] + [0] * 8
    assert res["roles"] == ["slave", "master"]
    keys = ["push.mode", "push.interval_s", "push.timeout_ms", "push.groups.inst_total",
            "push.groups.sunspec", "push.tcp.0.host", "push.tcp.0.host", "push.tcp.0.port",
            "push.tcp.0.unit", "push.tcp.0.user", "push.tcp", "push.rtu.port",
            "push.rtu.port", "push.rtu.slaves.0", "modbus.rs485_b.role"]
    for e, k in zip(res["errs"], keys):
        assert e is not None and e.startswith(k), (k, e)


MEAN = r"""
import gc, json
from array import array
from firmware import config
from firmware.events import EventLog
from firmware.pushmb import Pusher
from firmware.snapshot import Snapshot, NQ, P_SAT, TOTAL, P_MW, Q_MVAR, QUADRANT
class M:
    def status_now(self):
        return 0
class C:
    def ticks_ms(self):
        return 0
CAL = {"v_per_code": 1, "i_per_code": 1, "w_per_code": 1, "wh_per_lsb": 1,
       "gains": [[0, 0, 0]] * 3, "phcal": [0, 0, 0]}
m = Pusher(M(), None, EventLog(8), C())
m.configure(config.validate({"push": {"mode": "interval_mean"}}, CAL))
s = Snapshot()
N = %d
VALS = []
def fill(k):
    # extremes of the rated range: +-3 P_SAT on the total, +-P_SAT per phase
    for i in range(NQ * 4):
        big = 3 * P_SAT if i >= TOTAL else P_SAT
        s.inst[i] = (big - 7 * k - i) if (k + i) %% 3 else -(big - 5 * k)
def run():
    for k in range(N):
        fill(k)
        m._add(s)
run()
s.e_hi[3] = 123
s.e_lo[3] = 456789
def fin():
    gc.collect()
    gc.disable()
    a0 = gc.mem_alloc()
    m._finish(s)
    d = gc.mem_alloc() - a0
    gc.enable()
    return d
alloc = fin()
print("@@JSON", json.dumps({"mean": list(m.front.inst), "alloc": alloc,
                            "e": [m.front.e_hi[3], m.front.e_lo[3]]}))
"""


def test_mean_is_exact_without_long_ints(mpy_any):
    n = 600
    res = mpy_any(MEAN % n)
    P_SAT, NQ, TOTAL = 357913941, 9, 27
    for i in range(NQ * 4):
        big = 3 * P_SAT if i >= TOTAL else P_SAT
        vals = [(big - 7 * k - i) if (k + i) % 3 else -(big - 5 * k) for k in range(n)]
        if i % NQ in (8,):                 # QUADRANT: from the signs of the mean P, Q
            continue
        s = sum(vals)
        assert res["mean"][i] == (2 * s + n) // (2 * n), i     # half up
    for b in range(0, 36, 9):
        p, q = res["mean"][b + 2], res["mean"][b + 3]
        quad = (1 if q >= 0 else 4) if p >= 0 else (2 if q >= 0 else 3)
        assert res["mean"][b + 8] == quad
    assert res["e"] == [123, 456789]        # energies: the counters at the end
    assert res["alloc"] == 0                # no long int, no object: on 32-bit too


def test_mean_takes_no_stale_snapshot(mpy_any):
    # A snapshot published while the chip re-initialises (ST_STALE, values zeroed) is
    # not a cycle of the interval: the mean is that of the measured cycles.
    code = MEAN.split("N = %d")[0] + r"""
from firmware.snapshot import ST_STALE
for k in range(10):
    stale = k % 3 == 1
    for i in range(NQ * 4):
        s.inst[i] = 0 if stale else 1000 + i
    s.status = ST_STALE if stale else 0
    m._add(s)
s.status = 0
m._finish(s)
print("@@JSON", json.dumps({"mean": [m.inst[i] for i in range(NQ * 4)]}))
"""
    res = mpy_any(code)
    for i in range(36):
        if i % 9 != 8:                     # QUADRANT: from the mean's P and Q signs
            assert res["mean"][i] == 1000 + i, i


SLOT = r"""
import json
from firmware import config
from firmware.regmaps import device as t
from boards.sim.board import SimBoard
CAL = SimBoard.CALIBRATION
cfg = config.validate(None, CAL)
rows = {r[3]: r for r in t.ROWS}
out = bytearray(32)
t.encode(rows["push.tcp.4.host"], cfg, out, 0)
empty = out.hex()
t.encode(rows["push.tcp.4.port"], cfg, out, 0)
port = out[0] << 8 | out[1]
work = {"push": config._copy(cfg["push"])}
t.decode(rows["push.tcp.4.host"], b"plc.local" + bytes(23), 0, work)
new = config.patch(cfg, work, CAL)
print("@@JSON", json.dumps({"empty": empty, "port": port, "slot": new["push"]["tcp"][4],
                            "was": cfg["push"]["tcp"][4]}))
"""


def test_unused_push_slot_reads_zero_and_takes_a_host(mpy_any):
    res = mpy_any(SLOT)
    assert res["was"] is None
    assert res["empty"] == "00" * 32 and res["port"] == 0
    # A host written into an unused slot: the other keys take their defaults.
    assert res["slot"] == {"host": "plc.local", "port": 502, "unit": 1, "enabled": False}


def test_private_consts_mirror_the_names_they_stand_for():
    # firmware/pushmb.py keeps snapshot indices and event codes as private consts (no
    # globals on a board): each must equal the name it stands for.
    import re
    import sys
    sys.path.insert(0, str(ROOT / "tools"))
    import export_maps  # noqa: F401  (its shim: micropython.const on CPython)
    from firmware import events, snapshot
    text = (ROOT / "firmware" / "pushmb.py").read_text()
    n = 0
    for name, val in re.findall(r"^_([A-Z][A-Z0-9_]*) = const\((\d+)\)", text, re.M):
        src = [m for m in (snapshot, events) if hasattr(m, name)]
        if src:
            assert getattr(src[0], name) == int(val), (name, val)
            n += 1
    assert n == 9
    from firmware.config import PUSH_MODES
    import ast
    modes = re.search(r"^_PUSH_MODES = const\((\(.*?\))\)", text, re.M).group(1)
    assert ast.literal_eval(modes) == PUSH_MODES
    nv = snapshot.NQ * 4                       # the interval_mean array's layout
    m = dict(re.findall(r"^_(M_[A-Z]+) = const\((\d+)\)", text, re.M))
    assert [int(m[k]) for k in ("M_HI", "M_LO", "M_N", "M_EHI", "M_ELO", "M_LEN")] == [
        nv, 2 * nv, 3 * nv, 3 * nv + 1, 3 * nv + 1 + snapshot.N_COUNTERS,
        3 * nv + 1 + 2 * snapshot.N_COUNTERS]
