"""Boot the firmware on a board: build the meter and its tasks.

    from firmware.app import App
    app = App(board, cfg)          # cfg validated by firmware.config
    await app.start(tcp_port=502)  # metering, chip tick, Modbus RTU A/B and TCP

The board supplies parts (board.ade7880(), board.clock and an optional board.tick()
task for simulated parts); the app owns everything board-independent. Later steps add
Modbus ports, LEDs, button and persistence here.
"""
import asyncio

from firmware import config as config_mod
from firmware.events import EventLog
from firmware.metering import Meter


class App:
    def __init__(self, board, cfg=None):
        self.board = board
        self.cfg = config_mod.validate(cfg, board.CALIBRATION)
        self.events = EventLog(32)
        self.chip = board.ade7880()
        self.meter = Meter(self.chip, self.cfg, board.clock, self.events)

    async def start(self, tcp_host="0.0.0.0", tcp_port=None, modbus=True):
        self.meter.start()
        self.tasks = [asyncio.create_task(self.meter.run())]
        tick = getattr(self.board, "tick", None)
        if tick:
            self.tasks.append(asyncio.create_task(tick()))
        if modbus:
            from firmware.ports import ModbusPorts
            self.ports = ModbusPorts(self.meter, self.cfg, self.board)
            await self.ports.start(tcp_host, tcp_port)
