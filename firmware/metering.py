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
rational (firmware/config.py); firmware/fixmath.py derives the scale constants (14-bit
limbs). Energies are counted in chip LSBs and multiplied into the pWh registers by
limbs (firmware/energy.py add_lsb). The per-cycle arithmetic (scaling, PF, angle,
quadrants, the counting below, the counters' copy) runs in firmware/meterk_viper.py,
three calls of one loop each under the native emitter, or in firmware/meterk.py, the
same code as plain bytecode, where the port has none (the WebAssembly port). Windows
beyond meterk's range (2**27 LSBs in a register) are counted by _count in Python.

Counting rules (Enedis DTR 4.4.4 / IEC 62053-23 Annex C; import positive):
- every LSB the chip latched lands in exactly one counter: active in import or export
  by its sign, reactive in a quadrant, apparent in import or export.
- a window's class (sign of P, sign of Q) is the sign of its latched LSBs (plus those
  pending) when they are more than _PEND_MAX (4); within that jitter of zero it comes
  from quantities finer than an energy LSB: the signs of the power registers (xWATT,
  xFVAR: 1/123 of an LSB at 200 ms), where those read 0 the chip's PHSIGN bits, for
  the net total the sums of the phases' power registers.
  Reactive energy goes to the quadrant of (class of P, sign of its LSBs), apparent to
  import while the class of P is >= 0, else export. So at 89.99 degrees and 0.05 A,
  where most windows latch no active LSB, the reactive energy is still Q1.
- LSBs of a window whose sign is against its class (the sub-LSB jitter of a net total
  near zero, a window split by a sign change) wait in `pending` while they are at most
  _PEND_MAX (4) LSBs, and join the next windows; more are booked by their own sign.
  Counters + pending = what the chip latched, always.
- total: the same rules applied to the NET three-phase sums (a utility meter's vector
  sum: export on L1 while L2 + L3 import more is net import).
- quadrant boundaries are half-open [k*90, (k+1)*90) degrees: P > 0, Q >= 0 is Q1;
  P <= 0, Q > 0 is Q2; P < 0, Q <= 0 is Q3; P >= 0, Q < 0 is Q4; P = Q = 0 is none.
  For energy, a power below PHSIGN's resolution counts as P >= 0 (exactly 90 degrees
  books Q1; the live quadrant says Q2).

