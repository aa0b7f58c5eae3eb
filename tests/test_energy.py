"""Energy counters against the integral of power over a simulated run.

Truth: the scenario's physics integrated here, E = sum over segments of V I cos(phi) dt
(and sin, and V I), between two window ends whose times the virtual clock gives
exactly. Tolerance: one chip LSB per phase (the sub-LSB remainder inside the chip's
first accumulation stage, 1.26e-4 Wh direct) plus the microsecond rounding of window
ends. Net (three-phase sum) and per-phase counting are both checked in a scenario where
L1 exports while L2 + L3 import more, and the net flips to export half-way.
"""
import json
import math

import pytest

LSB_WH = 0.4545624 / 3600      # xWATTHR LSB at WTHR 3, direct front end (datasheet eq. 26)

MIXED = {"frequency_hz": 50.0,
         "phases": {"L1": {"v_rms": 230.0, "i_rms": 9.0, "phi_deg": 175.0},    # PV export, Q2
                    "L2": {"v_rms": 231.0, "i_rms": 6.5, "phi_deg": 20.0},     # import, Q1
                    "L3": {"v_rms": 229.0, "i_rms": 4.0, "phi_deg": 340.0}},   # import, Q4
         "timeline": [{"at_s": 60.0, "phases": {"L1": {"i_rms": 20.0, "phi_deg": 190.0}}},
                      {"at_s": 120.0, "phases": {"L2": {"phi_deg": 100.0},     # L2 to Q2
                                                 "L3": {"i_rms": 0.5}}}]}

RUN = r"""
import json
from tools.mpy.cycle_harness import Harness
h = Harness(json.loads(%r), json.loads(%r))
h.run_windows(2)
t0 = h.clock.now_us()
e = h.meter.energy
p0 = [e.pico(i) for i in range(32)]
n = h.run_windows(%d)
t1 = h.clock.now_us()
p1 = [e.pico(i) for i in range(32)]
print("@@JSON", json.dumps({"t0": t0, "t1": t1, "n": n, "d": [b - a for a, b in zip(p0, p1)],
      "milli": [h.meter.front.energy_mwh(b, k) for b in (0, 9, 18, 27) for k in range(8)],
      "windows": h.meter.windows}))
"""


def segments(s, t0, t1):
    """(start_s, end_s, phases) pieces of the scenario inside [t0, t1] seconds."""
    cur = {k: dict(v) for k, v in s["phases"].items()}
    bounds = [(0.0, {k: dict(v) for k, v in cur.items()})]
    for step in s.get("timeline", []):
        for ph, fields in step.get("phases", {}).items():
            cur.setdefault(ph, {"v_rms": 0.0, "i_rms": 0.0, "phi_deg": 0.0}).update(fields)
        bounds.append((step["at_s"], {k: dict(v) for k, v in cur.items()}))
    out = []
    for i, (start, phases) in enumerate(bounds):
        end = bounds[i + 1][0] if i + 1 < len(bounds) else float("inf")
        a, b = max(start, t0), min(end, t1)
        if b > a:
            out.append((a, b, phases))
    return out


def expected(s, t0, t1, ratio=1.0):
    """Per phase and total: the eight counters' expected increments in Wh (varh, VAh)."""
    per = {ph: [0.0] * 8 for ph in ("L1", "L2", "L3", "total")}
    for a, b, phases in segments(s, t0, t1):
        dt_h = (b - a) / 3600.0
        tp = tq = ts = 0.0
        for ph in ("L1", "L2", "L3"):
            x = phases.get(ph)
            if not x:
                continue
            r = math.radians(x["phi_deg"])
            p = x["v_rms"] * x["i_rms"] * math.cos(r) * dt_h
            q = x["v_rms"] * x["i_rms"] * math.sin(r) * dt_h
            sv = x["v_rms"] * x["i_rms"] * dt_h
            add(per[ph], p, q, sv)
            tp, tq, ts = tp + p, tq + q, ts + sv
        add(per["total"], tp, tq, ts)
    return per


