"""The 32-bit heap budget's accounting, one for tests/test_heap32.py and `make bench`.

    import heap_parts
    fig = heap_parts.budget_figures()        # every figure (wasm32 runs, ~10 s)
    parts = heap_parts.measured(fig)         # part -> live bytes, as the shares name them

Each part's modules come from one residue run over every module (tools/heap32.py
RESIDUE: what executing the code leaves, as a frozen build keeps it); its objects are
built on the 32-bit runtime the way firmware/app.py builds them. Nothing is counted
twice; "module_objects" is what no part owns.
"""
from pathlib import Path

import heap32

ROOT = Path(__file__).resolve().parent.parent
CLIENTS = 8
PERSISTENCE = 1408     # the counter store's share (tests/test_persist.py measures 1,344 B)


# What the flash parts' constructors touch on wasm32, which has no littlefs: a
# filesystem that only makes directories, and a clock at 0.
STANDINS = """class V:
    def mkdir(self, p):
        pass
class C:
    def ticks_ms(self):
        return 0
"""


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
""" + STANDINS + r"""
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
# The load curve and KSEM log (firmware/records.py, regmaps/rings.py): a Records and its
# Modbus space, as a board keeps them.
RECORDS_OBJECTS = r'''
import gc, json
from firmware.events import EventLog
from firmware.records import Records
from firmware.regmaps.rings import space_of
from firmware.snapshot import Snapshot
from firmware import config
''' + STANDINS + r'''
class M:
    pass
EV = EventLog(32)
CFG = config.validate({}, {"v_per_code": 1, "i_per_code": 1, "w_per_code": 1,
                           "wh_per_lsb": 1, "gains": [[0, 0, 0]] * 3, "phcal": [0, 0, 0]})
K = [None, None, V(), C(), M()]
K[4].front = Snapshot()
gc.collect()
#@@CHUNK
A0 = gc.mem_alloc()
#@@CHUNK
K[0] = Records(K[2], K[4], EV, K[3], None, CFG)
K[4].records = K[0]
K[1] = space_of(K[4])
gc.collect()
#@@CHUNK
print("@@JSON", json.dumps({"bytes": gc.mem_alloc() - A0}))
'''


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




def budget_figures(cycles=100, clients=CLIENTS):
    raw = heap32.run_wasm(heap32.probe_text(cycles, clients))
    fig = heap32.figures(raw)
    fig["clients"] = clients
    fig["all_modules"], fig["own_modules"] = module_figures()
    fig["evlog_objects"] = heap32.run_wasm(EVLOG_OBJECTS)["bytes"]
    fig["tcp_conn_unix64"] = heap32.tcp_conn_unix(clients)   # real sockets: 64-bit
    fig["tcp_conn_32"] = (fig["tcp_conn_unix64"] + 1) // 2
    fig["push_modules"], fig["push_objects"], fig["push_mean"] = heap32.push_figures()
    fig["rtime_objects"] = heap32.run_wasm(RTIME_OBJECTS)["bytes"]
    fig["records_objects"] = heap32.run_wasm(RECORDS_OBJECTS)["bytes"] + fig["rtime_objects"]
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
            "tcp_clients": heap["clients"] * heap["tcp_conn_32"],
            "growth": heap["warmup_residue"] + max(0, heap["cycles"]["live_peak"])}


def total(fig):
    """Live bytes of the whole firmware, everything on, with the counter store's share."""
    return sum(measured(fig).values()) + PERSISTENCE
