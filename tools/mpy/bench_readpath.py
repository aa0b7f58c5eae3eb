"""Read-path benchmark: cold and warm FC 03/04 reads per block, and the RTU CRC.

    micropython tools/mpy/bench_readpath.py [reps]          # unix port (run by tools/bench.py)
    node tools/wasm/run.mjs tools/mpy/bench_readpath.py     # 32-bit: bytes per read

Prints one JSON line after '@@JSON'. Per block: median time of the first read after a new
snapshot (cold) and of the mean of the next 10 reads of the same snapshot (warm), and bytes allocated per cold
and per warm read (gc.disable(); gc.mem_alloc() before and after, inside a function).
CRC: time per byte of a 256-byte buffer for crc16 and, where the module has them, its
viper and plain paths. Only build_spaces() and Space.read() are used, so tools/bench.py
can run this same file against an older tree as the reference.
"""
import gc
import json
import sys
import time

from firmware.snapshot import Snapshot, N_COUNTERS
from firmware.regmaps.build import build_spaces

REPS = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 200
# (space, first register, count, name): the blocks clients poll.
BLOCKS = (
    ("h", 0, 28, "KSEM 0..27"),
    ("h", 40, 40, "KSEM 40..79"),
    ("h", 40, 106, "KSEM 40..145"),
    ("h", 512, 40, "KSEM 512..551"),
    ("h", 592, 120, "KSEM 592..711"),
    ("h", 8192, 57, "KSEM PnP 8192..8248"),
    ("h", 40000, 70, "SunSpec 40000..40069"),
    ("h", 40070, 108, "SunSpec 40070..40177"),
    ("i", 0, 80, "SDM630 0..79"),
    ("i", 0x50, 28, "SDM630 80..107"),
    ("i", 0x14E, 48, "SDM630 334..381"),
)


class Meter:
    """front plus status_now(), as firmware.metering.Meter offers them."""

    def __init__(self):
        self.front = Snapshot()

    def status_now(self):
        return self.front.status


def fill(s, k):
    # Three-phase load with export on L2, counters far beyond 2**32 milli-units.
    for i in range(len(s.inst)):
        s.inst[i] = ((i * 7919 + k * 104729) % 4000001) - 1000000
    for i in range(N_COUNTERS):
        s.e_hi[i] = 123456 + 1000 * i + k
        s.e_lo[i] = (i * 31337 + k) % 1000000
    s.status = 1


def median(t):
    t = sorted(t)
    return t[len(t) // 2]


_WARM = 10   # warm reads per cycle: their mean (a clock tick is 1 us), GC included


def run_block(sp, m, pair, addr, n, out, reps):
    cold = []
    warm = []
    for k in range(reps):
        s = pair[k & 1]
        s.seq = m.front.seq + 1
        m.front = s
        t0 = time.ticks_us()
        sp.read(addr, n, out, 0)
        t1 = time.ticks_us()
        for _ in range(_WARM):
            sp.read(addr, n, out, 0)
        t2 = time.ticks_us()
        cold.append(time.ticks_diff(t1, t0))
        warm.append(time.ticks_diff(t2, t1))
    return median(cold), median(warm) / _WARM


def alloc_per_read(sp, m, pair, addr, n, out, cold, reps):
    gc.collect()
    gc.disable()
    a0 = gc.mem_alloc()
    for k in range(reps):
        if cold:
            s = pair[k & 1]
            s.seq = m.front.seq + 1
            m.front = s
        sp.read(addr, n, out, 0)
    a1 = gc.mem_alloc()
    gc.enable()
    return (a1 - a0) // reps


def crc_us_per_byte(fn, buf, reps):
    t = []
    for _ in range(reps):
        t0 = time.ticks_us()
        fn(buf, 0, len(buf))
        t.append(time.ticks_diff(time.ticks_us(), t0))
    return median(t) / len(buf)


def main():
    m = Meter()
    pair = (Snapshot(), Snapshot())
    fill(pair[0], 1)
    fill(pair[1], 2)
    m.front = pair[0]
    h, inp = build_spaces(m, {}, {})
    spaces = {"h": h, "i": inp}
    out = bytearray(256)
    for name, addr, n, label in BLOCKS:   # warm-up, untimed
        run_block(spaces[name], m, pair, addr, n, out, 20)
    blocks = []
    for name, addr, n, label in BLOCKS:
        sp = spaces[name]
        sp.read(addr, n, out, 0)
        cold, warm = run_block(sp, m, pair, addr, n, out, REPS)
        blocks.append({"block": label, "cold_us": cold, "warm_us": warm,
                       "cold_bytes": alloc_per_read(sp, m, pair, addr, n, out, True, 20),
                       "warm_bytes": alloc_per_read(sp, m, pair, addr, n, out, False, 20)})
    from firmware.modbus import crc
    buf = bytearray(range(256))
    res = {"blocks": blocks, "crc_us_per_byte": crc_us_per_byte(crc.crc16, buf, REPS)}
    for path in ("crc16_viper", "crc16_plain"):
        fn = getattr(crc, path, None)
        if fn is not None:
            res[path + "_us_per_byte"] = crc_us_per_byte(fn, buf, REPS)
    res["crc_path"] = getattr(crc, "PATH", "table")
    print("@@JSON", json.dumps(res))


main()
