"""Table-driven register space: encodes one snapshot into Modbus registers.

    from firmware.regmaps.table import Space, U32, IMP
    rows = ((0, U32, IMP, TOTAL + P_MW, TOTAL + P_MW, 100, "P+"),)
    space = Space(meter, rows, ((0, 27),))
    code = space.read(0, 2, out, 0)   # 0, or a Modbus exception code

A row is data: (address, type, source kind, a, b, divisor, name).
- type: one of the codes below; it fixes the register count (SIZES).
- source kind + a, b: where the value comes from (see the kinds below); a and b
  are absolute indices into snap.inst, or a block base and an energy kind/mask.
- divisor: integer values are value // divisor; instantaneous sources round to
  nearest (half away from zero), energy sources round down (a counter must never
  show energy that was not counted, and floor keeps it monotonic); float32 is
  value / divisor.
Groups are the address ranges a device answers; an address inside a group that no
row covers reads 0 (the KSEM answers its whole register groups, anchors section 4).
Anything outside every group gives exception 2 (Modbus Application Protocol 6.3).

Constant rows are encoded once into an image of the groups. Live rows are encoded into
the same image lazily, one 32-register page at a time: the first read of a page after a
new snapshot encodes the rows overlapping it, later reads of that cycle only copy (the
meter publishes a few snapshots a second and clients poll far more often). Reads take
`meter.front` once and bring every page they touch up to that snapshot before copying,
so a response never mixes two cycles and a 64-bit counter is never torn. Reads are
all-or-nothing:
nothing is written to `out` unless the whole range is valid. Whether a read may start
or end inside a multi-register value is a per-space flag (`split_ok`): the value is
encoded whole from the same snapshot and only the requested words are copied.
"""
import struct
from array import array
from micropython import const
from firmware.snapshot import QUADRANT, NQ, NE, MILLI_PER_HI

# Types (register counts in SIZES).
U16 = const(0)
I16 = const(1)
U32 = const(2)
I32 = const(3)
U64 = const(4)
ACC32 = const(5)    # SunSpec accumulator: wraps mod 2**32
F32 = const(6)      # IEEE 754 single, big-endian (high word first)
SSF = const(7)      # SunSpec scale factor (int16)
BF32 = const(8)     # SunSpec bitfield32
STR8 = const(9)     # string, 8 registers (16 ASCII chars, NUL padded)
STR16 = const(10)   # string, 16 registers (32 chars)
SIZES = (1, 1, 2, 2, 4, 2, 2, 1, 2, 8, 16)
TYPE_NAMES = ("uint16", "int16", "uint32", "int32", "uint64", "acc32", "float32",
              "sunssf", "bitfield32", "string", "string")

# Source kinds.
NA = const(0)       # not measured: all-zero bytes (0, or 0.0 for float32)
NI = const(1)       # SunSpec "not implemented" pattern of the type (pysunspec2 mb.py)
CONST = const(2)    # a = the value
TEXT = const(3)     # a = bytes, already padded to the register count
INST = const(4)     # snap.inst[a]
IMP = const(5)      # |inst[a]| while inst[b] >= 0 else 0 (import part: P+, Q+, S+)
EXP = const(6)      # |inst[a]| while inst[b] < 0 else 0 (export part)
QUAD = const(7)     # a = block base, b = quadrant 1..4: |Q| of the block if in b else 0
ENERGY = const(8)   # a = block base, b = energy kind: counter in milli-units
ESUM = const(9)     # a = block base, b = bit mask of energy kinds: their sum
ANGLE = const(10)   # inst[a] (0..35999 cdeg) folded to -18000..17999
EVT = const(11)     # SunSpec meter event bits from snap.status

