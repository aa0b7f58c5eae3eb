# Heap of the MQTT part on the 32-bit port (tests/test_mqtt.py; README "MQTT and Home
# Assistant"): node tools/wasm/run.mjs --lib lib tools/mpy/mqtt_heap32.py
# No sockets on this port: umqtt.simple's `import usocket` gets a stand-in module (the
# wrapper replaces it by its own stand-in anyway: firmware/mqtt.py _Sock). Marks are
# live heap read at the start of a chunk after gc.collect() at the end of the last.
# Every name and string the measured chunks use is made here, in the first chunk: a
# chunk is compiled before it runs, and a new name would intern a qstr into a fresh
# pool on the heap, counted as the part's (up to 1 KB that a frozen build keeps in
# flash).
import gc, sys, json
from array import array
class _NoSock:
    pass
sys.modules["usocket"] = _NoSock
from firmware import config
from firmware.events import EventLog
from firmware.snapshot import Snapshot
import asyncio
import umqtt.simple
MARK = array("l", [0] * 8)
K = [None] * 8
hadisc = mqtt = None
# umqtt.simple's residue as a frozen (or mip-installed .mpy) build keeps it: its code
# compiled here, before the marks; what executing it leaves (globals, the classes and
# their methods) is measured, as tools/heap32.py RESIDUE does for firmware/ modules.
with open(umqtt.simple.__file__) as _h:
    UMQTT_CODE = compile(_h.read(), umqtt.simple.__file__, "exec")
del _h
UMQTT_NS = [None]
class _Meter:
    front = Snapshot()
class _Clock:
    def ticks_ms(self):
        return 0
CAL = {"v_per_code": 1, "i_per_code": 1, "w_per_code": 1, "wh_per_lsb": 1,
       "gains": [[0, 0, 0]] * 3, "phcal": [0, 0, 0]}
K[0] = config.validate({"mqtt": {"enabled": True}, "identity": {"serial": "12345678"}}, CAL)
K[1] = EventLog(8)
K[2] = _Meter()
K[3] = _Clock()
def _step(k):
    global hadisc, mqtt
    MARK[k] = gc.mem_alloc()
    if k == 0:
        UMQTT_NS[0] = {"__name__": "umqtt.simple"}
        exec(UMQTT_CODE, UMQTT_NS[0])
    elif k == 1:
        from firmware import hadisc as h, mqtt as m
        hadisc, mqtt = h, m
    elif k == 2:
        K[4] = mqtt.Mqtt(K[2], K[0], K[3], K[1])
    elif k == 3:
        # a session's client, as firmware/mqtt.py _session makes it
        m, n = K[4].m, K[4].names
        c = umqtt.simple.MQTTClient(n["node"], K[4].addr[0], K[4].addr[1], m["user"] or None,
                                    m["password"], m["keepalive_s"])
        c.set_last_will(n["base"] + "/status", "offline", retain=True)
        K[5] = c
    gc.collect()
def _alloc():
    # One state message and one discovery payload: transient, per publish.
    gc.collect()
    gc.disable()
    a0 = gc.mem_alloc()
    s = hadisc.state(K[2].front)
    a1 = gc.mem_alloc()
    t, p = hadisc.config(0, K[4].names)
    a2 = gc.mem_alloc()
    gc.enable()
    return a1 - a0, a2 - a1, len(s), len(p)
def _report():
    st, dc, ls, lp = _alloc()
    print("@@JSON", json.dumps({"umqtt_residue": MARK[1] - MARK[0],
                                "wrapper_modules": MARK[2] - MARK[1],
                                "mqtt_object": MARK[3] - MARK[2],
                                "session_client": MARK[4] - MARK[3],
                                "state_alloc": st, "discovery_alloc": dc,
                                "state_len": ls, "discovery_len": lp}))
gc.collect()
#@@CHUNK
_step(0)
#@@CHUNK
_step(1)
#@@CHUNK
_step(2)
#@@CHUNK
_step(3)
#@@CHUNK
_step(4)
#@@CHUNK
_report()
