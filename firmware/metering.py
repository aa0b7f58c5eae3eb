"""Metering engine: chip windows -> physical values, quadrants and energy counters.

    from firmware.metering import Meter
    meter = Meter(chip, cfg, clock, events)   # chip: drivers.ade7880.ADE7880
    meter.start()                             # chip bring-up (retried by poll on error)
    asyncio.create_task(meter.run())          # or call meter.poll() from a test
    snap = meter.front                        # last published Snapshot

One cycle = one ADE7880 line-cycle window (LINECYC half cycles = 200 ms or 500 ms at the
nominal frequency, so the cycle follows the mains and never splits a period). Per cycle
the engine reads the window's codes, scales them with integer constants derived from
the calibration config, classifies the window's energies by quadrant and adds them to
integer counters, then publishes a new Snapshot by swapping the front/back pair.

Scaling (integers only, exact on a 32-bit board): each calibration constant is an exact
rational (firmware/config.py). A code-to-unit scale r = num/den is held as its integer
part W and its fraction rounded to 28 bits, split in two 14-bit limbs, so that
round(code x r) is computed from products below 2**28 (_scale). Energies are counted in
chip LSBs and multiplied into the pWh registers by limbs (firmware/energy.py add_lsb).

Counting rules (Enedis DTR 4.4.4 / IEC 62053-23 Annex C; import positive):
- per phase: the window's signed active energy goes to that phase's import or export
  counter; its reactive energy to the quadrant given by the signs of the window's
  active and reactive energy; its apparent energy to import or export by the sign of P.
- total: the same rules applied to the NET three-phase sums (a utility meter's vector
  sum: export on L1 while L2 + L3 import more is net import).
- quadrant boundaries are half-open [k*90, (k+1)*90) degrees: P > 0, Q >= 0 is Q1;
  P <= 0, Q > 0 is Q2; P < 0, Q <= 0 is Q3; P >= 0, Q < 0 is Q4; P = Q = 0 is none.

The hot path (poll with a window ready) allocates nothing, on the 64-bit unix port and
on a 32-bit MicroPython alike: every intermediate stays below 2**30 (a 31-bit small int).
"""
from array import array
import time
from micropython import const

from drivers.ade7880 import (ChipError, RAW_N, R_VRMS, R_IRMS, R_WATT, R_FVAR, R_VA,
                             R_PERIOD, R_ANGLE, R_WATTHR, R_FVARHR, R_VAHR,
                             FAULT_RESET)
from firmware.events import (EV_INIT, EV_CHIP_RESET, EV_CHECKSUM, EV_SPI_ERROR,
                             EV_IRQ_MISSED, EV_ACK_UNCONFIRMED)
from firmware import config as config_mod
from firmware.energy import EnergyRegisters, SCALE_MAX
from firmware.snapshot import (Snapshot, NQ, NE, N_COUNTERS, TOTAL, U_MV, I_MA, P_MW,
                               Q_MVAR, S_MVA, PF_E4, ANGLE_CDEG, F_MHZ, QUADRANT,
                               POWER_UNIT_MW, P_SAT,
                               E_ACTIVE_IMPORT, E_ACTIVE_EXPORT, E_REACTIVE_Q1,
                               E_APPARENT_IMPORT, E_APPARENT_EXPORT, ST_CHIP_OK,
                               ST_SINGLE_PHASE, ST_STALE)

_FRAC_BITS = const(28)     # fraction of a scale constant: two 14-bit limbs
_PERIOD_CLOCK_MHZ = const(256000000)   # 256 kHz period clock, in mHz (datasheet)
# Scale table: per quantity (voltage, current, power) W, fraction high limb, fraction
# low limb, largest code that does not saturate.
_KV = const(0)
_KI = const(4)
_KP = const(8)


def quadrant(p, q):
    """1..4 by the half-open rule above, 0 when there is no power at all."""
    if p > 0:
        return 1 if q >= 0 else 4
    if p < 0:
        return 3 if q <= 0 else 2
    if q > 0:
        return 2
    if q < 0:
        return 4
    return 0


def _rdiv(a, b):
    """a / b rounded half up, b > 0, integers only."""
    return (2 * a + b) // (2 * b)


