"""The event log on flash (firmware/eventstore.py) and over Modbus (firmware/regmaps/
eventlog.py): ring wrap, restarts, power cuts at every block write of a flush, a
corrupt record, and the register layout read with pymodbus from the host run.

Truth: the events the test itself added (code, arg, order), the sim flash's power cuts
(boards/sim/blockdev.py), and the Modbus spec through pymodbus (exception codes 02/03).
"""
import json
import signal
import time

import pytest

from conftest import ROOT, free_port

LIB = r"""
import json, os
from boards.sim.blockdev import SimFlash
from firmware.events import EventLog
from firmware.eventstore import EventStore, RING

class Clock:
    t = 0
    def ticks_ms(self):
        return self.t

def boot(flash, fresh=False):
    if fresh:
        os.VfsLfs2.mkfs(flash)
    vfs = os.VfsLfs2(flash)
    ev = EventLog(32)
    clk = Clock()
    st = EventStore(vfs, ev, clk, lambda: 1800000000)
    st.load()
    return st, ev, clk

def add(ev, clk, k):
    clk.t += 1000
    ev.add(clk.t, 1 + k % 20, k & 255)

def readback(st):
    out = bytearray(16)
    got = {}
    for s in range(1, st.newest() + 1):
        if st.record(s, out, 0):
            w = [int.from_bytes(out[i:i + 2], "big") for i in range(0, 16, 2)]
            got[s] = (w[0] << 16 | w[1], w[6], w[7], w[4] << 16 | w[5])
    return got
"""


def test_ring_wraps_and_a_restart_keeps_the_newest(mpy):
    r = mpy(LIB + r"""
flash = SimFlash(64)
st, ev, clk = boot(flash, True)
for k in range(300):
    add(ev, clk, k)
    if ev.total - st.flushed >= 8:
        st.flush()
st.flush()
before = (st.newest(), min(RING, st.stored + ev.total - st.flushed))
d2 = flash.reboot()
st2, ev2, clk2 = boot(d2)                    # a restart: the RAM ring is empty
got = readback(st2)
for k in range(3):
    add(ev2, clk2, 1000 + k)
st2.flush()
st3, ev3, _ = boot(d2.reboot())
print("@@JSON", json.dumps({"before": before, "after": [st2.base, st2.stored, ev2.count(29)],
      "seqs": sorted(got), "vals": [got[s][:3] for s in sorted(got)],
      "utc": got[300][3], "again": [st3.newest(), min(RING, st3.stored + ev3.total - st3.flushed),
      sorted(readback(st3))[-4:]],
      "ring": RING}))
""")
    ring = r["ring"]
    assert ring == 256 and r["before"] == [300, 256]
    assert r["after"] == [301, 256, 0]              # numbering continues after 300
    # The newest 256 (45..300) survive; 1..44 were overwritten by the wrap.
    assert r["seqs"] == list(range(45, 301))
    assert r["vals"] == [[k + 1, 1 + k % 20, k & 255] for k in range(44, 300)]
    assert r["utc"] == 1800000000                   # flushed at once: age 0 s
    assert r["again"] == [303, 256, [300, 301, 302, 303]]


def test_cut_at_every_block_write_of_a_flush(mpy):
    r = mpy(LIB + r"""
flash = SimFlash(64)
st, ev, clk = boot(flash, True)
for k in range(20):
    add(ev, clk, k)
st.flush()
base = flash.reboot()
res = []
for cut in range(200):          # every block write of the flush, then one that completes
    d = base.reboot()
    st, ev, clk = boot(d)
    for k in range(8):
        add(ev, clk, 100 + k)
    d.cut_power_after(cut)
    ok = st.flush()
    st2, ev2, _ = boot(d.reboot())
    got = readback(st2)
    res.append([cut, ok, st2.newest(), ev2.count(29), ev2.count(29), sorted(got) == list(range(1, st2.newest() + 1)),
                [list(got[s][1:3]) for s in range(1, 21)] == [[1 + k % 20, k] for k in range(20)]])
    if ok:
        break
print("@@JSON", json.dumps({"writes": cut, "res": res}))
""")
    print("block writes of a flush of 8 events:", r["writes"])
    assert r["writes"] >= 2 and all(not x[1] for x in r["res"][:-1]) and r["res"][-1][1] == 8
    for cut, ok, newest, corrupt, ev_corrupt, contiguous, old_ok in r["res"]:
        # Every record flushed before is intact; the batch is all there or not at all
        # (littlefs commits the file at close); nothing torn is ever read as good.
        assert old_ok and contiguous and corrupt == 0 and ev_corrupt == 0, (cut, r)
        assert newest in (20, 28), (cut, r)
    assert r["res"][-1][2] == 28 and r["res"][0][2] == 20, r


