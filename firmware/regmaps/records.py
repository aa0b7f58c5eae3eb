"""Clock, tariffs, demand and loss correction over Modbus: holding registers 0xC800..0xCBFF
(a space, firmware/modbus/space.py; routed by firmware/ports.py).

    from firmware.regmaps.records import RecordsSpace
    space = RecordsSpace(rectime, settings)   # settings: the config's unlock (access)

The layout is the table FIELDS below (address, registers, name, unit); u32/u64/i32 are
big-endian, high word first, as the KSEM's own registers (energies in 0.1 Wh/varh as
its uint64 counters). Everything reads; only the UTC time writes (FC 16, both
registers), and only from a caller unlocked through the config block's unlock register
(0xC000, firmware/regmaps/device.py): else exception 01, as a locked config write. A
value before 2020 or past 2106 is 03. Addresses in the block but in no field read 0;
a write anywhere else is 02. Reads allocate a little (long ints on a 32-bit board): not
the measurement path.
"""
from micropython import const

from firmware import tz
from firmware.walltime import SRC_MODBUS

_BASE = const(0xC800)
_END = const(0xCBFF)
_CLASS0 = const(0xC820)       # per class: 6 x u64 energies (24 registers)
_DEM0 = const(0xC8B0)         # per class: current max W, its UTC, overrun s; previous same
_CORR0 = const(0xC900)        # corrected energies, 4 x u64

# (address, registers, name, unit): the documented map (tools/export_maps.py)
FIELDS = (
    (0xC800, 2, "UTC time (write: unlock first)", "s since 1970, 0 unknown"),
    (0xC802, 1, "time valid", "0/1"),
    (0xC803, 1, "time source", "0 none, 1 RTC, 2 SNTP, 3 Modbus"),
    (0xC804, 2, "last clock step", "s, int32"),
    (0xC806, 1, "local year", ""), (0xC807, 1, "local month", ""),
    (0xC808, 1, "local day", ""), (0xC809, 1, "local hour", ""),
    (0xC80A, 1, "local minute", ""), (0xC80B, 1, "local second", ""),
    (0xC80C, 1, "local weekday", "0 Monday"),
    (0xC80D, 1, "UTC offset", "min, int16"),
    (0xC80E, 1, "current tariff class", "0..5"),
    (0xC80F, 1, "tariff classes configured", ""),
    (0xC810, 1, "overrun warning", "0/1"),
    (0xC811, 2, "apparent power, last 5 min", "VA"),
    (0xC813, 2, "last period's average import power", "W"),
    (0xC815, 1, "integration period", "min"),
    (0xC816, 1, "loss correction enabled", "0/1"),
    (0xC817, 2, "billing period start", "UTC s"),
    (0xC819, 2, "previous billing period start", "UTC s"),
    (0xC820, 144, "per class c: import, export, Q1, Q2, Q3, Q4 at 0xC820 + 24c",
     "u64 0.1 Wh / 0.1 varh"),
    (0xC8B0, 72, "per class c at 0xC8B0 + 12c: current bill max, its UTC, overrun; "
     "previous bill the same", "u32 W, s, s"),
    (0xC900, 16, "corrected import, export, Q absorbed, Q supplied", "u64 0.1 Wh / varh"),
)


class RecordsSpace:
    def __init__(self, rt, settings):
        self.rt = rt
        self.settings = settings

    def _field(self, a):
        """(first address, registers, value) of the field holding register a."""
        rt = self.rt
        w = rt.wall
        if a < 0xC806:
            if a < 0xC802:
                return 0xC800, 2, w.utc() or 0
            if a < 0xC804:
                return a, 1, (1 if w.valid() else 0) if a == 0xC802 else w.source
            return 0xC804, 2, (w.last_step_ms // 1000) & 0xFFFFFFFF
        if a < 0xC80E:
            u = w.utc()
            if u is None:
                return a, 1, 0
            off = tz.offset(rt.tariff.z, u)
            if a == 0xC80D:
                return a, 1, (off // 60) & 0xFFFF
            return a, 1, tz.fields(u + off)[a - 0xC806]
        d = rt.demand
        if a < 0xC811:
            from firmware.tariff import n_classes
            return a, 1, (rt.tariff.cls if a == 0xC80E else n_classes(rt.tariff.tc)
                          if a == 0xC80F and rt.tariff.tc else 1 if d.warning else 0)
        if a < 0xC815:
            return (0xC811, 2, d.s5_va) if a < 0xC813 else (0xC813, 2, d.last_w)
        if a < 0xC817:
            return a, 1, d.period_s // 60 if a == 0xC815 else 1 if rt.losses.enabled else 0
        if a < 0xC81B:
            return (0xC817, 2, d.v[36]) if a < 0xC819 else (0xC819, 2, d.v[37])
        if _CLASS0 <= a < _DEM0:
            k = (a - _CLASS0) // 4
            return _CLASS0 + 4 * k, 4, rt.tariff.milli(k // 6, k % 6) // 100
        if _DEM0 <= a < _DEM0 + 72:
            k = (a - _DEM0) // 2            # 6 per class: cur max, t, over, prev ...
            c, j = k // 6, k % 6
            return _DEM0 + 2 * k, 2, d.v[12 * (j % 3) + 2 * c + j // 3]   # demand.py _MAX_W..
        if _CORR0 <= a < _CORR0 + 16:
            k = (a - _CORR0) // 4
            return _CORR0 + 4 * k, 4, rt.losses.milli(k) // 100
        return a, 1, 0

    def read(self, addr, count, out, off):
        if addr < _BASE or addr + count - 1 > _END:
            return 2
        a = addr
        o = off
        while a < addr + count:
            first, n, v = self._field(a)
            for r in range(a - first, n):
                if a >= addr + count:
                    break
                wd = (v >> (16 * (n - 1 - r))) & 0xFFFF
                out[o] = wd >> 8
                out[o + 1] = wd & 0xFF
                o += 2
                a += 1
        return 0

    def write(self, addr, count, src, soff, ctx=None):
        if addr != _BASE or count != 2:
            return 2
        s = self.settings
        if s is None or not s.access.allowed(ctx):
            return 1
        v = (src[soff] << 24) | (src[soff + 1] << 16) | (src[soff + 2] << 8) | src[soff + 3]
        try:
            self.rt.wall.set(v, SRC_MODBUS)
        except ValueError:
            return 3
        return 0
