"""Host run: the firmware on the unix port with the sim board (the host contract).

    micropython -m boards.sim.run --scenario scenarios/default.json --run-dir run \
        --tcp-port 5020 [--config cfg.json] [--tty]

Prints exactly one `READY tcp=127.0.0.1:<port> rs485_a=<path> rs485_b=<path>` line once
it serves, then a table once per second; writes RUN_DIR/snapshot.json once per second;
follows edits of the scenario file within 0.5 s; stops cleanly on KeyboardInterrupt
(SIGINT; tools/host_run.py turns SIGTERM into SIGINT). A bad scenario or config is
refused with a message naming the field and exit status 2.
"""
import asyncio
import json
import os
import sys

from boards.sim import scenario as scenario_mod
from boards.sim.board import SimBoard
from firmware import config as config_mod
from firmware.app import App
from firmware.report import snapshot_dict, table


def parse_args(argv):
    args = {"scenario": "scenarios/default.json", "run-dir": "run", "tcp-port": "5020",
            "config": None, "tty": False}
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
    port = int(args["tcp-port"])
    if not 1 <= port <= 65535:
        raise ValueError("tcp-port must be 1..65535, got %d" % port)
    args["tcp-port"] = port
    return args


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def write_snapshot(run_dir, snap):
    tmp = run_dir + "/snapshot.json.tmp"
    with open(tmp, "w") as f:
        json.dump(snapshot_dict(snap), f)
    os.rename(tmp, run_dir + "/snapshot.json")


async def report(app, run_dir, tty):
    while True:
        await asyncio.sleep_ms(1000)
        snap = app.meter.front
        write_snapshot(run_dir, snap)
        print(("\x1b[H\x1b[J" if tty else "") + table(snap))


async def watch_scenario(board, path, text):
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
            board.set_scenario(scenario_mod.parse(json.loads(new)))
            print("SCENARIO reloaded %s" % path)
        except ValueError as e:
            print("SCENARIO ERROR %s: %s (keeping the previous scenario)" % (path, e))


async def serve(args, scn, text, cfg):
    board = SimBoard(scn, run_dir=args["run-dir"])
    app = App(board, cfg)
    try:
        await app.start("127.0.0.1", args["tcp-port"])
    except OSError as e:
        print("ERROR tcp port %d: cannot listen (%s)" % (args["tcp-port"], e))
        raise SystemExit(2)
    while app.meter.front.seq == 0:
        await asyncio.sleep_ms(10)
    run_dir = args["run-dir"]
    write_snapshot(run_dir, app.meter.front)
    print("READY tcp=127.0.0.1:%d rs485_a=%s/rs485-a rs485_b=%s/rs485-b"
          % (args["tcp-port"], run_dir, run_dir))
    asyncio.create_task(watch_scenario(board, args["scenario"], text))
    try:
        await report(app, run_dir, args["tty"])
    finally:
        write_snapshot(run_dir, app.meter.front)


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
        cfg = config_mod.validate(cfg, SimBoard.CALIBRATION)
    except (OSError, ValueError) as e:
        print("ERROR config %s: %s" % (args["config"], e))
        return 2
    try:
        os.mkdir(args["run-dir"])
    except OSError:
        pass
    try:
        asyncio.run(serve(args, scn, text, cfg))
    except KeyboardInterrupt:
        print("STOPPED")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
