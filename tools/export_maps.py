#!/usr/bin/env python3
"""Export the register maps the firmware serves as CSV and Markdown.

    python tools/export_maps.py                 # writes docs/registers/*.csv|md, docs/registers.md
    python tools/export_maps.py --out /tmp/d --config cfg.json --ident ident.json

Runs on CPython and imports the firmware's own table modules (with a stand-in for
`micropython.const`), builds the spaces exactly as the firmware does
(firmware/regmaps/build.py) and walks their rows, so the documents list what a read
serves. Scale factors depend on config (i_max_a, sunspec_sf): pass the device's config.
"""
import argparse
import csv
import json
import os
import sys
import types

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if "micropython" not in sys.modules:
    _shim = types.ModuleType("micropython")
    _shim.const = lambda x: x
    sys.modules["micropython"] = _shim
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from firmware import snapshot as snp  # noqa: E402
from firmware.regmaps import table as T  # noqa: E402
from firmware.regmaps import sunspec, sdm630  # noqa: E402
from firmware.regmaps.build import build_spaces, DEFAULT_IDENT  # noqa: E402

COLUMNS = ("address", "hex", "registers", "name", "type", "unit", "scale", "description")

# Snapshot quantity -> (unit, snapshot steps per unit, words).
_QTY = {
    snp.U_MV: ("V", 1000, "voltage"),
    snp.I_MA: ("A", 1000, "current"),
    snp.P_MW: ("W", 1000 // snp.POWER_UNIT_MW, "active power"),
    snp.Q_MVAR: ("var", 1000 // snp.POWER_UNIT_MW, "reactive power"),
    snp.S_MVA: ("VA", 1000 // snp.POWER_UNIT_MW, "apparent power"),
    snp.PF_E4: ("", 10000, "power factor"),
    snp.ANGLE_CDEG: ("deg", 100, "phase angle"),
    snp.F_MHZ: ("Hz", 1000, "frequency"),
    snp.QUADRANT: ("", 1, "quadrant"),
}
# What the snapshot's total block holds (firmware/snapshot.py).
_TOTAL_NOTE = {snp.U_MV: " (mean of the live phases: those above 50 V)", snp.I_MA: " (sum of the phases)",
               snp.S_MVA: " (arithmetic sum of the phases)", snp.F_MHZ: " (measured on L1)"}
_E_UNIT = ("Wh", "Wh", "varh", "varh", "varh", "varh", "VAh", "VAh")
_E_WORDS = ("active energy import", "active energy export", "reactive energy Q1",
            "reactive energy Q2", "reactive energy Q3", "reactive energy Q4",
            "apparent energy import (P >= 0)", "apparent energy export (P < 0)")
_ROMAN = ("", "I", "II", "III", "IV")
_NI_TEXT = {T.I16: "0x8000", T.U16: "0xFFFF", T.U32: "0xFFFFFFFF", T.I32: "0x80000000",
            T.ACC32: "0", T.SSF: "0x8000", T.BF32: "0xFFFFFFFF", T.F32: "NaN"}


def _block(i):
    return snp.PHASE_NAMES[i // snp.NQ]


def _num(x):
    s = ("%.6f" % x).rstrip("0").rstrip(".")
    return s or "0"


def _sf_names():
    out = {}
    for p in sunspec._M203:
        if p[5]:
            out[p[0]] = p[5]
    for group in sunspec._M203_E:
        for name, _ in group[:-1]:
            for sfx in ("", "PhA", "PhB", "PhC"):
                out[name + sfx] = group[-1]
    return out


def _mask_words(mask):
    return " + ".join(_E_WORDS[k] for k in range(snp.NE) if mask >> k & 1)


def describe(row, pct_pf=False, sf_of=None, sf_val=None):
    """(unit, scale, description) of one row, from its source and divisor only."""
    addr, typ, kind, a, b, div, name = row
    unit, scale, desc = "", "", ""
    if kind in (T.INST, T.IMP, T.EXP, T.ANGLE):
        q = a % snp.NQ
        u, per, words = _QTY[q]
        if q == snp.PF_E4 and pct_pf:
            u, per = "%", 100
        blk = _block(a)
        if kind == T.INST:
            desc = "%s %s" % (blk, words)
            if blk == "total":
                desc += _TOTAL_NOTE.get(q, "")
        elif kind == T.ANGLE:
            desc = "%s %s: current lag behind voltage, -180..180" % (blk, words)
        elif a == b:
            part = "import part: value if >= 0, else 0" if kind == T.IMP else \
                "export part: -value if < 0, else 0"
            desc = "%s %s, %s" % (blk, words, part)
        else:
            desc = "%s %s while P %s 0, else 0" % (blk, words, ">=" if kind == T.IMP else "<")
        unit, scale = u, div / per
    elif kind == T.PQANGLE:
        desc = ("%s phase angle: atan2(Q, P) of the %s powers, current lag behind voltage, "
                "-180..180" % (_block(a), _block(a)))
        unit, scale = "deg", div / 100000
    elif kind == T.QUAD:
        desc = "%s reactive power |Q| while in quadrant %s, else 0" % (_block(a), _ROMAN[b])
        unit, scale = "var", div / (1000 // snp.POWER_UNIT_MW)
    elif kind in (T.ENERGY, T.ESUM):
        if kind == T.ENERGY:
            desc = "%s %s" % (_block(a), _E_WORDS[b])
            k = b
        else:
            desc = "%s energy: %s" % (_block(a), _mask_words(b))
            k = [i for i in range(snp.NE) if b >> i & 1][0]
        unit, scale = _E_UNIT[k], div / 1000
        if scale >= 1000:
            unit, scale = "k" + unit, scale / 1000
        desc += " (counter, rounded down)" if typ != T.F32 else ""
    elif kind == T.NA:
        desc = "not measured by this meter: reads 0" + (".0" if typ == T.F32 else "")
    elif kind == T.NI:
        desc = "not implemented: reads %s" % _NI_TEXT.get(typ, "zeros")
    elif kind == T.TEXT:
        desc = "identity string %r" % a.rstrip(b"\0").decode()
    elif kind == T.EVT:
        desc = "meter events: bit 7 Missing_Sensor while the metering chip is down or stale"
    elif kind == T.CONST:
        if typ == T.SSF:
            desc = "scale factor, fixed when the map is built = %d" % a
        elif a == sunspec.SUNS:
            desc = 'constant "SunS" (0x%08X), SunSpec marker' % a
        else:
            desc = "constant = %d" % a + (" (0x%X)" % a if a > 255 else "")
    if typ == T.F32 and scale not in ("", 1):
        desc += " / %s" % _num(scale)      # e.g. the average current = sum / 3
        scale = 1
    if sf_of and name in sf_of:
        sfn = sf_of[name]
        scale_txt = "10^%s (%s = %d)" % (sfn, sfn, sf_val[sfn])
    else:
        scale_txt = _num(scale) if scale != "" else ""
    if typ == T.ACC32:
        desc += "; acc32, wraps mod 2^32"
    return unit, scale_txt, desc


def _obis(row):
    """KSEM OBIS code of a row of the internal map (anchors section 4), else ''."""
    addr = row[0]
    if addr < 512:
        return "OBIS %d.4.0: " % (addr // 2 + 1)
    if addr < 792:
        return "OBIS %d.8.0: " % ((addr - 512) // 4 + 1)
    return ""


def table_rows(space, lo, hi, obis=False, **kw):
    out = []
    for row in space.rows():
        if lo <= row[0] <= hi:
            unit, scale, desc = describe(row, **kw)
            if obis:
                desc = _obis(row) + desc
            out.append({"address": row[0], "hex": "0x%04X" % row[0],
                        "registers": T.SIZES[row[1]], "name": row[6],
                        "type": T.TYPE_NAMES[row[1]], "unit": unit, "scale": scale,
                        "description": desc})
    return out


def write_csv(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)


def write_md(path, title, intro, rows):
    with open(path, "w") as f:
        f.write("# %s\n\n%s\n\n" % (title, intro))
        f.write("| " + " | ".join(COLUMNS) + " |\n")
        f.write("|" + "---|" * len(COLUMNS) + "\n")
        for r in rows:
            f.write("| " + " | ".join(str(r[c]).replace("|", "\\|") for c in COLUMNS) + " |\n")


def groups_text(groups):
    return ", ".join("%d..%d" % g for g in groups)


MAPS = (
    ("ksem", "KSEM internal map and PnP block (FC 03)", 0, 39999, False,
     "Holding registers, big-endian words, high word first. Powers uint32 in 0.1 W/var/VA, "
     "rounded to nearest; energies uint64 in 0.1 Wh/varh/VAh, rounded down. OBIS index n: "
     "instantaneous at 2*(n-1), energy at 512 + 4*(n-1). Groups answered: {groups}; "
     "addresses inside a group that are not listed read 0; outside: exception 2. "
     "Reads may start or end inside a value (the words come from one snapshot)."),
    ("sunspec", "SunSpec models 1 and 203 (FC 03)", 40000, 49999, True,
     "Holding registers 40000..40178: \"SunS\", model 1 (L = 66), model 203 (L = 105), "
     "end marker. Value = raw x 10^SF; scale factors as built with the config shown. "
     "Instantaneous values round to nearest, energies round down; acc32 wraps mod 2^32. "
     "Not-implemented points read SunSpec's not-implemented values."),
    ("sdm630", "SDM630-compatible input registers (FC 04)", 0, 0xFFFF, False,
     "Input registers, IEEE 754 float32, high word first. Blocks answered: {groups}; "
     "unlisted addresses inside a block read 0.0; outside: exception 2. A read that starts "
     "or ends inside a float gives exception 2; more than {maxregs} registers, exception 3."),
)


# The config block (firmware/regmaps/device.py ROWS): what each special row does.
_CONFIG_NOTES = {
    "unlock": "write the device password (ASCII, NUL padded, from 0xC000): write access "
              "for this connection or RTU port; reads 0",
    "password": "write old password (16 registers) then new one (16), in one request; "
                "reads 0",
    "command": "1 restart, 2 network reset (DHCP on), 3 password reset, 4 factory reset; "
               "reads 0",
    "lockout_s": "seconds until unlock is accepted again (0: not locked out)",
    "failures": "wrong passwords since the last right one or lockout",
    "unlock_s": "how long an unlock lasts without writes, s",
    "pending": "accepted writes not yet persisted and applied",
    "committed": "config changes persisted and applied since boot (mod 65536)",
    "refused": "config changes refused with exception 03 since boot (mod 65536)",
}


def config_rows():
    from firmware.regmaps import device
    rows = []
    for addr, n, typ, path, enum in device.ROWS:
        if path in _CONFIG_NOTES:
            desc = _CONFIG_NOTES[path]
        elif typ == 9:
            desc = "KSEM preset: " + ", ".join("%d %s" % (i, p[0])
                                               for i, p in enumerate(device.PRESETS))
        elif enum:
            desc = "values: " + ", ".join("%d %s" % (i, v) for i, v in enumerate(enum))
        elif path.endswith("_SF"):
            desc = "-3..6; 0x8000 = follow the rating"
        elif path == "network.hostname":
            desc = "empty = derived from the serial"
        else:
            desc = ""
        rows.append({"address": addr, "hex": "0x%04X" % addr, "registers": n,
                     "name": path, "type": device.TYPE_NAMES[typ], "unit": "",
                     "scale": "", "description": desc})
    return rows


CONFIG_INTRO = ("Holding registers 0xC000..0xC3FF (FC 03 read, FC 06/16 write), big-endian. "
                "Reads are open; writes need an unlock (README, Configuration over Modbus). "
                "A name is the config key (firmware/config.py) the register holds; a write "
                "is validated (exception 03, nothing changed), persisted, then applied. "
                "Addresses inside the block that no row covers read 0.")


# The records block (firmware/regmaps/rings.py, firmware/records.py): load curve at
# 0xCC00, KSEM 5-minute log at 0xCE00. (offset, registers, type, name, unit, description)
_RING_HEAD = (
    (0, 1, "uint16", "stored", "", "records stored (at most the ring size)"),
    (1, 2, "uint32", "newest", "", "seq of the newest record (0: none)"),
    (3, 1, "uint16", "ring_size", "", "records the ring holds"),
    (4, 2, "uint32", "oldest", "", "seq of the oldest record stored (0: none)"),
    (6, 2, "uint32", "select", "", "read/write: seq of the window's first record; 0 = the "
     "newest two; above the newest: exception 03"),
    (8, 2, "uint32", "select_time", "s", "write UTC s: select = first record stamped at or "
     "after it (exception 03: none); reads the last written"),
    (10, 1, "uint16", "period_s", "s", "period of the records"),
    (11, 1, "uint16", "window_records", "", "records per window (2)"),
    (12, 1, "uint16", "record_registers", "", "registers per record"),
)
_FLAGS = "flags: 1 period incomplete, 2 gap before (missed boundaries), 4 untimed (UTC 0), " \
         "8 clock set in the period, 16 first since boot"
_LC_FIELDS = (
    (0, 2, "uint32", "seq", "", "record seq (0: none stored there)"),
    (2, 2, "uint32", "utc", "s", "UTC of the period's end boundary (0: untimed)"),
    (4, 1, "uint16", "flags", "", _FLAGS),
    (5, 1, "uint16", "period_min", "min", "period of this record"),
    (6, 1, "uint16", "u_l1", "10 mV", "average voltage L1 over the period"),
    (7, 1, "uint16", "u_l2", "10 mV", "average voltage L2"),
    (8, 1, "uint16", "u_l3", "10 mV", "average voltage L3"),
    (9, 1, "uint16", "observed_s", "s", "seconds observed since the previous record"),
) + tuple((10 + 4 * k, 4, "uint32 x2", n, "kWh + mWh",
           "counter at the boundary: whole kWh (kvarh) then the rest in mWh (0..999999)")
          for k, n in enumerate(("active_import", "active_export", "reactive_q1",
                                 "reactive_q2", "reactive_q3", "reactive_q4"))) + (
    (34, 1, "uint16", "ct_year_max", "0.1 A", "CT check: the year's largest 5-minute "
     "phase current"),
    (35, 1, "uint16", "ct_year_day", "day", "its year's first day (days since 1970)"),
)
_KS_FIELDS = (
    (0, 2, "uint32", "seq", "", "record seq (0: none stored there)"),
    (2, 2, "uint32", "utc", "s", "UTC of the period's end boundary (0: untimed)"),
    (4, 1, "uint16", "flags", "", _FLAGS),
    (5, 1, "uint16", "observed_s", "s", "seconds the averages cover"),
) + tuple((6 + 2 * k, 2, "uint32", "p_import_" + b, "W", "average active power, import")
          for k, b in enumerate(("l1", "l2", "l3", "total"))) + \
    tuple((14 + 2 * k, 2, "uint32", "p_export_" + b, "W", "average active power, export")
          for k, b in enumerate(("l1", "l2", "l3", "total"))) + \
    tuple((22 + 2 * k, 2, "int32", "q_" + b, "var", "average reactive power (Q1/Q2 +)")
          for k, b in enumerate(("l1", "l2", "l3", "total"))) + \
    tuple((30 + k, 1, "uint16", "u_" + b, "10 mV", "average voltage")
          for k, b in enumerate(("l1", "l2", "l3"))) + \
    tuple((33 + 2 * k, 2, "uint32", "i_" + b, "10 mA", "average current")
          for k, b in enumerate(("l1", "l2", "l3"))) + \
    ((39, 1, "uint16", "f", "mHz", "average frequency"),)


def records_rows():
    rows = []
    for base, what, fields in ((0xCC00, "load curve", _LC_FIELDS),
                               (0xCE00, "KSEM log", _KS_FIELDS)):
        for off, n, typ, name, unit, desc in _RING_HEAD:
            rows.append((base + off, n, typ, "%s %s" % (what, name), unit, desc))
        for off, n, typ, name, unit, desc in fields:
            rows.append((base + 16 + off, n, typ, "%s record.%s" % (what, name), unit,
                         desc + ("; window record 2 at +%d" % (len(fields) and
                                                               fields[-1][0] + fields[-1][1])
                                 if off == 0 else "")))
    return [{"address": a, "hex": "0x%04X" % a, "registers": n, "name": name, "type": typ,
             "unit": unit, "scale": "", "description": desc}
            for a, n, typ, name, unit, desc in rows]


RECORDS_INTRO = ("Holding registers 0xCC00..0xCFFF (FC 03; the select registers FC 06/16, "
                 "no unlock), big-endian, u32 high word first. Load curve at 0xCC00 "
                 "(5,760 records: 40 days at 10 minutes), KSEM 5-minute log at 0xCE00 "
                 "(4,320: 15 days). Each block: a header, then a window of two records "
                 "from the select (README, Records). A request must lie within one "
                 "block's served registers, else exception 02.")
CLOCK_INTRO = ("Holding registers 0xC800..0xCBFF (FC 03; the UTC time also FC 16, both "
                 "registers, after the config block's unlock at 0xC000: else exception 01), "
                 "big-endian, high word first (firmware/regmaps/records.py FIELDS). Clock "
                 "(UTC, kept by the device; local time from config time.tz), tariff class, "
                 "per-class energies, demand per class and billing period, loss-corrected "
                 "energies (README, Clock, tariffs and demand). Addresses in no row read 0.")


def clock_rows():
    from firmware.regmaps import records
    return [{"address": a, "hex": "0x%04X" % a, "registers": n, "name": name,
             "type": "uint64" if "u64" in unit else "int32" if "int32" in unit else
             "int16" if "int16" in unit else "uint32" if n == 2 else
             "uint16" if n == 1 else "block", "unit": unit, "scale": "", "description": ""}
            for a, n, name, unit in records.FIELDS]


def export(out_dir, ident=None, config=None):
    class _Meter:
        front = snp.Snapshot()

        def status_now(self):
            return self.front.status
    holding, inputs = build_spaces(_Meter(), ident, config, keep_rows=True)
    sf_val = sunspec.scale_factors(config or {})
    os.makedirs(os.path.join(out_dir, "registers"), exist_ok=True)
    index = []
    for key, title, lo, hi, is_sunspec, intro in MAPS:
        space = inputs if key == "sdm630" else holding
        kw = {"pct_pf": True, "sf_of": _sf_names(), "sf_val": sf_val} if is_sunspec else \
            {"obis": key == "ksem"}
        rows = table_rows(space, lo, hi, **kw)
        groups = [g for g in space.groups() if lo <= g[0] <= hi]
        intro = intro.format(groups=groups_text(groups),
                             maxregs=(config or {}).get("sdm630_max_regs", sdm630.MAX_REGS))
        write_csv(os.path.join(out_dir, "registers", key + ".csv"), rows)
        write_md(os.path.join(out_dir, "registers", key + ".md"), title, intro, rows)
        index.append((key, title, len(rows)))
    rows = config_rows()
    write_csv(os.path.join(out_dir, "registers", "config.csv"), rows)
    write_md(os.path.join(out_dir, "registers", "config.md"), "Configuration block",
             CONFIG_INTRO, rows)
    index.append(("config", "Configuration block", len(rows)))
    rows = records_rows()
    write_csv(os.path.join(out_dir, "registers", "records.csv"), rows)
    write_md(os.path.join(out_dir, "registers", "records.md"), "Records: load curve and "
             "KSEM log", RECORDS_INTRO, rows)
    index.append(("records", "Records: load curve and KSEM log", len(rows)))
    rows = clock_rows()
    write_csv(os.path.join(out_dir, "registers", "clock.csv"), rows)
    write_md(os.path.join(out_dir, "registers", "clock.md"),
             "Clock, tariffs and demand", CLOCK_INTRO, rows)
    index.append(("clock", "Clock, tariffs and demand", len(rows)))
    with open(os.path.join(out_dir, "registers.md"), "w") as f:
        f.write("# Register maps\n\nGenerated by `tools/export_maps.py` from the tables the "
                "firmware serves (firmware/regmaps/). Addresses are 0-based protocol "
                "addresses. Every read takes one metering snapshot, so a response never "
                "mixes two cycles. Sign convention: import positive; reactive Q1/Q2 "
                "positive (IEC 62053-23).\n\n")
        f.write("| map | rows | CSV |\n|---|---|---|\n")
        for key, title, n in index:
            f.write("| [%s](registers/%s.md) | %d | [%s.csv](registers/%s.csv) |\n"
                    % (title, key, n, key, key))
        f.write("\nIdentity used for this export: %s\n" % json.dumps(
            dict(DEFAULT_IDENT, **(ident or {})), sort_keys=True))
        f.write("\nConfig used for this export: %s\n" % json.dumps(config or {}, sort_keys=True))
    return index


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "docs"))
    ap.add_argument("--config", help="JSON file with the map config keys")
    ap.add_argument("--ident", help="JSON file with the identity keys")
    args = ap.parse_args(argv)
    config = json.load(open(args.config)) if args.config else None
    ident = json.load(open(args.ident)) if args.ident else None
    for key, title, n in export(args.out, ident, config):
        print("%s: %d rows" % (key, n))


if __name__ == "__main__":
    main()
