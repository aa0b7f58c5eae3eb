#!/usr/bin/env python3
"""Modbus benchmark: our TCP server on the MicroPython unix port vs pymodbus's async server.

    python tools/bench_modbus.py --out bench/modbus.json [--seconds 1] [--trials 5]
        [--skip-firmware]

Two servers of ours are measured, each against the same pymodbus server in the same run:
- "fixture": tests/modbus_fixture_app.py, the Modbus stack alone over a plain register
  array (300 holding registers; reads at address 0);
- "firmware": the real firmware booted by tools/host_run.py (sim board, default
  scenario), reading the KSEM map at address 40 (40..99 lies inside the served group
  40..145), so the register maps are part of every request.
pymodbus holds 300 registers and is read at the same address as ours in each section.

A raw-socket load generator (its own process, so it never shares the GIL with the
measuring code) keeps 1 or 8 connections busy reading 60 holding registers (FC 03), with
1 or 4 requests in flight per connection. Reported per run: requests/s, failures (wrong,
missing or late replies, closed connections) and the server process's own CPU time per
request (utime + stime from /proc/PID/stat); for the firmware also its idle CPU rate (the
metering engine runs all the time) and the per-request figure net of it. Each figure is
the median of --trials short runs, ours and pymodbus interleaved, so a burst of noise on
the shared host hits both. Ratios are ours / pymodbus (speed) and pymodbus / ours (CPU per
request): above 1 means ours is better.

The fixture is measured twice: with the OS placing the processes ("spread"), and with
server and generator pinned to one CPU ("one_cpu"). On a VM the spread 1-client figure is
bound by the cross-CPU wake-up each request costs (both servers pay it, some 50 us of
kernel time per request here); pinned, a round trip is CPU work. The firmware is measured
spread only.

RTU turnaround (master's write of the request to the first reply byte) at the KSEM
preset A (38400 8N2, address 1), idle and while 8 TCP clients load the same process:
- fixture: on a pty pair the benchmark opens itself, so nothing relays the bytes;
- firmware: on RUN_DIR/rs485-a of the host run (opened with parity N: Linux ptys refuse
  PARENB), so socat's wake-ups are in the path both ways, and the simulated ADE7880
  computes in the same event loop (a few ms per 200 ms cycle; a board has the chip).
A pty has no bit timing, so the figure is t3.5 (1.75 ms) plus processing and the host's
scheduling delays. Total run time is about 100 s.
"""
import argparse
import json
import multiprocessing
import os
import select
import shutil
import signal
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
FW_ADDR = 40              # KSEM L1 block: 40..99 lies in the served group 40..145
RTU_LOAD_S = 8            # RTU under TCP load: some 1200 requests, so p99 is not one outlier

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

def _request(tid, addr=0):
    return struct.pack(">HHHBBHH", tid & 0xFFFF, 0, 6, 1, 3, addr, REGS)


def _load_one(port, seconds, addr):
    """One connection, one request at a time: the leanest loop (2 syscalls a request),
    so the round trip is as much the server's as a Python client can make it."""
    s = socket.create_connection(("127.0.0.1", port), timeout=2)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    req = bytearray(_request(0, addr))
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


def _load(port, clients, depth, seconds, conn, nice=0, cpu=None, addr=0):
    if nice:
        os.nice(nice)
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    if clients == 1 and depth == 1:
        done, failures, secs = _load_one(port, seconds, addr)
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
        data = b"".join(_request(c["next"] + i, addr) for i in range(k))
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


def run_load(pid, port, clients, depth, seconds, nice=0, cpu=None, addr=0):
    parent, child = multiprocessing.Pipe()
    p = multiprocessing.Process(target=_load, args=(port, clients, depth, seconds, child,
                                                    nice, cpu, addr))
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