def _scale(x, k, j):
    """round(x * r) for the scale r at k[j..j+3], half away from zero, saturating at
    +-P_SAT; every product stays below 2**30 (no long int on a 32-bit board)."""
    neg = x < 0
    if neg:
        x = -x
    if x > k[j + 3]:
        r = P_SAT
    else:
        x1 = x >> 14
        x0 = x & 0x3FFF
        m1 = k[j + 1]
        m0 = k[j + 2]
        # x * M / 2**28 = x1 m1 + (x1 m0 + x0 m1) / 2**14 + x0 m0 / 2**28, rounded.
        r = x * k[j] + x1 * m1 + ((x1 * m0 + x0 * m1 + ((x0 * m0) >> 14) + 0x2000) >> 14)
    return -r if neg else r


def _pf(a, b):
    """round(a * 10000 / b) for |a| <= b < 1e8 (codes), sign of a; 0 when b <= 0."""
    if b <= 0:
        return 0
    neg = a < 0
    if neg:
        a = -a
    if a >= b:
        q = 10000
    else:
        q = 0
        for _ in range(4):        # long division by decimal digits: a * 10 < 1e9
            a *= 10
            d = a // b
            a -= d * b
            q = q * 10 + d
        if a >= b - a:
            q += 1
    return -q if neg else q


def scale_constant(num, den, limit=P_SAT):
    """(W, fraction high limb, low limb, largest unsaturated code) of the scale num/den;
    ConfigError if it cannot be represented. Integers only (long ints allowed here:
    this runs when the config is applied, not in the cycle)."""
    w = num // den
    m = ((num - w * den) * (1 << (_FRAC_BITS + 1)) + den) // (2 * den)
    if m >> _FRAC_BITS:
        w += 1
        m = 0
    if w == 0 and m == 0:
        raise ValueError("rounds to 0 at 2**-28")
    if w > limit:
        raise ValueError("more than %d units per code" % limit)
    # Largest code whose scaled value stays <= limit (monotone in x).
    xmax = min(((limit << _FRAC_BITS) + (1 << (_FRAC_BITS - 1))) // ((w << _FRAC_BITS) + m)
               + 2, (1 << 28) - 1)
    while xmax > 0 and xmax * w + ((xmax * m + (1 << (_FRAC_BITS - 1))) >> _FRAC_BITS) > limit:
        xmax -= 1
    return w, m >> 14, m & 0x3FFF, xmax


def derive_constants(cfg):
    """The engine's integer constants from a validated config: 12 scale values (U in
    mV, I in mA, powers in POWER_UNIT_MW per code; see scale_constant) and the energy
    scale in pWh per LSB (rounded half up, as exact as the counters). ConfigError names
    a calibration factor that cannot be represented."""
    ct_n, ct_d = config_mod.ct_ratio(cfg)
    out = []
    for key, mul, div, ct in (("v_per_code", 1000, 1, False),
                              ("i_per_code", 1000, 1, True),
                              ("w_per_code", 1000, POWER_UNIT_MW, True)):
        num, den = config_mod.rational(cfg, key)
        num *= mul
        den *= div
        if ct:
            num *= ct_n
            den *= ct_d
        try:
            out.extend(scale_constant(num, den))
        except ValueError as e:
            raise config_mod.ConfigError("calibration.%s = %r (x CT %d:%d): %s"
                                         % (key, cfg["calibration"][key], ct_n, ct_d, e))
    num, den = config_mod.rational(cfg, "wh_per_lsb")
    num *= 10 ** 12 * ct_n
    den *= ct_d
    ke = (2 * num + den) // (2 * den)
    if not 0 < ke <= SCALE_MAX:
        raise config_mod.ConfigError(
            "calibration.wh_per_lsb = %r (x CT %d:%d): %d pWh per LSB, must be 1..%d"
            % (cfg["calibration"]["wh_per_lsb"], ct_n, ct_d, ke, SCALE_MAX))
    out.append(ke)
    return out


