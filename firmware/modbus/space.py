"""The register-space interface: what a Modbus server reads and writes, without
knowing Modbus. This module is its one documented place; it holds no code.

The firmware's implementation is firmware.regmaps.table.Space (the KSEM, SunSpec and
SDM630 maps over the meter's snapshot, built by firmware.regmaps.build); the Modbus
stack's tests use the simple spaces in tests/spaces.py. The dispatcher
(firmware/modbus/pdu.py) takes one space for FC 03/06/16 and one for FC 04.

A space is any object with (duck-typed):

- read(addr, count, out, off) -> 0 or a Modbus exception code. On 0 the 2*count
  bytes out[off:off + 2*count] hold registers addr..addr+count-1, high byte first
  (Application Protocol v1.1b3, 4.2). All or nothing: if any of those addresses
  is outside the space the answer is 2 (Illegal Data Address) and out is not used;
  3 (Illegal Data Value) for a count the space refuses.
- write(addr, count, src, soff, ctx=None) -> 0 or an exception code. ctx is the
  caller (firmware.modbus.pdu.Caller: which port or connection asked). src[soff:soff+2*count]
  holds the big-endian values. All or nothing as well: 2 if any register is
  missing or not writable, 3 if a value is refused; then nothing is changed.

The dispatcher calls read or write exactly once per request, with 1 <= count <= 125
and addr + count <= 0x10000 already checked. A map that serves measurements takes
one snapshot at the top of read(), so a response never mixes two cycles; on a board
read() allocates nothing. If read or write raises, the dispatcher answers 04 (Server
Device Failure).
"""
