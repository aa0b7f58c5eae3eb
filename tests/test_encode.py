"""The read path's kernels (firmware/regmaps/enc.py, enc_viper.py, firmware/modbus/crc.py)
against independent truth computed here: exact rationals for float32 (nearest, ties to
even), exact integers for the scaled and saturated values and the 64-bit counters, a
bitwise CRC-16/MODBUS. The viper kernels run on the unix port, the plain ones on both
runtimes (the WebAssembly port has no native emitter); both must give the same bytes.
Allocation per read of the real maps is asserted on both runtimes (bytes are stable)."""
import json
import math
import random
import re
import struct
from fractions import Fraction
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NQ, NE = 9, 8
# table.py type and kind codes (firmware/regmaps/table.py)
U16, I16, U32, I32, U64, ACC32, F32, SSF = 0, 1, 2, 3, 4, 5, 6, 7
INST, IMP, EXP, QUAD, ENERGY, ESUM, ANGLE, PQANGLE = 4, 5, 6, 7, 8, 9, 10, 12
MILLI = 1000000


def test_plain_and_viper_kernels_are_the_same_code():
    def kernels(name):
        text = (ROOT / "firmware" / "regmaps" / name).read_text()
        body = text.split("# @@KERNELS", 1)[1]
        return [ln for ln in body.splitlines() if ln.strip() != "@micropython.viper"]

    a, b = kernels("enc.py"), kernels("enc_viper.py")
    assert a == b and len(a) > 100

    def consts(name):
        text = (ROOT / "firmware" / "regmaps" / name).read_text()
        return re.findall(r"^(_\w+ = const\(\w+\))$", text, re.M)

    assert consts("enc.py") == consts("enc_viper.py") and len(consts("enc.py")) == 16


def test_viper_sources_have_no_long_int_literals():
    """On a 32-bit port a literal of 2**30 or more is a long-int object that viper cannot
    mix with machine ints (a compile error on the board only: the unix port here is
    64-bit), so the viper kernels must not contain one."""
    for rel in ("firmware/regmaps/enc_viper.py", "firmware/modbus/crc_viper.py"):
        code = re.sub(r'""".*?"""|#.*', "", (ROOT / rel).read_text(), flags=re.S)
        lits = [int(x, 0) for x in re.findall(r"\b(0x[0-9a-fA-F]+|\d+)\b", code)]
        assert lits and max(lits) < 2 ** 30, rel


# ---------------------------------------------------------------- independent truth

def f32_nearest(x):
    """Bytes of the float32 nearest to the rational x, ties to even (no double rounding)."""
    if x == 0:
        return bytes(4)
    f = struct.unpack(">f", struct.pack(">f", float(x)))[0]
    bits = struct.unpack(">I", struct.pack(">f", f))[0]
    cands = [bits - 1, bits, bits + 1] if f != 0 else [bits]
    best = None
    for c in cands:
        v = Fraction(struct.unpack(">f", struct.pack(">I", c))[0])
        key = (abs(v - x), c & 1)
        if best is None or key < best[0]:
            best = (key, c)
    return struct.pack(">I", best[1])


def rnd(v, d):
    q, r = divmod(abs(v), d)
    if 2 * r >= d:
        q += 1
    return -q if v < 0 else q


def clamp(v, lo, hi):
    return max(lo, min(hi, v))


