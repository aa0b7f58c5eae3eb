"""Energy counters across power cuts (firmware/persist.py, firmware/powerfail.py).

Truths: the CRC is zlib's CRC-32 (CPython) and the standard check value 0xCBF43926 of
b"123456789"; littlefs is the real one (the unix port's VfsLfs2) on boards/sim/blockdev.py
SimFlash, which cuts the power at a chosen block write (the cut write half done). What
must hold after every remount: the registers equal the last record whose write returned,
or the one being written when the power went (littlefs commits are atomic), and never
less than what an earlier boot restored. The supply-failure write must need no erase.
Record logic runs on both runtimes; littlefs only exists on the unix port (the wasm32
port has VfsPosix only).
"""
import json
import os
import random
import signal
import subprocess
import time
import zlib

import pytest

from conftest import MICROPYTHON, ROOT, mpy_env

# Helpers shared by the littlefs tests (MicroPython code).
LIB = r"""
import os, json, random
from boards.sim.blockdev import SimFlash
from firmware.energy import EnergyRegisters
from firmware.events import EventLog, EV_COUNTERS_RESTORED, EV_RECORD_CORRUPT
from firmware.persist import CounterStore

class Clock:
    def ticks_ms(self):
        return 0

def device(f, fresh=False, progsize=32):
    if fresh:
        os.VfsLfs2.mkfs(f, progsize=progsize)
    v = os.VfsLfs2(f, progsize=progsize)
    e = EnergyRegisters(32)
    ev = EventLog(16)
    return CounterStore(v, e, ev, Clock()), e, ev

def picos(e):
    return [e.pico(i) for i in range(32)]

def drop(s):
    # The device lost power: close its armed file on the dead flash (raises, changes
    # nothing) so that no finaliser touches it later.
    if s._fh is not None:
        try:
            s._fh.close()
        except OSError:
            pass
        s._fh = None

W_200MS = 55555556          # pWh per W in a 200 ms cycle

def meter_cycles(e, n):
    # Realistic adds: each register gets 0..20 kW for a 200 ms cycle, or nothing.
    for _ in range(n):
        for i in range(32):
            if random.getrandbits(1):
                e.add(i, random.randint(0, 20000) * W_200MS)
"""


# ---------------------------------------------------------------- both runtimes

def test_crc_and_records(mpy_any):
    data = bytes(random.Random(7).getrandbits(8) for _ in range(300))
    res = mpy_any(r"""
import json, binascii
from firmware.energy import EnergyRegisters
from firmware import persist
data = bytes.fromhex(%r)
e = EnergyRegisters(32)
big = (1 << 30) - 1            # the largest hi a 32-bit small int holds
for i in range(32):
    e.restore(i, (big - i) * 10**15 + (999999 - i) * 10**9 + 999999999 - i)
e.restore(5, 0)
buf = bytearray(persist.record_len(32))
persist.encode(buf, 123456, e)
seq = persist.check(buf, 0, 32)
e2 = EnergyRegisters(32)
persist.load(buf, 0, e2)
flips = []
for pos in range(len(buf)):
    b = bytearray(buf)
    b[pos] ^= 0x10
    flips.append(persist.check(b, 0, 32))
# a record with a good CRC but lo out of range is refused too
bad = bytearray(buf)
bad[8 + 4:8 + 8] = (1000000).to_bytes(4, "little")
persist._native = None         # our own CRC for the re-sealing and the check
c = persist.crc32(bad[:-4])
bad[-4:] = c.to_bytes(4, "little")
print("@@JSON", json.dumps({
    "check": persist.crc32(b"123456789"), "ours": persist.crc32(data),
    "native": binascii.crc32(data), "len": len(buf), "rec": buf.hex(), "seq": seq,
    "same": [e.pico(i) == e2.pico(i) for i in range(32)],
    "flips": max(flips), "short": persist.check(buf[:-1], 0, 32),
    "n31": persist.check(buf, 0, 31), "range": persist.check(bad, 0, 32),
    "ours_seq": persist.check(buf, 0, 32),
    "newest": persist.newest([(3, "a"), (9, "b"), (4, "c")]), "none": persist.newest([])}))
""" % data.hex())
    assert res["check"] == 0xCBF43926
    assert res["ours"] == zlib.crc32(data) == res["native"]
    rec = bytes.fromhex(res["rec"])
    assert res["len"] == len(rec) == 396
    assert int.from_bytes(rec[-4:], "little") == zlib.crc32(rec[:-4])
    assert rec[:4] == b"EC\x01\x20" and int.from_bytes(rec[4:8], "little") == 123456
    assert res["seq"] == 123456 and res["ours_seq"] == 123456 and all(res["same"])
    assert res["flips"] == -1 and res["short"] == -1 and res["n31"] == -1
    assert res["range"] == -1
    assert res["newest"] == [9, "b"] and res["none"] is None


