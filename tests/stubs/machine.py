"""Stand-in for MicroPython's `machine` on the unix port (tests/test_boards.py).

Every constructor call is recorded in CALLS as (name, args, kwargs) and its keyword
names are checked against the signature MicroPython documents for the rp2 and esp32
ports (docs.micropython.org: machine.Pin, machine.SPI, machine.UART, machine.WDT), so
a board module that passes a wrong name or too many positionals fails here as it would
on the device. Pins keep a level; an SPI may be given a `target` (a SimSPI in front of
the simulated ADE7880) that answers its transfers.
"""
CALLS = []
RESETS = []
RESET_CAUSE = 1          # PWRON_RESET
UNIQUE_ID = b"\xe6\x61\x40\x12\x34\x56\x78\x9a"
RTC_NOW = [(2021, 1, 1, 4, 0, 0, 0, 0)]   # rp2's RTC after power-up: not set
PWRON_RESET = 1
WDT_RESET = 3


def _record(name, args, kw, npos, names):
    if len(args) > npos:
        raise TypeError("%s() takes at most %d positional arguments, got %d"
                        % (name, npos, len(args)))
    for k in kw:
        if k not in names:
            raise TypeError("%s(): unexpected keyword argument %r" % (name, k))
    CALLS.append((name, args, kw))


class Pin:
    IN = 0
    OUT = 1
    OPEN_DRAIN = 2
    PULL_UP = 1
    PULL_DOWN = 2
    IRQ_RISING = 4
    IRQ_FALLING = 8

    # machine.Pin(id, mode=-1, pull=-1, *, value=None, drive=0, alt=-1)
    def __init__(self, *args, **kw):
        _record("Pin", args, kw, 3, ("mode", "pull", "value", "drive", "alt"))
        self.id = args[0] if args else kw["id"]
        if not isinstance(self.id, int):
            raise TypeError("Pin id must be an int, got %r" % (self.id,))
        self.mode = args[1] if len(args) > 1 else kw.get("mode", -1)
        self.pull = args[2] if len(args) > 2 else kw.get("pull", -1)
        v = kw.get("value")
        self._v = v if v is not None else (1 if self.pull == self.PULL_UP else 0)
        self.handler = None
        self.trigger = 0
        self._watch = None        # boards/sim/bus.py SimSPI listens to its CS pin

    def value(self, v=None):
        if v is None:
            return self._v
        v = 1 if v else 0
        if v != self._v:
            self._v = v
            if self._watch is not None:
                self._watch(v)
            # an input driven from outside (tests): its interrupt handler runs
            if self.handler is not None and self.trigger & (
                    self.IRQ_RISING if v else self.IRQ_FALLING):
                self.handler(self)

    def __call__(self, v=None):
        return self.value(v)

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)

    # Pin.irq(handler=None, trigger=IRQ_FALLING|IRQ_RISING, *, priority, wake, hard)
    def irq(self, handler=None, trigger=12, **kw):
        for k in kw:
            if k not in ("priority", "wake", "hard"):
                raise TypeError("Pin.irq(): unexpected keyword argument %r" % (k,))
        self.handler = handler
        self.trigger = trigger


class SPI:
    MSB = 0
    LSB = 1

    # machine.SPI(id, baudrate=1000000, *, polarity=0, phase=0, bits=8, firstbit=MSB,
    #             sck=None, mosi=None, miso=None)
    def __init__(self, *args, **kw):
        _record("SPI", args, kw, 2, ("baudrate", "polarity", "phase", "bits", "firstbit",
                                     "sck", "mosi", "miso"))
        self.id = args[0]
        self.kw = kw
        self.target = None

    def init(self, **kw):
        self.kw.update(kw)

    def write_readinto(self, tx, rx):
        if self.target is not None:
            self.target.write_readinto(tx, rx)
        else:
            for i in range(len(rx)):
                rx[i] = 0xFF

    def write(self, b):
        if self.target is not None:
            self.target.write_readinto(b, bytearray(len(b)))

    def readinto(self, b, w=0):
        self.write_readinto(bytes([w]) * len(b), b)


class UART:
    IRQ_RXIDLE = 4096

    # machine.UART(id, baudrate=9600, bits=8, parity=None, stop=1, *, tx, rx, rts, cts,
    #              txbuf, rxbuf, timeout, timeout_char, invert, flow)
    _NAMES = ("baudrate", "bits", "parity", "stop", "tx", "rx", "rts", "cts", "txbuf",
              "rxbuf", "timeout", "timeout_char", "invert", "flow")

    def __init__(self, *args, **kw):
        _record("UART", args, kw, 5, self._NAMES)
        self.id = args[0]
        self.kw = dict(kw)
        self.handler = None
        self.written = []

    def init(self, *args, **kw):
        _record("UART.init", args, kw, 4, self._NAMES)
        self.kw.update(kw)

    def irq(self, handler=None, trigger=0, hard=False):
        self.handler = handler
        self.trigger = trigger

    def readinto(self, b, n=None):
        return None

    def write(self, b):
        self.written.append(bytes(b))
        return len(b)

    def txdone(self):
        return True

    def flush(self):
        pass


class WDT:
    # machine.WDT(id=0, timeout=5000)
    def __init__(self, *args, **kw):
        _record("WDT", args, kw, 1, ("id", "timeout"))
        self.timeout = kw.get("timeout", 5000)
        self.feeds = 0

    def feed(self):
        self.feeds += 1


class RTC:
    def __init__(self, *args, **kw):
        _record("RTC", args, kw, 1, ("id",))

    def datetime(self, t=None):
        if t is None:
            return RTC_NOW[0]
        RTC_NOW[0] = tuple(t)


def reset():
    RESETS.append(1)


def reset_cause():
    return RESET_CAUSE


def unique_id():
    return UNIQUE_ID
