"""MQTT publisher: the snapshot as JSON every interval, Home Assistant discovery, status.

    m = Mqtt(meter, cfg, clock, events)    # cfg["mqtt"]: firmware/config.py
    sup.spawn("mqtt", m.run)               # connection: connect, publish, ping, reconnect
    sup.spawn("mqtt_q", m.sample)          # a sample due every interval
    m.apply_config(cfg)                    # new settings: the session reconnects
    space = m                              # Modbus status registers 0xD200.. (read only)

The client is micropython-lib's umqtt.simple (installed unmodified in lib/ by the
Makefile, /lib on a board by `mpremote mip install umqtt.simple`). It blocks on its
socket, so it never gets one: its packets are written into a buffer (_Sock, a stand-in
socket) and this module moves them over asyncio streams with time-outs, reads the
broker's CONNACK and PINGRESP itself, and the event loop (metering, Modbus) never waits
on the broker. Evidence for this choice: README "MQTT and Home Assistant".

Topics: <topic_prefix>/<client_id>/status ("online" birth, "offline" last will, both
retained), <topic_prefix>/<client_id>/state (firmware/hadisc.py state()), discovery
<discovery_prefix>/sensor/<client_id>/<object>/config (retained). One sample waits at
most: every interval_s one is due, and the session sends the meter's newest snapshot
for it (a reference read without yielding: one whole cycle, firmware/snapshot.py), so
no copy is kept; a sample due while the last one still waits replaces it (counted as
a drop).
"""
import asyncio
from time import ticks_ms, ticks_diff
from micropython import const

from firmware import hadisc

_TIMEOUT_MS = const(5000)    # connect, CONNACK and every send (Mqtt.timeout_ms)
_BACKOFF_MAX_S = const(60)
_BASE = const(0xD200)
_END = const(0xD3FF)
_ERR_REFUSED = const(0x100)  # last error: 0x100 + CONNACK return code, else errno
# firmware/events.py codes (private consts: no globals; tests/test_mqtt.py checks them)
_EV_MQTT_CONNECTED = const(52)
_EV_MQTT_LOST = const(53)
_EV_MQTT_REFUSED = const(54)
_EV_MQTT_DROPPED = const(55)
_ST_STALE = const(4)    # firmware/snapshot.py ST_STALE


class _Sock:
    """Stand-in socket module and socket for umqtt.simple: what it writes is kept in b
    (a bytearray per session) for the stream; its one read (connect()'s CONNACK) gets
    an accept, the real CONNACK is checked by the session."""

    def socket(self, *a):
        return self

    def getaddrinfo(self, host, port, *a):
        return ((0, 0, 0, "", (host, port)),)

    def write(self, data, n=None):
        self.b.extend(data if n is None else data[:n])

    def read(self, n):
        return b"\x20\x02\x00\x00"[:n]

    def connect(self, addr):
        pass

    def close(self):
        pass


