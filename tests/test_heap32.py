"""Heap budget on 32-bit: every part of the firmware within its share (bytes are stable).

The budget (issue 6): runtime objects of the whole firmware at most 64 KB with modules
frozen, TCP serving 8 clients, both RTU ports, persistence and records, so it fits an
ESP32 without PSRAM next to its network stack. tools/heap32.py measures each part's live
heap on the 32-bit WebAssembly port the way firmware/app.py and firmware/ports.py build
it (the simulator measured apart and dropped); one connected TCP client's cost beyond
its slot comes from the 64-bit unix port with real sockets, halved for 32-bit objects.
SHARES is the table the README shows: a change that outgrows its share fails here.
"""
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "tools"))
import heap32  # noqa: E402

KB = 1024
CLIENTS = 8
SHARES = {                          # bytes of live heap on a 32-bit build, everything on
    "module_objects": 18432,        # globals dicts, function/class objects (frozen: RAM)
                                    # of every module a boot loads
    "meter": 8704,                  # App, its validated config (1.5 KB), events, ADE7880
                                    # driver (1.6 KB: one frame buffer), Meter with its two
                                    # snapshots, LED indicators and button
    "maps": 5120,                   # the two register spaces and their images
    "rtu_a": 1664,                  # RtuSlave + RS485 (a board's UART ring buffer: 256 B)
    "rtu_b": 1440,
    "tcp": 4352,                    # TcpServer with 8 slots (260 B receive buffers)
    "tcp_clients": 4480,            # 8 connected clients beyond their slots (estimate)
    "growth": 256,                  # first use + live growth over 100 cycles with reads
    "evlog": 1024,                  # event log on flash + its Modbus space (modules and
                                    # EventStore + EventLogSpace)
    "persistence": 1408,            # counter store (tests/test_persist.py: 1,344 B)
    "config": 2048,                 # config over Modbus (issue 10 item 4): the modules
                                    # cfgstore + regmaps/device (their module objects)
                                    # and the settings owner (stage, password state)
    "push": 2560,                   # Modbus master push, 10 TCP targets, interval_mean
                                    # (its largest mode): module + Pusher (frame buffer,
                                    # per-target status, the mean's int32 array)
    "records": 5376,                # records.enabled (default on): clock, tariffs, demand,
                                    # losses, load curve, KSEM log: their modules and
                                    # objects (RecTime, Records, their Modbus spaces)
    "mqtt": 2304,                   # mqtt.enabled: the wrapper, the discovery table, a
                                    # session's umqtt.simple client and umqtt's module
    "reserve": 6368,                # a board's extras (rp2: 512 B UART rings), layout
}
# Parts not in the probe's App: their shares are asserted from their own measurements
# (persistence: tests/test_persist.py) or kept free (reserve).
LATER = ("persistence", "reserve")
BUDGET = 64 * KB


# The event log's part (firmware/eventstore.py, firmware/regmaps/eventlog.py): their
# module objects (residue with them less without them), and the objects a board keeps,
# an EventStore and its Modbus space, built on wasm32 (which has no littlefs: the store's
# constructor only makes its directory, so a stand-in with mkdir() serves).
EVLOG_MODULES = ("firmware.eventstore", "firmware.regmaps.eventlog")
EVLOG_OBJECTS = r"""
import gc, json
from firmware.events import EventLog
from firmware.eventstore import EventStore
from firmware.regmaps.eventlog import EventLogSpace
class V:
    def mkdir(self, p):
        pass
class C:
    def ticks_ms(self):
        return 0
EV = EventLog(32)
K = [None, None, V(), C()]
gc.collect()
#@@CHUNK
A0 = gc.mem_alloc()
#@@CHUNK
K[0] = EventStore(K[2], EV, K[3], None)
K[1] = EventLogSpace(K[0])
gc.collect()
#@@CHUNK
print("@@JSON", json.dumps({"bytes": gc.mem_alloc() - A0}))
"""


# Clock, tariffs, demand and loss correction (issue 12, records-time): its objects, a
# RecTime (wall clock, tariff, demand, losses) and its Modbus space, take up to 1,536 B
# of the "records" share; its modules' residue counts in module_objects.
RTIME_MODULES = ("firmware.tz", "firmware.walltime", "firmware.tariff", "firmware.demand",
                 "firmware.losses", "firmware.rtime", "firmware.regmaps.records")
