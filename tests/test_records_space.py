"""The records-time register space (firmware/regmaps/records.py) read word by word and
checked against the objects' own values, packed here with struct (big-endian, high word
first); partial reads inside a u64 and the write rules."""
import struct

PROG = r"""
import json
from boards.sim.clock import VirtualClock
from firmware.energy import EnergyRegisters
from firmware.events import EventLog
from firmware import config
from firmware.rtime import RecTime
from firmware.regmaps.records import RecordsSpace
from boards.sim.board import SimBoard
class Board:
    def __init__(self, c): self.clock = c
    def time_utc(self): return 1782864000        # 2026-07-01 00:00 UTC, CEST
cfg = config.validate({'demand': {'ps_w': [5000, 0, 0, 0, 0, 0]},
                       'losses': {'enabled': True, 'kj_import': 1010, 'kf_w': 500}},
                      SimBoard.CALIBRATION)
c = VirtualClock()
e = EnergyRegisters(32)
rt = RecTime(e, EventLog(16, 64), Board(c), None)
rt.configure(cfg)
for s in range(1300):
    for k in range(8):
        e.add(24 + k, (6000 + 100 * k) * 10**12 // 3600)
    c.advance_us(1000000)
    rt.step(1000)
sp = RecordsSpace(rt, None)
out = bytearray(2 * 0x120)
r1 = sp.read(0xC800, 0x100, out, 0)
r2 = sp.read(0xC900, 0x20, out, 0x200)
part = bytearray(4)
r3 = sp.read(0xC821, 2, part, 0)
print('@@JSON', json.dumps({'codes': [r1, r2, sp.read(0xCBFF, 2, part, 0),
    sp.write(0xC800, 2, b'\x6a\x00\x00\x00', 0, None), sp.write(0xC802, 1, b'\x00\x01', 0)],
    'regs': out.hex(), 'part': part.hex(), 'utc': rt.wall.utc(), 'cls': rt.tariff.cls,
    'imp0': rt.tariff.milli(0, 0), 'q4': rt.tariff.milli(0, 5), 'dv': list(rt.demand.v),
    'warn': rt.demand.warning, 's5': rt.demand.s5_va, 'last': rt.demand.last_w,
    'corr': [rt.losses.milli(i) for i in range(4)]}))
"""


def words(b, a, n):
    return b[2 * a:2 * (a + n)]


def test_registers_match_the_objects(mpy_any):
    g = mpy_any(PROG)
    assert g["codes"] == [0, 0, 2, 1, 2]          # no unlock owner: 01; elsewhere 02
    b = bytes.fromhex(g["regs"])
    assert words(b, 0, 2) == struct.pack(">I", g["utc"])
    assert struct.unpack(">HH", words(b, 2, 2)) == (1, 1)
    # local time: CEST (+120 min); 1300 s after midnight UTC = 02:21:40 local
    assert struct.unpack(">7Hh", words(b, 6, 8)) == (2026, 7, 1, 2, 21, 40, 2, 120)
    assert struct.unpack(">HHH", words(b, 0xE, 3)) == (g["cls"], 1, int(g["warn"]))
    assert struct.unpack(">IIHH", words(b, 0x11, 6)) == (g["s5"], g["last"], 10, 1)
    dv = g["dv"]
    assert struct.unpack(">II", words(b, 0x17, 4)) == (dv[36], dv[37])
    assert words(b, 0x20, 4) == struct.pack(">Q", g["imp0"] // 100)
    assert words(b, 0x20 + 20, 4) == struct.pack(">Q", g["q4"] // 100)
    assert bytes.fromhex(g["part"]) == words(b, 0x21, 2)
    # class 0's demand: max W at 0xC8B0, its time, overrun; previous bill after
    assert struct.unpack(">6I", words(b, 0xB0, 12)) == (dv[0], dv[12], dv[24], dv[1],
                                                      dv[13], dv[25])
    # two whole 10-min periods at 6 kW over Ps 5 kW: 6000 W max, 1200 s overrun
    assert dv[0] == 6000 and dv[24] == 1200 and g["last"] == 6000 and g["warn"]
    c = bytes.fromhex(g["regs"])[0x200:]
    assert [struct.unpack(">Q", c[8 * i:8 * i + 8])[0] for i in range(4)] == \
        [v // 100 for v in g["corr"]]
    assert g["corr"][0] > 0


def test_private_consts_mirror_the_names_they_stand_for():
    # The records modules copy a few constants of other modules as private consts (no
    # global slot on a board; regmaps/rings.py must not import firmware/records.py, which
    # loads only with records on): each must equal the name it mirrors. On CPython (the
    # micropython.const stand-in of tools/export_maps.py) private consts are globals.
    import sys
    from conftest import ROOT
    sys.path.insert(0, str(ROOT / "tools"))
    import export_maps  # noqa: F401  (installs the micropython stand-in)
    from firmware import snapshot as snp, records, tariff, rtime
    from firmware.regmaps import rings
    for name in ("U_MV", "I_MA", "F_MHZ", "NQ", "TOTAL", "NE", "ST_STALE"):
        assert getattr(records, "_" + name) == getattr(snp, name), name
    assert (rings._LC, rings._KS, rings._KS_PERIOD) == (records.LC, records.KS,
                                                         records.KS_PERIOD)
    assert rings._REGS == ((records.LC_REC - 2) // 2, (records.KS_REC - 2) // 2)
    assert rings._PER == records._PER
    assert rtime._CLASSES == tariff.MAX_CLASSES
