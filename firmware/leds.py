"""LED behaviour: the KSEM status, network and bus LED tables as pure state machines.

    from firmware.leds import Indicators, BOOT_METERING, BOOT_DONE
    ind = Indicators(leds=(board.leds["status"], board.leds["network"], board.leds["bus"]))
    ind.bind(meter=meter, events=events, ports=ports, feeder=feeder)  # sources (optional)
    ind.boot(BOOT_METERING, now); ind.boot(BOOT_DONE, now)
    ind.confirm(now)                       # the reset button's two blinks
    ind.tick(now)                          # sample sources, compute, drive the LEDs
    ind.names()  # {"status": "green", "network": "green-blink", "bus": "off"}
    asyncio.create_task(ind.run(clock))    # tick every 25 ms

Tables (KSEM manual 3.4, digest section 2). Each LED shows the first state of its list
that applies (priority top down):

status   confirm       orange, 2 blinks  a reset-button sequence was recognised
         update        green fast        firmware update in progress
         error         red steady        chip not answering / not configured, or the
                                         metering loop stalled (watchdog not fed)
         fault         red blinking      meter stale (Meter.status_now()) for 1 s on
                                         end, or a recoverable fault in the last 60 s:
                                         chip reset / checksum upset / SPI error / IRQ
                                         missed / ack unconfirmed, or a task crash
         boot_hung     orange steady     boot not finished after 10 s
         booting       orange steady     boot: storage, config, chip (< 10 s)
         starting      green slow        boot: metering runs, ports coming up
         ready         green steady      ready
network  no_link       off               no Ethernet link
         active        green blinking    a Modbus TCP client connected, or a request
                                         in the last 3 s
         setup         green steady      link up, no connection (being set up / idle)
bus      overload      red steady        5 V output of the RS485 connector overloaded
         scanning      green slow        bus scan running (master mode, later)
         no_answer     orange blinking   a push target does not answer (firmware/pushmb.py)
         traffic       green fast        a frame for us on RS485 A or B in the last 3 s
         idle          off               no traffic

Why this order: the confirmation lasts 1.25 s and is the answer to the user's hand,
so it wins; an update must not be read as an error (metering may pause during it);
a fault that stops metering (red steady) outranks one that was recovered (blinking);
a known error outranks the generic hung boot. On the bus a hardware fault outranks a
silent remote, and a scan (which probes absent addresses) outranks "no answer".

Rates (the manual gives none; digest 2 [INF]): slow 1 Hz (500 ms on/off), blinking
2 Hz (250/250), fast 4 Hz (125/125). The confirmation: 250 ms dark, orange 250, dark
250, orange 250, dark 250 (1.25 s), so both blinks stand out from a steady colour.
Orange, not yellow: manual 6.1 says orange, the LED table yellow; on a red/green LED
both are the two dies lit. Blinks start lit when a state is entered, so a short burst
of traffic shows at once.

Time is ticks_ms (wrapping; ticks_diff); tick() allocates nothing: state in
bytearrays, blink phase re-anchored every period so no difference grows unbounded.
"""
import asyncio
from array import array
from time import ticks_diff, ticks_add
from micropython import const

# Mirrors of the names this module uses from others (tests/test_mirrors.py checks
# they are equal): a private const is inlined and takes no global slot, an
# imported name is a global of this module.
# boards/contract.py
_LED_OFF = const(0)
_LED_GREEN = const(1)
_LED_RED = const(2)
_LED_ORANGE = const(3)
# firmware/events.py
_EV_CHIP_RESET = const(2)
_EV_CHECKSUM = const(3)
_EV_SPI_ERROR = const(4)
_EV_IRQ_MISSED = const(5)
_EV_ACK_UNCONFIRMED = const(6)
_EV_TASK_CRASH = const(7)
# firmware/snapshot.py
_ST_CHIP_OK = const(1)
_ST_STALE = const(4)

