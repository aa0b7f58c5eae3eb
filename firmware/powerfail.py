"""Supply-failure detection: tell the counter store the moment the supply goes.

    from firmware.powerfail import PowerFail, L1Collapse, PinLow
    pf = PowerFail(L1Collapse(meter), store.supply_failed, store.supply_ok)
    sup.spawn("powerfail", pf.run)       # or call pf.check() where a new reading arrives

The meter is powered from L1-N (KSEM manual 6.2: "at least L1 and N"), so L1 collapsing
means the supply capacitor's hold-up time is running out. A source is any callable
returning True (collapsed), False (present) or None (no new reading):
- L1Collapse: the published snapshot's L1 voltage below half its nominal value, judged
  once per new snapshot. Latency is `need` metering cycles (200-500 ms each): a
  fallback; the ADE7880's IRQ1 (below) or a board's power-fail input reacts within
  the hold-up budget and should be preferred.
- PinLow: a board's power_fail input (boards/contract.py: 0 while the supply fails).
- the chip's own detection on L1 (drivers/ade7880.py: set_sag, sag_l1): IRQ1 low,
  then one STATUS1 read: ZXTOVA (no L1 zero crossing for ZXTOUT, 16 ms) or SAG with
  PHSTATUS showing L1 below SAGLVL (SAG only while all phases are live: a dead L2/L3
  would raise it every SAGCYC half cycles). Either stays latched and the driver's flag
  answers without SPI traffic until L1 is back (health() acknowledges it). Latency:
  6-16 ms (ZXTOUT from L1's last crossing) or SAGCYC half cycles (20 ms at 50 Hz),
  plus one poll (period_ms). The App uses `chip.sag_l1` with need=1 when the board has
  no power-fail input, and L1Collapse as the `backup` source (collapsed when either
  says so; a backup returning None keeps its previous reading).
`need` consecutive collapsed readings call on_fail() once; as many present readings
afterwards call on_ok() (a brown-out the board lived through).
"""
import asyncio
from micropython import const

from firmware.snapshot import L1, U_MV

NOMINAL_MV = const(230000)      # 230 V phase-to-neutral (IEC 60038 low-voltage nominal)
COLLAPSE_PCT = const(50)


class L1Collapse:
    def __init__(self, meter, nominal_mv=NOMINAL_MV, pct=COLLAPSE_PCT):
        if not 0 < pct < 100 or nominal_mv <= 0:
            raise ValueError("L1 collapse: need nominal_mv > 0 and 0 < pct < 100, got %r, %r"
                             % (nominal_mv, pct))
        self.meter = meter
        self.threshold_mv = nominal_mv * pct // 100
        self._seq = meter.front.seq

    def __call__(self):
        f = self.meter.front
        if f.seq == self._seq:
            return None
        self._seq = f.seq
        return f.inst[L1 + U_MV] < self.threshold_mv


class PinLow:
    def __init__(self, pin):
        self.pin = pin

    def __call__(self):
        return self.pin.value() == 0


class PowerFail:
    def __init__(self, collapsed, on_fail, on_ok=None, need=2, period_ms=10, backup=None):
        if need < 1 or period_ms < 1:
            raise ValueError("power fail: need >= 1 and period_ms >= 1, got %r, %r"
                             % (need, period_ms))
        self.collapsed = collapsed
        self.on_fail = on_fail
        self.on_ok = on_ok
        self.need = need
        self.period_ms = period_ms
        self.failed = False
        self._run = 0           # consecutive readings contradicting the current state
        self.backup = backup    # a second source: collapsed when either says so
        self._late = False      # the backup's latest reading (None keeps it)

    def check(self):
        """Take one reading; returns whether the supply is (now) considered failed."""
        c = self.collapsed()
        b = self.backup
        if b is not None:
            v = b()
            if v is not None:
                self._late = bool(v)
            c = c or self._late
        if c is None:
            return self.failed
        if bool(c) == self.failed:
            self._run = 0
            return self.failed
        self._run += 1
        if self._run >= self.need:
            self._run = 0
            self.failed = not self.failed
            if self.failed:
                self.on_fail()
            elif self.on_ok is not None:
                self.on_ok()
        return self.failed

    async def run(self):
        while True:
            self.check()
            await asyncio.sleep_ms(self.period_ms)
