"""Supervision: a crashed task is logged and restarted, the meter reads stale meanwhile,
and the watchdog is fed only while snapshots advance (issue: a sturdy core loop).

These run the real firmware (firmware/app.py on the sim board, real asyncio, real
clock) on the unix port and inject faults the way a bug would: an exception out of the
metering cycle.
"""
import pytest

BOOT = r"""
import asyncio, json, time
from boards.sim import scenario as scenario_mod
from boards.sim.board import SimBoard
from firmware.app import App
from firmware.events import EV_TASK_CRASH, EV_WATCHDOG, event_name
from firmware.snapshot import ST_STALE
SCN = scenario_mod.parse({"frequency_hz": 50.0, "phases": {
    "L1": {"v_rms": 230.0, "i_rms": 10.0, "phi_deg": 30.0},
    "L2": {"v_rms": 230.0, "i_rms": 5.0, "phi_deg": 200.0},
    "L3": {"v_rms": 230.0, "i_rms": 2.0, "phi_deg": 330.0}}})
"""


def test_crashed_metering_task_is_restarted_logged_and_stale_meanwhile(mpy):
    res = mpy(BOOT + r"""
async def main():
    board = SimBoard(SCN)
    app = App(board)
    await app.start(tcp_port=0, modbus=True)
    meter = app.meter
    def evt():
        # SunSpec model 203 Evt (40175, bitfield32) through the maps the ports serve.
        out = bytearray(4)
        app.ports.holding.read(40175, 2, out, 0)
        return (out[2] << 8) | out[3]
    await asyncio.sleep_ms(700)
    seq_ok = meter.front.seq
    fresh_before = not (meter.status_now() & ST_STALE)
    evt_before = evt()
    real_poll = meter.poll
    def broken():
        raise RuntimeError("injected fault in the metering cycle")
    meter.poll = broken          # the next cycle raises, and every restart too
    await asyncio.sleep_ms(1200)
    seq_frozen = meter.front.seq
    stale_during = bool(meter.status_now() & ST_STALE)
    evt_during = evt()
    crashes = app.supervisor.crashes("metering")
    del meter.poll               # fault gone: the next restart serves again
    await asyncio.sleep_ms(2500)
    out = {"seq_ok": seq_ok, "fresh_before": fresh_before, "seq_frozen": seq_frozen,
           "stale_during": stale_during, "crashes_during": crashes,
           "crashes_after": app.supervisor.crashes("metering"),
           "seq_after": meter.front.seq,
           "fresh_after": not (meter.status_now() & ST_STALE),
           "evt_before": evt_before, "evt_during": evt_during, "evt_after": evt(),
           "events": [(event_name(c), a) for t, c, a in app.events.recent_args()],
           "task_index": app.supervisor.names().index("metering"),
           "wdt_feeds": board.wdt.feeds, "wdt_expired": board.wdt.expired()}
    app.stop()
    return out
print("@@JSON", json.dumps(asyncio.run(main())))
""", timeout=60)
    assert res["seq_ok"] > 0 and res["fresh_before"]
    # Frozen while broken, and said so at read time: the SunSpec event register shows
    # M_EVENT_Missing_Sensor (bit 7) while the engine is down, and clears after.
    assert res["stale_during"]
    assert res["evt_before"] == 0 and res["evt_during"] == 1 << 7 and res["evt_after"] == 0
    assert res["crashes_during"] >= 3            # 100, 200, 400 ms back-off in 1.2 s
    crash_events = [e for e in res["events"] if e[0] == "task_crash"]
    assert len(crash_events) == res["crashes_after"]
    assert all(a == res["task_index"] for _, a in crash_events)
    # Restarted once the fault was gone: publishing and fresh again.
    assert res["seq_after"] > res["seq_frozen"] + 3
    assert res["fresh_after"]
    # 1.2 s of stall is below the watchdog's stall limit: it was fed throughout.
    assert res["wdt_feeds"] > 0 and not res["wdt_expired"]


def test_watchdog_fed_only_while_snapshots_advance(mpy):
    res = mpy(BOOT + r"""
from boards.sim.board import SimWatchdog
from boards.sim.clock import RealClock
from firmware.events import EventLog
from firmware.supervisor import WatchdogFeeder

class Front:
    seq = 0
class Meter:
    front = Front()

async def publisher(m, stop_after_ms):
    t0 = time.ticks_ms()
    while time.ticks_diff(time.ticks_ms(), t0) < stop_after_ms:
        m.front.seq += 1
        await asyncio.sleep_ms(20)

async def main():
    clock = RealClock()
    ev = EventLog(8)
    wdt = SimWatchdog(clock, 300)
    m = Meter()
    f = WatchdogFeeder(m, wdt, clock, ev, stall_ms=150, period_ms=25)
    t = asyncio.create_task(f.run())
    await publisher(m, 400)              # alive for 400 ms, then the loop "hangs"
    fed_alive = wdt.feeds
    alive_ok = not wdt.expired()
    await asyncio.sleep_ms(700)          # stall 150 ms + WDT 300 ms < 700 ms
    fed_after = wdt.feeds
    out = {"fed_alive": fed_alive, "alive_ok": alive_ok, "fed_after": fed_after,
           "expired": wdt.expired(), "stalled": f.stalled,
           "wd_events": ev.count(EV_WATCHDOG)}
    t.cancel()
    return out
print("@@JSON", json.dumps(asyncio.run(main())))
""", timeout=30)
    assert res["fed_alive"] >= 10 and res["alive_ok"]
    # At most the feeds of the stall window (150 ms / 25 ms) after publishing stopped.
    assert res["fed_after"] - res["fed_alive"] <= 8
    assert res["expired"] and res["stalled"]
    assert res["wd_events"] == 1


def test_supervisor_rejects_duplicate_and_restarts_a_returning_task(mpy):
    res = mpy(r"""
import asyncio, json
from boards.sim.clock import RealClock
from firmware.events import EventLog, EV_TASK_CRASH
from firmware.supervisor import Supervisor
runs = [0]
async def short():
    runs[0] += 1          # returns at once: a long-running task must not end
async def main():
    ev = EventLog(16)
    sup = Supervisor(RealClock(), ev)
    sup.spawn("short", short)
    try:
        sup.spawn("short", short)
        dup = False
    except ValueError:
        dup = True
    await asyncio.sleep_ms(450)
    sup.cancel_all()
    return {"dup": dup, "runs": runs[0], "logged": ev.count(EV_TASK_CRASH)}
print("@@JSON", json.dumps(asyncio.run(main())))
""")
    assert res["dup"]
    # Restarts after 100, 200 ms back-off (then 400 ms: beyond the 450 ms window).
    assert res["runs"] == 3
    assert res["logged"] == 3
