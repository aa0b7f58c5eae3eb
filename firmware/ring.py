"""A ring of fixed-size CRC'd records with a sequence number, in littlefs files.

    from firmware.ring import Ring
    r = Ring(vfs, "/ev/log", 256, 16)   # 256 slots of 16 bytes (one 4 KB file)
    newest, stored, bad = r.load()     # boot scan (one record buffer, no list)
    r.encode(buf, 0)                   # seal buf (seq at 0 already packed): CRC at the end
    r.write(seq, buf)                  # one record; or f = r.open_w(seq) ... for a batch
    r.read(seq, buf)                   # True when slot holds a valid record with that seq

Record layout (little-endian, or big-endian with big=True: a record that is its own
Modbus image): u32 seq at 0 (1.., 0 = never written), the payload, u16 low half of the CRC-32 (IEEE, as zlib) of every byte before it, in the last two
bytes. Seq s lives in slot (s - 1) % n. The event log (firmware/eventstore.py), the load
curve and the KSEM log (firmware/records.py) are all such rings.

Files: a ring of at most one flash block (4 KB) is one file `path`. A bigger ring is cut
into segment files `path0`, `path1`, ... of SEG_BYTES (one 4 KB block) each, created
when first written: littlefs keeps a file as a chain of blocks where a block points to
its predecessors, so rewriting the middle of a big file rewrites every block after it;
one block per file keeps a record write to one block copy (plus the metadata commit)
and a blank filesystem is not filled at boot. A cut leaves the old or the new file
(littlefs commits a file atomically); the CRC and the slot a seq must sit in catch the
rest.
"""
import struct
from micropython import const

from firmware.persist import crc32_halves

SEG_BYTES = const(4096)


class Ring:
    def __init__(self, vfs, path, n, rec, big=False):
        if rec < 8 or rec > SEG_BYTES:
            raise ValueError("ring record size must be 8..%d, got %r" % (SEG_BYTES, rec))
        self.vfs = vfs
        self.path = path
        self.n = n
        self.rec = rec
        self.big = big          # seq and CRC byte order
        # slots per file: all of them (one file) or a 4 KB block's worth (segments)
        self.per = n if n * rec <= SEG_BYTES else SEG_BYTES // rec
        self._f = None          # the segment file open for a batch, and its index
        self._fi = -1

    def _name(self, i):
        return self.path if self.per == self.n else "%s%d" % (self.path, i)

    # ---- records ----
    def encode(self, buf, off=0):
        """Seal the record at buf[off:]: the CRC of bytes 0..rec-3 in the last two."""
        k = self.rec - 2
        struct.pack_into(">H" if self.big else "<H", buf, off + k,
                         crc32_halves(memoryview(buf)[off:], k)[1])

    def check(self, buf, off=0):
        """seq of the record at buf[off:], 0 for an empty slot, -1 when corrupt."""
        k = self.rec - 2
        seq = struct.unpack_from(">I" if self.big else "<I", buf, off)[0]
        crc = struct.unpack_from(">H" if self.big else "<H", buf, off + k)[0]
        if seq and crc32_halves(memoryview(buf)[off:], k)[1] == crc:
            return seq
        for i in range(self.rec):
            if buf[off + i]:
                return -1
        return 0

    # ---- boot ----
    def load(self, buf, full=True):
        """Scan every slot (buf: one record buffer): (newest seq, valid, bad).
        A record is bad if its CRC fails or its seq sits in the wrong slot. full=False
        (big rings: a CRC per record would take seconds at boot on a board) reads the
        seqs only and checks the newest; a torn or corrupt newest one is counted bad
        and the scan repeats below it (valid is then min(n, newest))."""
        if full:
            return self._scan(buf, True, 0)
        cap = 0
        bad = 0
        for _ in range(4):
            newest = self._scan(buf, False, cap)[0]
            if not newest or self.read(newest, buf):
                # each bad one above newest took the slot of a then-oldest record
                return newest, min(self.n - bad, newest), bad
            bad += 1
            cap = newest
        newest, n, b = self._scan(buf, True, 0)     # many bad ones: check them all
        return newest, n, b

    def _scan(self, buf, full, cap):
        newest = n = bad = 0
        rec = self.rec
        for i in range((self.n + self.per - 1) // self.per):
            try:
                f = self.vfs.open(self._name(i), "rb")
            except OSError:
                continue        # segment never written
            with f:
                base = i * self.per
                for j in range(min(self.per, self.n - base)):    # slots in file i
                    if f.readinto(buf) != rec:
                        break
                    if full:
                        s = self.check(buf)
                    else:
                        s = struct.unpack_from(">I" if self.big else "<I", buf, 0)[0]
                        if cap and s >= cap:
                            continue
                    if s < 0 or (s and (s - 1) % self.n != base + j):
                        bad += 1
                    elif s:
                        n += 1
                        if s > newest:
                            newest = s
        return newest, n, bad

    # ---- writing (a task, never the metering cycle; OSError to the caller) ----
    def put(self, seq, buf):
        """Write the sealed record buf for seq, keeping its segment open for the next
        put (a batch in one open/close: call close() after)."""
        slot = (seq - 1) % self.n
        i = slot // self.per
        if i != self._fi:
            self.close()
            name = self._name(i)
            try:
                f = self.vfs.open(name, "r+b")
            except OSError:         # a new segment: empty slots
                f = self.vfs.open(name, "wb")
                z = bytes(self.rec)
                for _ in range(min(self.per, self.n - i * self.per)):   # its slots
                    f.write(z)
            self._f = f
            self._fi = i
        self._f.seek((slot - i * self.per) * self.rec)
        self._f.write(buf)

    def close(self):
        f = self._f
        self._f = None
        self._fi = -1
        if f is not None:
            f.close()

    def write(self, seq, buf):
        try:
            self.put(seq, buf)
        finally:
            self.close()

    # ---- reading ----
    def read(self, seq, buf):
        """Record seq into buf; True only when it is there, valid, with that seq."""
        if seq < 1:
            return False
        slot = (seq - 1) % self.n
        i = slot // self.per
        try:
            with self.vfs.open(self._name(i), "rb") as f:
                f.seek((slot - i * self.per) * self.rec)
                if f.readinto(buf) != self.rec:
                    return False
        except OSError:
            return False
        return self.check(buf) == seq
