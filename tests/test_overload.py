"""Inputs beyond the ADC's full scale (issue 9 item 5): the simulated chip clips as an
ADC does, its registers stay self-consistent (no wrapped current next to a huge power),
and the firmware flags it (status bit overload 0x40, event `overload`).

Truth: the front end's full scale (0.5 V peak at the ADC, ADE7880 datasheet): 353.9 V
rms through the 1001:1 divider, 88.39 A rms through the 2500:1 CT and 10 Ohm burden,
times N/5 with an external N:5 CT. A clipped sine is at most a square wave of the same
peak: rms at most sqrt 2 x the full-scale rms.
"""
import json
import math

V_FS = 0.5 / math.sqrt(2) * 1001
I_FS = 0.5 / math.sqrt(2) / 10 * 2500

RUN = r"""
import json
from tools.mpy.cycle_harness import Harness
from firmware.events import event_name
out = []
for v, i, phi, ct, cfg in json.loads(%r):
    s = {"frequency_hz": 50.0, "phases": {"L1": {"v_rms": v, "i_rms": i, "phi_deg": phi}}}
    if ct:
        s["ct_primary_a"] = ct
    h = Harness(s, cfg)
    h.run_windows(4)
    f = h.meter.front
    out.append({"u": f.inst[0], "i": f.inst[1], "p": f.inst[2], "s": f.inst[4],
                "status": f.status, "events": [(event_name(c), a) for t, c, a in
                                               h.app.events.recent_args()]})
print("@@JSON", json.dumps(out))
"""

ONE = {"metering": {"wiring": "1P2W"}}
CASES = [
    (230.0, 63.0, 30.0, None, ONE),      # rated: no overload
    (230.0, 88.0, 0.0, None, ONE),       # just under full scale
    (230.0, 100.0, 0.0, None, ONE),      # 13 % over: clipped
    (230.0, 500.0, 30.0, None, ONE),     # the case: read 106 A, 115 kW before
    (1000.0, 10.0, 0.0, None, ONE),      # voltage far over its 353.9 V full scale
    (230.0, 1500.0, 0.0, 100, {"metering": {"wiring": "1P2W", "ct_enabled": True,
                                            "ct_primary_a": 100}}),   # CT: FS 1,768 A
    (230.0, 2000.0, 0.0, 100, {"metering": {"wiring": "1P2W", "ct_enabled": True,
                                            "ct_primary_a": 100}}),
]


def test_clipping_is_flagged_and_readings_stay_consistent(mpy_any):
    res = mpy_any(RUN % json.dumps(CASES), timeout=300)
    for (v, i, phi, ct, _), r in zip(CASES, res):
        i_fs = I_FS * (ct / 5.0 if ct else 1.0)
        over = v > V_FS or i > i_fs
        assert bool(r["status"] & 0x40) == over, (v, i, r)
        names = [n for n, _ in r["events"]]
        assert names.count("overload") == (1 if over else 0), (v, i, r["events"])
        if over:
            arg = [a for n, a in r["events"] if n == "overload"][0]
            assert arg == (1 if v > V_FS else 0) | (2 if i > i_fs else 0)
        # Never beyond a square wave of the full-scale peak, never wrapped.
        u_v, i_a = r["u"] / 1000.0, r["i"] / 1000.0
        assert 0 < u_v <= min(v, V_FS * math.sqrt(2)) * 1.001
        assert 0 < i_a <= min(i, i_fs * math.sqrt(2)) * 1.001
        # Self-consistent: |P| <= S = U I (10 mW units), whatever clipped.
        p_w, s_va = r["p"] / 100.0, r["s"] / 100.0
        assert abs(p_w) <= s_va * 1.001
        assert abs(s_va - u_v * i_a) <= 0.002 * s_va + 1
        if not over:
            assert abs(i_a - i) <= 0.001 * i + 0.01 and abs(u_v - v) <= 0.001 * v
