"""Helpers for tests that start the host run as a user would: in a pseudo-terminal with
a session of its own (so signals can go to its whole process group, as a terminal's
Ctrl-C does), and look at the processes and sockets it leaves behind."""
import json
import os
import pty
import select
import signal
import socket
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SCN3 = {"frequency_hz": 50.0, "phases": {
    "L1": {"v_rms": 230.0, "i_rms": 10.0, "phi_deg": 0.0},
    "L2": {"v_rms": 230.0, "i_rms": 10.0, "phi_deg": 0.0},
    "L3": {"v_rms": 230.0, "i_rms": 10.0, "phi_deg": 0.0}}}


class PtyRun:
    """argv run on a new pty as session leader and foreground process group (pid)."""

    def __init__(self, argv, cwd=ROOT):
        pid, fd = pty.fork()
        if pid == 0:                       # child: never returns into pytest
            try:
                os.chdir(str(cwd))
                os.execvp(argv[0], argv)
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        self.out = b""
        self.status = None

    def pump(self, seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            r, _, _ = select.select([self.fd], [], [], 0.05)
            if r:
                try:
                    data = os.read(self.fd, 65536)
                except OSError:            # EIO: every writer is gone
                    return False
                if not data:
                    return False
                self.out += data
        return True

    def text(self):
        return self.out.decode(errors="replace").replace("\r\n", "\n")

    def wait_for(self, needle, timeout=30):
        deadline = time.monotonic() + timeout
        while needle.encode() not in self.out:
            if time.monotonic() > deadline or not self.pump(0.1):
                raise AssertionError("no %r; output:\n%s" % (needle, self.text()[-3000:]))

    def killpg(self, sig):
        os.killpg(self.pid, sig)

    def wait(self, timeout=20):
        """Exit code as os.waitstatus_to_exitcode gives it (-N: killed by signal N)."""
        deadline = time.monotonic() + timeout
        while self.status is None:
            self.pump(0.05)
            pid, st = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(st)
            elif time.monotonic() > deadline:
                os.killpg(self.pid, signal.SIGKILL)
                raise AssertionError("did not exit; output:\n" + self.text()[-3000:])
        self.pump(0.3)                     # what the children still wrote
        return self.status

    def close(self):
        if self.status is None:
            kill_all(children(self.pid))    # in process groups of their own
            try:
                os.killpg(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        try:
            os.close(self.fd)
        except OSError:
            pass


def children(pid):
    """Every live descendant of pid: {pid: command line}."""
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = open("/proc/%s/stat" % d).read()
            cmd = open("/proc/%s/cmdline" % d, "rb").read().replace(b"\0", b" ").decode()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append((int(d), cmd))
    out, todo = {}, [pid]
    while todo:
        for k, cmd in kids.get(todo.pop(), []):
            out[k] = cmd
            todo.append(k)
    return out


def kill_all(pids):
    """Test clean-up after a failure: SIGKILL whatever of pids still runs."""
    for p in pids:
        if alive(p):
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass


def alive(pid):
    try:
        stat = open("/proc/%d/stat" % pid).read()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_gone(pids, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [p for p in pids if alive(p)]
        if not left:
            return []
        time.sleep(0.05)
    return left


def listening(port):
    """True while some socket listens on TCP `port` (any address), from /proc/net/tcp."""
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = open(name).read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            f = row.split()
            if f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:
                return f[1].rsplit(":", 1)[0]
    return None


def ksem_import_dwh(port):
    """Total active import energy as the KSEM map serves it over TCP (0.1 Wh)."""
    from pymodbus.client import ModbusTcpClient
    c = ModbusTcpClient("127.0.0.1", port=port, timeout=3)
    assert c.connect()
    try:
        r = c.read_holding_registers(512, count=4, device_id=1).registers
    finally:
        c.close()
    return (r[0] << 48) | (r[1] << 32) | (r[2] << 16) | r[3]


def snapshot(run_dir):
    return json.loads((Path(run_dir) / "snapshot.json").read_text())


def mid_period(run_dir, timeout=10):
    """Wait for a periodic snapshot write, then half a second more (writes come once
    per second): the periodic file is now half a second old. Returns it."""
    path = Path(run_dir) / "snapshot.json"
    seq0 = snapshot(run_dir)["seq"]
    deadline = time.monotonic() + timeout
    while snapshot(run_dir)["seq"] == seq0:
        assert time.monotonic() < deadline, "snapshot.json not rewritten"
        time.sleep(0.02)
    time.sleep(0.5)
    return snapshot(run_dir), path.stat().st_mtime_ns


def port_bindable(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()
