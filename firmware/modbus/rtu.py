"""Modbus RTU slave on one RS485 port (Modbus over Serial Line v1.02).

    from firmware.modbus.rtu import RtuSlave, preset
    from firmware.modbus.pdu import Dispatcher
    d = Dispatcher(holding, inputs, ident, rtu=True)     # FC 08/00 allowed on serial
    a = RtuSlave(RS485(uart_a, de_a), d, **preset("plenticore"))    # 1, 38400 8N2
    b = RtuSlave(RS485(uart_b, de_b), d, **preset("piko_mp_plus"))  # 247, 19200 8E1
    asyncio.create_task(a.run()); asyncio.create_task(b.run())
    a.stats.ok, a.stats.errors, a.stats.last_ms        # for the bus LED

Framing. A frame is found by its length, as the Application Protocol lets a receiver
do (the function code, and for variable frames the byte count, give the length of
every request and response; 4.1, 6.x), and a candidate counts only with a good CRC
(Serial Line 2.5.1.2). So a frame does not depend on when Python saw the bytes: when
the event loop stalls (a flash erase with interrupts off, a long task) and another
slave's traffic and our request pile up in the UART buffer, they are still told apart.
- Frames for our address (and broadcasts, address 0) are read as requests only; frames
  for other addresses as a request or a response of that function code, whichever
  CRC holds (exception 5 bytes, FC 01..04 responses 5 + byte count, FC 05/06/15/16
  and FC 08 8 bytes, FC 43/14 by its object list, ...).
- t3.5 of silence (2.5.1.1; a fixed 1750 us above 19200 baud) still ends a frame the
  table cannot size (FC 08 with other data lengths, unknown codes: the CRC decides),
  and it resynchronises: bytes that are no frame by length are hunted through, one
  byte at a time, once the line has gone quiet (or the buffer is full), for the next
  frame with a good CRC. Each run of dropped bytes counts once in stats.errors.
- A reply goes out only to a request with our address, after t3.5 of silence on the
  line; other addresses get silence (stats.other), broadcasts (2.1) are carried out
  for FC 06/16 and never answered.
t1.5 (inter-character gaps) is not policed: the CRC rejects a frame a gap mangled, and
a host pty has no bit timing.

The port object is drivers/rs485.RS485 (or anything with the same recv, read_now,
silent_us, send, init and char_us). On boards whose UART has an idle-line interrupt
RS485 wakes us with it; the framing does not depend on it.

answer(p, n) turns a whole frame in the receive buffer into a reply in the transmit
buffer (CRC check, dispatch, CRC) and allocates nothing, given spaces that do not.
"""
import asyncio
from time import ticks_ms
from micropython import const

from firmware.modbus.crc import crc16, append as crc_append
from firmware.modbus.pdu import Caller

_ADU_MAX = const(256)          # Serial Line 2.5.1: address + 253-byte PDU + CRC
_ADU_MIN = const(4)            # address, function code, CRC
_BUF = const(512)              # room for a frame of someone else's and ours behind it
_BROADCAST = const(0)
_ADDR_MAX = const(247)         # 248..255 are reserved (Serial Line 2.2)
_T35_FAST_US = const(1750)     # 2.5.1.1: fixed t3.5 above 19200 baud
_QUIET_MAX = const(40)         # bursts heard before giving up on a line that never rests
_FC_WRITE_SINGLE = const(0x06)
_FC_WRITE_MULTIPLE = const(0x10)
_FC_DEVID = const(0x2B)

_BAUDS = const((1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200))

# KSEM G2 presets (manual 5.14.1); A ships as "plenticore", B as "piko_mp_plus":
# (name, address, baud, parity, stop). A tuple of constants: flash when frozen (the
# dicts it replaced were about 400 B of RAM).
_PRESETS = const((("plenticore", 1, 38400, "N", 2), ("piko_mp_plus", 247, 19200, "E", 1),
                  ("piko_ci", 1, 19200, "N", 2), ("enector", 2, 57600, "N", 2)))


