"""What one counter record costs on the flash, on the unix port:

    MICROPYPATH=.:.frozen micropython -X heapsize=8M tools/mpy/persist_cost.py

For littlefs geometries of the boards and of the tests it runs the store through many
periods and reports, per record write (the part that must fit the hold-up time) and per
re-arm (done while the supply is good): block programs, bytes programmed, erases, and
the median time on this machine. Then wear: the store alone on an RP2040-sized
filesystem (352 blocks of 4 KB, the Pico's 1408 KB) for many periods, erases per period
and how evenly littlefs spreads them (most-erased block against the mean). Prints one
JSON line after @@JSON.
"""
import json
import os
import time

from boards.sim.blockdev import SimFlash
from firmware.energy import EnergyRegisters
from firmware.events import EventLog
from firmware.persist import CounterStore


class _Clock:
    def ticks_ms(self):
        return time.ticks_ms()


def measure(blocks, block_size, progsize, periods=60):
    f = SimFlash(blocks, block_size)
    os.VfsLfs2.mkfs(f, progsize=progsize)
    vfs = os.VfsLfs2(f, progsize=progsize)
    e = EnergyRegisters(32)
    store = CounterStore(vfs, e, EventLog(8), _Clock())
    store.restore()
    store.arm()
    rows = {"write": [], "arm": []}
    for k in range(periods):
        for i in range(32):
            e.add(i, 123456789012 * (i + 1) + k)
        for what, fn in (("write", store.write), ("arm", store.arm)):
            p, b, er = f.progs, f.bytes, f.erases
            t0 = time.ticks_us()
            fn()
            dt = time.ticks_diff(time.ticks_us(), t0)
            rows[what].append((f.progs - p, f.bytes - b, f.erases - er, dt))
    store.close()
    out = {"geometry": "%d x %d B, progsize %d" % (blocks, block_size, progsize),
           "erase_free": store.erase_free, "record_bytes": store.rlen}
    for what, r in rows.items():
        r = r[5:]                         # steady state
        us = sorted(x[3] for x in r)
        out[what] = {"progs_max": max(x[0] for x in r), "bytes_max": max(x[1] for x in r),
                     "erases_max": max(x[2] for x in r),
                     "erases_per_op": sum(x[2] for x in r) / len(r),
                     "us_median": us[len(us) // 2]}
    return out


class _WearFlash(SimFlash):
    def __init__(self, *a, **k):
        SimFlash.__init__(self, *a, **k)
        self.per_block = [0] * self.blocks

    def ioctl(self, op, arg):
        if op == 6:
            self.per_block[arg] += 1
        return SimFlash.ioctl(self, op, arg)


def wear(blocks=352, block_size=4096, progsize=256, periods=3000):
    f = _WearFlash(blocks, block_size)
    os.VfsLfs2.mkfs(f, progsize=progsize)
    vfs = os.VfsLfs2(f, progsize=progsize)
    e = EnergyRegisters(32)
    store = CounterStore(vfs, e, EventLog(8), _Clock())
    store.restore()
    store.arm()
    e0 = f.erases
    for k in range(periods):
        e.add(k & 31, 987654321987)
        store.persist()
    n = f.erases - e0
    used = [c for c in f.per_block if c]
    return {"geometry": "%d x %d B, progsize %d" % (blocks, block_size, progsize),
            "periods": periods, "erases_per_period": n / periods,
            "blocks_erased": len(used), "max_per_block": max(f.per_block),
            "mean_per_block": sum(f.per_block) / blocks,
            "max_over_mean": max(f.per_block) / (sum(f.per_block) / blocks)}


if __name__ == "__main__":
    res = [measure(64, 4096, 256),       # RP2040: 4 KB sectors, 256 B pages (rp2 _boot.py)
           measure(64, 4096, 32),        # the sim board's flash, VfsLfs2 defaults
           measure(32, 1024, 32)]        # the power-cut tests' flash
    res.append(wear())
    for r in res:
        print(r)
    print("@@JSON", json.dumps(res))
