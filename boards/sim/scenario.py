"""Scenarios: what the grid does at the meter's terminals, piecewise constant in time.

    from boards.sim import scenario
    scn = scenario.load("scenarios/default.json")
    hz, phases = scn.at(1500000)    # 1.5 s in: 50.0, ((230.0, 10.0, 30.0), (...), (...))
    scn.change_times_us()           # [10000000, ...]

Format (JSON):
    {"description": "...",                       optional string
     "frequency_hz": 50.0,                        45..66, default 50
     "phases": {"L1": {"v_rms": 230.0, "i_rms": 10.0, "phi_deg": 30.0}, "L2": ..., "L3": ...},
     "ct_primary_a": 200,                         optional external N:5 CT, 1..5000
     "timeline": [{"at_s": 10.0, "frequency_hz": 49.9, "phases": {"L2": {"i_rms": 3.0}}}]}
phi_deg is the angle by which the current lags its voltage (P = V I cos phi,
Q = V I sin phi), taken mod 360. A missing phase, or null, is not connected (0 V, 0 A);
missing fields of a listed phase are 0. Timeline entries override only the fields they
list, from at_s seconds after the start; at_s must strictly ascend.

Zero crossings (for the chip's line-cycle windows) live here too, as physics: phase
voltages are v_A ~ sin(wt), v_B ~ sin(wt - 120 deg), v_C ~ sin(wt - 240 deg), so every
voltage zero crossing of any phase falls on a grid of 1/6 cycle. Grid point g (phase
angle g/6 cycle of phase A) is a crossing of A if g%3 == 0, of C if g%3 == 1, of B if
g%3 == 2.
"""
import json
import math

PHASES = ("L1", "L2", "L3")
_FIELDS = ("v_rms", "i_rms", "phi_deg")
_TOP = ("description", "frequency_hz", "phases", "ct_primary_a", "timeline")
_STEP = ("at_s", "frequency_hz", "phases")
F_MIN = 45.0
F_MAX = 66.0
_INF = float("inf")
ZX_RESIDUE = (0, 2, 1)  # grid residue mod 3 of the crossings of phases A, B, C


class ScenarioError(ValueError):
    pass


def _is_num(x):
    t = type(x)
    return (t is int or t is float) and x == x and x != _INF and x != -_INF


def _num(path, x, lo=None, hi=None):
    ok = _is_num(x) and (lo is None or x >= lo) and (hi is None or x <= hi)
    if not ok:
        if lo is not None and hi is not None:
            rng = " in %g..%g" % (lo, hi)
        elif lo is not None:
            rng = " >= %g" % lo
        else:
            rng = ""
        raise ScenarioError("%s: must be a number%s, got %r" % (path, rng, x))
    return float(x)


def _obj(path, x):
    if type(x) is not dict:
        raise ScenarioError("%s: must be an object, got %r" % (path, x))
    return x


def _keys(path, d, allowed):
    for k in d:
        if k not in allowed:
            raise ScenarioError("%s%s: unknown key (allowed: %s)"
                                % (path + "." if path else "", k, ", ".join(allowed)))


def _phases(path, d, base):
    """Apply the phase overrides in d to base (list of 3 [v, i, phi]); returns base."""
    _obj(path, d)
    _keys(path, d, PHASES)
    for n in range(3):
        name = PHASES[n]
        if name not in d:
            continue
        p = d[name]
        pp = path + "." + name
        if p is None:
            base[n] = [0.0, 0.0, 0.0]
            continue
        _obj(pp, p)
        _keys(pp, p, _FIELDS)
        if "v_rms" in p:
            base[n][0] = _num(pp + ".v_rms", p["v_rms"], 0.0)
        if "i_rms" in p:
            base[n][1] = _num(pp + ".i_rms", p["i_rms"], 0.0)
        if "phi_deg" in p:
            base[n][2] = _num(pp + ".phi_deg", p["phi_deg"]) % 360.0
    return base


