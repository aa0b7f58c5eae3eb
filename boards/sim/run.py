"""Host run: the firmware on the unix port with the sim board (the host contract).

    micropython -m boards.sim.run --scenario scenarios/default.json --run-dir run \
        --tcp-port 5020 [--host 127.0.0.1] [--config cfg.json] [--tty] \
        [--unlock-ms N] [--lockout-ms N]

Config: the config is stored on the sim board's flash (RUN_DIR/flash.img) with the
counters. --config FILE replaces the stored config at boot (stored when it differs;
the run prints `CONFIG given config stored, ...`); without --config the stored one is
used (`CONFIG stored config used`), or the defaults on a fresh RUN_DIR. Config written
over Modbus (0xC000.., README "Configuration over Modbus") is stored the same way, so
it survives a restart that has no --config. Right after READY the run prints the
`CONFIG ...` line and `FACTORY PASSWORD <letters>`: the sim board's nameplate password. --unlock-ms and
--lockout-ms shorten the unlock time (5 min) and the first lockout (1 min) for tests.

Prints exactly one `READY tcp=<host>:<port> rs485_a=<path> rs485_b=<path>` line once
it serves (`off` for an endpoint the config disables), then a table once per second;
writes RUN_DIR/snapshot.json once per second and at stop; follows edits of the
scenario file within 0.5 s. Stops cleanly on KeyboardInterrupt (SIGINT): the latest
snapshot is written, then `STOPPED`. tools/host_run.py starts it in a process group
of its own and turns SIGINT, SIGTERM and SIGHUP into one SIGINT. A bad scenario or config is
refused with a message naming the field and exit status 2.
"""
import asyncio
import json
import os
import sys

from boards.sim import scenario as scenario_mod
from boards.sim.board import SimBoard
from boards.sim.button_ctl import ButtonControl
from firmware.ports import check_maps
from boards.sim.report import legend, snapshot_dict, table
from firmware import config as config_mod
from firmware.app import App


def parse_args(argv):
    args = {"scenario": "scenarios/default.json", "run-dir": "run", "tcp-port": "5020",
            "host": "127.0.0.1", "config": None, "tty": False, "unlock-ms": "0",
            "lockout-ms": "0"}
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--tty":
            args["tty"] = True
        elif a.startswith("--") and a[2:] in args and i + 1 < len(argv):
            args[a[2:]] = argv[i + 1]
            i += 1
        else:
            raise ValueError("unknown argument %r" % a)
        i += 1
    try:
        port = int(args["tcp-port"])
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise ValueError("tcp-port must be 1..65535, got %s" % args["tcp-port"])
    args["tcp-port"] = port
    for k in ("unlock-ms", "lockout-ms"):
        v = args[k]
        try:
            args[k] = int(v)
        except ValueError:
            args[k] = -1
        if args[k] < 0:
            raise ValueError("%s must be a whole number of ms, got %s" % (k, v))
    if not args["host"]:
        raise ValueError("host must be an address to listen on, got ''")
    return args


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def write_snapshot(run_dir, meter, leds=None):
    snap = meter.front            # one whole cycle (published by reference swap)
    d = snapshot_dict(snap, meter.status_now())
    if leds is not None:
        d["leds"] = leds.names()  # what the three LEDs show now, e.g. "green-fast"
    tmp = run_dir + "/snapshot.json.tmp"
    with open(tmp, "w") as f:
        json.dump(d, f)
    os.rename(tmp, run_dir + "/snapshot.json")


class Console:
    """The run's output. Messages are lines (the contract scripts read). On a terminal
    the live block (header, table, legend, events) is redrawn in place under them:
    the cursor goes back up over the last block only, so the READY line and messages
    above it stay; autowrap is off while drawing so a long line cannot throw the
    count off."""

    def __init__(self, tty):
        self.tty = tty
        self.drawn = 0
        self.block = None

    def _erase(self):
        if self.drawn:
            sys.stdout.write("\r\x1b[%dA\x1b[J" % self.drawn)
            self.drawn = 0

    def message(self, line):
        if not self.tty:
            print(line)
            return
        self._erase()
        print(line)
        if self.block:
            self.show(self.block)

    def show(self, lines):
        if not self.tty:
            print("\n".join(lines))
            return
        self.block = lines            # redrawn under the next message
        self._erase()
        sys.stdout.write("\x1b[?7l" + "\n".join(lines) + "\n\x1b[?7h")
        self.drawn = len(lines)