def expected(row, inst, ehi, elo):
    addr, typ, kind, a, b, div = row[:6]
    if kind in (ENERGY, ESUM):
        mask = 1 << b if kind == ENERGY else b
        base = (a // NQ) * NE
        x = sum((ehi[base + k] * MILLI + elo[base + k]) for k in range(NE) if mask >> k & 1)
        if typ == F32:
            return f32_nearest(Fraction(x, div))
        x //= div
        return struct.pack(">Q", x) if typ == U64 else struct.pack(">I", x % 2 ** 32)
    if kind == INST:
        v = inst[a]
    elif kind == IMP:
        v = abs(inst[a]) if inst[b] >= 0 else 0
    elif kind == EXP:
        v = abs(inst[a]) if inst[b] < 0 else 0
    elif kind == QUAD:
        v = abs(inst[a + 3]) if inst[a + 8] == b else 0
    else:  # ANGLE
        v = inst[a] - 36000 if inst[a] >= 18000 else inst[a]
    if typ == F32:
        return f32_nearest(Fraction(v, div))
    v = rnd(v, div)
    if typ == U16:
        return struct.pack(">H", clamp(v, 0, 0xFFFF))
    if typ == I16:
        return struct.pack(">h", clamp(v, -32767, 32767))
    if typ == U32:
        return struct.pack(">I", clamp(v, 0, 0x7FFFFFFF))
    return struct.pack(">i", clamp(v, -0x7FFFFFFF, 0x7FFFFFFF))


def random_rows(rng, n):
    rows, addr = [], 0
    divs = (1, 10, 100, 1000, 3000, 10000, 100000, 7)
    e_divs = (1, 10, 100, 1000, 1000000, 10000000, 1000000000)
    for i in range(n):
        kind = rng.choice((INST, IMP, EXP, QUAD, ENERGY, ESUM, ANGLE))
        blk = NQ * rng.randrange(4)
        if kind in (ENERGY, ESUM):
            typ = rng.choice((U64, ACC32, F32))
            div = MILLI if typ == F32 else rng.choice(e_divs)
            b = rng.randrange(NE) if kind == ENERGY else rng.randrange(1, 256)
            a = blk
        else:
            typ = rng.choice((U16, I16, U32, I32, F32))
            div = rng.choice(divs)
            a = blk + (6 if kind == ANGLE else 0 if kind == QUAD else rng.randrange(NQ))
            b = rng.randrange(1, 5) if kind == QUAD else blk + rng.randrange(NQ)
        rows.append((addr, typ, kind, a, b, div, "r%d" % i))
        addr += {U16: 1, I16: 1, U32: 2, I32: 2, U64: 4, ACC32: 2, F32: 2}[typ]
    return rows, addr


def random_snap(rng):
    edge = (0, 1, -1, 2 ** 31 - 1, -(2 ** 31 - 1), 2 ** 30 - 1, -(2 ** 30), 32767, 32768,
            -32768, 65535, 65536, 499, 500, 501, -500, 16777215, 16777217, 33554431)
    inst = []
    for i in range(4 * NQ):
        if i % NQ == 8:
            inst.append(rng.randrange(5))            # quadrant
        elif i % NQ == 6:
            inst.append(rng.randrange(36000))        # angle
        elif rng.random() < 0.3:
            inst.append(rng.choice(edge))
        else:
            inst.append(rng.randrange(-2 ** rng.randrange(1, 31), 2 ** rng.randrange(1, 31)))
    # counters: whole kWh below 2**28 so a sum of eight stays below 2**31
    ehi = [rng.choice((0, 1, 2 ** 28 - 1, rng.randrange(2 ** rng.randrange(1, 28))))
           for _ in range(4 * NE)]
    elo = [rng.choice((0, 999999, 500000, rng.randrange(MILLI))) for _ in range(4 * NE)]
    return inst, ehi, elo


KERNEL_SNIPPET = r'''
import json
from firmware.snapshot import Snapshot
from firmware.regmaps.table import Space
V = json.loads(%s)
mods = []
for name in V["kernels"]:
    try:
        mods.append((name, __import__("firmware.regmaps." + name, None, None, ["x"])))
    except SyntaxError:
        pass
class M:
    front = Snapshot()
    def status_now(self):
        return 1
rows = [tuple(r) for r in V["rows"]]
sp = Space(M(), rows, ((0, V["nregs"] - 1),))
s = Snapshot()
res = {}
for name, k in mods:
    out = []
    for inst, ehi, elo in V["snaps"]:
        for i in range(len(inst)):
            s.inst[i] = inst[i]
        for i in range(len(ehi)):
            s.e_hi[i] = ehi[i]
            s.e_lo[i] = elo[i]
        sp.gen += 1                       # a new cycle: every page stale
        k.refresh(sp, s, 0, len(sp.stamp) - 1, 0)
        out.append(bytes(sp.image).hex())
    res[name] = out
print("@@JSON", json.dumps(res))
'''


def test_kernels_match_exact_arithmetic(mpy_any):
    rng = random.Random(6)
    rows, nregs = random_rows(rng, 300)
    snaps = [random_snap(rng) for _ in range(12)]
    got = mpy_any(KERNEL_SNIPPET % repr(json.dumps(
        {"rows": rows, "nregs": nregs, "snaps": snaps, "kernels": ["enc", "enc_viper"]})))
    assert "enc" in got
    if mpy_any.__name__ == "run_mpy":
        assert "enc_viper" in got          # the unix port has the native emitter
        assert got["enc_viper"] == got["enc"]
    bad = []
    for img_hex, (inst, ehi, elo) in zip(got["enc"], snaps):
        img = bytes.fromhex(img_hex)
        for r in rows:
            n = 2 * {U16: 1, I16: 1, U32: 2, I32: 2, U64: 4, ACC32: 2, F32: 2}[r[1]]
            want = expected(r, inst, ehi, elo)
            if img[2 * r[0]:2 * r[0] + n] != want:
                bad.append((r, img[2 * r[0]:2 * r[0] + n].hex(), want.hex()))
    assert bad == []


def test_float32_is_nearest_at_rounding_edges(mpy_any):
    """Values on and beside float32 rounding ties, above and below 2**24."""
    vals = []
    for base in (2 ** 24, 2 ** 25, 2 ** 26, 2 ** 30, 2 ** 31 - 2 ** 7):
        for d in range(-9, 10):
            vals.append(base + d)
    vals += [v * 1000 + 500 for v in (1048575, 2097151, 1, 3)] + [1, 7, 999, 1001]
    assert all(abs(v) < 2 ** 31 for v in vals)   # int32 sources, as on a board
    rows = []
    addr = 0
    for i, v in enumerate(vals):
        for div in (1, 1000, 3000, 1000000):
            rows.append((addr, F32, INST, i % 36, 0, div, "v"))
            addr += 2
    snaps = []
    for k in range(0, len(vals), 36):
        chunk = vals[k:k + 36] + [0] * (36 - len(vals[k:k + 36]))
        snaps.append((chunk, [0] * 32, [0] * 32))
    got = mpy_any(KERNEL_SNIPPET % repr(json.dumps(
        {"rows": rows, "nregs": addr, "snaps": snaps, "kernels": ["enc", "enc_viper"]})))
    for name, imgs in got.items():
        for img_hex, (inst, _, _) in zip(imgs, snaps):
            img = bytes.fromhex(img_hex)
            for r in rows:
                assert img[2 * r[0]:2 * r[0] + 4] == f32_nearest(Fraction(inst[r[3]], r[5])), \
                    (name, inst[r[3]], r[5])


def test_cordic_table_is_atan():
    text = (ROOT / "firmware" / "regmaps" / "enc.py").read_text()
    tab = [int(x) for x in re.search(r"_ATAN = array\(\"i\", \(([^)]*)\)", text).group(1)
           .replace("\n", " ").split(",")]
    assert tab == [round(math.degrees(math.atan(2.0 ** -k)) * 1e5) for k in range(22)]


def test_pq_angle_against_atan2(mpy_any):
    """SDM630 0x42: atan2(Q, P) of a block in degrees, -180..180, from the CORDIC
    kernel, within 2e-4 degree of math.atan2 over all quadrants, the axes, tiny and
    int32-sized powers."""
    rng = random.Random(42)
    pairs = [(0, 0), (1, 0), (-1, 0), (0, 1), (0, -1), (5, 5), (-5, 5), (-5, -5), (5, -5),
             (2 ** 31 - 1, 2 ** 31 - 1), (-(2 ** 31 - 1), 1), (-(2 ** 31 - 1), -1),
             (1, 2 ** 31 - 1), (3, -7), (1000000, 1), (-1000000, 0), (100, -100000000)]
    while len(pairs) < 4 * 60:
        m = 2 ** rng.randrange(1, 31)
        pairs.append((rng.randrange(-m, m), rng.randrange(-m, m)))
    rows = [(2 * k, F32, PQANGLE, 9 * k, 0, 100000, "a%d" % k) for k in range(4)]
    snaps = []
    for j in range(0, len(pairs), 4):
        inst = [0] * 36
        for k, (p, q) in enumerate(pairs[j:j + 4]):
            inst[9 * k + 2], inst[9 * k + 3] = p, q
        snaps.append((inst, [0] * 32, [0] * 32))
    got = mpy_any(KERNEL_SNIPPET % repr(json.dumps(
        {"rows": rows, "nregs": 8, "snaps": snaps, "kernels": ["enc", "enc_viper"]})))
    if "enc_viper" in got:
        assert got["enc_viper"] == got["enc"]
    worst = 0
    for img_hex, (inst, _, _) in zip(got["enc"], snaps):
        img = bytes.fromhex(img_hex)
        for k in range(4):
            p, q = inst[9 * k + 2], inst[9 * k + 3]
            deg = struct.unpack_from(">f", img, 4 * k)[0]
            want = math.degrees(math.atan2(q, p)) if (p or q) else 0.0
            if want == 180.0:
                want = -180.0       # folded as the per-phase chip angle
            assert -180 <= deg < 180 or deg == -180
            worst = max(worst, abs(deg - want))
            assert abs(deg - want) < 2e-4, (p, q, deg, want)
    assert worst > 0          # the check really compared computed angles


# ---------------------------------------------------------------- CRC

def crc_bitwise(b):
    c = 0xFFFF
    for x in b:
        c ^= x
        for _ in range(8):
            c = (c >> 1) ^ 0xA001 if c & 1 else c >> 1
    return c


def test_crc_paths_match_a_bitwise_reference(mpy_any):
    rng = random.Random(9)
    bufs = [bytes(rng.randrange(256) for _ in range(rng.randrange(0, 300))) for _ in range(40)]
    bufs += [b"123456789", bytes(256), b"\xff" * 255]
    got = mpy_any(r"""
import json
from firmware.modbus import crc
B = [bytes.fromhex(h) for h in json.loads(%r)]
res = {"path": crc.PATH, "plain": [crc.crc16_plain(b) for b in B],
       "chosen": [crc.crc16(b) for b in B], "part": crc.crc16(b"xx123456789yy", 2, 11)}
if crc.crc16_viper:
    res["viper"] = [crc.crc16_viper(b) for b in B]
print("@@JSON", json.dumps(res))
""" % json.dumps([b.hex() for b in bufs]))
    want = [crc_bitwise(b) for b in bufs]
    assert want[-3] == 0x4B37            # CRC-16/MODBUS catalogue check value
    assert got["plain"] == want and got["chosen"] == want and got["part"] == 0x4B37
    if mpy_any.__name__ == "run_mpy":
        assert got["path"] == "viper" and got["viper"] == want
    else:
        assert got["path"] == "plain" and "viper" not in got


# ---------------------------------------------------------------- allocation

ALLOC_SNIPPET = r'''
import gc, json
from firmware.snapshot import Snapshot, N_COUNTERS
from firmware.regmaps.build import build_spaces
pair = (Snapshot(), Snapshot())
for k, s in enumerate(pair):
    for i in range(len(s.inst)):
        s.inst[i] = (i * 7919 + k * 1000003) %% 2000001 - 1000000
    for i in range(N_COUNTERS):
        # 2.5e8 kWh: ten years at 3 x 5000 A x 253 V is 3.3e8 (sums of 4 stay < 2**30)
        s.e_hi[i] = 250000000 + i * 1000 + k
        s.e_lo[i] = 999999 - i
    s.status = 1
class M:
    def __init__(self):
        self.front = pair[0]     # an instance attribute from the start (no dict growth)
    def status_now(self):
        return self.front.status
m = M()
h, inp = build_spaces(m, {}, {%s})
out = bytearray(256)
def per_read(sp, a, n, cold, reps):
    gc.collect()
    gc.disable()
    a0 = gc.mem_alloc()
    for k in range(reps):
        if cold:
            s = pair[k & 1]
            s.seq += 2
            m.front = s
        sp.read(a, n, out, 0)
    a1 = gc.mem_alloc()
    gc.enable()
    return a1 - a0
res = []
for sp, a, n in ((h, 0, 28), (h, 40, 106), (h, 512, 40), (h, 592, 125), (h, 8192, 57),
                 (h, 40000, 125), (h, 40070, 108), (inp, 0, 80), (inp, 0x50, 28),
                 (inp, 0xC8, 70), (inp, 0x14E, 48)):
    sp.read(a, n, out, 0)
    res.append([a, n, per_read(sp, a, n, False, 50), per_read(sp, a, n, True, 50)])
print("@@JSON", json.dumps(res))
'''


@pytest.mark.parametrize("cfg", ["", '"i_max_a": 5000'])
def test_reads_allocate_nothing_warm_or_cold(mpy_any, cfg):
    res = mpy_any(ALLOC_SNIPPET % cfg)
    assert len(res) == 11
    for a, n, warm, cold in res:
        assert (warm, cold) == (0, 0), (a, n, warm, cold)
