"""Modbus TCP server on asyncio (Modbus Messaging on TCP/IP Implementation Guide v1.0b).

    from firmware.modbus.tcp import TcpServer
    srv = TcpServer(Dispatcher(holding, inputs, ident), max_clients=10, idle_s=60)
    await srv.start("0.0.0.0", 502)     # returns once listening; srv.serve() also waits
    ...
    srv.close(); await srv.wait_closed()

Framing (guide 3.1.3): a 7-byte MBAP header (transaction id, protocol id, length,
unit id) then the PDU. The transaction id and unit id are echoed. A header whose
protocol id is not 0 or whose length is outside 2..254 (unit id + a PDU of 1..253
bytes) closes that connection only: after it the byte stream cannot be re-framed.
A request split across TCP segments waits for its missing bytes; several requests in
one segment (pipelining) are answered one by one, in order.

Choices where the spec leaves room:
- Connection cap (max_clients, default 10): a connection beyond it closes an
  older one rather than being refused (guide 4.2.1 suggests closing the oldest
  unused connection): first one that never sent a request, the oldest first,
  else the one quiet the longest. Clients that poll keep their connection and a
  pile of idle sockets cannot lock a good client out. stats.evicted counts these.
- Idle timeout (idle_s, default 60): a connection with no request for that long is
  closed (stats.timeouts); one task checks all connections every second.
- Unit id: any id is answered, as the KSEM does. With own_id_only=True, only
  unit_id, 0 and 255 (guide 4.4.2: 0xFF, or 0, addresses the TCP device itself)
  are; others get exception 0x0B, gateway target device failed to respond, so the
  client learns at once that nothing answers there instead of waiting for a timeout.

Memory: each of the max_clients slots owns one receive buffer (400 bytes, room for a
whole 260-byte ADU plus the head of the next) and one 260-byte send buffer, allocated
once in the constructor. A reply goes out with one send straight from the send buffer;
if the socket takes only part, that connection reads nothing more until the rest is
out, so a client that sends without reading costs no memory beyond its slot.

Scheduling: a connection answers at most 4 pipelined requests before it yields the
loop, so one busy client cannot hold off the others or the RTU ports for long.
"""
import asyncio
from asyncio import core as _core   # its _io_queue: what Stream.readinto waits on
from time import ticks_ms, ticks_diff
from micropython import const

from firmware.modbus.pdu import exception, EXC_GATEWAY_NO_RESPONSE

_MBAP = const(7)             # guide 3.1.3: header length including the unit id
_LEN_MIN = const(2)          # unit id + function code
_LEN_MAX = const(254)        # unit id + 253-byte PDU (Application Protocol 4.1)
_ADU_MAX = const(260)
_RX_SIZE = const(400)
_TURN_MAX = const(4)         # pipelined requests answered before yielding the loop
_REAP_MS = const(1000)


class TcpStats:
    __slots__ = ("accepted", "active", "evicted", "refused", "timeouts", "bad_frames",
                 "requests", "last_ms")

    def __init__(self):
        self.accepted = 0     # connections taken
        self.active = 0       # connections open now
        self.evicted = 0      # closed to make room for a new one
        self.refused = 0      # closed at once: no slot could be freed
        self.timeouts = 0     # closed after idle_s without a request
        self.bad_frames = 0   # closed on a bad MBAP header
        self.requests = 0     # PDUs dispatched
        self.last_ms = None   # ticks_ms of the last request


class _Slot:
    __slots__ = ("rx", "rxmv", "tx", "task", "last", "used", "closing")

    def __init__(self):
        self.rx = bytearray(_RX_SIZE)
        self.rxmv = memoryview(self.rx)
        self.tx = bytearray(_ADU_MAX)
        self.task = None
        self.last = 0
        self.used = False     # has sent a request
        self.closing = False