class Run:
    """What the live block's header shows and what the stop needs."""

    def __init__(self, args, cfg):
        self.args = args
        self.cfg = cfg
        self.console = Console(args["tty"])
        self.app = None
        self.ready = False
        self.endpoints = ""
        self.warnings = []
        self.last_error = None

    def warn(self, scn):
        self.warnings = ["WARNING scenario %s: %s" % (self.args["scenario"], w)
                         for w in scenario_mod.config_mismatches(scn, self.cfg)]
        for w in self.warnings:
            self.console.message(w)

    def header(self):
        rows = ["meter: " + self.endpoints, "scenario: %s" % self.args["scenario"]]
        rows += self.warnings
        if self.last_error:
            rows.append("last " + self.last_error)
        rows.append("factory password: %s" % self.app.settings.access.factory)
        return rows

    def draw(self):
        app = self.app
        rows = table(app.meter.front, app.meter.status_now(), app.events,
                     app.board.clock.ticks_ms())
        leds = app.indicators.names()
        rows.insert(len(rows) - 1, "LEDs: status %s, network %s, bus %s" % (
            leds["status"], leds["network"], leds["bus"]))
        if self.console.tty:           # a log gets the table alone, once per second
            rows = self.header() + rows[:-1] + [legend(), rows[-1]]
        self.console.show(rows)

    def stop(self):
        """After KeyboardInterrupt: the loop is gone; write what the meter published
        last (meter.front is always one whole cycle)."""
        if self.ready:
            write_snapshot(self.args["run-dir"], self.app.meter, self.app.indicators)
            if self.console.tty:
                self.draw()          # the final values stay on screen, above STOPPED
        if self.app is not None and self.app.store is not None:
            # The loop is gone (the interrupt may have hit any task): only the last
            # counter record is written; the process ends next.
            self.app.store.close()
            self.app.evlog.flush()     # and the events not yet on flash
        print("STOPPED")


async def report(run):
    while True:
        await asyncio.sleep_ms(1000)
        write_snapshot(run.args["run-dir"], run.app.meter, run.app.indicators)
        run.draw()


async def watch_scenario(run, board, path, text):
    # A change is taken once the file has held still for one poll (250 ms), so an
    # editor's half-written save is not parsed; the chip follows within 0.5 s.
    pending = None
    while True:
        await asyncio.sleep_ms(250)
        try:
            new = _read(path)
        except OSError:
            continue          # mid-save by an editor: keep the last good scenario
        if new == text:
            pending = None
            continue
        if new != pending:
            pending = new
            continue
        text = new
        pending = None
        try:
            scn = scenario_mod.parse(json.loads(new))
            board.set_scenario(scn)
            run.console.message("SCENARIO reloaded %s" % path)
            run.last_error = None
            run.warn(scn)
        except ValueError as e:
            run.last_error = "SCENARIO ERROR %s: %s (keeping the previous scenario)" % (
                path, e)
            run.console.message(run.last_error)


def endpoints(run, app):
    """READY's fields: an endpoint the config disables (or the board lacks) is off."""
    args, mb = run.args, run.cfg["modbus"]
    tcp = "%s:%d" % (args["host"], args["tcp-port"]) if mb["tcp"]["enabled"] else "off"
    rtu = getattr(app.ports, "rtu", {})
    out = ["tcp=" + tcp]
    for name in ("a", "b"):
        on = name in rtu and mb["rs485_" + name]["enabled"]
        out.append("rs485_%s=%s" % (name, "%s/rs485-%s" % (args["run-dir"], name)
                                    if on else "off"))
    return " ".join(out)


async def serve(run, scn, text):
    args = run.args
    board = SimBoard(scn, run_dir=args["run-dir"])
    app = App(board, run.cfg, unlock_ms=args["unlock-ms"], lock_base_ms=args["lockout-ms"])
    run.app = app
    run.cfg = app.cfg                 # the given, stored or default config (CONFIG line)
    run.warn(scn)
    try:
        await app.start(args["host"], args["tcp-port"])
    except OSError as e:
        n = e.args[0] if e.args else None
        why = {98: "address in use", 99: "not an address of this machine"}.get(n, e)
        print("ERROR tcp port %d: cannot listen on %s (%s)"
              % (args["tcp-port"], args["host"], why))
        raise SystemExit(2)
    while app.meter.front.seq == 0:
        await asyncio.sleep_ms(10)
    write_snapshot(args["run-dir"], app.meter, app.indicators)
    run.endpoints = endpoints(run, app)
    run.ready = True
    print("READY " + run.endpoints)
    run.console.message("CONFIG %s" % app.settings.note)
    run.console.message("FACTORY PASSWORD %s" % app.settings.access.factory)
    run.draw()
    asyncio.create_task(watch_scenario(run, board, args["scenario"], text))
    # RUN_DIR/button: scripts press the reset button (boards/sim/button_ctl.py).
    asyncio.create_task(ButtonControl(board, args["run-dir"]).run())
    await report(run)


def main(argv):
    try:
        args = parse_args(argv)
    except ValueError as e:
        print("ERROR arguments: %s" % e)
        return 2
    path = args["scenario"]
    try:
        text = _read(path)
        scn = scenario_mod.parse(json.loads(text))
    except OSError as e:
        print("ERROR scenario %s: cannot read (%s)" % (path, e))
        return 2
    except ValueError as e:
        print("ERROR scenario %s: %s" % (path, e))
        return 2
    cfg = None
    try:
        if args["config"]:
            cfg = json.loads(_read(args["config"]))
            # Checked here for a clear exit 2; the App stores and uses it.
            check_maps(config_mod.validate(cfg, SimBoard.CALIBRATION), SimBoard)
    except (OSError, ValueError) as e:
        print("ERROR config %s: %s" % (args["config"], e))
        return 2
    try:
        os.mkdir(args["run-dir"])
    except OSError:
        pass
    run = Run(args, cfg)
    try:
        asyncio.run(serve(run, scn, text))
    except KeyboardInterrupt:
        # Raised wherever the loop was (often inside a task), so it ends asyncio.run
        # without running serve()'s finally blocks: the stop is done here.
        run.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
