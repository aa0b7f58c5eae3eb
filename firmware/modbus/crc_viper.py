"""CRC-16/MODBUS kernel under the native emitter (see crc.py, which falls back to the
same table loop in plain bytecode where the port has no emitter). The table is 512
bytes, each entry low byte first, read byte by byte (it may lie unaligned in flash)."""
import micropython


@micropython.viper
def crc16(buf, start: int, end: int, table) -> int:
    b = ptr8(buf)
    t = ptr8(table)
    c = 0xFFFF
    i = start
    while i < end:
        j = ((c ^ b[i]) & 0xFF) << 1
        c = (c >> 8) ^ t[j] ^ (t[j + 1] << 8)
        i += 1
    return c
