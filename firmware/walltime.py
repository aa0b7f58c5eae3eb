"""The device's wall clock (UTC, as the KSEM keeps it) and its SNTP client.

    from firmware.walltime import WallClock, sntp_task
    wall = WallClock(board.clock, events, board.time_utc())   # None: time unknown
    wall.utc()            # seconds since 1970, or None while unknown
    wall.set(utc_s, SRC_MODBUS)                                # event clock_set (step)
    sup.spawn("sntp", lambda: sntp_task(wall, "pool.ntp.org", 3600))

Between sets the clock runs from the board's monotonic microseconds (board.clock.now_us()),
so a set is the only step it ever takes; `last_step_ms` keeps the size of the last one.

SNTP (RFC 4330, version 4): a 48-byte request in client mode 3 whose transmit timestamp
the server must echo as "originate"; a reply counts only in server mode 4 with stratum
1..15 and a non-zero transmit time. Stratum 0 is a Kiss-o'-Death: its reference id (an
ASCII code such as "RATE" or "DENY") says the server wants no more requests for now, so
the client backs off (DENY/RSTR: until the server setting changes). NTP time counts
seconds since 1900 in 32 bits (era 0 ends in 2036): values below 2**31 are read as era 1.
The socket is non-blocking and polled with asyncio sleeps: the task never blocks the loop.
"""
import struct
from micropython import const

# Public: the sources other modules set the clock from. The rest is private (no global
# slot; the two big ones would be long ints on the heap of a 32-bit board).
_NTP_1970 = const(2208988800)     # seconds from 1900-01-01 to 1970-01-01 (RFC 868)
_SRC_RTC = const(1)
SRC_SNTP = const(2)
SRC_MODBUS = const(3)
_MIN_UTC = const(1577836800)      # 2020-01-01: anything earlier is an unset RTC
# Reply checks: 0 accepted, else the failure (the event's argument).
_E_SHORT = const(1)
_E_MODE = const(2)
_E_STRATUM = const(3)
_E_ORIGIN = const(4)
_E_KOD = const(5)
_E_TIMEOUT = const(6)
_E_NET = const(7)


class WallClock:
    def __init__(self, clock, events=None, boot_utc=None):
        self.clock = clock
        self.events = events
        self._base_ms = None            # UTC ms at self._base_us
        self._base_us = 0
        self.source = 0
        self.last_step_ms = 0
        if boot_utc is not None and boot_utc >= _MIN_UTC:
            self.set(boot_utc, _SRC_RTC)

    def valid(self):
        return self._base_ms is not None

    def utc_ms(self):
        if self._base_ms is None:
            return None
        return self._base_ms + (self.clock.now_us() - self._base_us) // 1000

    def utc(self):
        ms = self.utc_ms()
        return None if ms is None else ms // 1000

    def set(self, utc_s, source, ms=0):
        """Set the clock to utc_s (+ ms); logs clock_set (arg: source; not for the RTC's
        time at boot), the step in last_step_ms."""
        if not isinstance(utc_s, int) or not _MIN_UTC <= utc_s < (1 << 32):
            raise ValueError("clock: UTC seconds must be 2020..2106, got %r" % (utc_s,))
        new = utc_s * 1000 + ms
        old = self.utc_ms()
        self.last_step_ms = 0 if old is None else new - old
        self._base_us = self.clock.now_us()
        self._base_ms = new
        self.source = source
        if self.events is not None and source != _SRC_RTC:   # the boot's RTC: no step
            from firmware.events import EV_CLOCK_SET
            self.events.add(self.clock.ticks_ms(), EV_CLOCK_SET, source)


async def sntp_task(wall, server, interval_s, port=123, timeout_ms=2000, retry_s=60):
    """Query `server` every interval_s (retry_s after a failure) and set `wall`."""
    import asyncio
    import socket
    from firmware.events import EV_SNTP_FAILED
    clock = wall.clock
    n = 0
    while True:
        code, kiss = _E_NET, b""
        try:
            ai = socket.getaddrinfo(server, port, 0, socket.SOCK_DGRAM)[0]
            s = socket.socket(ai[0], socket.SOCK_DGRAM)
            try:
                s.setblocking(False)
                n = (n + 1) & 0xFFFFFFFF
                # our own stamp: not the time (it may be unknown) but a nonce to match
                tx = ((clock.now_us() // 1000000 + 0x80000000) & 0xFFFFFFFF, n)
                t1 = clock.now_us()
                # the request: LI 0, version 4, mode 3 (client), transmit timestamp tx
                # (seconds since 1900, fraction) which the server echoes as originate
                b = bytearray(48)
                b[0] = (4 << 3) | 3
                struct.pack_into(">II", b, 40, tx[0], tx[1])
                s.sendto(b, ai[-1])
                code = _E_TIMEOUT
                waited = 0
                while waited < timeout_ms:
                    # 2 ms steps while a LAN answer is due, then 20: the reply's arrival
                    # is known to one step, and half of it is the clock's error
                    step = 2 if waited < 40 else 20
                    await asyncio.sleep_ms(step)
                    waited += step
                    try:
                        b = s.recv(64)
                    except OSError:
                        continue
                    # the reply: 0 accepted (the server's transmit time), else _E_*
                    if len(b) < 48:
                        code = _E_SHORT
                    elif b[0] & 7 != 4:
                        code = _E_MODE
                    elif struct.unpack_from(">II", b, 24) != tx:
                        code = _E_ORIGIN
                        continue            # not the answer to our request: wait on
                    elif b[1] == 0:
                        code = _E_KOD
                        kiss = bytes(b[12:16])
                    else:
                        sec, frac = struct.unpack_from(">II", b, 40)
                        if b[1] > 15 or (sec == 0 and frac == 0):
                            code = _E_STRATUM
                        else:
                            if sec < 0x80000000:
                                sec += 1 << 32      # era 1 (after 2036-02-07)
                            ms = (sec - _NTP_1970) * 1000 + (frac * 1000 >> 32)
                            # half the round trip: the reply's time left the server then
                            ms += (clock.now_us() - t1) // 2000
                            wall.set(ms // 1000, SRC_SNTP, ms % 1000)
                            code = 0
                    break
            finally:
                s.close()
        except OSError:
            code = _E_NET
        if code:
            if wall.events is not None:
                wall.events.add(clock.ticks_ms(), EV_SNTP_FAILED, code)
            if code == _E_KOD and kiss in (b"DENY", b"RSTR"):
                return                 # the server refuses us: until the config changes
        await asyncio.sleep(interval_s if code == 0 else
                            max(retry_s, interval_s) if code == _E_KOD else retry_s)