def test_event_codes_and_config(mpy_any):
    res = mpy_any(r"""
import json
from firmware import events, config
from boards.sim.board import SimBoard
CAL = SimBoard.CALIBRATION
names = [events.event_name(c) for c in range(20, 24)]
log = events.EventLog(4)
log.add(0, events.EV_PERSIST_FAILED, 5)
errs = []
for v in (9, 3601, "60", 10.5, True):
    try:
        config.validate({"storage": {"persist_s": v}}, CAL)
    except config.ConfigError as ex:
        errs.append(str(ex))
print("@@JSON", json.dumps({"names": names, "n": events.N_CODES, "count": log.count(23),
    "default": config.validate(None, CAL)["storage"]["persist_s"],
    "ok": [config.validate({"storage": {"persist_s": v}}, CAL)["storage"]["persist_s"]
           for v in (10, 3600)], "errs": errs}))
""")
    assert res["names"] == ["counters_restored", "record_corrupt", "supply_fail",
                            "persist_failed"]
    assert res["n"] == 64 and res["count"] == 1      # 64 from issue 13 (wave 2)
    assert res["default"] == 60 and res["ok"] == [10, 3600]
    assert len(res["errs"]) == 5 and all("storage.persist_s" in m for m in res["errs"])


def test_power_fail_watcher(mpy_any):
    res = mpy_any(r"""
import json
from array import array
from firmware.powerfail import PowerFail, L1Collapse, PinLow
from firmware.snapshot import L1, U_MV
class Front:
    def __init__(self):
        self.seq = 0
        self.inst = array("l", [0] * 36)
class FakeMeter:
    def __init__(self):
        self.front = Front()
    def cycle(self, mv):
        self.front.seq += 1
        self.front.inst[L1 + U_MV] = mv
m = FakeMeter()
calls = []
pf = PowerFail(L1Collapse(m), lambda: calls.append("fail"), lambda: calls.append("ok"), need=2)
trace = []
def step(mv=None):
    if mv is not None:
        m.cycle(mv)
    trace.append(pf.check())
step(230000); step(114000); step(); step(); step(116000); step(114000); step(); step(1000)
after_fail = list(calls)
step(5000); step(200000); step(); step(200000)
p = [1]
class Pin:
    def value(self):
        return p[0]
hits = []
pp = PowerFail(PinLow(Pin()), lambda: hits.append(1), need=1)
a = pp.check(); p[0] = 0; b = pp.check(); c = pp.check()
bad = []
for kw in ({"need": 0}, {"period_ms": 0}):
    try:
        PowerFail(lambda: None, None, **kw)
    except ValueError as e:
        bad.append(str(e))
try:
    L1Collapse(m, pct=100)
except ValueError as e:
    bad.append(str(e))
print("@@JSON", json.dumps({"trace": trace, "after_fail": after_fail, "calls": calls,
                            "pin": [a, b, c], "hits": len(hits), "bad": len(bad)}))
""")
    # 115 V is half of 230 V: 114 V low, 116 V present; no new snapshot, no verdict.
    assert res["trace"] == [False, False, False, False, False, False, False, True,
                            True, True, True, False]
    assert res["after_fail"] == ["fail"] and res["calls"] == ["fail", "ok"]
    assert res["pin"] == [False, True, True] and res["hits"] == 1
    assert res["bad"] == 3


