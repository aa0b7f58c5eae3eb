"""Loss correction (Enedis-NMO-CPT_002E section 4; digest section 3): energy at the
tariff point computed from the measured energy, beside it (never replacing it).

    from firmware.losses import Losses, kj_permille
    kj_permille(6340, 630)        # transformer PCC 6340 W on 630 kVA: (1010, 990)
    lc = Losses(meter.energy)
    lc.configure(cfg["losses"])   # kj_import, kj_export (per-mille), kf_w, ktg (1/100)
    lc.tick(dt_ms)                # in a task, every few seconds (the net-flow method)
    lc.milli(0)                   # corrected mWh / mvarh: 0 import, 1 export, 2 Q absorbed,
                                  # 3 Q supplied (_C_*)

Per tick the direction is the sign of the measured net active energy (import - export
over the tick: "uniquement de l'énergie active mesurée", digest 3.2), and only that
direction is corrected (net flow, digest 3.5 (b)):
    import:  Ea' = Ea x Kj_i/1000 + Kf x dt          Er' = Ea' x (Er/Ea + Ktg)
    export:  Ea' = Ea x Kj_e/1000 - Kf x dt (>= 0)   Er' = Ea' x (Er/Ea - Ktg) signed,
             which is Ea' x (Er/Ea + Ktg) in magnitudes (Ea, Ea' > 0)
with Er the signed measured reactive (import Q1 - Q4, export Q2 - Q3); a positive Er'
counts as absorbed (_C_Q_ABSORBED), a negative one as supplied. The other direction's
active energy is carried over uncorrected. A tick without active flow (transformer
energised, no load) adds the iron losses Kf x dt to import.
Integers: each corrected counter keeps its fraction in units of 1/360,000,000 mWh
(1/1000 for Kj x 1/3600 for W x ms x 1/100 for Ktg), carried to the next tick.
"""
from array import array
from micropython import const

_C_IMPORT = const(0)
_C_EXPORT = const(1)
_C_Q_ABSORBED = const(2)      # reactive drawn (Er' > 0): "réactif soutiré"
_C_Q_SUPPLIED = const(3)
_D = const(360000000)         # fraction units per mWh
_TOTAL0 = const(24)           # firmware/snapshot.py: block TOTAL x NE
_MILLI = const(1000000)
_P = const(12)


def kj_permille(pcc_w, sr_kva, line_num=0, line_den=1):
    """(Kj import, Kj export) in per-mille from a transformer's load losses PCC (W) and
    rated power Sr (kVA), plus lines' Joule losses as a fraction line_num/line_den
    (Cjl x L, e.g. 20 %/km x 0.05 km = 1/100). Rounded half up to the thousandth
    (digest 3.5); ValueError when outside 1.000..1.060 / 0.940..1.000."""
    if sr_kva <= 0 or pcc_w < 0 or line_num < 0 or line_den <= 0:
        raise ValueError("losses: PCC >= 0 W, Sr > 0 kVA, lines >= 0, got %r, %r, %r/%r"
                         % (pcc_w, sr_kva, line_num, line_den))
    # C = PCC / (Sr x 1000) + line: in per-mille, half up: floor(x + 1/2)
    num = pcc_w * line_den + line_num * sr_kva * 1000
    den = sr_kva * line_den
    c = (2 * num + den) // (2 * den)
    if c > 60:
        raise ValueError("losses: Joule coefficient %d per-mille beyond 1.060" % (1000 + c))
    return 1000 + c, 1000 - c


class Losses:
    def __init__(self, energy):
        self.energy = energy
        # corrected counters: kWh at [i], mWh at [4 + i], fraction in 1/_D mWh at
        # [8 + i]; the measured totals (kWh, mWh) at the last tick at [_P + 2k]
        self.c = array("i", bytes(4 * (_P + 12)))
        self.kj_i = self.kj_e = 1000
        self.kf_w = 0
        self.ktg = 9
        self.enabled = False
        self.mark()

    def configure(self, lc):
        self.enabled = lc["enabled"]
        self.kj_i = lc["kj_import"]
        self.kj_e = lc["kj_export"]
        self.kf_w = lc["kf_w"]
        self.ktg = lc["ktg"]

    def mark(self):
        e = self.energy
        for k in range(6):
            self.c[_P + 2 * k] = e.hi[_TOTAL0 + k]
            self.c[_P + 2 * k + 1] = e.lo[_TOTAL0 + k]

    def tick(self, dt_ms):
        e = self.energy
        c = self.c
        d = [0] * 6                     # measured import, export, Q1..Q4 (mWh) this tick
        for k in range(6):
            h = e.hi[_TOTAL0 + k]
            lo = e.lo[_TOTAL0 + k]
            d[k] = (h - c[_P + 2 * k]) * _MILLI + lo - c[_P + 2 * k + 1]
            c[_P + 2 * k] = h
            c[_P + 2 * k + 1] = lo
        if not self.enabled:
            return
        iron = self.kf_w * dt_ms * (_D // 3600)     # W x ms = 1/3600 mWh
        net = d[0] - d[1]
        if net >= 0:
            ea = d[0]
            er = d[2] - d[5]                      # Q1 - Q4
            corr = ea * self.kj_i * (_D // 1000) + iron
            other = d[1] * _D                     # export, uncorrected
            main = _C_IMPORT
        else:
            ea = d[1]
            er = d[3] - d[4]                      # Q2 - Q3 (Er/Ea: both signs flip)
            corr = max(0, ea * self.kj_e * (_D // 1000) - iron)
            other = d[0] * _D                     # import, uncorrected
            main = _C_EXPORT
        # Er' = Ea' x (Er/Ea + Ktg) in magnitudes: in export the signed Eap, Eam < 0
        # turn Eap x (Erm/Eam - Ktg) into the same (the transformer absorbs Ktg x |P|).
        q = (corr * er // ea if ea else 0) + corr * self.ktg // 100
        # what each corrected counter gains, in 1/_D mWh (>= 0), into d[0..3]
        d[0] = d[1] = d[2] = d[3] = 0
        d[main] = corr
        d[1 - main] = other
        if q >= 0:
            d[_C_Q_ABSORBED] = q
        else:
            d[_C_Q_SUPPLIED] = -q
        for i in range(4):
            if d[i]:
                f = c[8 + i] + d[i]
                m = f // _D
                c[8 + i] = f - m * _D
                if m:
                    lo = c[4 + i] + m
                    if lo >= _MILLI:
                        q = lo // _MILLI
                        lo -= q * _MILLI
                        c[i] += q
                    c[4 + i] = lo

    def milli(self, i):
        return self.c[i] * _MILLI + self.c[4 + i]
