"""The records-time record (firmware/rtime.py): per-class counters across a restart add
up to the totals' growth whichever record (counters or this one) is newer."""

PROG = r"""
import json
from boards.sim.clock import VirtualClock
from firmware.energy import EnergyRegisters
from firmware.events import EventLog
from firmware import config
from firmware.rtime import RecTime
from boards.sim.board import SimBoard

class Vfs:                      # files in a dict; rename replaces, as littlefs does
    def __init__(self): self.f = {}
    def open(self, p, mode):
        vfs = self
        class F:
            def __init__(s): s.b = bytearray()
            def write(s, b): s.b += b
            def read(s): return bytes(vfs.f[p])
            def __enter__(s):
                if 'r' in mode and p not in vfs.f: raise OSError(2)
                return s
            def __exit__(s, *a):
                if 'w' in mode: vfs.f[p] = bytes(s.b)
        return F()
    def remove(self, p):
        if p not in self.f: raise OSError(2)
        del self.f[p]
    def rename(self, a, b):
        self.f[b] = self.f.pop(a)

class Board:
    def __init__(self, clock): self.clock = clock
    def time_utc(self): return 1798794000          # 2027-01-01 09:00 UTC (10:00 CET)

cfg = config.validate({'tariff': {'classes': ['HP', 'HC', '', '', '', ''],
    'wd': [[360, 0], [1320, 1]] + [[1440, 0]] * 6}}, SimBoard.CALIBRATION)
vfs = Vfs()
out = {}
def totals(e): return [e.milli(24 + k) for k in range(6)]
def run(e, seconds, watts):
    for _ in range(seconds):
        for k in range(6):
            e.add(24 + k, watts * (k + 1) * 10**12 // 3600)
        clock.advance_us(1000000)
        rt.step(1000)
def per_class(rt): return [sum(rt.tariff.milli(c, k) for c in range(6)) for k in range(6)]

clock = VirtualClock()
e = EnergyRegisters(32)
start = totals(e)
ev = EventLog(16, 64)
rt = RecTime(e, ev, Board(clock), vfs)
rt.configure(cfg)
run(e, 50, 7000)
rt.save()
saved = [e.pico(24 + k) for k in range(6)]
run(e, 30, 5000)                 # counted after the save: the counter record has it
ahead = [e.pico(24 + k) for k in range(6)]
out['cls'] = rt.tariff.cls       # 2027-01-01 is a holiday? no list: Friday, HP (0)
# A: restart with the meter's record newer than ours
e2 = EnergyRegisters(32)
for k in range(6): e2.restore(24 + k, ahead[k])
rt = RecTime(e2, ev, Board(clock), vfs); rt.configure(cfg)
out['A'] = [per_class(rt), [a - b for a, b in zip(totals(e2), start)]]
# B: restart with the meter's record older than ours (a cut lost the last 20 s)
e3 = EnergyRegisters(32)
for k in range(6): e3.restore(24 + k, saved[k] - 20 * 7000 * (k + 1) * 10**12 // 3600)
rt = RecTime(e3, ev, Board(clock), vfs); rt.configure(cfg)
out['B'] = [per_class(rt), [a - b for a, b in zip(totals(e3), start)]]
run(e3, 10, 3000)
out['B2'] = [per_class(rt), [a - b for a, b in zip(totals(e3), start)]]
# C: a corrupt record: event tariff_corrupt, counters from zero
vfs.f['/rtime'] = b'RT01' + bytes(100)
rt = RecTime(e3, ev, Board(clock), vfs)
out['C'] = [ev.count(35), per_class(rt)]
print('@@JSON', json.dumps(out))
"""


def test_restart_reconciles_with_the_counters(mpy_any):
    got = mpy_any(PROG)
    assert got["cls"] == 0
    for case in ("A", "B", "B2"):
        per, tot = got[case]
        assert per == tot and per[0] > 0, case
    assert got["C"] == [1, [0] * 6]
