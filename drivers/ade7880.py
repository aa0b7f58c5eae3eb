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

The cycle's reads run as a precomputed program (see _program): every frame of a window
is built once at construction, in one buffer that keeps each frame's header as sent and
its data as received; each frame is clocked in a scratch frame of its length (header
copied in, reply copied back: a few bytes, not a memoryview per frame), and one checker
(viper where the port has a native emitter, else plain Python giving the same values)
verifies all reads and stores them as signed 32-bit words, allocating nothing. How each
read is verified, and why that is as strong as before: see the notes above _CSUM_EVERY.

Supply failure (L1, the meter's supply): set_sag(level, half_cycles, zxtout) programs
two detectors at the next begin() (ADE7880 datasheet Rev. A, "Zero-Crossing Timeout",
"Phase Voltage Sag Detection", Tables 33, 37, 39, 40):
- ZXTOUT 0xE60D (16-bit, one LSB per 62.5 us): phase A's timeout counter is reloaded at
  each of its voltage zero crossings; reaching 0 sets STATUS1.ZXTOVA (b3), which pulls
  IRQ1 low with MASK1 b3. It concerns L1 alone, so a dead L2/L3 costs nothing. It misses
  an L1 that still crosses zero (a brown-out to 60 V), hence also:
- SAGLVL 0xE509 (24-bit, compared with the absolute instantaneous voltage; 5,928,256 =
  0x5A7540 full scale, 0 or 1 never triggers), SAGCYC 0xE704 (half line cycles below
  it), STATUS1.SAG (b16, MASK1 b16). SAG is one flag for all phases, PHSTATUS VSPHASE
  (bits 14:12) tells which, and acknowledging it clears VSPHASE, so a dead phase
  raises it again every SAGCYC half cycles. SAG is therefore enabled in MASK1 only
  while all three phases are live (zx_mask 7), and masked at the first sag of another
  phase (until begin() or, for a dip the meter still calls live, until health() sees
  VSPHASE clear again).
An L1 detection is left latched (IRQ1 low) for the power-fail watcher (sag_l1); health()
acknowledges it once L1 crosses zero again (STATUS1.ZXVA, b9) or PHSTATUS shows L1 back.

Interrupt: IRQ0 (LENERGY) sets `irq_pending` and, where asyncio.ThreadSafeFlag exists
(boards, unix port), sets `irq_flag`, a ThreadSafeFlag the engine may await instead of
polling (`await chip.irq_flag.wait()`); irq_flag is None without an IRQ0 line or
without ThreadSafeFlag (the WebAssembly port).
"""
import sys
from array import array
from micropython import const

try:  # native checker where the port has a native emitter (not the WebAssembly port)
    from drivers.ade7880_viper import check as _check_native, xfer as _xfer_native
except Exception:  # SyntaxError "invalid micropython decorator" at compile time
    _check_native = _xfer_native = None

# Register addresses (ADE7880 datasheet register map; anchors section 3).
_DSP_RAM_FIRST = const(0x4380)
_VLEVEL = const(0x439F)
_STATUS0 = const(0xE502)
_STATUS1 = const(0xE503)
_SAGLVL = const(0xE509)       # 24-bit ZP in a 32-bit word (datasheet Rev. A Table 33)
_MASK0 = const(0xE50A)
_MASK1 = const(0xE50B)
_CHECKSUM = const(0xE51F)
_LAST_RWDATA32 = const(0xE5FF)
_PHSTATUS = const(0xE600)     # 16-bit; VSPHASE[2:0] = bits 14:12 (datasheet Table 40)
_LINECYC = const(0xE60C)
_COMPMODE = const(0xE60E)
_GAIN = const(0xE60F)
_CFMODE = const(0xE610)
_PHSIGN = const(0xE617)
_RUN = const(0xE228)
_ACCMODE = const(0xE701)
_LCYCMODE = const(0xE702)
_SAGCYC = const(0xE704)       # 8-bit: half line cycles below SAGLVL (no-OS ade7880.h)
_ZXTOUT = const(0xE60D)       # 16-bit zero-crossing timeout (address: anchors s.3); its LSB,
                              # 62.5 us (16 kHz), is the ADE78xx data sheets' and not in
                              # shared/reference: confirm on the first board
_DSPWP_SET = const(0xE7E3)
_LAST_RWDATA8 = const(0xE7FD)
_DSPWP_SEL = const(0xE7FE)
_LAST_ADD = const(0xE9FE)
_LAST_RWDATA16 = const(0xE9FF)
_LAST_OP = const(0xEA01)
# LAST_RWDATA of a data width 1, 2, 4 (index: the width; a tuple constant, no heap).
_ECHO = const((0, _LAST_RWDATA8, _LAST_RWDATA16, 0, _LAST_RWDATA32))
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
_STATUS1_SAG = const(1 << 16)        # also MASK1 bit 16 (anchors section 3: SAG b16)
_STATUS1_ZXTOVA = const(1 << 3)      # phase A zero crossing missing (datasheet Table 37)
_STATUS1_ZXVA = const(1 << 9)        # phase A zero crossing seen (Table 37)
_VSPHASE_SHIFT = const(12)
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
_PHASE_REGS = const((
    (0x43C1, 0x43C0, 0xE513, 0xE516, 0xE519, 0xE902, 0xE905, 0xE601, 0xE400, 0xE409, 0xE40C),
    (0x43C3, 0x43C2, 0xE514, 0xE517, 0xE51A, 0xE903, 0xE906, 0xE602, 0xE401, 0xE40A, 0xE40D),
    (0x43C5, 0x43C4, 0xE515, 0xE518, 0xE51B, 0xE904, 0xE907, 0xE603, 0xE402, 0xE40B, 0xE40E),
))
# Gains: (IGAIN, VGAIN, PGAIN) per phase; PHCAL per phase. (Private const tuples: no
# global slot, the tuple is a constant of the code.)
_GAIN_REGS = const(((0x4380, 0x4381, 0x4389), (0x4382, 0x4383, 0x438B), (0x4384, 0x4385, 0x438D)))
_PHCAL_REGS = const((0xE614, 0xE615, 0xE616))

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
_SIGN_BITS = const((0, 0, 32, 32, 32, 16, 0, 0, 32, 32, 32))
# All 4-byte registers are delivered as signed 32-bit words (array('l') holds nothing
# wider on a board): the RMS registers are ZP (top byte 0), so they read as before.
_INSTANT_N = const(8)   # R_VRMS..R_ANGLE: the instantaneous part of a phase block

# How each window read is verified (one corrupted or misaddressed frame must never give
# an accepted wrong value). The ADE7880 has no CRC on SPI data; its communication
# verification registers hold the LAST access only (anchors section 3: LAST_ADD 0xE9FE,
# LAST_RWDATA8/16/32; reading them does not disturb them), so reads of different
# registers cannot share one check: LAST_ADD read once after a group says nothing about
# a misaddressed read in the middle of it, and a register read twice only checks itself.
# So each read keeps 3 frames, as before:
#  - instantaneous registers (RMS, powers, PF, period, angle: the DSP updates them at
#    8 kHz, so two reads may legitimately differ): value, LAST_RWDATA of its width,
#    LAST_ADD;
#  - the window's energies (xWATTHR, xFVARHR, xVAHR), latched by the chip at the window
#    end and held until the next one (anchors section 2, LCYCMODE LWATT; line-cycle reads
#    do not reset them): value, LAST_ADD, value again. LAST_ADD catches a misaddressed
#    read, even one repeated identically (a stuck or pattern-dependent MOSI fault); the
#    second read catches noise on MISO, and also a read whose command byte flipped into
#    a write of zeros, which value + LAST_RWDATA + LAST_ADD would accept as a 0 window.
# The speed-up is per frame, not in the frame count: frames are built once, the loop only
# copies a frame to and from the scratch frame around write_readinto, and one checker
# verifies and stores all values (see _program).
# Health: STATUS1.CRC (b25) is the chip's own comparison of CHECKSUM against its
# reference (docs/ade7880-sim.md sources: datasheet p.94 MASK1 b25; anchors section 3
# "poll CHECKSUM or enable STATUS1.CRC"), so health() reads STATUS1 each cycle (CRC set
# is a fault at once, as before) and compares CHECKSUM itself only every _CSUM_EVERY
# cycles, as a backstop: 3 frames saved on 7 cycles of 8.
_CSUM_EVERY = const(8)

_RETRIES = const(3)

# xVRMS/xIRMS of a full-scale sine (0.5 V peak at the ADC): 5,326,737 / sqrt 2
# (anchors-public-facts.md section 3). A larger code means the input clipped.
RMS_FULL_SCALE = const(3766572)

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


_WIDE = 1 if sys.maxsize > 0x7FFFFFFF else 0     # array('l') has 8-byte slots (64-bit port)

# The read program (built once by _program): reads 0.._N_WINDOW-1 are a window's (the
# instantaneous ones first, so read_instant is a prefix), then one single read per data
# width 1, 2, 4 (read _K_SINGLE + width // 2, its address patched per use).
_N_INSTANT = const(24)      # 3 * _INSTANT_N
_N_WINDOW = const(33)       # 3 * RAW_N
_K_SINGLE = const(33)
# Per read, d holds two uint16: the value's data offset v in the buffer, then flags |
# slot << 8: the width (bits 0-2), _F_SIGNED16, _F_TWICE (value, LAST_ADD, value again;
# else value, LAST_RWDATA of its width, LAST_ADD), _F_NOSTORE (single reads: the caller
# takes the bytes). The other frames' offsets follow from v (see the checkers).
_F_SIGNED16 = const(8)
_F_TWICE = const(16)
_F_NOSTORE = const(32)


def _program():
    """The frames of every read back to back, each as its 3 header bytes (op, address:
    the template, never overwritten) then its data bytes (as last received), and d."""
    reads = []
    for ph in range(3):
        regs = _PHASE_REGS[ph]
        for k in range(_INSTANT_N):
            reads.append((regs[k], (_F_SIGNED16 if _SIGN_BITS[k] == 16 else 0)
                          | (ph * RAW_N + k) << 8))
    for ph in range(3):
        regs = _PHASE_REGS[ph]
        for k in range(_INSTANT_N, RAW_N):      # latched: read twice (see the notes above)
            reads.append((regs[k], _F_TWICE | (ph * RAW_N + k) << 8))
    for addr in (0xE700, 0xE900, 0xE000):       # placeholders of width 1, 2, 4
        reads.append((addr, _F_NOSTORE))
    size = 0
    for addr, f in reads:
        size += 11 + 2 * _width(addr)
    buf = bytearray(size)
    d = array("H", [0] * (2 * len(reads)))
    o = 0
    for i in range(len(reads)):
        addr, f = reads[i]
        n = _width(addr)
        d[2 * i] = o + 3
        d[2 * i + 1] = f | n
        twice = f & _F_TWICE
        for a in (addr, _LAST_ADD if twice else _ECHO[n], addr if twice else _LAST_ADD):
            buf[o] = 0x01
            buf[o + 1] = a >> 8
            buf[o + 2] = a & 0xFF
            o += 3 + _width(a)
    return buf, d


class ADE7880:
    CYCLE_PERIOD = _CSUM_EVERY   # health()'s SPI traffic repeats every this many calls

    def __init__(self, spi, cs, irq0=None, line_cycles=20, zx_phases=3, sixty_hz=False,
                 gains=None, phcal=None, native=True, irq_flag=None, irq1=None):
        """spi: machine.SPI-like (write_readinto); cs: Pin-like, active low.
        line_cycles: half line cycles of the mains per window (LINECYC / zx_phases).
        zx_phases: 1 (phase A only, 1P2W wiring) or 3 (A, B and C zero crossings).
        gains: 3 rows of (igain, vgain, pgain) register values (signed 24-bit); phcal: 3
        PHCAL values (10-bit). Both come from the calibration config.
        native=False uses the plain checker even where viper exists (tests).
        irq1: the IRQ1 input (no handler: a power-fail watcher reads its level; low
        while a masked STATUS1 event, SAG, or a chip reset is pending)."""
        self._spi = spi
        self._cs = cs
        self.native = bool(native and _check_native is not None)
        self._buf, self._d = _program()
        self._bad = bytearray(_K_SINGLE + 3)          # per read: not confirmed
        mb = memoryview(self._buf)
        d = self._d
        # The single reads' value bytes (index width // 2), what _read_bytes returns.
        self._vals = tuple(mb[d[2 * k]:d[2 * k] + (d[2 * k + 1] & 7)]
                           for k in range(_K_SINGLE, _K_SINGLE + 3))
        # The scratch frame every frame is clocked in (one view per frame length instead
        # of one per frame: about 2 KB less heap on a 32-bit board, for a copy of a few
        # bytes per frame): [n] the whole frame of n data bytes, [4 + n] its data.
        m = memoryview(bytearray(7))
        self._fv = (None, m[:4], m[:5], None, m, m[3:4], m[3:5], None, m[3:])
        # One write program per data width (write, LAST_OP, LAST_ADD, LAST_RWDATA of its
        # width: 15 + 2n bytes, headers in place; address and data patched per use).
        wr = [None] * 5
        for n in (1, 2, 4):
            b = bytearray(15 + 2 * n)
            for o, a in ((3 + n, _LAST_OP), (7 + n, _LAST_ADD), (12 + n, _ECHO[n])):
                b[o] = 0x01
                b[o + 1] = a >> 8
                b[o + 2] = a & 0xFF
            wr[n] = b
        self._wr = tuple(wr)
        self._rarr = self._rmem = None          # raw and its byte view (plain checker)
        self.configure(line_cycles, zx_phases, sixty_hz, gains, phcal)
        self._csum = bytearray(4)
        self._csum_age = 0
        self.irq_pending = False
        self.ack_unconfirmed = False
        self.reset_seen = False
        self.irq1 = irq1
        self.sag_level = 0        # SAGLVL code; 0: sag detection off
        self.sag_cycles = 0
        self.zxtout = 0           # ZXTOUT code; 0: L1 zero-crossing timeout off
        self.sag_on = False       # SAG enabled in MASK1 (all phases live)
        self._sag_dip = False     # SAG masked for a dip of a phase the meter calls live
        self.sag = 0              # VSPHASE bits at the last PHSTATUS read (bit 0: L1), | 8
                                  # once sag_l1() read them while IRQ1 is low
        self.spi_errors = 0
        # Without an IRQ0 line the engine polls STATUS0 for LENERGY instead.
        self.has_irq = irq0 is not None
        # The board may give its own flag (the sim board: an asyncio.Event, set from
        # the same thread; see boards/sim/board.py for why not a ThreadSafeFlag there).
        self.irq_flag = irq_flag
        if irq0 is not None and irq_flag is None:
            try:
                from asyncio import ThreadSafeFlag
                self.irq_flag = ThreadSafeFlag()
            except (ImportError, AttributeError):
                pass
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

    def set_sag(self, level, half_cycles, zxtout=0):
        """Supply-failure detection for the next begin(): SAGLVL code (0: off), SAGCYC
        half cycles, ZXTOUT code for L1's zero-crossing timeout (62.5 us each; 0: off).
        ValueError (nothing changed) names a bad value."""
        if not isinstance(level, int) or not 0 <= level <= 0xFFFFFF:
            raise ValueError("sag level must be a 24-bit code 0..16777215, got %r" % (level,))
        if not isinstance(half_cycles, int) or not 1 <= half_cycles <= 255:
            raise ValueError("sag half cycles must be 1..255, got %r" % (half_cycles,))
        if not isinstance(zxtout, int) or not 0 <= zxtout <= 0xFFFF:
            raise ValueError("zero-crossing timeout must be 0..65535, got %r" % (zxtout,))
        self.sag_level = level
        self.sag_cycles = half_cycles
        self.zxtout = zxtout

    def sag_l1(self):
        """The power-fail watcher's reading (firmware/powerfail.py, every 10 ms): True
        while L1 is gone (no zero crossing for ZXTOUT) or below SAGLVL. IRQ1 high: no
        SPI traffic. IRQ1 low: once per low spell a verified STATUS1 read (self.sag
        bit 3 = read in this spell, bit 0 = L1 down): ZXTOVA is L1; SAG needs PHSTATUS
        (see _sag_seen). A chip reset (RSTDONE) is left to health().
        Raises ChipError if the chip does not answer. Allocates nothing."""
        p = self.irq1
        if p is None or p.value():
            self.sag = 0
            return False
        if not self.sag & 8:
            d = self._read_bytes(_STATUS1)
            if d[3] & _STATUS1_ZXTOVA:
                self.sag = 9
                self.write(_STATUS1, _STATUS1_ZXVA)     # so health() sees L1 cross again
            elif d[1] & (_STATUS1_SAG >> 16) and self.sag_on:
                self.sag = 8
                self._sag_seen()
            else:
                self.sag = 8
        return bool(self.sag & 1)

    def _sag_seen(self):
        """STATUS1.SAG with SAG enabled: which phases? L1 below: latched (bit 0 of
        self.sag). Otherwise acknowledged, and if another phase is below, SAG is masked
        (its sag would come back every SAGCYC half cycles); ZXTOVA still watches L1."""
        d = self._read_bytes(_PHSTATUS)
        vs = (d[0] >> (_VSPHASE_SHIFT - 8)) & 7
        self.sag = vs | (self.sag & 8)
        if vs & 1:
            return
        if vs:
            self.sag_on = False
            self._sag_dip = True
            self.write(_MASK1, _STATUS1_ZXTOVA if self.zxtout else 0)
        self.write(_STATUS1, _STATUS1_SAG)

    # ---- interrupt: only set flags; the engine acts on them in its task ----
    def _on_irq0(self, pin):
        self.irq_pending = True
        f = self.irq_flag
        if f is not None:
            f.set()               # ThreadSafeFlag.set is safe from a hard IRQ

    # ---- wire level ----
    def _frame(self, buf, o, n):
        """The frame at buf[o] (3 header bytes, n data bytes), its own CS cycle (the chip
        ends a frame on /SS high), clocked in place in the scratch frame: the header and
        a write's data are copied in (a read sends zeros), a read's reply data back into
        buf, so buf's headers stay the template."""
        fv = self._fv
        f = fv[n]
        op = buf[o]
        f[0] = op
        f[1] = buf[o + 1]
        f[2] = buf[o + 2]
        i = 0
        while i < n:
            f[3 + i] = 0 if op else buf[o + 3 + i]
            i += 1
        cs = self._cs
        try:
            cs(0)
            self._spi.write_readinto(f, f)
            cs(1)
        except BaseException:
            cs(1)
            raise
        if op:
            buf[o + 3:o + 3 + n] = fv[4 + n]      # a slice store: a copy, no allocation

    def _xfer(self, k0, k1):
        """The frames of reads k0..k1-1, in order (viper: the same loop, native)."""
        buf = self._buf
        d = self._d
        if self.native:
            try:
                _xfer_native(self._spi, self._cs, buf, d, k0, k1, self._fv, self._fv[4])
            except BaseException:
                self._cs(1)
                raise
            return
        # Plain Python: _frame's work inlined for reads (a call per frame is most of it).
        fv = self._fv
        s = fv[4]
        spi = self._spi
        cs = self._cs
        try:
            for k in range(k0, k1):
                o = d[2 * k] - 3
                f = d[2 * k + 1]
                w = f & 7
                n = w
                i = 0
                while i < 3:
                    s[0] = 0x01
                    s[1] = buf[o + 1]
                    s[2] = buf[o + 2]
                    s[3:7] = b"\0\0\0\0"               # a read sends zeros as data
                    b = fv[n]
                    cs(0)
                    spi.write_readinto(b, b)
                    cs(1)
                    buf[o + 3:o + 3 + n] = fv[4 + n]
                    o += 3 + n
                    i += 1
                    # twice: value, LAST_ADD, value; else value, LAST_RWDATA, LAST_ADD
                    n = 2 if i == (1 if f & _F_TWICE else 2) else w
        except BaseException:
            cs(1)
            raise

    def _mem(self, arr):
        """A byte view of the caller's array('l'), for the plain checker's 32-bit values
        of 2**30 and more in magnitude: they go into the array as bytes, never as a long
        int (a 31-bit small int cannot hold them on a 32-bit port)."""
        if arr is not self._rarr:
            import uctypes
            self._rmem = uctypes.bytearray_at(uctypes.addressof(arr),
                                              len(arr) * (8 if _WIDE else 4))
            self._rarr = arr
        return self._rmem

    def _check(self, k0, k1, raw):
        """Verify reads k0..k1-1 and store them into raw as signed 32-bit words; marks
        failed reads in _bad, returns how many failed. Plain Python below: the same
        contract and results as drivers/ade7880_viper.check."""
        buf = self._buf
        d = self._d
        bad = self._bad
        if self.native:
            return _check_native(buf, d, k0, k1, raw, _WIDE, bad)
        nbad = 0
        for k in range(k0, k1):
            v = d[2 * k]                    # value data; address sent at v - 2
            f = d[2 * k + 1]
            w = f & 7
            if f & _F_TWICE:                # value, LAST_ADD, value again
                a = v + w + 3
                c = a + 5
            else:                           # value, LAST_RWDATA, LAST_ADD
                c = v + w + 3
                a = c + w + 3
            ok = buf[a] == buf[v - 2] and buf[a + 1] == buf[v - 1]
            i = 0
            while ok and i < w:
                ok = buf[v + i] == buf[c + i]
                i += 1
            if not ok:
                bad[k] = 1
                nbad += 1
                continue
            bad[k] = 0
            if f & _F_NOSTORE:
                continue
            slot = f >> 8
            if w == 4:
                b0 = buf[v]
                if 0x40 <= b0 < 0xC0:          # |value| >= 2**30: store the bytes (LE port)
                    m = self._mem(raw)
                    i = slot * (8 if _WIDE else 4)
                    m[i] = buf[v + 3]
                    m[i + 1] = buf[v + 2]
                    m[i + 2] = buf[v + 1]
                    m[i + 3] = b0
                    if _WIDE:
                        s = 0xFF if b0 & 0x80 else 0
                        m[i + 4] = s
                        m[i + 5] = s
                        m[i + 6] = s
                        m[i + 7] = s
                    continue
                x = (((b0 ^ 0x80) - 0x80) << 24) | (buf[v + 1] << 16) | (buf[v + 2] << 8) \
                    | buf[v + 3]
            elif w == 2:
                x = (buf[v] << 8) | buf[v + 1]
                if f & _F_SIGNED16 and x & 0x8000:
                    x -= 0x10000
            else:
                x = buf[v]
            raw[slot] = x
        return nbad

    def _run(self, k0, k1, raw):
        """Run reads k0..k1-1 into raw, retrying each failed read; raises ChipError
        naming the register if one stays unconfirmed."""
        self._xfer(k0, k1)
        if not self._check(k0, k1, raw):
            return
        bad = self._bad
        for k in range(k0, k1):
            tries = 1
            while bad[k]:
                self.spi_errors += 1
                if tries >= _RETRIES:
                    t = self._d[2 * k] - 2
                    raise ChipError("ADE7880 read of 0x%02x%02x not confirmed (LAST_RWDATA/"
                                    "LAST_ADD or repeated read)"
                                    % (self._buf[t], self._buf[t + 1]))
                tries += 1
                self._xfer(k, k + 1)
                self._check(k, k + 1, raw)

    def _read_bytes(self, addr):
        """Verified read; returns a view of the value's bytes (MSB first), valid until
        the next read of that width. Allocates nothing."""
        n = _width(addr)
        k = _K_SINGLE + (n >> 1)
        t = self._d[2 * k] - 2
        buf = self._buf
        buf[t] = addr >> 8
        buf[t + 1] = addr & 0xFF
        self._run(k, k + 1, self._bad)        # not stored (_F_NOSTORE): any buffer will do
        return self._vals[n >> 1]

    def read(self, addr):
        """Verified read: the value must match what the chip says it sent (LAST_RWDATA)
        and LAST_ADD the address. Returns the unsigned register value."""
        b = self._read_bytes(addr)
        v = 0
        for x in b:
            v = (v << 8) | x
        return v

    def write(self, addr, value):
        """Verified write: LAST_OP = 0xCA, LAST_ADD = addr and LAST_RWDATA = value.
        value is taken modulo 2**(8 * width) (its low bytes)."""
        n = _width(addr)
        b = self._wr[n]
        b[1] = addr >> 8
        b[2] = addr & 0xFF
        for i in range(n):
            b[3 + i] = (value >> (8 * (n - 1 - i))) & 0xFF
        for _ in range(_RETRIES):
            self._frame(b, 0, n)
            self._frame(b, 3 + n, 1)          # LAST_OP
            self._frame(b, 7 + n, 2)          # LAST_ADD
            self._frame(b, 12 + n, n)         # LAST_RWDATA of the width
            ok = b[6 + n] == _OP_WRITE and b[10 + n] == b[1] and b[11 + n] == b[2]
            i = 0
            while ok and i < n:
                ok = b[15 + n + i] == b[3 + i]
                i += 1
            if ok:
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
        b = self._wr[1]                 # three unverified writes of 0x01 to 0xEBFF select
        b[1] = _SPI_SELECT >> 8         # SPI (nothing to verify yet)
        b[2] = _SPI_SELECT & 0xFF
        b[3] = 0x01
        for _ in range(3):
            self._frame(b, 0, 1)
        self.write(_CONFIG2, _CONFIG2_I2C_LOCK)
        cfmode = self.read(_CFMODE)
        if cfmode != _CFMODE_RESET:
            raise ChipError("No ADE7880 found: CFMODE read 0x%04x, expected 0x%04x"
                            % (cfmode, _CFMODE_RESET))
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
                # 24-bit signed as the chip's 32-bit ZPSE word (sign extended to bit 27)
                self.write(regs[k], row[k] & 0x0FFFFFFF)
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
        # Sag: SAGLVL before SAGCYC (writing SAGCYC restarts the chip's half-cycle count,
        # datasheet), only when they differ so a re-init keeps a detection in progress.
        self._ensure(_SAGLVL, self.sag_level)
        if self.sag_level:
            self._ensure(_SAGCYC, self.sag_cycles)
        if self.zxtout:
            self._ensure(_ZXTOUT, self.zxtout)
        # SAG only while all phases are live: a dead one would raise it every SAGCYC.
        self.sag_on = bool(self.sag_level) and self.zx_mask == 7
        self._sag_dip = False
        self.write(_MASK1, (_STATUS1_SAG if self.sag_on else 0)
                   | (_STATUS1_ZXTOVA if self.zxtout else 0))
        # Clear stale flags (write 1 to clear) except LENERGY: a window latched before
        # this re-init is still to be read; and except SAG and ZXTOVA: a supply failure
        # in progress stays latched (IRQ1 low) for the watcher (ZXTOVA is set once).
        self.write(_STATUS1, 0xFFFEFFF7)        # all but b16 (SAG) and b3 (ZXTOVA)
        self.write(_DSPWP_SEL, _DSPWP_KEY)
        self.write(_DSPWP_SET, _DSPWP_PROTECT)
        self.write(_RUN, 1)
        self._csum[:] = self._read_bytes(_CHECKSUM)
        self._csum_age = 0

    def _ensure(self, addr, value):
        if self.read(addr) != value:
            self.write(addr, value)

    # ---- cycle ----
    def health(self):
        """Check for a chip reset and for configuration upsets. Returns FAULT_RESET,
        FAULT_CHECKSUM or FAULT_NONE. Raises ChipError if the chip does not answer
        (after a reset its port is back in I2C mode and SPI reads are not confirmed).
        STATUS1 each call; CHECKSUM against begin()'s every _CSUM_EVERY calls (the chip
        compares it itself and sets STATUS1.CRC: see _CSUM_EVERY). Allocates nothing."""
        d = self._read_bytes(_STATUS1)          # MSB first: byte 2 bit 7 is b15
        if d[2] & (_STATUS1_RSTDONE >> 8):
            return FAULT_RESET
        if d[0] & (_STATUS1_CRC >> 24):
            return FAULT_CHECKSUM
        if d[3] & _STATUS1_ZXTOVA:             # L1 gone: crossing again since sag_l1?
            if self.sag & 1 and d[2] & (_STATUS1_ZXVA >> 8):
                self.write(_STATUS1, _STATUS1_ZXTOVA | _STATUS1_ZXVA)   # IRQ1 rises
                self.sag &= 0xE
        elif d[1] & (_STATUS1_SAG >> 16) and self.sag_on:   # a flip: which phases?
            self._sag_seen()
        self._csum_age += 1
        if self._csum_age >= _CSUM_EVERY:
            self._csum_age = 0
            if self._sag_dip and self.zx_mask == 7:     # that phase back above SAGLVL?
                if not self._read_bytes(_PHSTATUS)[0] >> (_VSPHASE_SHIFT - 8) & 7:
                    self.sag_on = True
                    self._sag_dip = False
                    self.write(_STATUS1, _STATUS1_SAG)
                    self.write(_MASK1, _STATUS1_SAG | (_STATUS1_ZXTOVA if self.zxtout else 0))
            if self._read_bytes(_CHECKSUM) != self._csum:
                return FAULT_CHECKSUM
        return FAULT_NONE

    def window_flagged(self):
        return bool(self._read_bytes(_STATUS0)[3] & _STATUS0_LENERGY)

    def read_instant(self, raw):
        """Instantaneous values only (RMS, powers, PF, period, angle), no energy."""
        self._run(0, _N_INSTANT, raw)

    def read_window(self, raw):
        """Read the window that just ended into raw (3 * RAW_N ints) and acknowledge it.

        Returns True if raw holds a new window, False if none was pending. Raises
        ChipError if the chip cannot be read; nothing is acknowledged then, so the same
        window is read again after recovery. If the acknowledgement itself cannot be
        confirmed, the window is still returned (its data was verified) and
        ack_unconfirmed is set: the caller must call recover() before the next window.
        Allocates nothing (every value lands in raw as a signed 32-bit word)."""
        self.irq_pending = False
        if not self._read_bytes(_STATUS0)[3] & _STATUS0_LENERGY:
            return False
        self._run(0, _N_WINDOW, raw)
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
