#!/usr/bin/env python3
"""Launch the firmware on the host (CPython side of `make run`).

    python tools/host_run.py [--scenario F] [--tcp-port N] [--run-dir D] [--config C]

It makes the RS485 pty pairs with socat (RUN_DIR/rs485-a-dev <-> RUN_DIR/rs485-a, the
firmware opens the -dev end, a Modbus master the other), starts the MicroPython unix
port on boards.sim.run, passes its output through, and turns SIGTERM into SIGINT for
it: the unix port has no signal module and dies at once on SIGTERM, while SIGINT
raises KeyboardInterrupt there so the firmware can stop cleanly.
"""
import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def micropython_cmd():
    exe = Path(sys.executable).parent / "micropython"
    return str(exe) if exe.exists() else "micropython"


def start_pty_pair(run_dir, name):
    """socat pty pair; returns the process once both links exist (or None w/o socat)."""
    socat = shutil.which("socat")
    if not socat:
        print("warning: socat not found; RS485 ptys not created", file=sys.stderr)
        return None
    dev, peer = run_dir / (name + "-dev"), run_dir / name
    for p in (dev, peer):
        if p.is_symlink() or p.exists():
            p.unlink()
    proc = subprocess.Popen([socat, "pty,raw,echo=0,link=%s" % dev,
                             "pty,raw,echo=0,link=%s" % peer],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 5
    while not (dev.exists() and peer.exists()):
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise SystemExit("error: socat did not create %s" % peer)
        time.sleep(0.01)
    return proc


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenario", default="scenarios/default.json")
    ap.add_argument("--tcp-port", type=int, default=5020)
    ap.add_argument("--run-dir", default="run")
    ap.add_argument("--config", default=None)
    ap.add_argument("--heapsize", type=int, default=None,
                    help="MicroPython heap in bytes (emulate a board's heap)")
    ap.add_argument("--pythonpath", default=None,
                    help="module directory searched before the sources (e.g. build/mpy)")
    a = ap.parse_args(argv)
    run_dir = Path(a.run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    scenario = Path(a.scenario).resolve()
    socats = [p for p in (start_pty_pair(run_dir, "rs485-a"),
                          start_pty_pair(run_dir, "rs485-b")) if p]
    cmd = [micropython_cmd()]
    if a.heapsize:
        cmd += ["-X", "heapsize=%d" % a.heapsize]
    cmd += ["-m", "boards.sim.run", "--scenario", str(scenario),
           "--run-dir", str(run_dir), "--tcp-port", str(a.tcp_port)]
    if a.config:
        cmd += ["--config", str(Path(a.config).resolve())]
    if sys.stdout.isatty():
        cmd.append("--tty")
    path = ".frozen:" + (a.pythonpath + ":" if a.pythonpath else "") + str(ROOT)
    env = dict(os.environ, MICROPYPATH=path)     # .frozen holds asyncio
    child = subprocess.Popen(cmd, env=env, cwd=str(ROOT))

    def forward(signum, frame):
        if child.poll() is None:
            child.send_signal(signal.SIGINT)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    try:
        rc = child.wait()
    finally:
        for s in socats:
            s.terminate()
        for s in socats:
            try:
                s.wait(timeout=2)
            except subprocess.TimeoutExpired:
                s.kill()
    return rc


if __name__ == "__main__":
    sys.exit(main())
