"""Energy counters that survive power cuts: CRC'd records on littlefs, written without an erase.

    from firmware.persist import CounterStore
    store = CounterStore(vfs, meter.energy, events, clock)   # vfs: a mounted-or-not VfsLfs2
    store.restore()            # newest valid record -> the registers, before the first cycle
    store.arm()                # prepare the next write (all erases happen here, power good)
    sup.spawn("persist", store.run)     # a record every persist_s seconds, then re-arm
    store.supply_failed()      # power-fail source: write at once, no erase, no re-arm
    store.close()              # clean stop: a last record

Record (little-endian, 12 n + 12 bytes: 396 for 32 registers):
    0  b"EC"        magic
    2  u8           format version (1)
    3  u8           n, number of registers
    4  u32          seq: +1 per record, never reused
    8  n x 3 i32    per register hi (kWh), lo (0..999999 mWh), frac (0..999999999 pWh):
                    firmware/energy.py's exact state, nothing rounded
    -4 u32          CRC-32 (IEEE 802.3, as zlib) of all bytes before it

Where: three journal directories root/j0, j1, j2, each holding one file `r`. A journal is
*armed* ahead of time: a fresh directory (its littlefs metadata block newly compacted,
so mostly erased) and the file opened and written once with the last record padded past
littlefs's inline limit, which makes littlefs allocate and erase the file's data block
there and then. The next write appends the new record to that open file and closes it:
page programs into the already erased data block plus one metadata commit into the
erased tail of the fresh directory block, no erase (tests/test_persist.py counts them).
A periodic write re-arms the next directory afterwards (two erases, power good); a
supply-failure write does not. Arming deletes the journal three writes back, so the two
newest records always sit in two different directories, and each file also carries its
predecessor (the arm copy): a torn or corrupt record is skipped (event record_corrupt)
and the newest valid one wins. littlefs commits are atomic, so a cut leaves a file as
it was or as it became; the CRC guards what littlefs does not check (data blocks).

Counters never go backwards: the registers only grow and the newest record (by seq) is
restored; they are never counted twice: the restore sets the registers before the first
cycle and the chip's energy registers are read-with-reset.
"""
import asyncio
import struct
from micropython import const

# Mirrors of the names this module uses from others (tests/test_mirrors.py checks
# they are equal): a private const is inlined and takes no global slot, an
# imported name is a global of this module.
# firmware/events.py
_EV_COUNTERS_RESTORED = const(20)
_EV_PERSIST_FAILED = const(23)
_EV_RECORD_CORRUPT = const(21)
_EV_SUPPLY_FAIL = const(22)

_MAGIC0 = const(0x45)          # "E"
_MAGIC1 = const(0x43)          # "C"
VERSION = const(1)
_HEAD = const(8)
_PERSIST_S_DEFAULT = const(60)
_JOURNALS = const(3)
_LO_MAX = const(1000000)
_FRAC_MAX = const(1000000000)


def record_len(n):
    return _HEAD + 12 * n + 4


# ---- CRC-32 (reflected, polynomial 0xEDB88320, init and final xor 0xFFFFFFFF) ----
# Kept in two 16-bit halves so that no intermediate reaches 2**30: small ints only on
# a 32-bit port. binascii.crc32 (native on the unix port; micropython-lib Python code
# on the wasm32 port) is used when present: tests check the two agree.
def _table():
    from array import array
    th = array("H", bytes(512))
    tl = array("H", bytes(512))
    for i in range(256):
        h, lo = 0, i
        for _ in range(8):
            if lo & 1:
                lo = ((lo >> 1) | ((h & 1) << 15)) ^ 0x8320
                h = (h >> 1) ^ 0xEDB8
            else:
                lo = (lo >> 1) | ((h & 1) << 15)
                h >>= 1
        th[i] = h
        tl[i] = lo
    return th, tl


_TH = _TL = None


def crc32_halves(data, end):
    """CRC-32 of data[:end] as (high 16 bits, low 16 bits)."""
    global _TH, _TL
    if _TH is None:
        _TH, _TL = _table()
    th, tl = _TH, _TL
    h = lo = 0xFFFF
    for k in range(end):
        i = (lo ^ data[k]) & 0xFF
        lo = ((lo >> 8) | ((h & 0xFF) << 8)) ^ tl[i]
        h = (h >> 8) ^ th[i]
    return h ^ 0xFFFF, lo ^ 0xFFFF


