"""Register maps (firmware/regmaps) on the MicroPython unix port, decoded here per the
public specs: KSEM internal map + PnP (anchors section 4), SunSpec 1/203 (section 5,
cross-checked with pysunspec2's model JSON and decoder), SDM630 floats (section 6)."""
import csv
import json
import math
import os
import struct
import subprocess
import sys

from pathlib import Path

import pytest
import sunspec2
import sunspec2.device as ssdev

ROOT = Path(__file__).resolve().parent.parent
NQ, NE = 9, 8
U, I, P, Q, S, PF, ANG, F, QD = range(NQ)
L1, L2, L3, TOT = 0, 9, 18, 27
BLOCKS = (L1, L2, L3, TOT)
EI, EX, Q1, Q2, Q3, Q4, SI, SX = range(NE)

# Per block: U mV, I mA, P mW, Q mvar, S mVA, PF 1e-4, angle cdeg, f mHz, quadrant.
# P, Q, S are multiples of the snapshot's power unit (firmware/snapshot.py
# POWER_UNIT_MW = 10 mW); snap_of stores them in that unit.
INST = [
    230123, 10234, 2000460, 500320, 2062000, 9702, 1404, 50012, 1,      # L1: Q1
    231456, 5005, -1100450, 300150, 1140650, -9648, 16500, 50012, 2,    # L2: Q2 (export)
    229000, 3507, -800050, -900050, 1204160, -6644, 22796, 50012, 3,    # L3: Q3
    230193, 18746, 99960, -99580, 4406810, 227, 35429, 50012, 4,        # total: Q4
]
# Counters in mWh/mvarh/mVAh, well past 2**32 in every unit we serve.
ENERGY = [(i + 1) * 9876543219871 + 12345 * i + 55 for i in range(32)]


def snap_dict(inst=INST, energy=ENERGY, status=1):
    return {"inst": list(inst), "e": list(energy), "status": status}