def preset(name):
    """The settings of a KSEM preset as RtuSlave/configure keywords (a new dict)."""
    for p in _PRESETS:
        if p[0] == name:
            return {"address": p[1], "baud": p[2], "parity": p[3], "stop": p[4]}
    raise ValueError("RTU preset %r: use one of %s"
                     % (name, ", ".join(p[0] for p in _PRESETS)))


# Frame lengths (address + PDU + CRC) from the Application Protocol's PDU layouts.
# > 0: the length; 0: not known from the head (silence decides); -1: more bytes needed.
def _req_len(rx, p, avail, fc):
    if 1 <= fc <= 6 or fc == 0x08:
        return 8                       # 6.1-6.6: two 16-bit fields; 6.8: sub-fn + 2 bytes
    if fc == 0x0F or fc == 0x10:       # 6.11, 6.12: byte count at PDU offset 5
        return 9 + rx[p + 6] if avail > 6 else -1
    if fc == 0x07 or fc == 0x0B or fc == 0x0C or fc == 0x11:
        return 4                       # no data
    if fc == _FC_DEVID:
        return 7                       # 6.21: MEI type, read code, object id
    if fc == 0x14 or fc == 0x15:       # 6.14, 6.15: byte count first
        return 5 + rx[p + 2] if avail > 2 else -1
    if fc == 0x16:
        return 10                      # 6.16: address, AND mask, OR mask
    if fc == 0x17:                     # 6.17: write byte count at PDU offset 9
        return 13 + rx[p + 10] if avail > 10 else -1
    if fc == 0x18:
        return 6                       # 6.18: FIFO pointer address
    return 0


def _rsp_len(rx, p, avail, fc):
    if fc & 0x80:
        return 5                       # 7: exception code
    if 1 <= fc <= 4 or fc == 0x0C or fc == 0x11 or 0x14 <= fc <= 0x15 or fc == 0x17:
        return 5 + rx[p + 2] if avail > 2 else -1
    if 5 <= fc <= 6 or fc == 0x08 or fc == 0x0B or 0x0F <= fc <= 0x10:
        return 8                       # echo or two 16-bit fields
    if fc == 0x07:
        return 5
    if fc == 0x16:
        return 10
    if fc == 0x18:                     # 16-bit byte count
        return 6 + ((rx[p + 2] << 8) | rx[p + 3]) if avail > 3 else -1
    if fc == _FC_DEVID:                # 6.21: head, then (id, length, value) objects
        if avail < 8:
            return -1
        if rx[p + 2] != 0x0E:
            return 0
        q = p + 8
        end = p + avail
        k = rx[p + 7]
        while k:
            if q + 2 > end:
                return -1
            q += 2 + rx[q + 1]
            if q - p > _ADU_MAX:
                return 0
            k -= 1
        return q - p + 2
    return 0


def _crc_at(buf, p, n):
    c = crc16(buf, p, p + n - 2)
    return buf[p + n - 2] == c & 0xFF and buf[p + n - 1] == c >> 8


class PortStats:
    """Counters one port keeps for the bus LED and diagnostics."""
    __slots__ = ("ok", "errors", "other", "broadcast", "last_ms", "last_error_ms")

    def __init__(self):
        self.ok = 0              # requests for us answered (normal or exception)
        self.errors = 0          # bad CRC, runts, garbage runs, line errors
        self.other = 0           # good frames for another slave (requests or responses)
        self.broadcast = 0       # broadcast writes carried out
        self.last_ms = None      # ticks_ms of the last frame for us (or broadcast)
        self.last_error_ms = None


