#!/usr/bin/env python3
"""Modbus benchmark: our TCP server on the MicroPython unix port vs pymodbus's async server.

    python tools/bench_modbus.py --out bench/modbus.json [--seconds 3]

Both servers hold a map of the same size and run in the same session; a raw-socket load
generator (its own process, so it never shares the GIL with the measuring code) keeps
1 or 8 connections busy reading 60 holding registers (FC 03), with 1 or 4 requests in
flight per connection. Reported per run: requests/s, failures (wrong, missing or late
replies, closed connections) and the server process's own CPU time per request
(utime + stime from /proc/PID/stat). Ratios are ours / pymodbus (speed) and
pymodbus / ours (CPU per request): above 1 means ours is better. Each figure is taken
twice: with the OS placing the processes ("spread"), and with server and generator
pinned to one CPU ("one_cpu"). On a VM the spread 1-client figure is bound by the
cross-CPU wake-up each request costs (both servers pay it; a bare asyncio responder
on the unix port does no better than ours there); pinned, a round trip is CPU work.

RTU turnaround (end of our request to the first reply byte) is measured on a socat
pty at the KSEM preset A (38400 8N2, address 1) while 8 TCP clients load our server,
and once idle. A pty has no bit timing, so the figure is t3.5 (1.75 ms) plus
processing and scheduling delay. Total run time is about a minute.
"""
import argparse
import json
import multiprocessing
import os
import select
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MICROPYTHON = str(Path(sys.executable).parent / "micropython")
REGS = 60                 # registers per read
MAP_SIZE = 300            # both servers hold 300 holding registers
RESP_LEN = 7 + 2 + 2 * REGS

PYMODBUS_SERVER = r"""
import asyncio, sys
from pymodbus.datastore import ModbusDeviceContext, ModbusSequentialDataBlock, ModbusServerContext
from pymodbus.server import StartAsyncTcpServer
block = ModbusSequentialDataBlock(1, [(3 * a + 1) & 0xFFFF for a in range(%d)])
ctx = ModbusServerContext(devices=ModbusDeviceContext(hr=block), single=True)
asyncio.run(StartAsyncTcpServer(context=ctx, address=("127.0.0.1", int(sys.argv[1]))))
""" % MAP_SIZE


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def cpu_seconds(pid):
    """utime + stime of a process, in seconds (fields 14 and 15 of /proc/PID/stat)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_port(port, timeout=10.0):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("server on port %d did not come up" % port)


# ---- load generator (runs in a child process) ----

def _request(tid):
    return struct.pack(">HHHBBHH", tid & 0xFFFF, 0, 6, 1, 3, 0, REGS)


def _load_one(port, seconds):
    """One connection, one request at a time: the leanest loop (2 syscalls a request),
    so the round trip is as much the server's as a Python client can make it."""
    s = socket.create_connection(("127.0.0.1", port), timeout=2)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    req = bytearray(_request(0))
    buf = bytearray(RESP_LEN)
    mv = memoryview(buf)
    done = failures = tid = 0
    clock = time.perf_counter
    t0 = clock()
    deadline = t0 + seconds
    try:
        while clock() < deadline:
            tid = (tid + 1) & 0xFFFF
            req[0] = tid >> 8
            req[1] = tid & 0xFF
            s.send(req)
            got = 0
            while got < RESP_LEN:
                k = s.recv_into(mv[got:])
                if not k:
                    raise EOFError
                got += k
            if buf[0] == req[0] and buf[1] == req[1] and buf[7] == 3 and buf[8] == 2 * REGS:
                done += 1
            else:
                failures += 1
    except (OSError, EOFError):
        failures += 1
    t_end = clock()
    s.close()
    return done, failures, t_end - t0


