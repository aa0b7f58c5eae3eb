"""One metering cycle's results, as integers in fixed units.

    from firmware.snapshot import Snapshot, P_MW, L1, TOTAL, E_ACTIVE_IMPORT
    snap = meter.front            # the last published cycle
    watts_l1 = snap.inst[L1 + P_MW] * POWER_UNIT_MW / 1000
    wh_import = snap.energy_mwh(TOTAL, E_ACTIVE_IMPORT) / 1000

Layout (all readers index by these constants; register maps are tables of them):
- inst: array of signed ints, one block of NQ values per phase L1, L2, L3 and one for
  the three-phase total, block base = L1/L2/L3/TOTAL (0, NQ, 2*NQ, 3*NQ).
- energy counters: NE kinds per block (phases then total), in milli-units (mWh, mvarh,
  mVAh), each split in e_hi (whole kWh) and e_lo (0..999999 mWh) so that every stored
  int stays below 2**30 and is a MicroPython small int on a 32-bit board too.

Units are in the names, except powers: P_MW, Q_MVAR and S_MVA hold units of
POWER_UNIT_MW milliwatts (mvar, mVA), 10 mW, so that every value of the rated range
(CT 5000:5, three phases, 290 V: 4.35 MW total) is a small int on a 32-bit board
(below 2**30) and fits array('i'); register maps derive their divisors from
POWER_UNIT_MW. Beyond, a phase's power saturates at +-P_SAT (never wraps) and the
total at 3 P_SAT. snapshot.json (firmware/report.py) still says mW. Sign convention: import positive (Enedis DTR section 4.4.4,
IEC 62053-23 Annex C). Quadrants: 1 (+P +Q), 2 (-P +Q), 3 (-P -Q), 4 (+P -Q), 0 no load.

The engine fills a back snapshot and publishes it by swapping references (see
firmware/metering.py), so a reader that takes `meter.front` and does not yield sees
one whole cycle.
"""
from array import array
from micropython import const

# Per-block instantaneous quantities.
U_MV = const(0)        # phase voltage, mV rms (total block: mean of the live phases, 0 with none)
I_MA = const(1)        # current, mA rms (total block: sum of phases)
P_MW = const(2)        # active power, POWER_UNIT_MW mW, import positive
Q_MVAR = const(3)      # fundamental reactive power, POWER_UNIT_MW mvar, Q1/Q2 positive
S_MVA = const(4)       # apparent power, POWER_UNIT_MW mVA (total: arithmetic sum)
PF_E4 = const(5)       # power factor P/S in 1e-4, sign of P (export negative)
ANGLE_CDEG = const(6)  # angle by which current lags voltage, 0.01 deg, 0..35999
F_MHZ = const(7)       # line frequency, mHz (total block: phase L1's)
QUADRANT = const(8)    # 0 none, 1..4
NQ = const(9)

POWER_UNIT_MW = const(10)      # unit of P_MW, Q_MVAR, S_MVA in milli-units
P_SAT = const(357913941)       # |phase power| limit, (2**30 - 1) // 3 units: 3.58 MW

L1 = const(0)
L2 = const(9)
L3 = const(18)
TOTAL = const(27)
BLOCKS = (L1, L2, L3, TOTAL)

# Energy counter kinds (per block).
E_ACTIVE_IMPORT = const(0)    # mWh, P > 0
E_ACTIVE_EXPORT = const(1)    # mWh, P < 0
E_REACTIVE_Q1 = const(2)      # mvarh
E_REACTIVE_Q2 = const(3)
E_REACTIVE_Q3 = const(4)
E_REACTIVE_Q4 = const(5)
E_APPARENT_IMPORT = const(6)  # mVAh while P >= 0
E_APPARENT_EXPORT = const(7)  # mVAh while P < 0
NE = const(8)
N_COUNTERS = const(32)        # NE * 4 blocks
MILLI_PER_HI = const(1000000)  # e_lo wraps into e_hi every 1e6 milli-units (1 kWh)

PHASE_NAMES = ("L1", "L2", "L3", "total")
ENERGY_NAMES = ("active_import", "active_export", "reactive_q1", "reactive_q2",
                "reactive_q3", "reactive_q4", "apparent_import", "apparent_export")
_INST_NAMES = const(("u_mv", "i_ma", "p_mw", "q_mvar", "s_mva", "pf_e4", "angle_cdeg",
                     "f_mhz", "quadrant"))

# Status bits.
ST_CHIP_OK = const(1)       # chip answered and was configured
ST_SINGLE_PHASE = const(2)  # 1P2W wiring: L2/L3 blocks stay zero
ST_STALE = const(4)         # no new chip window in the last cycle time-out
ST_L1_LIVE = const(8)       # phase L1 has voltage (above 50 V; lost below 40 V)
_ST_L2_LIVE = const(16)      # L2 (never set with 1P2W wiring)
ST_L3_LIVE = const(32)      # L3
ST_OVERLOAD = const(64)     # an input (U or I of a phase) beyond the ADC's full scale
ST_LIVE_SHIFT = const(3)    # status >> 3 & 7: live phases, bit 0 = L1


def counter_index(block, kind):
    """Index of counter `kind` of the block whose inst base is `block`."""
    return (block // NQ) * NE + kind


class Snapshot:
    __slots__ = ("inst", "e_hi", "e_lo", "seq", "t_ms", "window_us", "status", "events")

    def __init__(self):
        # 'i': 4-byte slots on every port (firmware/meterk_viper.py writes them as words)
        self.inst = array("i", [0] * (NQ * 4))
        self.e_hi = array("i", [0] * N_COUNTERS)
        self.e_lo = array("i", [0] * N_COUNTERS)
        self.seq = 0          # cycle number, +1 per published snapshot
        self.t_ms = 0         # board clock at publication
        self.window_us = 0    # length of the chip window this cycle covers
        self.status = 0
        self.events = 0       # count of driver events (re-inits) so far

    def energy_mwh(self, block, kind):
        """Counter value in milli-units (may be a long int on a 32-bit board)."""
        i = counter_index(block, kind)
        return self.e_hi[i] * MILLI_PER_HI + self.e_lo[i]

    def copy_from(self, other):
        """Element-wise copy without allocating (slice assignment would)."""
        a, b = self.inst, other.inst
        for i in range(len(a)):
            a[i] = b[i]
        a, b = self.e_hi, other.e_hi
        c, d = self.e_lo, other.e_lo
        for i in range(N_COUNTERS):
            a[i] = b[i]
            c[i] = d[i]
        self.seq = other.seq
        self.t_ms = other.t_ms
        self.window_us = other.window_us
        self.status = other.status
        self.events = other.events