class RtuSlave:
    def __init__(self, port, dispatcher, address=1, baud=19200, parity="E", stop=1,
                 enabled=True, name="rtu"):
        self.port = port
        self.dispatcher = dispatcher
        self.stats = PortStats()
        self.ctx = Caller(name)
        self._rx = bytearray(_BUF)
        self._mv = memoryview(self._rx)
        self._tx = bytearray(_ADU_MAX)
        self._n = 0              # bytes held in _rx
        self._p = 0              # first byte not yet framed
        self._anchor = True      # _p follows a frame or silence: a frame may start there
        self._dropped = 0        # bytes dropped in the current garbage run
        self._ok_p = -1          # the frame whose CRC _length checked last
        self._ok_n = 0
        self._busy = 0           # > 0: a request of ours waits for t3.5 (bursts heard)
        self._tail_n = -1        # cached memoryview of _rx[_tail_n:]
        self._tail = None
        self._on = asyncio.Event()
        self.enabled = False
        self.idle = True         # waiting for a frame, nothing held or being sent
        self.configure(address, baud, parity, stop, enabled)

    def configure(self, address=None, baud=None, parity=None, stop=None, enabled=None):
        """Change any setting; ValueError (nothing changed) if one is out of range."""
        address = self.address if address is None else address
        baud = self.port.baudrate if baud is None else baud
        parity = self.port.parity if parity is None else parity
        stop = self.port.stop if stop is None else stop
        if not 1 <= address <= 247:
            raise ValueError("RTU address %r: use 1..247" % (address,))
        if baud not in _BAUDS:
            raise ValueError("baud rate %r: use one of %r" % (baud, _BAUDS))
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

    # ---- framing (no I/O) ----

    def _fit(self, p, avail, ln):
        # One candidate length: the frame's length if its CRC holds, 0 if more bytes
        # are needed to tell, -1 if it is not a frame.
        if ln < 0:
            return 0
        if ln < _ADU_MIN or ln > _ADU_MAX:
            return -1
        if avail < ln:
            return 0
        if _crc_at(self._rx, p, ln):
            self._ok_p = p
            self._ok_n = ln
            return ln
        return -1

    def _length(self, p, avail):
        """Length of the frame at rx[p] (CRC checked), 0: more bytes may make one,
        -1: none starts there by length."""
        if p == self._ok_p:
            return self._ok_n     # found before (waiting for t3.5): bytes unchanged
        rx = self._rx
        addr = rx[p]
        if addr > _ADDR_MAX:
            return -1
        if avail < 2:
            return 0
        fc = rx[p + 1]
        r = self._fit(p, avail, _req_len(rx, p, avail, fc))
        if r > 0 or addr == self.address or addr == _BROADCAST:
            return r               # ours: a request, never a response
        s = self._fit(p, avail, _rsp_len(rx, p, avail, fc))
        return s if s > 0 else (0 if r == 0 or s == 0 else -1)

    def _next(self, silent):
        """Length of the next frame at self._p, dropping garbage before it; 0: wait
        for more bytes or for silence. silent: no byte came for t3.5 after a read."""
        rx = self._rx
        full = self._n >= _BUF
        while self._p < self._n:
            p = self._p
            avail = self._n - p
            r = self._length(p, avail)
            if r > 0:
                self._end_drop()
                return r
            if not silent and not full:
                return 0              # more bytes may complete it; or silence ends it
            # The line went quiet (or the buffer is full): a frame the table cannot
            # size ends here if its CRC holds; else hunt from the next byte.
            if silent and self._anchor and _ADU_MIN <= avail <= _ADU_MAX and \
                    _crc_at(rx, p, avail):
                self._ok_p = p
                self._ok_n = avail
                self._end_drop()
                return avail
            self._p = p + 1
            self._anchor = False
            self._dropped += 1
        if silent:
            self._end_drop()
        return 0

    def _end_drop(self):
        if self._dropped:
            self._dropped = 0
            self._error()

    def answer(self, p, n):
        """Handle the frame rx[p:p+n]; return the reply's length in self._tx (0: none).

        Allocates nothing (with spaces that do not): this is the whole request path
        between the bytes and the transmitter."""
        rx = self._rx
        st = self.stats
        if n < _ADU_MIN or n > _ADU_MAX or not (
                (p == self._ok_p and n == self._ok_n) or _crc_at(rx, p, n)):
            self._error()
            return 0
        self._ok_p = -1
        addr = rx[p]
        tx = self._tx
        if addr == _BROADCAST:
            fc = rx[p + 1]
            if fc == _FC_WRITE_SINGLE or fc == _FC_WRITE_MULTIPLE:
                self.dispatcher.handle(rx, n - 3, tx, 1, p + 1, self.ctx)
                if not tx[1] & 0x80:      # carried out, not refused
                    st.broadcast += 1
                st.last_ms = ticks_ms()
            return 0
        if addr != self.address:
            st.other += 1
            return 0
        k = self.dispatcher.handle(rx, n - 3, tx, 1, p + 1, self.ctx)
        st.last_ms = ticks_ms()
        if not k:
            return 0
        tx[0] = addr
        return crc_append(tx, k + 1)

    # ---- I/O ----

    def _read_on(self):
        """Read what has arrived behind the held bytes; return the count."""
        n = self._n
        if n >= _BUF:
            return 0
        if self._tail_n != n:
            # A new offset: one small view, reused while frames keep the same length.
            self._tail = self._mv[n:]
            self._tail_n = n
        k = self.port.read_now(self._tail)
        self._n = n + k
        return k

    def _compact(self):
        # Move the unframed rest to the front (a byte loop: rare, no allocation).
        p = self._p
        if not p:
            return
        rx = self._rx
        rest = self._n - p
        for i in range(rest):
            rx[i] = rx[p + i]
        if self._ok_p >= p:
            self._ok_p -= p
        else:
            self._ok_p = -1
        self._p = 0
        self._n = rest

    def _quiet_now(self):
        """After a read attempt: True if no byte came and t3.5 has passed since the
        last one (2.5.1.1)."""
        return not self._read_on() and self.port.silent_us() >= self.t35_us

    def _take(self, ln):
        """Consume the frame of length ln at self._p; the reply's length (0: none)."""
        p = self._p
        m = self.answer(p, ln)
        self._p = p + ln
        self._anchor = True
        self._busy = 0
        return m

    def _reset(self):
        self._n = self._p = self._dropped = self._busy = 0
        self._anchor = True
        self._ok_p = -1

    async def run(self):
        """Serve the port until cancelled.

        One coroutine, no helpers awaited on the way (each would allocate a frame):
        port.recv waits for the first bytes, sleep_ms for t3.5, port.send replies."""
        port = self.port
        rx = self._rx
        silent = False
        while True:
            if not self.enabled:
                await self._on.wait()
                try:
                    while port.read_now(rx):
                        pass      # drop what came while we were off
                except OSError:
                    pass
                self._reset()
                continue
            try:
                if self._n == 0:
                    self.idle = True      # between frames: settings may change now
                    k = await port.recv(rx)
                    self.idle = False
                    if not k:
                        self._error()     # woken without data: hang-up or line fault
                        await asyncio.sleep_ms(20)   # don't spin on it
                        continue
                    self._n = k
                    silent = False
                else:
                    # Bytes held: wait for more, or for t3.5 of silence. The loop clock
                    # counts whole ms: sleep the whole ms of t3.5 left, then yield
                    # (other tasks run) until the sub-ms rest has passed.
                    self._compact()
                    wait = self.t35_us - port.silent_us()
                    if wait > 0:
                        await asyncio.sleep_ms(wait // 1000)
                    n0 = self._n
                    silent = self._quiet_now()
                    if self._n > n0 and self._busy:
                        self._busy += 1   # a request of ours waits while the line talks
                while self.enabled:
                    ln = self._next(silent)
                    if not ln:
                        break
                    if self._rx[self._p] == self.address and not silent:
                        # Ours: reply only after t3.5 of silence. Wait in the outer loop
                        # (the frame is found again, its CRC remembered); give up on a
                        # line that never rests, as answering would collide.
                        if self._busy > _QUIET_MAX or self._n >= _BUF:
                            self._error()
                            self._ok_p = -1
                            self._p += ln
                            self._anchor = True
                            self._busy = 0
                            continue
                        self._busy = self._busy or 1
                        break
                    m = self._take(ln)
                    if m:
                        try:
                            await port.send(self._tx, m)
                        except OSError:
                            self._error()
                            continue
                        self.stats.ok += 1
                if self._p >= self._n:
                    self._n = self._p = 0
            except OSError:
                self._error()     # line gone (host pty closed, UART fault)
                self._reset()
                await asyncio.sleep_ms(100)
            except Exception:
                self._error()     # whatever a frame does, the port keeps serving
                self._reset()