_MAX_READ = const(125)   # FC 03/04 quantity limit (Modbus Application Protocol 6.3/6.4)
_PAGE = const(5)         # image pages of 2**5 = 32 registers are refreshed as a whole
_GEN_MAX = const(0x3FFFFFFF)   # page generations stay small ints on a 32-bit board
_I16_MAX = const(32767)
_I32_MAX = const(0x7FFFFFFF)
_U32_MAX = 0xFFFFFFFF
_Q_MVAR = const(3)      # snapshot Q_MVAR (kept local: rows carry block bases)
_ST_CHIP_OK = const(1)
_ST_STALE = const(4)
_EVT_MISSING_SENSOR = const(1 << 7)  # model 203 Evt bit 7 M_EVENT_Missing_Sensor

# Not-implemented words per type (pysunspec2 sunspec2/mb.py; anchors section 5).
_NI_WORDS = ((0xFFFF,), (0x8000,), (0xFFFF, 0xFFFF), (0x8000, 0), (0xFFFF,) * 4, (0, 0),
             (0x7FC0, 0), (0x8000,), (0xFFFF, 0xFFFF), (0,) * 8, (0,) * 16)


def _div_round(v, d):
    """v / d rounded to nearest, halves away from zero (v, d ints, d > 0)."""
    if d == 1:
        return v
    if v >= 0:
        return (v + d // 2) // d
    return -((d // 2 - v) // d)


def _energy(snap, block, kind):
    i = (block // NQ) * NE + kind
    return snap.e_hi[i] * MILLI_PER_HI + snap.e_lo[i]


def value(snap, kind, a, b):
    """The integer a row's source gives for this snapshot (before scaling)."""
    if kind == INST:
        return snap.inst[a]
    if kind == IMP:
        v = snap.inst[a]
        return (v if v >= 0 else -v) if snap.inst[b] >= 0 else 0
    if kind == EXP:
        v = snap.inst[a]
        return (v if v >= 0 else -v) if snap.inst[b] < 0 else 0
    if kind == QUAD:
        if snap.inst[a + QUADRANT] != b:
            return 0
        v = snap.inst[a + _Q_MVAR]
        return v if v >= 0 else -v
    if kind == ENERGY:
        return _energy(snap, a, b)
    if kind == ESUM:
        base = (a // NQ) * NE
        hi = lo = 0
        k = 0
        while b >> k:
            if (b >> k) & 1:
                hi += snap.e_hi[base + k]
                lo += snap.e_lo[base + k]
            k += 1
        return hi * MILLI_PER_HI + lo
    if kind == ANGLE:
        v = snap.inst[a]
        return v - 36000 if v >= 18000 else v
    if kind == EVT:
        st = snap.status
        return _EVT_MISSING_SENSOR if (not st & _ST_CHIP_OK) or (st & _ST_STALE) else 0
    if kind == CONST:
        return a
    return 0


_ZEROS = memoryview(bytes(256))   # zero source for fills (slice copies, no loop)


def _put(typ, kind, a, b, div, snap, buf, pos):
    """Encode one row whole into buf at byte offset pos."""
    if kind == NA:
        n = 2 * SIZES[typ]
        buf[pos:pos + n] = _ZEROS[:n]
        return
    if kind == NI:
        for w in _NI_WORDS[typ]:
            buf[pos] = w >> 8
            buf[pos + 1] = w & 0xFF
            pos += 2
        return
    if kind == TEXT:
        buf[pos:pos + len(a)] = a
        return
    v = value(snap, kind, a, b)
    if typ == F32:
        struct.pack_into(">f", buf, pos, v / div)
        return
    if kind == ENERGY or kind == ESUM:
        v //= div
    else:
        v = _div_round(v, div)
    # Saturate rather than wrap: a clipped reading keeps its sign and direction.
    if typ == U32 or typ == BF32:
        struct.pack_into(">I", buf, pos, 0 if v < 0 else (_U32_MAX if v > _U32_MAX else v))
    elif typ == ACC32:
        struct.pack_into(">I", buf, pos, v & _U32_MAX)
    elif typ == U64:   # counters are >= 0 and far below 2**64
        struct.pack_into(">I", buf, pos, v >> 32)
        struct.pack_into(">I", buf, pos + 4, v & _U32_MAX)
    elif typ == I32:
        v = -_I32_MAX if v < -_I32_MAX else (_I32_MAX if v > _I32_MAX else v)
        struct.pack_into(">i", buf, pos, v)
    elif typ == U16:
        struct.pack_into(">H", buf, pos, 0 if v < 0 else (0xFFFF if v > 0xFFFF else v))
    else:  # I16, SSF: -32768 is SunSpec's "not implemented", so saturate at -32767
        v = -_I16_MAX if v < -_I16_MAX else (_I16_MAX if v > _I16_MAX else v)
        struct.pack_into(">h", buf, pos, v)


_STATIC = (NA, NI, CONST, TEXT)


class Space:
    """One Modbus register space (one function code's view) over `meter.front`.

    Rows whose value never changes (constants, strings, not-implemented, not-measured)
    are encoded once into an image of every group at construction; live rows are
    encoded into the image page by page when a read finds the page older than
    `meter.front`, from parallel arrays (no per-row objects kept). keep_rows keeps the
    row tuples for rows() (export tool, tests)."""

    def __init__(self, meter, rows, groups, split_ok=True, max_count=0, keep_rows=False):
        rows = sorted(rows, key=lambda r: r[0])
        self._meter = meter
        self._split_ok = split_ok
        self._max = max_count
        self.writer = None   # config writes plug in here later: fn(addr, count, src, soff)
        gl, base = [], 0
        for lo, hi in self._merge(groups):
            gl.append((lo, hi, base))
            base += hi - lo + 1
        self._groups = tuple(gl)
        self._image = bytearray(2 * base)
        self._imv = memoryview(self._image)
        self._mid = bytearray(base)     # 1: register continues a multi-register value
        used = bytearray(base)
        gpos = array("l")
        typ, kind = bytearray(), bytearray()
        ra, rb, rdiv = array("l"), array("l"), array("l")
        for r in rows:
            addr, t, k, a, b, div = r[0], r[1], r[2], r[3], r[4], r[5]
            n = SIZES[t]
            g = self._locate(addr, n)
            if g < 0:
                raise ValueError("register %d (%s) lies outside the groups" % (addr, r[6]))
            for j in range(n):
                if used[g + j]:
                    raise ValueError("register %d (%s) overlaps another row" % (addr, r[6]))
                used[g + j] = 1
                self._mid[g + j] = 1 if j else 0
            if k == TEXT and len(a) != 2 * n:
                raise ValueError("text at %d must be %d bytes" % (addr, 2 * n))
            if k in _STATIC:
                _put(t, k, a, b, div, None, self._image, 2 * g)
            else:
                gpos.append(g)
                typ.append(t)
                kind.append(k)
                ra.append(a)
                rb.append(b)
                rdiv.append(div)
        self._g, self._typ, self._kind = gpos, typ, kind
        self._a, self._b, self._div = ra, rb, rdiv
        # Page p covers image registers p*32 .. p*32+31; its live rows are
        # first[p] .. first[p+1]-1 (a row crossing a page edge belongs to both, so
        # first[p] is the first row that ends inside or after page p).
        pages = (base + (1 << _PAGE) - 1) >> _PAGE
        first = array("l", [0] * (pages + 1))
        i = 0
        for pg in range(pages + 1):
            lo = pg << _PAGE
            while i < len(gpos) and gpos[i] + SIZES[typ[i]] <= lo:
                i += 1
            first[pg] = i
        self._first = first
        # stamp[p] == self._gen: page p holds the live rows of snapshot self._snap.
        self._stamp = array("l", [0] * pages)
        self._gen = 0
        self._snap = None
        self._seq = -1
        self._rows = rows if keep_rows else None

    @staticmethod
    def _merge(groups):
        out = []
        for lo, hi in sorted(groups):
            if out and lo <= out[-1][1] + 1:
                out[-1] = (out[-1][0], max(hi, out[-1][1]))
            else:
                out.append((lo, hi))
        return out

    def _locate(self, addr, count):
        """Image register index of addr if addr..addr+count-1 lies in one group, else -1."""
        last = addr + count - 1
        for lo, hi, base in self._groups:
            if lo <= addr and last <= hi:
                return base + addr - lo
        return -1

    def check(self, addr, count):
        """Image index of addr if addr..addr+count-1 can be read, else minus the code."""
        if count < 1 or count > _MAX_READ or (self._max and count > self._max):
            return -3
        g = self._locate(addr, count)
        if g < 0:
            return -2
        if not self._split_ok:
            mid = self._mid
            if mid[g] or (g + count < len(mid) and mid[g + count]):
                return -2   # starts or ends inside a value
        return g

    def read(self, addr, count, out, off):
        g = self.check(addr, count)
        if g < 0:
            return -g
        snap = self._meter.front
        stamp = self._stamp
        if snap is not self._snap or snap.seq != self._seq:
            self._snap = snap     # a new cycle: every page is stale
            self._seq = snap.seq
            self._gen += 1
            if self._gen > _GEN_MAX:
                # Years of cycles: start over rather than leave the small ints.
                self._gen = 1
                for i in range(len(stamp)):
                    stamp[i] = 0
        gen = self._gen
        for pg in range(g >> _PAGE, ((g + count - 1) >> _PAGE) + 1):
            if stamp[pg] != gen:
                self._refresh(snap, pg)
                stamp[pg] = gen
        out[off:off + 2 * count] = self._imv[2 * g:2 * (g + count)]
        return 0

    def _refresh(self, snap, pg):
        """Encode the live rows overlapping page pg into the image, whole."""
        gpos = self._g            # one name per line: a 6-tuple unpack would allocate
        typ = self._typ
        kind = self._kind
        ra = self._a
        rb = self._b
        rdiv = self._div
        img = self._image
        end = (pg + 1) << _PAGE
        i = self._first[pg]
        n = len(gpos)
        while i < n and gpos[i] < end:
            _put(typ[i], kind[i], ra[i], rb[i], rdiv[i], snap, img, 2 * gpos[i])
            i += 1

    def write(self, addr, count, src, soff, ctx=None):
        if count < 1:
            return 3
        if self._locate(addr, count) < 0:
            return 2
        if self.writer is None:
            return 2   # no writable registers yet: Modbus exception 2 (issue 3)
        return self.writer(addr, count, src, soff)

    def rows(self):
        """The rows served, sorted by address (needs keep_rows; export tool, tests)."""
        if self._rows is None:
            raise ValueError("built without keep_rows")
        return self._rows

    def groups(self):
        return [(lo, hi) for lo, hi, _ in self._groups]


def text(s, typ):
    """ASCII bytes of s for a string row of type typ, cut to fit and NUL padded."""
    n = 2 * SIZES[typ]
    b = str(s).encode()[:n]
    return b + bytes(n - len(b))


def expand(blocks, template):
    """Rows for per-block templates: one loop, never hand-copied phase blocks.

    blocks: ((base address, snapshot block base, suffix), ...); template rows are
    (offset, type, kind, a, b, divisor, name) with a (and b for IMP/EXP) relative to
    the block; QUAD/ENERGY/ESUM take the block base in a and keep b as given."""
    out = []
    for base, blk, suffix in blocks:
        for off, typ, kind, a, b, div, name in template:
            bb = b + blk if kind == IMP or kind == EXP else b
            aa = blk if kind == QUAD or kind == ENERGY or kind == ESUM else a + blk
            out.append((base + off, typ, kind, aa, bb, div, name + " " + suffix))
    return out
