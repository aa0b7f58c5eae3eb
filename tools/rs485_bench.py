"""RS485 bench test of a meter: every map over Modbus RTU, with a pass/fail report.

    python tools/rs485_bench.py --device /dev/ttyUSB0 --baud 38400 --parity N --stop 2 \
        --address 1 [--count 100] [--timeout 1.0] [--progress]

Our own RTU master (pyserial for the line; framing and CRC written here from the
Modbus over Serial Line spec V1.02, section 2.5.1 and appendix B). It checks:
- every block of every map (KSEM FC 03, SunSpec FC 03, SDM630 FC 04, the config block
  FC 03; the blocks come from docs/registers/*.csv, the published maps; and the event
  log's header and window at 0xC400) answers with a
  good CRC, the right address, function and byte count; --count N repeats the round
  (progress bar on stderr) and the report gives response-time percentiles;
- the meter's own RS485 settings (config block) name this line's baud, parity, stop
  bits and address on one enabled port: a wrong setting fails clearly even on a pty,
  where bytes pass at any baud;
- exceptions: a read outside every map gets 02, an unknown function 01, a broadcast
  (address 0) and another slave's address get no reply;
- the silent intervals (spec 2.5.1.1): a frame whose bytes follow each other at once
  (gaps far below t1.5) is one frame; a request cut by a silence longer than t3.5 is
  two incomplete frames and gets no reply, and the next whole request is answered.
Exit status 0 when every check passed, 1 otherwise, 2 for a bad command line.
On a host pty (README "The host run") parity cannot be set: the line opens with N and
the parity given is only compared with the meter's setting.
"""
import argparse
import csv
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAPS = (("KSEM", "ksem", 3), ("SunSpec", "sunspec", 3), ("SDM630", "sdm630", 4),
        ("config", "config", 3))
MAX_REGS = 80            # the SDM630's limit per request; under FC 03's 125 as well
# The event log (README "Event log"; not in docs/registers): header and the window.
EXTRA = (("event log", 3, 0xC400, 16), ("event log", 3, 0xC410, 64))


def crc16(data):
    """Modbus CRC-16 (spec V1.02 appendix B: polynomial 0xA001 reflected, init 0xFFFF)."""
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def frame(pdu_bytes):
    c = crc16(pdu_bytes)
    return bytes(pdu_bytes) + bytes((c & 0xFF, c >> 8))      # CRC low byte first


def read_req(addr, fc, start, count):
    return frame(bytes((addr, fc, start >> 8, start & 0xFF, count >> 8, count & 0xFF)))


def char_s(baud, parity, stop):
    return (1 + 8 + (parity != "N") + stop) / baud


def t15_t35(baud, parity, stop):
    """t1.5 and t3.5 in s; fixed 750 us and 1.75 ms above 19200 baud (spec 2.5.1.1)."""
    if baud > 19200:
        return 0.00075, 0.00175
    c = char_s(baud, parity, stop)
    return 1.5 * c, 3.5 * c


def blocks(root=ROOT):
    """[(map, fc, start, count)]: contiguous runs of each published map, <= MAX_REGS."""
    out = []
    for name, stem, fc in MAPS:
        rows = []
        with open(root / "docs" / "registers" / (stem + ".csv")) as f:
            for r in csv.DictReader(f):
                rows.append((int(r["address"]), int(r["registers"])))
        rows.sort()
        start = end = None
        for a, n in rows:
            if start is not None and (a != end or a + n - start > MAX_REGS):
                out.append((name, fc, start, end - start))
                start = None
            if start is None:
                start, end = a, a
            end = a + n
        if start is not None:
            out.append((name, fc, start, end - start))
    out += EXTRA
    return out


class Line:
    def __init__(self, device, baud, parity, stop, timeout):
        import serial
        self.pty = os.path.realpath(device).startswith("/dev/pts/")
        self.s = serial.Serial(device, baudrate=baud, bytesize=8,
                               parity="N" if self.pty else parity, stopbits=stop,
                               timeout=timeout)
        self.baud, self.parity, self.stop = baud, parity, stop
        self.t15, self.t35 = t15_t35(baud, parity, stop)
        self.char = char_s(baud, parity, stop)
        self.timeout = timeout
        self.silence = timeout

    def _quiet(self):
        # The bus is silent for t3.5 before a request; whatever came late is dropped.
        time.sleep(self.t35 * 1.5)
        self.s.reset_input_buffer()

    def send(self, data, split=None, gap=0.0):
        self._quiet()
        if split is None:
            self.s.write(data)
        else:
            self.s.write(data[:split])
            self.s.flush()
            if gap:
                time.sleep(gap)
            self.s.write(data[split:])
        self.s.flush()
        return time.perf_counter()

    def reply(self, expect_fc):
        """(frame bytes or None, what is wrong or None, seconds). Reads by length."""
        t0 = time.perf_counter()
        head = self.s.read(2)
        if len(head) < 2:
            return None, "no reply", time.perf_counter() - t0
        if head[1] == expect_fc | 0x80:
            rest = self.s.read(3)
        elif head[1] == expect_fc and expect_fc in (3, 4):
            n = self.s.read(1)
            rest = n + (self.s.read(n[0] + 2) if n else b"")
        else:
            time.sleep(self.t35 * 2)
            rest = self.s.read(self.s.in_waiting)
            return head + rest, "function %d in reply, expected %d" % (head[1], expect_fc), \
                time.perf_counter() - t0
        data = head + rest
        dt = time.perf_counter() - t0
        if len(data) < 5 or crc16(data[:-2]) != data[-2] | data[-1] << 8:
            return data, "bad CRC or short frame (%d bytes)" % len(data), dt
        return data, None, dt

    def silent(self):
        """True when nothing arrives within the silence wait (--silence, default the
        reply time-out)."""
        self.s.timeout = self.silence
        try:
            return self.s.read(1) == b""
        finally:
            self.s.timeout = self.timeout


