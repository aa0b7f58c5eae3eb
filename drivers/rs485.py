"""RS485 half-duplex transceiver: a UART plus a driver-enable (DE) pin.

    from machine import UART, Pin
    from drivers.rs485 import RS485
    port = RS485(UART(0, tx=Pin(0), rx=Pin(1), timeout=0), de=Pin(2, Pin.OUT), baudrate=38400,
                 parity="N", stop=2)
    n = await port.recv(mv)            # waits for bytes; port.rx_us = when they were seen
    n = port.read_now(mv)              # whatever else arrived, never waits
    await port.send(buf, n)            # DE high, bytes out, DE low once the last stop bit left

The board passes the uart and pin objects, so no pin numbers live here. The uart
needs the machine.UART subset: init(baudrate=, bits=, parity=, stop=), readinto,
write, and either txdone() or flush(); for asyncio it must be pollable (machine.UART
is, and so is the sim board's pty UART). Construct the UART with timeout=0 so reads
return at once. de may be None for transceivers that switch direction by themselves.

DE goes low when the UART reports the last stop bit out (txdone), checked in a short
bounded spin after sleeping through most of the frame; a loop that oversleeps keeps
DE high that much longer, so a board with a hardware direction signal should use it.
"""
import asyncio
from time import ticks_us, ticks_diff
from micropython import const

_PARITY = {"N": None, "E": 0, "O": 1}  # machine.UART: None, 0 = even, 1 = odd
_DATA_BITS = const(8)                  # Modbus RTU: 8 data bits (Serial Line 2.5.1)
_STALL_MS = const(200)                 # a UART that takes nothing this long is stuck
_ETIMEDOUT = const(110)


class RS485:
    def __init__(self, uart, de=None, baudrate=19200, parity="E", stop=1, de_active=1):
        self.uart = uart
        self.de = de
        self._on = de_active
        self._off = 1 - de_active
        self._reader = asyncio.StreamReader(uart)
        self.rx_us = ticks_us()
        if de is not None:
            de.value(self._off)
        self.init(baudrate, parity, stop)

    def init(self, baudrate, parity, stop):
        """Apply line settings; ValueError names a bad one."""
        if parity not in _PARITY:
            raise ValueError("parity %r: use N, E or O" % (parity,))
        if stop not in (1, 2):
            raise ValueError("stop bits %r: use 1 or 2" % (stop,))
        if not 1200 <= baudrate <= 1000000:
            raise ValueError("baud rate %r out of range" % (baudrate,))
        self.uart.init(baudrate=baudrate, bits=_DATA_BITS, parity=_PARITY[parity], stop=stop)
        self.baudrate = baudrate
        self.parity = parity
        self.stop = stop
        # Start bit, data bits, optional parity bit, stop bits.
        bits = 1 + _DATA_BITS + (parity != "N") + stop
        self.char_us = (bits * 1000000 + baudrate - 1) // baudrate

    async def recv(self, mv):
        """Wait until bytes arrive, read up to len(mv) of them; return the count.

        0 means the line woke the poller without data (hang-up, error): callers back off.
        """
        n = await self._reader.readinto(mv)
        if n:
            self.rx_us = ticks_us()
        return n or 0

    def read_now(self, mv):
        """Read what is already buffered, without waiting."""
        n = self.uart.readinto(mv)
        if n:
            self.rx_us = ticks_us()
        return n or 0

    def silent_us(self):
        """Microseconds since bytes were last seen."""
        return ticks_diff(ticks_us(), self.rx_us)

    async def send(self, buf, n):
        """Transmit buf[0:n] with DE raised, and release the bus once it is out."""
        de = self.de
        if de is not None:
            de.value(self._on)
        try:
            mv = memoryview(buf)
            sent = 0
            stalled = 0
            while sent < n:
                k = self.uart.write(mv[sent:n])
                if k:
                    sent += k
                    stalled = 0
                else:
                    # Nothing taken: give the line a while, then drop the reply.
                    stalled += 1
                    if stalled > _STALL_MS:
                        raise OSError(_ETIMEDOUT)
                    await asyncio.sleep_ms(1)
            # Sleep through most of the transmission, then wait out the rest
            # closely: the master may talk t3.5 after our last byte, and DE
            # must be low by then. (A line with no bit timing, like the sim
            # board's pty, is done at once.)
            u = self.uart
            if not (hasattr(u, "txdone") and u.txdone()):
                ms = (n - 2) * self.char_us // 1000
                if ms > 1:
                    await asyncio.sleep_ms(ms - 1)
                self._wait_tx_done()
        finally:
            if de is not None:
                de.value(self._off)

    def _wait_tx_done(self):
        u = self.uart
        if hasattr(u, "txdone"):
            # Bounded spin: at most the time of a few characters.
            t0 = ticks_us()
            limit = 4 * self.char_us + 2000
            while not u.txdone() and ticks_diff(ticks_us(), t0) < limit:
                pass
        elif hasattr(u, "flush"):
            u.flush()