Lost phases (3P4W): a phase is live from 50 V, lost below 40 V. Only live phases'
zero crossings end windows (the chip's ZXSEL and LINECYC follow them), so windows keep
their length; each loss and return is an event (EV_PHASE_LOSS / EV_PHASE_RETURN) and
the status carries the live phases (ST_L1_LIVE..ST_L3_LIVE). The window in which a
phase is lost counts crossings that no longer come: it ends late and the time-out
publishes one stale snapshot meanwhile.

The hot path (poll with a window ready) allocates nothing, on the 64-bit unix port and
on a 32-bit MicroPython alike: every intermediate stays below 2**30 (a 31-bit small int).
"""
from array import array
import time
from micropython import const

from drivers.ade7880 import ChipError
from firmware import config as config_mod
from firmware.energy import EnergyRegisters
from firmware.fixmath import scale_constant
from firmware.snapshot import Snapshot

try:   # the cycle's arithmetic under the native emitter where the port has one
    from firmware import meterk_viper as K
except (ImportError, SyntaxError, AttributeError):   # WebAssembly port: plain bytecode
    from firmware import meterk as K

# Mirrors of the names this module uses from others (tests/test_mirrors.py checks
# they are equal): a private const is inlined and takes no global slot, an
# imported name is a global of this module.
# drivers/ade7880.py
_RAW_N = const(11)
_R_WATT = const(2)
_R_FVAR = const(3)
_R_WATTHR = const(8)
_R_FVARHR = const(9)
_R_VAHR = const(10)
_FAULT_RESET = const(1)
# firmware/events.py
_EV_INIT = const(1)
_EV_CHIP_RESET = const(2)
_EV_CHECKSUM = const(3)
_EV_SPI_ERROR = const(4)
_EV_IRQ_MISSED = const(5)
_EV_ACK_UNCONFIRMED = const(6)
_EV_PHASE_LOSS = const(9)
_EV_PHASE_RETURN = const(10)
_EV_OVERLOAD = const(14)
# firmware/energy.py
_SCALE_MAX = const(9999999999999)
# firmware/snapshot.py
_NE = const(8)
_N_COUNTERS = const(32)
_POWER_UNIT_MW = const(10)
_E_ACTIVE_IMPORT = const(0)
_E_ACTIVE_EXPORT = const(1)
_E_REACTIVE_Q1 = const(2)
_E_REACTIVE_Q2 = const(3)
_E_REACTIVE_Q3 = const(4)
_E_REACTIVE_Q4 = const(5)
_E_APPARENT_IMPORT = const(6)
_E_APPARENT_EXPORT = const(7)
_ST_CHIP_OK = const(1)
_ST_SINGLE_PHASE = const(2)
_ST_STALE = const(4)
_ST_LIVE_SHIFT = const(3)
_ST_OVERLOAD = const(64)

_PEND_MAX = const(4)       # LSBs a block may hold back against its class (see _count)


def derive_constants(cfg):
    """The engine's integer constants from a validated config: 12 scale values (U in
    mV, I in mA, powers in POWER_UNIT_MW per code; see scale_constant) and the energy
    scale in pWh per LSB (rounded half up, as exact as the counters). ConfigError names
    a calibration factor that cannot be represented."""
    ct_n, ct_d = config_mod.ct_ratio(cfg)
    out = []
    for key, mul, div, ct in (("v_per_code", 1000, 1, False),
                              ("i_per_code", 1000, 1, True),
                              ("w_per_code", 1000, _POWER_UNIT_MW, True)):
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
    if not 0 < ke <= _SCALE_MAX:
        raise config_mod.ConfigError(
            "calibration.wh_per_lsb = %r (x CT %d:%d): %d pWh per LSB, must be 1..%d"
            % (cfg["calibration"]["wh_per_lsb"], ct_n, ct_d, ke, _SCALE_MAX))
    out.append(ke)
    return out


class Meter:
    def __init__(self, chip, cfg, clock, events):
        self.chip = chip
        self.clock = clock
        self.events = events
        self.front = Snapshot()
        self.back = Snapshot()
        self.raw = array("l", [0] * (3 * _RAW_N))   # the driver's layout (drivers/ade7880.py)
        self.energy = EnergyRegisters(_N_COUNTERS)
        # Scale table: per quantity (voltage, current, power) W, fraction high limb,
        # fraction low limb, largest code that does not saturate (scale_constant).
        self._k = array("i", [0] * 12)
        # Signed LSBs held back per block (L1, L2, L3, total) and kind (active,
        # reactive): what a window latched against its class (see _count).
        self.pending = array("i", [0] * 8)
        self._signs = 0
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
        for j in range(8):
            self.pending[j] = 0
        single = m["wiring"] == "1P2W"
        self._wired = 1 if single else 7   # phases wired (bit 0 = L1); 1: 1P2W
        self._over = 0                     # inputs beyond full scale last cycle
        self.live = self._wired            # assumed live until a cycle measures them
        self._live_now = self._wired
        self._zx = self._wired
        # A window not seen for 1.5 cycles (the time-out: cycle_ms * 3 // 2) means a
        # lost IRQ, a stopped chip or lost phases (the window then counts crossings
        # that no longer come: see _follow).
        self.cycle_ms = m["cycle_ms"]
        # The validated copy is not kept (the App holds its own: 2.7 KB on 32-bit);
        # only the chip's settings below refer into it.
        self._chip_cfg = (config_mod.line_cycles(cfg), 1 if single else 3,
                          m["nominal_hz"] == 60, cal["gains"], cal["phcal"])
        self.chip.configure(*self._chip_cfg)
        self._need_init = True

    def start(self):
        self._recover()

    def status_now(self):
        """The front snapshot's status, with ST_STALE added when it is older than the
        cycle time-out: readers call this at read time, so an engine that stopped
        publishing can never have its last values served as fresh."""
        f = self.front
        st = f.status
        if f.seq == 0 or (time.ticks_diff(self.clock.ticks_ms(), f.t_ms)
                          > self.cycle_ms * 3 // 2):
            st |= _ST_STALE
        return st

    # ---- faults ----
    def _event(self, code):
        self.events.add(self.clock.ticks_ms(), code)

    def _fault(self, code):
        """The one fault policy: log what was seen, then re-initialise the chip at once
        (begin() keeps the DSP's accumulation, so no window is lost; an unconfirmed
        acknowledgement is settled there). If the chip does not answer, the meter is
        marked not ok and every poll retries until it does; snapshots go stale
        meanwhile. Returns True when the chip is back."""
        if code:
            self._event(code)
        return self._recover()

    def _recover(self):
        try:
            self.chip.recover()
        except ChipError:
            self._chip_ok = False
            self._need_init = True
            return False
        if self.chip.reset_seen and self._booted:
            self._event(_EV_CHIP_RESET)   # not at power-up: the chip always reports it then
        self._booted = True
        self._event(_EV_INIT)
        self._chip_ok = True
        self._need_init = False
        return True

    def _follow(self):
        """Phases lost or back (measured by the cycle just published): log each change
        and let only live phases' zero crossings end windows, so windows keep their
        length (LINECYC = half cycles x live phases). Raises ChipError like the cycle."""
        live = self._live_now
        old = self.live
        if live == old:
            return
        for ph in range(3):
            bit = 1 << ph
            if (live ^ old) & bit:
                self._event(_EV_PHASE_RETURN if live & bit else _EV_PHASE_LOSS)
        self.live = live
        zx = live or self._zx       # no phase live: no crossings at all, keep the choice
        if zx != self._zx:
            self._zx = zx
            self.chip.configure(*self._chip_cfg, zx_mask=zx)
            self.chip.begin()       # rewrites LCYCMODE/LINECYC: a new window starts now

    # ---- the cycle ----
    def poll(self):
        """Serve the chip: read a finished window if any and publish it. Returns True if
        a new snapshot was published. Never raises for chip trouble: faults become
        events and a re-initialisation."""
        chip = self.chip
        now = self.clock.ticks_ms()
        late = time.ticks_diff(now, self._last_ms) >= self.cycle_ms * 3 // 2
        polled = not chip.has_irq
        if not (chip.irq_pending or late or polled):
            return False
        irq = chip.irq_pending or polled
        try:
            if polled and not late and not self._need_init and not chip.window_flagged():
                return False      # no IRQ0 wired: STATUS0 is polled each time instead
            if self._need_init and not self._fault(0):
                self._last_ms = now
                self._publish_stale(now)
                return True
            fault = chip.health()
            if fault and not self._fault(_EV_CHIP_RESET if fault == _FAULT_RESET
                                         else _EV_CHECKSUM):
                return False
            if chip.read_window(self.raw):
                self.windows += 1
                self._last_ms = now
                self._publish(now, True)
                if not irq:
                    self._fault(_EV_IRQ_MISSED)
                elif chip.ack_unconfirmed:
                    self._fault(_EV_ACK_UNCONFIRMED)
                self._follow()
                return True
            if late:
                # No window (no voltage, a lost phase, or the chip is not measuring):
                # publish the instantaneous values so readers see the meter is alive
                # but stale.
                self._last_ms = now
                chip.read_instant(self.raw)
                self._publish(now, False)
                self._follow()
                return True
        except ChipError:
            # Not answering mid-cycle: log it and leave the re-initialisation to the
            # next poll (the same _fault path), so one poll never loops on a dead bus.
            self._event(_EV_SPI_ERROR)
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
        self._finish(b, now, _ST_STALE)

    def _publish(self, now, with_energy):
        raw = self.raw
        b = self.back
        wired = self._wired
        st = K.phases(raw, K.W64, self._k, b.inst, wired | self.live << 3)
        live = st & 7
        over = st >> 3 & 63         # inputs beyond full scale: bit 2ph V, 2ph+1 I
        period1 = st >> 9           # period of the first live phase
        if with_energy:
            self._signs = -2        # PHSIGN not read this cycle (read only if needed)
            r = K.count(raw, K.W64, self.pending, self.energy, wired, -2)
            if r == 1:
                try:
                    self._signs = self.chip.phase_signs()
                except ChipError:
                    self._signs = -1
                r = K.count(raw, K.W64, self.pending, self.energy, wired, self._signs)
            if r:
                self._count_all()
        # Window length: LINECYC half cycles of the live phases at the first live
        # phase's period, (xPERIOD + 1) / 256 kHz per cycle (README: its resolution).
        b.window_us = (self.chip.line_cycles * period1 * 125 // 64
                       if with_energy and period1 else 0)
        self._live_now = live
        status = _ST_CHIP_OK if self._chip_ok else 0
        if over:
            # The ADC clipped: U, I, P, Q and S of that phase read low (the chip sees a
            # flattened waveform). One event when it starts; the status bit while it lasts.
            status |= _ST_OVERLOAD
            if over & ~self._over:
                self.events.add(now, _EV_OVERLOAD, over)
        self._over = over
        if self._wired == 1:
            status |= _ST_SINGLE_PHASE
        if not with_energy:
            status |= _ST_STALE
        self._finish(b, now, status | live << _ST_LIVE_SHIFT)

    def _count_all(self):
        """The general path of the counting (meterk.count refuses a window with more
        than 2**27 LSBs in a register, which no chip latches in one): Python ints, exact
        (long ints on a 32-bit board), the same rules."""
        raw = self.raw
        nep = neq = nes = cp = cq = 0
        for ph in range(3):
            if self._wired >> ph & 1:
                base = ph * _RAW_N
                wp = raw[base + _R_WATT]
                wq = raw[base + _R_FVAR]
                ep = raw[base + _R_WATTHR]
                eq = raw[base + _R_FVARHR]
                es = raw[base + _R_VAHR]
                self._count(ph, wp, wq, ep, eq, es)
                nep += ep
                neq += eq
                nes += es
                cp += wp
                cq += wq
        self._count(3, cp, cq, nep, neq, nes)

    def _sign(self, blk, code, bit, n, need):
        """Class of a window's active (bit 0) or reactive (bit 4) energy: the sign of
        its power register, 1/123 of an energy LSB at 200 ms; if that reads 0 and the
        class is needed, the chip's PHSIGN bit (phases); else the sign of the LSBs n.
        +1 when all are 0."""
        if code:
            return 1 if code > 0 else -1
        if blk < 3 and need:
            sg = self._signs
            if sg == -2:
                try:
                    sg = self.chip.phase_signs()
                except ChipError:
                    sg = -1
                self._signs = sg
            if sg >= 0:
                return -1 if sg >> (bit + blk) & 1 else 1
        return -1 if n < 0 else 1

    def _count(self, blk, wp, wq, ep, eq, es):
        """Book one window's energies (chip LSBs, signed) in the counters of block blk
        (0..2 phases, 3 net total). Every LSB lands in exactly one counter (or waits in
        `pending`); see README "Counting rules"."""
        reg = self.energy
        pend = self.pending
        c = blk * _NE
        j = 2 * blk
        n = pend[j] + ep
        # More LSBs than jitter decide by themselves (a window split by a change of
        # direction is classed by what it latched, not by the registers read after it).
        if n > _PEND_MAX:
            sp = 1
        elif n < -_PEND_MAX:
            sp = -1
        else:
            sp = self._sign(blk, wp, 0, n, n or eq or es or pend[j + 1])
        if n and (n > 0) != (sp > 0):
            pend[j] = n             # against the class, sub-LSB jitter: hold it back
        else:
            pend[j] = 0
            if n > 0:
                reg.add_lsb(c + _E_ACTIVE_IMPORT, n)
            elif n < 0:
                reg.add_lsb(c + _E_ACTIVE_EXPORT, -n)
        n = pend[j + 1] + eq
        if n > _PEND_MAX:
            sq = 1
        elif n < -_PEND_MAX:
            sq = -1
        else:
            sq = self._sign(blk, wq, 4, n, n)
        if n and (n > 0) != (sq > 0):
            pend[j + 1] = n
        else:
            pend[j + 1] = 0
            if n > 0:
                reg.add_lsb(c + (_E_REACTIVE_Q1 if sp > 0 else _E_REACTIVE_Q2), n)
            elif n < 0:
                reg.add_lsb(c + (_E_REACTIVE_Q4 if sp > 0 else _E_REACTIVE_Q3), -n)
        if es:
            reg.add_lsb(c + (_E_APPARENT_IMPORT if sp > 0 else _E_APPARENT_EXPORT),
                        es if es > 0 else -es)

    def _finish(self, b, now, status):
        reg = self.energy
        K.copy32(b.e_hi, reg.hi, _N_COUNTERS)
        K.copy32(b.e_lo, reg.lo, _N_COUNTERS)
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
            await asyncio.sleep_ms(self.cycle_ms // 2)
            flag.set()
