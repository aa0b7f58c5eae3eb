"""The three LEDs (firmware/leds.py) against the KSEM tables (manual 3.4, digest
section 2) with the documented rates: slow 1 Hz (500/500 ms), blinking 2 Hz (250/250),
fast 4 Hz (125/125), the confirmation dark 250, orange 250, dark 250, orange 250, dark
250. Each row is traced on a fake clock every 5 ms and compared, as run lengths of
colour, with the waveform the table and the rates describe. Both runtimes.
"""
import json


OFF, GREEN, RED, ORANGE = 0, 1, 2, 3
STATUS, NETWORK, BUS = 0, 1, 2

# A case: inputs to set, calls to make, which LED, and the window to trace.
TRACE = r"""
import json
from firmware.leds import Indicators, STATUS_NAMES, NETWORK_NAMES, BUS_NAMES
STEP = 5
def trace(case):
    ind = Indicators(now=0)
    ind.boot(case.get("boot", 5), 0)
    for k, v in case.get("set", {}).items():
        setattr(ind, k, v)
    for name, t in case.get("call", []):
        getattr(ind, name)(t)
    led = case["led"]
    runs = []
    states = []
    t0, t1 = case["window"]
    for t in range(t0, t1, STEP):
        for name, tc in case.get("call_at", []):
            if tc == t:
                getattr(ind, name)(t)
        ind.compute(t)
        c = ind.colours[led]
        if runs and runs[-1][0] == c:
            runs[-1][1] += STEP
        else:
            runs.append([c, STEP])
        s = ind.states()[("status", "network", "bus")[led]]
        if not states or states[-1][0] != s:
            states.append([s, t])
    return {"runs": runs, "states": states, "names": ind.names()}
print("@@JSON", json.dumps([trace(c) for c in json.loads(%r)]))
"""


def blink(colour, on, off, total, start_lit=True):
    """Run lengths of a blink starting at its lit phase, cut at total ms."""
    out, t, lit = [], 0, start_lit
    while t < total:
        d = min(on if lit else off, total - t)
        out.append([colour if lit else OFF, d])
        t += d
        lit = not lit
    return out


def steady(colour, total):
    return [[colour, total]]


CONFIRM = [[OFF, 250], [ORANGE, 250], [OFF, 250], [ORANGE, 250], [OFF, 250]]

