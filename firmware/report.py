"""Human and machine views of a Snapshot: a JSON-ready dict and a terminal table.

    from firmware.report import snapshot_dict, table
    json.dump(snapshot_dict(meter.front), f)
    print(table(meter.front))

Not for the hot path (allocates); used once per second by the host run and by tools.
Values stay exact integers in the units named by their keys (snapshot.py).
"""
from firmware.snapshot import (BLOCKS, NQ, NE, PHASE_NAMES, ENERGY_NAMES, INST_NAMES,
                               U_MV, I_MA, P_MW, Q_MVAR, S_MVA, PF_E4, F_MHZ, QUADRANT,
                               TOTAL, E_ACTIVE_IMPORT, E_ACTIVE_EXPORT, E_REACTIVE_Q1,
                               POWER_UNIT_MW)

_ENERGY_UNITS = ("mwh", "mwh", "mvarh", "mvarh", "mvarh", "mvarh", "mvah", "mvah")


def snapshot_dict(snap):
    phases = {}
    energy = {}
    for n, blk in enumerate(BLOCKS):
        name = PHASE_NAMES[n]
        phases[name] = {INST_NAMES[j]: snap.inst[blk + j] for j in range(NQ)}
        for j in (P_MW, Q_MVAR, S_MVA):     # internal unit POWER_UNIT_MW -> mW keys
            phases[name][INST_NAMES[j]] *= POWER_UNIT_MW
        energy[name] = {"%s_%s" % (ENERGY_NAMES[k], _ENERGY_UNITS[k]): snap.energy_mwh(blk, k)
                        for k in range(NE)}
    return {"seq": snap.seq, "t_ms": snap.t_ms, "window_us": snap.window_us,
            "status": snap.status, "events": snap.events,
            "phases": phases, "energy": energy}


def _fix(v, div, width, dec):
    """Integer v / div as a fixed-point string without floats (exact)."""
    neg = v < 0
    v = -v if neg else v
    whole, frac = divmod(v, div)
    s = str(whole)
    if dec:
        s += "." + ("%0*d" % (len(str(div)) - 1, frac))[:dec]
    s = ("-" if neg else "") + s
    return " " * (width - len(s)) + s


def table(snap):
    inst = snap.inst
    rows = ["        U/V      I/A       P/W     Q/var      S/VA      PF  quad"]
    for n, blk in enumerate(BLOCKS):
        rows.append("%-5s%s%s%s%s%s%s%5d" % (
            PHASE_NAMES[n],
            _fix(inst[blk + U_MV], 1000, 8, 1) if blk != TOTAL else "        ",
            _fix(inst[blk + I_MA], 1000, 9, 3),
            _fix(inst[blk + P_MW], 1000 // POWER_UNIT_MW, 10, 1),
            _fix(inst[blk + Q_MVAR], 1000 // POWER_UNIT_MW, 10, 1),
            _fix(inst[blk + S_MVA], 1000 // POWER_UNIT_MW, 10, 1),
            _fix(inst[blk + PF_E4], 10000, 8, 3),
            inst[blk + QUADRANT]))
    rows.append("f = %s Hz   cycle %d   status 0x%02x   events %d" % (
        _fix(inst[F_MHZ], 1000, 0, 3), snap.seq, snap.status, snap.events))
    rows.append("energy kWh      import      export   kvarh Q1       Q2       Q3       Q4")
    for n, blk in enumerate(BLOCKS):
        e = [snap.energy_mwh(blk, k) for k in range(E_REACTIVE_Q1 + 4)]
        rows.append("%-10s%s%s %s%s%s%s" % (
            PHASE_NAMES[n], _fix(e[E_ACTIVE_IMPORT], 1000000, 12, 3),
            _fix(e[E_ACTIVE_EXPORT], 1000000, 12, 3),
            _fix(e[2], 1000000, 10, 3), _fix(e[3], 1000000, 9, 3),
            _fix(e[4], 1000000, 9, 3), _fix(e[5], 1000000, 9, 3)))
    return "\n".join(rows)
