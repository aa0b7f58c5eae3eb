"""Bounded event log: what happened to the meter, for the engine, LEDs and Modbus.

    from firmware.events import EventLog
    log = EventLog(16)
    log.add(t_ms, code)            # or log.add(t_ms, code, arg): arg 0..255, e.g. a task index
    log.count(code); log.total; log.recent(); log.recent_args()
    log.at(k)                      # event number k since boot (None once overwritten)

Fixed-size ring (no growth) and per-code counters. The codes are all defined here, in
one registry (drivers report faults in their own terms; the firmware names the event),
so the log, the LEDs, Modbus and the host run agree on what a number means.
"""
from array import array
from micropython import const

# The event-code registry. Numbers are stable: they are stored and served.
EV_INIT = const(1)             # chip (re-)initialised
EV_CHIP_RESET = const(2)       # chip reset seen (RSTDONE or SPI lost) after boot
EV_CHECKSUM = const(3)         # chip configuration upset (CHECKSUM / STATUS1.CRC)
EV_SPI_ERROR = const(4)        # chip not answering or reads not confirmed
EV_IRQ_MISSED = const(5)       # a window found without its IRQ0
EV_ACK_UNCONFIRMED = const(6)  # a window's acknowledgement could not be confirmed
EV_TASK_CRASH = const(7)       # a supervised task raised; it was restarted
EV_WATCHDOG = const(8)         # snapshots stopped advancing: watchdog not fed
EV_PHASE_LOSS = const(9)       # a phase's voltage fell below 40 V (one event per phase)
EV_PHASE_RETURN = const(10)    # a lost phase's voltage is back above 50 V
EV_BUTTON_RESTART = const(11)  # reset button held >= 6 s: restart (firmware/button.py)
EV_BUTTON_PASSWORD = const(12) # reset button long-short: device password reset
EV_BUTTON_NETWORK = const(13)  # reset button short-long: network settings reset (DHCP)
EV_OVERLOAD = const(14)        # an input beyond the ADC's full scale (arg: bit 2*phase V,
                               # bit 2*phase+1 I): readings there are clipped
# Counters across power cuts (firmware/persist.py); argument: the journal (0..2) or errno.
EV_COUNTERS_RESTORED = const(20)   # counters loaded from the newest valid record at boot
EV_RECORD_CORRUPT = const(21)      # a torn or corrupt record skipped (CRC, length, range)
EV_SUPPLY_FAIL = const(22)         # supply failing (L1 collapse or power-fail input)
EV_PERSIST_FAILED = const(23)      # a counter record could not be written
# Protected configuration (firmware/cfgstore.py, firmware/regmaps/device.py).
EV_UNLOCK_FAILED = const(24)       # a wrong password (unlock or change); arg: failures
EV_LOCKED_OUT = const(25)          # 5 wrong passwords: unlock refused; arg: minutes
EV_CONFIG_CHANGED = const(26)      # a config change persisted and applied; arg: port
EV_DEVICE_RESET = const(27)        # a reset command; arg: 1 restart, 2 network,
                                   # 3 password, 4 factory
# The event log on flash (firmware/eventstore.py).
EV_BOOT = const(28)                # booted; arg: the board's reset cause (machine.reset_cause())
EV_LOG_CORRUPT = const(29)         # torn or corrupt event records skipped at boot (arg: count)
EV_LOG_FAILED = const(30)          # events could not be written to flash (arg: errno)
EV_LOG_LOST = const(31)            # events dropped from RAM before a flush (arg: count)
# Records (firmware/records.py): CT checks (Enedis DTR 2.4.3.5.3) and the rings on flash.
EV_CT_OVER_110 = const(40)         # a phase above 110 % of the CT primary for ct_sustain_s
                                   # (arg: minutes)
EV_CT_OVER_120 = const(41)         # a phase reached 120 % of the CT primary (arg: %)
EV_CT_UNDERUSED = const(42)        # a year's largest 5-minute current below the CT's useful
                                   # range (arg: % of the primary)
