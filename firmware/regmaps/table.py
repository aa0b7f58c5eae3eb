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
  show energy that was not counted, and floor keeps it monotonic); float32 is the
  float nearest to value / divisor (ties to even). Integers saturate at their type's
  ends (int16 at +-32767: -32768 is SunSpec's not-implemented), acc32 wraps mod 2**32.
  Energy divisors divide 10**6 or are multiples of it (float32: exactly 10**6, kWh).
Groups are the address ranges a device answers; an address inside a group that no
row covers reads 0 (the KSEM answers its whole register groups, anchors section 4).
Anything outside every group gives exception 2 (Modbus Application Protocol 6.3).

Constant rows are encoded once into an image of the groups. Live rows are compiled at
construction into parallel arrays (op = type and source, byte offset, operands, divisor
index)
and encoded into the same image lazily, one 32-register page at a time, by one kernel
call per page (firmware/regmaps/enc.py, viper where the port has it): the first read
of a page after a new snapshot encodes the rows overlapping it, later reads of that
cycle only copy (the meter publishes a few snapshots a second and clients poll far more
often). Encoding and copying allocate nothing, also on a 32-bit board. Reads take
`meter.front` once and bring every page they touch up to that snapshot before copying,
so a response never mixes two cycles and a 64-bit counter is never torn. The SunSpec
event row is keyed on `meter.status_now()` as well (stale by age at read time), so a
warm page never hides a dead engine. Reads are all-or-nothing: nothing is written to
`out` unless the whole range is valid. Whether a read may start or end inside a
multi-register value is a per-space flag (`split_ok`): the value is encoded whole from
the same snapshot and only the requested words are copied.

The meter object needs `front` (the published Snapshot) and `status_now()`
(firmware/metering.py). This class implements the space interface of
firmware/modbus/space.py.
"""
import struct
from array import array
from micropython import const
from firmware.snapshot import counter_index

# Mirrors of the names this module uses from others (tests/test_mirrors.py checks
# they are equal): a private const is inlined and takes no global slot, an
# imported name is a global of this module.
# firmware/snapshot.py
_POWER_UNIT_MW = const(10)
_QUADRANT = const(8)
_P_MW = const(2)
_Q_MVAR = const(3)
_NE = const(8)
_MILLI_PER_HI = const(1000000)
_ST_CHIP_OK = const(1)
_ST_STALE = const(4)

try:   # the native emitter: rp2, esp32, unix; the WebAssembly port has none
    from firmware.regmaps import enc_viper as _enc
except (ImportError, SyntaxError, AttributeError):   # AttributeError: CPython (tools)
    from firmware.regmaps import enc as _enc
ENCODER = _enc.__name__

# Snapshot power unit in mW per LSB of P, Q, S (firmware/snapshot.py). Every power
# divisor in the maps is p_div(target unit in mW).
P_UNIT_MW = _POWER_UNIT_MW


def p_div(target_mw):
    """Divisor from the snapshot's power unit to target_mw (mW per register LSB)."""
    if target_mw % P_UNIT_MW:
        raise ValueError("%d mW is finer than the snapshot's power unit (%d mW)"
                         % (target_mw, P_UNIT_MW))
    return target_mw // P_UNIT_MW


def div_of(d):
    """A table's divisor: d, or for d = -m the power divisor p_div(m). The maps write
    power divisors as -m so their tables stay literal constants (flash when frozen)
    while the snapshot's power unit is still learned here, at build time."""
    return p_div(-d) if d < 0 else d


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
EVT = const(11)     # SunSpec meter event bits (meter.status_now() at read time)
PQANGLE = const(12)  # a = block base: atan2(Q, P) of the block in 1e-5 degree, -180..180

_MAX_READ = const(125)   # FC 03/04 quantity limit (Modbus Application Protocol 6.3/6.4)
_PAGE = const(5)         # image pages of 2**5 = 32 registers are refreshed as a whole
_GEN_MAX = const(0x3FFFFFFF)   # page generations stay small ints on a 32-bit board
_DIV_MAX = const(0x3FFFFFFF)   # kernels keep r << 1 below 2**31
_EVT_MISSING_SENSOR = const(1 << 7)  # model 203 Evt bit 7 M_EVENT_Missing_Sensor

# Not-implemented words per type (pysunspec2 sunspec2/mb.py; anchors section 5).
# Literal tables (no dicts, no * at import): a frozen build keeps them in flash.
_NI_WORDS = ((0xFFFF,), (0x8000,), (0xFFFF, 0xFFFF), (0x8000, 0),
             (0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF), (0, 0), (0x7FC0, 0), (0x8000,),
             (0xFFFF, 0xFFFF), (0, 0, 0, 0, 0, 0, 0, 0),
             (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))
_STATIC = (NA, NI, CONST, TEXT)
# Kernel op codes (enc.py): type in the high nibble, source in the low one.
# Indexed by type code, -1 for the strings: U16 0, I16 1, U32 2, I32 3, U64 4, ACC32 5,
# F32 6, SSF 1, BF32 2.
_T_OP = (0, 1, 2, 3, 4, 5, 6, 1, 2, -1, -1)
# Indexed by source kind (the static kinds NA..TEXT never compile): INST 0, IMP 1,
# EXP 2, QUAD 3, ENERGY 6, ESUM 6, ANGLE 4, EVT 5, PQANGLE 7.
_S_OP = (-1, -1, -1, -1, 0, 1, 2, 3, 6, 6, 4, 5, 7)
# struct format of a constant row, by type (None: not a constant's type).
_CONST_FMT = (">H", ">h", ">I", ">i", None, None, None, ">h", ">I", None, None)


def _put_static(typ, kind, a, buf, pos, name):
    """Encode a row that never changes (at construction only)."""
    if kind == NA:
        return   # the image starts zeroed
    if kind == NI:
        for w in _NI_WORDS[typ]:
            struct.pack_into(">H", buf, pos, w)
            pos += 2
    elif kind == TEXT:
        buf[pos:pos + len(a)] = a
    elif _CONST_FMT[typ]:
        struct.pack_into(_CONST_FMT[typ], buf, pos, a)
    else:
        raise ValueError("constant %s: type %s" % (name, TYPE_NAMES[typ]))


def _compile(t, k, a, b, div, name):
    """(op, ra, rb, divisor) of a live row for the kernel, or ValueError."""
    energy = k == ENERGY or k == ESUM
    wide = t == U64 or t == ACC32   # counters only; float32 takes either source
    if _T_OP[t] < 0 or (t != F32 and wide != energy):
        raise ValueError("%s: %s from this source is not supported" % (name, TYPE_NAMES[t]))
    if not 1 <= div <= _DIV_MAX:
        raise ValueError("%s: divisor %r" % (name, div))
    if energy:
        mask = (1 << b) if k == ENERGY else b
        base = counter_index(a, 0)
        for j in range(_NE):
            if mask >> j & 1 and counter_index(a, j) != base + j:
                raise ValueError("%s: counters of a block must be contiguous" % name)
        if _MILLI_PER_HI % div and div % _MILLI_PER_HI or t == F32 and div != _MILLI_PER_HI:
            raise ValueError("%s: energy divisor %d must divide or be a multiple of %d"
                             " (float32: equal)" % (name, div, _MILLI_PER_HI))
        a, b = base, mask
    elif k == QUAD:
        a, b = a + _Q_MVAR, ((a + _QUADRANT) << 3) | b
    elif k == PQANGLE:
        a, b = a + _P_MW, a + _Q_MVAR
    return (_T_OP[t] << 4) | _S_OP[k], a, b, div


class Space:
    """One Modbus register space (one function code's view) over `meter.front`.

    Rows whose value never changes (constants, strings, not-implemented, not-measured)
    are encoded once into an image of every group at construction; live rows are
    compiled into parallel arrays (op, pos, ra, rb, rdi: index into the few distinct
    divisors divs; per page first, last, stamp, gen: read by the enc kernels) and
    encoded into the image page by page when a read finds the page older than
    `meter.front`. keep_rows keeps the row tuples for rows() (export tool, tests)."""

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
        self.image = bytearray(2 * base)
        # Per register: 0 free, 1 first of a value, 2 continues a multi-register value.
        # Where a read may not split a value, its "continues" bits are kept as _mid.
        used = bytearray(base)
        gpos, ends = [], []
        op, pos = bytearray(), array("H")
        ra, rb, rdi = array("H"), array("H"), bytearray()
        divs = array("I")   # the distinct divisors (a few); each row keeps an index
        self._evt_lo = self._evt_hi = -1   # image registers of the Evt row(s)
        for r in rows:
            addr, t, k, a, b, div = r[0], r[1], r[2], r[3], r[4], r[5]
            n = SIZES[t]
            g = self._locate(addr, n)
            if g < 0:
                raise ValueError("register %d (%s) lies outside the groups" % (addr, r[6]))
            for j in range(n):
                if used[g + j]:
                    raise ValueError("register %d (%s) overlaps another row" % (addr, r[6]))
                used[g + j] = 2 if j else 1
            if k == TEXT and len(a) != 2 * n:
                raise ValueError("text at %d must be %d bytes" % (addr, 2 * n))
            if k in _STATIC:
                _put_static(t, k, a, self.image, 2 * g, r[6])
                continue
            o, a, b, div = _compile(t, k, a, b, div, r[6])
            if k == EVT:
                self._evt_lo = g if self._evt_lo < 0 else self._evt_lo
                self._evt_hi = g + n - 1
            gpos.append(g)
            ends.append(g + n)
            op.append(o)
            pos.append(2 * g)
            ra.append(a)
            rb.append(b)
            for j in range(len(divs)):
                if divs[j] == div:
                    break
            else:
                if len(divs) == 255:
                    raise ValueError("%s: more than 255 distinct divisors" % r[6])
                j = len(divs)
                divs.append(div)
            rdi.append(j)
        self.op, self.pos, self.ra, self.rb, self.rdi = op, pos, ra, rb, rdi
        self.divs = array("I", divs)   # exact size (append leaves room for more)
        self._mid = None
        if not split_ok:
            # One bit per register (LSB first): an eighth of `used`, and one byte more
            # so that the register after the last (a read's end) has a bit, never set.
            mid = self._mid = bytearray((base >> 3) + 1)
            for i in range(base):
                if used[i] == 2:
                    mid[i >> 3] |= 1 << (i & 7)
        # Page p covers image registers p*32 .. p*32+31; its live rows are
        # first[p] .. first[p+1]-1 (a row crossing a page edge belongs to both, so
        # first[p] is the first row that ends inside or after page p).
        pages = (base + (1 << _PAGE) - 1) >> _PAGE
        first = array("H", [0] * (pages + 1))
        last = array("H", [0] * pages)
        i = 0
        for pg in range(pages + 1):
            lo = pg << _PAGE
            while i < len(gpos) and ends[i] <= lo:
                i += 1
            first[pg] = i
        j = 0
        for pg in range(pages):
            hi = (pg + 1) << _PAGE
            while j < len(gpos) and gpos[j] < hi:
                j += 1
            last[pg] = j
        self.first = first
        self.last = last
        # stamp[p] == self.gen: page p holds the live rows of snapshot self._snap.
        self.stamp = array("i", [0] * pages)   # 4-byte slots on every port
        self.gen = 0
        self._snap = None
        self._seq = -1
        self._evt = 0
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
            e = g + count
            if mid[g >> 3] >> (g & 7) & 1 or mid[e >> 3] >> (e & 7) & 1:
                return -2   # starts or ends inside a value
        return g

    def read(self, addr, count, out, off):
        g = self.check(addr, count)
        if g < 0:
            return -g
        snap = self._meter.front
        if snap is not self._snap or snap.seq != self._seq:
            # A new cycle: every page is stale.
            self._snap = snap
            self._seq = snap.seq
            self.gen += 1
            if self.gen > _GEN_MAX:
                self._restart_gen()
        if g <= self._evt_hi and g + count > self._evt_lo:
            # SunSpec Evt now: missing sensor while the chip is down or the front
            # snapshot is older than the cycle time-out (status_now(), at read time);
            # a change makes the Evt row's pages stale, warm or not.
            st = self._meter.status_now()
            evt = _EVT_MISSING_SENSOR if not st & _ST_CHIP_OK or st & _ST_STALE else 0
            if evt != self._evt:
                self._evt = evt
                for pg in range(self._evt_lo >> _PAGE, (self._evt_hi >> _PAGE) + 1):
                    self.stamp[pg] = -1
        _enc.refresh(self, snap, g >> _PAGE, (g + count - 1) >> _PAGE, self._evt)
        _enc.copy(out, off, self.image, 2 * g, 2 * count)
        return 0

    def _restart_gen(self):
        # Years of cycles: start over rather than leave the small ints.
        self.gen = 1
        stamp = self.stamp
        for i in range(len(stamp)):
            stamp[i] = 0

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
    the block; QUAD/ENERGY/ESUM take the block base in a and keep b as given. A
    negative divisor -m is a power divisor, p_div(m) (see div_of)."""
    out = []
    for base, blk, suffix in blocks:
        for off, typ, kind, a, b, div, name in template:
            bb = b + blk if kind == IMP or kind == EXP else b
            aa = blk if kind == QUAD or kind == ENERGY or kind == ESUM else a + blk
            out.append((base + off, typ, kind, aa, bb, div_of(div), name + " " + suffix))
    return out
