"""Boot the firmware on a board: build the meter and run its tasks under supervision.

    from firmware.app import App
    app = App(board, cfg)          # board: see boards/contract.py; cfg merged and validated
    await app.start(tcp_port=502)  # metering, board tasks, watchdog, Modbus RTU A/B and TCP
    await app.apply_config(new)    # validated, then applied to the meter and the ports
    app.stop()

The board supplies the parts (boards/contract.py); the app owns everything
board-independent. Every long-running task runs under firmware/supervisor.py: a crash
is logged and the task restarted with back-off, and while the meter is down its
snapshots age, so readers see it stale (Meter.status_now()). The board's watchdog is
fed only while snapshots advance. Two more tasks run the device's face: "leds"
(firmware/leds.py Indicators, app.indicators.names() for a host's display) and
"button" (firmware/button.py; restart calls board.reset(), the password and network
resets are logged, confirmed by two blinks and handed to app.password_reset /
app.network_reset when the config owner sets them).
"""
from firmware import config as config_mod
from firmware.events import EventLog
from firmware.metering import Meter
from firmware.supervisor import Supervisor, WatchdogFeeder
from firmware.button import Button, A_RESTART, A_PASSWORD, A_NETWORK
from firmware.events import EV_BUTTON_RESTART, EV_BUTTON_PASSWORD, EV_BUTTON_NETWORK
from firmware.leds import Indicators, BOOT_METERING, BOOT_PORTS, BOOT_DONE

WATCHDOG_MS = 8000      # machine.WDT timeout: rp2 allows up to 8388 ms
STALL_MS = 3000         # snapshots frozen this long: stop feeding (six 500 ms cycles)


class App:
    def __init__(self, board, cfg=None):
        self.board = board
        self.cfg = config_mod.validate(cfg, board.CALIBRATION)
        self.events = EventLog(32)
        self.chip = board.ade7880()
        self.meter = Meter(self.chip, self.cfg, board.clock, self.events)
        self.supervisor = Supervisor(board.clock, self.events)
        self.ports = None
        self.feeder = None
        self._init_device()

    async def start(self, tcp_host="0.0.0.0", tcp_port=None, modbus=True, watchdog=True):
        sup = self.supervisor
        self.meter.start()
        self.indicators.boot(BOOT_METERING, self.board.clock.ticks_ms())
        sup.spawn("metering", self.meter.run)
        for i, task in enumerate(self.board.tasks()):
            sup.spawn("board%d" % i, task)
        if watchdog:
            wdt = self.board.watchdog(WATCHDOG_MS)
            self.feeder = WatchdogFeeder(self.meter, wdt, self.board.clock, self.events,
                                         stall_ms=STALL_MS)
            sup.spawn("watchdog", self.feeder.run)
        if modbus:
            from firmware.ports import ModbusPorts
            self.ports = ModbusPorts(self.meter, self.cfg, self.board)
            self.indicators.boot(BOOT_PORTS, self.board.clock.ticks_ms())
            await self.ports.start(tcp_host, tcp_port, sup)
        self._start_device(sup)

    async def apply_config(self, cfg):
        """Validate cfg and apply it to the meter and the ports. ConfigError (nothing
        changed) when a value is refused. Persisting comes before this (staging)."""
        new = config_mod.validate(cfg, self.board.CALIBRATION)
        self.meter.apply_config(new)
        if self.ports is not None:
            await self.ports.apply_config(new)
        self.cfg = new
        return new

    def stop(self):
        self.supervisor.cancel_all()
        if self.ports is not None:
            self.ports.close()

    # ---- device behaviour: LEDs and the reset button (issue 10, items 2-3) ----
    # password_reset / network_reset: set by the config owner (fn() -> None); the
    # button's sequences are logged and confirmed by two blinks either way.
    password_reset = None
    network_reset = None

    def _init_device(self):
        leds = self.board.leds
        self.indicators = Indicators((leds["status"], leds["network"], leds["bus"]),
                                     self.board.clock.ticks_ms())
        self.button = Button()

    def _start_device(self, sup):
        clock = self.board.clock
        self.indicators.bind(meter=self.meter, events=self.events, ports=self.ports,
                             feeder=self.feeder,
                             overload_pin=getattr(self.board, "bus_overload", None))
        self.indicators.boot(BOOT_DONE, clock.ticks_ms())
        sup.spawn("leds", lambda: self.indicators.run(clock))
        sup.spawn("button", lambda: self.button.run(self.board.button, clock,
                                                    self.button_action))

    def button_action(self, code):
        now = self.board.clock.ticks_ms()
        if code == A_RESTART:
            self.events.add(now, EV_BUTTON_RESTART)
            self.board.reset()
            return
        if code == A_PASSWORD:
            self.events.add(now, EV_BUTTON_PASSWORD)
            fn = self.password_reset
        elif code == A_NETWORK:
            self.events.add(now, EV_BUTTON_NETWORK)
            fn = self.network_reset
        else:
            return
        self.indicators.confirm(now)
        if fn is not None:
            fn()
