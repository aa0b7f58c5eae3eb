"""machine-like Pin and SPI stand-ins wired to the simulated ADE7880.

    from boards.sim.bus import SimPin, SimSPI
    cs = SimPin(1)
    spi = SimSPI(chip, cs)
    buf = bytearray(b"\\x01\\xe6\\x10\\x00\\x00")   # read CFMODE (16-bit)
    cs(0); spi.write_readinto(buf, buf); cs(1)     # buf[3:5] == b"\\x0e\\xa0"

Bytes reach the chip only while the CS pin is low: a CS falling edge starts a
frame, the rising edge ends it (the chip commits writes then), as on the real
part where /SS frames each transfer.
"""


class SimPin:
    IN = 0
    OUT = 1
    OPEN_DRAIN = 2
    PULL_UP = 1
    PULL_DOWN = 2
    # esp32 numbering; drivers should use the names, not the numbers.
    IRQ_RISING = 1
    IRQ_FALLING = 2

    def __init__(self, value=1, name=None):
        self._v = 1 if value else 0
        self.name = name
        self._handler = None
        self._trigger = 0
        self._watch = None  # internal listener (SimSPI watches its CS pin)

    def init(self, mode=-1, pull=-1, value=None, **kw):
        if value is not None:
            self.value(value)

    def value(self, v=None):
        if v is None:
            return self._v
        if self._set(v):
            self._fire(self._v)

    def __call__(self, v=None):
        return self.value(v)

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)

    def irq(self, handler=None, trigger=2):
        # Like machine.Pin.irq: handler(pin) runs on the chosen edge(s).
        # It runs synchronously, so treat it as a hard IRQ: set a flag only.
        self._handler = handler
        self._trigger = trigger if handler else 0

    def _set(self, v):
        """Change the level without calling the handler; True if it changed."""
        v = 1 if v else 0
        if v == self._v:
            return False
        self._v = v
        if self._watch is not None:
            self._watch(v)
        return True

    def _fire(self, v):
        h = self._handler
        if h is not None and self._trigger & (self.IRQ_RISING if v else self.IRQ_FALLING):
            h(self)

    def __repr__(self):
        return "SimPin(%s=%d)" % (self.name or "", self._v)


class SimSPI:
    """machine.SPI look-alike in front of a chip exposing select/deselect/xfer."""

    def __init__(self, chip, cs):
        self._chip = chip
        self._cs = cs
        cs._watch = self._cs_edge
        self.kw = {}

    def _cs_edge(self, v):
        if v:
            self._chip.deselect()
        else:
            self._chip.select()

    def init(self, **kw):
        self.kw.update(kw)

    def deinit(self):
        pass

    def write_readinto(self, tx, rx):
        if len(tx) != len(rx):
            raise ValueError("write_readinto: buffers differ in length (%d, %d)" % (len(tx), len(rx)))
        if self._cs._v:
            # Not selected: nobody drives MISO, the pull-up reads 0xFF.
            for i in range(len(rx)):
                rx[i] = 0xFF
        else:
            self._chip.xfer(tx, rx)

    def write(self, tx):
        if not self._cs._v:
            self._chip.xfer(tx, None)

    def readinto(self, buf, write=0):
        tx = bytes((write & 0xFF,)) * len(buf)
        self.write_readinto(tx, buf)

    def read(self, n, write=0):
        buf = bytearray(n)
        self.readinto(buf, write)
        return bytes(buf)
