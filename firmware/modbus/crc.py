"""CRC-16/MODBUS for RTU frames.

    from firmware.modbus.crc import crc16
    c = crc16(frame, 0, n - 2)
    ok = frame[n - 2] == c & 0xFF and frame[n - 1] == c >> 8

Modbus over Serial Line v1.02, 2.5.1.2 and 6.2.2: register preset to 0xFFFF,
reflected polynomial 0xA001, the low byte goes on the wire first. The table
(256 half-words, 512 bytes) is built once at import so each byte costs one
lookup instead of eight shift/xor steps.
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


def crc16(buf, start=0, end=None):
    """CRC of buf[start:end] (no slice is made, nothing is allocated)."""
    if end is None:
        end = len(buf)
    t = _TABLE
    c = _INIT
    for i in range(start, end):
        c = (c >> 8) ^ t[(c ^ buf[i]) & 0xFF]
    return c


def check(buf, n):
    """True if the last two of the n bytes are the CRC of the ones before."""
    if n < 3:
        return False
    c = crc16(buf, 0, n - 2)
    return buf[n - 2] == c & 0xFF and buf[n - 1] == c >> 8


def append(buf, n):
    """Write the CRC of buf[0:n] at buf[n], buf[n+1]; return n + 2."""
    c = crc16(buf, 0, n)
    buf[n] = c & 0xFF
    buf[n + 1] = c >> 8
    return n + 2