def read_regs(line, addr, fc, start, count):
    """(registers or None, error or None, seconds)."""
    t_sent = line.send(read_req(addr, fc, start, count))
    data, err, _ = line.reply(fc)
    dt = time.perf_counter() - t_sent
    if err:
        return None, err, dt
    if data[0] != addr:
        return None, "reply from address %d" % data[0], dt
    if data[1] & 0x80:
        return None, "exception %02d" % data[2], dt
    if data[2] != 2 * count or len(data) != 5 + 2 * count:
        return None, "byte count %d for %d registers" % (data[2], count), dt
    return [data[3 + 2 * i] << 8 | data[4 + 2 * i] for i in range(count)], None, dt


def exception_of(line, addr, pdu_bytes):
    line.send(frame(bytes((addr,)) + pdu_bytes))
    data, err, _ = line.reply(pdu_bytes[0])
    if err:
        return err
    if data[1] == pdu_bytes[0] | 0x80:
        return "exception %02d" % data[2]
    return "a normal reply"


def percentile(sorted_vals, p):
    """Nearest-rank percentile."""
    if not sorted_vals:
        return float("nan")
    k = max(1, -(-p * len(sorted_vals) // 100))
    return sorted_vals[int(k) - 1]


class Report:
    def __init__(self):
        self.checks = []

    def add(self, name, ok, detail=""):
        self.checks.append((name, ok, detail))

    @property
    def ok(self):
        return all(c[1] for c in self.checks)

    def lines(self):
        return ["%s  %s%s" % ("PASS" if ok else "FAIL", name, (": " + d) if d else "")
                for name, ok, d in self.checks]


def settings_check(line, addr, rep):
    """The meter's own port settings must match this line (config 0xC040 / 0xC050)."""
    ports = []
    for name, base in (("A", 0xC040), ("B", 0xC050)):
        regs, err, _ = read_regs(line, addr, 3, base, 7)
        if err:
            rep.add("line settings", False, "config block of RS485 %s unreadable (%s)" % (name, err))
            return
        _, en, a, bhi, blo, par, stop = regs
        ports.append((name, en, a, bhi << 16 | blo, "NEO"[par] if par < 3 else "?", stop))
    want = (addr, line.baud, line.parity, line.stop)
    desc = ", ".join("%s: %s address %d %d 8%s%d" % (n, "on" if en else "off", a, b, p, s)
                     for n, en, a, b, p, s in ports)
    hit = [n for n, en, a, b, p, s in ports if en and (a, b, p, s) == want]
    rep.add("line settings", bool(hit),
            ("RS485 %s matches" % hit[0]) if hit else
            "no enabled RS485 port of the meter is set to address %d %d 8%s%d (%s)"
            % (addr, line.baud, line.parity, line.stop, desc))


def run(a, out=sys.stdout, err=sys.stderr):
    rep = Report()
    try:
        line = Line(a.device, a.baud, a.parity, a.stop, a.timeout)
    except Exception as e:       # pyserial's SerialException and OSError
        print("ERROR cannot open %s: %s" % (a.device, e), file=err)
        return 2, rep
    if a.silence:
        line.silence = a.silence
    blks = blocks()
    # First contact: when the first block gets no good reply at all, say what to check.
    regs, e, _ = read_regs(line, a.address, blks[0][1], blks[0][2], blks[0][3])
    if e:
        rep.add("contact", False, "%s from address %d at %d 8%s%d: check baud, parity, "
                "stop bits, address and the A/B wires" % (e, a.address, a.baud, a.parity, a.stop))
        return 1, rep
    if line.pty and a.parity != "N":
        print("note: %s is a pty: opened with parity N (a pty carries bytes, not bits)"
              % a.device, file=out)
    settings_check(line, a.address, rep)
    times = []
    fails = {}
    total = a.count * len(blks)
    show = a.progress or (err.isatty() and a.count > 1)
    done = 0
    for _ in range(a.count):
        for name, fc, start, count in blks:
            regs, e, dt = read_regs(line, a.address, fc, start, count)
            done += 1
            if e:
                fails.setdefault((name, fc, start, count), e)
            else:
                times.append(dt)
            if show and (done % 8 == 0 or done == total):
                w = 30 * done // total
                err.write("\r[%s%s] %d/%d requests" % ("#" * w, "." * (30 - w), done, total))
                err.flush()
    if show:
        err.write("\n")
    for (name, fc, start, count), e in sorted(fails.items()):
        rep.add("%s FC%02d %d+%d" % (name, fc, start, count), False, e)
    rep.add("maps read", not fails, "%d blocks x %d rounds, %d replies good"
            % (len(blks), a.count, len(times)))
    # Exceptions (Modbus Application Protocol 7): 02 outside every map, 01 unknown fc.
    used = [(s, s + n) for _, fc, s, n in blks if fc == 3]
    hole = next(x for x in range(0x3000, 0xFFFF, 0x100) if all(not s <= x < e for s, e in used))
    got = exception_of(line, a.address, bytes((3, hole >> 8, hole & 0xFF, 0, 1)))
    rep.add("illegal address -> 02", got == "exception 02", "FC03 at 0x%04X: %s" % (hole, got))
    got = exception_of(line, a.address, bytes((0x41, 0, 0, 0, 1)))
    rep.add("illegal function -> 01", got == "exception 01", "FC 0x41: %s" % got)
    line.send(read_req(0, 3, blks[0][2], 1))
    rep.add("broadcast gets no reply", line.silent(), "FC03 to address 0")
    other = 1 if a.address != 1 else 2
    line.send(read_req(other, 3, blks[0][2], 1))
    rep.add("other address gets no reply", line.silent(), "FC03 to address %d" % other)
    # Silent intervals (spec 2.5.1.1).
    req = read_req(a.address, 3, blks[0][2], 2)
    line.send(req, split=3)
    data, e, _ = line.reply(3)
    rep.add("gaps below t1.5 inside a frame: one frame", e is None and data[0] == a.address,
            e or "answered")
    # Ten times t3.5, at least 20 ms; 300 ms on a pty: the host is no real-time system,
    # and a firmware process held off the CPU longer than the gap reads both parts at once.
    gap = max(10 * line.t35, 0.3 if line.pty else 0.02)
    line.send(req, split=3, gap=gap)
    quiet = line.silent()
    regs, e, _ = read_regs(line, a.address, 3, blks[0][2], 2)
    rep.add("silence > t3.5 inside a frame: discarded, next frame answered",
            quiet and e is None,
            "gap %.1f ms: %s, then %s" % (gap * 1000, "no reply" if quiet else "a reply",
                                          e or "answered"))
    ts = sorted(times)
    rep.add("response times", bool(ts), "p50 %.1f ms  p90 %.1f ms  p99 %.1f ms  max %.1f ms (%d)"
            % tuple([percentile(ts, p) * 1000 for p in (50, 90, 99)]
                    + [(ts[-1] if ts else 0) * 1000, len(ts)]))
    return (0 if rep.ok else 1), rep


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", required=True, help="serial device (USB-RS485 adapter, pty)")
    ap.add_argument("--baud", type=int, default=38400,
                    choices=(9600, 19200, 38400, 57600, 115200))
    ap.add_argument("--parity", default="N", choices=("N", "E", "O"))
    ap.add_argument("--stop", type=int, default=2, choices=(1, 2))
    ap.add_argument("--address", type=int, default=1)
    ap.add_argument("--count", type=int, default=1, help="rounds over every map")
    ap.add_argument("--timeout", type=float, default=1.0, help="reply time-out, s")
    ap.add_argument("--silence", type=float, default=None,
                    help="how long no reply counts as none, s (default: --timeout)")
    ap.add_argument("--progress", action="store_true", help="progress bar even off a tty")
    a = ap.parse_args(argv)
    if not 1 <= a.address <= 247:
        ap.error("--address must be 1..247, got %d" % a.address)
    if a.count < 1:
        ap.error("--count must be >= 1, got %d" % a.count)
    code, rep = run(a)
    print("RS485 bench: %s %d 8%s%d address %d" % (a.device, a.baud, a.parity, a.stop, a.address))
    for ln in rep.lines():
        print(ln)
    if code != 2:
        bad = [c[0] for c in rep.checks if not c[1]]
        print("RESULT PASS" if code == 0 else "RESULT FAIL (%d of %d checks: %s)"
              % (len(bad), len(rep.checks), ", ".join(bad)))
    return code


if __name__ == "__main__":
    sys.exit(main())