def crc32(data):
    """Our CRC-32 as one int (a long int on a 32-bit port: not for the hot path)."""
    h, lo = crc32_halves(data, len(data))
    return (h << 16) | lo


try:
    from binascii import crc32 as _native
except ImportError:
    _native = None


def _crc_halves(buf, end):
    if _native is not None:
        c = _native(memoryview(buf)[:end])
        return (c >> 16) & 0xFFFF, c & 0xFFFF
    return crc32_halves(buf, end)


# ---- records ----
def encode(buf, seq, energy):
    """Fill buf (record_len(n) bytes) with a record of energy's registers."""
    n = len(energy.hi)
    buf[0] = _MAGIC0
    buf[1] = _MAGIC1
    buf[2] = VERSION
    buf[3] = n
    struct.pack_into("<I", buf, 4, seq)
    hi, lo, fr = energy.hi, energy.lo, energy.frac
    o = _HEAD
    for i in range(n):
        struct.pack_into("<iii", buf, o, hi[i], lo[i], fr[i])
        o += 12
    ch, cl = _crc_halves(buf, o)
    struct.pack_into("<HH", buf, o, cl, ch)


def check(buf, off, n):
    """seq of the record at buf[off:], or -1 when it is not a valid record for n registers
    (magic, version, length, CRC, every field in its range)."""
    end = off + record_len(n) - 4
    if len(buf) < end + 4 or buf[off] != _MAGIC0 or buf[off + 1] != _MAGIC1 \
            or buf[off + 2] != VERSION or buf[off + 3] != n:
        return -1
    mv = memoryview(buf)[off:]
    ch, cl = _crc_halves(mv, end - off)
    cl2, ch2 = struct.unpack_from("<HH", buf, end)
    if ch != ch2 or cl != cl2:
        return -1
    o = off + _HEAD
    for _ in range(n):
        h, lo, fr = struct.unpack_from("<iii", buf, o)
        if h < 0 or not 0 <= lo < _LO_MAX or not 0 <= fr < _FRAC_MAX:
            return -1
        o += 12
    return struct.unpack_from("<I", buf, off + 4)[0]


def load(buf, off, energy):
    """Set energy's registers from the (checked) record at buf[off:]."""
    o = off + _HEAD
    for i in range(len(energy.hi)):
        energy.hi[i], energy.lo[i], energy.frac[i] = struct.unpack_from("<iii", buf, o)
        o += 12


def newest(found):
    """Slot choice: from [(seq, where), ...] of valid records the one with the highest
    seq (None when empty). Equal seqs hold equal counters (a record and its arm copy)."""
    best = None
    for s in found:
        if best is None or s[0] > best[0]:
            best = s
    return best


def _join(a, b):
    return a + "/" + b if a != "/" else "/" + b