# (label, case, expected runs, expected state names in order)
ROWS = [
    # status LED
    ("status: booting, orange steady < 10 s",
     {"boot": 2, "led": STATUS, "window": [0, 9900]}, steady(ORANGE, 9900), ["booting"]),
    ("status: metering up, ports coming: green slow",
     {"boot": 3, "led": STATUS, "window": [0, 4000]}, blink(GREEN, 500, 500, 4000),
     ["starting"]),
    ("status: ready, green steady",
     {"led": STATUS, "window": [0, 3000]}, steady(GREEN, 3000), ["ready"]),
    ("status: firmware update, green fast",
     {"set": {"updating": True}, "led": STATUS, "window": [0, 2000]},
     blink(GREEN, 125, 125, 2000), ["update"]),
    ("status: confirmation, two orange blinks, then ready again",
     {"led": STATUS, "window": [0, 3000], "call_at": [["confirm", 1000]]},
     [[GREEN, 1000]] + CONFIRM + [[GREEN, 750]], ["ready", "confirm", "ready"]),
    ("status: chip not answering, red steady",
     {"set": {"chip_fault": True}, "led": STATUS, "window": [0, 3000]},
     steady(RED, 3000), ["error"]),
    ("status: metering stalled, red steady",
     {"set": {"stalled": True}, "led": STATUS, "window": [0, 3000]},
     steady(RED, 3000), ["error"]),
    ("status: meter stale, red blinking",
     {"set": {"stale": True}, "led": STATUS, "window": [0, 3000]},
     blink(RED, 250, 250, 3000), ["fault"]),
    ("status: a recovered fault blinks red for 60 s, then ready",
     {"led": STATUS, "window": [59000, 61000], "call": [["fault", 0]]},
     blink(RED, 250, 250, 1000) + [[GREEN, 1000]], ["fault", "ready"]),
    ("status: boot hung, orange steady past 10 s",
     {"boot": 2, "led": STATUS, "window": [9000, 12000]}, steady(ORANGE, 3000),
     ["booting", "boot_hung"]),
    ("status: late boot hung, green slow turns orange at 10 s",
     {"boot": 4, "led": STATUS, "window": [8000, 12000]},
     blink(GREEN, 500, 500, 2000) + [[ORANGE, 2000]], ["starting", "boot_hung"]),
    # network LED
    ("network: no link, off",
     {"set": {"link": False}, "led": NETWORK, "window": [0, 3000]}, steady(OFF, 3000),
     ["no_link"]),
    ("network: link, no connection yet, green steady",
     {"led": NETWORK, "window": [0, 3000]}, steady(GREEN, 3000), ["setup"]),
    ("network: a client connected, green blinking",
     {"set": {"net_conns": 1}, "led": NETWORK, "window": [0, 3000]},
     blink(GREEN, 250, 250, 3000), ["active"]),
    ("network: a request blinks for 3 s, then steady",
     {"set": {"net_last": 0}, "led": NETWORK, "window": [0, 5000]},
     blink(GREEN, 250, 250, 3000) + [[GREEN, 2000]], ["active", "setup"]),
    # bus LED
    ("bus: no traffic, off",
     {"led": BUS, "window": [0, 3000]}, steady(OFF, 3000), ["idle"]),
    ("bus: traffic, green fast for 3 s after the last frame",
     {"set": {"bus_last": 0}, "led": BUS, "window": [0, 5000]},
     blink(GREEN, 125, 125, 3000) + [[OFF, 2000]], ["traffic", "idle"]),
    ("bus: scanning, green slow",
     {"set": {"scanning": True}, "led": BUS, "window": [0, 4000]},
     blink(GREEN, 500, 500, 4000), ["scanning"]),
    ("bus: 5 V output overload, red steady",
     {"set": {"overload": True}, "led": BUS, "window": [0, 3000]}, steady(RED, 3000),
     ["overload"]),
    ("bus: a remote does not answer, orange blinking",
     {"set": {"remote_silent": True}, "led": BUS, "window": [0, 3000]},
     blink(ORANGE, 250, 250, 3000), ["no_answer"]),
]


def merge(runs):
    out = []
    for c, n in runs:
        if out and out[-1][0] == c:
            out[-1][1] += n
        else:
            out.append([c, n])
    return out


def test_every_table_row(mpy_any):
    res = mpy_any(TRACE % json.dumps([r[1] for r in ROWS]))
    for (label, case, runs, states), got in zip(ROWS, res):
        assert got["runs"] == merge(runs), label
        assert [s for s, _ in got["states"]] == states, (label, got["states"])


def test_boot_hung_edge_and_names(mpy_any):
    """Booting up to 9.995 s, hung from 10.000 s; the names the host run shows."""
    res = mpy_any(TRACE % json.dumps([
        {"boot": 2, "led": STATUS, "window": [9990, 10010]},
        {"set": {"bus_last": 0, "net_conns": 2}, "led": BUS, "window": [0, 10]}]))
    assert res[0]["states"] == [["booting", 9990], ["boot_hung", 10000]]
    assert res[1]["names"] == {"status": "green", "network": "green-blink",
                               "bus": "green-fast"}


# Priority: (inputs, expected (status, network, bus) state names at t=1000).
PRIORITY = [
    ({"set": {"updating": True, "chip_fault": True, "stale": True}}, "update"),
    ({"set": {"updating": True}, "call": [["confirm", 900]]}, "confirm"),
    ({"set": {"chip_fault": True, "stale": True}, "call": [["fault", 0]]}, "error"),
    ({"set": {"stalled": True}, "boot": 2}, "error"),
    ({"set": {"stale": True}, "boot": 2}, "fault"),
    ({"call": [["fault", 0]], "boot": 3}, "fault"),
]
NET_PRIORITY = [
    ({"set": {"link": False, "net_conns": 3, "net_last": 900}}, "no_link"),
    ({"set": {"net_conns": 0, "net_last": 900}}, "active"),
]
BUS_PRIORITY = [
    ({"set": {"overload": True, "scanning": True, "remote_silent": True,
              "bus_last": 900}}, "overload"),
    ({"set": {"scanning": True, "remote_silent": True, "bus_last": 900}}, "scanning"),
    ({"set": {"remote_silent": True, "bus_last": 900}}, "no_answer"),
]


