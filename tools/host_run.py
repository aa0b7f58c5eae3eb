#!/usr/bin/env python3
"""Launch the firmware on the host (CPython side of `make run`).

    python tools/host_run.py [--scenario F] [--tcp-port N] [--host A] [--run-dir D]
                             [--config C] [--unlock-ms N] [--lockout-ms N]

It locks RUN_DIR (RUN_DIR/lock names our pid while we run; a second run on the same
directory is refused, a lock left by a dead process is taken over), makes the RS485
pty pairs with socat (RUN_DIR/rs485-a-dev <-> RUN_DIR/rs485-a; the firmware opens the
-dev end, a Modbus master the other), starts the MicroPython unix port on
boards.sim.run and passes its output through (the firmware never holds the terminal).

Stopping. The children run in process groups of their own, so the signals a terminal
or `timeout` send to our group (Ctrl-C, hang-up, SIGTERM) reach only this launcher,
which turns the first SIGINT, SIGTERM or SIGHUP into exactly one SIGINT for the
firmware: the unix port has no signal module, dies at once on SIGTERM and exits on a
second SIGINT that comes before the first is handled, while one SIGINT raises
KeyboardInterrupt there, so it writes its last snapshot and prints STOPPED. Then
socat goes. Not sessions of their own: a session leader that opens a pty gets it as
its controlling terminal and a SIGHUP when socat closes it. The firmware ignores
SIGTERM and SIGHUP (a service manager signals every process of the service), and the
kernel stops the children if this launcher dies without cleaning up (SIGINT to the
firmware, SIGTERM to socat; PR_SET_PDEATHSIG).
"""
import argparse
import ctypes
import fcntl
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STOP_TIMEOUT_S = 10      # the firmware's stop takes well under a second
_PR_SET_PDEATHSIG = 1    # linux/prctl.h


def micropython_cmd():
    exe = Path(sys.executable).parent / "micropython"
    return str(exe) if exe.exists() else "micropython"


def _child_setup(parent, deathsig, ignore=()):
    """preexec_fn: the child gets `deathsig` when the launcher dies; `ignore` signals
    stay ignored across exec."""
    def setup():
        for s in ignore:
            signal.signal(s, signal.SIG_IGN)
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(deathsig))
        except (OSError, AttributeError):
            return             # not Linux: the launcher's own cleanup still holds
        if os.getppid() != parent:    # the launcher died before prctl took effect
            os._exit(1)
    return setup


class RunLock:
    """RUN_DIR/lock: an flock held for the run's life (by the launcher and, inherited,
    by its children), naming the holder's pid. A lock whose holder is gone is free
    whatever the file says, so a crashed run never blocks the next one."""

    def __init__(self, run_dir):
        self.path = run_dir / "lock"
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(self.fd, 64, 0).decode(errors="replace").strip()
            os.close(self.fd)
            print("ERROR run dir %s: in use by process %s (lock %s); stop that run or "
                  "choose another RUN_DIR" % (run_dir, holder or "(unknown)", self.path))
            raise SystemExit(2)
        old = os.pread(self.fd, 64, 0).decode(errors="replace").strip()
        if old and old != str(os.getpid()):
            print("note: lock %s of process %s (no longer running) taken over"
                  % (self.path, old), file=sys.stderr)
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, b"%d\n" % os.getpid(), 0)

    def release(self):
        # Emptied, not removed: a run waiting on this very file must not lock an
        # unlinked inode while a third one creates a new file.
        os.ftruncate(self.fd, 0)
        os.close(self.fd)


def start_pty_pair(run_dir, name, lock_fd):
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
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, process_group=0,
                            pass_fds=(lock_fd,),
                            preexec_fn=_child_setup(os.getpid(), signal.SIGTERM))
    deadline = time.monotonic() + 5
    while not (dev.exists() and peer.exists()):
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            proc.wait()
            raise SystemExit("error: socat did not create %s" % peer)
        time.sleep(0.01)
    return proc


class Stopper:
    """Signal handlers: the first SIGINT/SIGTERM/SIGHUP stops the firmware, later ones
    are ignored (the stop is under way; STOP_TIMEOUT_S bounds it). Once the firmware
    has said READY it gets one SIGINT and stops cleanly itself. Before that its
    KeyboardInterrupt handler may not be installed yet (the port installs it after
    its start-up) and there is nothing to save, so it is killed and we say STOPPED."""

    def __init__(self):
        self.child = None
        self.ready = False
        self.since = None       # monotonic time of the stop request
        self.killed = False     # stopped before READY: STOPPED is ours to print
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, self.handle)
        signal.signal(signal.SIGTSTP, self.suspend)

    def suspend(self, signum, frame):
        """Ctrl-Z: the firmware is not in our group, so stop it with us (a stopped
        launcher would no longer drain its output) and let it go on with us."""
        live = self.child is not None and self.child.poll() is None
        if live:
            os.killpg(self.child.pid, signal.SIGSTOP)
        signal.signal(signal.SIGTSTP, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTSTP)          # stopped here until SIGCONT
        signal.signal(signal.SIGTSTP, self.suspend)
        if live:
            os.killpg(self.child.pid, signal.SIGCONT)

    def handle(self, signum, frame):
        if self.since is None:
            self.since = time.monotonic()
            self.forward()

    def forward(self):
        if self.child is None or self.child.poll() is not None:
            return
        if self.ready:
            self.child.send_signal(signal.SIGINT)
        else:
            self.killed = True
            self.child.kill()

    def attach(self, child):
        self.child = child
        if self.since is not None:    # a stop came while we were starting
            self.forward()

    def saw_ready(self):
        self.ready = True
        if self.since is not None:    # a stop came while READY was on its way
            self.forward()

    def overdue(self):
        return self.since is not None and time.monotonic() - self.since > STOP_TIMEOUT_S