def _chunks(code):
    return "\n#@@CHUNK\n".join(code)


def test_store_heap_share_on_wasm32(mpy32):
    """Live heap of the store itself (buffers and object), measured on the 32-bit port
    with a stand-in filesystem (no littlefs there): reported, and bounded."""
    res = mpy32(_chunks([r"""
import gc
from firmware.energy import EnergyRegisters
from firmware.events import EventLog
from firmware.persist import CounterStore
class FS:
    def mkdir(self, p):
        pass
    def statvfs(self, p):
        return (4096,) * 10
class Clock:
    def ticks_ms(self):
        return 0
e = EnergyRegisters(32)
ev = EventLog(8)
fs = FS()
clk = Clock()
""", r"""
gc.collect()
a0 = gc.mem_alloc()
""", r"""
store = CounterStore(fs, e, ev, clk)
""", r"""
gc.collect()
import json
print("@@JSON", json.dumps({"bytes": gc.mem_alloc() - a0, "pad": store.pad,
                            "rlen": store.rlen}))
"""]))
    print("store heap on wasm32:", res)
    # record buffer 396 + padding 117 + the object: about 1 KB, well under 2 KB.
    assert res["rlen"] == 396 and res["pad"] == 513
    assert 0 < res["bytes"] < 2048


# ---------------------------------------------------------------- littlefs (unix port)

def test_writes_need_no_erase_and_what_they_cost(mpy):
    res = mpy(LIB + r"""
out = {}
for bs, ps in ((4096, 256), (1024, 32)):
    f = SimFlash(32, bs)
    s, e, ev = device(f, True, ps)
    s.restore()
    s.arm()
    w = []
    a = []
    for k in range(150):
        meter_cycles(e, 1)
        p0, b0, e0 = f.progs, f.bytes, f.erases
        s.write()
        w.append((f.progs - p0, f.bytes - b0, f.erases - e0))
        e1 = f.erases
        s.arm()
        a.append(f.erases - e1)
    meter_cycles(e, 1)
    e0 = f.erases
    first = s.supply_failed()
    second = s.supply_failed()
    pf_erases = f.erases - e0
    s.supply_ok()
    out["%d/%d" % (bs, ps)] = {"erase_free": s.erase_free,
        "w_erases": max(x[2] for x in w), "w_progs": max(x[0] for x in w),
        "w_bytes": max(x[1] for x in w), "arm_erases": sum(a) / len(a),
        "pf": [first, second, pf_erases, ev.count(22)], "rearmed": s._fh is not None}
print("@@JSON", json.dumps(out))
""")
    print("write cost:", res)
    for geo, r in res.items():
        assert r["erase_free"], geo
        assert r["w_erases"] == 0, geo                # the hold-up write never erases
        assert r["pf"] == [True, False, 0, 1], geo    # once per failure, no erase
        assert r["rearmed"]
        assert 1.5 <= r["arm_erases"] <= 3.5, geo     # erases happen when re-arming
    # littlefs at progsize 256 (rp2): record + arm copy in one program, one commit page.
    assert res["4096/256"]["w_progs"] <= 2 and res["4096/256"]["w_bytes"] <= 1280


