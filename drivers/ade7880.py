"""ADE7880 three-phase metering IC on SPI: bring-up, verified access, line-cycle windows.

    from drivers.ade7880 import ADE7880, RAW_N
    chip = ADE7880(spi, cs, irq0=pin, line_cycles=20, zx_phases=3)   # 200 ms at 50 Hz
    chip.begin()                       # select SPI, identify, configure, RUN
    raw = array("l", [0] * (3 * RAW_N))
    if chip.irq_pending or chip.window_flagged():
        chip.read_window(raw)          # codes of the window that just ended

The driver knows registers and wire protocol only: no units, no metering. It hands the
engine raw codes (per phase: RMS, powers, PF, period, angle and the window's energies)
and the engine scales them with calibration constants from config.

Facts from the ADE7880 datasheet and public drivers (../shared/reference/
anchors-public-facts.md sections 1-3): SPI frame = 0x01 read / 0x00 write, 16-bit
address, 1/2/4 data bytes MSB first by address range; SPI is chosen by three writes to
0xEBFF and locked by CONFIG2 bit 1; CFMODE reads 0x0EA0 after reset; LAST_OP is 0xCA
after a write and 0x35 after a read, LAST_ADD holds the address; the last DSP RAM write
is repeated three times; DSPWP_SEL=0xAD + DSPWP_SET=0x80 write-protect the RAM.

Energy is counted from line-cycle windows (LCYCMODE LWATT|LVAR|LVA): at the end of each
window of LINECYC half cycles the chip latches the window's energies and sets STATUS0
LENERGY. A window is handed out exactly once: it is read (and verified) before LENERGY
is acknowledged, and an acknowledgement that could not be confirmed is settled after
re-initialisation (see `recover`).
"""
from micropython import const

# Register addresses (ADE7880 datasheet register map; anchors section 3).
_DSP_RAM_FIRST = const(0x4380)
_VLEVEL = const(0x439F)
_STATUS0 = const(0xE502)
_STATUS1 = const(0xE503)
_MASK0 = const(0xE50A)
_MASK1 = const(0xE50B)
_CHECKSUM = const(0xE51F)
_LAST_RWDATA32 = const(0xE5FF)
_LINECYC = const(0xE60C)
_COMPMODE = const(0xE60E)
_GAIN = const(0xE60F)
_CFMODE = const(0xE610)
_PHSIGN = const(0xE617)
_RUN = const(0xE228)
_ACCMODE = const(0xE701)
_LCYCMODE = const(0xE702)
_VERSION = const(0xE707)
_DSPWP_SET = const(0xE7E3)
_LAST_RWDATA8 = const(0xE7FD)
_DSPWP_SEL = const(0xE7FE)
_LAST_ADD = const(0xE9FE)
_LAST_RWDATA16 = const(0xE9FF)
_LAST_OP = const(0xEA01)
_WTHR = const(0xEA02)
_VARTHR = const(0xEA03)
_VATHR = const(0xEA04)
_SPI_SELECT = const(0xEBFF)   # unallocated: three writes here choose SPI
_CONFIG2 = const(0xEC01)

_OP_WRITE = const(0xCA)
_CFMODE_RESET = const(0x0EA0)
_STATUS0_LENERGY = const(1 << 5)
_STATUS1_RSTDONE = const(1 << 15)
_STATUS1_CRC = const(1 << 25)
_CONFIG2_I2C_LOCK = const(1 << 1)
_LCYC_LWATT_LVAR_LVA = const(0x07)   # RSTREAD (b6) off: not applicable in line-cycle mode
_COMPMODE_DEFAULT = const(0x01FF)
_COMPMODE_SELFREQ = const(1 << 14)   # 60 Hz networks
_DSPWP_KEY = const(0xAD)
_DSPWP_PROTECT = const(0x80)
_THRESHOLD_DEFAULT = const(3)        # WTHR/VARTHR/VATHR: datasheet minimum recommended

# Per-phase register table: one row per phase so per-phase work is one loop
# (ESPHome's hand-copied blocks read phase A's voltage from BVRMS; anchors section 1).
#            VRMS    IRMS    WATT    FVAR    VA      PF      PERIOD  ANGLE   WATTHR  FVARHR  VAHR
_PHASE_REGS = (
    (0x43C1, 0x43C0, 0xE513, 0xE516, 0xE519, 0xE902, 0xE905, 0xE601, 0xE400, 0xE409, 0xE40C),
    (0x43C3, 0x43C2, 0xE514, 0xE517, 0xE51A, 0xE903, 0xE906, 0xE602, 0xE401, 0xE40A, 0xE40D),
    (0x43C5, 0x43C4, 0xE515, 0xE518, 0xE51B, 0xE904, 0xE907, 0xE603, 0xE402, 0xE40B, 0xE40E),
)
# Gains: (IGAIN, VGAIN, PGAIN) per phase; PHCAL per phase.
_GAIN_REGS = ((0x4380, 0x4381, 0x4389), (0x4382, 0x4383, 0x438B), (0x4384, 0x4385, 0x438D))
_PHCAL_REGS = (0xE614, 0xE615, 0xE616)

