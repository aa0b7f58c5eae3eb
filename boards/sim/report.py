"""Human and machine views of a Snapshot for the host run: a JSON-ready dict and the
live table.

    from boards.sim.report import snapshot_dict, table, status_names
    json.dump(snapshot_dict(meter.front), f)
    print("\\n".join(table(meter.front, meter.status_now(), app.events, now_ms)))

Host-only (allocates; strings); the firmware never imports it. snapshot.json keeps the
host contract's units (README: u_mv, p_mw, ...) whatever unit the snapshot stores:
units are read through firmware.snapshot's constants. The table rounds half away from
zero to the digits shown (PF -0.9976 shows -0.998, as the KSEM register reads);
energy counters round down, as the register maps do (never show energy not counted).
"""
try:
    from time import ticks_diff     # the board clock's ticks_ms wraps
except ImportError:                 # CPython tools
    def ticks_diff(a, b):
        return a - b

from firmware import snapshot as S
from firmware.events import event_name

# mW per unit of the snapshot's power quantities (P, Q, S); 1 while they are mW.
_PU = getattr(S, "POWER_UNIT_MW", 1)
# snapshot.json keys (the README's contract) with the snapshot index and unit factor.
_INST = (("u_mv", S.U_MV, 1), ("i_ma", S.I_MA, 1), ("p_mw", S.P_MW, _PU),
         ("q_mvar", S.Q_MVAR, _PU), ("s_mva", S.S_MVA, _PU), ("pf_e4", S.PF_E4, 1),
         ("angle_cdeg", S.ANGLE_CDEG, 1), ("f_mhz", S.F_MHZ, 1),
         ("quadrant", S.QUADRANT, 1))
_ENERGY_UNITS = ("mwh", "mwh", "mvarh", "mvarh", "mvarh", "mvarh", "mvah", "mvah")
# Status bits by value, named from the snapshot's ST_* constants (a new bit shows up
# here without an edit): ST_CHIP_OK -> "chip_ok".
_BITS = sorted((getattr(S, n), n[3:].lower()) for n in dir(S)
               if n.startswith("ST_") and not n.endswith("_SHIFT"))


def snapshot_dict(snap, status=None):
    """status: the status at write time (Meter.status_now(): stale once the snapshot
    is old); the snapshot's own without it."""
    phases = {}
    energy = {}
    inst = snap.inst
    for n, blk in enumerate(S.BLOCKS):
        name = S.PHASE_NAMES[n]
        phases[name] = {k: inst[blk + j] * f for k, j, f in _INST}
        energy[name] = {"%s_%s" % (S.ENERGY_NAMES[k], _ENERGY_UNITS[k]):
                        snap.energy_mwh(blk, k) for k in range(S.NE)}
    return {"seq": snap.seq, "t_ms": snap.t_ms, "window_us": snap.window_us,
            "status": snap.status if status is None else status, "events": snap.events,
            "phases": phases, "energy": energy}


def fix(v, div, dec, width=0, down=False):
    """Integer v / div with dec decimals, rounded half away from zero (towards zero
    with down), right-aligned in width; exact (no floats). A value that rounds to
    zero shows no sign."""
    step = 1
    for _ in range(dec):
        step *= 10
    q, r = divmod(abs(v) * step, div)
    if 2 * r >= div and not down:
        q += 1
    whole, frac = divmod(q, step)
    s = str(whole) + ("." + "%0*d" % (dec, frac) if dec else "")
    if v < 0 and q:
        s = "-" + s
    return " " * (width - len(s)) + s


def status_names(status):
    """The set bits of a status word by name, e.g. 'chip_ok stale'; 'none' if 0."""
    names = [name for bit, name in _BITS if status & bit]
    rest = status & ~sum(bit for bit, _ in _BITS)
    if rest:
        names.append("0x%02x" % rest)
    return " ".join(names) or "none"


def legend():
    return "status bits: " + "  ".join("0x%02x %s" % b for b in _BITS)


def events_line(events, now_ms, width=80):
    """The latest logged events by name and age, newest first, as many as fit."""
    line = "events %d (newest first):" % events.total
    if not events.total:
        return "events: none"
    sep = " "
    for t, c in reversed(events.recent()):
        part = "%s%s %ss ago" % (sep, event_name(c), fix(max(0, ticks_diff(now_ms, t)),
                                                         1000, 1))
        if len(line) + len(part) > width:
            break
        line += part
        sep = ", "
    return line


def table(snap, status, events, now_ms):
    """The live table as a list of lines (at most 80 columns), the last one the
    latest events."""
    inst = snap.inst
    rows = ["        U/V      I/A       P/W     Q/var      S/VA      PF  quad"]
    for n, blk in enumerate(S.BLOCKS):
        rows.append("%-5s%s%s%s%s%s%s%5d" % (
            S.PHASE_NAMES[n],
            fix(inst[blk + S.U_MV], 1000, 1, 8) if blk != S.TOTAL else " " * 8,
            fix(inst[blk + S.I_MA], 1000, 3, 9),
            fix(inst[blk + S.P_MW] * _PU, 1000, 1, 10),
            fix(inst[blk + S.Q_MVAR] * _PU, 1000, 1, 10),
            fix(inst[blk + S.S_MVA] * _PU, 1000, 1, 10),
            fix(inst[blk + S.PF_E4], 10000, 3, 8),
            inst[blk + S.QUADRANT]))
    rows.append("f = %s Hz   cycle %d   status 0x%02x %s" % (
        fix(inst[S.F_MHZ], 1000, 3), snap.seq, status, status_names(status)))
    rows.append("energy    active kWh      reactive kvarh by quadrant         apparent kVAh")
    rows.append("         import   export       Q1       Q2       Q3       Q4   import   export")
    for n, blk in enumerate(S.BLOCKS):
        rows.append("%-6s%s" % (S.PHASE_NAMES[n], "".join(
            fix(snap.energy_mwh(blk, k), 1000000, 3, 9, True) for k in range(S.NE))))
    rows.append(events_line(events, now_ms))
    return rows