class TcpServer:
    def __init__(self, dispatcher, max_clients=10, idle_s=60, unit_id=1, own_id_only=False):
        if max_clients < 1:
            raise ValueError("max_clients %r: need at least 1" % (max_clients,))
        if not 1 <= unit_id <= 247:
            raise ValueError("unit id %r: use 1..247" % (unit_id,))
        self.dispatcher = dispatcher
        self.idle_ms = int(idle_s * 1000)
        self.unit_id = unit_id
        self.own_id_only = own_id_only
        self.stats = TcpStats()
        self._slots = [_Slot() for _ in range(max_clients)]
        self._server = None
        self._reaper = None

    async def start(self, host="0.0.0.0", port=502):
        """Listen and return; connections are served by their own tasks."""
        self._server = await asyncio.start_server(self._client, host, port,
                                                  len(self._slots))
        self._reaper = asyncio.create_task(self._reap())
        return self

    async def serve(self, host="0.0.0.0", port=502):
        """Listen and serve until close() is called or the task is cancelled."""
        await self.start(host, port)
        try:
            await self._server.wait_closed()
        finally:
            self.close()

    def close(self):
        """Stop listening and close every connection."""
        if self._server is not None:
            self._server.close()
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        for s in self._slots:
            self._kick(s)

    async def wait_closed(self):
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        for _ in range(50):
            if not self.stats.active:
                break
            await asyncio.sleep_ms(1)

    def _kick(self, slot):
        if slot.task is not None and not slot.closing:
            slot.closing = True
            slot.task.cancel()

    async def _reap(self):
        slots = self._slots
        while True:
            await asyncio.sleep_ms(_REAP_MS)
            now = ticks_ms()
            for s in slots:
                if s.task is not None and not s.closing and \
                        ticks_diff(now, s.last) > self.idle_ms:
                    self.stats.timeouts += 1
                    self._kick(s)

    def _free_slot(self):
        for s in self._slots:
            if s.task is None:
                return s
        return None

    async def _take_slot(self):
        slot = self._free_slot()
        if slot is None:
            # Full: close a never-used connection, else the one quiet the longest.
            now = ticks_ms()
            victim = None
            for s in self._slots:
                if s.closing:
                    continue
                if victim is None or (victim.used and not s.used) or (
                        victim.used == s.used and
                        ticks_diff(now, s.last) > ticks_diff(now, victim.last)):
                    victim = s
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

    async def _client(self, stream, _):
        st = self.stats
        slot = await self._take_slot()
        if slot is None:
            st.refused += 1
            await stream.wait_closed()
            return
        slot.task = asyncio.current_task()
        slot.last = ticks_ms()
        slot.used = False
        slot.closing = False
        st.accepted += 1
        st.active += 1
        try:
            await self._serve_conn(stream.s, slot)
        except (asyncio.CancelledError, OSError):
            pass              # evicted, timed out, server closing, or peer reset
        except Exception:
            st.bad_frames += 1  # never let one connection take the server down
        finally:
            st.active -= 1
            slot.task = None
            slot.closing = False
            try:
                await stream.wait_closed()
            except Exception:
                pass

    def _serve_conn(self, sock, slot):
        # A plain generator, run by `await` (MicroPython coroutines are generators).
        # It waits as asyncio's own Stream.readinto does, by yielding after queueing
        # the task on the scheduler's IO queue, but reads and writes the socket itself:
        # no awaitable object per request, no write queue, no slices in the common case.
        rx = slot.rx
        rxmv = slot.rxmv
        tx = slot.tx
        read = sock.readinto
        write = sock.write
        handle = self.dispatcher.handle
        st = self.stats
        own = self.unit_id if self.own_id_only else -1
        have = 0
        drained = True
        turn = 0              # requests answered since this task last gave up the loop
        while True:
            if drained:
                turn = 0
                yield _core._io_queue.queue_read(sock)
            elif turn >= _TURN_MAX:
                # More is waiting (the last read filled the buffer), but a client that
                # keeps the socket full must not keep the loop: others go first.
                turn = 0
                yield from asyncio.sleep_ms(0)
            # readinto() reads until the buffer is full or the socket is empty, so a
            # short read means there is nothing more to read without waiting.
            k = read(rxmv[have:]) if have else read(rx)
            if k is None:
                drained = True    # woken without data
                continue
            if not k:
                return            # peer closed
            drained = k < _RX_SIZE - have
            have += k
            slot.last = st.last_ms = ticks_ms()
            slot.used = True
            p = 0
            while have - p >= 6:
                # Protocol id 0 and length 2..254 (its high byte 0), else the stream
                # cannot be re-framed.
                ln = rx[p + 5]
                if rx[p + 2] or rx[p + 3] or rx[p + 4] or ln < _LEN_MIN or ln > _LEN_MAX:
                    st.bad_frames += 1
                    return
                end = p + 6 + ln
                if end > have:
                    break         # rest of this ADU is still on its way
                unit = rx[p + 6]
                if own >= 0 and unit != own and unit and unit != 255:
                    r = exception(tx, _MBAP, rx[p + _MBAP], EXC_GATEWAY_NO_RESPONSE)
                else:
                    r = handle(rx, ln - 1, tx, _MBAP, p + _MBAP)
                st.requests += 1
                if r:
                    # tx[2:5] (protocol id, length high byte) stay 0 from the constructor.
                    tx[0] = rx[p]
                    tx[1] = rx[p + 1]
                    tx[5] = r + 1
                    tx[6] = unit
                    r += _MBAP
                    k = write(tx, r)
                    if k != r:
                        yield from self._send_rest(sock, tx, k or 0, r)
                p = end
                turn += 1
                if turn >= _TURN_MAX and have - p >= 6:
                    # A pipelining client gets a few replies per turn, then the other
                    # connections and the RTU ports get the loop.
                    turn = 0
                    yield from asyncio.sleep_ms(0)
            # Keep the unfinished ADU at the front (a short byte loop: no
            # overlapping memcpy, no allocation).
            rest = have - p
            if p and rest:
                for i in range(rest):
                    rx[i] = rx[p + i]
            have = rest

    @staticmethod
    def _send_rest(sock, buf, sent, n):
        # The socket took only part of a reply: wait until it drains. Nothing is queued
        # in our memory, and the connection reads no further request meanwhile.
        while sent < n:
            yield _core._io_queue.queue_write(sock)
            k = sock.write(buf, sent, n - sent)
            if k:
                sent += k
