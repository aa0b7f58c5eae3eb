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
fed only while snapshots advance.
"""
from firmware import config as config_mod
from firmware.events import EventLog
from firmware.metering import Meter
from firmware.supervisor import Supervisor, WatchdogFeeder

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

    async def start(self, tcp_host="0.0.0.0", tcp_port=None, modbus=True, watchdog=True):
        sup = self.supervisor
        self.meter.start()
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
            await self.ports.start(tcp_host, tcp_port, sup)

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
