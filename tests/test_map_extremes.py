"""Every scaled point of every map at the corners of the rated range (issue 9): rated
current on every phase at 253 V (230 V + 10 %), all active (import, then export) or
all reactive (Q1/Q2, then Q3/Q4), for direct 63 A meters and CT primaries from 1 A to
5000 A, three-phase (SunSpec model 203) and single-phase (model 201). Nothing inside the rating may saturate; each value must read within half a
step of the physical value, decoded here from the public specs (KSEM uint32/int32 in
0.1 units, SunSpec int16 x 10^SF, SDM630 float32)."""
import math
import struct

import pytest

from test_regmaps import run_reads

NQ = 9
U, I, P, Q, S, PF, ANG, F, QD = range(NQ)
BLOCKS = (0, 9, 18)
TOT = 27
U_MAX_MV = 253000


def corner(i_max_a, phases, mode):
    """Snapshot dict at the rating: mode 'P+', 'P-', 'Q+', 'Q-'."""
    inst = [0] * (4 * NQ)
    u, i = U_MAX_MV, i_max_a * 1000
    s = u * i // 1000                        # mV x mA -> mVA (x 1e-3)
    p = {"P+": s, "P-": -s}.get(mode, 0)
    q = {"Q+": s, "Q-": -s}.get(mode, 0)
    quad = {"P+": 1, "P-": 3, "Q+": 2, "Q-": 4}[mode]   # on the axes: any adjacent one
    live = BLOCKS[:phases]
    for blk in live:
        inst[blk + U], inst[blk + I], inst[blk + P], inst[blk + Q] = u, i, p, q
        inst[blk + S] = s
        inst[blk + PF] = 10000 * p // s
        inst[blk + F] = 50000
        inst[blk + QD] = quad
    n = len(live)
    inst[TOT + U], inst[TOT + I] = u, n * i
    inst[TOT + P], inst[TOT + Q], inst[TOT + S] = n * p, n * q, n * s
    inst[TOT + PF], inst[TOT + F], inst[TOT + QD] = 10000 * p // s, 50000, quad
    return {"inst": inst, "e": [0] * 32, "status": 1 | (2 if phases == 1 else 0)}


def ksem_checks(b0, b40, inst):
    """(name, register value, physical value in register units) for the KSEM blocks."""
    out = []
    for blk, base, b, off in ((TOT, 0, b0, 0), (0, 40, b40, 40), (9, 80, b40, 40),
                              (18, 120, b40, 40)):
        def u32(r):
            return struct.unpack_from(">I", b, 2 * (r - off))[0]
        p, q, s = inst[blk + P], inst[blk + Q], inst[blk + S]
        out += [("P+", u32(base), max(p, 0) / 100), ("P-", u32(base + 2), max(-p, 0) / 100),
                ("Q+", u32(base + 4), max(q, 0) / 100), ("Q-", u32(base + 6), max(-q, 0) / 100),
                ("S+", u32(base + 16), (s if p >= 0 else 0) / 100),
                ("S-", u32(base + 18), (s if p < 0 else 0) / 100)]
        if blk != TOT:
            out += [("I", u32(base + 20), inst[blk + I]), ("U", u32(base + 22), inst[blk + U])]
    return out


SUNSPEC_203 = (("A", TOT + I, "A_SF", 1000), ("AphA", I, "A_SF", 1000),
               ("PhV", TOT + U, "V_SF", 1000), ("PhVphA", U, "V_SF", 1000),
               ("W", TOT + P, "W_SF", 1000), ("WphA", P, "W_SF", 1000),
               ("VA", TOT + S, "VA_SF", 1000), ("VAphA", S, "VA_SF", 1000),
               ("VAR", TOT + Q, "VAR_SF", 1000), ("VARphA", Q, "VAR_SF", 1000),
               ("PF", TOT + PF, "PF_SF", 100), ("Hz", TOT + F, "Hz_SF", 1000))
# Model 203 offsets from the model start (pysunspec2 model_203.json, checked in
# test_regmaps.test_sunspec_layout_matches_pysunspec2_json).
OFF_203 = {"A": 2, "AphA": 3, "A_SF": 6, "PhV": 7, "PhVphA": 8, "V_SF": 15, "Hz": 16,
           "Hz_SF": 17, "W": 18, "WphA": 19, "W_SF": 22, "VA": 23, "VAphA": 24, "VA_SF": 27,
           "VAR": 28, "VARphA": 29, "VAR_SF": 32, "PF": 33, "PF_SF": 37}


@pytest.mark.parametrize("i_max, phases", [(1, 3), (5, 3), (63, 3), (100, 3), (800, 3),
                                           (5000, 3), (63, 1), (1, 1), (5000, 1)])
@pytest.mark.parametrize("mode", ["P+", "P-", "Q+", "Q-"])
def test_no_point_saturates_inside_the_rating(mpy, i_max, phases, mode):
    snap = corner(i_max, phases, mode)
    inst = snap["inst"]
    reads = [("h", 0, 28), ("h", 40, 106), ("h", 40070, 108), ("i", 0, 80)]
    res = run_reads(mpy, reads, snap=snap, config={"i_max_a": i_max, "phases": phases})
    assert [c for c, _ in res] == [0] * 4
    (_, b0), (_, b40), (_, ss), (_, sdm) = res
    for name, got, want in ksem_checks(b0, b40, inst):
        assert abs(got - want) <= 0.5, (name, got, want)

    def h(name):
        return struct.unpack_from(">h", ss, 2 * OFF_203[name])[0]

    for name, idx, sfn, per_unit in SUNSPEC_203:
        sf = h(sfn)
        raw = h(name)
        want = inst[idx] / per_unit
        assert abs(raw) < 32767, (name, raw, "saturated inside the rating")
        assert abs(raw * 10.0 ** sf - want) <= 0.5 * 10.0 ** sf + 1e-9, (name, raw, sf, want)
    # SDM630 floats: W, VA, var, A, V per phase and total, relative to float32 precision
    for reg_, idx, per_unit in ((0x00, U, 1000), (0x06, I, 1000), (0x0C, P, 1000),
                                (0x12, S, 1000), (0x18, Q, 1000), (0x34, TOT + P, 1000),
                                (0x38, TOT + S, 1000), (0x3C, TOT + Q, 1000),
                                (0x30, TOT + I, 1000)):
        got = struct.unpack_from(">f", sdm, 2 * reg_)[0]
        assert math.isclose(got, inst[idx] / per_unit, rel_tol=1e-7, abs_tol=1e-9), reg_
