"""Staged configuration writes: validated where they arrive, committed by a task.

    from firmware.staging import ConfigStage
    stage = ConfigStage(app, persist, jobs)    # persist: async fn(cfg); jobs: async fn(int)
    supervisor.spawn("config", stage.run)
    code = stage.stage({"modbus": {"rs485_b": {"baud": 9600}}}, ctx)   # in handle()
    code = stage.call(3, ctx)     # jobs(3) in order with the changes (a reset)

A Modbus write handler (running inside Dispatcher.handle, which must not block or
touch flash) calls stage(): the change is validated against the config as it will be
once everything already staged is committed, and either refused at once (exception
code 03, nothing changed) or queued (0); the reply goes out immediately. The commit
task then persists the new config (when a persister is given) and applies it
(App.apply_config: meter, maps, ports; an RTU port's new line settings take effect
after its reply has been sent). The queue is bounded: when it is full the write gets
exception 06 (server device busy) and the master retries later.
"""
import asyncio
from micropython import const

from firmware import config as config_mod
from firmware.events import EV_CONFIG_CHANGED

EXC_ILLEGAL_VALUE = const(0x03)   # Modbus Application Protocol v1.1b3, section 7
_EXC_DEVICE_BUSY = const(0x06)
_DEPTH = const(4)


class ConfigStage:
    depth = _DEPTH

    def __init__(self, app, persist=None, jobs=None, depth=_DEPTH):
        self.app = app
        self.persist = persist
        self.jobs = jobs          # async fn(code) for call(code)
        if depth != _DEPTH:
            self.depth = depth
        self._queue = []          # (change, ctx), at most depth
        self._ahead = None        # the config once the queue is committed (or None)
        self._wake = asyncio.Event()
        self.committed = 0
        self.refused = 0
        self.failed = 0
        self.last_error = None

    def stage(self, change, ctx=None):
        """Queue a partial config; 0, or a Modbus exception code (nothing queued)."""
        if len(self._queue) >= self.depth:
            return _EXC_DEVICE_BUSY
        base = self._ahead if self._ahead is not None else self.app.cfg
        try:
            ahead = config_mod.patch(base, change, self.app.board.CALIBRATION)
        except ValueError as e:
            self.refused += 1
            self.last_error = str(e)
            return EXC_ILLEGAL_VALUE
        self._ahead = ahead
        self._queue.append((change, ctx))
        self._wake.set()
        return 0

    def call(self, job, ctx=None):
        """Queue a job (an int: `jobs(job)` runs it, e.g. persisting the secrets or a
        reset) in order with the config changes; 0, or 06 when the queue is full."""
        if len(self._queue) >= self.depth:
            return _EXC_DEVICE_BUSY
        self._queue.append((job, ctx))
        self._wake.set()
        return 0

    def pending(self):
        return len(self._queue)

    async def run(self):
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                change, ctx = self._queue[0]
                try:
                    if not isinstance(change, dict):
                        await self.jobs(change)   # a job (call())
                        self._queue.pop(0)
                        continue
                    new = config_mod.patch(self.app.cfg, change, self.app.board.CALIBRATION)
                    if self.persist is not None:
                        await self.persist(new)
                    await self.app.apply_config(new)
                    self.committed += 1
                    # arg: who wrote it, 1 tcp, 2 rtu-a, 3 rtu-b (0: none)
                    p = getattr(ctx, "port", None)
                    self.app.events.add(self.app.board.clock.ticks_ms(), EV_CONFIG_CHANGED,
                                        ("tcp", "rtu-a", "rtu-b").index(p) + 1
                                        if p in ("tcp", "rtu-a", "rtu-b") else 0)
                except Exception as e:    # keep the old config; report, never half-apply
                    self.failed += 1
                    self.last_error = str(e)
                self._queue.pop(0)
            if not self._queue:
                self._ahead = None
