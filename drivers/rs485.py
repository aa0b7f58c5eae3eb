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
write, and either txdone() or flush(). Construct it with timeout=0 so reads return at
once, and with an rx buffer (rxbuf=) that holds what arrives while the event loop is
stalled: at 38400 baud a 45 ms flash erase brings 173 bytes, so take 512 or more.
de may be None for transceivers that switch direction by themselves.

Waking up for bytes: where the UART has an idle-line interrupt (UART.IRQ_RXIDLE: rp2,
esp32, stm32, ...) and asyncio has ThreadSafeFlag, the interrupt sets a flag that recv()
awaits: one wake-up per burst, once the line has gone idle. Elsewhere (the sim board's
pty, the unix port) asyncio polls the uart as a stream. The RTU framing works on
lengths and CRCs either way; this only saves wake-ups.

Releasing the bus: DE goes low once the UART reports the last stop bit out. send()
sleeps through the frame's time on the wire (n characters of char_us), then polls
txdone() at 1 ms steps, awaiting between polls (no spin), for at most _DONE_MS.
txdone_late_us covers UARTs that report done while the last character is still going
out (rp2, esp8266 and nrf per MicroPython's machine.UART notes): that long is awaited
too, rounded up to whole ms. UART.IRQ_TXIDLE is not used: rp2 fires it five characters
early and esp32 lacks it. A loop that oversleeps keeps DE high that much longer, so a
board with a hardware direction signal should use it.
"""
import asyncio
from time import ticks_us, ticks_diff
from micropython import const

_PARITY = {"N": None, "E": 0, "O": 1}  # machine.UART: None, 0 = even, 1 = odd
_DATA_BITS = const(8)                  # Modbus RTU: 8 data bits (Serial Line 2.5.1)
_STALL_MS = const(200)                 # a UART that takes nothing this long is stuck
_DONE_MS = const(20)                   # txdone polls after the frame's time, at most
_ETIMEDOUT = const(110)


class RS485:
    def __init__(self, uart, de=None, baudrate=19200, parity="E", stop=1, de_active=1,
                 txdone_late_us=0):
        self.uart = uart
        self.de = de
        self._on = de_active
        self._off = 1 - de_active
        self._late_ms = (txdone_late_us + 999) // 1000
        self._wbuf = None         # the last buffer sent and a view of its first _wn bytes
        self._wn = 0
        self._wview = None
        self.rx_us = ticks_us()
        self._idle = None
        self._reader = None
        flag = getattr(asyncio, "ThreadSafeFlag", None)
        trig = getattr(uart, "IRQ_RXIDLE", None)
        if flag is not None and trig is not None and hasattr(uart, "irq"):
            self._idle = flag()
            uart.irq(handler=self._on_idle, trigger=trig)
        else:
            self._reader = asyncio.StreamReader(uart)
        if de is not None:
            de.value(self._off)
        self.init(baudrate, parity, stop)

    def _on_idle(self, _uart):
        # Interrupt handler (soft): only wakes the waiting task.
        self._idle.set()

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
        f = self._idle
        if f is None:
            n = await self._reader.readinto(mv)
        else:
            while True:
                n = self.uart.readinto(mv)
                if n:
                    break
                await f.wait()    # the idle-line interrupt sets it
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
        u = self.uart
        if de is not None:
            de.value(self._on)
        try:
            if buf is not self._wbuf or n != self._wn:
                # One view per buffer and length: a port answering the same request
                # again allocates nothing here.
                self._wview = memoryview(buf)[:n]
                self._wbuf = buf
                self._wn = n
            t0 = ticks_us()
            k = u.write(self._wview)
            sent = k or 0
            stalled = 0
            while sent < n:
                await asyncio.sleep_ms(1)
                k = u.write(memoryview(buf)[sent:n])
                if k:
                    sent += k
                    stalled = 0
                else:
                    # Nothing taken: give the line a while, then drop the reply.
                    stalled += 1
                    if stalled > _STALL_MS:
                        raise OSError(_ETIMEDOUT)
            # The master may talk t3.5 after our last byte: DE must be low by then.
            # Sleep through the frame's time on the wire, then poll at ms steps. (A
            # line without bit timing, like the sim board's pty, is done at once.)
            done = hasattr(u, "txdone")
            if done and u.txdone():
                return
            left = n * self.char_us - ticks_diff(ticks_us(), t0)
            if left >= 1000:
                await asyncio.sleep_ms(left // 1000)
            if done:
                for _ in range(_DONE_MS):
                    if u.txdone():
                        break
                    await asyncio.sleep_ms(1)
                if self._late_ms:
                    await asyncio.sleep_ms(self._late_ms)
            elif hasattr(u, "flush"):
                u.flush()         # nearly done by now: returns within a character
        finally:
            if de is not None:
                de.value(self._off)
