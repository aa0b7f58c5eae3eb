"""The sim board: the MicroPython unix port with simulated parts.

    from boards.sim.board import SimBoard
    board = SimBoard(scenario)                 # RealClock; SimBoard(scn, clock=VirtualClock())
    chip = board.ade7880()                     # drivers.ade7880.ADE7880 on the simulated SPI
    asyncio.create_task(board.tick())          # keeps the simulated chip's IRQs on time

Like a real board module it is the only place that knows how parts are wired: the
ADE7880 (here ADE7880Sim) on SPI with CS and IRQ0, the clock, the RS485 UARTs (pty
pairs), LEDs, button, power-fail input, watchdog and the littlefs block device. It
implements the board contract (boards/contract.py).
"""
import asyncio
import time

from boards.sim.ade7880 import ADE7880Sim
from boards.sim.bus import SimPin, SimSPI
from boards.sim.clock import RealClock


class SimWatchdog:
    """Stand-in for machine.WDT: remembers feeds on the board clock. It does not reset
    the host process; `expired()` tells whether a real one would have (the host run
    reports it)."""

    def __init__(self, clock, timeout_ms):
        if not 1 <= timeout_ms <= 0x7FFFFFFF:
            raise ValueError("watchdog timeout_ms must be >= 1, got %r" % (timeout_ms,))
        self.clock = clock
        self.timeout_ms = timeout_ms
        self.feeds = 0
        self._last = clock.ticks_ms()

    def feed(self):
        self.feeds += 1
        self._last = self.clock.ticks_ms()

    def expired(self):
        return time.ticks_diff(self.clock.ticks_ms(), self._last) > self.timeout_ms


class SimBoard:
    name = "sim"
    # The KSEM measures directly up to 63 A per line (manual 5.15.4); above, external CTs.
    DIRECT_MAX_A = 63
    CALIBRATION = {"v_per_code": 9.395996e-05, "i_per_code": 2.346652e-05,
                   "w_per_code": 1.849616e-02, "wh_per_lsb": 1.262671e-04}

    def __init__(self, scenario, clock=None, run_dir=None):
        self.run_dir = run_dir
        self.clock = clock or RealClock()
        self.chip = ADE7880Sim(self.clock, scenario)
        self.cs = SimPin(1)
        self.spi = SimSPI(self.chip, self.cs)
        # Parts later steps drive: the three LEDs (status, network, bus; 1 = lit),
        # the recessed reset button (active low, idle high) and the flash for littlefs.
        self.leds = {"status": SimPin(0), "network": SimPin(0), "bus": SimPin(0)}
        self.button = SimPin(1)
        # No dedicated supply monitor: the supply failing is seen on the chip's L1 voltage.
        self.power_fail = None
        self.flash = None
        self.wdt = None

    def block_device(self, blocks=64):
        """The flash that holds the filesystem (boards/sim/blockdev.py SimFlash); with a
        run dir backed by RUN_DIR/flash.img, so counters survive a restart of the run."""
        if self.flash is None:
            from boards.sim.blockdev import SimFlash
            path = self.run_dir + "/flash.img" if self.run_dir else None
            self.flash = SimFlash(blocks, path=path)
        return self.flash

    def ade7880(self, **kw):
        from drivers.ade7880 import ADE7880
        return ADE7880(self.spi, self.cs, irq0=self.chip.irq0, **kw)

    def rs485(self, name, baud, parity, stop):
        """RS485 port `name` ("a"/"b"): the firmware end of RUN_DIR/rs485-<name>-dev, a
        socat pty pair made by tools/host_run.py. None without a run dir or pty."""
        if not self.run_dir:
            return None
        from boards.sim.uart import PtyUART
        from drivers.rs485 import RS485
        path = "%s/rs485-%s-dev" % (self.run_dir, name)
        try:
            uart = PtyUART(path)
        except OSError as e:
            print("warning: RS485 %s unavailable: %s" % (name.upper(), e))
            return None
        return RS485(uart, None, baud, parity, stop)   # a pty needs no DE pin

    def watchdog(self, timeout_ms):
        self.wdt = SimWatchdog(self.clock, timeout_ms)
        return self.wdt

    def time_utc(self):
        """UTC seconds from the host's clock (the host is the sim board's RTC)."""
        return int(time.time())       # the unix port's epoch is 1970

    def network(self):
        return None       # the host's own network stack

    def tasks(self):
        return [self.tick]

    def set_scenario(self, scenario):
        self.chip.set_scenario(scenario)

    async def tick(self):
        # The simulated chip is evaluated lazily: wake it at its next window end so
        # IRQ0 falls on time, as the real chip's would, at most 20 ms apart.
        chip = self.chip
        clock = self.clock
        while True:
            chip.advance()
            nxt = chip.next_event_us()
            delay = 20
            if nxt is not None:
                delay = min(20, max(1, (nxt - clock.now_us()) // 1000 + 1))
            await asyncio.sleep_ms(delay)