# Raw window layout per phase (indices into the caller's array, block of RAW_N).
R_VRMS = const(0)
R_IRMS = const(1)
R_WATT = const(2)
R_FVAR = const(3)
R_VA = const(4)
R_PF = const(5)
R_PERIOD = const(6)
R_ANGLE = const(7)
R_WATTHR = const(8)
R_FVARHR = const(9)
R_VAHR = const(10)
RAW_N = const(11)
# How each raw value is signed: RMS are 24-bit ZP (positive); xWATT/xFVAR/xVA are 24-bit
# SE, i.e. already sign-extended to 32 bits on the wire; PF is 16-bit signed;
# period/angle 16-bit unsigned; energies 32-bit signed.
_SIGN_BITS = (0, 0, 32, 32, 32, 16, 0, 0, 32, 32, 32)

_RETRIES = const(3)

# What health() reports (the engine turns these into events of firmware/events.py).
FAULT_NONE = const(0)
FAULT_RESET = const(1)       # the chip was reset (RSTDONE)
FAULT_CHECKSUM = const(2)    # its configuration changed (CHECKSUM / STATUS1.CRC)


class ChipError(OSError):
    """The chip did not answer as the datasheet says (after retries)."""


def _width(addr):
    """Data bytes for a register, by address range (no-OS ade7880.h ranges)."""
    # 0xE7FE (DSPWP_SEL) is 8-bit too: Tasmota and ESPHome write it as one byte.
    if 0xE700 <= addr <= 0xE7FE or 0xEA00 <= addr <= 0xEC01:
        return 1
    if 0xE600 <= addr <= 0xE618 or 0xE900 <= addr <= 0xE9FF or addr == 0xE228:
        return 2
    return 4


def _zpse24(value):
    """24-bit signed value as the chip's 32-bit ZPSE word (sign extended to bit 27)."""
    return value & 0x0FFFFFFF


