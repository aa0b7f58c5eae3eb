"""Modbus TCP server on asyncio (Modbus Messaging on TCP/IP Implementation Guide v1.0b).

    from firmware.modbus.tcp import TcpServer
    srv = TcpServer(Dispatcher(holding, inputs, ident), max_clients=10, idle_s=60)
    await srv.start("0.0.0.0", 502)     # returns once listening; srv.serve() also waits
    ...
    srv.close(); await srv.wait_closed()

Framing (guide 3.1.3): a 7-byte MBAP header (transaction id, protocol id, length,
unit id) then the PDU. The transaction id and unit id are echoed. A header whose
protocol id is not 0 or whose length is outside 2..254 (unit id + a PDU of 1..253
bytes) closes that connection: after it the byte stream cannot be re-framed. The
replies due for the valid requests before it are sent first, and what the client sent
on is read and dropped, so the close is an orderly FIN after those replies, not a
reset that would discard them. A request split across TCP segments waits for its
missing bytes; several requests in one segment (pipelining) are answered in order.

Choices where the spec leaves room:
- Activity is the time of the last COMPLETE request, taken when its first byte
  arrived: a client that dribbles a frame a byte at a time gains nothing by it.
- Partial frames: one that has not completed frame_ms (default 2000) after its first
  byte closes its connection (stats.dropped).
- Connection cap (max_clients, default 10): a connection beyond it closes an older one
  rather than being refused (guide 4.2.1 suggests closing the oldest unused
  connection). The victim is, in this order: one holding a partial frame (the oldest
  partial first), one that never completed a request (the oldest first), else the one
  whose last complete request is the oldest. So a client that polls keeps its
  connection whatever slow senders and idle sockets do. stats.evicted counts these.
- Idle timeout (idle_s, default 60): a connection with no complete request for that
  long is closed (stats.timeouts); one task checks every connection 4 times a second.
- Unit id: any id is answered, as the KSEM does. With own_id_only=True, only
  unit_id, 0 and 255 (guide 4.4.2: 0xFF, or 0, addresses the TCP device itself)
  are; others get exception 0x0B, gateway target device failed to respond, so the
  client learns at once that nothing answers there instead of waiting for a timeout.

asyncio: public API only (no asyncio.core, no scheduler queues, no Stream internals).
The server owns its sockets (socket module: non-blocking listen, accept, readinto,
write) and uses asyncio.StreamReader(sock).read(0) only to wait until a socket is
readable: Stream.read waits for readability, then read(0) returns b"" at once. That is
one small generator and one loop round per wait. A reply goes out with one write
straight from the send buffer; if the socket takes only part, the rest goes through
Stream.write and Stream.drain, and that connection reads nothing more until it is out,
so a client that sends without reading costs no memory beyond its slot. (Serving the
Streams of asyncio.start_server with readinto/write/drain instead costs about 30 %
more server CPU per request on the unix port: drain takes a loop round even when
nothing is held, and the public Stream API cannot say whether anything is.)

Memory: each of the max_clients slots owns one receive buffer of 260 bytes, one
largest ADU: a pipelined burst is read in pieces of that size (a frame cut at the end
moves to the front and the rest is read after it), so a larger buffer only saves reads;
one 260-byte send buffer serves all of them. All are allocated once in the constructor. Sharing the send buffer is safe: a
reply is built (dispatcher.handle) and handed to the socket in one stretch with no await
between, and the part a short write leaves over is copied into the Stream's own buffer
(Stream.write) before that connection waits; on a 32-bit board this saves 276 bytes
per slot beyond the first.

Each connection's requests carry the slot's Caller (firmware.modbus.pdu), renewed for
every new connection, so a space can keep per-connection state.

Scheduling: a connection answers at most 4 pipelined requests before it yields the
loop, so one busy client cannot hold off the others or the RTU ports for long.
"""
import asyncio
from time import ticks_ms, ticks_diff
from micropython import const

from firmware.modbus.pdu import exception, EXC_GATEWAY_NO_RESPONSE, Caller

_MBAP = const(7)             # guide 3.1.3: header length including the unit id
_LEN_MIN = const(2)          # unit id + function code
_LEN_MAX = const(254)        # unit id + 253-byte PDU (Application Protocol 4.1)
_ADU_MAX = const(260)
_RX_SIZE = const(_ADU_MAX)   # a whole ADU always fits (see Memory above)
_TURN_MAX = const(4)         # pipelined requests answered before yielding the loop
_REAP_MS = const(250)
_LINGER_MS = const(20)       # after a bad header: read what still comes, this long


class TcpStats:
    __slots__ = ("accepted", "active", "evicted", "refused", "timeouts", "bad_frames",
                 "requests", "dropped", "last_ms")

    def __init__(self):
        self.accepted = 0     # connections taken
        self.active = 0       # connections open now
        self.evicted = 0      # closed to make room for a new one
        self.refused = 0      # closed at once: no slot could be freed
        self.timeouts = 0     # closed after idle_s without a complete request
        self.bad_frames = 0   # closed on a bad MBAP header
        self.requests = 0     # PDUs dispatched
        self.dropped = 0      # closed: a partial frame did not complete in frame_ms
        self.last_ms = None   # ticks_ms of the last request