RTIME_OBJECTS = r'''import gc, json
from firmware.energy import EnergyRegisters
from firmware.events import EventLog
from firmware import config
from firmware.rtime import RecTime
from firmware.regmaps.records import RecordsSpace
from boards.sim.board import SimBoard
class C:
    def ticks_ms(self):
        return 0
    def now_us(self):
        return 0
class B:
    clock = C()
    def time_utc(self):
        return 1798761600
CFG = config.validate(None, SimBoard.CALIBRATION)
E = EnergyRegisters(32)
EV = EventLog(32, 64)
K = [None, None, B()]
gc.collect()
#@@CHUNK
A0 = gc.mem_alloc()
#@@CHUNK
K[0] = RecTime(E, EV, K[2], None)
K[0].configure(CFG)
K[1] = RecordsSpace(K[0], None)
gc.collect()
#@@CHUNK
A1 = gc.mem_alloc()
print("@@JSON", json.dumps({"bytes": A1 - A0}))
'''
RTIME_SHARE = 1536


def test_records_time_objects_within_their_share():
    got = heap32.run_wasm(RTIME_OBJECTS)["bytes"]
    assert 0 < got <= RTIME_SHARE, "records-time: %d B live on 32-bit" % got
    mods = heap32.run_wasm(heap32.RESIDUE % (RTIME_MODULES, RTIME_MODULES))
    print("records-time objects %d B, modules %d B" % (got, mods["config_modules"]))


# Every part's modules: one residue run over all of them (the boot modules and the
# parts' own, as a frozen build with every feature on keeps them), then each part's own
# residue out of that run; module_objects is the rest. Nothing is counted twice.
PART_MODULES = {"config": heap32.CONFIG_MODULES, "evlog": EVLOG_MODULES,
                "push": ("firmware.pushmb",),
                # firmware.ring and regmaps.rings load at every boot (the event log
                # and the ports import them): module_objects; firmware.records only
                # with records on (app.py imports it then; rings.py does not)
                "records": RTIME_MODULES + ("firmware.records",),
                "mqtt": ("firmware.mqtt", "firmware.hadisc")}
ALL_MODULES = heap32.BOOT_MODULES + tuple(m for v in PART_MODULES.values() for m in v)
MQTT_PRELUDE = "import sys\nclass _NoSock:\n    pass\nsys.modules['usocket'] = _NoSock\n"
LIB = ("--lib", str(ROOT / "lib"))


def module_figures():
    own = {}
    total = None
    for part, mods in PART_MODULES.items():
        r = heap32.run_wasm(MQTT_PRELUDE + heap32.RESIDUE % (ALL_MODULES, mods), LIB)
        own[part] = r["config_modules"]
        total = r["bytes"]
    return total, own


def mqtt_objects():
    """The Mqtt object, a session's umqtt.simple client and umqtt.simple's own module
    residue (third-party, in lib/: RESIDUE counts firmware/ and drivers/ only), from
    tools/mpy/mqtt_heap32.py."""
    r = heap32.run_wasm(open(ROOT / "tools" / "mpy" / "mqtt_heap32.py").read(), LIB)
    return r["mqtt_object"] + r["session_client"] + r["umqtt_residue"]


@pytest.fixture(scope="module")
def heap():
    raw = heap32.run_wasm(heap32.probe_text(100, CLIENTS))
    fig = heap32.figures(raw)
    fig["all_modules"], fig["own_modules"] = module_figures()
    fig["evlog_objects"] = heap32.run_wasm(EVLOG_OBJECTS)["bytes"]
    fig["tcp_conn_32"] = (heap32.tcp_conn_unix(CLIENTS) + 1) // 2
    fig["push_modules"], fig["push_objects"], fig["push_mean"] = push_figures()
    fig["records_objects"] = (heap32.records_figures()[1]
                              + heap32.run_wasm(RTIME_OBJECTS)["bytes"])
    fig["mqtt_objects"] = mqtt_objects()
    return fig


def measured(heap):
    p = heap["parts"]
    own = heap["own_modules"]
    return {"module_objects": heap["all_modules"] - sum(own.values()),
            "config": own["config"] + p["config"],
            "evlog": own["evlog"] + heap["evlog_objects"],
            "push": own["push"] + heap["push_mean"],          # its largest mode
            "records": own["records"] + heap["records_objects"],
            "mqtt": own["mqtt"] + heap["mqtt_objects"],
            "meter": p["meter"], "maps": p["maps"],
            "rtu_a": p["rtu_a"], "rtu_b": p["rtu_b"], "tcp": p["tcp"],
            "tcp_clients": CLIENTS * heap["tcp_conn_32"],
            "growth": heap["warmup_residue"] + max(0, heap["cycles"]["live_peak"])}


def test_shares_add_up_to_the_budget():
    assert sum(SHARES.values()) == BUDGET


