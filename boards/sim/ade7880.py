"""Register-level ADE7880 simulator: the independent truth for the driver's tests.

    from boards.sim.clock import VirtualClock
    from boards.sim import scenario
    from boards.sim.bus import SimPin, SimSPI
    from boards.sim.ade7880 import ADE7880Sim
    clk = VirtualClock()
    chip = ADE7880Sim(clk, scenario.parse({"phases": {"L1": {"v_rms": 230, "i_rms": 10}}}))
    cs = SimPin(1); spi = SimSPI(chip, cs)     # the driver gets spi, cs, chip.irq0, chip.irq1
    clk.advance_us(200000); chip.advance()     # the board ticks it at chip.next_event_us()

It turns a scenario into register codes through the datasheet transfer functions and
the analog front end in frontend.py; it shares nothing with drivers/ade7880.py. What is
modelled, with datasheet references and simplifications: docs/ade7880-sim.md.
"""
from micropython import const
import math
from boards.sim.bus import SimPin
from boards.sim.frontend import FrontEnd
from boards.sim import scenario as _scn

# Datasheet numbers (ADE7880 Rev. A): PMAX p.44 eq.21 / p.47 eq.26; rms full-scale code
# p.40 Fig.65 (5,326,737 at 0.5 V, so a full-scale sine reads 5,326,737/sqrt 2).
_PMAX = const(27059678)
_RMS_SINE = 5326737 / math.sqrt(2.0)
_FRAC = const(16)  # extra fraction bits of the simulated DSP power, so energy is exact to ~1e-11
_TH_UNIT = (1 << 27) * (1 << 16) * 125  # threshold = THR * 2**27, in power<<16 x (1/1.024 MHz) x 125

_RAM_LO = const(0x4380)
_RAM_HI = const(0x43BF)
_RUN = const(0xE228)
_STATUS0 = const(0xE502)
_STATUS1 = const(0xE503)
_MASK0 = const(0xE50A)
_MASK1 = const(0xE50B)
_CHECKSUM = const(0xE51F)
_LAST_RW32 = const(0xE5FF)
_SAGLVL = const(0xE509)
_PHSTATUS = const(0xE600)
_LINECYC = const(0xE60C)
_CONFIG = const(0xE618)
_PHSIGN = const(0xE617)
_ACCMODE = const(0xE701)
_LCYCMODE = const(0xE702)
_SAGCYC = const(0xE704)
_VERSION = const(0xE707)
_DSPWP_SET = const(0xE7E3)
_LAST_RW8 = const(0xE7FD)
_DSPWP_SEL = const(0xE7FE)
_LAST_ADD = const(0xE9FE)
_LAST_RW16 = const(0xE9FF)
_LAST_OP = const(0xEA01)
_WTHR = const(0xEA02)  # VARTHR, VATHR follow
_SPI_SEL = const(0xEBFF)
_CONFIG2 = const(0xEC01)
_LENERGY = const(0x20)  # STATUS0 b5
_RSTDONE = const(0x8000)  # STATUS1 b15
_CRC = const(0x2000000)  # STATUS1 b25
_SAG = const(0x10000)  # STATUS1 b16
_ZXTOVA = const(0x8)  # STATUS1 b3: phase A voltage zero crossing missing (Table 37)
_ZXVA = const(0x200)  # STATUS1 b9: phase A voltage zero crossing seen
_ZXTOUT = const(0xE60D)  # 16-bit, default 0xFFFF; one LSB per 62.5 us (16 kHz)
# Sag detection compares |instantaneous voltage| after the HPF with SAGLVL; a full-scale
# input peaks at 5,928,256 (0x5A7540: "SAGLVL at full scale", datasheet Rev. A p.34).
_SAG_FS = 5928256
_CHECKSUM_DEFAULT = const(0xAFFA63B9)
VERSION = 0x01  # the real die's value is not in the public material read; see docs

_E_BASE = (0xE400, 0xE409, 0xE40C)  # xWATTHR, xFVARHR, xVAHR (A, B, C consecutive)
KINDS = ("watt", "fvar", "va")
_LAST_REGS = (_LAST_OP, _LAST_ADD, _LAST_RW8, _LAST_RW16, _LAST_RW32)