class ADE7880:
    def __init__(self, spi, cs, irq0=None, line_cycles=20, zx_phases=3, sixty_hz=False,
                 gains=None, phcal=None):
        """spi: machine.SPI-like (write_readinto); cs: Pin-like, active low.
        line_cycles: half line cycles of the mains per window (LINECYC / zx_phases).
        zx_phases: 1 (phase A only, 1P2W wiring) or 3 (A, B and C zero crossings).
        gains: 3 rows of (igain, vgain, pgain) register values (signed 24-bit); phcal: 3
        PHCAL values (10-bit). Both come from the calibration config."""
        self._spi = spi
        self._cs = cs
        self._buf = bytearray(7)
        mv = memoryview(self._buf)
        self._frames = (None, mv[:4], mv[:5], None, mv[:7])   # by data width
        self.configure(line_cycles, zx_phases, sixty_hz, gains, phcal)
        self.checksum = 0
        self.irq_pending = False
        self.ack_unconfirmed = False
        self.reset_seen = False
        self.version = 0
        self.event_code = 0       # last event, for the engine (0 = none since taken)
        self.spi_errors = 0
        # Without an IRQ0 line the engine polls STATUS0 for LENERGY instead.
        self.has_irq = irq0 is not None
        if irq0 is not None:
            irq0.irq(handler=self._on_irq0, trigger=irq0.IRQ_FALLING)

    def configure(self, line_cycles=20, zx_phases=3, sixty_hz=False, gains=None, phcal=None,
                  zx_mask=None):
        """Set what begin() programs; ValueError (nothing changed) names a bad value.
        Takes effect at the next begin()/recover(). zx_mask (bit 0 A, 1 B, 2 C), if
        given, selects the phases whose zero crossings end windows (the live ones after
        a phase loss) instead of zx_phases (1: A, 3: all)."""
        if zx_phases not in (1, 3):
            raise ValueError("zx_phases must be 1 or 3, got %r" % (zx_phases,))
        if zx_mask is None:
            zx_mask = 1 if zx_phases == 1 else 7
        if zx_mask not in (1, 2, 3, 4, 5, 6, 7):
            raise ValueError("zx_mask must be 1..7, got %r" % (zx_mask,))
        zx_phases = (zx_mask & 1) + (zx_mask >> 1 & 1) + (zx_mask >> 2)
        if not isinstance(line_cycles, int) or not 1 <= line_cycles * zx_phases <= 0xFFFF:
            raise ValueError("line_cycles must be 1..65535, got %r" % (line_cycles,))
        gains = gains or ((0, 0, 0), (0, 0, 0), (0, 0, 0))
        phcal = phcal or (0, 0, 0)
        if len(gains) != 3 or len(phcal) != 3:
            raise ValueError("gains and phcal need one entry per phase")
        for row in gains:
            if len(row) != 3:
                raise ValueError("gains row must be (IGAIN, VGAIN, PGAIN), got %r" % (row,))
            for g in row:
                if not -(1 << 23) <= g < (1 << 23):
                    raise ValueError("gain register value out of 24-bit range: %r" % (g,))
        for p in phcal:
            if not 0 <= p < 1024:
                raise ValueError("PHCAL must be 0..1023, got %r" % (p,))
        self.line_cycles = line_cycles
        self.zx_phases = zx_phases
        self.zx_mask = zx_mask
        self.sixty_hz = bool(sixty_hz)
        self.gains = tuple(tuple(r) for r in gains)
        self.phcal = tuple(phcal)

    # ---- interrupt: only set a flag; the engine acts on it in its task ----
    def _on_irq0(self, pin):
        self.irq_pending = True

    # ---- wire level ----
    def _frame(self, op, addr, value):
        n = _width(addr)
        f = self._frames[n]
        b = self._buf
        b[0] = op
        b[1] = addr >> 8
        b[2] = addr & 0xFF
        for i in range(n):
            b[3 + i] = (value >> (8 * (n - 1 - i))) & 0xFF
        self._cs(0)
        try:
            self._spi.write_readinto(f, f)
        finally:
            self._cs(1)
        v = 0
        for i in range(n):
            v = (v << 8) | b[3 + i]
        return v

    def read(self, addr):
        """Verified read: the value must match what the chip says it sent (LAST_RWDATA)."""
        n = _width(addr)
        echo = _LAST_RWDATA32 if n == 4 else (_LAST_RWDATA16 if n == 2 else _LAST_RWDATA8)
        for _ in range(_RETRIES):
            v = self._frame(0x01, addr, 0)
            if self._frame(0x01, echo, 0) == v and self._frame(0x01, _LAST_ADD, 0) == addr:
                return v
            self.spi_errors += 1
        raise ChipError("ADE7880 read of 0x%04x not confirmed by LAST_RWDATA/LAST_ADD" % addr)

    def write(self, addr, value):
        """Verified write: LAST_OP = 0xCA, LAST_ADD = addr and LAST_RWDATA = value."""
        n = _width(addr)
        mask = (1 << (8 * n)) - 1
        value &= mask
        echo = _LAST_RWDATA32 if n == 4 else (_LAST_RWDATA16 if n == 2 else _LAST_RWDATA8)
        for _ in range(_RETRIES):
            self._frame(0x00, addr, value)
            if (self._frame(0x01, _LAST_OP, 0) == _OP_WRITE
                    and self._frame(0x01, _LAST_ADD, 0) == addr
                    and self._frame(0x01, echo, 0) == value):
                return
            self.spi_errors += 1
        raise ChipError("ADE7880 write of 0x%x to 0x%04x not confirmed by LAST_OP/LAST_ADD"
                        % (value, addr))

    # ---- bring-up ----
    def begin(self):
        """Select SPI, check identity, configure line-cycle windows, start the DSP.

        Safe to call again at any time (re-initialisation): the DSP keeps running and
        its energy accumulation is not disturbed, so no window is lost by calling it.
        Sets reset_seen if the chip reported RSTDONE (it had been reset)."""
        for _ in range(3):
            self._frame(0x00, _SPI_SELECT, 0x01)
        self.write(_CONFIG2, _CONFIG2_I2C_LOCK)
        cfmode = self.read(_CFMODE)
        if cfmode != _CFMODE_RESET:
            raise ChipError("No ADE7880 found: CFMODE read 0x%04x, expected 0x%04x"
                            % (cfmode, _CFMODE_RESET))
        self.version = self.read(_VERSION)
        self.reset_seen = bool(self.read(_STATUS1) & _STATUS1_RSTDONE)
        # DSP RAM may be write-protected from an earlier init: lift it first.
        self.write(_DSPWP_SEL, _DSPWP_KEY)
        self.write(_DSPWP_SET, 0)
        self.write(_GAIN, 0)                       # PGA gain 1 on all channels
        cm = _COMPMODE_DEFAULT | (_COMPMODE_SELFREQ if self.sixty_hz else 0)
        self.write(_COMPMODE, cm)
        self.write(_ACCMODE, 0)                    # signed accumulation, 3P4W
        for ph in range(3):
            regs = _GAIN_REGS[ph]
            row = self.gains[ph]
            for k in range(3):
                self.write(regs[k], _zpse24(row[k]))
            self.write(_PHCAL_REGS[ph], self.phcal[ph])
        # The last DSP RAM write must be written three times in total (datasheet: the
        # RAM write pipeline), so the registers before it really land.
        for _ in range(3):
            self.write(_VLEVEL, 0)
        self.write(_WTHR, _THRESHOLD_DEFAULT)
        self.write(_VARTHR, _THRESHOLD_DEFAULT)
        self.write(_VATHR, _THRESHOLD_DEFAULT)
        zx = self.zx_mask << 3                      # ZXSEL0..2: which phases end windows
        # Rewriting these restarts the line-cycle window: only when they differ, so a
        # re-init of a running chip keeps the window in progress.
        self._ensure(_LCYCMODE, _LCYC_LWATT_LVAR_LVA | zx)
        # Each selected phase's crossings count (datasheet: ZXSEL), so LINECYC holds the
        # window's half cycles times the number of phases selected.
        self._ensure(_LINECYC, self.line_cycles * self.zx_phases)
        self.write(_MASK0, _STATUS0_LENERGY)
        self.write(_MASK1, 0)
        # Clear stale flags (write 1 to clear) except LENERGY: a window latched before
        # this re-init is still to be read.
        self.write(_STATUS1, 0xFFFFFFFF)
        self.write(_DSPWP_SEL, _DSPWP_KEY)
        self.write(_DSPWP_SET, _DSPWP_PROTECT)
        self.write(_RUN, 1)
        self.checksum = self.read(_CHECKSUM)

    def _ensure(self, addr, value):
        if self.read(addr) != value:
            self.write(addr, value)

    # ---- cycle ----
    def health(self):
        """Check for a chip reset and for configuration upsets. Returns FAULT_RESET,
        FAULT_CHECKSUM or FAULT_NONE. Raises ChipError if the chip does not answer
        (after a reset its port is back in I2C mode and SPI reads are not confirmed)."""
        s1 = self.read(_STATUS1)
        if s1 & _STATUS1_RSTDONE:
            return FAULT_RESET
        if s1 & _STATUS1_CRC or self.read(_CHECKSUM) != self.checksum:
            return FAULT_CHECKSUM
        return FAULT_NONE

    def window_flagged(self):
        return bool(self.read(_STATUS0) & _STATUS0_LENERGY)

    def read_instant(self, raw):
        """Instantaneous values only (RMS, powers, PF, period, angle), no energy."""
        for ph in range(3):
            self._read_phase(ph, raw, R_WATTHR)

    def _read_phase(self, ph, raw, upto):
        regs = _PHASE_REGS[ph]
        base = ph * RAW_N
        for k in range(upto):
            v = self.read(regs[k])
            bits = _SIGN_BITS[k]
            if bits and v & (1 << (bits - 1)):
                v -= 1 << bits
            raw[base + k] = v

    def read_window(self, raw):
        """Read the window that just ended into raw (3 * RAW_N ints) and acknowledge it.

        Returns True if raw holds a new window, False if none was pending. Raises
        ChipError if the chip cannot be read; nothing is acknowledged then, so the same
        window is read again after recovery. If the acknowledgement itself cannot be
        confirmed, the window is still returned (its data was verified) and
        ack_unconfirmed is set: the caller must call recover() before the next window."""
        self.irq_pending = False
        if not self.read(_STATUS0) & _STATUS0_LENERGY:
            return False
        for ph in range(3):
            self._read_phase(ph, raw, RAW_N)
        try:
            self.write(_STATUS0, _STATUS0_LENERGY)
        except ChipError:
            self.ack_unconfirmed = True
        return True

    def recover(self):
        """Re-initialise after a fault. If an acknowledgement was unconfirmed and the
        window is still flagged, clear the flag without reading: that window has been
        counted already (recovery runs milliseconds after the read, far inside the
        next window, so the flag cannot be a new window's)."""
        self.begin()
        if self.ack_unconfirmed:
            self.ack_unconfirmed = False
            if not self.reset_seen and self.read(_STATUS0) & _STATUS0_LENERGY:
                self.write(_STATUS0, _STATUS0_LENERGY)

    def phase_signs(self):
        return self.read(_PHSIGN)