def test_cut_at_every_block_write_of_a_persist_cycle(mpy):
    res = mpy(LIB + r"""
def setup():
    random.seed(11)
    f = SimFlash(32, 1024)
    s, e, ev = device(f, True)
    s.restore()
    s.arm()
    for k in range(5):
        meter_cycles(e, 3)
        s.persist()
    meter_cycles(e, 3)
    return f, s, e

f, s, e = setup()
w0 = f.writes
s.persist()
total = f.writes - w0
out = {"total": total, "old": 0, "new": 0, "bad": [], "again": 0, "supply": []}
for op in ("persist", "supply_failed"):
    for k in range(total + 1):
        f, s, e = setup()
        # the values of the last completed record: what a restore gives right now
        g0 = f.reboot()
        s0, e0, _ = device(g0)
        s0.restore()
        old = picos(e0)
        new = picos(e)
        f.cut_power_after(k)
        getattr(s, op)()
        drop(s)
        g = f.reboot()
        s2, e2, ev2 = device(g)
        s2.restore()
        got = picos(e2)
        if got == old:
            out["old"] += 1
        elif got == new:
            out["new"] += 1
        else:
            out["bad"].append((op, k))
        if ev2.count(EV_RECORD_CORRUPT):
            out["bad"].append((op, k, "corrupt"))
        # the device carries on from there: arm, count, write, and a reboot gives it all
        s2.arm()
        meter_cycles(e2, 2)
        s2.persist()
        want = picos(e2)
        s3, e3, _ = device(g.reboot())
        s3.restore()
        out["again"] += picos(e3) == want
print("@@JSON", json.dumps(out))
""")
    print("cuts at every write:", res)
    assert res["total"] >= 5
    assert res["bad"] == []
    assert res["old"] >= 2 and res["new"] >= 2
    assert res["old"] + res["new"] == 2 * (res["total"] + 1)
    assert res["again"] == 2 * (res["total"] + 1)


RANDOM_CUTS = LIB + r"""
random.seed(%d)
N = %d
f = SimFlash(32, 1024)
s, e, ev = device(f, True)
s.restore()
done = picos(e)          # last record whose write returned
prev = done              # what the last boot restored
st = {"cuts": 0, "inflight": 0, "mid_write": 0, "done": 0, "boot_cuts": 0, "pf_writes": 0,
      "pf_erases": 0, "fail": [], "corrupt": 0, "writes": 0}
while st["cuts"] < N:
    f.cut_power_after(random.randint(0, 45))
    inflight = None
    try:
        s.arm()                      # boot: as App.start does
    except OSError:
        st["boot_cuts"] += 1
    while not f.dead:
        meter_cycles(e, random.randint(1, 3))
        snap = picos(e)
        w0 = s.writes
        if random.randint(0, 9) == 0 and not s.failed:
            armed = s._fh is not None
            e0 = f.erases
            s.supply_failed()
            if armed and s.writes > w0:
                st["pf_writes"] += 1
                st["pf_erases"] += f.erases - e0
        else:
            s.persist()
        if s.writes > w0:
            done = snap              # the write returned (a cut may have hit the re-arm)
            st["writes"] += 1
        elif f.dead:
            inflight = snap
    st["cuts"] += 1
    st["mid_write"] += inflight is not None
    drop(s)
    f = f.reboot()
    s, e, ev = device(f)
    s.restore()
    got = picos(e)
    if got == done:
        st["done"] += 1
    elif inflight is not None and got == inflight:
        st["inflight"] += 1
        done = got
    else:
        st["fail"].append(st["cuts"])
    if any(got[i] < prev[i] for i in range(32)):
        st["fail"].append(("backwards", st["cuts"]))
    st["corrupt"] += ev.count(EV_RECORD_CORRUPT)
    prev = got
print("@@JSON", json.dumps(st))
"""


def test_random_cuts_while_metering():
    """4 x 1,000 = 4,000 random power cuts (at a random block write, during boot, a
    periodic write or a supply-failure write), each followed by a remount; four
    MicroPython processes at once (seeds 1..4). 1,000 per seed (2,500 before: a minute
    of the suite) still puts over 200 cuts at boot, over 300 mid-write and over 100 in a
    supply-failure write for every seed, so every kind of cut is hit many times."""
    n = 1000
    procs = [subprocess.Popen([MICROPYTHON, "-c", RANDOM_CUTS % (seed, n)],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                              env=mpy_env(), cwd=str(ROOT)) for seed in (1, 2, 3, 4)]
    results = []
    for p in procs:
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0, out
        results.append(json.loads(out.split("@@JSON", 1)[1].strip().splitlines()[0]))
    for seed, res in enumerate(results, 1):
        print("random cuts seed %d:" % seed, res)
        assert res["cuts"] == n
        assert res["fail"] == []
        assert res["corrupt"] == 0            # littlefs never shows a torn file
        # The cuts landed everywhere: at boot, mid-write (the in-flight record may or may
        # not have become durable: littlefs's commit is the write's last program, so in
        # practice it never does) and after writes; supply-failure writes erased nothing.
        assert res["boot_cuts"] > 50 and res["mid_write"] > 200 and res["done"] > 500
        assert res["pf_writes"] > 80 and res["pf_erases"] == 0
    assert sum(r["cuts"] for r in results) == 4 * n