# Writable registers kept as plain storage, with reset defaults (datasheet register tables).
_DEFAULTS = {
    0xE507: 0xFFFFFF, 0xE508: 0xFFFFFF, 0xE509: 0, _MASK0: 0, _MASK1: 0, 0xE520: 0,
    _LINECYC: 0xFFFF, 0xE60D: 0xFFFF, 0xE60E: 0x01FF, 0xE60F: 0, 0xE610: 0x0EA0,
    0xE611: 0, 0xE612: 0, 0xE613: 0, 0xE614: 0, 0xE615: 0, 0xE616: 0, _CONFIG: 0,
    0xE700: 0x1C, _ACCMODE: 0, _LCYCMODE: 0x78, 0xE703: 0, 0xE704: 0, 0xE705: 1, 0xE706: 0,
    _DSPWP_SET: 0, 0xE7E4: 0x08, _DSPWP_SEL: 0,
    0xE900: 0, 0xE908: 0, 0xE909: 0, 0xE90A: 0,
    0xEA00: 0x01, _WTHR: 3, 0xEA03: 3, 0xEA04: 3, 0xEA08: 3, 0xEA09: 5, 0xEA0A: 7,
    0xEC00: 0x07, _CONFIG2: 0, _RUN: 0,
}
# Not configuration (so not in CHECKSUM): interrupt masks, protection keys, port lock, RUN.
_NOT_CFG = (_MASK0, _MASK1, _DSPWP_SET, _DSPWP_SEL, _CONFIG2, _RUN)
_CFG = sorted([a for a in _DEFAULTS if a not in _NOT_CFG] + list(range(_RAM_LO, _RAM_HI + 1)))


def width(a):
    """Data bytes of a register (ADE7880 SPI: 8-, 16- or 32-bit words by address)."""
    if 0xE700 <= a <= 0xE7FE or 0xEA00 <= a <= 0xEC01:
        return 1
    if 0xE600 <= a <= 0xE618 or 0xE900 <= a <= 0xE9FF or a == _RUN:
        return 2
    return 4


def _ekind(a):
    """(kind, phase) of an energy register address, or None."""
    for k in (2, 1, 0):
        ph = a - _E_BASE[k]
        if 0 <= ph < 3:
            return k, ph
    return None


def _s24(v):
    v &= 0xFFFFFF
    return v - 0x1000000 if v & 0x800000 else v


def _se24(x):  # 24-bit signed, sign-extended into a 32-bit word
    x = int(round(x))
    x = -0x800000 if x < -0x800000 else (0x7FFFFF if x > 0x7FFFFF else x)
    return x & 0xFFFFFFFF


def _wrap32(v):
    v &= 0xFFFFFFFF
    return v - 0x100000000 if v & 0x80000000 else v


def _crc32(data, crc=0):
    try:
        import binascii
        return binascii.crc32(data, crc) & 0xFFFFFFFF
    except (ImportError, AttributeError):
        crc ^= 0xFFFFFFFF
        for b in data:
            crc ^= b
            for _ in range(8):
                crc = (crc >> 1) ^ (0xEDB88320 if crc & 1 else 0)
        return crc ^ 0xFFFFFFFF


def _grid(x):
    return [[x, x, x] for _ in range(3)]  # [phase][kind]


_CLIP_STEPS = 1440     # samples per period for clipped waveforms (host-only, cached)


def _clipped(a):
    """(rms, fundamental rms) of a sine of normalised rms a (peak a x FS) after clipping
    at full scale, both normalised the same way; (a, a) when it does not clip."""
    if a <= 1.0:
        return a, a
    n = _CLIP_STEPS
    ms = f1 = 0.0
    for k in range(n):
        t = 2.0 * math.pi * (k + 0.5) / n
        c = max(-1.0, min(1.0, a * math.sin(t)))
        ms += c * c
        f1 += c * math.sin(t)
    return math.sqrt(2.0 * ms / n), f1 * 2.0 / n


def _clipped_power(a, b, r):
    """Mean product of two clipped sines (normalised rms a and b, the second lagging by
    r radians), normalised so that unclipped it is a b cos r."""
    n = _CLIP_STEPS
    acc = 0.0
    for k in range(n):
        t = 2.0 * math.pi * (k + 0.5) / n
        acc += max(-1.0, min(1.0, a * math.sin(t))) * max(-1.0, min(1.0, b * math.sin(t - r)))
    return 2.0 * acc / n


class Ledger:
    """What the chip did with energy, in LSBs per [phase][kind] (kinds: watt, fvar, va).

    pulses = read + latched + lost + pending(in the chip) at all times. unread is the part
    of latched that no read saw before it was overwritten or wiped. ideal_j is the
    scenario physics (W s, var s, VA s) over the whole run; ideal_run_j only while RUN=1.
    """

    def __init__(self):
        for n in ("pulses", "read", "latched", "lost", "unread"):
            setattr(self, n, _grid(0))
        self.ideal_j = _grid(0.0)
        self.ideal_run_j = _grid(0.0)
        self.windows = 0
        self.overwritten = 0
        self.resets = 0


