"""Modbus TCP connection handling (firmware/modbus/tcp.py) against abusive clients.

- Ten slow clients send a valid request one byte per 100 ms, in lockstep, and reconnect
  whenever they are closed, while one client polls every 20 ms, all on a server capped
  at 10 connections: the poller must never be evicted (eviction goes by the time of
  the last complete request, and dribbled partial frames go first).
- Twenty valid pipelined requests and a bad MBAP header in one send: all twenty replies,
  in order, then an orderly close (FIN), not a reset.
- The caller context reaches the spaces: per connection and per port, renewed for each
  new connection (the fixture's 7000.. block).
"""
import os
import select
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest

from conftest import ROOT, MICROPYTHON, free_port, mpy_env
from test_modbus_stack import (mbap, pdu_read, connect, recv_adu, tcp_xfer, closed_within,
                               HOLD, Pty, rtu, serial_client)


def start_app(*extra):
    port = free_port()
    app = subprocess.Popen([MICROPYTHON, "tests/modbus_fixture_app.py", "--tcp", str(port)]
                           + list(extra), cwd=str(ROOT), env=mpy_env(), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    r, _, _ = select.select([app.stdout], [], [], 15)
    line = app.stdout.readline() if r else ""
    assert line.startswith("READY"), line + app.stderr.read()
    return app, port


def stop_app(app):
    app.terminate()
    try:
        app.wait(5)
    except subprocess.TimeoutExpired:
        app.kill()


def server_stats(port):
    r = tcp_xfer(port, pdu_read(3, 9024, 8))[2]
    return dict(zip(("accepted", "active", "evicted", "refused", "timeouts", "bad_frames",
                     "requests", "dropped"), struct.unpack(">8H", r[2:])))


SECONDS = int(os.environ.get("SLOW_CLIENTS_S", "10"))   # the run: 30


def test_slow_clients_in_lockstep_never_evict_a_poller():
    app, port = start_app("--max", "10")
    try:
        req = mbap(7, pdu_read(3, 0, 2))
        want = (7, 1, bytes([3, 4]) + struct.pack(">2H", HOLD(0), HOLD(1)))
        slow = [None] * 10
        pos = [0] * 10
        reconnects = 0
        slow_replies = 0
        poller = connect(port)
        polls = ok = evicted = 0
        t_end = time.time() + SECONDS
        next_byte = time.time()
        while time.time() < t_end:
            now = time.time()
            if now >= next_byte:
                # One byte on each slow connection at the same moment (lockstep).
                next_byte += 0.1
                for i in range(10):
                    if slow[i] is None:
                        slow[i] = socket.create_connection(("127.0.0.1", port), timeout=2)
                        slow[i].setblocking(False)
                        pos[i] = 0
                    try:
                        slow[i].send(req[pos[i]:pos[i] + 1])
                        pos[i] = (pos[i] + 1) % len(req)
                    except OSError:
                        slow[i].close()
                        slow[i] = None
                        reconnects += 1
            for i in range(10):
                # Closed (evicted or dropped): reconnect on the next tick.
                if slow[i] is None:
                    continue
                try:
                    d = slow[i].recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    d = b""
                if d:
                    slow_replies += 1
                    continue
                slow[i].close()
                slow[i] = None
                reconnects += 1
            polls += 1
            try:
                poller.sendall(req)
                got = recv_adu(poller, timeout=2)
                ok += got == want
            except (OSError, EOFError):
                evicted += 1
                poller.close()
                poller = connect(port)
            time.sleep(0.02)
        poller.close()
        for s in slow:
            if s is not None:
                s.close()
        st = server_stats(port)
    finally:
        stop_app(app)
    print("polls %d ok %d poller evicted %d; slow reconnects %d, slow replies %d; server %r"
          % (polls, ok, evicted, reconnects, slow_replies, st))
    assert polls > 100
    assert evicted == 0 and ok == polls
    # The cap was under pressure all along: slow connections were closed and came back.
    assert st["evicted"] >= 10 and reconnects >= 10


@pytest.mark.parametrize("bad", ["protocol", "length", "length_and_junk"])
def test_pipelined_requests_then_a_bad_header_get_every_reply_then_a_close(bad):
    app, port = start_app()
    try:
        for rep in range(10):
            reqs = [mbap(i, pdu_read(3, i, 1 + i % 5)) for i in range(20)]
            if bad == "protocol":
                tail = mbap(99, pdu_read(3, 0, 1), proto=1)
            elif bad == "length":
                tail = mbap(99, pdu_read(3, 0, 1), length=300)
            else:
                tail = mbap(99, pdu_read(3, 0, 1), length=0) + bytes(range(200))
            s = connect(port)
            s.sendall(b"".join(reqs) + tail)
            got = []
            try:
                for _ in range(20):
                    got.append(recv_adu(s))
                s.settimeout(2)
                end = s.recv(100)
            finally:
                s.close()
            assert [g[0] for g in got] == list(range(20)), rep
            for i, (_, _, resp) in enumerate(got):
                n = 1 + i % 5
                assert resp == bytes([3, 2 * n]) + struct.pack(
                    ">%dH" % n, *map(HOLD, range(i, i + n)))
            assert end == b""          # FIN, not a reset and not a reply to the bad one
        st = server_stats(port)
        assert st["bad_frames"] == 10
    finally:
        stop_app(app)


def test_caller_context_per_connection_and_port(tmp_path):
    dev, cli = str(tmp_path / "a-dev"), str(tmp_path / "a")
    socat = subprocess.Popen(["socat", "pty,raw,echo=0,link=" + dev, "pty,raw,echo=0,link=" + cli],
                             stderr=subprocess.DEVNULL)
    for _ in range(250):
        if Path(dev).exists() and Path(cli).exists():
            break
        time.sleep(0.02)
    app, port = start_app("--rtu", dev + ",1,38400,N,2")
    wr = lambda a, v: bytes([6]) + struct.pack(">HH", a, v)     # noqa: E731
    try:
        a, b = connect(port), connect(port)
        a.sendall(mbap(1, wr(7000, 0x1111)))
        assert recv_adu(a)[2] == wr(7000, 0x1111)
        a.sendall(mbap(2, pdu_read(3, 7000, 3)))
        _, _, r = recv_adu(a)
        val, conn_a, kind = struct.unpack(">3H", r[2:])
        assert (val, kind) == (0x1111, 1)
        b.sendall(mbap(3, wr(7000, 0x2222)))
        recv_adu(b)
        b.sendall(mbap(4, pdu_read(3, 7000, 3)))
        val, conn_b, kind = struct.unpack(">3H", recv_adu(b)[2][2:])
        assert val == 0x2222 and kind == 1 and conn_b != conn_a
        # Unlock on a: a may write 7004, b may not.
        a.sendall(mbap(5, wr(7003, 0x5A5A)))
        recv_adu(a)
        a.sendall(mbap(6, wr(7004, 0x0042)))
        assert recv_adu(a)[2] == wr(7004, 0x0042)
        b.sendall(mbap(7, wr(7004, 0x0043)))
        assert recv_adu(b)[2] == bytes([0x86, 2])
        # A new connection (maybe in a's old slot) starts locked.
        a.close()
        time.sleep(0.1)
        c = connect(port)
        c.sendall(mbap(8, wr(7004, 0x0044)))
        assert recv_adu(c)[2] == bytes([0x86, 2])
        c.close()
        b.close()
        # RTU port A is a caller of its own.
        p = Pty(cli)
        try:
            assert p.xfer(rtu(1, wr(7000, 0x3333))) == rtu(1, wr(7000, 0x3333))
        finally:
            p.close()
        r = tcp_xfer(port, pdu_read(3, 7000, 5))[2]
        val, conn, kind, unlocked, locked = struct.unpack(">5H", r[2:])
        assert (val, conn, kind, locked) == (0x3333, 0, 2, 0x42)
    finally:
        stop_app(app)
        socat.terminate()
        socat.wait(5)


def test_tcp_uses_public_asyncio_only():
    src = (ROOT / "firmware" / "modbus" / "tcp.py").read_text()
    code = "\n".join(l.split("#")[0] for l in src.split('"""', 2)[2].splitlines())
    for bad in ("asyncio.core", "_io_queue", "core.", "import core", ".s.", ".s)"):
        assert bad not in code, bad
