"""Boot the firmware on a board: build the meter and run its tasks under supervision.

    from firmware.app import App
    app = App(board, cfg)          # board: see boards/contract.py; cfg merged and validated
    await app.start(tcp_port=502)  # metering, board tasks, watchdog, Modbus RTU A/B and TCP
    await app.apply_config(new)    # validated, then applied to the meter and the ports
    app.stop()                     # cancels the tasks, writes a last counter record

The board supplies the parts (boards/contract.py); the app owns everything
board-independent. Every long-running task runs under firmware/supervisor.py: a crash
is logged and the task restarted with back-off, and while the meter is down its
snapshots age, so readers see it stale (Meter.status_now()). The board's watchdog is
fed only while snapshots advance. Two more tasks run the device's face: "leds"
(firmware/leds.py Indicators, app.indicators.names() for a host's display) and
"button" (firmware/button.py; restart calls board.reset(), the password and network
resets are logged, confirmed by two blinks and handed to app.password_reset /
app.network_reset: firmware/cfgstore.py).

Boot order: storage (littlefs on the board's flash, formatting a blank one), config (the
stored one, or `cfg` when given, which then replaces it: firmware/cfgstore.py, with the
device password), chip, metering (the newest counter record loaded before the first
cycle: firmware/persist.py), then in start() the ports (the config registers
0xC000..0xC3FF among them) and the tasks: persist, supply-failure watcher, config
commits. stop() writes a last counter record. unlock_ms / lock_base_ms shorten the
unlock time and the lockout (tests).
"""
from micropython import const

from firmware import config as config_mod
from firmware.events import EventLog
from firmware.metering import Meter
from firmware.supervisor import Supervisor, WatchdogFeeder
from firmware.button import Button
from firmware.leds import Indicators
from firmware.cfgstore import Settings

# Mirrors of the names this module uses from others (tests/test_mirrors.py checks
# they are equal): a private const is inlined and takes no global slot, an
# imported name is a global of this module.
# firmware/events.py
_EV_BUTTON_RESTART = const(11)
_EV_BUTTON_PASSWORD = const(12)
_EV_BUTTON_NETWORK = const(13)
# firmware/button.py
_A_RESTART = const(1)
_A_PASSWORD = const(2)
_A_NETWORK = const(3)
# firmware/leds.py
_BOOT_METERING = const(3)
_BOOT_PORTS = const(4)
_BOOT_DONE = const(5)

_WATCHDOG_MS = const(8000)   # machine.WDT timeout: rp2 allows up to 8388 ms
_STALL_MS = const(3000)      # snapshots frozen this long: stop feeding (six 500 ms cycles)


