"""What the host run shows (issue 9 item 8): rounding, the live table's columns, the
status legend and events by name, and on a terminal a live block redrawn in place
under the READY line and messages, with a header that keeps the endpoints and the
last scenario error.
"""
import json
import random
import re
import sys
import time
from decimal import Decimal, ROUND_DOWN, ROUND_HALF_UP
from pathlib import Path

from conftest import free_port, run_mpy
from hostproc import ROOT, PtyRun

SNAPSHOT_SRC = (ROOT / "firmware" / "snapshot.py").read_text()
EVENTS_SRC = (ROOT / "firmware" / "events.py").read_text()


def _dec(v, div, dec):
    """The reference: v / div rounded half away from zero (decimal module)."""
    q = (Decimal(v) / Decimal(div)).quantize(Decimal(1).scaleb(-dec), ROUND_HALF_UP)
    if q == 0:
        q = abs(q)                   # a value that rounds to zero has no sign
    return str(q)


def test_fix_rounds_half_away_from_zero():
    rnd = random.Random(9)
    cases = [(-9976, 10000, 3), (9975, 10000, 3), (-9975, 10000, 3), (-4, 10000, 3),
             (5, 10000, 3), (-5, 10000, 3), (1999999, 1000000, 3), (-1950, 1000, 1),
             (0, 1000, 1), (123456789012, 1000000, 3)]
    for _ in range(300):
        div, dec = rnd.choice([(1000, 1), (1000, 3), (10000, 3), (1000000, 3)])
        cases.append((rnd.randint(-10 ** rnd.randint(1, 12), 10 ** rnd.randint(1, 12)),
                      div, dec))
    got = run_mpy("""
import json
from boards.sim.report import fix
print('@@JSON'); print(json.dumps([fix(v, d, n) for v, d, n in %s]))
""" % json.dumps(cases))
    want = [_dec(v, d, n) for v, d, n in cases]
    assert got == want
    assert got[0] == "-0.998"       # the PF: the KSEM register says -0.998


def test_table_columns_legend_and_events():
    res = run_mpy("""
import json
from firmware import snapshot as S
from firmware.events import EventLog
from boards.sim.report import table, status_names, legend
s = S.Snapshot()
pu = getattr(S, "POWER_UNIT_MW", 1)
vals = {S.U_MV: 231049, S.I_MA: 12345, S.P_MW: -2880449 // pu, S.Q_MVAR: 201450 // pu,
        S.S_MVA: 2887550 // pu, S.PF_E4: -9976, S.QUADRANT: 3}
for k, v in vals.items():
    s.inst[S.L1 + k] = v
s.inst[S.F_MHZ] = 49995
s.seq = 77
for k in range(S.NE):          # counter k of L1 = (k+1) * 1.000999 kWh in mWh
    m = (k + 1) * 1000999
    i = S.counter_index(S.L1, k)
    s.e_hi[i], s.e_lo[i] = divmod(m, S.MILLI_PER_HI)
log = EventLog(8)
log.add(1000, 1); log.add(4000, 2); log.add(9500, 5)
st = S.ST_CHIP_OK | S.ST_STALE
rows = table(s, st, log, 10000)
print('@@JSON'); print(json.dumps({"rows": rows, "names": status_names(st),
    "legend": legend(), "pu": pu, "vals": {str(k): v for k, v in vals.items()},
    "ix": [S.U_MV, S.I_MA, S.P_MW, S.Q_MVAR, S.S_MVA, S.PF_E4, S.QUADRANT]}))
""")
    rows = res["rows"]
    pu = res["pu"]
    v = {int(k): x for k, x in res["vals"].items()}
    u, i, p, q, s_, pf, quad = res["ix"]
    l1 = rows[1].split()
    assert l1 == ["L1", _dec(v[u], 1000, 1), _dec(v[i], 1000, 3),
                  _dec(v[p] * pu, 1000, 1), _dec(v[q] * pu, 1000, 1),
                  _dec(v[s_] * pu, 1000, 1), "-0.998", "3"]
    assert rows[5].startswith("f = 49.995 Hz   cycle 77   status 0x05 chip_ok stale")
    # Energies: every kind, apparent import and export included, in kWh rounded down
    # as the register maps do (a counter never shows energy that was not counted).
    e_row = [r for r in rows if r.startswith("L1 ") and r is not rows[1]][0].split()
    assert e_row[1:] == [str((Decimal((k + 1) * 1000999) / 1000000).quantize(
        Decimal("0.001"), ROUND_DOWN)) for k in range(8)]
    assert e_row[1] == "1.000"
    assert "apparent kVAh" in rows[6] and rows[7].split()[-2:] == ["import", "export"]
    # Legend and status names come from snapshot.py's ST_* bits, all of them.
    bits = {int(b): n.lower() for n, b in
            re.findall(r"^ST_(\w+) = const\((\d+)\)", SNAPSHOT_SRC, re.M)
            if not n.endswith("SHIFT")}    # ST_LIVE_SHIFT is a shift, not a bit
    assert len(bits) >= 3
    for b, n in bits.items():
        assert "0x%02x %s" % (b, n) in res["legend"]
    assert res["names"] == "chip_ok stale"
    # Events by the registry's names, newest first, with their age.
    names = re.search(r"EVENT_NAMES = \(([^)]*)\)", EVENTS_SRC).group(1)
    names = re.findall(r'"(\w*)"', names)
    assert rows[-1] == "events 3 (newest first): %s 0.5s ago, %s 6.0s ago, %s 9.0s ago" \
        % (names[5], names[2], names[1])
    assert max(len(r) for r in rows) <= 80