def relay(child, stopper):
    """Copy the firmware's output to ours until it exits, noting its READY line.
    Output that cannot be written (terminal hung up, reader gone) is dropped; the
    firmware is never blocked on it."""
    out = sys.stdout.buffer
    fd = child.stdout.fileno()
    broken = False
    line_start = b"\n"         # the last byte before the current chunk
    while True:
        r, _, _ = select.select([fd], [], [], 0.5)
        if r:
            data = os.read(fd, 65536)
            if not data:
                break
            if not stopper.ready and (b"\nREADY " in line_start + data):
                stopper.saw_ready()
            line_start = data[-7:]
            if not broken:
                try:
                    out.write(data)
                    out.flush()
                except OSError:
                    broken = True
        if stopper.overdue() and child.poll() is None:
            child.kill()
            child.wait()
            _say("ERROR the firmware did not stop within %d s; killed" % STOP_TIMEOUT_S)
            return 1
    rc = child.wait()
    if stopper.killed:
        _say("STOPPED")
        return 0
    return rc if rc >= 0 else 128 - rc


def _say(line):
    try:
        print(line, flush=True)
    except OSError:
        pass


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenario", default="scenarios/default.json")
    ap.add_argument("--tcp-port", type=int, default=5020)
    ap.add_argument("--host", default="127.0.0.1",
                    help="address the Modbus TCP server listens on (0.0.0.0: all)")
    ap.add_argument("--run-dir", default="run")
    ap.add_argument("--config", default=None,
                    help="replaces the config stored in RUN_DIR/flash.img at boot; "
                         "without it the stored config is used")
    ap.add_argument("--unlock-ms", type=int, default=None,
                    help="config write access after an unlock (default 5 min)")
    ap.add_argument("--lockout-ms", type=int, default=None,
                    help="first lockout after 5 wrong passwords (default 1 min)")
    ap.add_argument("--heapsize", type=int, default=None,
                    help="MicroPython heap in bytes (emulate a board's heap)")
    ap.add_argument("--pythonpath", default=None,
                    help="module directory searched before the sources (e.g. build/mpy)")
    a = ap.parse_args(argv)
    run_dir = Path(a.run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    scenario = Path(a.scenario).resolve()
    stopper = Stopper()
    lock = RunLock(run_dir)
    socats = []
    try:
        for name in ("rs485-a", "rs485-b"):
            if stopper.since is None:
                p = start_pty_pair(run_dir, name, lock.fd)
                if p:
                    socats.append(p)
        if stopper.since is not None:
            _say("STOPPED")
            return 0
        cmd = [micropython_cmd()]
        if a.heapsize:
            cmd += ["-X", "heapsize=%d" % a.heapsize]
        cmd += ["-m", "boards.sim.run", "--scenario", str(scenario), "--run-dir",
                str(run_dir), "--tcp-port", str(a.tcp_port), "--host", a.host]
        if a.config:
            cmd += ["--config", str(Path(a.config).resolve())]
        for k in ("unlock_ms", "lockout_ms"):
            if getattr(a, k):
                cmd += ["--" + k.replace("_", "-"), str(getattr(a, k))]
        if sys.stdout.isatty():
            cmd.append("--tty")
        path = ".frozen:" + (a.pythonpath + ":" if a.pythonpath else "") + str(ROOT)
        path += ":" + str(ROOT / "lib")              # lib: umqtt.simple (make umqtt)
        env = dict(os.environ, MICROPYPATH=path)     # .frozen holds asyncio
        child = subprocess.Popen(
            cmd, env=env, cwd=str(ROOT), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, process_group=0, pass_fds=(lock.fd,),
            preexec_fn=_child_setup(os.getpid(), signal.SIGINT,
                                    (signal.SIGTERM, signal.SIGHUP)))
        stopper.attach(child)
        return relay(child, stopper)
    finally:
        for s in socats:
            s.terminate()
        for s in socats:
            try:
                s.wait(timeout=2)
            except subprocess.TimeoutExpired:
                s.kill()
                s.wait()
        lock.release()


if __name__ == "__main__":
    sys.exit(main())
