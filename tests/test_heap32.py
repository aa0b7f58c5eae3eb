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
import heap_parts  # noqa: E402

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
    "persistence": heap_parts.PERSISTENCE,  # counter store (tests/test_persist.py)
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


RTIME_SHARE = 1536


def test_records_time_objects_within_their_share(heap):
    got = heap["rtime_objects"]
    assert 0 < got <= RTIME_SHARE, "records-time: %d B live on 32-bit" % got


@pytest.fixture(scope="module")
def heap():
    return heap_parts.budget_figures(100, CLIENTS)


measured = heap_parts.measured


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


def test_push_within_its_share_and_mean_mode_extra(heap):
    # Module objects plus a
    # Pusher with 10 TCP targets configured. interval_mean keeps one int32 array
    # (firmware/pushmb.py _M_*: two limb sums per instantaneous value, 36 each, the
    # means and the interval's energies) and two views into it: about 0.75 KB more,
    # freed in the other modes.
    mods, objs, mean = heap["push_modules"], heap["push_objects"], heap["push_mean"]
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