def test_corrupt_or_torn_record_falls_back_with_an_event(mpy):
    res = mpy(LIB + r"""
random.seed(5)
out = {}
# 1. a byte of the newest record flipped in the flash itself (littlefs does not check
#    data blocks): the arm copy before it in the same file is the previous record.
f = SimFlash(32, 1024)
s, e, ev = device(f, True)
s.restore()
s.arm()
for k in range(4):
    meter_cycles(e, 2)
    s.persist()
prev = picos(e)
meter_cycles(e, 2)
s.write()                         # not re-armed: the record is in the flash once
newest = bytes(s._rec)
at = bytes(f.data).find(newest)
out["found_once"] = at >= 0 and bytes(f.data).find(newest, at + 1) < 0
f.flip(at + 100, 0x01)
s2, e2, ev2 = device(f.reboot())
out["flip"] = [s2.restore(), picos(e2) == prev, ev2.count(EV_RECORD_CORRUPT),
               ev2.count(EV_COUNTERS_RESTORED), s.seq]
# 2. a torn file (a journal cut short, as a store without atomic files could leave it)
f = SimFlash(32, 1024)
s, e, ev = device(f, True)
s.restore()
s.arm()
for k in range(3):
    meter_cycles(e, 2)
    s.persist()
last = picos(e)
meter_cycles(e, 2)
s.write()
j = (s.gen - 1) % 3
p = "/cnt/j%d/r" % j
with s.vfs.open(p, "rb") as fh:
    data = fh.read()
with s.vfs.open(p, "wb") as fh:
    fh.write(data[:-7])
s3, e3, ev3 = device(f.reboot())
out["torn"] = [s3.restore(), picos(e3) == last, ev3.count(EV_RECORD_CORRUPT), s.seq]
# 3. nothing valid anywhere: registers untouched (zero), no restore event
f = SimFlash(32, 1024)
s, e, ev = device(f, True)
for j in range(3):
    s.vfs.mkdir("/cnt/j%d" % j)
    with s.vfs.open("/cnt/j%d/r" % j, "wb") as fh:
        fh.write(b"\x00" * 500)
s4, e4, ev4 = device(f.reboot())
out["none"] = [s4.restore(), max(picos(e4)), ev4.count(EV_RECORD_CORRUPT),
               ev4.count(EV_COUNTERS_RESTORED)]
print("@@JSON", json.dumps(out))
""")
    assert res["found_once"]
    seq_written = res["flip"][4]
    assert res["flip"][:4] == [seq_written - 1, True, 1, 1]
    assert res["torn"][:3] == [res["torn"][3] - 1, True, 1]
    assert res["none"] == [None, 0, 3, 0]


