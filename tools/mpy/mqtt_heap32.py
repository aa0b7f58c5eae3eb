# Heap of the MQTT part on the 32-bit port (tests/test_mqtt.py; README "MQTT and Home
# Assistant"): node tools/wasm/run.mjs --lib lib tools/mpy/mqtt_heap32.py
# No sockets on this port: umqtt.simple's `import usocket` gets a stand-in module (the
# wrapper replaces it by its own stand-in anyway: firmware/mqtt.py _Net). Marks are
# live heap read at the start of a chunk after gc.collect() at the end of the last.
import gc, sys, json
from array import array
class _NoSock:
    pass
sys.modules["usocket"] = _NoSock
from firmware import config
from firmware.events import EventLog
from firmware.snapshot import Snapshot
import asyncio
MARK = array("l", [0] * 8)
K = [None] * 8
umqtt = hadisc = mqtt = None
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
def _session_client():
    m, n = K[4].m, K[4].names
    c = K[4]._mk(n["node"], K[4].host, K[4].port, m["user"] or None, m["password"],
                 m["keepalive_s"])
    c.set_last_will(n["base"] + "/status", "offline", retain=True)
    return c
gc.collect()
#@@CHUNK
MARK[0] = gc.mem_alloc()
import umqtt.simple
gc.collect()
#@@CHUNK
MARK[1] = gc.mem_alloc()
from firmware import hadisc, mqtt
gc.collect()
#@@CHUNK
MARK[2] = gc.mem_alloc()
K[4] = mqtt.Mqtt(K[2], K[0], K[3], K[1])
gc.collect()
#@@CHUNK
MARK[3] = gc.mem_alloc()
K[5] = _session_client()
gc.collect()
#@@CHUNK
MARK[4] = gc.mem_alloc()
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
st, dc, ls, lp = _alloc()
print("@@JSON", json.dumps({"umqtt_module": MARK[1] - MARK[0],
                            "wrapper_modules": MARK[2] - MARK[1],
                            "mqtt_object": MARK[3] - MARK[2],
                            "session_client": MARK[4] - MARK[3],
                            "state_alloc": st, "discovery_alloc": dc,
                            "state_len": ls, "discovery_len": lp}))
