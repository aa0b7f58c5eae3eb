#!/usr/bin/env python3
"""Download the load curve and the KSEM 5-minute log over Modbus TCP into CSV, and draw
a PNG (matplotlib, when installed).

    python tools/records_dump.py --host 127.0.0.1 --port 5020 --out DIR [--unit 1]
                                 [--since UTC_S] [--no-png]

Writes DIR/loadcurve.csv, DIR/ksemlog.csv and DIR/records.png. Registers: README
"Records" (0xCC00 load curve, 0xCE00 KSEM log; docs/registers/records.md). For each
block it reads the header, then walks the ring from the oldest record (or, with
--since, from the first record stamped at or after it: the time select) two records
per window, writing the select and reading the window; a record whose seq is not the
one selected (another master moved the select, or the ring wrapped under us) is read
again once, then skipped.

Load-curve rows carry the counters at each boundary and, from the difference with the
previous record (consecutive seq, no gap flag), the period's averages: P+ and P- (kW),
reactive per quadrant Q1..Q4 (kvar) and tg phi = (Q1 + Q2 - Q3 - Q4) / (P+ - P-)
(signed, Enedis DTR 4.4.4: Tg = Pr / Pa; empty when the net active power is 0).
"""
import argparse
import csv
import os
import struct
import sys
import time

from pymodbus.client import ModbusTcpClient

LC_BASE = 0xCC00
KS_BASE = 0xCE00
HEAD = 16
FLAGS = ((1, "incomplete"), (2, "gap"), (4, "untimed"), (8, "clock_set"), (16, "boot"))
COUNTERS = ("active_import", "active_export", "reactive_q1", "reactive_q2", "reactive_q3",
            "reactive_q4")
BLOCKS = ("l1", "l2", "l3", "total")


def flag_text(f):
    return "+".join(n for b, n in FLAGS if f & b)


def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)) if t else ""


class Reader:
    def __init__(self, client, unit):
        self.c = client
        self.unit = unit

    def regs(self, addr, n):
        r = self.c.read_holding_registers(addr, count=n, device_id=self.unit)
        if r.isError():
            raise IOError("read 0x%04X x%d: %s" % (addr, n, r))
        return r.registers

    def write(self, addr, vals):
        r = self.c.write_registers(addr, vals, device_id=self.unit)
        if r.isError():
            raise IOError("write 0x%04X: %s" % (addr, r))

    def header(self, base):
        h = self.regs(base, HEAD)
        return {"stored": h[0], "newest": h[1] << 16 | h[2], "size": h[3],
                "oldest": h[4] << 16 | h[5], "period_s": h[10], "window": h[11],
                "rec_regs": h[12]}

    def records(self, base, since=None):
        """Raw records (bytes, as stored) of the ring at base, oldest first."""
        h = self.header(base)
        if not h["stored"]:
            return []
        first = h["oldest"]
        if since is not None:
            r = self.c.write_registers(base + 8, [since >> 16 & 0xFFFF, since & 0xFFFF],
                                       device_id=self.unit)
            if r.isError():
                return []               # exception 03: nothing at or after `since`
            s = self.regs(base + 6, 2)
            first = s[0] << 16 | s[1]
        n, w = h["rec_regs"], h["window"]
        out = []
        seq = first
        newest = h["newest"]
        while seq <= newest:
            for _ in range(2):
                self.write(base + 6, [seq >> 16, seq & 0xFFFF])
                regs = self.regs(base + HEAD, n * w)
                if (regs[0] << 16 | regs[1]) == seq:
                    break
            for k in range(w):
                r = regs[k * n:(k + 1) * n]
                s = r[0] << 16 | r[1]
                if s == seq + k and s <= newest:
                    out.append(struct.pack(">%dH" % n, *r))
            seq += w
        return out


def lc_rows(raw):
    rows = []
    prev = None
    for b in raw:
        seq, utc, fl, pmin, u1, u2, u3, obs = struct.unpack_from(">IIHHHHHH", b, 0)
        e = [hi * 1000000 + lo for hi, lo in
             (struct.unpack_from(">II", b, 20 + 8 * k) for k in range(6))]
        row = {"seq": seq, "utc": utc, "time": iso(utc), "flags": flag_text(fl),
               "period_min": pmin, "u_l1_v": u1 / 100, "u_l2_v": u2 / 100, "u_l3_v": u3 / 100,
               "observed_s": obs}
        for k, name in enumerate(COUNTERS):
            row[name + "_wh"] = e[k] / 1000
        # the period's averages: counter difference over the period's length
        if prev is not None and prev[0] == seq - 1 and not fl & 2:
            dt = (utc - prev[1]) if utc and prev[1] else pmin * 60
            d = [(e[k] - prev[2][k]) * 3.6 / dt / 1000 for k in range(6)]   # kW, kvar
            row.update({"p_import_kw": round(d[0], 4), "p_export_kw": round(d[1], 4)})
            for q in range(4):
                row["q%d_kvar" % (q + 1)] = round(d[2 + q], 4)
            p = d[0] - d[1]
            row["tg_phi"] = round((d[2] + d[3] - d[4] - d[5]) / p, 4) if p else ""
        rows.append(row)
        prev = (seq, utc, e)
    return rows