def test_app_restores_before_the_first_cycle_across_cuts(mpy):
    """The real meter (SimBoard, App, metering engine on a virtual clock): counters
    written by the store, a power cut at a random write, a new App on what the flash
    kept: its registers equal the last record before any window is counted, and then
    count on from there."""
    res = mpy(r"""
import json, random
from boards.sim import scenario
from boards.sim.board import SimBoard
from boards.sim.blockdev import SimFlash
from boards.sim.clock import VirtualClock
from firmware.app import App
from tools.mpy.cycle_harness import Harness
random.seed(3)
SCN = scenario.parse({"frequency_hz": 50.0, "phases": {
    "L1": {"v_rms": 230.0, "i_rms": 12.0, "phi_deg": 10.0},
    "L2": {"v_rms": 231.0, "i_rms": 3.0, "phi_deg": 200.0},
    "L3": {"v_rms": 229.0, "i_rms": 7.0, "phi_deg": 350.0}}})

class Run(Harness):
    def __init__(self, flash):
        self.clock = VirtualClock()
        self.board = SimBoard(SCN, clock=self.clock)
        self.board.flash = flash
        self.app = App(self.board)
        self.meter = self.app.meter
        self.chip = self.app.chip
        self.sim = self.board.chip

def picos(m):
    return [m.energy.pico(i) for i in range(32)]

flash = SimFlash(64)
st = {"boots": 0, "fail": [], "equal_before_first_cycle": 0, "grew": 0, "inflight": 0}
done = None
prev = None
for boot in range(40):
    h = Run(flash)
    st["boots"] += 1
    got = picos(h.meter)
    if done is not None:
        if got == done or got == inflight:
            st["equal_before_first_cycle"] += 1
            st["inflight"] += got == inflight and got != done
        else:
            st["fail"].append(boot)
        if any(a < b for a, b in zip(got, prev)):
            st["fail"].append(("backwards", boot))
    prev = got
    h.meter.start()
    store = h.app.store
    store.arm()
    flash.cut_power_after(random.randint(6, 40))
    inflight = None
    while not flash.dead:
        h.run_windows(random.randint(2, 10))
        snap = picos(h.meter)
        w0 = store.writes
        store.persist()
        if store.writes > w0:
            done = snap
        elif flash.dead:
            inflight = snap
    st["grew"] += max(a - b for a, b in zip(done, got)) > 0
    if store._fh is not None:
        try:
            store._fh.close()
        except OSError:
            pass
        store._fh = None
    flash = flash.reboot()
print("@@JSON", json.dumps(st))
""", timeout=300)
    print("app across cuts:", res)
    assert res["fail"] == []
    assert res["equal_before_first_cycle"] == res["boots"] - 1 == 39
    assert res["grew"] == 40


def test_app_stop_writes_a_last_record_that_a_restart_restores(tmp_path, mpy):
    """The sim board's flash lives in RUN_DIR/flash.img: a clean stop (KeyboardInterrupt
    in the host run: App.stop()) writes a record and the next run starts from it."""
    code = r"""
import asyncio, json
from boards.sim import scenario
from boards.sim.board import SimBoard
from firmware.app import App
SCN = scenario.parse({"frequency_hz": 50.0, "phases": {
    "L1": {"v_rms": 230.0, "i_rms": 40.0, "phi_deg": 0.0}}})
b = SimBoard(SCN, run_dir=%r)
app = App(b, {"storage": {"persist_s": 10}})
restored = [app.meter.energy.pico(i) for i in range(32)]
async def main():
    await app.start(modbus=False, watchdog=False)
    await asyncio.sleep_ms(1500)
asyncio.run(main())
app.stop()
print("@@JSON", json.dumps({"restored": restored, "ev": app.events.count(20),
    "stopped": [app.meter.energy.pico(i) for i in range(32)],
    "persist_s": app.store.persist_s, "tasks": app.supervisor.names()}))
""" % str(tmp_path)
    first = mpy(code)
    assert (tmp_path / "flash.img").stat().st_size == 64 * 4096
    second = mpy(code)
    assert first["ev"] == 0 and max(first["restored"]) == 0
    assert "persist" in first["tasks"] and "powerfail" in first["tasks"]
    assert first["persist_s"] == 10
    assert max(first["stopped"]) > 0          # 40 A at 230 V for most of a second
    assert second["ev"] == 1 and second["restored"] == first["stopped"]
    assert all(b >= a for a, b in zip(second["restored"], second["stopped"]))