class CounterStore:
    def __init__(self, vfs, energy, events, clock, root="/cnt", persist_s=_PERSIST_S_DEFAULT):
        self.vfs = vfs
        self.energy = energy
        self.events = events
        self.clock = clock
        self.root = root
        self.persist_s = persist_s
        self.n = len(energy.hi)
        self.rlen = record_len(self.n)
        self._rec = bytearray(self.rlen)        # the last record written (or restored)
        self._fh = None                         # the armed journal file, open
        self.gen = 0                            # journal index that is (to be) armed
        self.seq = 0
        self.writes = 0                         # records written
        self.failed = False                     # supply failure seen, not yet recovered
        try:
            vfs.mkdir(root)
        except OSError:
            pass                                # already there
        # Past littlefs's inline limit (at most block_size / 8) the file gets a data block
        # of its own at arm time; both records must then fit that one block.
        bs = vfs.statvfs(root)[0]
        self.pad = max(self.rlen, bs // 8 + 1)
        self._zeros = bytes(self.pad - self.rlen)
        self.erase_free = self.pad + self.rlen <= bs
        encode(self._rec, 0, energy)

    def _path(self, j):
        return _join(_join(self.root, "j%d" % j), "r")

    def _event(self, code, arg=0):
        self.events.add(self.clock.ticks_ms(), code, arg)

    # ---- boot ----
    def restore(self):
        """Load the newest valid record into the registers (call before the first
        cycle). Returns its seq, or None on a blank store (registers left as they are)."""
        found = []
        rlen = self.rlen
        corrupt0 = self.events.count(_EV_RECORD_CORRUPT)
        for j in range(_JOURNALS):
            try:
                with self.vfs.open(self._path(j), "rb") as f:
                    data = f.read()
            except OSError:
                continue                          # no such journal (yet)
            if not data:
                continue                          # armed, never written: nothing lost
            # An armed file holds the arm copy (padded); once written, the record after it.
            offs = (0, len(data) - rlen) if len(data) >= self.pad + rlen else (0,)
            bad = len(data) not in (self.pad, self.pad + rlen)
            for off in offs:
                s = check(data, off, self.n)
                if s < 0:
                    bad = True
                else:
                    found.append((s, j, data, off))
            if bad:
                self._event(_EV_RECORD_CORRUPT, j)
        best = newest(found)
        if best is None:
            return None
        s, j, data, off = best
        load(data, off, self.energy)
        # Past a corrupt record the next seq skips one: that record may have carried
        # s + 1, and should it ever read as valid again it must not tie with a new one.
        self.seq = s + 1 if self.events.count(_EV_RECORD_CORRUPT) > corrupt0 else s
        self.gen = (j + 1) % _JOURNALS
        self._rec[:] = memoryview(data)[off:off + rlen]
        self._event(_EV_COUNTERS_RESTORED, j)
        return s

    # ---- writing ----
    def arm(self):
        """Prepare the next write: a fresh journal directory and its file opened with
        the last record in it (allocates and erases; only while the supply is good)."""
        if self._fh is not None:
            return
        v = self.vfs
        d = _join(self.root, "j%d" % self.gen)
        p = _join(d, "r")
        try:
            v.remove(p)
        except OSError:
            pass
        try:
            v.rmdir(d)
        except OSError:
            pass
        v.mkdir(d)
        f = v.open(p, "wb")
        try:
            f.write(self._rec)
            f.write(self._zeros)
        except OSError:
            f.close()
            raise
        self._fh = f

    def write(self):
        """Write a record of the registers now: into the armed journal (no erase); when
        none is armed, arm first (erases). OSError when the flash refuses."""
        if self._fh is None:
            self.arm()
        f = self._fh
        self._fh = None
        self.seq += 1
        encode(self._rec, self.seq, self.energy)
        self.gen = (self.gen + 1) % _JOURNALS
        try:
            f.write(self._rec)
        finally:
            f.close()
        self.writes += 1

    def persist(self):
        """The periodic step: a record, then re-arm (not while the supply is failing: a
        write then arms itself first). Returns False (event persist_failed) when the
        flash refused; the next period tries again."""
        try:
            self.write()
            if not self.failed:
                self.arm()
            return True
        except OSError as e:
            self._event(_EV_PERSIST_FAILED, e.args[0] if e.args else 0)
            return False

    def supply_failed(self):
        """The supply is collapsing: write at once (no erase) and arm nothing more until
        supply_ok(). Called once per failure by a power-fail source."""
        if self.failed:
            return False
        self.failed = True
        self._event(_EV_SUPPLY_FAIL)
        try:
            self.write()
            return True
        except OSError as e:
            self._event(_EV_PERSIST_FAILED, e.args[0] if e.args else 0)
            return False

    def supply_ok(self):
        """The supply came back without a reset (a brown-out): re-arm."""
        if self.failed:
            self.failed = False
            try:
                self.arm()
            except OSError as e:
                self._event(_EV_PERSIST_FAILED, e.args[0] if e.args else 0)

    def close(self):
        """Clean stop: a last record (nothing armed afterwards)."""
        self.failed = True
        try:
            self.write()
        except OSError as e:
            self._event(_EV_PERSIST_FAILED, e.args[0] if e.args else 0)

    async def run(self):
        """Persist every persist_s seconds (read each period: apply_config may change
        it). Run it under the supervisor."""
        if not self.failed:
            try:
                self.arm()
            except OSError as e:      # the first write will arm itself
                self._event(_EV_PERSIST_FAILED, e.args[0] if e.args else 0)
        while True:
            waited = 0
            while waited < self.persist_s * 1000:   # 1 s steps: a new interval applies soon
                await asyncio.sleep_ms(1000)
                waited += 1000
            self.persist()