def _load(port, clients, depth, seconds, conn, nice=0, cpu=None):
    if nice:
        os.nice(nice)
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    if clients == 1 and depth == 1:
        done, failures, secs = _load_one(port, seconds)
        conn.send({"requests": done, "seconds": secs, "failures": failures,
                   "generator_cpu_s": time.process_time()})
        return
    socks = []
    for _ in range(clients):
        s = socket.create_connection(("127.0.0.1", port), timeout=2)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        socks.append(s)
    st = {s.fileno(): {"s": s, "buf": bytearray(), "next": 0, "want": 0, "out": 0}
          for s in socks}
    poll = select.epoll()
    for s in socks:
        poll.register(s.fileno(), select.EPOLLIN)

    def send(c, k):
        data = b"".join(_request(c["next"] + i) for i in range(k))
        c["next"] += k
        c["out"] += k
        c["s"].sendall(data)

    done = failures = 0
    t0 = time.perf_counter()
    for c in st.values():
        send(c, depth)
    deadline = t0 + seconds
    last_progress = t0
    draining = False
    while True:
        now = time.perf_counter()
        if not draining and now >= deadline:
            draining = True
            t_end = now
            counted = done
        if draining and (all(c["out"] == 0 for c in st.values()) or now > t_end + 1.0):
            break
        if now - last_progress > 2.0:
            break                     # stalled: whatever is out counts as failed
        for fd, ev in poll.poll(0.2):
            c = st[fd]
            try:
                data = c["s"].recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:
                failures += c["out"]
                c["out"] = 0
                poll.unregister(fd)
                continue
            buf = c["buf"]
            buf += data
            n = 0
            while len(buf) >= RESP_LEN:
                tid, proto, ln, _, fc, bc = struct.unpack_from(">HHHBBB", buf)
                if tid != c["want"] & 0xFFFF or proto or ln != RESP_LEN - 6 or fc != 3 \
                        or bc != 2 * REGS:
                    failures += 1
                else:
                    done += 1
                c["want"] += 1
                c["out"] -= 1
                del buf[:RESP_LEN]
                n += 1
            if n:
                last_progress = time.perf_counter()
                if not draining:
                    try:
                        send(c, n)
                    except OSError:
                        failures += c["out"]
                        c["out"] = 0
    if not draining:
        t_end = time.perf_counter()
        counted = done
    failures += sum(c["out"] for c in st.values())
    for s in socks:
        s.close()
    conn.send({"requests": counted, "seconds": t_end - t0, "failures": failures,
               "generator_cpu_s": time.process_time()})


def run_load(pid, port, clients, depth, seconds, nice=0, cpu=None):
    parent, child = multiprocessing.Pipe()
    p = multiprocessing.Process(target=_load, args=(port, clients, depth, seconds, child,
                                                    nice, cpu))
    c0 = cpu_seconds(pid)
    p.start()
    res = parent.recv() if parent.poll(seconds + 30) else {"requests": 0, "seconds": seconds,
                                                          "failures": -1}
    c1 = cpu_seconds(pid)
    p.join(5)
    if p.is_alive():
        p.kill()
    n = max(res["requests"], 1)
    res.update(clients=clients, depth=depth, rps=round(res["requests"] / res["seconds"], 1),
               cpu_s=round(c1 - c0, 3), cpu_us_per_req=round((c1 - c0) * 1e6 / n, 1),
               generator_cpu_us_per_req=round(res.pop("generator_cpu_s", 0) * 1e6 / n, 1))
    return res


# ---- RTU turnaround ----

def _crc(b):
    c = 0xFFFF
    for x in b:
        c ^= x
        for _ in range(8):
            c = (c >> 1) ^ 0xA001 if c & 1 else c >> 1
    return b + struct.pack("<H", c)


def rtu_turnaround(path, stop_evt, max_n=2000):
    """Request 60 registers again and again; return ms from write to first reply byte."""
    import tty
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    tty.setraw(fd)
    frame = _crc(bytes([1, 3, 0, 0, 0, REGS]))
    want = 5 + 2 * REGS
    lat, fails = [], 0
    try:
        while not stop_evt.is_set() and len(lat) + fails < max_n:
            os.write(fd, frame)
            t0 = time.perf_counter()
            r, _, _ = select.select([fd], [], [], 0.5)
            t1 = time.perf_counter()
            got = b""
            end = t1 + 0.5
            while r and len(got) < want and time.perf_counter() < end:
                try:
                    got += os.read(fd, 512)
                except BlockingIOError:
                    select.select([fd], [], [], 0.05)
            if len(got) == want and got[:3] == bytes([1, 3, 2 * REGS]) and _crc(got[:-2]) == got:
                lat.append((t1 - t0) * 1000)
            else:
                fails += 1
            time.sleep(0.004)     # > t3.5 between frames, like a polling inverter
    finally:
        os.close(fd)
    lat.sort()

    def pct(q):
        return round(lat[min(len(lat) - 1, int(q * len(lat)))], 3) if lat else None
    return {"requests": len(lat), "failures": fails, "p50_ms": pct(0.5), "p99_ms": pct(0.99),
            "max_ms": round(lat[-1], 3) if lat else None}