def test_sigkill_keeps_every_record_already_written(tmp_path):
    """The file behind the sim board's flash is written through at every block write:
    a process killed with SIGKILL mid-stream keeps every record whose write returned
    (and maybe the one in flight), nothing less."""
    img = str(tmp_path / "flash.img")
    writer = LIB + r"""
import sys
f = SimFlash(64, path=%r)
s, e, ev = device(f, True)
s.restore()
s.arm()
while True:
    meter_cycles(e, 1)
    s.persist()
    print("W", s.seq, e.pico(0), e.pico(31))
""" % img
    p = subprocess.Popen([MICROPYTHON, "-c", writer], stdout=subprocess.PIPE, text=True,
                         env=mpy_env(), cwd=str(ROOT))
    lines = []
    deadline = time.monotonic() + 30
    want = random.Random(9).randint(40, 120)
    while len(lines) < want and time.monotonic() < deadline:
        line = p.stdout.readline()
        if line.startswith("W "):
            lines.append([int(x) for x in line.split()[1:]])
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert len(lines) == want
    reader = LIB + r"""
f = SimFlash(64, path=%r)
s, e, ev = device(f)
print("@@JSON", json.dumps([s.restore(), e.pico(0), e.pico(31)]))
""" % img
    from conftest import run_mpy
    seq, p0, p31 = run_mpy(reader)
    last = lines[-1]
    # The kill came after the last printed write: that record or a later one is there.
    assert seq >= last[0]
    assert seq > last[0] or (p0, p31) == (last[1], last[2])


def test_l1_collapse_writes_at_once_without_erase(mpy):
    """The real meter on the sim board: L1 cut in the scenario (L2, L3 still on), the
    App's supply watcher sees two cycles below half the nominal voltage and the store
    writes a record at once, with no erase; a reboot on what the flash then holds
    restores exactly the counters of that moment."""
    res = mpy(r"""
import json
from boards.sim import scenario
from boards.sim.board import SimBoard
from boards.sim.blockdev import SimFlash
from boards.sim.clock import VirtualClock
from firmware.app import App
from firmware.events import EV_SUPPLY_FAIL
from tools.mpy.cycle_harness import Harness
ON = {"frequency_hz": 50.0, "phases": {
    "L1": {"v_rms": 230.0, "i_rms": 10.0, "phi_deg": 0.0},
    "L2": {"v_rms": 230.0, "i_rms": 5.0, "phi_deg": 0.0},
    "L3": {"v_rms": 230.0, "i_rms": 5.0, "phi_deg": 0.0}}}
OFF = {"frequency_hz": 50.0, "phases": {
    "L1": {"v_rms": 0.0, "i_rms": 0.0, "phi_deg": 0.0},
    "L2": {"v_rms": 230.0, "i_rms": 5.0, "phi_deg": 0.0},
    "L3": {"v_rms": 230.0, "i_rms": 5.0, "phi_deg": 0.0}}}

class Run(Harness):
    def __init__(self, flash):
        self.clock = VirtualClock()
        self.board = SimBoard(scenario.parse(ON), clock=self.clock)
        self.board.flash = flash
        self.app = App(self.board)
        self.meter = self.app.meter
        self.chip = self.app.chip
        self.sim = self.board.chip

flash = SimFlash(64)
h = Run(flash)
h.meter.start()
store = h.app.store
pf = h.app.powerfail
store.arm()
# Erases up to the end of each counter write: the event log's flush that follows a
# supply-failure record (best effort, firmware/eventstore.py) may erase.
marks = []
_write = store.write
def write():
    _write()
    marks.append(flash.erases)
store.write = write
trace = []
for k in range(10):
    h.run_windows(1)
    trace.append(pf.check())
writes_on = store.writes
h.board.set_scenario(scenario.parse(OFF))
e0 = flash.erases
saved = None
for k in range(8):
    h.step_to_next_window()
    h.advance_ms(300)
    w = store.writes
    trace.append(pf.check())
    if store.writes > w:
        saved = [h.meter.energy.pico(i) for i in range(32)]
        erases = marks[-1] - e0
h2 = Run(flash.reboot())
print("@@JSON", json.dumps({"trace": trace, "writes_on": writes_on, "writes": store.writes,
    "erases": erases, "ev": h.app.events.count(EV_SUPPLY_FAIL),
    "restored": [h2.meter.energy.pico(i) for i in range(32)] == saved,
    "l1": h.meter.front.inst[0], "nonzero": max(saved) > 0}))
""")
    print("L1 collapse:", res)
    assert res["trace"][:10] == [False] * 10 and res["writes_on"] == 0
    assert res["trace"][-1] is True and res["trace"][10:].count(True) >= 6
    assert res["writes"] == 1 and res["erases"] == 0 and res["ev"] == 1
    assert res["restored"] and res["nonzero"] and res["l1"] < 115000