# Boot phases (issue 10 item 5: storage, config, chip, metering, then the ports).
_BOOT_STORAGE = const(0)
_BOOT_CONFIG = const(1)
_BOOT_CHIP = const(2)
BOOT_METERING = const(3)
BOOT_PORTS = const(4)
BOOT_DONE = const(5)

_BOOT_HUNG_MS = const(10000)     # manual 3.4: orange < 10 s booting, > 10 s a fault
_FAULT_HOLD_MS = const(60000)    # a recovered fault blinks red this long
_STALE_MS = const(1000)          # the meter stale this long (on end) blinks red
_NET_ACTIVE_MS = const(3000)     # a request this recent counts as an active connection
_BUS_ACTIVE_MS = const(3000)     # masters poll about every 1 s (manual 3.5.1): 3 missed
_CONFIRM_MS = const(1250)        # two blinks framed by dark, see the table above
_CONFIRM_HALF = const(250)

# Patterns: colour, blink period (0 = steady) and lit time per period.
_P_OFF = const(0)
_P_GREEN = const(1)
_P_RED = const(2)
_P_ORANGE = const(3)
_P_GREEN_SLOW = const(4)
_P_GREEN_BLINK = const(5)
_P_GREEN_FAST = const(6)
_P_RED_BLINK = const(7)
_P_ORANGE_BLINK = const(8)
_P_CONFIRM = const(9)
_P_COLOUR = bytes((_LED_OFF, _LED_GREEN, _LED_RED, _LED_ORANGE, _LED_GREEN, _LED_GREEN,
                   _LED_GREEN, _LED_RED, _LED_ORANGE, _LED_ORANGE))
# Literal tuples of constants: a frozen build keeps them in flash (an array would be
# built in RAM at import).
_P_PERIOD = (0, 0, 0, 0, 1000, 500, 250, 500, 500, 0)
_P_ON = (0, 0, 0, 0, 500, 250, 125, 250, 250, 0)
_PATTERN_NAMES = const(("off", "green", "red", "orange", "green-slow", "green-blink",
                        "green-fast", "red-blink", "orange-blink", "orange-2blink"))

# States, in priority order per LED (lower wins), and the pattern each one shows.
_S_CONFIRM = const(0)
_S_UPDATE = const(1)
_S_ERROR = const(2)
_S_FAULT = const(3)
_S_BOOT_HUNG = const(4)
_S_BOOTING = const(5)
_S_STARTING = const(6)
_S_READY = const(7)
STATUS_NAMES = ("confirm", "update", "error", "fault", "boot_hung", "booting",
                "starting", "ready")
_STATUS_P = const((_P_CONFIRM, _P_GREEN_FAST, _P_RED, _P_RED_BLINK, _P_ORANGE, _P_ORANGE,
                   _P_GREEN_SLOW, _P_GREEN))

_N_NO_LINK = const(0)
_N_ACTIVE = const(1)
_N_SETUP = const(2)
NETWORK_NAMES = ("no_link", "active", "setup")
_NETWORK_P = const((_P_OFF, _P_GREEN_BLINK, _P_GREEN))

_B_OVERLOAD = const(0)
_B_SCANNING = const(1)
_B_NO_ANSWER = const(2)
_B_TRAFFIC = const(3)
_B_IDLE = const(4)
BUS_NAMES = ("overload", "scanning", "no_answer", "traffic", "idle")
_BUS_P = const((_P_RED, _P_GREEN_SLOW, _P_ORANGE_BLINK, _P_GREEN_FAST, _P_OFF))

_LED_NAMES = const(("status", "network", "bus"))
_STATE_NAMES = (STATUS_NAMES, NETWORK_NAMES, BUS_NAMES)
_PATTERNS = (_STATUS_P, _NETWORK_P, _BUS_P)

# Events that make the status LED blink red for _FAULT_HOLD_MS (firmware/events.py).
_FAULT_CODES = bytes((_EV_CHIP_RESET, _EV_CHECKSUM, _EV_SPI_ERROR, _EV_IRQ_MISSED,
                      _EV_ACK_UNCONFIRMED, _EV_TASK_CRASH))