def test_a_torn_record_at_the_end_is_skipped_with_an_event(mpy):
    r = mpy(LIB + r"""
flash = SimFlash(64)
st, ev, clk = boot(flash, True)
for k in range(12):
    add(ev, clk, k)
st.flush()
# The newest record (seq 12, slot 11) torn: its second half never programmed.
with st.ring.vfs.open("/ev/log", "r+b") as f:
    f.seek(11 * 16 + 8)
    f.write(b"\x00\x00\x00\x00\x55\x55\x55\x55")
d2 = flash.reboot()
st2, ev2, clk2 = boot(d2)
got = readback(st2)
add(ev2, clk2, 77)
st2.flush()
st3, ev3, _ = boot(d2.reboot())
print("@@JSON", json.dumps({"newest": st2.newest(), "corrupt": ev2.count(29),
      "events": [[c, a] for _, c, a in ev2.recent_args()], "seqs": sorted(got),
      "after": [st3.newest(), ev3.count(29), list(readback(st3)[13][1:3])]}))
""")
    # 1..11 kept; log_corrupt (29, one record) is the next event, numbered after the
    # last good one (seq 12's slot is rewritten), and the next boot finds no damage.
    assert r["corrupt"] == 1 and r["seqs"] == list(range(1, 13))
    assert r["events"] == [[29, 1], [1 + 77 % 20, 77]] and r["newest"] == 13
    assert r["after"] == [13, 0, [1 + 77 % 20, 77]]


def test_events_dropped_before_a_flush_are_counted(mpy):
    r = mpy(LIB + r"""
flash = SimFlash(64)
st, ev, clk = boot(flash, True)
for k in range(40):          # the RAM ring holds 32
    add(ev, clk, k)
n = st.flush()
got = readback(st)
print("@@JSON", json.dumps({"n": n, "seqs": sorted(got), "lost": ev.count(31),
      "last": [[c, a] for _, c, a in ev.recent_args()][-1]}))
""")
    assert r["n"] == 32 and r["lost"] == 1 and r["last"] == [31, 8]
    # 1..8 never reached flash; the log_lost event itself is pending (seq 41).
    assert r["seqs"] == list(range(9, 42))