class _Slot:
    __slots__ = ("rx", "rxmv", "task", "opened", "last", "head", "have", "used",
                 "closing", "ctx")

    def __init__(self):
        self.rx = bytearray(_RX_SIZE)
        self.rxmv = memoryview(self.rx)
        self.task = None
        self.opened = 0       # ticks_ms of the accept
        self.last = 0         # first-byte time of the last complete request
        self.head = 0         # arrival time of the byte at rx[0]
        self.have = 0         # bytes held in rx: > 0 is a partial frame
        self.used = False     # has completed a request
        self.closing = False
        self.ctx = Caller("tcp")


class TcpServer:
    def __init__(self, dispatcher, max_clients=10, idle_s=60, unit_id=1, own_id_only=False,
                 frame_ms=2000):
        if max_clients < 1:
            raise ValueError("max_clients %r: need at least 1" % (max_clients,))
        if not 1 <= unit_id <= 247:
            raise ValueError("unit id %r: use 1..247" % (unit_id,))
        if frame_ms < 100:
            raise ValueError("frame_ms %r: at least 100" % (frame_ms,))
        self.dispatcher = dispatcher
        self.idle_ms = int(idle_s * 1000)
        self.frame_ms = frame_ms
        self.unit_id = unit_id
        self.own_id_only = own_id_only
        self.stats = TcpStats()
        self._slots = [_Slot() for _ in range(max_clients)]
        self._tx = bytearray(_ADU_MAX)   # shared by the slots (see Memory above)
        self._conns = 0
        self._acceptor = None
        self._reaper = None
        self._closing = False

    async def start(self, host="0.0.0.0", port=502):
        """Listen and return; connections are served by their own tasks."""
        import socket     # here, not at import: a port without sockets still builds maps
        ai = socket.getaddrinfo(host, port)[0]
        ls = socket.socket(ai[0])
        ls.setblocking(False)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(ai[-1])
        ls.listen(len(self._slots))
        self._closing = False
        self._acceptor = asyncio.create_task(self._accept(ls))
        self._reaper = asyncio.create_task(self._reap())
        await asyncio.sleep_ms(0)     # the acceptor is waiting when we return
        return self

    async def serve(self, host="0.0.0.0", port=502):
        """Listen and serve until close() is called or the task is cancelled."""
        await self.start(host, port)
        try:
            await self._acceptor
        except asyncio.CancelledError:
            if not self._closing:
                raise
        finally:
            self.close()

    def close(self):
        """Stop listening and close every connection."""
        self._closing = True
        if self._acceptor is not None:
            self._acceptor.cancel()
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        for s in self._slots:
            self._kick(s)

    async def wait_closed(self):
        if self._acceptor is not None:
            try:
                await self._acceptor
            except asyncio.CancelledError:
                pass
            self._acceptor = None
        for _ in range(50):
            if not self.stats.active:
                break
            await asyncio.sleep_ms(1)

    async def _accept(self, ls):
        # A Stream around the listening socket, used only to wait until it is readable
        # (read(0) returns b"" at once then), i.e. until a connection can be accepted.
        ready = asyncio.StreamReader(ls).read
        try:
            while True:
                await ready(0)
                try:
                    c, _ = ls.accept()
                except OSError:
                    continue          # the peer gave up meanwhile
                c.setblocking(False)
                asyncio.create_task(self._client(c))
        finally:
            ls.close()

    def _kick(self, slot):
        if slot.task is not None and not slot.closing:
            slot.closing = True
            try:
                slot.task.cancel()
            except RuntimeError:     # close() called from inside that very task
                pass

    async def _reap(self):
        slots = self._slots
        st = self.stats
        while True:
            await asyncio.sleep_ms(_REAP_MS)
            now = ticks_ms()
            for s in slots:
                if s.task is None or s.closing:
                    continue
                if s.have and ticks_diff(now, s.head) > self.frame_ms:
                    st.dropped += 1
                    self._kick(s)
                elif ticks_diff(now, s.last if s.used else s.opened) > self.idle_ms:
                    st.timeouts += 1
                    self._kick(s)

    def _free_slot(self):
        for s in self._slots:
            if s.task is None:
                return s
        return None

    def _victim(self):
        # Rank: partial frame (oldest first), never completed a request (oldest
        # first), else the oldest last complete request.
        now = ticks_ms()
        best = None
        rank = -1
        age = 0
        for s in self._slots:
            if s.closing or s.task is None:
                continue
            if s.have:
                r, a = 2, ticks_diff(now, s.head)
            elif not s.used:
                r, a = 1, ticks_diff(now, s.opened)
            else:
                r, a = 0, ticks_diff(now, s.last)
            if r > rank or (r == rank and a > age):
                best, rank, age = s, r, a
        return best

    async def _take_slot(self):
        slot = self._free_slot()
        if slot is None:
            victim = self._victim()
            if victim is not None:
                self.stats.evicted += 1
                self._kick(victim)
            # The victim frees its slot when its task next runs.
            for _ in range(20):
                await asyncio.sleep_ms(0)
                slot = self._free_slot()
                if slot is not None:
                    break
        return slot

    async def _client(self, sock):
        st = self.stats
        slot = await self._take_slot()
        if slot is None:
            st.refused += 1
            sock.close()
            return
        slot.task = asyncio.current_task()
        slot.opened = slot.last = slot.head = ticks_ms()
        slot.have = 0
        slot.used = False
        slot.closing = False
        self._conns = (self._conns + 1) & 0xFFFF
        slot.ctx.renew(self._conns)
        st.accepted += 1
        st.active += 1
        try:
            await self._serve_conn(sock, slot)
        except (asyncio.CancelledError, OSError):
            pass              # evicted, timed out, server closing, or peer reset
        except Exception:
            st.bad_frames += 1  # never let one connection take the server down
        finally:
            st.active -= 1
            slot.task = None
            slot.closing = False
            slot.have = 0
            sock.close()

    async def _serve_conn(self, sock, slot):
        rx = slot.rx
        rxmv = slot.rxmv
        tx = self._tx
        stream = asyncio.StreamReader(sock)
        ready = stream.read   # read(0): wait until readable, read nothing
        read = sock.readinto
        write = sock.write
        handle = self.dispatcher.handle
        ctx = slot.ctx
        st = self.stats
        own = self.unit_id if self.own_id_only else -1
        have = 0
        drained = True
        turn = 0              # requests answered since this task last gave up the loop
        while True:
            if drained:
                turn = 0
                await ready(0)
            elif turn >= _TURN_MAX:
                # More is waiting (the last read filled the buffer), but a client that
                # keeps the socket full must not keep the loop: others go first.
                turn = 0
                await asyncio.sleep_ms(0)
            # readinto() reads until the buffer is full or the socket is empty, so a
            # short read means there is nothing more to read without waiting.
            k = read(rxmv[have:]) if have else read(rx)
            if k is None:
                drained = True    # woken without data
                continue
            if not k:
                return            # peer closed
            drained = k < _RX_SIZE - have
            now = ticks_ms()
            if not have:
                slot.head = now   # the frame at rx[0] began arriving now
            have += k
            p = 0
            while have - p >= 6:
                # Protocol id 0 and length 2..254 (its high byte 0), else the stream
                # cannot be re-framed: the replies before it are out (sent as they
                # came), close.
                ln = rx[p + 5]
                if rx[p + 2] or rx[p + 3] or rx[p + 4] or ln < _LEN_MIN or ln > _LEN_MAX:
                    st.bad_frames += 1
                    await self._linger(ready, sock, rx)
                    return
                end = p + 6 + ln
                if end > have:
                    break         # rest of this ADU is still on its way
                unit = rx[p + 6]
                if own >= 0 and unit != own and unit and unit != 255:
                    r = exception(tx, _MBAP, rx[p + _MBAP], EXC_GATEWAY_NO_RESPONSE)
                else:
                    r = handle(rx, ln - 1, tx, _MBAP, p + _MBAP, ctx)
                st.requests += 1
                slot.last = slot.head if p == 0 else now
                slot.used = True
                st.last_ms = now
                if r:
                    # tx[2:5] (protocol id, length high byte) stay 0 from the constructor;
                    # from here to write() there is no await: tx is this reply's alone.
                    tx[0] = rx[p]
                    tx[1] = rx[p + 1]
                    tx[5] = r + 1
                    tx[6] = unit
                    r += _MBAP
                    k = write(tx, r)
                    if k != r:
                        # The socket took only part: the Stream keeps the rest and
                        # drain waits until it is out. Nothing more is read meanwhile.
                        stream.write(memoryview(tx)[k or 0:r])
                        await stream.drain()
                p = end
                turn += 1
                if turn >= _TURN_MAX and have - p >= 6:
                    # A pipelining client gets a few replies per turn, then the other
                    # connections and the RTU ports get the loop.
                    turn = 0
                    await asyncio.sleep_ms(0)
            # Keep the unfinished ADU at the front (a short byte loop: no
            # overlapping memcpy, no allocation).
            rest = have - p
            if p and rest:
                for i in range(rest):
                    rx[i] = rx[p + i]
                slot.head = now
            have = rest
            slot.have = rest

    @staticmethod
    async def _linger(ready, sock, rx):
        # Closing with unread bytes in the socket makes the kernel send a reset, and
        # a reset can discard the replies still on their way: read and drop what the
        # client sent on, until it pauses, before the close.
        for _ in range(8):
            while True:
                k = sock.readinto(rx)
                if not k:
                    break
            if k == 0:
                return            # peer closed
            try:
                await asyncio.wait_for_ms(ready(0), _LINGER_MS)
            except asyncio.TimeoutError:
                return