class Meter:
    def __init__(self, chip, cfg, clock, events):
        self.chip = chip
        self.clock = clock
        self.events = events
        self.front = Snapshot()
        self.back = Snapshot()
        self.raw = array("l", [0] * (3 * RAW_N))
        self.energy = EnergyRegisters(N_COUNTERS)
        self._k = array("l", [0] * 12)     # scales of U, I and powers (_scale)
        self._need_init = True
        self._booted = False
        self._chip_ok = False
        self._last_ms = clock.ticks_ms()
        self.windows = 0
        self.apply_config(cfg)

    def apply_config(self, cfg):
        """Derive the integer scale factors from a validated config (not the hot path)."""
        cfg = config_mod.validate(cfg)
        m = cfg["metering"]
        cal = cfg["calibration"]
        k = derive_constants(cfg)
        for j in range(12):
            self._k[j] = k[j]
        self.energy.set_scale(k[12])
        self.single_phase = m["wiring"] == "1P2W"
        self.cycle_ms = m["cycle_ms"]
        # A window not seen for 1.5 cycles means a lost IRQ or a stopped chip.
        self._timeout_ms = m["cycle_ms"] * 3 // 2
        self.cfg = cfg
        self.chip.configure(line_cycles=config_mod.line_cycles(cfg),
                            zx_phases=1 if self.single_phase else 3,
                            sixty_hz=m["nominal_hz"] == 60,
                            gains=cal["gains"], phcal=cal["phcal"])
        self._need_init = True

    def start(self):
        self._recover()

    def status_now(self):
        """The front snapshot's status, with ST_STALE added when it is older than the
        cycle time-out: readers call this at read time, so an engine that stopped
        publishing can never have its last values served as fresh."""
        f = self.front
        st = f.status
        if f.seq == 0 or time.ticks_diff(self.clock.ticks_ms(), f.t_ms) > self._timeout_ms:
            st |= ST_STALE
        return st

    # ---- faults ----
    def _event(self, code):
        self.events.add(self.clock.ticks_ms(), code)

    def _recover(self):
        try:
            self.chip.recover()
        except ChipError:
            self._chip_ok = False
            self._need_init = True
            return False
        if self.chip.reset_seen and self._booted:
            self._event(EV_CHIP_RESET)   # not at power-up: the chip always reports it then
        self._booted = True
        self._event(EV_INIT)
        self._chip_ok = True
        self._need_init = False
        return True

    # ---- the cycle ----
    def poll(self):
        """Serve the chip: read a finished window if any and publish it. Returns True if
        a new snapshot was published. Never raises for chip trouble: faults become
        events and a re-initialisation."""
        chip = self.chip
        now = self.clock.ticks_ms()
        late = time.ticks_diff(now, self._last_ms) >= self._timeout_ms
        polled = not chip.has_irq
        if not (chip.irq_pending or late or polled):
            return False
        irq = chip.irq_pending or polled
        try:
            if polled and not late and not self._need_init and not chip.window_flagged():
                return False      # no IRQ0 wired: STATUS0 is polled each time instead
            if self._need_init and not self._recover():
                self._last_ms = now
                self._publish_stale(now)
                return True
            fault = chip.health()
            if fault:
                self._event(EV_CHIP_RESET if fault == FAULT_RESET else EV_CHECKSUM)
                if not self._recover():
                    return False
            if chip.read_window(self.raw):
                self.windows += 1
                self._last_ms = now
                self._publish(now, True)
                if not irq:
                    self._event(EV_IRQ_MISSED)
                    self._recover()
                elif chip.ack_unconfirmed:
                    self._event(EV_ACK_UNCONFIRMED)
                    self._recover()
                return True
            if late:
                # No window (no voltage, or the chip is not measuring): publish the
                # instantaneous values so readers see the meter is alive but stale.
                self._last_ms = now
                chip.read_instant(self.raw)
                self._publish(now, False)
                return True
        except ChipError:
            self._event(EV_SPI_ERROR)
            self._chip_ok = False
            self._need_init = True
            self._last_ms = now
        return False

    def _publish_stale(self, now):
        b = self.back
        inst = b.inst
        for i in range(len(inst)):
            inst[i] = 0
        b.window_us = 0           # the back buffer still holds a cycle from long ago
        self._finish(b, now, ST_STALE)

    def _publish(self, now, with_energy):
        raw = self.raw
        b = self.back
        inst = b.inst
        k = self._k
        nph = 1 if self.single_phase else 3
        tp = tq = ts = ti = tu = 0
        cp = cs = 0                 # power codes summed, for the total's PF
        nep = neq = nes = 0         # window LSBs summed (net three-phase)
        for ph in range(3):
            blk = ph * NQ
            if ph >= nph:
                for j in range(NQ):
                    inst[blk + j] = 0
                continue
            base = ph * RAW_N
            u = _scale(raw[base + R_VRMS], k, _KV)
            i = _scale(raw[base + R_IRMS], k, _KI)
            p = _scale(raw[base + R_WATT], k, _KP)
            q = _scale(raw[base + R_FVAR], k, _KP)
            s = _scale(raw[base + R_VA], k, _KP)
            self._fill(inst, blk, u, i, p, q, s)
            inst[blk + PF_E4] = _pf(raw[base + R_WATT], raw[base + R_VA])
            cp += raw[base + R_WATT]
            cs += raw[base + R_VA]
            # f = 256 kHz / (xPERIOD + 1); ANGLEx counts the same clock from the voltage
            # to the current zero crossing (datasheet, period and angle measurement).
            period = raw[base + R_PERIOD] + 1
            if period > 1 and u > 0:
                inst[blk + F_MHZ] = _rdiv(_PERIOD_CLOCK_MHZ, period)
                ang = raw[base + R_ANGLE]
                a = _rdiv((ang if ang < period else period) * 36000, period) % 36000
                quad = inst[blk + QUADRANT]
                # ANGLE is a zero-crossing delay: resolve its half from the P/Q signs.
                if quad and (a >= 18000) != (quad >= 3):
                    a = (a + 18000) % 36000
                inst[blk + ANGLE_CDEG] = a
            else:
                inst[blk + F_MHZ] = 0
                inst[blk + ANGLE_CDEG] = 0
            tp += p
            tq += q
            ts += s
            ti += i
            tu += u
            if with_energy:
                ep = raw[base + R_WATTHR]
                eq = raw[base + R_FVARHR]
                es = raw[base + R_VAHR]
                self._count(ph * NE, ep, eq, es)
                nep += ep
                neq += eq
                nes += es
        self._fill(inst, TOTAL, tu // nph, ti, tp, tq, ts)
        inst[TOTAL + PF_E4] = _pf(cp, cs)
        inst[TOTAL + F_MHZ] = inst[F_MHZ]
        # Window length from L1's period: half cycles x (xPERIOD + 1) / 256 kHz / 2.
        b.window_us = (self.chip.line_cycles * (raw[R_PERIOD] + 1) * 125 // 64
                       if with_energy and inst[F_MHZ] else 0)
        inst[TOTAL + ANGLE_CDEG] = 0
        if with_energy:
            self._count(3 * NE, nep, neq, nes)
        status = ST_CHIP_OK if self._chip_ok else 0
        if self.single_phase:
            status |= ST_SINGLE_PHASE
        if not with_energy:
            status |= ST_STALE
        self._finish(b, now, status)

    @staticmethod
    def _fill(inst, blk, u, i, p, q, s):
        inst[blk + U_MV] = u
        inst[blk + I_MA] = i
        inst[blk + P_MW] = p
        inst[blk + Q_MVAR] = q
        inst[blk + S_MVA] = s
        inst[blk + QUADRANT] = quadrant(p, q)

    def _count(self, c, ep, eq, es):
        """Add one window's energies (chip LSBs, signed) to the counters starting at c."""
        reg = self.energy
        if ep > 0:
            reg.add_lsb(c + E_ACTIVE_IMPORT, ep)
        elif ep < 0:
            reg.add_lsb(c + E_ACTIVE_EXPORT, -ep)
        quad = quadrant(ep, eq)
        if quad:
            reg.add_lsb(c + E_REACTIVE_Q1 + quad - 1, eq if eq >= 0 else -eq)
        if es:
            reg.add_lsb(c + (E_APPARENT_EXPORT if ep < 0 else E_APPARENT_IMPORT),
                        es if es >= 0 else -es)

    def _finish(self, b, now, status):
        reg = self.energy
        hi, lo = b.e_hi, b.e_lo
        for c in range(N_COUNTERS):
            hi[c] = reg.hi[c]
            lo[c] = reg.lo[c]
        f = self.front
        b.seq = f.seq + 1
        b.t_ms = now
        b.status = status
        b.events = self.events.total
        # Publish: one reference swap, so a reader sees either cycle, never half of two.
        self.back = f
        self.front = b

    async def run(self, poll_ms=10):
        """Serve the chip for ever (run it under firmware/supervisor.py).

        With an IRQ0 line whose handler sets the driver's `irq_flag` (an
        asyncio.ThreadSafeFlag on boards, an Event on the sim board), the task sleeps until the chip ends a window; a nudge
        task sets the same flag at a third of the time-out so a lost interrupt or a
        stopped chip is still noticed. Without one it polls every poll_ms."""
        import asyncio
        flag = getattr(self.chip, "irq_flag", None)
        if flag is None:
            while True:
                self.poll()
                await asyncio.sleep_ms(poll_ms)
        nudge = asyncio.create_task(self._nudge(flag))
        try:
            while True:
                await flag.wait()
                flag.clear()          # a ThreadSafeFlag clears itself; an Event does not
                self.poll()
        finally:
            nudge.cancel()

    async def _nudge(self, flag):
        import asyncio
        while True:
            await asyncio.sleep_ms(self._timeout_ms // 3)
            flag.set()
