"""Register spaces for the Modbus stack's tests (host only; the firmware's one space
class is firmware.regmaps.table.Space, the interface is documented in
firmware/modbus/space.py).

    from tests.spaces import ArraySpace, SpaceSet, EmptySpace
    holding = SpaceSet(ArraySpace(0, 100), ArraySpace(1000, 10, writable=False))
    err = holding.read(0, 2, out, 9)      # 0, and out[9:13] holds two big-endian words
    err = holding.read(99, 2, out, 9)     # 2: address 100 is not in any part

They run on the MicroPython unix port (MICROPYPATH = repo root: `tests` imports as a
namespace package) and keep start/end (end exclusive) so SpaceSet can pick the part
that owns an address.
"""
_ILLEGAL_ADDRESS = 2   # Modbus exception 02


class EmptySpace:
    """Every address is illegal. Subclass and override."""
    start = 0
    end = 0

    def read(self, addr, count, out, off):
        return _ILLEGAL_ADDRESS

    def write(self, addr, count, src, soff, ctx=None):
        return _ILLEGAL_ADDRESS


class ArraySpace(EmptySpace):
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


class SpaceSet(EmptySpace):
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
