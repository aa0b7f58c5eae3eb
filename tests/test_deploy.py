"""tools/deploy.py end to end against a virtual device: the unix port behind socat.

The fixture starts `socat TCP-LISTEN:N,reuseaddr,fork EXEC:"micropython -i",pty,...`
(every connection a fresh unix port, MICROPYPATH only its frozen asyncio); the deploy
reaches it as socket://127.0.0.1:N with --root DIR, so DIR is the device's "/". Then
the deployed tree alone boots the firmware with the sim board (MICROPYPATH = DIR and
.frozen) and answers pymodbus; the records go off the device and back.
Unix port only: sockets, ptys and littlefs (README, Runtimes).
"""
import binascii
import contextlib
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from pymodbus.client import ModbusTcpClient

from conftest import MICROPYTHON, ROOT, free_port

sys.path.insert(0, str(ROOT / "tools"))
import deploy  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("socat") is None, reason="socat missing (make socat)")


def boot_env(root):
    return dict(os.environ, MICROPYPATH=".frozen:" + str(root))


@pytest.fixture(scope="module")
def vdev(tmp_path_factory):
    """(port URL, device root dir, build dir) of a virtual device."""
    base = tmp_path_factory.mktemp("vdev")
    root = base / "root"
    root.mkdir()
    port = free_port()
    env = dict(os.environ, MICROPYPATH=".frozen")    # nothing of the project
    p = subprocess.Popen(["socat", "TCP-LISTEN:%d,reuseaddr,fork,bind=127.0.0.1" % port,
                          'EXEC:"%s -i",pty,raw,echo=0' % MICROPYTHON],
                         cwd=str(base), env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        for _ in range(100):
            try:
                import socket
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield "socket://127.0.0.1:%d" % port, root, base / "build"
    finally:
        os.killpg(p.pid, signal.SIGTERM)
        p.wait(10)


def tool(vdev, *args):
    """tools/deploy.py's main in this process (what `make deploy` etc. run):
    (exit status, stdout, stderr)."""
    url, root, build = vdev
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = deploy.main([*args, "--port", url, "--root", str(root)])
    return rc, out.getvalue(), err.getvalue()


def copied(out):
    line = [ln for ln in out.splitlines() if ln.startswith("copied ")]
    assert line, out
    return int(line[-1].split()[1])


def boot_and_read(root):
    """Boot the deployed tree (sim board) and read identity and a measurement map."""
    port = free_port()
    p = subprocess.Popen([MICROPYTHON, "-m", "boards.sim.run", "--scenario",
                          str(ROOT / "scenarios" / "default.json"), "--run-dir", "run",
                          "--tcp-port", str(port)], cwd=str(root), env=boot_env(root),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        deadline = time.time() + 60
        while time.time() < deadline:
            ln = p.stdout.readline()
            if not ln:
                break
            lines.append(ln)
            if ln.startswith("FACTORY PASSWORD"):
                break
        assert any(ln.startswith("READY tcp=") for ln in lines), "".join(lines)
        c = ModbusTcpClient("127.0.0.1", port=port)
        assert c.connect()
        ident = c.read_holding_registers(0xC090, count=16, device_id=1)   # identity.vendor
        sunspec = c.read_holding_registers(40000, count=2, device_id=1)   # "SunS"
        c.close()
        return lines, ident, sunspec
    finally:
        p.send_signal(signal.SIGINT)            # clean stop: counters and events flushed
        try:
            p.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()


def words_text(regs):
    return b"".join(r.to_bytes(2, "big") for r in regs).rstrip(b"\0").decode()


def test_deploy_boot_redeploy_backup_restore(vdev, tmp_path):
    url, root, build = vdev
    rc, out, err = tool(vdev, "deploy", "--board", "sim", "--build-dir", str(build))
    assert rc == 0, err
    files = deploy.build("sim", build)
    assert copied(out) == len(files)
    assert "config: seeded (first boot)" in out
    on_dev = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()
                    and "run" not in p.relative_to(root).parts)
    assert on_dev == sorted(files)                    # the tree and nothing else
    assert (root / "board.txt").read_text() == "sim\n"
    assert all(p.endswith(".mpy") for p in files if p.startswith(("firmware/", "drivers/")))

    lines, ident, sunspec = boot_and_read(root)
    assert any("CONFIG stored config used" in ln for ln in lines), lines   # the seed
    assert not ident.isError() and words_text(ident.registers) == "OpenMeter"
    assert not sunspec.isError() and words_text(sunspec.registers) == "SunS"

    # Nothing changed: nothing copied, the config kept.
    rc, out, err = tool(vdev, "deploy", "--board", "sim", "--build-dir", str(build))
    assert rc == 0, err
    assert copied(out) == 0 and "config: kept" in out
    # One file differs on the device, one stale module lies there: that file alone is
    # copied back, the stale one removed.
    (root / "firmware" / "version.mpy").write_bytes(b"garbage")
    (root / "firmware" / "old_module.py").write_text("x = 1\n")
    rc, out, err = tool(vdev, "deploy", "--board", "sim", "--build-dir", str(build))
    assert rc == 0, err
    assert copied(out) == 1 and "copy firmware/version.mpy" in out
    assert "removed stale firmware/old_module.py" in out
    assert not (root / "firmware" / "old_module.py").exists()
    assert (root / "firmware" / "version.mpy").read_bytes() == files["firmware/version.mpy"].read_bytes()

    # The event log: the boot the firmware logged, read off the device's flash.
    rc, out, err = tool(vdev, "logs")
    assert rc == 0, err
    assert " boot " in out, out

    # Backup, wipe the records, restore: the same records come back.
    a = tmp_path / "a.json"
    rc, out, err = tool(vdev, "backup", "--out", str(a))
    assert rc == 0 and "warning" not in err, err   # the firmware's records pass our checks
    body = json.loads(a.read_text())
    assert {"/cfg/c0", "/cnt/j0/r"} <= set(body["files"]), body["files"].keys()
    empty = tmp_path / "empty.json"
    files0 = {}
    empty.write_text(json.dumps({"format": deploy.BACKUP_FORMAT, "version": 1, "board": "sim",
                                 "files": files0, "sha256": hashlib.sha256(
                                     json.dumps(files0, sort_keys=True).encode()).hexdigest()}))
    rc, out, err = tool(vdev, "restore", "--in", str(empty))
    assert rc == 0 and "0 records written" in out, (out, err)
    rc, out, err = tool(vdev, "backup", "--out", str(tmp_path / "gone.json"))
    assert json.loads((tmp_path / "gone.json").read_text())["files"] == {}
    rc, out, err = tool(vdev, "restore", "--in", str(a))
    assert rc == 0, err
    b = tmp_path / "b.json"
    rc, out, err = tool(vdev, "backup", "--out", str(b))
    assert json.loads(b.read_text())["files"] == body["files"]

    # A damaged record is refused before the device is touched, saying why.
    bad = dict(body["files"])
    raw = bytearray(binascii.unhexlify(bad["/cnt/j0/r"]))
    raw[10] ^= 1
    bad["/cnt/j0/r"] = raw.hex()
    c = tmp_path / "c.json"
    c.write_text(json.dumps(dict(body, files=bad, sha256=hashlib.sha256(
        json.dumps(bad, sort_keys=True).encode()).hexdigest())))
    rc, out, err = tool(vdev, "restore", "--in", str(c))
    assert rc == 2 and "/cnt/j0/r: CRC-32 mismatch" in err, err
    short = dict(body["files"], **{"/cfg/c0": body["files"]["/cfg/c0"][:-2]})
    c.write_text(json.dumps(dict(body, files=short, sha256=hashlib.sha256(
        json.dumps(short, sort_keys=True).encode()).hexdigest())))
    rc, out, err = tool(vdev, "restore", "--in", str(c))
    assert rc == 2 and "/cfg/c0: length" in err, err
    c.write_text(a.read_text().replace(body["files"]["/cfg/c0"][:8], "00000000", 1))
    rc, out, err = tool(vdev, "restore", "--in", str(c))
    assert rc == 2 and "sha256" in err, err


def test_unknown_board_named():
    with pytest.raises(deploy.DeployError) as e:
        deploy.board_arch("nosuch")
    assert "'nosuch'" in str(e.value) and "sim" in str(e.value)


@pytest.mark.parametrize("arch,code", [("armv6m", 4), ("xtensawin", 10)])
def test_native_modules_built_for_the_board(monkeypatch, tmp_path, arch, code):
    """The *_viper modules carry native code for the board's CPU: the .mpy header's arch
    field (MicroPython docs, .mpy files: 4 ARMV6M for rp2040, 10 XTENSAWIN for esp32);
    bytecode-only modules carry none (0)."""
    monkeypatch.setitem(deploy.ARCH, "sim", arch)
    monkeypatch.setattr(deploy, "sources", lambda board: [
        "firmware/meterk_viper.py", "drivers/ade7880_viper.py", "firmware/events.py"])
    files = deploy.build("sim", tmp_path)
    heads = {p: f.read_bytes()[:4] for p, f in files.items() if p.endswith(".mpy")}
    assert all(h[:2] == b"M\x06" for h in heads.values())
    assert heads["firmware/meterk_viper.mpy"][2] >> 2 == code
    assert heads["drivers/ade7880_viper.mpy"][2] >> 2 == code
    assert heads["firmware/events.mpy"][2] >> 2 == 0


@pytest.mark.parametrize("board", [b for b in deploy.boards() if b != "sim"])
def test_real_board_tree(tmp_path, board):
    """A real board's tree: its own modules and the shared ones, built for its CPU, and
    nothing host-only (boards/sim, tools, tests)."""
    files = deploy.build(board, tmp_path)
    assert "boards/%s/board.mpy" % board in files and "firmware/app.mpy" in files
    assert "boards/contract.mpy" in files
    assert not [p for p in files if p.startswith(("boards/sim/", "tools/", "tests/"))]
    assert not [p for p in files if p.endswith("manifest.mpy")]