def counter(block, kind, energy=ENERGY):
    return energy[(block // NQ) * NE + kind]


def rnd(v, d):
    """Nearest, halves away from zero."""
    s = -1 if v < 0 else 1
    return s * ((abs(v) + d // 2) // d)


SNIPPET = r'''
import json
from firmware.snapshot import Snapshot, POWER_UNIT_MW
from firmware.regmaps.build import build_spaces
V = json.loads(%s)
def snap_of(d):
    s = Snapshot()
    for i, v in enumerate(d["inst"]):
        s.inst[i] = v // POWER_UNIT_MW if i %% 9 in (2, 3, 4) else v    # mW -> unit
    for i, v in enumerate(d["e"]):
        s.e_hi[i] = v // 1000000
        s.e_lo[i] = v %% 1000000
    s.status = d["status"]
    return s
class Meter:
    def status_now(self):   # as firmware.metering.Meter: the front's status + stale
        return self.front.status
m = Meter()
m.front = snap_of(V["snap"])
h, inp = build_spaces(m, V["ident"], V["config"], keep_rows=V["rows"])
sp = {"h": h, "i": inp}
res = []
for name, addr, count in V["reads"]:
    out = bytearray(b"\xaa" * (2 * max(count, 0) + 6))
    code = sp[name].read(addr, count, out, 3)
    res.append([code, out.hex()])
rows = None
if V["rows"]:
    rows = {}
    for k in ("h", "i"):
        rows[k] = [[r[0], r[1], r[6]] for r in sp[k].rows()]
print("@@JSON")
print(json.dumps({"reads": res, "rows": rows}))
'''


def run_reads(mpy, reads, snap=None, ident=None, config=None, rows=False):
    """Reads [(space 'h'|'i', addr, count)] -> [(code, bytes)]; checks the guard bytes."""
    v = {"snap": snap or snap_dict(), "ident": ident or {}, "config": config or {},
         "reads": reads, "rows": rows}
    got = mpy(SNIPPET % repr(json.dumps(v)))
    out = []
    for (name, addr, count), (code, hx) in zip(reads, got["reads"]):
        b = bytes.fromhex(hx)
        n = 2 * max(count, 0)
        assert b[:3] == b"\xaa" * 3 and b[3 + n:] == b"\xaa" * 3, "wrote outside out[off:off+2n]"
        if code:
            assert b == b"\xaa" * len(b), "a refused read must leave out untouched"
        out.append((code, b[3:3 + n]))
    return (out, got["rows"]) if rows else out


def words(b, fmt):
    return struct.unpack(">" + fmt, b)


# ---------------------------------------------------------------- KSEM internal map

def test_ksem_instantaneous(mpy):
    (c0, tot), (c1, ph) = run_reads(mpy, [("h", 0, 28), ("h", 40, 106)])
    assert c0 == 0 and c1 == 0

    def u32(b, reg, base):
        return struct.unpack_from(">I", b, 2 * (reg - base))[0]

    def i32(b, reg, base):
        return struct.unpack_from(">i", b, 2 * (reg - base))[0]

    for blk, b, base in ((TOT, tot, 0), (L1, ph, 40), (L2, ph, 40), (L3, ph, 40)):
        at = {TOT: 0, L1: 40, L2: 80, L3: 120}[blk]
        p, q, s, quad = INST[blk + P], INST[blk + Q], INST[blk + S], INST[blk + QD]
        assert u32(b, at + 0, base) == (rnd(p, 100) if p >= 0 else 0)        # P+ 0.1 W
        assert u32(b, at + 2, base) == (rnd(-p, 100) if p < 0 else 0)        # P-
        assert u32(b, at + 4, base) == (rnd(q, 100) if q >= 0 else 0)        # Q+
        assert u32(b, at + 6, base) == (rnd(-q, 100) if q < 0 else 0)        # Q-
        for k in range(4):                                                    # QI..QIV
            want = rnd(abs(q), 100) if quad == k + 1 else 0
            assert u32(b, at + 8 + 2 * k, base) == want, (blk, k)
        assert u32(b, at + 16, base) == (rnd(s, 100) if p >= 0 else 0)       # S+
        assert u32(b, at + 18, base) == (rnd(s, 100) if p < 0 else 0)        # S-
        assert i32(b, at + 24, base) == rnd(INST[blk + PF], 10)               # PF 0.001
        if blk == TOT:
            assert u32(b, 26, 0) == INST[TOT + F]                             # f 0.001 Hz
            assert u32(b, 20, 0) == 0 and u32(b, 22, 0) == 0                  # unspecified
        else:
            assert u32(b, at + 20, base) == INST[blk + I]                     # I mA
            assert u32(b, at + 22, base) == INST[blk + U]                     # U mV
    # export shows up only in P-: L2 exports 1100.45 W -> 11005 (0.1 W, rounded)
    assert u32(ph, 82, 40) == 11005 and u32(ph, 80, 40) == 0
    # registers between the phase blocks read 0 (inside the group 40..145)
    assert ph[2 * (66 - 40):2 * (80 - 40)] == bytes(28)


def test_ksem_energies_uint64_exact(mpy):
    (c0, tot), (c1, a), (c2, b) = run_reads(mpy, [("h", 512, 40), ("h", 592, 120),
                                                  ("h", 712, 80)])
    assert c0 == c1 == c2 == 0
    ph = a + b

    def u64(buf, reg, base):
        return struct.unpack_from(">Q", buf, 2 * (reg - base))[0]

    for blk, buf, at, base in ((TOT, tot, 512, 512), (L1, ph, 592, 592),
                               (L2, ph, 672, 592), (L3, ph, 752, 592)):
        e = lambda k: counter(blk, k)  # noqa: E731
        want = [e(EI), e(EX), e(Q1) + e(Q2), e(Q3) + e(Q4), e(Q1), e(Q2), e(Q3), e(Q4),
                e(SI), e(SX)]
        for n, w in enumerate(want):
            got = u64(buf, at + 4 * n, base)
            assert got == w // 100, (blk, n)          # 0.1 Wh, rounded down
            assert got > 2 ** 32
    # energy indexes 31..40 of a phase block are unspecified: 0
    assert ph[2 * (632 - 592):2 * (672 - 592)] == bytes(80)
    # floor, not round: some counters have a remainder >= 50 mWh, where rounding differs
    assert any(c % 100 >= 50 for c in ENERGY)


def test_pnp_block_and_identity(mpy):
    ident = {"product_id": 18530, "hw_version": "2.3", "fw_version": "1.7.9",
             "serial": "71234567890"}
    res = run_reads(mpy, [("h", 8192, 57)], ident=ident)
    (code, b), = res
    assert code == 0
    w = words(b, "57H")
    assert w[0] == 0
    assert w[1] == 18530 and w[2] == 0x0203 and w[3] == 0x0107
    serial = b[2 * 0x24:2 * 0x34]
    assert serial.rstrip(b"\0") == b"71234567890" and len(serial) == 32
    assert w[0x33] == 0       # 0x2033 is the last word of the serial string
    (code, b), = run_reads(mpy, [("h", 0x2001, 1)])
    assert code == 0 and words(b, "H")[0] == 18514          # default product id


# ---------------------------------------------------------------- SunSpec

def sunspec_bytes(mpy, **kw):
    res = run_reads(mpy, [("h", 40000, 70), ("h", 40070, 109)], **kw)
    assert all(c == 0 for c, _ in res)
    return res[0][1] + res[1][1]      # registers 40000..40178


def reg(b, addr, fmt="H"):
    return struct.unpack_from(">" + fmt, b, 2 * (addr - 40000))[0]


def model_points(mid):
    path = os.path.join(os.path.dirname(sunspec2.__file__), "models", "json",
                        "model_%d.json" % mid)
    with open(path) as f:
        pts = json.load(f)["group"]["points"]
    off, out = 0, []
    for p in pts:
        out.append((p["name"], off, p["size"], p["type"]))
        off += p["size"]
    return out, off - 2


def test_sunspec_layout_matches_pysunspec2_json(mpy):
    _, rows = run_reads(mpy, [], rows=True)
    hold = [r for r in rows["h"] if r[0] >= 40000]
    sizes = {"uint16": 1, "int16": 1, "sunssf": 1, "acc32": 2, "bitfield32": 2,
             "uint32": 2, "pad": 1}
    for mid, start in ((1, 40002), (203, 40070)):
        pts, length = model_points(mid)
        assert length == {1: 66, 203: 105}[mid]
        ours = [r for r in hold if start <= r[0] < start + 2 + length]
        assert [(r[2], r[0] - start) for r in ours] == [(n, o) for n, o, _, _ in pts]
        for (name, off, size, typ), r in zip(pts, ours):
            if typ in sizes:
                assert size == sizes[typ], name
    b = sunspec_bytes(mpy)
    assert b[:4] == b"SunS"
    assert (reg(b, 40002), reg(b, 40003)) == (1, 66)
    assert (reg(b, 40070), reg(b, 40071)) == (203, 105)
    assert (reg(b, 40177), reg(b, 40178)) == (0xFFFF, 0)


def test_sunspec_values_and_scale_factors(mpy):
    b = sunspec_bytes(mpy)
    offsets = dict((n, o) for n, o, _, _ in model_points(203)[0])

    def pt(name, fmt="h"):
        return reg(b, 40070 + offsets[name], fmt)

    def sf(name):
        return pt(name)

    # 3 x 63 A x 253 V = 47.8 kW must fit an int16: 10 W steps, as the KSEM (issue 9)
    assert sf("W_SF") == 1 and sf("VA_SF") == 1 and sf("VAR_SF") == 1
    assert sf("A_SF") == -2 and sf("V_SF") == -1 and sf("Hz_SF") == -2 and sf("PF_SF") == -2
    checks = [("A", TOT + I, "A_SF"), ("AphA", L1 + I, "A_SF"), ("AphC", L3 + I, "A_SF"),
              ("PhV", TOT + U, "V_SF"), ("PhVphB", L2 + U, "V_SF"), ("Hz", TOT + F, "Hz_SF"),
              ("W", TOT + P, "W_SF"), ("WphA", L1 + P, "W_SF"), ("WphB", L2 + P, "W_SF"),
              ("WphC", L3 + P, "W_SF"), ("VA", TOT + S, "VA_SF"), ("VAphA", L1 + S, "VA_SF"),
              ("VAR", TOT + Q, "VAR_SF"), ("VARphC", L3 + Q, "VAR_SF")]
    for name, idx, sfn in checks:
        phys = pt(name) * 10.0 ** sf(sfn)
        want = INST[idx] / 1000.0
        assert abs(phys - want) <= 0.5 * 10.0 ** sf(sfn) + 1e-9, name
    # PF in percent with PF_SF = -2, sign of P
    for name, idx in (("PF", TOT + PF), ("PFphB", L2 + PF)):
        assert pt(name) * 10.0 ** sf("PF_SF") == pytest.approx(INST[idx] / 100.0)
    assert pt("WphB") < 0 and pt("W") > 0          # export negative, import positive
    # acc32 energies: floor(mWh / 10**(3+SF)) mod 2**32
    for name, blk, kind in (("TotWhImp", TOT, EI), ("TotWhExpPhA", L1, EX),
                            ("TotVAhImpPhC", L3, SI), ("TotVArhImpQ1", TOT, Q1),
                            ("TotVArhImpQ2PhB", L2, Q2), ("TotVArhExpQ3", TOT, Q3),
                            ("TotVArhExpQ4PhC", L3, Q4)):
        sfn = "TotWh_SF" if "Wh" in name and "VA" not in name else \
            ("TotVAh_SF" if "VAh" in name else "TotVArh_SF")
        d = 10 ** (3 + sf(sfn))
        full = counter(blk, kind) // d
        assert full >= 2 ** 32, "test counters must wrap"
        assert pt(name, "I") == full % 2 ** 32, name
    # not implemented: line-to-line voltages
    for name in ("PPV", "PhVphAB", "PhVphBC", "PhVphCA"):
        assert pt(name, "H") == 0x8000
    assert pt("Evt", "I") == 0
    # model 1 strings and DA
    assert b[2 * 4:2 * 20].rstrip(b"\0") == b"OpenMeter"
    assert reg(b, 40068) == 1 and reg(b, 40069) == 0


def test_sunspec_decoded_by_pysunspec2(mpy):
    b = sunspec_bytes(mpy, ident={"vendor": "ACME", "serial": "SN42"},
                      config={"sunspec_da": 7})
    m1 = ssdev.Model(model_id=1, model_len=66, data=b[4:4 + 136])
    assert m1.error_info == ""
    assert (m1.Mn.value, m1.SN.value, m1.DA.value) == ("ACME", "SN42", 7)
    m = ssdev.Model(model_id=203, model_len=105, data=b[2 * 70:2 * 177])
    assert m.error_info == ""
    assert m.W.cvalue == pytest.approx(INST[TOT + P] / 1000, abs=5)     # W_SF = 1
    assert m.WphB.cvalue == pytest.approx(INST[L2 + P] / 1000, abs=5)
    assert m.AphA.cvalue == pytest.approx(INST[L1 + I] / 1000, abs=0.005)
    assert m.PhVphC.cvalue == pytest.approx(INST[L3 + U] / 1000, abs=0.05)
    assert m.TotWhImp.cvalue == (counter(TOT, EI) // 1000) % 2 ** 32
    assert m.TotVArhExpQ4.cvalue == (counter(TOT, Q4) // 1000) % 2 ** 32
    assert m.PPV.value is None                       # 0x8000 = not implemented


def test_sunspec_scale_factors_from_rating_and_override(mpy):
    inst = list(INST)
    inst[TOT + P] = 40000000          # 40 kW: inside 3 x 63 A x 253 V = 47.8 kW
    inst[L1 + P] = -40000000
    snap = snap_dict(inst)
    b = sunspec_bytes(mpy, snap=snap)
    assert reg(b, 40092, "h") == 1 and reg(b, 40088, "h") == 4000     # W_SF 1: 10 W
    assert reg(b, 40089, "h") == -4000
    # the override trades range for resolution: 1 W steps, 40 kW saturates
    b = sunspec_bytes(mpy, snap=snap, config={"sunspec_sf": {"W_SF": 0}})
    assert reg(b, 40092, "h") == 0
    assert reg(b, 40088, "h") == 32767 and reg(b, 40089, "h") == -32767
    # a 5000 A CT meter: coarser SFs so the rating fits
    b = sunspec_bytes(mpy, config={"i_max_a": 5000})
    assert reg(b, 40076, "h") == 0           # A_SF: 3 x 6000 A fits in A
    assert reg(b, 40092, "h") == 3           # W_SF: 3 x 5000 A x 253 V = 3795 x 1 kW
    assert reg(b, 40124, "h") == 2           # TotWh_SF: ten years inside one acc32 turn
    # default rating: Wh resolution, W in 10 W
    b = sunspec_bytes(mpy)
    assert (reg(b, 40092, "h"), reg(b, 40124, "h")) == (1, 0)


def test_single_phase_wiring_presents_model_201(mpy):
    """1P2W (config phases = 1): SunSpec's single-phase meter model 201 at 40070, laid
    out as model_201.json, phases B and C not implemented, scale factors sized for one
    phase (63 A x 253 V = 15.9 kW -> W_SF 0); decoded by pysunspec2."""
    inst = [0] * (4 * NQ)
    inst[L1:L1 + NQ] = [230500, 63000, 14000000, -3000000, 14520000, 9642, 34790, 50010, 4]
    inst[TOT:TOT + NQ] = inst[L1:L1 + NQ]
    energy = [0] * 32
    energy[0 * NE + EI] = energy[3 * NE + EI] = 12345678901
    snap = snap_dict(inst, energy, status=1 | 2)
    cfg = {"phases": 1}
    [(_, b)], rows = run_reads(mpy, [("h", 40000, 125)], snap=snap, config=cfg, rows=True)
    b += run_reads(mpy, [("h", 40125, 54)], snap=snap, config=cfg)[0][1]
    pts, length = model_points(201)
    assert (reg(b, 40070), reg(b, 40071)) == (201, length) and length == 105
    ours = [r for r in rows["h"] if 40072 <= r[0] < 40177]
    assert [(r[2], r[0] - 40070) for r in ours] == [(n, o) for n, o, _, _ in pts[2:]]
    m = ssdev.Model(model_id=201, model_len=105, data=b[2 * 70:2 * 177])
    assert m.error_info == ""
    assert m.W_SF.value == 0 and m.W.cvalue == 14000 and m.WphA.cvalue == 14000
    assert m.VAR.cvalue == -3000 and m.AphA.cvalue == pytest.approx(63.0)
    assert m.TotWhImp.cvalue == 12345678901 // 1000 % 2 ** 32
    for name in ("AphB", "AphC", "PhVphB", "PhVphC", "WphB", "WphC", "VAphC", "VARphB",
                 "PFphC", "PPVphAB", "TotWhImpPhB", "TotVArhExpQ4PhC"):
        assert getattr(m, name).value is None, name       # not implemented
    assert reg(b, 40177) == 0xFFFF


def test_sunspec_events_missing_sensor(mpy):
    for status, want in ((1, 0), (0, 1 << 7), (1 | 4, 1 << 7)):
        b = sunspec_bytes(mpy, snap=snap_dict(status=status))
        assert reg(b, 40175, "I") == want


# ---------------------------------------------------------------- SDM630

def f32(b, reg_, base=0):
    return struct.unpack_from(">f", b, 2 * (reg_ - base))[0]


def close(a, b):
    return math.isclose(a, b, rel_tol=2e-7, abs_tol=1e-6)


def test_sdm630_values(mpy):
    res = run_reads(mpy, [("i", 0, 80), ("i", 80, 28), ("i", 0xC8, 70), ("i", 0x14E, 48)])
    assert all(c == 0 for c, _ in res)
    lo = res[0][1] + res[1][1]
    mid, hi = res[2][1], res[3][1]
    e = counter
    for n, blk in enumerate((L1, L2, L3)):
        assert close(f32(lo, 0x00 + 2 * n), INST[blk + U] / 1000)
        assert close(f32(lo, 0x06 + 2 * n), INST[blk + I] / 1000)
        assert close(f32(lo, 0x0C + 2 * n), INST[blk + P] / 1000)
        assert close(f32(lo, 0x12 + 2 * n), INST[blk + S] / 1000)
        assert close(f32(lo, 0x18 + 2 * n), INST[blk + Q] / 1000)
        assert close(f32(lo, 0x1E + 2 * n), INST[blk + PF] / 10000)
        a = INST[blk + ANG]
        assert close(f32(lo, 0x24 + 2 * n), (a - 36000 if a >= 18000 else a) / 100)
        assert close(f32(hi, 0x15A + 2 * n, 0x14E), e(blk, EI) / 1e6)
        assert close(f32(hi, 0x160 + 2 * n, 0x14E), e(blk, EX) / 1e6)
        assert close(f32(hi, 0x166 + 2 * n, 0x14E), (e(blk, EI) + e(blk, EX)) / 1e6)
        assert close(f32(hi, 0x16C + 2 * n, 0x14E), (e(blk, Q1) + e(blk, Q2)) / 1e6)
        assert close(f32(hi, 0x172 + 2 * n, 0x14E), (e(blk, Q3) + e(blk, Q4)) / 1e6)
        assert close(f32(hi, 0x178 + 2 * n, 0x14E),
                     sum(e(blk, k) for k in (Q1, Q2, Q3, Q4)) / 1e6)
    assert close(f32(lo, 0x2A), INST[TOT + U] / 1000)
    assert close(f32(lo, 0x2E), INST[TOT + I] / 3000)
    assert close(f32(lo, 0x30), INST[TOT + I] / 1000)
    assert close(f32(lo, 0x34), INST[TOT + P] / 1000)
    assert close(f32(lo, 0x38), INST[TOT + S] / 1000)
    assert close(f32(lo, 0x3C), INST[TOT + Q] / 1000)
    assert close(f32(lo, 0x3E), INST[TOT + PF] / 10000)
    assert close(f32(lo, 0x46), INST[TOT + F] / 1000)
    assert close(f32(lo, 0x48), e(TOT, EI) / 1e6)
    assert close(f32(lo, 0x4A), e(TOT, EX) / 1e6)
    assert close(f32(lo, 0x4C), (e(TOT, Q1) + e(TOT, Q2)) / 1e6)
    assert close(f32(lo, 0x4E), (e(TOT, Q3) + e(TOT, Q4)) / 1e6)
    assert close(f32(lo, 0x50), (e(TOT, SI) + e(TOT, SX)) / 1e6)
    assert close(f32(hi, 0x156, 0x14E), (e(TOT, EI) + e(TOT, EX)) / 1e6)
    assert close(f32(hi, 0x158, 0x14E), sum(e(TOT, k) for k in (Q1, Q2, Q3, Q4)) / 1e6)
    # not measured (demand, THD, L-L, neutral) and reserved addresses: 0.0
    for r in (0x2C, 0x52, 0x54, 0x58, 0x6A):
        assert f32(lo, r) == 0.0
    for r in (0xC8, 0xE0, 0xEA, 0xF8, 0x10C):
        assert f32(mid, r, 0xC8) == 0.0
    assert f32(hi, 0x14E, 0x14E) == 0.0
    # sign: L2 exports
    assert f32(lo, 0x0E) < 0 < f32(lo, 0x0C)


def test_sdm630_total_phase_angle_in_every_quadrant(mpy):
    """0x42: the angle of the total P and Q (issue 9: it read 0.0, also in Q2)."""
    cases = [(3000000, 1000000), (-3000000, 1000000), (-3000000, -1000000),
             (3000000, -1000000), (-5000, 0), (0, 7000), (99956, -99581)]
    reads, snaps = [], []
    for p, q in cases:
        inst = list(INST)
        inst[TOT + P], inst[TOT + Q] = p, q
        snaps.append(snap_dict(inst))
    got = [run_reads(mpy, [("i", 0x42, 2)], snap=sn)[0] for sn in snaps]
    import re
    pu = int(re.search(r"POWER_UNIT_MW = const\((\d+)\)",
                       (ROOT / "firmware" / "snapshot.py").read_text()).group(1))
    for (p, q), (c, b) in zip(cases, got):
        want = math.degrees(math.atan2(q // pu, p // pu))   # as stored in the snapshot
        want = -180.0 if want == 180.0 else want
        assert c == 0 and abs(struct.unpack(">f", b)[0] - want) < 2e-4, (p, q)
    assert 90 < struct.unpack(">f", got[1][1])[0] < 180      # Q2: export, capacitive


# ---------------------------------------------------------------- exceptions, spans

def test_exceptions_at_gaps_and_ends(mpy):
    bad_h = [(28, 1), (39, 1), (26, 3), (144, 3), (146, 1), (552, 1), (591, 2), (792, 1),
             (8191, 1), (8248, 2), (8249, 1), (39999, 1), (39999, 2), (40178, 2),
             (40179, 1), (65535, 1), (0, 126), (0, 0)]
    ok_h = [(0, 28), (27, 1), (40, 106), (145, 1), (512, 40), (592, 125), (791, 1),
            (8192, 57), (40000, 125), (40177, 2), (40178, 1)]
    bad_i = [(0x6C, 2), (0x6A, 4), (0xC6, 2), (0x10E, 2), (0x14C, 2), (0x17E, 2),
             (0x01, 2), (0x00, 3), (0x35, 1), (0x00, 82), (0xFFFF, 1)]
    ok_i = [(0x00, 80), (0x2C, 2), (0x6A, 2), (0xC8, 70), (0x14E, 48), (0x17C, 2)]
    reads = [("h", a, n) for a, n in bad_h + ok_h] + [("i", a, n) for a, n in bad_i + ok_i]
    res = run_reads(mpy, reads)
    codes = [c for c, _ in res]
    nh, ni = len(bad_h), len(bad_i)
    want = ([3 if n in (0, 126) else 2 for _, n in bad_h] + [0] * len(ok_h)
            + [3 if n > 80 else 2 for _, n in bad_i] + [0] * len(ok_i))
    assert codes == want, list(zip(reads, codes))
    assert nh and ni


def test_sdm630_limit_configurable(mpy):
    res = run_reads(mpy, [("i", 0, 82)], config={"sdm630_max_regs": 0})
    assert res[0][0] == 0


def test_split_reads_match_whole_reads(mpy):
    # KSEM and SunSpec allow reads that start or end inside a value (same snapshot).
    reads = [("h", 512, 12), ("h", 513, 2), ("h", 515, 3), ("h", 40000, 125),
             ("h", 40109, 1), ("h", 40003, 30), ("h", 40125, 54)]
    res = run_reads(mpy, reads)
    assert all(c == 0 for c, _ in res)
    whole = res[0][1]
    assert res[1][1] == whole[2:6] and res[2][1] == whole[6:12]
    big = res[3][1]
    assert res[4][1] == big[2 * 109:2 * 110]
    assert res[5][1] == big[6:66]
    b = sunspec_bytes(mpy)
    assert res[6][1] == b[2 * 125:2 * 179]


def test_one_snapshot_per_read(mpy):
    code = r'''
import json
from firmware.snapshot import Snapshot, L1, TOTAL, P_MW
from firmware.regmaps.build import build_spaces
a, b = Snapshot(), Snapshot()
for i in range(32):
    a.e_hi[i] = 1; b.e_hi[i] = 2
a.inst[TOTAL + P_MW] = 1000000; b.inst[TOTAL + P_MW] = 2000000
class Flipper:
    n = 0
    def status_now(self):
        return 1
    @property
    def front(self):
        Flipper.n += 1
        return a if Flipper.n % 2 else b
m = Flipper()
h, inp = build_spaces(m, {}, {})
out = bytearray(250)
res = []
for sp, addr, cnt in ((h, 512, 40), (h, 0, 28), (inp, 0x48, 4), (h, 40088, 90)):
    before = Flipper.n
    c = sp.read(addr, cnt, out, 0)
    res.append([c, Flipper.n - before, bytes(out[:2 * cnt]).hex()])
print("@@JSON")
print(json.dumps(res))
'''
    res = mpy(code)
    for c, n, _ in res:
        assert c == 0 and n == 1
    e = bytes.fromhex(res[0][2])
    vals = {struct.unpack_from(">Q", e, 8 * k)[0] for k in range(10) if k not in (2, 3)}
    assert len(vals) == 1        # every counter from the same snapshot


def test_writes_are_refused(mpy):
    code = r'''
import json
from firmware.snapshot import Snapshot
from firmware.regmaps.build import build_spaces
class M:
    front = Snapshot()
    def status_now(self):
        return self.front.status
h, inp = build_spaces(M(), {}, {})
src = bytearray(8)
res = [h.write(0, 1, src, 0), h.write(40068, 1, src, 0), h.write(28, 1, src, 0),
       inp.write(0, 2, src, 0), h.write(0, 0, src, 0)]
print("@@JSON")
print(json.dumps(res))
'''
    assert mpy(code) == [2, 2, 2, 2, 3]


def test_bad_config_is_refused_at_build(mpy):
    code = r'''
import json
from firmware.snapshot import Snapshot
from firmware.regmaps.build import build_spaces
class M:
    front = Snapshot()
    def status_now(self):
        return self.front.status
res = []
for cfg in ({"i_max_a": 0}, {"sunspec_sf": {"W_SF": 9}}, {"sunspec_sf": {"X_SF": 0}},
            {"sunspec_sf": {"PF_SF": -3}}, {"sunspec_sf_typo": {}}, {"phases": 2},
            {"sunspec_da": 0}, {"i_max_a": "63"}, {"sunspec_sf": {"W_SF": -3}},   # W in 10 mW: finer
            {"sunspec_sf": {"W_SF": -2}}):
    try:
        build_spaces(M(), {}, cfg)
        res.append("ok")
    except ValueError as e:
        res.append("ValueError")
print("@@JSON")
print(json.dumps(res))
'''
    assert mpy(code) == ["ValueError"] * 9 + ["ok"]


def test_page_cache_reads_equal_fresh_encoding(mpy):
    """Reads served from the page cache equal a fresh space's over a run of snapshots:
    new values in place with a new seq, the front swapping between two objects, reads
    that cover one page, several pages, or half a value straddling a page edge."""
    code = r'''
import json, random
from firmware.snapshot import Snapshot, N_COUNTERS
from firmware.regmaps.build import build_spaces
random.seed(11)
r = random.randint
pair = [Snapshot(), Snapshot()]
class M:
    front = pair[0]
    def status_now(self):
        return self.front.status
m = M()
h, inp = build_spaces(m, {}, {})
out1 = bytearray(260)
out2 = bytearray(260)
bad = []
checked = 0
for step in range(60):
    s = pair[step % 2] if step % 3 == 0 else m.front
    for i in range(len(s.inst)):
        s.inst[i] = r(-2000000, 2000000)
    for i in range(N_COUNTERS):
        s.e_hi[i] = r(0, 3000)
        s.e_lo[i] = r(0, 999999)
    s.seq = step + 1
    s.status = 1
    m.front = s
    fh, fi = build_spaces(m, {}, {})     # fresh: every page encoded from s
    for _ in range(6):
        sp, fresh = (h, fh) if r(0, 3) else (inp, fi)
        lo, hi = sp.groups()[r(0, len(sp.groups()) - 1)]
        a = r(lo, hi)
        n = r(1, min(125, hi - a + 1))
        c1 = sp.read(a, n, out1, 1)
        c2 = fresh.read(a, n, out2, 1)
        checked += 1
        if c1 != c2 or (c1 == 0 and out1[1:1 + 2 * n] != out2[1:1 + 2 * n]):
            bad.append([step, a, n, c1, c2])
# Half of a value across a page edge, then the other half after a new cycle.
e = m.front
for half in (0, 1):
    e.e_hi[6] = 1000 + half
    e.seq += 1
    fh, fi = build_spaces(m, {}, {})
    for a, n in ((536, 2), (538, 2), (536, 4)):
        c1 = h.read(a, n, out1, 0)
        c2 = fh.read(a, n, out2, 0)
        if c1 or c2 or out1[:2 * n] != out2[:2 * n]:
            bad.append(["edge", half, a, n])
print("@@JSON")
print(json.dumps({"bad": bad, "checked": checked}))
'''
    res = mpy(code)
    assert res["checked"] == 360 and res["bad"] == []


# Allocation per read (0 bytes, warm and cold, both runtimes): tests/test_encode.py.


# ---------------------------------------------------------------- export tool

def test_export_lists_exactly_what_is_served(mpy, tmp_path):
    p = subprocess.run([sys.executable, str(ROOT / "tools" / "export_maps.py"),
                        "--out", str(tmp_path)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    csvs = {}
    for key in ("ksem", "sunspec", "sdm630"):
        with open(tmp_path / "registers" / (key + ".csv")) as f:
            csvs[key] = list(csv.DictReader(f))
        assert (tmp_path / "registers" / (key + ".md")).exists()
    assert "registers/ksem.md" in (tmp_path / "registers.md").read_text()
    _, rows = run_reads(mpy, [], rows=True)
    sizes = {"uint16": 1, "int16": 1, "sunssf": 1, "uint32": 2, "int32": 2, "acc32": 2,
             "float32": 2, "bitfield32": 2, "uint64": 4}
    exported_h = [(int(r["address"]), r["name"]) for r in csvs["ksem"] + csvs["sunspec"]]
    exported_i = [(int(r["address"]), r["name"]) for r in csvs["sdm630"]]
    assert exported_h == [(a, n) for a, _, n in rows["h"]]
    assert exported_i == [(a, n) for a, _, n in rows["i"]]
    # every exported row can be read whole, and its type has the register count it claims
    reads = []
    for key, space in (("ksem", "h"), ("sunspec", "h"), ("sdm630", "i")):
        for r in csvs[key]:
            n = int(r["registers"])
            assert sizes.get(r["type"], n) == n, r
            reads.append((space, int(r["address"]), n))
    res = run_reads(mpy, reads)
    assert [c for c, _ in res] == [0] * len(reads)
    # a sample cross-check of value and documented scale
    by = {(s, a): b for (s, a, _), (_, b) in zip(reads, res)}
    row = next(r for r in csvs["ksem"] if r["name"] == "P+ L1")
    assert struct.unpack(">I", by[("h", int(row["address"]))])[0] * float(row["scale"]) == \
        pytest.approx(INST[L1 + P] / 1000, abs=0.05)
    row = next(r for r in csvs["sdm630"] if r["name"] == "import kWh")
    assert row["unit"] == "kWh"
    assert struct.unpack(">f", by[("i", int(row["address"]))])[0] == \
        pytest.approx(counter(TOT, EI) / 1e6, rel=1e-6)
    row = next(r for r in csvs["sunspec"] if r["name"] == "W")
    assert row["scale"] == "10^W_SF (W_SF = 1)"


def test_repo_docs_are_current(tmp_path):
    """docs/registers* must be what the tool writes now (regenerate with the tool)."""
    docs = ROOT / "docs"
    if not (docs / "registers.md").exists():
        pytest.skip("docs not generated yet: run tools/export_maps.py")
    p = subprocess.run([sys.executable, str(ROOT / "tools" / "export_maps.py"),
                        "--out", str(tmp_path)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    for rel in ["registers.md"] + ["registers/%s.%s" % (k, x) for k in
                                   ("ksem", "sunspec", "sdm630") for x in ("csv", "md")]:
        assert (tmp_path / rel).read_text() == (docs / rel).read_text(), \
            "%s is stale: run tools/export_maps.py" % rel


def test_sunspec_event_goes_stale_when_the_meter_stops(mpy_any):
    """A real Meter on the sim board: while cycles are published Evt reads 0; once polling
    stops and the virtual clock runs past the cycle time-out, Evt reads Missing_Sensor
    (meter.status_now() at read time) although the page was warm from the same snapshot;
    a new cycle clears it again."""
    res = mpy_any(r'''
import json
from tools.mpy.cycle_harness import Harness
from firmware.regmaps.build import build_spaces
h = Harness({"frequency_hz": 50.0, "phases": {
    "L1": {"v_rms": 230.0, "i_rms": 5.0, "phi_deg": 10.0}}})
h.run_windows(3)
hold, _ = build_spaces(h.meter, {}, {})
out = bytearray(8)
def evt():
    c = hold.read(40174, 3, out, 0)     # PF_SF(40174) .. Evt(40175, 40176)
    return [c, out[2] << 24 | out[3] << 16 | out[4] << 8 | out[5], h.meter.front.seq]
res = [evt(), evt()]
h.clock.advance_us(250000)          # within the time-out (1.5 cycles): still fresh
res.append(evt())
h.clock.advance_us(2000000)         # no poll for 2 s: the engine is dead
res.append(evt())
h.run_windows(2)
res.append(evt())
print("@@JSON", json.dumps(res))
''')
    fresh, warm, inside, dead, back = res
    assert fresh[:2] == [0, 0] and warm == fresh and inside[:2] == [0, 0]
    assert dead == [0, 1 << 7, fresh[2]]          # same snapshot, now stale
    assert back[:2] == [0, 0] and back[2] > fresh[2]


def test_power_unit_is_one_constant(mpy):
    """regmaps' P_UNIT_MW (must equal firmware.snapshot's power unit) is the one place the
    maps learn the unit of P, Q, S: with 10 mW units and the snapshot's powers divided by
    10, every register of every map reads the same, and a SunSpec SF finer than the unit
    is refused."""
    code = r'''
import json
unit = %d
import firmware.regmaps.table as t
t.P_UNIT_MW = unit
from firmware.snapshot import Snapshot, P_MW, Q_MVAR, S_MVA, BLOCKS
from firmware.regmaps.build import build_spaces
V = json.loads(%r)
s = Snapshot()
for i, v in enumerate(V):
    s.inst[i] = v // unit if i %% 9 in (P_MW, Q_MVAR, S_MVA) else v
s.status = 1
class M:
    front = s
    def status_now(self):
        return 1
h, inp = build_spaces(M(), {}, {})
out = bytearray(256)
res = []
for sp, a, n in ((h, 0, 28), (h, 40, 106), (h, 40070, 108), (inp, 0, 80), (inp, 0x50, 28)):
    sp.read(a, n, out, 0)
    res.append(bytes(out[:2 * n]).hex())
try:
    build_spaces(M(), {}, {"sunspec_sf": {"W_SF": -3}})   # 1 mW steps
    res.append("ok")
except ValueError:
    res.append("refused")
print("@@JSON", json.dumps(res))
'''
    inst = [v - v % 10 if i % NQ in (P, Q, S) else v for i, v in enumerate(INST)]
    one = mpy(code % (1, json.dumps(inst)))
    ten = mpy(code % (10, json.dumps(inst)))
    assert one[:-1] == ten[:-1] and one[-1] == "ok" and ten[-1] == "refused"
