"""Device-side helpers of tools/deploy.py, sent with `mpremote exec` (not deployed).

tools/deploy.py sends this file's text followed by one call, e.g. `hashes([...])`,
after an `os.chdir(root)` when the device is the unix port behind socat (--root). Every
path is relative to the device's current directory: "/" on a board, the deploy root on
the virtual device. Output lines start with a keyword the host parses.

    hashes(paths, dirs)     H <sha256 hex or -> <path> for each path; F <path> for every
                            file under dirs (stale modules are found so)
    seed(board, cfg_json)   the first-boot config, only when the device has none
    backup(board)           R <path> <hex> for every config, secrets and counter record
    restore(board, files)   writes them back (the host checked them), removes the others
    logs(board)             E <seq> <uptime ms> <utc> <code> <arg> <name> per event

The firmware's filesystem: on a board the littlefs its _boot.py mounted at "/"
(firmware/rootfs.py RootFs, what the board's filesystem() hands to App); on the sim
board littlefs on its flash image run/flash.img (boards/sim/blockdev.py SimFlash, the
block device the host run gives App: `--run-dir run` from the deploy root).
"""
import os


def open_fs(board):
    if board == "sim":
        from boards.sim.blockdev import SimFlash
        try:
            os.mkdir("run")
        except OSError:
            pass
        bdev = SimFlash(64, path="run/flash.img")
        try:
            return os.VfsLfs2(bdev)
        except OSError:           # blank flash: a new filesystem, as App._mount does
            os.VfsLfs2.mkfs(bdev)
            return os.VfsLfs2(bdev)
    from firmware.rootfs import RootFs
    return RootFs("/")


def _sha(path):
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1024)
            if not b:
                break
            h.update(b)
    return "".join("%02x" % x for x in h.digest())


def _walk(d):
    try:
        it = list(os.ilistdir(d))
    except OSError:
        return
    for e in it:
        p = d + "/" + e[0]
        if e[1] == 0x4000:
            _walk(p)
        else:
            print("F", p)


def hashes(paths, dirs):
    for p in paths:
        try:
            print("H", _sha(p), p)
        except OSError:
            print("H - " + p)
    for d in dirs:
        _walk(d)


def _exists(vfs, path):
    try:
        vfs.stat(path)
        return True
    except OSError:
        return False


def _board_calibration(board):
    """CALIBRATION of the board class (`Board`, else the class named after the board)."""
    mod = __import__("boards.%s.board" % board, None, None, ("board",))
    cls = getattr(mod, "Board", None)
    if isinstance(cls, type) and hasattr(cls, "CALIBRATION"):
        return cls.CALIBRATION
    for v in mod.__dict__.values():
        if isinstance(v, type) and getattr(v, "name", None) == board and hasattr(v, "CALIBRATION"):
            return v.CALIBRATION
    raise ValueError("boards/%s/board.py has no board class with CALIBRATION" % board)


def seed(board, cfg_json):
    """The config the firmware would store (firmware/config.py validate over the board's
    calibration, a firmware/cfgstore.py Slots record), written only when neither config
    slot exists: a device's own config (even a damaged one) is never replaced."""
    import json
    from firmware import config
    from firmware.cfgstore import Slots
    vfs = open_fs(board)
    if _exists(vfs, "/cfg/c0") or _exists(vfs, "/cfg/c1"):
        print("SEED kept")
        return
    cfg = config.validate(json.loads(cfg_json) if cfg_json else None,
                          _board_calibration(board))
    Slots(vfs, "/cfg/c").save(json.dumps(cfg).encode())
    print("SEED written")


RECORDS = ("/cfg/c0", "/cfg/c1", "/cfg/s0", "/cfg/s1",
           "/cnt/j0/r", "/cnt/j1/r", "/cnt/j2/r")


def backup(board):
    import binascii
    vfs = open_fs(board)
    for p in RECORDS:
        try:
            with vfs.open(p, "rb") as f:
                data = f.read()
        except OSError:
            continue
        print("R", p, binascii.hexlify(data).decode())


def _mkdirs(vfs, path):
    d = ""
    for part in path.split("/")[1:-1]:
        d += "/" + part
        try:
            vfs.mkdir(d)
        except OSError:
            pass


def restore(board, files):
    """files: {path: hex}. Records of RECORDS not in files are removed, so the backup's
    newest record is the newest on the device (the firmware takes the highest seq)."""
    import binascii
    vfs = open_fs(board)
    for p in RECORDS:
        if p in files:
            _mkdirs(vfs, p)
            with vfs.open(p, "wb") as f:
                f.write(binascii.unhexlify(files[p]))
            print("W", p)
        elif _exists(vfs, p):
            vfs.remove(p)
            print("D", p)


def logs(board):
    """The event log (firmware/eventstore.py /ev/log) decoded, oldest first."""
    import struct
    from firmware.eventstore import RING
    from firmware.ring import Ring
    from firmware.events import event_name
    vfs = open_fs(board)
    try:
        with vfs.open("/ev/log", "rb") as f:
            data = f.read()
    except OSError:
        print("NOLOG")
        return
    check = Ring(vfs, "/ev/log", RING, 16).check    # the log's record check (CRC, seq)
    out = []
    bad = 0
    for off in range(0, len(data) - 15, 16):
        s = check(data, off)
        if s > 0:
            out.append(off)
        elif s < 0:
            bad += 1
    out.sort(key=lambda o: struct.unpack_from("<I", data, o)[0])
    for o in out:
        seq, t_ms, utc, code, arg = struct.unpack_from("<IIIBB", data, o)
        print("E", seq, t_ms, utc, code, arg, event_name(code) or "?")
    print("BAD", bad)
