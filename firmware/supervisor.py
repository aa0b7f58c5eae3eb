"""Supervision of the firmware's long-running tasks, and the watchdog feeder.

    from firmware.supervisor import Supervisor, WatchdogFeeder
    sup = Supervisor(clock, events)
    sup.spawn("metering", meter.run)            # a coroutine *function*: called anew each start
    sup.spawn("watchdog", WatchdogFeeder(meter, board.watchdog(8000), clock, events).run)
    sup.crashes("metering"); sup.cancel_all()

Every long-running task (metering, each Modbus port, later persistence, LEDs, records)
runs under the supervisor. A task that raises is logged as an event (EV_TASK_CRASH, its
argument the task's index in spawn order), its exception printed to the console, and it
is started again after a back-off that doubles from 100 ms up to 5 s and resets once the
task has run for a minute. A task that returns is restarted the same way (they are
meant to run for ever). Cancellation (shutdown) is passed through.

While the metering task is down the meter publishes nothing: readers compute staleness
from the front snapshot's age (Meter.status_now()), so frozen values are never served
as fresh; the watchdog feeder stops feeding once snapshots stop advancing, so a hung
loop resets the board (machine.WDT) instead of serving frozen values for ever.
"""
import asyncio
import sys
from time import ticks_diff
from micropython import const

# Mirrors of the names this module uses from others (tests/test_mirrors.py checks
# they are equal): a private const is inlined and takes no global slot, an
# imported name is a global of this module.
# firmware/events.py
_EV_TASK_CRASH = const(7)
_EV_WATCHDOG = const(8)

_BACKOFF_MIN_MS = const(100)
_BACKOFF_MAX_MS = const(5000)
_HEALTHY_MS = const(60000)     # a task that ran this long starts its back-off afresh


class _Job:
    __slots__ = ("name", "index", "factory", "task", "crashes", "backoff")

    def __init__(self, name, index, factory):
        self.name = name
        self.index = index
        self.factory = factory
        self.task = None
        self.crashes = 0
        self.backoff = _BACKOFF_MIN_MS


class Supervisor:
    def __init__(self, clock, events, on_crash=None):
        self.clock = clock
        self.events = events
        self.on_crash = on_crash      # fn(name, exc) for the LEDs / tests (optional)
        self._jobs = []

    def spawn(self, name, factory):
        """Run factory() (a coroutine function, no arguments) for ever under supervision."""
        for j in self._jobs:
            if j.name == name:
                raise ValueError("task %r is already supervised" % (name,))
        job = _Job(name, len(self._jobs), factory)
        self._jobs.append(job)
        job.task = asyncio.create_task(self._keep(job))
        return job.task

    def names(self):
        return [j.name for j in self._jobs]

    def crashes(self, name):
        return self._job(name).crashes

    def _job(self, name):
        for j in self._jobs:
            if j.name == name:
                return j
        raise KeyError(name)

    async def _keep(self, job):
        clock = self.clock
        while True:
            t0 = clock.ticks_ms()
            try:
                await job.factory()
                exc = None
            except asyncio.CancelledError:
                raise
            except Exception as e:        # noqa: any fault of the task, not of ours
                exc = e
            job.crashes += 1
            self.events.add(clock.ticks_ms(), _EV_TASK_CRASH, job.index)
            if exc is not None:
                print("task %s crashed:" % job.name)
                try:
                    sys.print_exception(exc)
                except AttributeError:    # CPython running the module in a tool
                    print(repr(exc))
            else:
                print("task %s ended; restarting" % job.name)
            if self.on_crash is not None:
                self.on_crash(job.name, exc)
            if ticks_diff(clock.ticks_ms(), t0) >= _HEALTHY_MS:
                job.backoff = _BACKOFF_MIN_MS
            await asyncio.sleep_ms(job.backoff)
            job.backoff = min(job.backoff * 2, _BACKOFF_MAX_MS)

    def cancel_all(self):
        for j in self._jobs:
            if j.task is not None:
                try:
                    j.task.cancel()
                except RuntimeError:  # the running task itself (a stop from inside it)
                    pass
                j.task = None


class WatchdogFeeder:
    """Feeds the board's watchdog only while the meter's snapshots advance.

    The engine publishes a snapshot every cycle, and a stale one at each time-out when
    the chip gives no window, so `seq` advances whenever the metering loop is alive,
    with or without mains. If it stops advancing for stall_ms the feeder stops feeding
    (the watchdog then resets the board) and logs _EV_WATCHDOG once."""

    def __init__(self, meter, wdt, clock, events, stall_ms=3000, period_ms=500):
        if not 0 < period_ms < stall_ms:
            raise ValueError("watchdog: need 0 < period_ms < stall_ms, got %r, %r"
                             % (period_ms, stall_ms))
        self.meter = meter
        self.wdt = wdt
        self.clock = clock
        self.events = events
        self.stall_ms = stall_ms
        self.period_ms = period_ms
        self.stalled = False
        self.fed = 0
        self._seq = meter.front.seq
        self._since = clock.ticks_ms()      # when _seq was last seen to change

    def check(self):
        """True while the watchdog may be fed: a new snapshot within stall_ms."""
        now = self.clock.ticks_ms()
        seq = self.meter.front.seq
        if seq != self._seq:
            self._seq = seq
            self._since = now
            return True
        return ticks_diff(now, self._since) < self.stall_ms

    async def run(self):
        while True:
            if self.check():
                self.wdt.feed()
                self.fed += 1
                self.stalled = False
            elif not self.stalled:
                self.stalled = True
                self.events.add(self.clock.ticks_ms(), _EV_WATCHDOG, 0)
            await asyncio.sleep_ms(self.period_ms)