class Mqtt:
    timeout_ms = _TIMEOUT_MS

    def __init__(self, meter, cfg, clock, events):
        import umqtt.simple          # noqa: F401  (missing: ImportError here, app.py)
        self._sock = _Sock()
        self.meter, self.clock, self.events = meter, clock, events
        self.qn = 0                  # a sample waits (Modbus 0xD209)
        self.sent = self.drops = self.connects = 0
        self.connected = 0
        self.err = 0
        self._gen = 0
        self._wake = asyncio.Event()
        self.apply_config(cfg)

    def apply_config(self, cfg):
        from firmware.config import parse_url
        from firmware.version import VERSION
        m = cfg["mqtt"]
        self.m = m
        self.addr = parse_url(m["url"])
        idn = cfg["identity"]
        # The configured client id, or one from the serial (as the hostname is).
        node = m["client_id"] or "openmeter_" + "".join(
            ch for ch in idn["serial"].lower() if "a" <= ch <= "z" or "0" <= ch <= "9")
        self.names = {"node": node, "prefix": m["discovery_prefix"],
                      "base": "%s/%s" % (m["topic_prefix"], node), "serial": idn["serial"],
                      "vendor": idn["vendor"], "model": idn["model"], "sw": VERSION}
        self._gen += 1               # a running session sees it and reconnects
        self._wake.set()

    # ---- the sample: one due at a time ----
    async def sample(self):
        while True:
            await asyncio.sleep_ms(self.m["interval_s"] * 1000)
            if not self.m["enabled"]:
                continue
            if self.qn:                  # the last one not sent yet: this replaces it
                self.drops += 1
                if self.connected:       # an outage is logged once (EV_MQTT_LOST)
                    self.events.add(self.clock.ticks_ms(), _EV_MQTT_DROPPED, self.drops)
            self.qn = 1
            self._wake.set()

    # ---- the connection ----
    async def run(self):
        delay = 1
        while True:
            if not self.m["enabled"]:
                self._wake.clear()
                await self._wake.wait()
                continue
            gen = self._gen
            w = None
            try:
                r, w = await asyncio.wait_for_ms(
                    asyncio.open_connection(*self.addr), self.timeout_ms)
                await self._session(gen, r, w)
                delay = 1
            except Exception as e:       # OSError, time-out, refused: retry with backoff
                if self.connected:       # it was up: start the back-off again
                    delay = 1
                if isinstance(e, OSError) and e.args and isinstance(e.args[0], int):
                    err = e.args[0]      # errno, or _ERR_REFUSED + CONNACK code
                else:
                    err = 110            # ETIMEDOUT (asyncio's TimeoutError)
                if self.connected or err != self.err:   # log a change, not every retry
                    self.events.add(self.clock.ticks_ms(), _EV_MQTT_REFUSED
                                    if err >= _ERR_REFUSED else _EV_MQTT_LOST, err)
                self.err = err
            finally:
                self.connected = 0
                if w is not None:
                    w.close()
            if gen == self._gen:
                await asyncio.sleep(delay)
                delay = min(2 * delay, _BACKOFF_MAX_S)

    async def _send(self, w):
        b = self._sock.b
        if b:
            w.write(b)
            self._sock.b = bytearray()
            await asyncio.wait_for_ms(w.drain(), self.timeout_ms)

    async def _session(self, gen, r, w):
        m, n = self.m, self.names
        ka = m["keepalive_s"]
        from umqtt import simple
        simple.socket = self._sock         # its socket module: no blocking I/O
        host, port = self.addr
        c = simple.MQTTClient(n["node"], host, port, m["user"] or None, m["password"], ka)
        avail = n["base"] + "/status"
        c.set_last_will(avail, "offline", retain=True)
        self._sock.b = bytearray()
        c.connect()                        # CONNECT into the buffer
        await self._send(w)
        ack = await asyncio.wait_for_ms(r.readexactly(4), self.timeout_ms)
        if ack[0] != 0x20 or ack[1] != 2:
            raise OSError(71)              # EPROTO: not a CONNACK
        if ack[3]:
            raise OSError(_ERR_REFUSED + ack[3])   # refused: bad credentials, id, ...
        self.connected = 1
        self.connects += 1
        self.err = 0
        self.events.add(self.clock.ticks_ms(), _EV_MQTT_CONNECTED, self.connects)
        c.publish(avail, "online", retain=True)
        await self._send(w)
        if m["discovery"]:
            for i in range(hadisc.COUNT):
                t, p = hadisc.config(i, n)
                c.publish(t, p, retain=True)
                await self._send(w)
        self._rx = ping = ticks_ms()
        reader = asyncio.create_task(self._reader(r))
        state = n["base"] + "/state"
        try:
            while gen == self._gen and m["enabled"]:
                self._wake.clear()         # before looking: a wake-up after this counts
                if reader.done():
                    raise OSError(104)     # ECONNRESET: the broker closed
                now = ticks_ms()
                if ka and ticks_diff(now, self._rx) > ka * 1500:
                    raise OSError(110)     # no PINGRESP within 1.5 keep-alive
                if self.qn:                # the newest snapshot, read without yielding
                    self.qn = 0
                    f = self.meter.front
                    if f.status & _ST_STALE:   # zeroed while the chip re-initialises:
                        continue               # not a state (the broker keeps the last)
                    c.publish(state, hadisc.state(f))
                    await self._send(w)
                    self.sent += 1
                    continue
                # A PINGREQ every half keep-alive even while publishing: only the
                # broker's PINGRESP proves it is still there (QoS 0 gets no answer).
                if ka and ticks_diff(now, ping) >= ka * 500:
                    ping = now
                    c.ping()
                    await self._send(w)
                    continue
                try:
                    await asyncio.wait_for_ms(self._wake.wait(), 1000)
                except asyncio.TimeoutError:
                    pass
            c.disconnect()                 # settings changed or disabled: a clean end
            await self._send(w)
        finally:
            reader.cancel()

    async def _reader(self, r):
        # PINGRESP (and anything else: nothing is subscribed) marks the broker alive.
        try:
            while True:
                b = await r.read(16)
                if not b:
                    return
                self._rx = ticks_ms()
        except OSError:                    # reset: the session sees the task done
            pass

    # ---- Modbus status registers (0xD200.., read only, firmware/ports.py) ----
    # D200 connected, D201 enabled, D202 messages sent (U32), D204 drops (U32),
    # D206 last error (errno, or 0x100 + CONNACK code; 0 none), D207 connects (U32),
    # D209 a sample waiting (0 or 1).
    def read(self, addr, count, out, off):
        if addr < _BASE or addr + count - 1 > _END:
            return 2
        for i in range(count):
            a = addr + i - _BASE
            v = 0
            if a == 0:
                v = self.connected
            elif a == 1:
                v = 1 if self.m["enabled"] else 0
            elif 2 <= a <= 5 or 7 <= a <= 8:
                x = self.sent if a < 4 else self.drops if a < 6 else self.connects
                v = (x >> 16) if a in (2, 4, 7) else x
            elif a == 6:
                v = self.err
            elif a == 9:
                v = self.qn
            out[off + 2 * i] = v >> 8 & 0xFF
            out[off + 2 * i + 1] = v & 0xFF
        return 0

    def write(self, addr, count, src, soff, ctx=None):
        return 2                           # read only: Illegal Data Address