def _freeze(f, ph):
    return (f, tuple(tuple(x) for x in ph))


def parse(obj):
    """Validate a decoded JSON object and build a Scenario (raises ScenarioError)."""
    _obj("scenario", obj)
    _keys("", obj, _TOP)
    desc = obj.get("description", "")
    if type(desc) is not str:
        raise ScenarioError("description: must be a string, got %r" % (desc,))
    f = _num("frequency_hz", obj.get("frequency_hz", 50.0), F_MIN, F_MAX)
    ph = [[0.0, 0.0, 0.0] for _ in range(3)]
    if "phases" in obj:
        _phases("phases", obj["phases"], ph)
    ct = obj.get("ct_primary_a")
    if ct is not None:
        ct = _num("ct_primary_a", ct, 1.0, 5000.0)
    segs = [(0,) + _freeze(f, ph)]
    tl = obj.get("timeline", [])
    if type(tl) is not list:
        raise ScenarioError("timeline: must be a list, got %r" % (tl,))
    prev = None
    for n in range(len(tl)):
        path = "timeline[%d]" % n
        st = _obj(path, tl[n])
        _keys(path, st, _STEP)
        if "at_s" not in st:
            raise ScenarioError("%s.at_s: missing" % path)
        at = _num(path + ".at_s", st["at_s"], 0.0)
        if prev is not None and at <= prev:
            raise ScenarioError("%s.at_s: must be greater than timeline[%d].at_s (%r), got %r"
                                % (path, n - 1, prev, st["at_s"]))
        prev = at
        if "frequency_hz" in st:
            f = _num(path + ".frequency_hz", st["frequency_hz"], F_MIN, F_MAX)
        if "phases" in st:
            _phases(path + ".phases", st["phases"], ph)
        t_us = int(at * 1000000 + 0.5)
        if t_us == segs[-1][0]:
            segs[-1] = (t_us,) + _freeze(f, ph)  # at_s 0 overrides the start
        else:
            segs.append((t_us,) + _freeze(f, ph))
    return Scenario(segs, ct, desc)


def loads(text):
    try:
        obj = json.loads(text)
    except ValueError as e:
        raise ScenarioError("not valid JSON: %s" % (e,))
    return parse(obj)


def load(path):
    try:
        with open(path) as fh:
            text = fh.read()
    except OSError as e:
        raise ScenarioError("%s: cannot read (%s)" % (path, e))
    return loads(text)


class Scenario:
    """segments: list of (start_us, frequency_hz, ((v, i, phi), (v, i, phi), (v, i, phi)))."""

    def __init__(self, segments, ct_primary_a=None, description=""):
        self.segments = segments
        self.ct_primary_a = ct_primary_a
        self.description = description
        self.frequency_hz = segments[0][1]

    def segment_index(self, t_us):
        segs = self.segments
        lo, hi = 0, len(segs) - 1
        while lo < hi:  # last segment starting at or before t_us
            mid = (lo + hi + 1) >> 1
            if segs[mid][0] <= t_us:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def at(self, t_us):
        """(frequency_hz, ((v, i, phi) for L1, L2, L3)) at t_us after the start."""
        s = self.segments[self.segment_index(t_us)]
        return s[1], s[2]

    def change_times_us(self):
        return [s[0] for s in self.segments[1:]]


def zx_count(mask, a, b):
    """Zero crossings of the phases in mask (bit0 A, bit1 B, bit2 C) on grid points in (a, b]."""
    if b <= a or not mask:
        return 0
    n = 0
    for ph in range(3):
        if mask >> ph & 1:
            r = ZX_RESIDUE[ph]
            n += (b - r) // 3 - (a - r) // 3
    return n


