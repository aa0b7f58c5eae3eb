"""The sim board: the MicroPython unix port with simulated parts.

    from boards.sim.board import SimBoard
    board = SimBoard(scenario)                 # RealClock; SimBoard(scn, clock=VirtualClock())
    chip = board.ade7880()                     # drivers.ade7880.ADE7880 on the simulated SPI
    asyncio.create_task(board.tick())          # keeps the simulated chip's IRQs on time

Like a real board module it is the only place that knows how parts are wired: the
ADE7880 (here ADE7880Sim) on SPI with CS and IRQ0, the clock, and later the RS485 UARTs
(pty pairs), LEDs, button and the littlefs block device.
"""
import asyncio

from boards.sim.ade7880 import ADE7880Sim
from boards.sim.bus import SimPin, SimSPI
from boards.sim.clock import RealClock


class SimBoard:
    name = "sim"

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
        self.flash = None

    def block_device(self, blocks=64):
        """The flash that holds the filesystem (boards/sim/blockdev.py SimFlash)."""
        if self.flash is None:
            from boards.sim.blockdev import SimFlash
            self.flash = SimFlash(blocks)
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