SPACE = LIB + r"""
from firmware.regmaps.eventlog import EventLogSpace
from tests.spaces import ArraySpace
flash = SimFlash(64)
st, ev, clk = boot(flash, True)
for k in range(@N@):
    add(ev, clk, k)
    if k % 8 == 7:
        st.flush()
sp = EventLogSpace(st)
def regs(a, n):
    out = bytearray(2 * n)
    e = sp.read(a, n, out, 0)
    return e or [int.from_bytes(out[i:i + 2], "big") for i in range(0, 2 * n, 2)]
def wr(a, vals):
    src = b"".join(v.to_bytes(2, "big") for v in vals)
    return sp.write(a, len(vals), src, 0)
res = {"head": regs(0xC400, 16), "win": regs(0xC410, 64)}
res["sel"] = wr(0xC406, [0, 3])
res["win3"] = regs(0xC410, 16)
res["head3"] = regs(0xC406, 2)
res["errs"] = [regs(0xC3FF, 2), regs(0xC44F, 2), regs(0xC450, 1), wr(0xC400, [1]),
               wr(0xC406, [0, 999]), wr(0xC410, [1])]
res["big"] = wr(0xC406, [1, 0])
# Routed beside another map, as firmware/ports.py does: its addresses go there.
from firmware.regmaps.device import Routed
other = ArraySpace(0xC3F0, 0x10, init=lambda a: a - 0xC3F0)
rt = Routed(((0xC3F0, 0xC3FF, other), (0xC400, 0xC7FF, sp)))
o = bytearray(8)
res["route"] = [rt.read(0xC3FE, 2, o, 0), list(o[:4]), rt.read(0xC3FF, 2, o, 0),
                rt.read(0xC400, 1, o, 0), list(o[:2]), rt.write(0xC3F0, 1, b"\x00\x07", 0),
                other.read(0xC3F0, 1, o, 0), list(o[:2]), rt.read(0xC800, 1, o, 0)]
import gc
wr(0xC406, [0, 0])
regs(0xC400, 80)
out = bytearray(160)
def steady():
    gc.collect(); gc.disable()
    a0 = gc.mem_alloc()
    for _ in range(20):
        sp.read(0xC400, 80, out, 0)
    a = gc.mem_alloc() - a0
    gc.enable()
    return a
res["alloc"] = steady()
print("@@JSON", json.dumps(res))
"""


