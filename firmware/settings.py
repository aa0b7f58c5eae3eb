"""The device's settings owner: stored config, password, staged writes, reset commands.

    from firmware.settings import Settings
    s = Settings(app, vfs)            # vfs: the mounted littlefs, or None (nothing kept)
    cfg = s.boot_config(given)        # given (e.g. --config) replaces the stored config
    s.start(supervisor)               # the commit task (firmware/staging.py)
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

from firmware import config as config_mod
from firmware.access import Access, factory_password, UNLOCK_MS, LOCK_BASE_MS
from firmware.cfgstore import Slots
from firmware.events import EV_RECORD_CORRUPT, EV_DEVICE_RESET
from firmware.regmaps.device import DeviceSpace
from firmware.regmaps.devtable import (CMD_RESTART, CMD_NETWORK_RESET, CMD_PASSWORD_RESET,
                                       CMD_FACTORY_RESET)
from firmware.staging import ConfigStage, EXC_DEVICE_BUSY, EXC_ILLEGAL_VALUE

_RESTART_DELAY_MS = 200    # the reply to the restart command goes out first


class Settings:
    def __init__(self, app, vfs, unlock_ms=UNLOCK_MS, lock_base_ms=LOCK_BASE_MS):
        self.app = app
        self.cfgs = Slots(vfs, "/cfg/c") if vfs is not None else None
        self.secs = Slots(vfs, "/cfg/s") if vfs is not None else None
        self.stage = ConfigStage(app, self._persist)
        self.access = None
        self._unlock_ms = unlock_ms
        self._lock_base_ms = lock_base_ms
        self.space = DeviceSpace(self)
        self.note = ""            # how the config was chosen (the host run prints it)

    def _event(self, code, arg=0):
        self.app.events.add(self.app.board.clock.ticks_ms(), code, arg)

    # ---- boot ----
    def boot_config(self, given=None):
        board = self.app.board
        stored = None
        data = self.cfgs.load() if self.cfgs is not None else None
        if data is not None:
            try:
                stored = config_mod.validate(json.loads(data), board.CALIBRATION)
            except ValueError as e:
                self._event(EV_RECORD_CORRUPT, 3)
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
        self.access = Access(board.clock, self.app.events, self._factory(cfg),
                             unlock_ms=self._unlock_ms, lock_base_ms=self._lock_base_ms)
        if self.secs is not None:
            try:
                self.access.load(self.secs.load())
            except (ValueError, KeyError):
                self._event(EV_RECORD_CORRUPT, 4)    # factory password holds
        return cfg

    def _factory(self, cfg):
        """The factory password: the serial (at boot) and the board's unique id."""
        b = self.app.board
        return factory_password(cfg["identity"]["serial"],
                                b.unique_id() if hasattr(b, "unique_id") else b"")

    def start(self, supervisor):
        supervisor.spawn("commit", self.stage.run)

    # ---- what the space asks ----
    def config(self):
        return self.stage.current()

    def status(self, name):
        a, st = self.access, self.stage
        if name == "lockout_s":
            return (a.lock_left_ms() + 999) // 1000
        if name == "failures":
            return a.fails
        if name == "unlock_s":
            return a.unlock_ms // 1000
        if name == "pending":
            return st.pending()
        return (st.committed if name == "committed" else st.refused) & 0xFFFF

    def change_password(self, old, new):
        if self.stage.full():
            return EXC_DEVICE_BUSY
        code = self.access.change(old, new)
        if code == 0:
            self.stage.call(self._save_secrets)
        return code

    def command(self, code, ctx=None):
        if code == CMD_RESTART:
            job = self._restart
        elif code == CMD_NETWORK_RESET:
            job = self._network_reset
        elif code == CMD_PASSWORD_RESET:
            job = self._password_reset
        elif code == CMD_FACTORY_RESET:
            job = self._factory_reset
        else:
            return EXC_ILLEGAL_VALUE
        r = self.stage.call(job, ctx)
        if r == 0:
            self._event(EV_DEVICE_RESET, code)
        return r

    # ---- the button (app.password_reset / app.network_reset) ----
    def password_reset(self):
        self.access.reset()
        self.stage.call(self._save_secrets)

    def network_reset(self):
        self.stage.stage({"network": {"dhcp": True}})

    # ---- jobs (the commit task) ----
    async def _persist(self, cfg):
        if self.cfgs is not None:
            self.cfgs.save(json.dumps(cfg).encode())

    async def _save_secrets(self):
        if self.secs is not None:
            self.secs.save(self.access.dump())

    async def _restart(self):
        await asyncio.sleep_ms(_RESTART_DELAY_MS)
        self.app.board.reset()

    async def _network_reset(self):
        self.network_reset()

    async def _password_reset(self):
        self.password_reset()

    async def _factory_reset(self):
        app = self.app
        cfg = config_mod.validate(None, app.board.CALIBRATION)
        await self._persist(cfg)
        await app.apply_config(cfg)
        self.access.reset()
        self.access.factory = self._factory(cfg)
        if self.secs is not None:
            self.secs.clear()
        e = app.meter.energy
        for i in range(len(e.hi)):
            e.restore(i, 0)
        if app.store is not None:
            app.store.persist()           # a newer record of zeros wins at the next boot
        clear = getattr(app.events, "clear", None)
        if clear is not None:
            clear()