def _recent(now, t, window):
    return t is not None and 0 <= ticks_diff(now, t) < window


class Indicators:
    def __init__(self, leds=None, now=0):
        self.leds = leds                  # (status, network, bus) LED objects or None
        # Inputs: set directly, or by sample() from the bound sources.
        self.boot_phase = _BOOT_STORAGE
        self.boot_t = now
        self.updating = False             # firmware update in progress (OTA, later)
        self.chip_fault = False           # red steady
        self.stalled = False              # red steady
        self.stale = False                # red blinking
        self.link = True                  # Ethernet link (True where the host's stack is used)
        self.net_conns = 0                # Modbus TCP connections open
        self.net_last = None              # ticks_ms of the last TCP request
        self.bus_last = None              # ticks_ms of the last RTU frame for us
        self.scanning = False
        self.overload = False
        self.remote_silent = False
        # Start times (ticks_ms) while on, None while off.
        self._fault_t = None
        self._stale_t = None
        self._confirm_t = None
        # Per LED: state, entry time (blink phase anchor), colour shown.
        self._state = bytearray((255, 255, 255))
        self._t0 = array("l", (0, 0, 0))
        self.colours = bytearray(3)
        self._meter = self._events = self._ports = self._feeder = self._overload_pin = None
        self._push = None
        self._ev_total = 0
        self._faults_seen = 0

    # ---- inputs ----
    def boot(self, phase, now):
        if not _BOOT_STORAGE <= phase <= BOOT_DONE:
            raise ValueError("boot phase must be 0..5, got %r" % (phase,))
        if phase == _BOOT_STORAGE:
            self.boot_t = now
        self.boot_phase = phase

    def confirm(self, now):
        """Start the two-blink confirmation (restarts it if one is showing)."""
        self._confirm_t = now
        self._state[0] = _S_CONFIRM        # (re)start the pattern from its beginning
        self._t0[0] = now

    def fault(self, now):
        """A recoverable fault happened: blink red for _FAULT_HOLD_MS from now."""
        self._fault_t = now

    def bind(self, meter=None, events=None, ports=None, feeder=None, overload_pin=None,
             push=None):
        """Sources sample() reads: Meter (status_now), EventLog (fault counts),
        ModbusPorts (RTU/TCP stats), WatchdogFeeder (stalled), and a Pin-like 5 V
        overload input (0 = overloaded) or None. Faults logged before bind() are
        not shown."""
        self._meter = meter
        self._events = events
        self._ports = ports
        self._feeder = feeder
        self._overload_pin = overload_pin
        self._push = push      # firmware/pushmb.py: .silent while a target is in error
        if events is not None:
            self._ev_total = events.total
            self._faults_seen = self._fault_count()

    def _fault_count(self):
        ev = self._events
        n = 0
        for c in _FAULT_CODES:
            n += ev.count(c)
        return n

    def sample(self, now):
        """Read the bound sources into the inputs (no allocation)."""
        m = self._meter
        if m is not None:
            if m.front.seq == 0:          # nothing published yet: still starting
                self.chip_fault = self.stale = False
            else:
                st = m.status_now()
                self.chip_fault = not (st & _ST_CHIP_OK)
                # Stale for _STALE_MS on end: one late cycle on a busy loop is not a fault.
                if st & _ST_STALE:
                    if self._stale_t is None:
                        self._stale_t = now
                    self.stale = ticks_diff(now, self._stale_t) >= _STALE_MS
                else:
                    self._stale_t = None
                    self.stale = False
        ev = self._events
        if ev is not None and ev.total != self._ev_total:
            self._ev_total = ev.total
            n = self._fault_count()
            if n != self._faults_seen:
                self._faults_seen = n
                self.fault(now)
        if self._feeder is not None:
            self.stalled = self._feeder.stalled
        p = self._ports
        if p is not None:
            s = p.tcp.stats
            self.net_conns = s.active
            self.net_last = s.last_ms
            last = None
            r = p.rtu.get("a")
            if r is not None:
                last = r.stats.last_ms
            r = p.rtu.get("b")
            if r is not None and r.stats.last_ms is not None and (
                    last is None or ticks_diff(r.stats.last_ms, last) > 0):
                last = r.stats.last_ms
            self.bus_last = last
        if self._push is not None:
            self.remote_silent = self._push.silent
        if self._overload_pin is not None:
            self.overload = self._overload_pin.value() == 0

    # ---- the state machines ----
    def status_state(self, now):
        if self._confirm_t is not None:
            if ticks_diff(now, self._confirm_t) < _CONFIRM_MS:
                return _S_CONFIRM
            self._confirm_t = None
        if self.updating:
            return _S_UPDATE
        if self.chip_fault or self.stalled:
            return _S_ERROR
        if self._fault_t is not None:
            if ticks_diff(now, self._fault_t) < _FAULT_HOLD_MS:
                return _S_FAULT
            self._fault_t = None
        if self.stale:
            return _S_FAULT
        if self.boot_phase < BOOT_DONE:
            if ticks_diff(now, self.boot_t) >= _BOOT_HUNG_MS:
                return _S_BOOT_HUNG
            return _S_BOOTING if self.boot_phase < BOOT_METERING else _S_STARTING
        return _S_READY

    def network_state(self, now):
        if not self.link:
            return _N_NO_LINK
        if self.net_conns > 0 or _recent(now, self.net_last, _NET_ACTIVE_MS):
            return _N_ACTIVE
        return _N_SETUP

    def bus_state(self, now):
        if self.overload:
            return _B_OVERLOAD
        if self.scanning:
            return _B_SCANNING
        if self.remote_silent:
            return _B_NO_ANSWER
        if _recent(now, self.bus_last, _BUS_ACTIVE_MS):
            return _B_TRAFFIC
        return _B_IDLE

    def _show(self, i, state, now):
        if state != self._state[i]:
            self._state[i] = state
            self._t0[i] = now
        p = _PATTERNS[i][state]
        d = ticks_diff(now, self._t0[i])
        if p == _P_CONFIRM:
            lit = d < 2 * 2 * _CONFIRM_HALF and (d // _CONFIRM_HALF) & 1
        else:
            period = _P_PERIOD[p]
            if period == 0:
                lit = True
            else:
                if d >= period:           # keep the anchor within one period of now
                    self._t0[i] = ticks_add(self._t0[i], d - d % period)
                    d %= period
                lit = d < _P_ON[p]
        c = _P_COLOUR[p] if lit else _LED_OFF
        self.colours[i] = c
        return c

    def compute(self, now):
        """Update the three LEDs' states and colours for time now (ticks_ms)."""
        self._show(0, self.status_state(now), now)
        self._show(1, self.network_state(now), now)
        self._show(2, self.bus_state(now), now)

    def tick(self, now):
        self.sample(now)
        self.compute(now)
        leds = self.leds
        if leds is not None:
            c = self.colours
            leds[0].value(c[0])
            leds[1].value(c[1])
            leds[2].value(c[2])

    async def run(self, clock, period_ms=25):
        # 25 ms: a quarter of the fastest half-period (125 ms), so edges jitter little.
        while True:
            self.tick(clock.ticks_ms())
            await asyncio.sleep_ms(period_ms)

    # ---- for the host run (allocate: snapshot.json and the live table only) ----
    def names(self):
        """Each LED's pattern name: {"status": "green", "bus": "green-fast", ...}."""
        return {_LED_NAMES[i]: _PATTERN_NAMES[_PATTERNS[i][self._state[i]]]
                for i in range(3) if self._state[i] != 255}

    def states(self):
        """Each LED's state name (what it means): {"status": "ready", ...}."""
        return {_LED_NAMES[i]: _STATE_NAMES[i][self._state[i]]
                for i in range(3) if self._state[i] != 255}