def test_a_refused_write_is_an_event_not_a_crash(mpy):
    res = mpy(LIB + r"""
f = SimFlash(32, 1024)
s, e, ev = device(f, True)
s.restore()
s.arm()
meter_cycles(e, 2)
f.cut_power_after(1)
ok = s.persist()
again = s.persist()
pf = s.supply_failed()
print("@@JSON", json.dumps([ok, again, pf, ev.count(23), ev.count(22)]))
""")
    assert res == [False, False, False, 3, 1]


def test_store_logic_on_both_runtimes(mpy_any):
    """The store's own logic (arming, journal rotation, restore, fallback past a bad
    record, sequence numbers) on a plain in-memory filesystem stand-in, so it also runs
    on the 32-bit port, which has no littlefs."""
    res = mpy_any(r"""
import json
from firmware.energy import EnergyRegisters
from firmware.events import EventLog
from firmware.persist import CounterStore

class File:
    def __init__(self, fs, path, data):
        self.fs, self.path, self.buf = fs, path, data
    def write(self, b):
        self.buf += b
        return len(b)
    def read(self):
        return bytes(self.buf)
    def close(self):
        if self.fs is not None:
            self.fs.files[self.path] = bytes(self.buf)   # visible once closed
            self.fs = None
    def __enter__(self):
        return self
    def __exit__(self, *a):
        self.close()

class FS:
    def __init__(self):
        self.files = {}
        self.dirs = set()
    def mkdir(self, p):
        if p in self.dirs:
            raise OSError(17)
        self.dirs.add(p)
    def rmdir(self, p):
        if p not in self.dirs or any(k.startswith(p + "/") for k in self.files):
            raise OSError(2)
        self.dirs.remove(p)
    def remove(self, p):
        if p not in self.files:
            raise OSError(2)
        del self.files[p]
    def statvfs(self, p):
        return (4096,) * 10
    def open(self, p, mode):
        if "r" in mode:
            if p not in self.files:
                raise OSError(2)
            return File(None, p, bytearray(self.files[p]))
        self.files[p] = b""
        return File(self, p, bytearray())

class Clock:
    def ticks_ms(self):
        return 0

fs = FS()
e = EnergyRegisters(32)
ev = EventLog(8)
s = CounterStore(fs, e, ev, Clock())
out = {"blank": s.restore()}
s.arm()
hist = []
for k in range(7):
    for i in range(32):
        e.add(i, (k + 1) * 1234567890123 + i * 999999999)
    s.persist()
    hist.append([e.pico(i) for i in range(32)])
out["files"] = sorted((p, len(d)) for p, d in fs.files.items())
e2, ev2 = EnergyRegisters(32), EventLog(8)
s2 = CounterStore(fs, e2, ev2, Clock())
out["seq"] = s2.restore()
out["same"] = [e2.pico(i) for i in range(32)] == hist[-1]
# corrupt the newest record: the one before it comes back, with an event
newest = "/cnt/j%d/r" % ((s.gen - 1) % 3)
d = bytearray(fs.files[newest])
d[-50] ^= 0xFF
fs.files[newest] = bytes(d)
e3, ev3 = EnergyRegisters(32), EventLog(8)
s3 = CounterStore(fs, e3, ev3, Clock())
out["fallback"] = [s3.restore(), [e3.pico(i) for i in range(32)] == hist[-2],
                   ev3.count(21), ev3.count(20), s3.seq]
print("@@JSON", json.dumps(out))
""")
    assert res["blank"] is None
    # three journals, each the padded arm copy plus one record (the armed one still empty)
    assert [n for _, n in res["files"]].count(513 + 396) == 2
    assert res["seq"] == 7 and res["same"]
    assert res["fallback"] == [6, True, 1, 1, 7]
