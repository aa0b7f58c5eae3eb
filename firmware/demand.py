"""Maximum demand, overrun and its warning (Enedis digest 1.1, 2.1, 2.3), per tariff class
and billing period (current, previous; a billing period is a calendar month, local time).

    from firmware.demand import Demand
    d = Demand(meter.energy, events, clock, pin=getattr(board, "overrun_out", None))
    d.configure(cfg)            # records.period_min, demand.ps_w, demand.k_pct
    d.tick(utc_s, local_s, cls, dt_ms)   # once a second, in a task (never in the cycle)
    d.v[2 * cls + b], d.v[12 + ...], d.v[24 + ...]   # max W, its UTC, overrun s; b 0 current
                                                     # bill, 1 previous (_MAX_W, _MAX_T, ...)
    d.warning, d.s5_va          # overrun warning; apparent power, last 5 minutes

Integration periods are aligned to the clock (UTC :00, :10, ... for 10 min; every zone in
RULES is a whole number of hours off UTC) and need a valid time: while the time is
unknown nothing is integrated. At each period's end its average active import power
Pavg = E / T goes to the class in force at its start: a new maximum (with the period's
start time), and T more seconds of overrun when Pavg > Ps (the class's subscribed power,
0 = none). The warning (ICE-2Q/ICE-4Q contact, digest 2.3) closes as soon as the running
period's power, the energy so far over the whole period length, exceeds k x Ps (k 0.80..
1.00, default 0.90), and stays closed through the next period when a whole period
exceeded it; then it opens. The apparent power (BT > 36 kVA demand control) is the
apparent energy (import and export) over the last 5 whole minutes, recomputed each minute.
"""
from array import array
from micropython import const

from firmware import events as _ev

_CLASSES = const(6)
_E_IMPORT = const(24)          # firmware/snapshot.py: TOTAL block, E_ACTIVE_IMPORT
_E_VA = const(30)              # E_APPARENT_IMPORT; +1 E_APPARENT_EXPORT
_MILLI = const(1000000)
# One array for the lasting values (one heap object): per class c and bill b (0 current,
# 1 previous) at 2c + b: max power W, its period's start UTC, overrun s; then the bills'
# start UTC and the apparent mVAh of the last 5 minutes. (Private: firmware/rtime.py
# saves the whole array, firmware/regmaps/records.py reads it by these offsets.)
_MAX_W = const(0)
_MAX_T = const(12)
_OVER_S = const(24)
_BILL_T = const(36)
_MIN_VA = const(38)
# Demand._p: the totals at the last tick (hi, lo: import, VA import, VA export), then
# the current minute's slot in the 5, ms into it, its mVAh (an int array: no attributes)
_MI = const(6)
_MS = const(7)
_VA = const(8)


class Demand:
    def __init__(self, energy, events, clock, pin):
        self.energy = energy
        self.events = events
        self.clock = clock
        self.pin = pin
        self.v = array("L", [0] * (_MIN_VA + 5))
        self._p = array("i", bytes(4 * (_VA + 1)))
        self.period_s = 600
        self.ps_w = (0,) * _CLASSES     # the config's list once configured
        self.k_pct = 90
        self.e_mwh = 0                  # import energy in the running period
        self.period = -1                # running period number (utc // period_s)
        self.cls = 0                    # class at the running period's start
        self.month = -1                 # y * 12 + m - 1 of the current billing period
        self.last_w = 0                 # average power of the last whole period
        self.hold = False               # the last whole period exceeded k x Ps
        self.warning = False
        self.s5_va = 0
        self.mark()

    def configure(self, cfg):
        self.period_s = cfg["records"]["period_min"] * 60
        self.ps_w = cfg["demand"]["ps_w"]
        self.k_pct = cfg["demand"]["k_pct"]

    def mark(self):
        e = self.energy
        for j, i in enumerate((_E_IMPORT, _E_VA, _E_VA + 1)):
            self._p[2 * j] = e.hi[i]
            self._p[2 * j + 1] = e.lo[i]

    def tick(self, utc_s, month, cls, dt_ms):
        """utc_s None: time unknown; month = local year * 12 + month - 1."""
        v = self.v
        e = self.energy
        pv = self._p
        de = dva = 0                    # mWh import, mVAh import + export this tick
        for j in range(3):
            i = _E_VA + j - 1 if j else _E_IMPORT
            h, lo = e.hi[i], e.lo[i]
            d = (h - pv[2 * j]) * _MILLI + lo - pv[2 * j + 1]
            pv[2 * j] = h
            pv[2 * j + 1] = lo
            if j:
                dva += d
            else:
                de = d
        # the apparent power: the last 5 whole minutes' energy, recomputed each minute
        pv[_VA] += dva
        pv[_MS] += dt_ms
        if pv[_MS] >= 60000:
            pv[_MS] -= 60000
            v[_MIN_VA + pv[_MI]] = pv[_VA]
            pv[_MI] = (pv[_MI] + 1) % 5
            pv[_VA] = 0
            s = 0
            for i in range(_MIN_VA, _MIN_VA + 5):
                s += v[i]
            self.s5_va = s * 3600 // (1000 * 300)    # mVAh over 300 s -> VA
        if utc_s is None:
            return
        self.e_mwh += de                # counted before this tick: the running period's
        now = self.clock.ticks_ms() if self.clock else 0
        if month != self.month:         # a new billing period
            if self.month >= 0:
                for i in range(0, _BILL_T + 1, 2):      # every pair, the bills' starts too
                    v[i + 1] = v[i]
                    v[i] = 0
                if self.events is not None:
                    self.events.add(now, _ev.EV_BILLING_CLOSED)
            v[_BILL_T] = utc_s
            self.month = month
        T = self.period_s
        p = utc_s // T
        if p != self.period:
            if self.period >= 0 and p == self.period + 1:
                # the running period ended whole: maximum, overrun, hold
                w = (self.e_mwh * 7200 + 1000 * T) // (2000 * T)   # mWh over T s -> W, half up
                self.last_w = w
                i = 2 * self.cls
                if w > v[_MAX_W + i]:
                    v[_MAX_W + i] = w
                    v[_MAX_T + i] = self.period * T
                ps = self.ps_w[self.cls]
                if ps and self.e_mwh * 3600 > ps * 1000 * T:
                    v[_OVER_S + i] += T
                self.hold = ps > 0 and self.e_mwh * 3600 * 100 > self.k_pct * ps * 1000 * T
            else:                       # first period, or a gap / clock step: partial
                self.hold = False
            self.period = p
            self.cls = cls
            self.e_mwh = 0
        # the warning: running power (energy so far / period length) > k x Ps, integers
        ps = self.ps_w[self.cls]
        on = self.hold or (ps > 0 and self.e_mwh * 3600 * 100 > self.k_pct * ps * 1000 * T)
        if on != self.warning:
            self.warning = on
            if self.pin is not None:
                self.pin.value(1 if on else 0)
            if self.events is not None:
                self.events.add(now, _ev.EV_OVERRUN if on else _ev.EV_OVERRUN_END, self.cls)