def add(c, p, q, s):
    if p > 0:
        c[0] += p
    else:
        c[1] += -p
    quad = int((math.degrees(math.atan2(q, p)) % 360) // 90)
    c[2 + quad] += abs(q)
    c[6 if p >= 0 else 7] += s


@pytest.mark.parametrize("windows", [1000])
def test_counters_equal_integral_of_power(mpy, windows):
    res = mpy(RUN % (json.dumps(MIXED), "null", windows), timeout=300)
    assert res["n"] == windows
    t0, t1 = res["t0"] / 1e6, res["t1"] / 1e6
    assert t1 - t0 == pytest.approx(windows * 0.2, abs=1e-3)     # 200 ms windows
    exp = expected(MIXED, t0, t1)
    names = ("L1", "L2", "L3", "total")
    for b, ph in enumerate(names):
        tol_wh = (3 if ph == "total" else 1) * LSB_WH * 1.01 + 1e-6 * 10
        for k in range(8):
            got_wh = res["d"][b * 8 + k] / 1e12
            want = exp[ph][k]
            assert abs(got_wh - want) <= tol_wh, (ph, k, got_wh, want)


def test_net_versus_per_phase(mpy):
    """L1 exports 2.1 kW while L2 + L3 import 2.3 kW: net import. Then L1 exports more."""
    s = {"frequency_hz": 50.0,
         "phases": {"L1": {"v_rms": 230.0, "i_rms": 9.13, "phi_deg": 180.0},
                    "L2": {"v_rms": 230.0, "i_rms": 6.0, "phi_deg": 0.0},
                    "L3": {"v_rms": 230.0, "i_rms": 4.0, "phi_deg": 0.0}},
         "timeline": [{"at_s": 30.0, "phases": {"L1": {"i_rms": 15.0}}}]}
    res = mpy(RUN % (json.dumps(s), "null", 300), timeout=300)
    t0, t1 = res["t0"] / 1e6, res["t1"] / 1e6
    d = [x / 1e12 for x in res["d"]]
    L1, L2, L3, T = (d[0:8], d[8:16], d[16:24], d[24:32])
    # Per phase: L1 only exports, L2/L3 only import.
    assert L1[0] == 0 and L1[1] > 0
    assert L2[1] == 0 and L3[1] == 0
    # Net: first 30 s import (2300 - 2099.9 W), then export (3450 - 2300 W).
    net_import = (2300.0 - 230.0 * 9.13) * (30.0 - t0) / 3600
    net_export = (230.0 * 15.0 - 2300.0) * (t1 - 30.0) / 3600
    assert T[0] == pytest.approx(net_import, abs=3 * LSB_WH)
    assert T[1] == pytest.approx(net_export, abs=3 * LSB_WH)
    # The per-phase sums are not the net: L1's export exceeds the total's export.
    assert L1[1] > T[1] + 1.0
    # And the net identity holds exactly: total (import - export) = sum of phases'.
    net_phases = sum(x[0] - x[1] for x in (L1, L2, L3))
    assert T[0] - T[1] == pytest.approx(net_phases, abs=1e-9)


def test_ct_ratio_and_single_phase_energy(mpy):
    s = {"frequency_hz": 50.0, "ct_primary_a": 400,
         "phases": {"L1": {"v_rms": 230.0, "i_rms": 300.0, "phi_deg": 30.0}}}
    cfg = {"metering": {"wiring": "1P2W", "ct_enabled": True, "ct_primary_a": 400}}
    res = mpy(RUN % (json.dumps(s), json.dumps(cfg), 300), timeout=300)
    t0, t1 = res["t0"] / 1e6, res["t1"] / 1e6
    exp = expected(s, t0, t1)
    d = [x / 1e12 for x in res["d"]]
    lsb = LSB_WH * 400 / 5
    assert d[0] == pytest.approx(exp["L1"][0], abs=1.01 * lsb)           # import
    assert d[2] == pytest.approx(exp["L1"][2], abs=1.01 * lsb)           # Q1
    assert d[6] == pytest.approx(exp["L1"][6], abs=1.01 * lsb)           # apparent
    assert d[24:32] == d[0:8]                                            # total = L1
    assert d[8:24] == [0.0] * 16                                         # L2, L3 unused
