"""Persisted configuration and device secrets: CRC'd records in two slots on littlefs.

    from firmware.cfgstore import Slots
    cfg = Slots(vfs, "/cfg/c")       # the config (JSON of the validated config)
    data = cfg.load()                # newest valid payload (bytes) or None
    cfg.save(b'{"metering": ...}')   # into the older slot: old or new after any cut
    sec = Slots(vfs, "/cfg/s")       # the device secrets (firmware/access.py)

Record (little-endian): b"CF", u8 version 1, u8 0, u32 seq, u32 payload length,
payload, u32 CRC-32 (firmware/persist.py, as zlib) of everything before it. Two slot
files <prefix>0 and <prefix>1; a save writes seq + 1 into the slot not holding the
newest record, so the newest valid record is always whole in the other one: a power cut
at any block write leaves the old record or the new one, never a mix (littlefs commits
a file at close; the CRC and the length catch what it does not). clear() removes both
(factory reset). The counters live beside them in /cnt (firmware/persist.py); the same
littlefs, mounted once by firmware/app.py.
"""
import struct
from micropython import const

from firmware.persist import _crc_halves

_HEAD = const(12)
_MAX = const(4096)        # a payload larger than this is not ours


def record(seq, payload):
    n = len(payload)
    buf = bytearray(_HEAD + n + 4)
    buf[0:4] = b"CF\x01\x00"
    struct.pack_into("<II", buf, 4, seq, n)
    buf[_HEAD:_HEAD + n] = payload
    ch, cl = _crc_halves(buf, _HEAD + n)
    struct.pack_into("<HH", buf, _HEAD + n, cl, ch)
    return buf


def parse(data):
    """(seq, payload) of a valid record, or None."""
    if len(data) < _HEAD + 4 or data[0:4] != b"CF\x01\x00":
        return None
    seq, n = struct.unpack_from("<II", data, 4)
    if n > _MAX or len(data) != _HEAD + n + 4:
        return None
    ch, cl = _crc_halves(data, _HEAD + n)
    if struct.unpack_from("<HH", data, _HEAD + n) != (cl, ch):
        return None
    return seq, bytes(data[_HEAD:_HEAD + n])


class Slots:
    def __init__(self, vfs, prefix):
        self.vfs = vfs
        self.prefix = prefix
        self.seq = 0
        self.slot = 1           # the slot holding the newest record
        self.corrupt = 0        # slots found torn or corrupt by the last load()
        d = prefix[:prefix.rfind("/")]
        if d:
            try:
                vfs.mkdir(d)
            except OSError:
                pass            # already there

    def _read(self, i):
        try:
            with self.vfs.open(self.prefix + str(i), "rb") as f:
                return f.read()
        except OSError:
            return None

    def load(self):
        best = None
        self.corrupt = 0
        for i in (0, 1):
            data = self._read(i)
            if data is None:
                continue
            r = parse(data)
            if r is None:
                self.corrupt += 1
            elif best is None or r[0] > best[0]:
                best = (r[0], i, r[1])
        if best is None:
            return None
        self.seq, self.slot = best[0], best[1]
        return best[2]

    def save(self, payload):
        """Write payload as the newest record (OSError when the flash refuses)."""
        i = 1 - self.slot
        buf = record(self.seq + 1, payload)
        with self.vfs.open(self.prefix + str(i), "wb") as f:
            f.write(buf)
        self.seq += 1
        self.slot = i

    def clear(self):
        for i in (0, 1):
            try:
                self.vfs.remove(self.prefix + str(i))
            except OSError:
                pass
        self.seq = 0
        self.slot = 1
