"""Boot the firmware on a board: build the meter and its tasks.

    from firmware.app import App
    app = App(board, cfg)          # cfg validated by firmware.config
    tasks = app.start()            # inside a running asyncio loop

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
        self.cfg = config_mod.validate(cfg)
        self.events = EventLog(32)
        self.chip = board.ade7880()
        self.meter = Meter(self.chip, self.cfg, board.clock, self.events)

    def start(self):
        self.meter.start()
        tasks = [asyncio.create_task(self.meter.run())]
        tick = getattr(self.board, "tick", None)
        if tick:
            tasks.append(asyncio.create_task(tick()))
        return tasks
