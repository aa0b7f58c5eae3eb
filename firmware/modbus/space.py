"""Register spaces: what a Modbus server reads and writes, without knowing Modbus.

    from firmware.modbus.space import ArraySpace, SpaceSet
    holding = SpaceSet(ArraySpace(0, 100), ArraySpace(1000, 10, writable=False))
    err = holding.read(0, 2, out, 9)      # 0, and out[9:13] holds two big-endian words
    err = holding.read(99, 2, out, 9)     # 2: address 100 is not in any part

The interface (duck-typed; Space documents it and answers 02 to everything):

- read(addr, count, out, off) -> 0 or a Modbus exception code. On 0 the 2*count
  bytes out[off:off + 2*count] hold registers addr..addr+count-1, high byte first
  (Application Protocol v1.1b3, 4.2). All or nothing: if any of those addresses
  is outside the space the answer is 2 (Illegal Data Address) and out is not used.
- write(addr, count, src, soff, ctx=None) -> 0 or an exception code. ctx is the
  caller (firmware.modbus.pdu.Caller: which port or connection asked). src[soff:soff+2*count]
  holds the big-endian values. All or nothing as well: 2 if any register is
  missing or not writable, 3 if a value is refused; then nothing is changed.
- start, end (optional, end exclusive): the address range the space covers;
  SpaceSet uses them to pick the part that owns an address.

The dispatcher calls read or write exactly once per request, with 1 <= count <= 125
and addr + count <= 0x10000 already checked. A map that serves measurements takes
one snapshot at the top of read(), so a response never mixes two cycles. If read or
write raises, the dispatcher answers 04 (Server Device Failure).
"""
from micropython import const

_ILLEGAL_ADDRESS = const(2)


class Space:
    """Empty space: every address is illegal. Subclass and override."""
    start = 0
    end = 0

    def read(self, addr, count, out, off):
        return _ILLEGAL_ADDRESS

    def write(self, addr, count, src, soff, ctx=None):
        return _ILLEGAL_ADDRESS


class ArraySpace(Space):
    """count registers from start, kept as big-endian bytes so a read is one copy.

    writable: True, False, or a tuple of (first, end) address ranges (end exclusive)
    that accept writes; registers outside them answer 02 on write.
    """

    def __init__(self, start, count, writable=True, init=None):
        if start < 0 or count < 1 or start + count > 0x10000:
            raise ValueError("bad register range %d+%d" % (start, count))
        self.start = start
        self.end = start + count
        self._b = bytearray(2 * count)
        self._mv = memoryview(self._b)
        self._wr = writable
        if init is not None:
            for i in range(count):
                self.set(start + i, init(start + i))

    def set(self, addr, value):
        """Local (non-Modbus) store of one 16-bit value."""
        i = 2 * (addr - self.start)
        self._b[i] = (value >> 8) & 0xFF
        self._b[i + 1] = value & 0xFF

    def get(self, addr):
        i = 2 * (addr - self.start)
        return (self._b[i] << 8) | self._b[i + 1]

    def _covers(self, addr, count):
        return addr >= self.start and addr + count <= self.end

    def _can_write(self, addr, count):
        w = self._wr
        if w is True or w is False:
            return w
        for lo, hi in w:
            if addr >= lo and addr + count <= hi:
                return True
        return False

    def read(self, addr, count, out, off):
        i = addr - self.start
        if i < 0 or addr + count > self.end:
            return _ILLEGAL_ADDRESS
        i *= 2
        # One copy; the source slice is the only allocation (out may be a bytearray
        # or a memoryview, both take a slice assignment).
        out[off:off + 2 * count] = self._mv[i:i + 2 * count]
        return 0

    def write(self, addr, count, src, soff, ctx=None):
        if not self._covers(addr, count) or not self._can_write(addr, count):
            return _ILLEGAL_ADDRESS
        i = 2 * (addr - self.start)
        n = 2 * count
        self._mv[i:i + n] = memoryview(src)[soff:soff + n]
        return 0


class SpaceSet(Space):
    """Several spaces behind one interface (e.g. KSEM map + PnP block + SunSpec).

    A request must fall inside one part; one that straddles two parts or a gap
    answers 02, as the KSEM does at the edges of its blocks. Parts must have
    start/end and must not overlap.
    """

    def __init__(self, *parts):
        ps = sorted(parts, key=lambda p: p.start)
        for a, b in zip(ps, ps[1:]):
            if b.start < a.end:
                raise ValueError("spaces overlap at %d" % b.start)
        self._parts = tuple(ps)
        self.start = ps[0].start if ps else 0
        self.end = ps[-1].end if ps else 0

    def _part(self, addr, count):
        for p in self._parts:
            if p.start <= addr and addr + count <= p.end:
                return p
        return None

    def read(self, addr, count, out, off):
        end = addr + count
        for p in self._parts:     # _part() inline: this runs for every read
            if p.start <= addr and end <= p.end:
                return p.read(addr, count, out, off)
        return _ILLEGAL_ADDRESS

    def write(self, addr, count, src, soff, ctx=None):
        p = self._part(addr, count)
        return _ILLEGAL_ADDRESS if p is None else p.write(addr, count, src, soff, ctx)