def rtu_turnaround(line, stop_evt, max_n=2000, addr=0):
    """Request 60 registers again and again; return ms from write to first reply byte.

    line: a pty path to open, or the master fd of a pty pair we opened ourselves."""
    import tty
    own = isinstance(line, str)
    if own:
        fd = os.open(line, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(fd)
    else:
        fd = line     # a master shares the slave's termios: leave the firmware's settings
    frame = _crc(bytes([1, 3, addr >> 8, addr & 0xFF, 0, REGS]))
    want = 5 + 2 * REGS
    lat, fails, streak = [], 0, 0
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
                streak = 0
            else:
                fails += 1
                streak += 1
                if streak >= 10:
                    break         # the line is dead: don't spend 0.5 s per request on it
            time.sleep(0.004)     # > t3.5 between frames, like a polling inverter
    finally:
        if own:
            os.close(fd)
    lat.sort()

    def pct(q):
        return round(lat[min(len(lat) - 1, int(q * len(lat)))], 3) if lat else None
    return {"requests": len(lat), "failures": fails, "p50_ms": pct(0.5), "p90_ms": pct(0.9),
            "p99_ms": pct(0.99), "max_ms": round(lat[-1], 3) if lat else None}


def rtu_under_load(pid, port, line, clients, seconds, addr=0):
    stop = threading.Event()
    out = {}
    th = threading.Thread(target=lambda: out.update(rtu_turnaround(line, stop, addr=addr)))
    th.start()
    # The generator gets a lower priority here: on a small host it would otherwise take
    # CPU from the pty relay and the measuring thread, which a real bus does not share.
    tcp = run_load(pid, port, clients, 1, seconds, nice=10, addr=addr)
    stop.set()
    th.join()
    return out, tcp


# ---- runs ----

def median_run(runs):
    """The run with the median rate, plus every trial's rate."""
    ok = sorted(runs, key=lambda r: r["rps"])
    m = dict(ok[(len(ok) - 1) // 2])
    m["rps_trials"] = [r["rps"] for r in runs]
    m["failures"] = sum(r["failures"] for r in runs)
    return m


def measure(servers, shapes, trials, secs, cpu=None, addr=0):
    """servers: [(name, pid, port)]. Trials interleave the servers (order alternating),
    so slow spells of the shared host fall on both. A server that fails requests in a
    shape is not run in that shape again (pymodbus stalls on pipelining)."""
    all_cpus = os.sched_getaffinity(0)
    runs = {name: {} for name, _, _ in servers}
    for name, pid, port in servers:
        os.sched_setaffinity(pid, all_cpus if cpu is None else {cpu})
        run_load(pid, port, 1, 1, 0.3, cpu=cpu, addr=addr)   # warm-up
        os.sched_setaffinity(pid, all_cpus)
    for t in range(trials):
        for clients, depth in shapes:
            key = "%dx%d" % (clients, depth)
            for name, pid, port in (servers if t % 2 == 0 else servers[::-1]):
                got = runs[name].setdefault(key, [])
                if got and got[-1]["failures"]:
                    continue
                os.sched_setaffinity(pid, all_cpus if cpu is None else {cpu})
                got.append(run_load(pid, port, clients, depth, secs, cpu=cpu, addr=addr))
                os.sched_setaffinity(pid, all_cpus)
    return {name: {k: median_run(v) for k, v in r.items()} for name, r in runs.items()}


def cpu_rate(pid, seconds=1.0):
    """CPU seconds per second a process uses on its own (the firmware's metering)."""
    c0 = cpu_seconds(pid)
    time.sleep(seconds)
    return (cpu_seconds(pid) - c0) / seconds


def child_pid(ppid, comm, timeout=10.0):
    """Pid of the child of ppid whose /proc comm is comm (host_run.py's micropython)."""
    end = time.time() + timeout
    while time.time() < end:
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % d) as f:
                    st = f.read()
            except OSError:
                continue
            name = st[st.index("(") + 1:st.rindex(")")]
            if name == comm and int(st.rsplit(")", 1)[1].split()[1]) == ppid:
                return int(d)
        time.sleep(0.05)
    raise SystemExit("no %s child of %d" % (comm, ppid))


def stop(proc, timeout=5):
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)   # KeyboardInterrupt on the unix port
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def bench_fixture(tmp, pym_pid, py_port, secs, trials):
    import tty
    # The RTU master writes straight into a pty pair we open: no relay process.
    master, slave = os.openpty()
    tty.setraw(slave)
    line = os.ttyname(slave)
    port = free_port()
    env = dict(os.environ, MICROPYPATH=".frozen:" + str(ROOT))
    ours = subprocess.Popen([MICROPYTHON, "tests/modbus_fixture_app.py", "--tcp", str(port),
                             "--max", "16", "--rtu", "%s,1,38400,N,2" % line],
                            cwd=str(ROOT), env=env, stdout=subprocess.PIPE, text=True)
    try:
        first = ours.stdout.readline()
        if not first.startswith("READY"):
            raise SystemExit("the fixture app did not start: %r" % first)
        os.close(slave)               # the app holds its own fd
        os.set_blocking(master, False)
        servers = [("ours", ours.pid, port), ("pymodbus", pym_pid, py_port)]
        shapes = ((1, 1), (8, 1), (8, 4))
        runs = {"spread": measure(servers, shapes, trials, secs),
                "one_cpu": measure(servers, shapes, trials, secs,
                                   cpu=max(os.sched_getaffinity(0)))}
        rtu_idle = rtu_turnaround(master, threading.Event(), max_n=300)
        rtu_load, tcp_during = rtu_under_load(ours.pid, port, master, 8, RTU_LOAD_S)
    finally:
        stop(ours)
        os.close(master)
    return {"address": 0, "tcp": runs,
            "ratio_ours_over_pymodbus": {m: compare(r) for m, r in runs.items()},
            "rtu_line": "pty pair opened by the benchmark (no relay)",
            "rtu_turnaround_idle": rtu_idle, "rtu_turnaround_under_tcp_load": rtu_load,
            "tcp_during_rtu": tcp_during}


def bench_firmware(tmp, pym_pid, py_port, secs, trials):
    run_dir = tmp / "run"
    port = free_port()
    log = open(tmp / "host_run.log", "w")
    host = subprocess.Popen([sys.executable, "tools/host_run.py", "--run-dir", str(run_dir),
                             "--tcp-port", str(port)], cwd=str(ROOT), stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        end = time.time() + 30
        while "READY" not in (tmp / "host_run.log").read_text():
            if host.poll() is not None or time.time() > end:
                raise SystemExit("the firmware did not start:\n%s"
                                 % (tmp / "host_run.log").read_text()[-2000:])
            time.sleep(0.05)
        fw = child_pid(host.pid, "micropython")
        idle_rate = cpu_rate(fw)
        servers = [("ours", fw, port), ("pymodbus", pym_pid, py_port)]
        runs = {"spread": measure(servers, ((1, 1), (8, 1)), trials, secs, addr=FW_ADDR)}
        for r in runs["spread"]["ours"].values():
            n = max(r["requests"], 1)
            r["cpu_us_per_req_net"] = round(
                (r["cpu_s"] - idle_rate * r["seconds"]) * 1e6 / n, 1)
        line = str(run_dir / "rs485-a")
        rtu_idle = rtu_turnaround(line, threading.Event(), max_n=300, addr=FW_ADDR)
        rtu_load, tcp_during = rtu_under_load(fw, port, line, 8, RTU_LOAD_S, addr=FW_ADDR)
    finally:
        stop(host, 10)
        log.close()
    return {"address": FW_ADDR, "idle_cpu_pct": round(100 * idle_rate, 1), "tcp": runs,
            "ratio_ours_over_pymodbus": {m: compare(r) for m, r in runs.items()},
            "rtu_line": "RUN_DIR/rs485-a through host_run.py's socat relay",
            "rtu_turnaround_idle": rtu_idle, "rtu_turnaround_under_tcp_load": rtu_load,
            "tcp_during_rtu": tcp_during}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--seconds", type=float, default=1.0, help="length of one trial")
    ap.add_argument("--trials", type=int, default=5, help="trials per figure (median)")
    ap.add_argument("--skip-firmware", action="store_true")
    args = ap.parse_args()
    t0 = time.time()
    tmp = Path(tempfile.mkdtemp(prefix="bench-modbus-"))
    py_port = free_port()
    pym = subprocess.Popen([sys.executable, "-c", PYMODBUS_SERVER, str(py_port)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(py_port)
        res = {"registers_per_read": REGS, "map_size": MAP_SIZE, "seconds": args.seconds,
               "trials": args.trials, "cpus": len(os.sched_getaffinity(0))}
        res["fixture"] = bench_fixture(tmp, pym.pid, py_port, args.seconds, args.trials)
        if not args.skip_firmware:
            res["firmware"] = bench_firmware(tmp, pym.pid, py_port, args.seconds,
                                             args.trials)
    finally:
        stop(pym)
        shutil.rmtree(tmp, ignore_errors=True)
    res["run_seconds"] = round(time.time() - t0, 1)
    res["summary"] = summary(res)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1))
    print(res["summary"])


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
    lines = ["Modbus TCP, FC 03 x %d registers, %d CPUs, median of %d x %g s (clients x "
             "requests in flight: requests/s, server CPU us/request, failures):"
             % (res["registers_per_read"], res["cpus"], res["trials"], res["seconds"])]
    for part in ("fixture", "firmware"):
        if part not in res:
            continue
        sec = res[part]
        head = " %s (address %d)" % (part, sec["address"])
        if part == "firmware":
            head += ", idle CPU %.1f%%" % sec["idle_cpu_pct"]
        lines.append(head + ":")
        for mode, run in sec["tcp"].items():
            lines.append("  %s:" % mode)
            for key in run["ours"]:
                o, p = run["ours"][key], run["pymodbus"][key]
                r = sec["ratio_ours_over_pymodbus"][mode][key]
                lines.append("   %-4s ours %7.0f req/s %5.1f us %d fail | pymodbus %6.0f req/s "
                             "%8.1f us %d fail | %s"
                             % (key, o["rps"], o["cpu_us_per_req"], o["failures"], p["rps"],
                                p["cpu_us_per_req"], p["failures"],
                                r["note"] or "x%s speed, x%s less CPU" % (r["rps"],
                                                                         r["cpu_per_req"])))
        for name in ("rtu_turnaround_idle", "rtu_turnaround_under_tcp_load"):
            t = sec[name]
            lines.append("  RTU turnaround %s: p50 %s ms, p90 %s ms, p99 %s ms, max %s ms "
                         "(%d requests, %d failed)"
                         % (name.split("_", 2)[2], t["p50_ms"], t["p90_ms"], t["p99_ms"],
                            t["max_ms"], t["requests"], t["failures"]))
    lines.append(" run time %.0f s" % res["run_seconds"])
    return "\n".join(lines)


if __name__ == "__main__":
    main()