def test_probe_measured_what_it_claims(heap):
    c = heap["cycles"]
    assert c["n"] == 100 and c["read_errors"] == 0, c["read_error_samples"]
    assert c["requests_per_cycle"] >= 12          # every block of every map, two dispatchers
    assert heap["published"]["after_cycles"] >= heap["published"]["with_sim"] + 100
    # Dropping the only reference to a simulator frees all of it (5 KB): the drop method
    # works. One small block may stay: this port's collector scans the C stack
    # conservatively, so a stale word can keep 16 B alive depending on the heap layout.
    assert heap["sim"]["board_freed_check"] <= 16
    assert heap["sim"]["at_drop"] >= heap["sim"]["board_fresh"] > 0
    # firmware/ports.py's own constructor costs the sum of the parts built one by one,
    # plus its small bookkeeping (port dict, task list, config references).
    p = heap["parts"]
    parts = p["maps"] + p["rtu_a"] + p["rtu_b"] + p["tcp"]
    assert parts <= heap["modbus_ports_whole"] <= parts + 1024
    # The slots' receive buffers dominate the TCP figure: 8 x 260 bytes (one largest
    # ADU each) and the one send buffer the slots share (260) at least.
    assert p["tcp"] >= CLIENTS * 260 + 260
    assert 0 < heap["tcp_conn_32"] < 4096


@pytest.mark.parametrize("part", sorted(set(SHARES) - set(LATER)))
def test_part_within_its_share(heap, part):
    got = measured(heap)[part]
    share = SHARES[part]
    assert got >= 0
    assert got <= share, "%s: %d B live on 32-bit, share %d B" % (part, got, share)


_PUSH = []


def push_figures():
    if not _PUSH:
        _PUSH.extend(heap32.push_figures())
    return tuple(_PUSH)


def test_push_within_its_share_and_mean_mode_extra():
    # Measured on its own (not through the `heap` fixture): module objects plus a
    # Pusher with 10 TCP targets configured. interval_mean keeps one int32 array
    # (firmware/pushmb.py _M_*: two limb sums per instantaneous value, 36 each, the
    # means and the interval's energies) and two views into it: about 0.75 KB more,
    # freed in the other modes.
    mods, objs, mean = push_figures()
    assert 0 < mods + mean <= SHARES["push"], (mods, mean)
    assert 2 * 36 * 4 <= mean - objs <= 1024


def test_whole_firmware_within_64_kb(heap):
    """Everything on (records, MQTT, the push in interval_mean with 10 targets), 8 TCP
    clients, both RTU ports, persistence."""
    now = sum(measured(heap).values())
    later = sum(SHARES[k] for k in LATER if k != "reserve")
    assert now + later <= BUDGET, "%d B measured + %d B for later parts" % (now, later)


CONN_OBJECTS = r"""
import gc, json
async def serve(sock, slot):      # a connection's coroutine: locals across awaits
    rx = slot[0]
    tx = slot[1]
    n = 0
    while True:
        n += await sock.readinto(rx)
        await sock.write(tx)
class Stream:          # the fields of asyncio.Stream (wasm32's asyncio has no streams)
    def __init__(self, s, e={}):
        self.s = s
        self.e = e
        self.out_buf = b""
def cost(fn):
    gc.collect()
    gc.disable()
    a0 = gc.mem_alloc()
    x = fn()
    d = gc.mem_alloc() - a0
    gc.enable()
    return d
slot = (bytearray(4), bytearray(4))
print("@@JSON", json.dumps([cost(lambda: serve(None, slot)), cost(lambda: Stream(None)),
                            cost(lambda: [None] * 12)]))
"""


def test_a_connection_costs_half_on_32_bit(mpy, mpy32):
    # Why halving the unix port's per-client figure is a fair 32-bit estimate: what a
    # connection holds in Python (coroutine frames, its stream, lists) is word-sized
    # state, exactly half the bytes on the 32-bit runtime.
    u, w = mpy(CONN_OBJECTS), mpy32(CONN_OBJECTS)
    assert all(x > 0 for x in w)
    assert [2 * x for x in w] == u


def test_register_maps_mirror_the_names_they_stand_for():
    # The register maps define the snapshot indices and table codes they use as their
    # own private consts, so their row tables are literal constants (flash when frozen):
    # each must equal the name it mirrors; power divisors are written -mW (table.div_of).
    import export_maps
    snp, T = export_maps.snp, export_maps.T
    from firmware.regmaps import ksem, sdm630, sunspec
    for mod in (ksem, sdm630, sunspec):
        n = 0
        for name, v in vars(mod).items():
            src = name[1:]
            if name[:1] == "_" and src.isupper() and (hasattr(T, src) or hasattr(snp, src)):
                want = getattr(T, src) if hasattr(T, src) else getattr(snp, src)
                assert v == want, "%s.%s = %r, %s is %r" % (mod.__name__, name, v, src, want)
                n += 1
        assert n >= 20, mod.__name__
    assert T.div_of(ksem._P) == T.p_div(100)          # 0.1 W
    assert T.div_of(sdm630._W) == T.p_div(1000)       # 1 W