def test_priorities(mpy_any):
    cases = []
    for led, table in ((STATUS, PRIORITY), (NETWORK, NET_PRIORITY), (BUS, BUS_PRIORITY)):
        for case, _ in table:
            c = dict(case)
            c["led"] = led
            c["window"] = [1000, 1005]
            cases.append(c)
    res = mpy_any(TRACE % json.dumps(cases))
    want = [w for t in (PRIORITY, NET_PRIORITY, BUS_PRIORITY) for _, w in t]
    assert [r["states"][0][0] for r in res] == want


def test_bicolour_driver(mpy_any):
    """Orange is both dies; active-low pins are inverted; a bad colour is refused."""
    res = mpy_any(r"""
import json
from boards.sim.bus import SimPin
from drivers.led import LED, BiLED
g, r = SimPin(0), SimPin(0)
hi = BiLED(g, r)
gl, rl = SimPin(0), SimPin(0)
lo = BiLED(gl, rl, active_high=False)
one = SimPin(1)
single = LED(one, active_high=False)
out = {"init_low": [gl.value(), rl.value()], "single_init": one.value()}
for c in range(4):
    hi.value(c); lo.value(c); single.value(c)
    out[str(c)] = [g.value(), r.value(), gl.value(), rl.value(), one.value(), hi.value()]
try:
    hi.value(4)
    out["bad"] = None
except ValueError as e:
    out["bad"] = str(e)
print("@@JSON", json.dumps(out))
""")
    assert res["init_low"] == [1, 1] and res["single_init"] == 1    # all dark at start
    assert res["0"] == [0, 0, 1, 1, 1, 0]
    assert res["1"] == [1, 0, 0, 1, 0, 1]        # green
    assert res["2"] == [0, 1, 1, 0, 0, 2]        # red
    assert res["3"] == [1, 1, 0, 0, 0, 3]        # orange: both dies
    assert "got 4" in res["bad"]


CHIP = {"frequency_hz": 50.0, "phases": {
    "L1": {"v_rms": 230.0, "i_rms": 5.0, "phi_deg": 10.0},
    "L2": {"v_rms": 231.0, "i_rms": 4.0, "phi_deg": 20.0},
    "L3": {"v_rms": 229.0, "i_rms": 3.0, "phi_deg": 30.0}}}


