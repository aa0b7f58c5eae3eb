"""The configuration space (0xC000..0xC3FF): reads and protected writes of the config.

    from firmware.regmaps.device import DeviceSpace
    space = DeviceSpace(settings)     # firmware/settings.py: config, access, stage, commands
    code = space.read(0xC040, 7, out, 0)
    code = space.write(0xC042, 1, src, 0, ctx)     # ctx: firmware.modbus.pdu.Caller

The rows are firmware/regmaps/devtable.py's table; encode()/decode() are its codec.
Writes (Modbus Application Protocol v1.1b3, section 7 exception codes):
- must cover whole rows, with no gap, and either config rows only (any sections: one
  change, all or nothing) or one special row; else 02 (Illegal Data Address), as
  for a read-only row;
- the unlock row needs no unlock (wrong password 03, locked out 06: "retry later");
- everything else needs this caller unlocked, else 01 (Illegal Function: the spec's
  "server in the wrong state to process a request of this type"; the address exists
  and reads work, so 02 would mislead, and 04 means a failure). The KSEM itself takes
  writes only over TLS (port 802, manual 5.14.2); a board here has no TLS, hence the
  password unlock;
- a config change is validated at once against the config with every write already
  accepted: a bad value is 03 and nothing changes; a full queue is 06; else queued,
  persisted and applied (firmware/staging.py), and the reply goes out at once.
Reads allocate (a few small objects): not the measurement path.
"""
import struct

from firmware import config as config_mod
from firmware.regmaps.devtable import (ROWS, BASE, END, U16, BOOL, ENUM, U32, I32, SF, STR,
                                       IP4, RAT, PRESET, UNLOCK, PWCHG, CMD, STAT, PRESETS)

EXC_FUNCTION = 1
EXC_ADDRESS = 2
EXC_VALUE = 3
_NONE16 = 0x8000        # SF: no override (SunSpec's int16 "not implemented")
_SPECIAL = (UNLOCK, PWCHG, CMD, STAT)


class Refused(Exception):
    """A register value that cannot be a config value (-> 03)."""


def _get(cfg, path):
    obj = cfg
    for p in path.split("."):
        if obj is None:
            return None
        obj = obj[int(p)] if p.isdigit() else obj.get(p)
    return obj


def _preset_of(port):
    for i in range(1, len(PRESETS)):
        a, b, p, s = PRESETS[i][1]
        if (port["address"], port["baud"], port["parity"], port["stop"]) == (a, b, p, s):
            return i
    return 0


def encode(row, cfg, out, o):
    """Registers of a config row (not a special one) into out[o:], big-endian."""
    _, n, typ, path, enum = row
    if typ == PRESET:
        v = _preset_of(_get(cfg, path[:path.rfind(".")]))
    elif path == "network.hostname":
        v = config_mod.hostname(cfg)
    else:
        v = _get(cfg, path)
    if typ == U16 or typ == BOOL or typ == PRESET:
        struct.pack_into(">H", out, o, int(v) & 0xFFFF)
    elif typ == ENUM:
        struct.pack_into(">H", out, o, enum.index(v) if v in enum else 0xFFFF)
    elif typ == U32 or typ == I32:
        struct.pack_into(">I" if typ == U32 else ">i", out, o, v)
    elif typ == SF:
        struct.pack_into(">H", out, o, _NONE16 if v is None else v & 0xFFFF)
    elif typ == STR:
        b = v.encode()[:2 * n]
        out[o:o + 2 * n] = b + bytes(2 * n - len(b))
    elif typ == IP4:
        out[o:o + 4] = bytes(config_mod.ipv4(path, v))
    elif typ == RAT:
        num, den = config_mod.parse_exact(path, v)
        if num >> 64 or den >> 64:        # a decimal beyond 64 bits: all ones
            num = den = (1 << 64) - 1
        struct.pack_into(">II", out, o, num >> 32, num & 0xFFFFFFFF)
        struct.pack_into(">II", out, o + 8, den >> 32, den & 0xFFFFFFFF)


def _text(src, so, n):
    b = bytes(src[so:so + 2 * n])
    end = b.find(b"\x00")
    if end >= 0:
        if b[end:].strip(b"\x00"):
            raise Refused("text after NUL")
        b = b[:end]
    for c in b:
        if c < 0x20 or c > 0x7E:
            raise Refused("not printable ASCII")
    return b.decode()


