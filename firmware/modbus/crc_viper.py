"""CRC-16/MODBUS kernel under the native emitter (see crc.py, which falls back to the
same table loop in plain bytecode where the port has no emitter)."""
import micropython


@micropython.viper
def crc16(buf, start: int, end: int, table) -> int:
    b = ptr8(buf)
    t = ptr16(table)
    c = 0xFFFF
    i = start
    while i < end:
        c = (c >> 8) ^ t[(c ^ b[i]) & 0xFF]
        i += 1
    return c