def test_chip_faults_reach_the_status_led(mpy):
    """Driver faults on the simulated chip, through the engine and the event log:
    a recovered checksum upset blinks red; a chip that stops answering is red steady;
    once it answers again it blinks red until 60 s after the last fault, then green.
    (Unix port only: a minute of simulated chip is slow on the wasm port; the same
    state machine's timing runs on both in the table tests above.)"""
    res = mpy(r"""
import json
from tools.mpy.cycle_harness import Harness
from firmware.leds import BOOT_DONE
h = Harness(%s)
ind = h.app.indicators
ind.bind(meter=h.meter, events=h.app.events)
def look():
    ind.tick(h.clock.ticks_ms())
    return ind.states()["status"]
h.run_windows(3)
ind.boot(BOOT_DONE, h.clock.ticks_ms())
out = {"start": look()}
# The engine stops publishing: stale after 300 ms (1.5 cycles), on the LED after 1 s more.
def silent(ms):             # the LED task ticks every 25 ms; the engine is not polled
    for _ in range(ms // 25):
        h.clock.advance_us(25000)
        ind.tick(h.clock.ticks_ms())
silent(900)
out["silent_900ms"] = look()
silent(500)
out["silent_1400ms"] = look()
h.advance_ms(400)
out["publishing"] = look()
h.sim.inject_checksum_upset()
h.advance_ms(600)
out["upset"] = look()
out["upset_colours"] = []
for _ in range(4):          # blinking: lit and dark 250 ms apart
    h.advance_ms(250)
    ind.tick(h.clock.ticks_ms())
    out["upset_colours"].append(h.board.leds["status"].value())
h.sim.inject_miso_garbage(1000000)
h.advance_ms(1500)
out["dead"] = look()
out["dead_colour"] = h.board.leds["status"].value()
h.sim._garbage = 0          # the chip answers again
h.advance_ms(1500)
out["back"] = look()
h.advance_ms(57000, 50)
out["back_57s"] = look()
h.advance_ms(3600, 50)
out["back_60s"] = look()
print("@@JSON", json.dumps(out))
""" % json.dumps(CHIP), timeout=300)
    assert res["start"] == "ready"
    assert res["silent_900ms"] == "ready" and res["silent_1400ms"] == "fault"
    assert res["publishing"] == "ready"
    assert res["upset"] == "fault"
    assert sorted(set(res["upset_colours"])) == [OFF, RED]
    assert res["dead"] == "error" and res["dead_colour"] == RED
    # The last SPI error was logged shortly before "back": red blinking for 60 s from it.
    assert res["back"] == "fault" and res["back_57s"] == "fault"
    assert res["back_60s"] == "ready"


def test_led_tick_allocates_nothing(mpy_any):
    """A tick with every source bound (meter, event log, Modbus ports with two RTU
    slaves, watchdog feeder, overload pin) and the sim board's bi-colour LEDs driven,
    across blinking, confirmation and fault states: 0 bytes."""
    res = mpy_any(r"""
import gc, io, json
from tools.mpy.cycle_harness import Harness
from drivers.rs485 import RS485
from firmware.ports import ModbusPorts
from firmware.supervisor import WatchdogFeeder
from firmware.leds import BOOT_DONE

class LineOnly(io.IOBase):
    # Holds line settings only: the port is never served in this test.
    def init(self, baudrate=19200, bits=8, parity=None, stop=1, **kw):
        pass
    def ioctl(self, req, arg):
        return 0

h = Harness(%s)
# The board's RS485 parts: a transceiver on a UART that only takes line settings.
# (The WebAssembly port has no asyncio.StreamReader, so no RS485 there: no RTU slaves.)
import asyncio
if hasattr(asyncio, "StreamReader"):
    h.board.rs485 = lambda name, baud, parity, stop: RS485(LineOnly(), None, baud, parity,
                                                           stop)
ports = ModbusPorts(h.meter, h.app.cfg, h.board)
feeder = WatchdogFeeder(h.meter, h.board.watchdog(8000), h.clock, h.app.events)
ind = h.app.indicators
ind.bind(meter=h.meter, events=h.app.events, ports=ports, feeder=feeder,
         overload_pin=h.board.bus_overload)
h.run_windows(3)
ind.boot(BOOT_DONE, h.clock.ticks_ms())
ind.tick(h.clock.ticks_ms())
def measure(n):
    clock = h.clock
    seen = 0
    gc.collect(); gc.disable()
    a0 = gc.mem_alloc()
    for k in range(n):
        now = clock.ticks_ms()
        if k == 100:
            ind.confirm(now)
            ind.updating = True
        if k == 400:
            ind.updating = False
            h.app.events.add(now, 7)            # a task crash: red blinking
            if ports.rtu:
                ports.rtu["a"].stats.last_ms = now
            else:
                ind.scanning = True             # green on the bus LED all the same
            h.board.bus_overload.value(0)
        if k == 700:
            h.board.bus_overload.value(1)
        ind.tick(now)
        seen |= 1 << (ind.colours[0] * 3 + 0) | 1 << (ind.colours[2] * 3 + 1)
        clock.advance_us(5000)
    a1 = gc.mem_alloc()
    gc.enable()
    return a1 - a0, seen
used, seen = measure(1000)
print("@@JSON", json.dumps({"bytes": used, "seen": seen, "names": ind.names(),
                            "rtu": sorted(ports.rtu)}))
""" % json.dumps(CHIP))
    assert res["rtu"] == (["a", "b"] if mpy_any.__name__ == "run_mpy" else [])
    # The loop really went through green, orange, red on status and red, green on bus.
    seen = res["seen"]
    for colour, led in ((GREEN, 0), (ORANGE, 0), (RED, 0), (RED, 1), (GREEN, 1)):
        assert seen & (1 << (colour * 3 + led)), (colour, led, bin(seen))
    assert res["bytes"] == 0


