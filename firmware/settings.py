"""The device's settings owner: stored config, password, staged writes, reset commands.

    from firmware.settings import Settings
    s = Settings(app, vfs)            # vfs: the mounted littlefs, or None (nothing kept)
    cfg = s.boot_config(given)        # given (e.g. --config) replaces the stored config
    supervisor.spawn("commit", s.stage.run)   # the commit task (firmware/staging.py)
    s.space                           # the config registers (firmware/regmaps/device.py)

Config: /cfg/c0, /cfg/c1 (firmware/cfgstore.py), the whole validated config as JSON.
At boot a given config (the host run's --config) is validated, stored if it differs
from the stored one and used; without one the stored config is used (a stored config
the firmware no longer accepts is dropped for the defaults, event record_corrupt arg
3), else the defaults. Secrets: /cfg/s0, /cfg/s1 (firmware/access.py's record; "{}"
or absent = the factory password).

Commands (register 0xC030, unlocked callers only; each an event device_reset, arg the
command): 1 restart (board.reset() once the reply is out), 2 network reset (DHCP on,
as the button's short-long), 3 password reset (the factory password, as the button's
long-short), 4 factory reset: the default config, the factory password, counters
zeroed (a new counter record) and the event log emptied, stored at once; the meter
runs on with them (no restart needed).
"""
import asyncio
import json
from micropython import const

from firmware import config as config_mod
from firmware.access import Access, factory_password
from firmware.cfgstore import Slots
from firmware.events import EV_RECORD_CORRUPT, EV_DEVICE_RESET
from firmware.regmaps.device import DeviceSpace
from firmware.staging import ConfigStage

# Commands (register 0xC030, firmware/regmaps/device.py) and job codes of the stage.
_SAVE_SECRETS = const(0)   # persist the secrets record
_CMD_RESTART = const(1)
_CMD_NETWORK_RESET = const(2)
_CMD_PASSWORD_RESET = const(3)
_CMD_FACTORY_RESET = const(4)
_RESTART_DELAY_MS = 200    # the reply to the restart command goes out first


def _factory(board, cfg):
    """The factory password: the serial and the board's unique id."""
    return factory_password(cfg["identity"]["serial"],
                            board.unique_id() if hasattr(board, "unique_id") else b"")


class Settings:
    def __init__(self, app, vfs, **timing):     # unlock_ms, lock_base_ms (tests)
        self.app = app
        self.cfgs = Slots(vfs, "/cfg/c") if vfs is not None else None
        self.secs = Slots(vfs, "/cfg/s") if vfs is not None else None
        self.stage = ConfigStage(app, self._persist, self._job)
        self.access = Access(app.board.clock, app.events, "", **timing)
        self.space = DeviceSpace(self)
        self.note = ""            # how the config was chosen (the host run prints it)

    def boot_config(self, given=None):
        board = self.app.board
        stored = None
        data = self.cfgs.load() if self.cfgs is not None else None
        if data is not None:
            try:
                stored = config_mod.validate(json.loads(data), board.CALIBRATION)
            except ValueError as e:
                self.app.events.add(board.clock.ticks_ms(), EV_RECORD_CORRUPT, 3)
                self.note = "stored config dropped (%s)" % e
        if given is not None:
            cfg = config_mod.validate(given, board.CALIBRATION)
            if self.cfgs is not None and cfg != stored:
                self.cfgs.save(json.dumps(cfg).encode())
                self.note = "given config stored, replacing the stored one"
            elif self.cfgs is not None:
                self.note = "given config equals the stored one"
        elif stored is not None:
            cfg = stored
            self.note = "stored config used"
        else:
            cfg = config_mod.validate(None, board.CALIBRATION)
            self.note = self.note or "defaults"
        self.access.factory = _factory(board, cfg)
        if self.secs is not None:
            try:
                self.access.load(self.secs.load())
            except (ValueError, KeyError):
                self.app.events.add(board.clock.ticks_ms(), EV_RECORD_CORRUPT, 4)
        return cfg

    def command(self, code, ctx=None):
        """A command register write: 0, 03 (no such command) or 06 (queue full)."""
        if not _CMD_RESTART <= code <= _CMD_FACTORY_RESET:
            return 3
        r = self.stage.call(code, ctx)
        if r == 0:
            self.app.events.add(self.app.board.clock.ticks_ms(), EV_DEVICE_RESET, code)
        return r

    # ---- the button (app.password_reset / app.network_reset) ----
    def password_reset(self):
        self.access.reset()
        self.stage.call(_SAVE_SECRETS)

    def network_reset(self):
        self.stage.stage({"network": {"dhcp": True}})

    # ---- the commit task (firmware/staging.py) ----
    async def _persist(self, cfg):
        if self.cfgs is not None:
            self.cfgs.save(json.dumps(cfg).encode())

    async def _job(self, code):
        app = self.app
        if code == _SAVE_SECRETS:
            if self.secs is not None:
                self.secs.save(self.access.dump())
        elif code == _CMD_RESTART:
            await asyncio.sleep_ms(_RESTART_DELAY_MS)
            app.board.reset()
        elif code == _CMD_NETWORK_RESET:
            self.network_reset()
        elif code == _CMD_PASSWORD_RESET:
            self.password_reset()
        elif code == _CMD_FACTORY_RESET:
            cfg = config_mod.validate(None, app.board.CALIBRATION)
            await self._persist(cfg)
            await app.apply_config(cfg)
            self.access.reset()
            self.access.factory = _factory(app.board, cfg)
            if self.secs is not None:
                self.secs.clear()
            e = app.meter.energy
            for i in range(len(e.hi)):
                e.restore(i, 0)
            if app.store is not None:
                app.store.persist()      # a newer record of zeros wins at the next boot
            clear = getattr(app.events, "clear", None)
            if clear is not None:
                clear()