def decode(row, src, so, work):
    """Set the row's value from src[so:] into work (a copy of the config's sections);
    Refused when the registers cannot be a value of this type."""
    _, n, typ, path, enum = row
    u = (src[so] << 8) | src[so + 1]
    if typ == U16:
        v = u
    elif typ == BOOL:
        if u > 1:
            raise Refused("bool")
        v = u == 1
    elif typ == ENUM:
        if u >= len(enum):
            raise Refused("enum")
        v = enum[u]
    elif typ == U32 or typ == I32:
        v = struct.unpack_from(">I" if typ == U32 else ">i", src, so)[0]
    elif typ == SF:
        v = None if u == _NONE16 else (u - 0x10000 if u & 0x8000 else u)
    elif typ == STR:
        v = _text(src, so, n)
    elif typ == IP4:
        v = "%d.%d.%d.%d" % tuple(src[so:so + 4])
    elif typ == RAT:
        a, b, c, d = struct.unpack_from(">IIII", src, so)
        v = [(a << 32) | b, (c << 32) | d]
    elif typ == PRESET:
        if u >= len(PRESETS):
            raise Refused("preset")
        if u:
            port = _get(work, path[:path.rfind(".")])
            (port["address"], port["baud"], port["parity"], port["stop"]) = PRESETS[u][1]
        return
    parts = path.split(".")
    obj = work
    for p in parts[:-1]:
        if p.isdigit():
            obj = obj[int(p)]
        else:
            if obj.get(p) is None:
                obj[p] = {}        # sunspec_sf: None until a factor is set
            obj = obj[p]
    last = parts[-1]
    if last.isdigit():
        obj[int(last)] = v
    elif v is None and typ == SF:
        obj.pop(last, None)
    else:
        obj[last] = v


class DeviceSpace:
    def __init__(self, settings):
        self.settings = settings

    def _rows(self, addr, count):
        """Rows overlapping [addr, addr + count) as (first, last) indices into ROWS."""
        first = last = -1
        end = addr + count
        for i in range(len(ROWS)):
            a, n = ROWS[i][0], ROWS[i][1]
            if a < end and a + n > addr:
                if first < 0:
                    first = i
                last = i
        return first, last

    def read(self, addr, count, out, off):
        if addr < BASE or addr + count - 1 > END:
            return EXC_ADDRESS
        for i in range(2 * count):
            out[off + i] = 0
        first, last = self._rows(addr, count)
        if first < 0:
            return 0
        s = self.settings
        cfg = s.config()
        for i in range(first, last + 1):
            row = ROWS[i]
            a, n, typ = row[0], row[1], row[2]
            buf = bytearray(2 * n)
            if typ == STAT:
                struct.pack_into(">H", buf, 0, min(0xFFFF, s.status(row[3])))
            elif typ not in _SPECIAL:       # unlock, passwords, command read 0
                encode(row, cfg, buf, 0)
            lo = max(a, addr)
            hi = min(a + n, addr + count)
            out[off + 2 * (lo - addr):off + 2 * (hi - addr)] = buf[2 * (lo - a):2 * (hi - a)]
        return 0

    def write(self, addr, count, src, soff, ctx=None):
        if addr < BASE or addr + count - 1 > END:
            return EXC_ADDRESS
        first, last = self._rows(addr, count)
        if first < 0:
            return EXC_ADDRESS
        row = ROWS[first]
        typ = row[2]
        s = self.settings
        if typ == UNLOCK:           # from its start, up to its 16 registers
            if addr != row[0] or count > row[1]:
                return EXC_ADDRESS
            try:
                pw = _text(src, soff, count)
            except Refused:
                pw = "\x00"           # a wrong password all the same: counted
            return s.access.unlock(ctx, pw)
        # Whole rows, no gaps, and no special row among several.
        if addr != row[0] or ROWS[last][0] + ROWS[last][1] != addr + count:
            return EXC_ADDRESS
        for i in range(first, last):
            if ROWS[i][0] + ROWS[i][1] != ROWS[i + 1][0]:
                return EXC_ADDRESS
            if ROWS[i][2] in _SPECIAL or ROWS[i + 1][2] in _SPECIAL:
                return EXC_ADDRESS
        if typ == STAT:
            return EXC_ADDRESS
        if not s.access.allowed(ctx):
            return EXC_FUNCTION
        if typ == PWCHG:
            try:
                old = _text(src, soff, 16)
                new = _text(src, soff + 32, 16)
            except Refused:
                return EXC_VALUE
            return s.change_password(old, new)
        if typ == CMD:
            return s.command((src[soff] << 8) | src[soff + 1], ctx)
        base = s.config()
        work = {}
        try:
            for i in range(first, last + 1):
                top = ROWS[i][3].split(".")[0]
                if top not in work:
                    work[top] = config_mod._copy(base[top])
                decode(ROWS[i], src, soff + 2 * (ROWS[i][0] - addr), work)
        except Refused:
            return EXC_VALUE
        return s.stage.stage(work, ctx)