def _crc16_modbus(data):
    # CRC-16/MODBUS (Modbus over Serial Line 6.2.2), written here for the test.
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return bytes(data) + bytes((crc & 0xFF, crc >> 8))


def test_app_leds_follow_the_ports(mpy, tmp_path):
    """The App's "leds" task on the sim board: ready with no client; a Modbus TCP
    client connected makes the network LED blink; an RTU request on RS485 A (a socat
    pty pair, as the host run uses) makes the bus LED blink fast."""
    import os
    import subprocess
    import time
    from conftest import free_port

    sock = subprocess.Popen(["socat", "pty,raw,echo=0,link=%s/rs485-a-dev" % tmp_path,
                             "pty,raw,echo=0,link=%s/rs485-a" % tmp_path],
                            stderr=subprocess.DEVNULL)
    try:
        end = time.time() + 5
        while not all(os.path.exists("%s/rs485-a%s" % (tmp_path, s)) for s in ("", "-dev")):
            assert time.time() < end, "socat did not make the ptys"
            time.sleep(0.02)
        port = free_port()
        rtu_req = _crc16_modbus(bytes((1, 3, 0, 0, 0, 2)))      # KSEM A preset: unit 1
        tcp_req = bytes((0, 7, 0, 0, 0, 6, 1, 3, 0, 0, 0, 2))    # MBAP + FC 03
        res = mpy(r"""
import asyncio, json
from boards.sim import scenario
from boards.sim.board import SimBoard
from firmware.app import App

async def main():
    b = SimBoard(scenario.parse(json.loads(%r)), run_dir=%r)
    app = App(b)
    await app.start("127.0.0.1", %d)
    out = {"tasks": app.supervisor.names()}
    await asyncio.sleep_ms(700)
    out["idle"] = app.indicators.states()
    out["idle_colours"] = [b.leds[n].value() for n in ("status", "network", "bus")]
    r, w = await asyncio.open_connection("127.0.0.1", %d)
    w.write(%r)
    await w.drain()
    reply = await r.read(64)
    await asyncio.sleep_ms(100)
    out["tcp"] = app.indicators.names()
    out["tcp_reply_len"] = len(reply)
    f = open(%r, "r+b")
    f.write(%r)             # unbuffered; flush() would fsync, which a pty refuses
    await asyncio.sleep_ms(300)
    out["rtu"] = app.indicators.names()
    out["rtu_ok"] = app.ports.rtu["a"].stats.ok
    w.close()
    f.close()
    app.stop()
    return out
print("@@JSON", json.dumps(asyncio.run(main())))
""" % (json.dumps(CHIP), str(tmp_path), port, port, tcp_req, "%s/rs485-a" % tmp_path,
       rtu_req), timeout=60)
    finally:
        sock.terminate()
        sock.wait()
    assert "leds" in res["tasks"] and "button" in res["tasks"]
    assert res["idle"] == {"status": "ready", "network": "setup", "bus": "idle"}
    assert res["idle_colours"] == [GREEN, GREEN, OFF]
    assert res["tcp_reply_len"] == 9 + 4                       # MBAP, FC, count, 2 regs
    assert res["tcp"]["network"] == "green-blink" and res["tcp"]["bus"] == "off"
    assert res["rtu_ok"] == 1
    assert res["rtu"]["bus"] == "green-fast" and res["rtu"]["status"] == "green"