def rtu_under_load(pid, port, path, clients, seconds):
    stop = threading.Event()
    out = {}
    th = threading.Thread(target=lambda: out.update(rtu_turnaround(path, stop)))
    th.start()
    # The generator gets a lower priority here: on a small host it would otherwise take
    # CPU from the pty relay and the measuring thread, which a real bus does not share.
    tcp = run_load(pid, port, clients, 1, seconds, nice=10)
    stop.set()
    th.join()
    return out, tcp


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    secs = args.seconds
    tmp = Path(tempfile.mkdtemp(prefix="bench-modbus-"))
    procs = []
    try:
        socat = subprocess.Popen(["socat", "pty,raw,echo=0,link=%s/a-dev" % tmp,
                                  "pty,raw,echo=0,link=%s/a" % tmp],
                                 stderr=subprocess.DEVNULL)
        procs.append(socat)
        for _ in range(100):
            if (tmp / "a").exists() and (tmp / "a-dev").exists():
                break
            time.sleep(0.02)
        ours_port, py_port = free_port(), free_port()
        env = dict(os.environ, MICROPYPATH=".frozen:" + str(ROOT))
        ours = subprocess.Popen([MICROPYTHON, "tests/modbus_fixture_app.py", "--tcp",
                                 str(ours_port), "--max", "16",
                                 "--rtu", "%s/a-dev,1,38400,N,2" % tmp],
                                cwd=str(ROOT), env=env, stdout=subprocess.PIPE, text=True)
        procs.append(ours)
        line = ours.stdout.readline()
        if not line.startswith("READY"):
            raise SystemExit("our server did not start: %r" % line)
        pym = subprocess.Popen([sys.executable, "-c", PYMODBUS_SERVER, str(py_port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(pym)
        wait_port(py_port)

        # Two schedules: "spread" lets the OS place server and generator (on a VM a
        # 1-client ping-pong then pays a cross-CPU wake-up per request, for both servers);
        # "one_cpu" pins server and generator to one CPU, so a round trip is CPU work only.
        all_cpus = os.sched_getaffinity(0)
        modes = {"spread": None, "one_cpu": max(all_cpus)}
        runs, ratios = {}, {}
        for mode, cpu in modes.items():
            runs[mode] = {"ours": {}, "pymodbus": {}}
            for name, proc, port in (("ours", ours, ours_port), ("pymodbus", pym, py_port)):
                os.sched_setaffinity(proc.pid, all_cpus if cpu is None else {cpu})
                run_load(proc.pid, port, 1, 1, 0.5, cpu=cpu)   # warm-up
                for clients, depth in ((1, 1), (8, 1), (8, 4)):
                    key = "%dx%d" % (clients, depth)
                    runs[mode][name][key] = run_load(proc.pid, port, clients, depth, secs,
                                                     cpu=cpu)
                os.sched_setaffinity(proc.pid, all_cpus)
            ratios[mode] = compare(runs[mode])
        rtu_idle = rtu_turnaround(str(tmp / "a"), threading.Event(), max_n=300)
        rtu_load, tcp_during = rtu_under_load(ours.pid, ours_port, str(tmp / "a"), 8, secs)
        res = {"registers_per_read": REGS, "map_size": MAP_SIZE, "seconds": secs,
               "tcp": runs, "ratio_ours_over_pymodbus": ratios,
               "rtu_turnaround_idle": rtu_idle,
               "rtu_turnaround_under_tcp_load": rtu_load, "tcp_during_rtu": tcp_during,
               "cpus": len(all_cpus)}
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(res, indent=1))
        print(summary(res))
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(2)          # SIGINT: KeyboardInterrupt on the unix port
                try:
                    p.wait(3)
                except subprocess.TimeoutExpired:
                    p.kill()
        for f in tmp.iterdir():
            f.unlink()
        tmp.rmdir()


def compare(run):
    ratios = {}
    for key in run["ours"]:
        o, p = run["ours"][key], run["pymodbus"][key]
        # A server that failed requests has no meaningful rate to compare against.
        valid = o["failures"] == 0 and p["failures"] == 0 and p["requests"] > 0
        ratios[key] = {
            "rps": round(o["rps"] / p["rps"], 2) if valid else None,
            "cpu_per_req": round(p["cpu_us_per_req"] / o["cpu_us_per_req"], 2)
            if valid and o["cpu_us_per_req"] else None,
            "note": None if valid else "pymodbus failed %d requests, ours %d"
            % (p["failures"], o["failures"]),
        }
    return ratios


def summary(res):
    lines = ["Modbus TCP, FC 03 x %d registers, %d CPUs (clients x requests in flight: "
             "requests/s, server CPU us/request, failures):"
             % (res["registers_per_read"], res["cpus"])]
    for mode, run in res["tcp"].items():
        lines.append(" %s:" % mode)
        for key in run["ours"]:
            o, p = run["ours"][key], run["pymodbus"][key]
            r = res["ratio_ours_over_pymodbus"][mode][key]
            lines.append("  %-4s ours %7.0f req/s %5.1f us %d fail | pymodbus %6.0f req/s "
                         "%8.1f us %d fail | %s"
                         % (key, o["rps"], o["cpu_us_per_req"], o["failures"], p["rps"],
                            p["cpu_us_per_req"], p["failures"],
                            r["note"] or "x%s speed, x%s less CPU" % (r["rps"],
                                                                     r["cpu_per_req"])))
    for name in ("rtu_turnaround_idle", "rtu_turnaround_under_tcp_load"):
        t = res[name]
        lines.append("  RTU turnaround %s: p50 %s ms, p99 %s ms, max %s ms (%d requests, "
                     "%d failed)" % (name.split("_", 2)[2], t["p50_ms"], t["p99_ms"],
                                     t["max_ms"], t["requests"], t["failures"]))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
