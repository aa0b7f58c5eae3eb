"""CRC-16/MODBUS for RTU frames.

    from firmware.modbus.crc import crc16
    c = crc16(frame, 0, n - 2)
    ok = frame[n - 2] == c & 0xFF and frame[n - 1] == c >> 8

Modbus over Serial Line v1.02, 2.5.1.2 and 6.2.2: register preset to 0xFFFF,
reflected polynomial 0xA001, the low byte goes on the wire first. The table
(256 half-words, 512 bytes) is built once at import so each byte costs one
lookup instead of eight shift/xor steps. The loop runs under the native emitter
(crc_viper.py, about 0.1 us per byte on an RP2040 instead of 12) where the port has
one, and as plain bytecode otherwise (the WebAssembly port): PATH says which;
crc16_viper and crc16_plain stay reachable for the tests and the benchmark.
"""
from array import array
from micropython import const

_POLY = const(0xA001)   # 0x8005 bit-reversed (Serial Line 6.2.2)
_INIT = const(0xFFFF)


def _build():
    t = array("H", bytes(512))
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ _POLY if c & 1 else c >> 1
        t[i] = c
    return t


_TABLE = _build()


def _plain(buf, start, end, t):
    c = _INIT
    for i in range(start, end):
        c = (c >> 8) ^ t[(c ^ buf[i]) & 0xFF]
    return c


try:
    from firmware.modbus.crc_viper import crc16 as _viper
except (ImportError, SyntaxError):   # no native emitter on this port
    _viper = None
_kern = _viper or _plain
PATH = "viper" if _viper else "plain"


def crc16(buf, start=0, end=None):
    """CRC of buf[start:end] (no slice is made, nothing is allocated)."""
    return _kern(buf, start, len(buf) if end is None else end, _TABLE)


def crc16_plain(buf, start=0, end=None):
    return _plain(buf, start, len(buf) if end is None else end, _TABLE)


crc16_viper = None
if _viper:
    def crc16_viper(buf, start=0, end=None):
        return _viper(buf, start, len(buf) if end is None else end, _TABLE)


def check(buf, n):
    """True if the last two of the n bytes are the CRC of the ones before."""
    if n < 3:
        return False
    c = _kern(buf, 0, n - 2, _TABLE)
    return buf[n - 2] == c & 0xFF and buf[n - 1] == c >> 8


def append(buf, n):
    """Write the CRC of buf[0:n] at buf[n], buf[n+1]; return n + 2."""
    c = _kern(buf, 0, n, _TABLE)
    buf[n] = c & 0xFF
    buf[n + 1] = c >> 8
    return n + 2