LC_FIELDS = (["seq", "utc", "time", "flags", "period_min", "u_l1_v", "u_l2_v", "u_l3_v",
              "observed_s"] + [n + "_wh" for n in COUNTERS] +
             ["p_import_kw", "p_export_kw", "q1_kvar", "q2_kvar", "q3_kvar", "q4_kvar",
              "tg_phi"])


def ks_rows(raw):
    rows = []
    for b in raw:
        seq, utc, fl, obs = struct.unpack_from(">IIHH", b, 0)
        pi = struct.unpack_from(">4I", b, 12)
        pe = struct.unpack_from(">4I", b, 28)
        q = struct.unpack_from(">4i", b, 44)
        u = struct.unpack_from(">3H", b, 60)
        i = struct.unpack_from(">3I", b, 66)
        f = struct.unpack_from(">H", b, 78)[0]
        row = {"seq": seq, "utc": utc, "time": iso(utc), "flags": flag_text(fl),
               "observed_s": obs, "f_hz": f / 1000}
        for k, n in enumerate(BLOCKS):
            row["p_import_%s_w" % n] = pi[k]
            row["p_export_%s_w" % n] = pe[k]
            row["q_%s_var" % n] = q[k]
        for k in range(3):
            row["u_l%d_v" % (k + 1)] = u[k] / 100
            row["i_l%d_a" % (k + 1)] = i[k] / 100
        rows.append(row)
    return rows


KS_FIELDS = (["seq", "utc", "time", "flags", "observed_s"] +
             ["p_import_%s_w" % n for n in BLOCKS] + ["p_export_%s_w" % n for n in BLOCKS] +
             ["q_%s_var" % n for n in BLOCKS] + ["u_l1_v", "u_l2_v", "u_l3_v"] +
             ["i_l1_a", "i_l2_a", "i_l3_a", "f_hz"])


def write_csv(path, fields, rows):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") for k in fields})


def plot(path, lc, ks):
    """records.png: load curve P+/P- and Q1..Q4 per period, KSEM log P import/export.
    False when matplotlib is not installed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(3, 1, figsize=(10, 9), sharex=False)
    pts = [r for r in lc if r.get("p_import_kw") is not None and "p_import_kw" in r]
    x = [r["seq"] for r in pts]
    ax[0].step(x, [r["p_import_kw"] for r in pts], where="pre", label="P+ (import)")
    ax[0].step(x, [r["p_export_kw"] for r in pts], where="pre", label="P- (export)")
    ax[0].set_ylabel("kW")
    ax[0].set_title("Load curve: average power per period")
    ax[0].legend()
    for q in range(1, 5):
        ax[1].step(x, [r["q%d_kvar" % q] for r in pts], where="pre", label="Q%d" % q)
    ax[1].set_ylabel("kvar")
    ax[1].set_title("Load curve: average reactive power per quadrant")
    ax[1].legend()
    xs = [r["seq"] for r in ks]
    ax[2].step(xs, [r["p_import_total_w"] for r in ks], where="pre", label="P import")
    ax[2].step(xs, [r["p_export_total_w"] for r in ks], where="pre", label="P export")
    ax[2].set_ylabel("W")
    ax[2].set_xlabel("record seq")
    ax[2].set_title("KSEM log: 5-minute averages")
    ax[2].legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=5020)
    ap.add_argument("--unit", type=int, default=1)
    ap.add_argument("--out", default="records")
    ap.add_argument("--since", type=int, default=None, help="UTC s: records from then on")
    ap.add_argument("--no-png", action="store_true")
    a = ap.parse_args(argv)
    os.makedirs(a.out, exist_ok=True)
    c = ModbusTcpClient(a.host, port=a.port, timeout=5)
    if not c.connect():
        print("cannot connect to %s:%d" % (a.host, a.port), file=sys.stderr)
        return 1
    try:
        rd = Reader(c, a.unit)
        lc = lc_rows(rd.records(LC_BASE, a.since))
        ks = ks_rows(rd.records(KS_BASE, a.since))
    finally:
        c.close()
    write_csv(os.path.join(a.out, "loadcurve.csv"), LC_FIELDS, lc)
    write_csv(os.path.join(a.out, "ksemlog.csv"), KS_FIELDS, ks)
    png = not a.no_png and plot(os.path.join(a.out, "records.png"), lc, ks)
    print("load curve: %d records, KSEM log: %d records%s" % (
        len(lc), len(ks), ", records.png" if png else " (no PNG: matplotlib missing)"
        if not a.no_png else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
