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
import os
import time

from boards.sim.ade7880 import ADE7880Sim
from boards.sim.bus import SimPin, SimSPI
from boards.sim.clock import RealClock
from drivers.led import BiLED


RESET_EXIT = 3      # exit status of a host run that restarts itself (reset())
PWRON_RESET = 1     # machine.PWRON_RESET on rp2 and esp32


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
    RESET_CAUSE = PWRON_RESET
    # The KSEM measures directly up to 63 A per line (manual 5.15.4); above, external CTs.
    DIRECT_MAX_A = 63
    # Calibration of this board's analog front end, derived by hand (not imported from
    # frontend.py: the simulator stays an independent truth), exact decimal strings as
    # firmware/config.py requires. Front end: 1 MOhm : 1 kOhm divider, internal 2500:1 CT
    # into 10 Ohm; ADC full scale 0.5 V peak = 0.353553 V rms (ADE7880 datasheet).
    # - full-scale sine on the rms registers: 5,326,737 / sqrt 2 = 3,766,572 codes
    #   (anchors-public-facts.md section 3).
    # - V: 0.353553 V x 1001 = 353.907 V full scale -> 353.907 / 3766572 = 9.395996e-05
    # - I: 0.353553 V / 10 Ohm x 2500 = 88.388 A full scale -> / 3766572 = 2.346652e-05
    # - power registers carry PMAX / 16 = 27,059,678 / 16 at full scale (datasheet
    #   eq. 26): 353.907 x 88.388 / 1691229.9 = 1.849616e-02 W per code
    # - energy: PMAX at 1.024 MHz, one LSB per WTHR x 2**27 (WTHR = 3): 68,816.3 LSB/s
    #   at full scale -> 31281.3 W / 68816.3 / 3600 = 1.262671e-04 Wh per LSB
    #   (varh and VAh the same: VARTHR = VATHR = 3).
    # Gains and PHCAL: nominal parts need no trim (a production unit stores its own).
    CALIBRATION = {
        "v_per_code": "9.395996e-05",
        "i_per_code": "2.346652e-05",
        "w_per_code": "1.849616e-02",
        "wh_per_lsb": "1.262671e-04",
        "gains": [[0, 0, 0], [0, 0, 0], [0, 0, 0]],
        "phcal": [0, 0, 0],
    }

    def __init__(self, scenario, clock=None, run_dir=None):
        self.run_dir = run_dir
        self.clock = clock or RealClock()
        self.chip = ADE7880Sim(self.clock, scenario)
        if run_dir:
            # RUN_DIR/sim_t0: wall time (ns since 1970) of the scenario's time zero, so a
            # script can act at a timeline instant (tests/test_powercut_host.py).
            with open(run_dir + "/sim_t0", "w") as f:
                f.write("%d\n" % time.time_ns())
        self.cs = SimPin(1)
        self.spi = SimSPI(self.chip, self.cs)
        # Three bi-colour LEDs (green pin, red pin; active high), the recessed reset
        # button (active low, idle high; boards/sim/button_ctl.py presses it) and the
        # RS485 5 V output's overload input (0 = overloaded; optional in the contract).
        self.leds = {n: BiLED(SimPin(0, n + "_g"), SimPin(0, n + "_r"))
                     for n in ("status", "network", "bus")}
        self.button = SimPin(1, "button")
        self.bus_overload = SimPin(1, "bus_overload")
        self.resets = 0
        self.exit_on_reset = False
        # No dedicated supply monitor: the supply failing is seen on the chip's L1 voltage.
        self.power_fail = None
        # Records' time acceleration (firmware/records.py run(speed); README "The host
        # run"): env RECORDS_SPEED=N, 1 by default.
        env = getattr(os, "getenv", None)          # the WebAssembly port has none
        self.records_speed = max(1, int((env and env("RECORDS_SPEED")) or 1))
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
        # IRQ0 is raised by the simulator from the board's own tick task, in the loop's
        # thread, so a plain asyncio.Event carries it. A ThreadSafeFlag (what a real
        # board's hard IRQ needs) is not used here: on the unix port (MicroPython 1.28)
        # waiting on one stopped the TCP listener from accepting after a few
        # connections (tests/test_e2e_modbus.py, 50 idle sockets).
        return ADE7880(self.spi, self.cs, irq0=self.chip.irq0, irq_flag=asyncio.Event(),
                       irq1=self.chip.irq1,
                       **kw)

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

    def unique_id(self):
        """What machine.unique_id() is on a board (8 bytes, the flash's id on rp2): one
        fixed id for the sim board; the factory password mixes it with the serial."""
        return b"\x53\x49\x4d\x00\x00\x00\x00\x01"

    def time_utc(self):
        """UTC seconds from the host's clock (the host is the sim board's RTC)."""
        return int(time.time())       # the unix port's epoch is 1970

    def network(self, cfg=None):
        return None       # the host's own network stack

    def reset_cause(self):
        """machine.reset_cause() of the sim board: a host run always starts as from
        power on (a restart after reset() included: the process is new)."""
        return self.RESET_CAUSE

    def reset(self):
        """What machine.reset() is on a board: the host process cannot reboot itself,
        so the request is counted and printed; with exit_on_reset the run ends with
        SystemExit(RESET_EXIT) for a wrapper to start it again."""
        self.resets += 1
        print("RESET requested")
        if self.exit_on_reset:
            raise SystemExit(RESET_EXIT)

    def tasks(self):
        return [self.tick]

    def set_scenario(self, scenario):
        self.chip.set_scenario(scenario)

    async def tick(self):
        # The simulated chip is evaluated lazily: wake it at its next window end or sag
        # so IRQ0 and IRQ1 fall on time, as the real chip's would, at most 20 ms apart.
        chip = self.chip
        clock = self.clock
        while True:
            chip.advance()
            delay = 20
            for nxt in (chip.next_event_us(), chip.next_sag_us()):   # IRQ0, IRQ1
                if nxt is not None:
                    delay = min(delay, max(1, (nxt - clock.now_us()) // 1000 + 1))
            await asyncio.sleep_ms(delay)