class ADE7880Sim:
    def __init__(self, clock, scenario, frontend=None, seed=0x2545F491):
        self._clock = clock
        self.frontend = frontend or FrontEnd()
        self._led = Ledger()
        self.irq0 = SimPin(1, "IRQ0")
        self.irq1 = SimPin(1, "IRQ1")
        self._edges = []
        self._rng = seed & 0xFFFFFFFF or 1
        self._garbage = 0
        self._drop = 0
        self._acc1 = _grid(0)  # first stage: power x time residue below one threshold
        self._acc2 = _grid(0)  # second stage: pulses not yet handed out
        self._lreg = _grid(0)  # line-cycle latched energy registers
        self._lunread = _grid(False)
        self._wlive = self._wread = False  # a latched window exists / was read
        self._selected = False
        self._fpos = 0
        self._reg = None
        self._running = False
        self._sref = [0, 0, 0]
        now = clock.now_us()
        self._now = now
        self._t_acc = now
        self._use(_scn.Timebase(scenario, now))
        self._reset(True)
        self._edges = []  # powered up with IRQ1 low: a level, not an edge anybody saw

    # ---- per-segment transfer functions -------------------------------------------
    def _use(self, tb):
        self._tb = tb
        self.scenario = tb.scenario
        self._pc = {}

    def _params(self, i):
        p = self._pc.get(i)
        if p is not None:
            return p
        seg = self.scenario.segments[i]
        f, phs = seg[1], seg[2]
        fe, ct, ram = self.frontend, self.scenario.ct_primary_a, self._ram
        acm = self._reg[_ACCMODE]
        rows = []
        nx = ny = 0.0
        for ph in range(3):
            v, cur, phi = phs[ph]
            gi = 1 + _s24(ram[_RAM_LO + 2 * ph]) / 8388608  # xIGAIN: factor 1 + g/2**23
            gv = 1 + _s24(ram[_RAM_LO + 1 + 2 * ph]) / 8388608  # xVGAIN
            gp = 1 + _s24(ram[0x4389 + 2 * ph]) / 8388608  # xPGAIN
            # The ADC clips its input at full scale (+-0.5 V peak, a sine of normalised
            # rms 1): beyond it the chip computes from the clipped waveforms (digital
            # gains act after the ADC). xVA = Vrms x Irms of what it sees, xWATT the
            # mean of their product, xFVAR from their fundamentals (docs/ade7880-sim.md).
            un = fe.v_norm(v)
            xn = fe.i_norm(cur, ct)
            r = math.radians(phi)
            ur, u1 = _clipped(un)
            xr, x1 = _clipped(xn)
            u = ur * gv
            x = xr * gi
            s = _PMAX * u * x * gp  # internal (PMAX-scale) apparent power
            if un > 1.0 or xn > 1.0:
                g = _PMAX * gv * gi * gp
                pw = g * _clipped_power(un, xn, r)
                pq = g * u1 * x1 * math.sin(r)
            else:
                pw, pq = s * math.cos(r), s * math.sin(r)
            aw = pw if acm & 3 in (0, 2) else (max(pw, 0.0) if acm & 3 == 1 else abs(pw))
            va = (acm >> 2) & 3
            aq = -pq if (va == 2 and pw < 0) else (abs(pq) if va == 3 else pq)
            sc = 1 << _FRAC
            pf = 0
            if s >= 1:
                pf = min(32767, int(abs(pw) / s * 32768 + 0.5))
                pf = -pf if pq < 0 else pf
            live = v > 0
            # row: 0 energy rates (watt, fvar, va) << _FRAC, 1 xVRMS, 2 xIRMS, 3 xWATT, 4 xFVAR,
            # 5 xVA, 6 xPERIOD, 7 ANGLEx, 8 xPF, 9 PHSIGN bits, 10 V*I, 11 cos phi, 12 sin phi
            rows.append((
                (int(round(aw * sc)), int(round(aq * sc)), int(round(s * sc))),  # energy rates
                int(round(_RMS_SINE * u)), int(round(_RMS_SINE * x)),  # xVRMS, xIRMS
                _se24(pw / 16), _se24(pq / 16), _se24(s / 16),  # xWATT, xFVAR, xVA (PMAX/2**4)
                (int(256000 / f + 0.5) - 1) if live else 0,  # xPERIOD, 256 kHz ticks
                (int(phi / 360.0 * 256000 / f + 0.5) & 0xFFFF) if live and cur > 0 else 0,
                pf & 0xFFFF,
                (1 if pw < 0 and abs(pw) >= 0.5 else 0) | (16 if pq < 0 and abs(pq) >= 0.5 else 0),
                v * cur, math.cos(r), math.sin(r)))
            a = -math.radians(phi + 120.0 * ph)  # current phasor, for the neutral
            nx += cur * math.cos(a)
            ny += cur * math.sin(a)
        gn = 1 + _s24(ram[0x4386]) / 8388608
        nirms = int(round(_RMS_SINE * fe.i_norm(math.sqrt(nx * nx + ny * ny), ct) * gn))
        p = (rows, nirms)
        self._pc[i] = p
        return p

    # ---- energy: two-stage accumulation, exact and lazy ---------------------------
    def _settle(self, t):
        """Integrate energy from _t_acc to t (segment by segment, integer arithmetic)."""
        t0 = self._t_acc
        if t <= t0:
            return
        tb, led = self._tb, self._led
        nseg, sabs = len(tb.start), tb.start
        i = tb.seg(t0)
        run = self._running
        while t0 < t:
            end = sabs[i + 1] if i + 1 < nseg else t
            t1 = t if end > t else end
            dt = t1 - t0
            if dt > 0:
                rows = self._params(i)[0]
                for ph in range(3):
                    row = rows[ph]
                    e = row[10] * dt / 1e6
                    ie, ir = led.ideal_j[ph], led.ideal_run_j[ph]
                    for k, q in ((0, e * row[11]), (1, e * row[12]), (2, e)):
                        ie[k] += q
                        if run:
                            ir[k] += q
                    if not run:
                        continue
                    a1, a2, rate = self._acc1[ph], self._acc2[ph], row[0]
                    for k in range(3):
                        if rate[k]:
                            a = a1[k] + rate[k] * dt * 128  # 1.024 MHz = 128/125 per us
                            th = self._th[k]
                            n = a // th if a >= 0 else -((-a) // th)  # pulse at +-threshold
                            if n:
                                a -= n * th
                                a2[k] += n
                                led.pulses[ph][k] += n
                            a1[k] = a
            t0 = t1
            if t1 == end and i + 1 < nseg:
                i += 1
        self._t_acc = t

    def _set_thresholds(self):
        self._th = [max(1, self._reg[_WTHR + k]) * _TH_UNIT for k in range(3)]

    # ---- line-cycle windows ---------------------------------------------------------
    def _lc_on(self):
        r = self._reg
        return self._running and r[_LCYCMODE] & 7 and r[_LINECYC]

    def _restart_windows(self):
        self._win = None
        if self._lc_on():
            self._wg = self._tb.grid(self._now)
            self._wn = self._reg[_LINECYC]
            self._wseg = self._tb.seg(self._now)
            self._win = self._find_window()

    def _find_window(self):
        if not self._lc_on():
            return None
        return self._tb.walk(self._sel(), self._wg, self._wn, self._wseg)

    def _sel(self):
        return self._reg[_LCYCMODE] >> 3 & 7  # ZXSEL[2:0]

    def _retire(self):
        """The latched window is being replaced or wiped: book what nobody read."""
        led = self._led
        for ph in range(3):
            for k in range(3):
                if self._lunread[ph][k]:
                    led.unread[ph][k] += self._lreg[ph][k]
                    self._lunread[ph][k] = False
        if self._wlive and not self._wread:
            led.overwritten += 1  # not one of its registers was read
        self._wlive = self._wread = False

    def _window_end(self, t, g, seg):
        self._settle(t)
        self._retire()
        led, lm = self._led, self._reg[_LCYCMODE] & 7
        for k in range(3):
            if lm >> k & 1:
                for ph in range(3):
                    v = self._acc2[ph][k]
                    w = _wrap32(v)
                    self._lreg[ph][k] = w
                    self._lunread[ph][k] = True
                    led.latched[ph][k] += w
                    led.lost[ph][k] += v - w
                    self._acc2[ph][k] = 0
        led.windows += 1
        self._wlive = True
        self._st0 |= _LENERGY
        if self._drop:
            self._drop -= 1
            self._hold0 = True  # LENERGY set, but the IRQ0 edge is lost
        else:
            self._hold0 = False
            self._irqs()
        self._wg, self._wn, self._wseg = g, self._reg[_LINECYC], seg
        self._win = self._find_window()

    # ---- public: time ---------------------------------------------------------------
    def advance(self):
        """Bring windows and IRQs up to the clock (energy itself is integrated lazily)."""
        now = self._clock.now_us()
        if now > self._now:
            self._now = now
        w = self._win
        while w is not None and w[0] <= self._now:
            self._window_end(w[0], w[1], w[2])
            w = self._win
        self._sag_until(self._now)
        self._zx_until(self._now)
        self._fire()

    def next_event_us(self):
        """The next window end (IRQ0), or None."""
        return self._win[0] if self._win is not None else None

    def next_sag_us(self):
        """The next VSPHASE flip (STATUS1.SAG) or phase A zero-crossing timeout
        (STATUS1.ZXTOVA): what may pull IRQ1 low, or None."""
        s = self._sag_next()
        s = s[0] if s is not None else None
        z = self._zx_due()
        return z if s is None or (z is not None and z < s) else s

    # ---- zero-crossing timeout, phase A voltage (datasheet Rev. A "Zero-Crossing
    # Timeout", Table 37 STATUS1 b3 ZXTOVA / b9 ZXVA, MASK1 same bits) --------------------
    # The phase's timeout counter is reloaded with ZXTOUT at each of its voltage zero
    # crossings and counts down one LSB per 62.5 us; reaching 0 sets ZXTOVA (IRQ1 low
    # with MASK1 b3). It then rests at 0 until the next crossing reloads it, so a phase
    # that stays dead sets ZXTOVA once (an acknowledgement is not followed by another).
    # Each crossing also sets ZXVA. Crossings are the scenario's (a phase with voltage
    # crosses every half cycle; docs/ade7880-sim.md); only phase A is modelled.
    def _zx_t(self):
        return self._reg[_ZXTOUT] * 125 // 2          # us

    def _a_after(self, t):
        """Time (us) of phase A's first voltage zero crossing after t, or None."""
        tb = self._tb
        w = tb.walk(1, tb.grid(t), 1, tb.seg(t))
        if w is not None and w[0] <= t:               # t is that crossing itself
            w = tb.walk(1, w[1], 1, w[2])
        return w[0] if w is not None else None

    def _a_last(self, t):
        """Time of phase A's last crossing at or before t, in t's segment (A live there)."""
        tb = self._tb
        i = tb.seg(t)
        g = tb.grid(t)
        g -= g % 3
        tau = tb.start[i] + (g / 6.0 - tb.theta0[i]) * 1e6 / self.scenario.segments[i][1]
        return max(int(math.ceil(tau)), tb.start[i])

    def _a_skip(self, nx, upto):
        """From crossing nx, the last crossing of its segment at or before upto."""
        tb = self._tb
        i = tb.seg(nx)
        end = tb.start[i + 1] - 1 if i + 1 < len(tb.start) else upto
        return max(nx, self._a_last(min(end, upto)))

    def _zx_due(self):
        """When ZXTOVA is next set (us), or None."""
        if not self._running:
            return None
        ref, fired, tout = self._zref, self._zfired, self._zx_t()
        tb = self._tb
        while True:
            nx = self._a_after(ref)
            if not fired and (nx is None or ref + tout < nx):
                return ref + tout
            if nx is None:
                return None
            i = tb.seg(nx)
            if tout > 500000.0 / self.scenario.segments[i][1] + 1:
                if i + 1 == len(tb.start):    # crossings every half cycle from here on
                    return None
                nx = self._a_skip(nx, tb.start[i + 1])
            ref, fired = nx, False

    def _zx_until(self, t):
        if not self._running:
            return
        due = self._zx_due()
        if due is not None and due <= t:
            self._st1 |= _ZXTOVA
        ref = self._zref
        while True:                                   # the last crossing up to t
            nx = self._a_after(ref)
            if nx is None or nx > t:
                break
            ref = self._a_skip(nx, t)
        if ref != self._zref:
            self._zref = ref
            self._st1 |= _ZXVA
            self._zfired = ref + self._zx_t() <= t
            if self._zfired:
                self._st1 |= _ZXTOVA
        elif due is not None and due <= t:
            self._zfired = True
        self._irqs()

    # ---- voltage sag (datasheet Rev. A "Phase Voltage Sag Detection", Table 40) ------
    # VSPHASE[ph] flips when the phase has been on the other side of SAGLVL for SAGCYC
    # half line cycles; each flip sets STATUS1.SAG (IRQ1 low when MASK1 b16). Writing
    # STATUS1.SAG clears SAG and every VSPHASE bit, so a voltage still below sets them
    # again SAGCYC half cycles later. Simplifications (docs/ade7880-sim.md): the level is
    # judged per scenario segment from the sine's peak (the phase's rms), half cycles are
    # timed at the segment's frequency from the start of the run (a dead phase still
    # counts: the chip's counter "is always active"), digital gains are not applied.
    def _below(self, i, ph):
        lvl = self._reg[_SAGLVL]
        un = self.frontend.v_norm(self.scenario.segments[i][2][ph][0])
        return lvl > 1 and min(un, 1.0) * _SAG_FS < lvl

    def _sag_due(self, ph):
        """Time (us) of phase ph's next VSPHASE flip, or None."""
        n = self._reg[_SAGCYC]
        if not self._running or not n or self._reg[_SAGLVL] <= 1:
            return None
        tb, segs = self._tb, self.scenario.segments
        cur = self._vs >> ph & 1
        start = None
        ref = self._sref[ph]
        i = tb.seg(ref)
        while True:
            end = tb.start[i + 1] if i + 1 < len(tb.start) else None
            if self._below(i, ph) != cur:
                if start is None:
                    start = max(ref, tb.start[i])
                due = start + int(math.ceil(n * 500000.0 / segs[i][1]))
                if end is None or due < end:
                    return due
            else:
                start = None
            if end is None:
                return None
            i += 1

    def _sag_next(self):
        best = None
        for ph in range(3):
            t = self._sag_due(ph)
            if t is not None and (best is None or t < best[0]):
                best = (t, ph)
        return best

    def _sag_until(self, t):
        s = self._sag_next()
        while s is not None and s[0] <= t:
            due, ph = s
            self._vs ^= 1 << ph
            self._sref[ph] = due
            self._st1 |= _SAG
            self._irqs()
            s = self._sag_next()

    def _sag_restart(self):
        for ph in range(3):            # per phase: sag half cycles are counted from here
            self._sref[ph] = self._now

    def set_scenario(self, scn):
        self.advance()
        self._settle(self._now)
        lc = self._lc_on()
        if lc:  # keep counting the current window across the switch
            g_now = self._tb.grid(self._now)
            self._wn = max(1, self._wn - self._tb.walk(self._sel(), self._wg, 0, self._wseg, g_now))
            self._wg = g_now
        self._use(_scn.Timebase(scn, self._now, self._tb.theta(self._now)))
        self._t_acc = self._now
        if lc:
            self._wseg = 0
            self._win = self._find_window()

    @property
    def running(self):
        return self._running

    @property
    def port(self):
        return "spi" if self._spi else "i2c"

    # ---- interrupts -----------------------------------------------------------------
    def _drive(self, pin, level):
        if pin._set(level):
            self._edges.append((pin, level))

    def _irqs(self):
        r = self._reg
        if not self._hold0:
            self._drive(self.irq0, 0 if self._st0 & r[_MASK0] else 1)
        self._drive(self.irq1, 0 if self._st1 & (r[_MASK1] | _RSTDONE) else 1)

    def _fire(self):
        while self._edges:
            pin, v = self._edges.pop(0)
            pin._fire(v)

    # ---- reset and checksum -----------------------------------------------------------
    def _reset(self, hard):
        self._settle(self._now)
        if self._reg is not None:  # a reset of a live chip: what it held is lost
            self._retire()
            led = self._led
            for ph in range(3):
                for k in range(3):
                    led.lost[ph][k] += self._acc2[ph][k]
                    self._acc2[ph][k] = 0
                    self._acc1[ph][k] = 0
                    self._lreg[ph][k] = 0
            led.resets += 1
        if hard or self._reg is None:
            self._spi = False  # the serial port wakes up in I2C mode
            self._selcnt = 0
            self.locked = False
            keep = 0
        else:
            keep = self._reg[_CONFIG2]  # CONFIG2 survives a software reset (see docs)
        self._reg = dict(_DEFAULTS)
        self._reg[_CONFIG2] = keep
        self._ram = dict((a, 0) for a in range(_RAM_LO, _RAM_HI + 1))
        self._rq = []
        self._pc = {}
        self._running = False
        self._t_acc = self._now
        self._st0 = 0
        self._st1 = _RSTDONE
        self._hold0 = False
        self._win = None
        self._last = [0, 0, 0, 0, 0]  # op, add, rw8, rw16, rw32
        self._csum = None
        self._csum_seen = None
        self._vs = 0                   # PHSTATUS VSPHASE[2:0]
        self._sag_restart()
        self._zref = self._now         # phase A's timeout counter: last reload
        self._zfired = False
        self._set_thresholds()
        self._irqs()

    def checksum(self):
        """CHECKSUM (0xE51F): a CRC-32 over the configuration set, offset so reset reads 0xAFFA63B9."""
        if self._csum is None:
            crc = _crc32(_cfg_bytes(self._ram, self._reg))
            self._csum = crc ^ _crc_default() ^ _CHECKSUM_DEFAULT
        return self._csum

    def _cfg_changed(self):
        self._csum = None
        if self._running:  # the DSP recomputes it and flags a change (STATUS1.CRC)
            c = self.checksum()
            if c != self._csum_seen:
                self._csum_seen = c
                self._st1 |= _CRC
                self._irqs()

    # ---- register semantics ------------------------------------------------------------
    def _apply_ram(self, a, v):
        self._settle(self._now)
        self._ram[a] = v & 0x0FFFFFFF  # 24-bit ZPSE word as the DSP holds it
        self._pc = {}
        self._cfg_changed()

    def _store(self, a, v):
        """A configuration write (or upset) with its side effects, no LAST_* bookkeeping."""
        r = self._reg
        if a == _CONFIG and v & 0x80:  # SWRST
            self._reset(False)
            return
        if a in (_WTHR, _WTHR + 1, _WTHR + 2, _ACCMODE):
            self._settle(self._now)
        r[a] = v
        if a in (_WTHR, _WTHR + 1, _WTHR + 2):
            self._set_thresholds()
        elif a == _ACCMODE:
            self._pc = {}
        elif a in (_LCYCMODE, _LINECYC):
            self._restart_windows()
        elif a == _CONFIG2 and v & 2:
            self.locked = True
        elif a == _MASK0 or a == _MASK1:
            self._irqs()
        elif a == _SAGCYC or a == _SAGLVL:  # restarts the half-cycle count (datasheet)
            self._sag_restart()
        if a not in _NOT_CFG:
            self._cfg_changed()

    def _write(self, a, v):
        w = width(a)
        v &= (1 << 8 * w) - 1
        if _RAM_LO <= a <= _RAM_HI:
            if not self._reg[_DSPWP_SET] & 0x80:
                # Write pipeline: a RAM write reaches the DSP once two more have followed,
                # hence "write the last RAM register three times" (see docs).
                self._rq.append((a, v))
                while len(self._rq) > 2:
                    self._apply_ram(*self._rq.pop(0))
        elif a == _RUN:
            self._reg[_RUN] = v
            self._set_run(v & 1)
        elif a == _STATUS0:
            self._st0 &= ~v
            self._hold0 = False
            self._irqs()
        elif a == _STATUS1:
            self._sag_until(self._now)
            self._zx_until(self._now)
            self._st1 &= ~v
            if v & _SAG:  # clears every VSPHASE bit too; counting restarts
                self._vs = 0
                self._sag_restart()
            self._irqs()
        elif a == _DSPWP_SET:
            if self._reg[_DSPWP_SEL] == 0xAD:  # the key must be written first
                self._reg[a] = v
        elif a in self._reg:
            self._store(a, v)
        self._note(0xCA, a, v, w)

    def _set_run(self, on):
        self._settle(self._now)
        self._sag_until(self._now)
        self._zx_until(self._now)
        if on and not self._running:
            self._running = True
            self._sag_restart()
            self._zref, self._zfired = self._now, False   # the DSP starts counting
            self._csum_seen = self.checksum()  # the reference the CRC flag compares to
            self._restart_windows()
        elif not on and self._running:
            self._running = False
            self._restart_windows()

    def _note(self, op, a, v, w):
        if a in _LAST_REGS:
            return  # reading the verification registers does not disturb them (docs)
        last = self._last
        last[0], last[1] = op, a
        last[1 + w if w < 4 else 4] = v

    def peek(self, a):
        """Register value as the chip would put it on MISO, without read side effects."""
        return self._peek(a)[0]

    def _peek(self, a):
        """(wire value, energy handed out by a read-with-reset, or None)."""
        e = _ekind(a)
        if e:
            k, ph = e
            if self._reg[_LCYCMODE] >> k & 1:
                return self._lreg[ph][k] & 0xFFFFFFFF, None
            self._settle(self._now)
            v = self._acc2[ph][k]
            return _wrap32(v) & 0xFFFFFFFF, (v if self._reg[_LCYCMODE] & 0x40 else None)
        if _RAM_LO <= a <= _RAM_HI:
            return self._ram[a], None
        if a == _STATUS0:
            return self._st0, None
        if a == _STATUS1:
            return self._st1, None
        if a == _PHSTATUS:
            return self._vs << 12, None
        if a == _CHECKSUM:
            return self.checksum(), None
        if a == _VERSION:
            return VERSION, None
        if a in _LAST_REGS:
            j = _LAST_REGS.index(a)
            return self._last[j], None
        if a in self._reg:
            return self._reg[a], None
        return self._measured(a), None

    def _measured(self, a):
        if not self._running:
            return 0
        rows, nirms = self._params(self._tb.seg(self._now))
        if 0x43C0 <= a <= 0x43C5:
            return rows[(a - 0x43C0) >> 1][2 - (a & 1)] & 0xFFFFFF  # xIRMS, xVRMS: 24-bit ZP
        if a == 0x43C6:
            return nirms & 0xFFFFFF
        if 0xE513 <= a <= 0xE51B:
            k, ph = divmod(a - 0xE513, 3)
            return rows[ph][3 + k]
        if 0xE905 <= a <= 0xE907:
            return rows[a - 0xE905][6] & 0xFFFF
        if 0xE601 <= a <= 0xE603:
            return rows[a - 0xE601][7]
        if 0xE902 <= a <= 0xE904:
            return rows[a - 0xE902][8]
        if a == _PHSIGN:
            return rows[0][9] | rows[1][9] << 1 | rows[2][9] << 2
        return 0

    def _read_done(self, a, v, handed):
        e = _ekind(a)
        if e:
            k, ph = e
            if handed is not None:  # read-with-reset: the chip hands this energy out
                self._acc2[ph][k] -= handed
                w = _wrap32(handed)
                self._led.read[ph][k] += w
                self._led.lost[ph][k] += handed - w
            elif self._reg[_LCYCMODE] >> k & 1:
                self._lunread[ph][k] = False
                self._wread = True
        self._note(0x35, a, v, width(a))

    # ---- serial port: frames ------------------------------------------------------------
    def select(self):
        self.advance()
        self._selected = True
        self._fpos = 0

    def deselect(self):
        if self._selected and self._fpos >= 3 and self._fcmd == 0 and self._fpos >= 3 + self._fw:
            a, v = self._faddr, self._fdata
            if a == _SPI_SEL:
                if not self._spi:  # three SPI writes here choose SPI over I2C
                    self._selcnt += 1
                    self._spi = self._selcnt >= 3
            elif self._spi:
                self._write(a, v)
        self._selected = False
        self._fpos = 0
        self._fire()

    def xfer(self, tx, rx=None):
        for j in range(len(tx)):
            o = self._byte(tx[j])
            if rx is not None:
                rx[j] = o
        self._fire()

    def _byte(self, b):
        pos = self._fpos
        self._fpos = pos + 1
        if not self._selected:
            return 0xFF
        idle = 0 if self._spi else 0xFF
        if pos == 0:
            self._fcmd = b if b in (0, 1) else -1
            return idle
        if pos == 1:
            self._faddr = b << 8
            return idle
        if pos == 2:
            a = self._faddr | b
            self._faddr, self._fw, self._fdata, self._fgarb = a, width(a), 0, False
            if self._fcmd == 1 and self._spi:
                self._fval, self._fhand = self._peek(a)
                if self._garbage:
                    self._garbage -= 1
                    self._fgarb = True
            return idle
        n, w = pos - 3, self._fw
        if self._fcmd == 0:
            if n < w:
                self._fdata = (self._fdata << 8) | b
            return idle
        if self._fcmd != 1 or not self._spi or n >= w:
            return idle
        o = (self._fval >> (8 * (w - 1 - n))) & 0xFF
        if self._fgarb:
            o = self._rand() & 0xFF  # noise on MISO only: the chip's state is untouched
        if n == w - 1:
            self._read_done(self._faddr, self._fval, self._fhand)
        return o

    # ---- fault injection -------------------------------------------------------------------
    def inject_reset(self):
        """Power glitch / hard reset: defaults, I2C mode, DSP stopped, RSTDONE with IRQ1 low."""
        self.advance()
        self._reset(True)
        self._fire()

    def inject_checksum_upset(self, addr=None, bit=None):
        """Flip one bit of a configuration register, as an ESD upset would. Returns (addr, old, new)."""
        self.advance()
        cands = [a for a in _CFG if a != _CONFIG]
        if addr is None:
            addr = cands[self._rand() % len(cands)]
        if addr not in cands:
            raise ValueError("not a configuration register: 0x%04X" % addr)
        nbits = 24 if addr <= _RAM_HI else 8 * width(addr)
        bit = self._rand() % nbits if bit is None else bit
        if addr <= _RAM_HI:
            old = self._ram[addr]
            new = old ^ (1 << bit)
            if bit == 23:  # ZPSE: the sign bit is copied into bits 27..24
                new ^= 0x0F000000
            self._apply_ram(addr, new)
        else:
            old = self._reg[addr]
            new = old ^ (1 << bit)
            self._store(addr, new)
        self._csum_seen = self.checksum()
        self._st1 |= _CRC
        self._irqs()
        self._fire()
        return addr, old, new

    def inject_miso_garbage(self, n=1):
        self._garbage += n

    def inject_drop_irq(self, n=1):
        self._drop += n

    def _rand(self):  # xorshift32: reproducible faults
        x = self._rng
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self._rng = x
        return x

    # ---- ledger for tests ---------------------------------------------------------------------
    @property
    def ledger(self):
        """The Ledger, brought up to the clock first."""
        self.advance()
        self._settle(self._now)
        return self._led

    def ledger_dict(self):
        """The ledger up to now, JSON-ready: {"L1": {"watt": {...}, ...}, ..., "windows": n, ...}."""
        led, out = self.ledger, {}
        for ph in range(3):
            d = {}
            for k in range(3):
                d[KINDS[k]] = {
                    "pulses": led.pulses[ph][k], "read": led.read[ph][k],
                    "latched": led.latched[ph][k], "lost": led.lost[ph][k],
                    "unread": led.unread[ph][k], "pending": self._acc2[ph][k],
                    "ideal_j": led.ideal_j[ph][k], "ideal_run_j": led.ideal_run_j[ph][k]}
            out[_scn.PHASES[ph]] = d
        out["windows"] = led.windows
        out["overwritten"] = led.overwritten
        out["resets"] = led.resets
        return out


def _cfg_bytes(ram, reg):
    """(address, value) of every configuration register, big-endian, in address order."""
    buf = bytearray(6 * len(_CFG))
    j = 0
    for a in _CFG:
        v = ram.get(a, 0) if a <= _RAM_HI else reg[a]
        buf[j:j + 6] = bytes((a >> 8, a & 0xFF, v >> 24 & 0xFF, v >> 16 & 0xFF, v >> 8 & 0xFF, v & 0xFF))
        j += 6
    return buf


_CRC_DEF = []


def _crc_default():
    # CRC of the reset configuration (RAM all 0, register defaults), computed once.
    if not _CRC_DEF:
        _CRC_DEF.append(_crc32(_cfg_bytes({}, _DEFAULTS)))
    return _CRC_DEF[0]