class App:
    def __init__(self, board, cfg=None, unlock_ms=None, lock_base_ms=None):
        # Boot order (issue 10, item 5): storage, config, chip, metering; ports in start().
        self.board = board
        self.events = EventLog(32)
        vfs = self._mount()
        self.evlog = self._open_evlog(vfs)
        kw = {}
        if unlock_ms:
            kw["unlock_ms"] = unlock_ms
        if lock_base_ms:
            kw["lock_base_ms"] = lock_base_ms
        self.settings = Settings(self, vfs, **kw)
        self.cfg = self.settings.boot_config(cfg)
        self.chip = board.ade7880()
        self.meter = Meter(self.chip, self.cfg, board.clock, self.events)
        self.supervisor = Supervisor(board.clock, self.events)
        self.ports = None
        self.push = None
        self.feeder = None
        self.mqtt = None
        self._sup = None
        # The device's face (issue 10, items 2-3): LEDs and the reset button.
        leds = board.leds
        self.indicators = Indicators((leds["status"], leds["network"], leds["bus"]),
                                     board.clock.ticks_ms())
        self.button = Button()
        self.store = self._open_store(vfs)
        # Records (issue 12) only when config records.enabled (read at boot): with them
        # the 32-bit heap is over its budget (README, Benchmarks).
        self.rectime = self.records = None
        if self.cfg["records"]["enabled"]:
            self.rectime = self._open_rectime(vfs)
            # One wall clock (firmware/walltime.py: RTC, SNTP, Modbus) stamps the
            # records and the event log.
            if self.evlog is not None:
                self.evlog.time_utc = self.rectime.wall.utc
            self.records = self._open_records(vfs)
        self.powerfail = self._power_fail_watch() if self.store is not None else None

    async def start(self, tcp_host="0.0.0.0", tcp_port=None, modbus=True, watchdog=True):
        sup = self.supervisor
        self._start_network(sup)
        self.meter.start()
        self.indicators.boot(_BOOT_METERING, self.board.clock.ticks_ms())
        sup.spawn("metering", self.meter.run)
        for i, task in enumerate(self.board.tasks()):
            sup.spawn("board%d" % i, task)
        if watchdog:
            wdt = self.board.watchdog(_WATCHDOG_MS)
            self.feeder = WatchdogFeeder(self.meter, wdt, self.board.clock, self.events,
                                         stall_ms=_STALL_MS)
            sup.spawn("watchdog", self.feeder.run)
        self._sup = sup
        self._apply_mqtt(self.cfg)       # before the ports: its status registers
        if modbus:
            from firmware.ports import ModbusPorts
            # Modbus master push (issue 13; firmware/pushmb.py): built before the
            # ports, which take it, and configured and started once they run.
            from firmware.pushmb import Pusher
            self.push = Pusher(self.meter, None, self.events, self.board.clock)
            self.ports = ModbusPorts(self.meter, self.cfg, self.board,
                                     device=self.settings, push=self.push)
            self.indicators.boot(_BOOT_PORTS, self.board.clock.ticks_ms())
            await self.ports.start(tcp_host, tcp_port, sup)
            self.push.ports = self.ports
            self.push.configure(self.cfg)
            sup.spawn("push", self.push.run)
        self._start_device(sup)
        sup.spawn("commit", self.settings.stage.run)
        if self.store is not None:
            self.store.arm()           # erases now, while the supply is good
            sup.spawn("persist", self.store.run)
            sup.spawn("powerfail", self.powerfail.run)
            sup.spawn("evlog", self.evlog.run)
        if self.rectime is not None:
            self._start_records(sup)

    async def apply_config(self, cfg):
        """Validate cfg and apply it to the meter and the ports. ConfigError (nothing
        changed) when a value is refused. Persisting comes before this (staging)."""
        new = config_mod.validate(cfg, self.board.CALIBRATION)
        if self.ports is not None:
            from firmware.ports import check_maps
            try:
                check_maps(new, self.board)   # refuse before anything is applied
            except ValueError as e:
                raise config_mod.ConfigError("modbus: %s" % e)
        self.meter.apply_config(new)
        self._apply_mqtt(new)
        if self.records is not None:
            self.records.apply_config(new)
        if self.store is not None:
            self.store.persist_s = new["storage"]["persist_s"]
        if self.ports is not None:
            await self.ports.apply_config(new)
            if self.push is not None:
                self.push.configure(new)
        if self.rectime is not None:
            self.rectime.configure(new)
        self.cfg = new
        return new

    def stop(self):
        if self.store is not None:
            self.store.close()    # clean stop: a last record, before anything else
            self.evlog.flush()    # then the events not yet on flash
        if self.rectime is not None:
            self.rectime.save()
        self.supervisor.cancel_all()
        if self.ports is not None:
            self.ports.close()
        if self.push is not None:
            self.push.close()

    # ---- storage: one littlefs for the config, the secrets and the counters ----
    def _mount(self):
        """The filesystem for config, counters and the event log. A board whose _boot.py
        already mounted littlefs at "/" hands it over (board.filesystem(): RootFs): a
        second VfsLfs2 on the same flash would corrupt the first. Otherwise littlefs on
        board.block_device() (the sim board), formatted when blank."""
        fs = getattr(self.board, "filesystem", None)
        if fs is not None:
            vfs = fs()
            if vfs is not None:
                return vfs
        import os
        if not hasattr(os, "VfsLfs2"):   # a port built without littlefs
            print("warning: no littlefs (os.VfsLfs2): config and counters are not persisted")
            return None
        bdev = self.board.block_device()
        try:
            vfs = os.VfsLfs2(bdev)
        except OSError:            # blank (or unreadable) flash: a new filesystem
            os.VfsLfs2.mkfs(bdev)
            vfs = os.VfsLfs2(bdev)
        return vfs

    def _open_evlog(self, vfs):
        """The boot event (with the board's reset cause), then the event log on flash
        (firmware/eventstore.py), loaded before anything else logs at boot so the new
        events are numbered after the ones on flash."""
        from firmware.events import EV_BOOT
        self.events.add(self.board.clock.ticks_ms(), EV_BOOT, self.board.reset_cause())
        if vfs is None:
            return None
        from firmware.eventstore import EventStore
        evlog = EventStore(vfs, self.events, self.board.clock, self.board.time_utc)
        evlog.load()
        return evlog

    # ---- counters across power cuts ----
    def _open_store(self, vfs):
        from firmware.persist import CounterStore
        if vfs is None:
            return None
        store = CounterStore(vfs, self.meter.energy, self.events, self.board.clock,
                             persist_s=self.cfg["storage"]["persist_s"])
        store.restore()
        return store

    def _power_fail_watch(self):
        """The supply watcher (firmware/powerfail.py): the board's power-fail input, or
        else the ADE7880's sag detection on L1 (IRQ1), with the published snapshots' L1
        voltage as a backup."""
        from firmware import powerfail as pf
        pin = self.board.power_fail
        if pin is not None:
            return pf.PowerFail(pf.PinLow(pin), self._supply_failed, self.store.supply_ok,
                                need=1)
        backup = pf.L1Collapse(self.meter)
        if getattr(self.chip, "irq1", None) is None:
            return pf.PowerFail(backup, self._supply_failed, self.store.supply_ok, need=2)
        # SAGLVL for half of 230 V: it compares the absolute instantaneous voltage, a
        # full-scale peak being 5,928,256 (ADE7880 datasheet Rev. A, "Sag Level Set"),
        # and the same full-scale sine reads 3,766,572 on xVRMS (anchors-public-facts.md
        # section 3), so code = V rms / (V per xVRMS code) x 5928256 / 3766572. SAGCYC
        # 2 half cycles: 20 ms at 50 Hz, half of the 40 ms hold-up budget (README).
        # ZXTOUT 256 x 62.5 us = 16 ms without an L1 zero crossing (datasheet "Zero-
        # Crossing Timeout"): longer than a half cycle down to 45 Hz (11.1 ms), so L1
        # gone is seen 6-16 ms after the cut, and a dead L2/L3 does not raise it.
        num, den = config_mod.rational(self.cfg, "v_per_code")
        mv = pf.NOMINAL_MV * pf.COLLAPSE_PCT // 100
        self.chip.set_sag(min(0xFFFFFF, mv * den * 5928256 // (1000 * num * 3766572)), 2,
                          256)
        return pf.PowerFail(self.chip.sag_l1, self._supply_failed, self.store.supply_ok,
                            need=1, backup=backup)

    def _supply_failed(self):
        self.store.supply_failed()       # the counters first: they must make it
        # Then the pending events, if the hold-up lasts (a flush rewrites the log's
        # block: it may not finish; littlefs then keeps the log as it was).
        if self.evlog is not None:
            self.evlog.flush()

    # ---- MQTT with Home Assistant discovery (issue 13, item 2: firmware/mqtt.py) ----
    def _apply_mqtt(self, cfg):
        """Built and started the first time it is enabled (none of it on the heap
        before); afterwards it follows the config (reconnects; off: disconnects)."""
        if self.mqtt is not None:
            self.mqtt.apply_config(cfg)
        elif cfg["mqtt"]["enabled"] and self._sup is not None:
            try:
                from firmware.mqtt import Mqtt
                m = Mqtt(self.meter, cfg, self.board.clock, self.events)
            except ImportError:    # no umqtt.simple in /lib: the meter runs on without
                print("warning: mqtt enabled, umqtt.simple missing (mpremote mip install "
                      "umqtt.simple)")
                return
            self.mqtt = m
            self._sup.spawn("mqtt", self.mqtt.run)
            self._sup.spawn("mqtt_q", self.mqtt.sample)
    # ---- load curve, KSEM log, CT checks (issue 12, items 2, 3, 7) ----
    def _open_records(self, vfs):
        """firmware/records.py on the same littlefs, stamped by the wall clock
        (firmware/walltime.py). The register space (0xCC00..) finds it as
        meter.records."""
        if vfs is None:
            return None
        from firmware.records import Records
        rec = Records(vfs, self.meter, self.events, self.board.clock, self.rectime.wall.utc,
                      self.cfg)
        rec.load()
        self.meter.records = rec
        return rec

    def _start_records(self, sup):
        """The record tasks: load curve and KSEM log, then clock and tariffs."""
        if self.records is not None:
            # records_speed: the host run's time acceleration (README "The host run")
            speed = getattr(self.board, "records_speed", 1)
            sup.spawn("records", lambda: self.records.run(speed))
        sup.spawn("rtime", self.rectime.run)
        sup.spawn("sntp", self.rectime.sntp)
    # ---- clock, tariff indexes, demand, loss correction (issue 12: firmware/rtime.py) ----
    def _open_rectime(self, vfs):
        """After the counters' restore (the record reconciles with them); its register
        space (0xC800..) hangs on the settings owner, which ports.py routes."""
        from firmware.rtime import RecTime
        from firmware.regmaps.records import RecordsSpace
        rt = RecTime(self.meter.energy, self.events, self.board, vfs,
                     self.cfg["storage"]["persist_s"])
        rt.configure(self.cfg)
        self.settings.records_space = RecordsSpace(rt, self.settings)
        return rt

    # ---- device behaviour: LEDs and the reset button (issue 10, items 2-3) ----
    # The button's sequences are logged and confirmed by two blinks, then handed to the
    # settings owner (firmware/cfgstore.py), as the reset commands over Modbus are.
    def password_reset(self):
        self.settings.password_reset()

    def network_reset(self):
        self.settings.network_reset()

    def _start_device(self, sup):
        clock = self.board.clock
        self.indicators.bind(meter=self.meter, events=self.events, ports=self.ports,
                             feeder=self.feeder, push=self.push,
                             overload_pin=getattr(self.board, "bus_overload", None))
        self.indicators.boot(_BOOT_DONE, clock.ticks_ms())
        sup.spawn("leds", lambda: self.indicators.run(clock))
        sup.spawn("button", lambda: self.button.run(self.board.button, clock,
                                                    self.button_action))

    def _start_network(self, sup):
        """Ethernet up before anything listens (board.network(cfg): DHCP or the static
        address, hostname from the serial); the network LED follows the link. None on
        the sim board (the host's own stack)."""
        net = self.board.network(self.cfg)
        if net is None:
            return
        ind = self.indicators

        async def link():
            import asyncio
            while True:
                ind.link = net.isconnected()
                await asyncio.sleep_ms(500)
        sup.spawn("link", link)

    def button_action(self, code):
        now = self.board.clock.ticks_ms()
        if code == _A_RESTART:
            self.events.add(now, _EV_BUTTON_RESTART)
            self.board.reset()
            return
        if code == _A_PASSWORD:
            self.events.add(now, _EV_BUTTON_PASSWORD)
            fn = self.password_reset
        elif code == _A_NETWORK:
            self.events.add(now, _EV_BUTTON_NETWORK)
            fn = self.network_reset
        else:
            return
        self.indicators.confirm(now)
        if fn is not None:
            fn()
