"""Modbus RTU slave on one RS485 port (Modbus over Serial Line v1.02).

    from firmware.modbus.rtu import RtuSlave, PRESETS
    from firmware.modbus.pdu import Dispatcher
    d = Dispatcher(holding, inputs, ident, rtu=True)     # FC 08/00 allowed on serial
    a = RtuSlave(RS485(uart_a, de_a), d, **PRESETS["plenticore"])   # 1, 38400 8N2
    b = RtuSlave(RS485(uart_b, de_b), d, **PRESETS["piko_mp_plus"]) # 247, 19200 8E1
    asyncio.create_task(a.run()); asyncio.create_task(b.run())
    a.stats.ok, a.stats.errors, a.stats.last_ms        # for the bus LED

A frame ends after 3.5 character times of silence (2.5.1.1; a fixed 1750 us above
19200 baud). The CRC is checked (2.5.1.2); a bad one, a frame shorter than 4 bytes
or longer than 256 is dropped in silence and counted in stats.errors. Address 0 is
a broadcast (2.1): writes (FC 06, 16) are carried out, nothing is answered. Other
addresses than ours are ignored. t1.5 (inter-character gaps) is not policed: the
CRC already rejects a frame mangled by a gap, and a host pty has no bit timing.

The port object is drivers/rs485.RS485 (or anything with the same recv, read_now,
silent_us, send, init and char_us).
"""
import asyncio
from time import ticks_ms
from micropython import const

from firmware.modbus.crc import check as crc_ok, append as crc_append

_ADU_MAX = const(256)          # Serial Line 2.5.1: address + 253-byte PDU + CRC
_ADU_MIN = const(4)            # address, function code, CRC
_BROADCAST = const(0)
_T35_FAST_US = const(1750)     # 2.5.1.1: fixed t3.5 above 19200 baud
_FC_WRITE_SINGLE = const(0x06)
_FC_WRITE_MULTIPLE = const(0x10)

BAUDS = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)

# KSEM G2 presets (manual 5.14.1); A ships as "plenticore", B as "piko_mp_plus".
PRESETS = {
    "plenticore": {"address": 1, "baud": 38400, "parity": "N", "stop": 2},
    "piko_mp_plus": {"address": 247, "baud": 19200, "parity": "E", "stop": 1},
    "piko_ci": {"address": 1, "baud": 19200, "parity": "N", "stop": 2},
    "enector": {"address": 2, "baud": 57600, "parity": "N", "stop": 2},
}


class PortStats:
    """Counters one port keeps for the bus LED and diagnostics."""
    __slots__ = ("ok", "errors", "other", "broadcast", "last_ms", "last_error_ms")

    def __init__(self):
        self.ok = 0              # requests for us answered (normal or exception)
        self.errors = 0          # bad CRC, runt or oversize frames, line errors
        self.other = 0           # good frames for another slave
        self.broadcast = 0       # broadcast writes carried out
        self.last_ms = None      # ticks_ms of the last frame for us (or broadcast)
        self.last_error_ms = None


class RtuSlave:
    def __init__(self, port, dispatcher, address=1, baud=19200, parity="E", stop=1,
                 enabled=True):
        self.port = port
        self.dispatcher = dispatcher
        self.stats = PortStats()
        self._rx = bytearray(_ADU_MAX)
        self._tx = bytearray(_ADU_MAX)
        self._junk = bytearray(32)
        self._on = asyncio.Event()
        self.enabled = False
        self.configure(address, baud, parity, stop, enabled)

    def configure(self, address=None, baud=None, parity=None, stop=None, enabled=None):
        """Change any setting; ValueError (nothing changed) if one is out of range."""
        address = self.address if address is None else address
        baud = self.port.baudrate if baud is None else baud
        parity = self.port.parity if parity is None else parity
        stop = self.port.stop if stop is None else stop
        if not 1 <= address <= 247:
            raise ValueError("RTU address %r: use 1..247" % (address,))
        if baud not in BAUDS:
            raise ValueError("baud rate %r: use one of %r" % (baud, BAUDS))
        if parity not in ("N", "E", "O") or stop not in (1, 2):
            raise ValueError("line %r/%r: parity N/E/O, stop 1/2" % (parity, stop))
        self.address = address
        self.port.init(baud, parity, stop)
        cu = self.port.char_us
        self.t35_us = _T35_FAST_US if baud > 19200 else (7 * cu + 1) // 2
        if enabled is not None:
            self.enabled = bool(enabled)
            if self.enabled:
                self._on.set()
            else:
                self._on.clear()

    def settings(self):
        p = self.port
        return {"enabled": self.enabled, "address": self.address, "baud": p.baudrate,
                "parity": p.parity, "stop": p.stop}

    def _error(self):
        self.stats.errors += 1
        self.stats.last_error_ms = ticks_ms()

    async def run(self):
        """Serve the port until cancelled."""
        port = self.port
        mv = memoryview(self._rx)
        while True:
            if not self.enabled:
                await self._on.wait()
                try:
                    while port.read_now(self._junk):
                        pass      # drop what came while we were off
                except OSError:
                    pass
                continue
            try:
                n = await port.recv(mv)
            except OSError:
                self._error()     # line gone (host pty closed, UART fault)
                await asyncio.sleep_ms(100)
                continue
            if not n:
                self._error()     # woken without data: hang-up or line fault
                await asyncio.sleep_ms(20)   # don't spin on it
                continue
            n, overrun = await self._collect(n)
            if self.enabled:
                try:
                    await self._frame(n, overrun)
                except Exception:
                    self._error()     # whatever a frame does, the port keeps serving

    async def _collect(self, n):
        """Read on until t3.5 of silence; return (length, overrun)."""
        port = self.port
        mv = memoryview(self._rx)
        overrun = False
        while True:
            # The loop clock counts whole ms: sleep the whole ms of t3.5 left,
            # then yield (other tasks run) until the sub-ms rest has passed.
            wait = self.t35_us - port.silent_us()
            if wait > 0:
                await asyncio.sleep_ms(wait // 1000)
            try:
                if n < _ADU_MAX:
                    k = port.read_now(mv[n:])
                    n += k
                else:
                    k = port.read_now(self._junk)
                    overrun = overrun or k > 0
            except OSError:
                return n, True
            if not k and port.silent_us() >= self.t35_us:
                return n, overrun

    async def _frame(self, n, overrun):
        rx = self._rx
        st = self.stats
        if overrun or n < _ADU_MIN or not crc_ok(rx, n):
            self._error()
            return
        addr = rx[0]
        if addr == _BROADCAST:
            fc = rx[1]
            if fc == _FC_WRITE_SINGLE or fc == _FC_WRITE_MULTIPLE:
                self.dispatcher.handle(rx, n - 3, self._tx, 1, 1)
                if not self._tx[1] & 0x80:      # carried out, not refused
                    st.broadcast += 1
                st.last_ms = ticks_ms()
            return
        if addr != self.address:
            st.other += 1
            return
        k = self.dispatcher.handle(rx, n - 3, self._tx, 1, 1)
        st.last_ms = ticks_ms()
        if not k:
            return
        tx = self._tx
        tx[0] = addr
        m = crc_append(tx, k + 1)
        try:
            await self.port.send(tx, m)
        except OSError:
            self._error()
            return
        st.ok += 1
