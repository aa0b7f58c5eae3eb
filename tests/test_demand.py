"""Maximum demand, overrun duration and the overrun warning (firmware/demand.py) against
hand-computed cases (Enedis digest 2.3: warning at k x Ps, k 0.8..1.0)."""
import datetime
import json

import pytest

RUN = """
from firmware.energy import EnergyRegisters
from firmware.demand import Demand
from firmware.events import EventLog
class Pin:
    def __init__(self): self.v = []
    def value(self, v): self.v.append(v)
e = EnergyRegisters(32)
pin = Pin()
ev = EventLog(16, 64)
d = Demand(e, ev, None, pin)
d.configure({'records': {'period_min': %d}, 'demand': {'ps_w': %r, 'k_pct': %d}})
out = {'warn': []}
t0 = %d
def run(seconds_watts, cls=0, month=0):
    # each second: the meter counts W x 1 s = W / 3.6 mWh (exact pWh), then a tick
    global t
    for w, n in seconds_watts:
        for _ in range(n):
            e.add(24, w * 10**12 // 3600)
            e.add(30, w * 10**12 // 3600)
            t += 1
            d.tick(t, month, cls, 1000)
            out['warn'].append(d.warning)
t = t0
d.tick(t, 0, 0, 0)
%s
out['max'] = list(d.v[0:12]); out['t'] = list(d.v[12:24]); out['over'] = list(d.v[24:36])
out['pin'] = pin.v; out['s5'] = d.s5_va; out['last'] = d.last_w
out['ev'] = [[c, a] for _, c, a in ev.recent_args()]
print('@@JSON'); import json; print(json.dumps(out))
"""
T0 = int(datetime.datetime(2026, 1, 5, 10, 0, tzinfo=datetime.timezone.utc).timestamp())


def test_max_and_overrun_hand_computed(mpy_any):
    # 10-min periods, Ps 36 kW in class 0. Period 1: 5 min at 30 kW + 5 min at 50 kW =
    # 40 kW average (over Ps: 600 s of overrun). Period 2: 30 kW flat. Period 3 (class 1,
    # Ps 0): 60 kW, a maximum of class 1 with no overrun.
    got = mpy_any(RUN % (10, [36000, 0, 0, 0, 0, 0], 90, T0, """
run([(30000, 300), (50000, 300)])
run([(30000, 599)])
run([(30000, 1)], cls=1)      # the boundary tick: class 1 from here
run([(60000, 600)], cls=1)
run([(0, 1)], cls=1)
"""))
    assert got["max"][0] == 40000 and got["t"][0] == T0       # current bill, class 0
    assert got["max"][2] == 60000 and got["t"][2] == T0 + 1200  # class 1
    assert got["over"][0] == 600 and got["over"][2] == 0
    assert got["last"] == 60000


@pytest.mark.parametrize("k", [80, 90, 100])
def test_warning_threshold(mpy_any, k):
    # Ps 10 kW, a steady 12 kW: the running power E / 600 s reaches k x Ps at
    # t = k x 10 / 12 x 600 s; the warning closes the second after it passes.
    got = mpy_any(RUN % (10, [10000, 0, 0, 0, 0, 0], k, T0, "run([(12000, 600)])"))
    first = got["warn"].index(True) + 1              # seconds into the period
    cross = k * 10000 * 600 / (100 * 12000)          # where 12 kW x t / 600 = k x Ps
    assert cross < first <= cross + 1
    assert got["pin"] == [1] and got["ev"] == [[36, 0]]


def test_warning_holds_one_period_then_opens(mpy_any):
    # a whole period at 9.5 kW (> 0.9 x 10 kW): closed through the next period (ICE rule),
    # which at 1 kW stays under; it opens at the following boundary
    got = mpy_any(RUN % (10, [10000, 0, 0, 0, 0, 0], 90, T0,
                         "run([(9500, 600)])\nrun([(1000, 600)])\nrun([(1000, 10)])"))
    w = got["warn"]
    assert w[567] is False and w[568] is True        # 9.5 kW x t / 600 > 9 kW: t > 568.4
    # tick i is second i + 1: period 1 closes at tick 599, period 2 at tick 1199
    assert w[599:1199] == [True] * 600 and w[1199:] == [False] * 11
    assert got["pin"] == [1, 0] and got["ev"] == [[36, 0], [37, 0]]


def test_billing_period_moves_to_previous(mpy_any):
    got = mpy_any(RUN % (5, [0] * 6, 90, T0, "run([(7000, 300)])\nrun([(1, 1)], month=1)"))
    assert got["max"][1] == 7000 and got["max"][0] == 0   # previous bill holds it
    assert [38, 0] in got["ev"]


def test_apparent_five_minutes(mpy_any):
    # 6 minutes: 1 min at 36 kVA then 5 at 10 kVA: the window of the last 5 minutes
    got = mpy_any(RUN % (10, [0] * 6, 90, T0, "run([(36000, 60), (10000, 300)])"))
    assert abs(got["s5"] - 10000) <= 1
    got = mpy_any(RUN % (10, [0] * 6, 90, T0, "run([(36000, 60), (10000, 240)])"))
    assert abs(got["s5"] - (36000 + 4 * 10000) // 5) <= 1