def render(text):
    """A terminal, for the few controls the host run emits: CR, LF, cursor up (CSI n A),
    erase to the end of the screen (CSI J), autowrap off/on (CSI ? 7 l/h). The screen
    is tall enough that nothing scrolls off."""
    rows, r, c, k = [[]], 0, 0, 0
    while k < len(text):
        ch = text[k]
        if ch == "\x1b":
            m = re.match(r"\x1b\[(\??)(\d*)([A-Za-z])", text[k:])
            assert m, repr(text[k:k + 10])
            priv, n, op = m.groups()
            if op == "A":
                r = max(0, r - int(n or 1))
            elif op == "J" and not n:
                del rows[r][c:]
                del rows[r + 1:]
            else:
                assert priv == "?" and n == "7" and op in "hl", m.group(0)
            k += len(m.group(0))
            continue
        if ch == "\r":
            c = 0
        elif ch == "\n":
            r += 1
            if r == len(rows):
                rows.append([])
        else:
            row = rows[r]
            row.extend(" " * (c - len(row)))
            row[c:c + 1] = [ch]
            c += 1
        k += 1
    out = ["".join(x).rstrip() for x in rows]
    while out and not out[-1]:
        out.pop()
    return out


def test_terminal_keeps_ready_and_errors_on_screen(tmp_path):
    scn = tmp_path / "scn.json"
    scn.write_text(json.dumps({"phases": {"L1": {"v_rms": 230, "i_rms": 10,
                                                 "phi_deg": 183}}}))
    port = free_port()
    run_dir = tmp_path / "run"
    run = PtyRun([sys.executable, str(ROOT / "tools" / "host_run.py"), "--scenario", str(scn),
                  "--tcp-port", str(port), "--run-dir", str(run_dir)])
    try:
        run.wait_for("READY")
        run.pump(2.5)                                   # a few redraws
        scn.write_text('{"phases": {"L1": {"v_rms": "high"}}}')
        run.wait_for("SCENARIO ERROR", timeout=5)
        run.pump(2.2)
    finally:
        run.close()
    screen = render(run.out.decode())
    ready = "READY tcp=127.0.0.1:%d rs485_a=%s/rs485-a rs485_b=%s/rs485-b" % (
        port, run_dir, run_dir)
    assert screen[0] == ready                           # never wiped
    err = [n for n, l in enumerate(screen) if l.startswith("SCENARIO ERROR")]
    assert len(err) == 1 and "phases.L1.v_rms" in screen[err[0]]
    # Exactly one live block, below the messages, its header first.
    tops = [n for n, l in enumerate(screen) if l.startswith("meter: ")]
    assert len(tops) == 1 and tops[0] > err[0], screen
    block = screen[tops[0]:]
    assert block[0] == "meter: " + ready[len("READY "):]
    assert block[1] == "scenario: %s" % scn
    assert block[2] == "last " + screen[err[0]]
    assert sum(l.startswith("f = ") for l in screen) == 1
    assert any(l.startswith("status bits: 0x01 chip_ok") for l in block)
    # L2 and L3 are not connected on this 3P4W meter: logged as lost at the first cycle
    # (after boot and init: 4 events).
    assert block[-1].startswith("events 4 (newest first): phase_loss ")
    assert block[-1].split(", ")[-1].startswith("init ")
    # cos 183 deg = -0.99863: the PF shown is the snapshot's, rounded (not truncated).
    pf = [l for l in block if l.startswith("L1 ")][0].split()[6]
    pf_e4 = json.loads((run_dir / "snapshot.json").read_text())["phases"]["L1"]["pf_e4"]
    assert -pf_e4 % 10 >= 5, pf_e4      # else rounding and truncation would agree
    assert pf == _dec(pf_e4, 10000, 3) == "-0.999"


def test_config_mismatches_every_case():
    cases = [
        ({"ct_primary_a": 200}, {}, ["40 times too low"]),
        ({}, {"ct_enabled": True, "ct_primary_a": 100}, ["20 times too high"]),
        ({"ct_primary_a": 100}, {"ct_enabled": True, "ct_primary_a": 150}, ["x1.5"]),
        ({"ct_primary_a": 150}, {"ct_enabled": True, "ct_primary_a": 150}, []),
        ({}, {}, []),
        # L3 goes live only later in the timeline: still measured wrong from then on.
        ({"timeline": [{"at_s": 5, "phases": {"L3": {"v_rms": 230, "i_rms": 1}}}]},
         {"wiring": "1P2W"}, ["L3 live"]),
        ({"ct_primary_a": 200, "phases": {"L1": {"v_rms": 230}, "L2": {"v_rms": 230}}},
         {"wiring": "1P2W"}, ["40 times too low", "L2 live"]),
    ]
    got = run_mpy("""
import json
from boards.sim import scenario
from boards.sim.board import SimBoard
from firmware import config
out = []
for extra, met, _ in json.loads(%r):
    obj = {"phases": {"L1": {"v_rms": 230, "i_rms": 5}}}
    obj.update(extra)
    out.append(scenario.config_mismatches(scenario.parse(obj),
                                          config.validate({"metering": met},
                                                          SimBoard.CALIBRATION)))
print('@@JSON'); print(json.dumps(out))
""" % json.dumps(cases))
    for (_, _, want), warns in zip(cases, got):
        assert len(warns) == len(want), warns
        for w, needle in zip(warns, want):
            assert needle in w, (w, needle)