EV_RECORDS_FAILED = const(43)      # a load-curve or KSEM-log record not written (arg: errno)
# MQTT (firmware/mqtt.py; 52..55 of issue 13's ranges):
EV_MQTT_CONNECTED = const(52)      # connected to the broker (arg: connections so far, low byte)
EV_MQTT_LOST = const(53)           # connection failed or lost (arg: errno, low byte)
EV_MQTT_REFUSED = const(54)        # the broker refused the connection (arg: CONNACK return code)
EV_MQTT_DROPPED = const(55)        # queue full while connected: oldest dropped (arg: drops)
# Modbus master push (firmware/pushmb.py); arg: the target (0..9 TCP, 10..19 RTU slaves).
EV_PUSH_ERROR = const(44)          # a push target timed out or could not be connected
EV_PUSH_OK = const(45)             # a push target in error answers again
EV_PUSH_EXCEPTION = const(46)      # a push target answered FC 16 with an exception
# Clock, tariffs and demand (firmware/walltime.py, tariff.py, demand.py): 32..39.
EV_CLOCK_SET = const(32)           # the wall clock was set; arg: source (1 RTC, 2 SNTP, 3 Modbus)
EV_SNTP_FAILED = const(33)         # an SNTP query failed; arg: firmware/walltime.py E_* code
EV_TIME_UNKNOWN = const(34)        # booted without a valid time: records are untimed
EV_TARIFF_CORRUPT = const(35)      # the tariff/demand record on flash was unreadable
EV_OVERRUN = const(36)             # overrun warning closed (period power > k x Ps); arg: class
EV_OVERRUN_END = const(37)         # overrun warning opened again; arg: class
EV_BILLING_CLOSED = const(38)      # a billing period closed (current -> previous)
N_CODES = const(64)
# Names by code (index = code; "" where no code is assigned yet). One literal tuple:
# a frozen build keeps it in flash (built by concatenation it would be RAM).
EVENT_NAMES = (
    "", "init", "chip_reset", "checksum_changed",                               # 0..3
    "spi_error", "irq_missed", "ack_unconfirmed", "task_crash",                 # 4..7
    "stalled", "phase_loss", "phase_return", "button_restart",                  # 8..11
    "button_password", "button_network", "overload", "",                        # 12..15
    "", "", "", "",                                                             # 16..19
    "counters_restored", "record_corrupt", "supply_fail", "persist_failed",     # 20..23
    "unlock_failed", "locked_out", "config_changed", "device_reset",            # 24..27
    "boot", "log_corrupt", "log_failed", "log_lost",                            # 28..31
    "clock_set", "sntp_failed", "time_unknown", "tariff_corrupt",               # 32..35
    "overrun", "overrun_end", "billing_closed", "",                             # 36..39
    "ct_over_110", "ct_over_120", "ct_underused", "records_failed",             # 40..43
    "push_error", "push_ok", "push_exception", "",                              # 44..47
    "", "", "", "",                                                             # 48..51
    "mqtt_connected", "mqtt_lost", "mqtt_refused", "mqtt_dropped")              # 52..55


def event_name(code):
    name = EVENT_NAMES[code] if 0 <= code < len(EVENT_NAMES) else ""
    return name or "code_%d" % code


class EventLog:
    def __init__(self, size=16, ncodes=N_CODES):
        self._t = array("l", [0] * size)
        self._code = bytearray(size)
        self._arg = bytearray(size)
        self._counts = array("l", [0] * ncodes)
        self.total = 0
        self.store = None       # the log on flash (firmware/eventstore.py), when there is one

    def add(self, t_ms, code, arg=0):
        i = self.total % len(self._code)
        self._t[i] = t_ms
        self._code[i] = code
        self._arg[i] = arg & 0xFF
        if code < len(self._counts):
            self._counts[code] += 1
        self.total += 1

    def at(self, k):
        """(t_ms, code, arg) of event number k (0 = the first since boot), or None when
        the ring has overwritten it or it has not happened (allocates a tuple)."""
        n = len(self._code)
        if not self.total - n <= k < self.total or k < 0:
            return None
        i = k % n
        return self._t[i], self._code[i], self._arg[i]

    def count(self, code):
        return self._counts[code]

    def recent(self):
        """Oldest first, as (t_ms, code) pairs (allocates; not for the hot path)."""
        return [(t, c) for t, c, _ in self.recent_args()]

    def recent_args(self):
        """Oldest first, as (t_ms, code, arg) triples (allocates)."""
        n = len(self._code)
        first = max(0, self.total - n)
        return [(self._t[k % n], self._code[k % n], self._arg[k % n])
                for k in range(first, self.total)]