def zx_nth(mask, a, n):
    """Grid point of the n-th (n >= 1) zero crossing after grid point a."""
    first = [g for g in range(a + 1, a + 4) if mask >> ZX_RESIDUE.index(g % 3) & 1]
    k = len(first)
    idx = n - 1
    return first[idx % k] + 3 * (idx // k)


class Timebase:
    """A scenario placed on the absolute clock (us): segments, phase angle, zero crossings.

    theta(t) is the phase of L1's voltage in cycles, continuous across frequency steps.
    """

    def __init__(self, scn, t_abs, theta0=0.0):
        segs = scn.segments
        self.scenario = scn
        self.start = [t_abs + s[0] for s in segs]
        th = [theta0]
        for j in range(1, len(segs)):
            th.append(th[-1] + segs[j - 1][1] * (segs[j][0] - segs[j - 1][0]) / 1e6)
        self.theta0 = th
        # phases with voltage (bit0 A..bit2 C): only they have zero crossings
        self.live = [sum(1 << n for n in range(3) if s[2][n][0] > 0) for s in segs]
        self._hint = 0

    def seg(self, t):
        i, s = self._hint, self.start
        if t < s[i]:
            i = 0
        while i + 1 < len(s) and s[i + 1] <= t:
            i += 1
        self._hint = i
        return i

    def theta(self, t):
        i = self.seg(t)
        return self.theta0[i] + self.scenario.segments[i][1] * (t - self.start[i]) / 1e6

    def grid(self, t):
        """Last zero-crossing grid point at or before t."""
        return int(math.floor(6 * self.theta(t)))

    def walk(self, sel, g, n, i, g_stop=None):
        """From grid point g in segment i, counting crossings of the phases in sel:
        (time_us, grid, segment) of the n-th one (None if it never comes), or with
        g_stop, how many there are in (g, g_stop]."""
        segs, last, cnt = self.scenario.segments, len(self.start) - 1, 0
        while True:
            m = sel & self.live[i]
            hi = None if i == last else int(math.ceil(6 * self.theta0[i + 1])) - 1
            if g_stop is not None and (hi is None or hi >= g_stop):
                return cnt + zx_count(m, g, g_stop)
            if m and g_stop is None:
                ge = zx_nth(m, g, n)
                if hi is None or ge <= hi:
                    tau = self.start[i] + (ge / 6.0 - self.theta0[i]) * 1e6 / segs[i][1]
                    return (max(int(math.ceil(tau)), self.start[i]), ge, i)
            if hi is None:
                return None
            k = zx_count(m, g, hi)
            n -= k
            cnt += k
            g = max(g, hi)
            i += 1


def config_mismatches(scn, cfg):
    """Ways the meter's validated config `cfg` disagrees with the installation the
    scenario describes so that readings come out wrong without any error; one
    sentence per mismatch (the host run prints them as warnings at start)."""
    m = cfg["metering"]
    out = []
    ct = scn.ct_primary_a
    cfg_ct = m["ct_primary_a"] if m["ct_enabled"] else None
    sec = 5.0          # the secondary both sides assume (N:5 CTs)
    if ct is not None and cfg_ct is None:
        out.append("external CTs (ct_primary_a %g A) but the config has "
                   "metering.ct_enabled false: currents, powers and energies read %g "
                   "times too low" % (ct, ct / sec))
    elif ct is None and cfg_ct is not None:
        out.append("no ct_primary_a (direct connection) but the config has CTs "
                   "(metering.ct_primary_a %d A): currents, powers and energies read "
                   "%g times too high" % (cfg_ct, cfg_ct / sec))
    elif ct is not None and ct != cfg_ct:
        out.append("ct_primary_a %g A but the config has metering.ct_primary_a %d A: "
                   "currents, powers and energies read x%.4g" % (ct, cfg_ct, cfg_ct / ct))
    if m["wiring"] == "1P2W":
        live = [PHASES[n] for n in (1, 2)
                if any(s[2][n][0] > 0 or s[2][n][1] > 0 for s in scn.segments)]
        if live:
            out.append("%s live but the config has metering.wiring 1P2W (L1 + N only): "
                       "%s not measured and the totals cover L1 alone"
                       % (" and ".join(live), "it is" if len(live) == 1 else "they are"))
    return out