def test_registers_header_window_select(mpy):
    # littlefs: the unix port (the WebAssembly port has no VfsLfs2)
    r = mpy(SPACE.replace("@N@", "21"))
    h = r["head"]
    assert h[0] == 21 and (h[1] << 16 | h[2]) == 21 and h[3] == 256
    assert (h[4] << 16 | h[5]) == 1 and (h[6] << 16 | h[7]) == 0 and h[8:10] == [8, 8]
    assert h[10:] == [0] * 6
    # Default window: the newest 8 (14..21), ascending; seq, uptime s, UTC, code, arg.
    w = r["win"]
    for i in range(8):
        k = 13 + i
        rec = w[8 * i:8 * i + 8]
        assert (rec[0] << 16 | rec[1]) == k + 1
        assert (rec[2] << 16 | rec[3]) == k + 1          # clk.t = 1000 (k + 1) ms
        # UTC = the clock's UTC minus the event's age when it was flushed (seq 9..16 at
        # the flush after seq 16, i.e. at 16 s), or, still in RAM, when it is read (21 s).
        s = k + 1
        at = 8000 * ((s + 7) // 8) if s <= 16 else 21000
        assert (rec[4] << 16 | rec[5]) == 1800000000 - (at - 1000 * s) // 1000
        assert rec[6:8] == [1 + k % 20, k]
    assert r["sel"] == 0 and r["head3"] == [0, 3]
    assert [r["win3"][0] << 16 | r["win3"][1], r["win3"][8] << 16 | r["win3"][9]] == [3, 4]
    # Outside the log, straddling, read-only registers, a select beyond the newest.
    assert r["errs"] == [2, 2, 2, 2, 3, 2] and r["big"] == 3
    # Beside another map: below 0xC400 and above 0xC7FF its answers (0xC800 is outside
    # it: 02), a request straddling 0xC400 gets 02.
    assert r["route"] == [0, [0, 14, 0, 15], 2, 0, [0, 21], 0, 0, [0, 7], 2]
    assert r["alloc"] == 0


def test_unflushed_events_are_served_from_ram(mpy):
    r = mpy(SPACE.replace("@N@", "5"))          # never flushed (fewer than 8)
    assert r["head"][0] == 5 and r["win"][8 * 4:8 * 4 + 2] == [0, 5]
    assert r["win"][8 * 5:8 * 8] == [0] * 24               # no seq 6..8 yet


# ---- over Modbus TCP against the host run, across a restart ----
def _start(run_dir, scn, port):
    import subprocess
    import sys
    p = subprocess.Popen([sys.executable, str(ROOT / "tools" / "host_run.py"), "--scenario",
                          str(scn), "--tcp-port", str(port), "--run-dir", str(run_dir)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         cwd=str(ROOT))
    for line in p.stdout:
        if line.startswith("READY"):
            return p
    raise AssertionError("no READY")


def _log(port):
    from pymodbus.client import ModbusTcpClient
    c = ModbusTcpClient("127.0.0.1", port=port)
    assert c.connect()
    try:
        h = c.read_holding_registers(0xC400, count=16, device_id=1).registers
        newest = h[1] << 16 | h[2]
        recs = {}
        first = max(1, newest - (h[0] - 1))
        for s in range(first, newest + 1, 8):
            assert not c.write_registers(0xC406, [s >> 16, s & 0xFFFF], device_id=1).isError()
            w = c.read_holding_registers(0xC410, count=64, device_id=1).registers
            for i in range(8):
                rec = w[8 * i:8 * i + 8]
                seq = rec[0] << 16 | rec[1]
                if seq:
                    recs[seq] = (rec[6], rec[7], rec[4] << 16 | rec[5])
        bad = c.read_holding_registers(0xC450, count=1, device_id=1)
        ro = c.write_register(0xC400, 5, device_id=1)
        return h, recs, bad.exception_code, ro.exception_code
    finally:
        c.close()


def test_log_over_modbus_survives_a_restart(tmp_path):
    scn = tmp_path / "s.json"
    scn.write_text(json.dumps({"frequency_hz": 50.0, "phases": {
        "L1": {"v_rms": 230.0, "i_rms": 10.0}, "L2": {"v_rms": 230.0, "i_rms": 5.0},
        "L3": {"v_rms": 230.0, "i_rms": 5.0}}}))
    run_dir = tmp_path / "run"
    port = free_port()
    t0 = time.time()
    p = _start(run_dir, scn, port)
    try:
        h1, recs1, bad, ro = _log(port)
    finally:
        p.send_signal(signal.SIGINT)
        p.communicate(timeout=30)
    assert bad == 2 and ro == 2
    assert h1[3] == 256 and h1[8:10] == [8, 8]
    codes1 = [recs1[s][0] for s in sorted(recs1)]
    assert codes1[:2] == [28, 1]                         # boot (reset cause 1), chip init
    assert recs1[min(recs1)][1] == 1
    assert all(t0 - 5 <= recs1[s][2] <= time.time() + 5 for s in recs1)
    port = free_port()
    p = _start(run_dir, scn, port)
    try:
        h2, recs2, _, _ = _log(port)
    finally:
        p.send_signal(signal.SIGINT)
        p.communicate(timeout=30)
    # The first run's events are still there, same seq, same content; the second boot
    # is numbered after them and finds the counters restored (20).
    for s, v in recs1.items():
        assert recs2[s] == v
    new = [recs2[s][0] for s in sorted(recs2) if s > max(recs1)]
    assert new[0] == 28 and 20 in new


def test_chip_faults_reach_the_log_over_modbus_and_the_status_led(mpy):
    """Driver faults on the simulated chip, through the engine, into the event log on
    flash and out through the holding map the Modbus ports serve (firmware/ports.py
    routes 0xC400..0xC7FF to the log); the status LED shows the fault; a new App on
    what the flash kept still serves them."""
    r = mpy(r"""
import json
from boards.sim import scenario
from boards.sim.board import SimBoard
from boards.sim.blockdev import SimFlash
from boards.sim.clock import VirtualClock
from firmware.app import App
from firmware.ports import ModbusPorts
from firmware.leds import BOOT_DONE
from tools.mpy.cycle_harness import Harness
SCN = scenario.parse({"frequency_hz": 50.0, "phases": {
    "L1": {"v_rms": 230.0, "i_rms": 5.0}, "L2": {"v_rms": 230.0, "i_rms": 5.0},
    "L3": {"v_rms": 230.0, "i_rms": 5.0}}})
class Run(Harness):
    def __init__(self, flash):
        self.clock = VirtualClock()
        self.board = SimBoard(SCN, clock=self.clock)
        self.board.flash = flash
        self.app = App(self.board)
        self.meter = self.app.meter
        self.chip = self.app.chip
        self.sim = self.board.chip
        self.meter.start()
def log(h):
    holding = ModbusPorts(h.meter, h.app.cfg, h.board).holding
    out = bytearray(160)
    assert holding.read(0xC400, 16, out, 0) == 0
    newest = out[2] << 24 | out[3] << 16 | out[4] << 8 | out[5]
    n = out[0] << 8 | out[1]
    recs = []
    for s in range(newest - n + 1, newest + 1, 8):
        sel = bytes((s >> 24, s >> 16 & 255, s >> 8 & 255, s & 255))
        assert holding.write(0xC406, 2, sel, 0) == 0
        assert holding.read(0xC410, 64, out, 0) == 0
        for i in range(8):
            o = 16 * i
            seq = out[o] << 24 | out[o + 1] << 16 | out[o + 2] << 8 | out[o + 3]
            if seq:
                recs.append((seq, out[o + 13], out[o + 15]))
    return recs
flash = SimFlash(64)
h = Run(flash)
ind = h.app.indicators
ind.bind(meter=h.meter, events=h.app.events)
h.run_windows(3)
ind.boot(BOOT_DONE, h.clock.ticks_ms())
h.sim.inject_checksum_upset()
h.advance_ms(600)
h.sim.inject_reset()
h.advance_ms(600)
ind.tick(h.clock.ticks_ms())
led = ind.states()["status"]
live = log(h)                  # pending events come from RAM
h.app.evlog.flush()
h2 = Run(flash.reboot())
print("@@JSON", json.dumps({"led": led, "live": live, "kept": log(h2)}))
""", timeout=300)
    codes = [c for _, c, _ in r["live"]]
    assert r["led"] == "fault"
    assert codes[0] == 28 and r["live"][0][2] == 1          # boot, reset cause 1
    # checksum_changed, then init; chip_reset, then init (firmware/events.py codes).
    i = codes.index(3)
    assert codes[i + 1] == 1 and codes.index(2, i) < len(codes) - 1
    assert codes[codes.index(2, i) + 1] == 1
    # After a restart the same records, same seq, then the new boot.
    kept = [tuple(x) for x in r["kept"]]
    assert kept[:len(r["live"])] == [tuple(x) for x in r["live"]]
    assert [c for _, c, _ in kept[len(r["live"]):]][0] == 28


def test_flush_task_batches_and_backs_off(mpy):
    """The evlog task on a fake clock (its sleeps counted, not slept): a few events wait
    for the 10 s period, 8 pending go at the next second, a refused flush (dead flash)
    is retried a minute later rather than every second."""
    r = mpy(LIB + r"""
import asyncio
from firmware import eventstore
class FakeTime:
    s = 0
    async def sleep_ms(self, ms):
        self.s += ms // 1000
        await asyncio.sleep(0)
ft = eventstore.asyncio = FakeTime()
flash = SimFlash(64)
st, ev, clk = boot(flash, True)
changes = []
async def main():
    task = asyncio.create_task(st.run())
    for k in range(3):
        add(ev, clk, k)
    step = {12: 8, 40: 8}
    last = (0, 0)
    while ft.s < 170:
        n = step.pop(ft.s, 0)
        if n and ft.s == 40:
            flash.cut_power_after(0)
        for k in range(n):
            add(ev, clk, 100 + k)
        now = (st.flushed, ev.count(30))
        if now != last:
            changes.append([ft.s, now[0], now[1]])
            last = now
        await asyncio.sleep(0)
    task.cancel()
asyncio.run(main())
print("@@JSON", json.dumps(changes))
""")
    # (Seen up to one second late: the task may sleep again before this loop looks.)
    # 3 events flushed at 10 s; 8 more at 12 s flushed at 13 s; at 40 s the flash dies:
    # the flush at 41 s is refused (log_failed), the next tries come a minute apart.
    assert [x[1:] for x in r] == [[3, 0], [11, 0], [11, 1], [11, 2], [11, 3]], r
    t = [x[0] for x in r]
    assert 10 <= t[0] <= 11 and 13 <= t[1] <= 14 and 41 <= t[2] <= 42, r
    assert t[3] - t[2] == 60 and t[4] - t[3] == 60, r
