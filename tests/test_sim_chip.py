"""The ADE7880 simulator against hand-derived physics.

Expected register codes are computed here, on CPython, from the datasheet numbers and the
documented front end (docs/ade7880-sim.md) -- never from the simulator's own code. The
simulator is a host part, but its integer code must be right on a 32-bit build too, so
every test runs on both runtimes (`mpy_any`: the unix port and the 32-bit wasm32 port).
"""
import math

import pytest

# ---- datasheet numbers and front end, typed in independently of boards/sim -------------
PMAX = 27059678            # ADE7880 internal power at full-scale in-phase inputs
RMS_FS_CODE = 5326737      # xRMS code for a 0.5 V (peak) ADC input
FS_ACC_HZ = 1.024e6        # energy accumulation rate
ADC_FS_RMS = 0.5 / math.sqrt(2)   # full-scale sine at the ADC, V rms
V_DIV = 1001.0             # 1 MOhm : 1 kOhm divider
I_TO_V = 10.0 / 2500.0     # 2500:1 CT into 10 Ohm: volts per line amp


def u_of(v):
    return v / V_DIV / ADC_FS_RMS


def i_of(i, ct=None):
    if ct:
        i = i * 5.0 / ct
    return i * I_TO_V / ADC_FS_RMS


def lsb_joules(thr=3, ct=None):
    """Energy of one xWATTHR LSB, from datasheet eq. 26: WTHR*2^27*UFS*IFS/(PMAX*fs)."""
    ufs = ADC_FS_RMS * V_DIV
    ifs = ADC_FS_RMS / I_TO_V * ((ct / 5.0) if ct else 1.0)
    return thr * 2 ** 27 * ufs * ifs / (PMAX * FS_ACC_HZ)


PRELUDE = r'''
import json
from boards.sim.clock import VirtualClock
from boards.sim import scenario
from boards.sim.ade7880 import ADE7880Sim
from boards.sim.bus import SimPin, SimSPI

def nbytes(a):  # data bytes by address, from the datasheet ranges (not the sim's table)
    if 0xE700 <= a <= 0xE7FE or 0xEA00 <= a <= 0xEC01: return 1
    if 0xE600 <= a <= 0xE618 or 0xE900 <= a <= 0xE9FF or a == 0xE228: return 2
    return 4

class Host:
    def __init__(self, scn):
        self.clk = VirtualClock(1000)
        self.chip = ADE7880Sim(self.clk, scenario.parse(scn))
        self.cs = SimPin(1)
        self.spi = SimSPI(self.chip, self.cs)
        self.e0 = []
        self.e1 = []
        self.chip.irq0.irq(lambda p: self.e0.append(self.clk.now_us()), SimPin.IRQ_FALLING)
        self.chip.irq1.irq(lambda p: self.e1.append(self.clk.now_us()), SimPin.IRQ_FALLING)
    def frame(self, b, cut=None):
        b = bytearray(b)
        if cut is not None:
            b = b[:cut]
        self.cs(0); self.spi.write_readinto(b, b); self.cs(1)
        return b
    def rd(self, a, signed=False):
        n = nbytes(a)
        b = self.frame(bytes([1, a >> 8, a & 255]) + bytes(n))
        v = int.from_bytes(b[3:], 'big')
        if signed and v >> (8 * n - 1):
            v -= 1 << (8 * n)
        return v
    def wr(self, a, v, cut=None):
        n = nbytes(a)
        self.frame(bytes([0, a >> 8, a & 255]) + (v & ((1 << 8 * n) - 1)).to_bytes(n, 'big'), cut)
    def spi_mode(self):
        for _ in range(3):
            self.wr(0xEBFF, 1)
        self.wr(0xEC01, 2)
    def start(self, regs=()):
        self.spi_mode()
        self.wr(0xE503, 0xFFFFFFFF)
        for a, v in regs:
            self.wr(a, v)
        self.wr(0xE228, 1)
    def run(self, us, ack=False):  # the board's job: tick the chip at each next_event_us
        end = self.clk.now_us() + us
        while True:
            t = self.chip.next_event_us()
            if t is None or t > end:
                break
            if t > self.clk.now_us():
                self.clk.advance_us(t - self.clk.now_us())
            self.chip.advance()
            if ack and not self.chip.irq0():
                self.wr(0xE502, 0x20)   # what a driver does on LENERGY
        self.clk.advance_us(end - self.clk.now_us())
        self.chip.advance()

def out(x):
    print('@@JSON')
    print(json.dumps(x))
'''

def run(mpy, body):
    return mpy(PRELUDE + body)


def test_framing_widths_and_spi_selection(mpy_any):
    r = run(mpy_any, r'''
h = Host({"phases": {"L1": {"v_rms": 230}}})
res = {}
res["i2c_read"] = list(h.frame(bytes([1, 0xE6, 0x10, 0, 0])))
res["irq1_at_power_up"] = h.chip.irq1()
h.wr(0xE60C, 100)                       # ignored in I2C mode
h.wr(0xEBFF, 1); h.wr(0xEBFF, 1)
res["after_two"] = h.rd(0xE610)
h.wr(0xEBFF, 1)
res["cfmode"] = h.rd(0xE610)
res["locked_before"] = h.chip.locked
h.wr(0xEC01, 2)
res["locked"] = h.chip.locked
res["linecyc"] = h.rd(0xE60C)
res["status1"] = h.rd(0xE503)
res["lcycmode"] = h.rd(0xE702)
res["thr"] = [h.rd(0xEA02), h.rd(0xEA03), h.rd(0xEA04)]
res["compmode"] = h.rd(0xE60E)
res["checksum"] = h.rd(0xE51F)
h.wr(0xEA02, 7); h.wr(0xE60C, 0x1234); h.wr(0xE50A, 0x20)
res["rw"] = [h.rd(0xEA02), h.rd(0xE60C), h.rd(0xE50A)]
h.wr(0xE60C, 0x4321, cut=4)                # frame ends before the last data byte
res["short"] = h.rd(0xE60C)
b = bytearray([0, 0xE6, 0x0C, 0x11, 0x22]); h.spi.write_readinto(b, b)   # CS high
res["cs_high"] = [list(b), h.rd(0xE60C)]
res["bad_cmd"] = list(h.frame(bytes([0x81, 0xE6, 0x10, 0, 0])))
out(res)
''')
    assert r["i2c_read"] == [0xFF] * 5
    assert r["irq1_at_power_up"] == 0          # RSTDONE pending from power-up
    assert r["after_two"] == 0xFFFF            # still I2C: MISO idles high
    assert r["cfmode"] == 0x0EA0
    assert (r["locked_before"], r["locked"]) == (False, True)
    assert r["linecyc"] == 0xFFFF              # the write made in I2C mode did not land
    assert r["status1"] == 0x8000
    assert r["lcycmode"] == 0x78 and r["thr"] == [3, 3, 3] and r["compmode"] == 0x01FF
    assert r["checksum"] == 0xAFFA63B9
    assert r["rw"] == [7, 0x1234, 0x20]
    assert r["short"] == 0x1234
    assert r["cs_high"] == [[0xFF] * 5, 0x1234]
    assert r["bad_cmd"][3:] == [0, 0]


def test_last_op_add_rwdata(mpy_any):
    r = run(mpy_any, r'''
h = Host({})
h.spi_mode()
res = []
h.wr(0xE60C, 100)
res.append([h.rd(0xEA01), h.rd(0xE9FE), h.rd(0xE9FF)])
h.rd(0xE610)
res.append([h.rd(0xEA01), h.rd(0xE9FE), h.rd(0xE9FF)])
h.wr(0xEA02, 5)
res.append([h.rd(0xEA01), h.rd(0xE9FE), h.rd(0xE7FD)])
h.wr(0xE50A, 0x12345678)
res.append([h.rd(0xEA01), h.rd(0xE9FE), h.rd(0xE5FF), h.rd(0xE7FD), h.rd(0xE9FF)])
h.rd(0xE503)
res.append([h.rd(0xEA01), h.rd(0xE9FE), h.rd(0xE5FF)])
out(res)
''')
    assert r[0] == [0xCA, 0xE60C, 100]
    assert r[1] == [0x35, 0xE610, 0x0EA0]
    assert r[2] == [0xCA, 0xEA02, 5]
    assert r[3] == [0xCA, 0xE50A, 0x12345678, 5, 0x0EA0]   # each width keeps its own data
    assert r[4] == [0x35, 0xE503, 0x8000]


def test_ram_write_queue_and_protection(mpy_any):
    r = run(mpy_any, r'''
h = Host({})
h.spi_mode()
res = {}
h.wr(0x4380, 0x123456)                    # AIGAIN
res["pending"] = h.rd(0x4380)
h.wr(0x4381, 0x0FF00000)                  # AVGAIN = -1048576 (ZPSE)
res["still"] = h.rd(0x4380)
h.wr(0x4382, 7)
res["landed"] = [h.rd(0x4380), h.rd(0x4381), h.rd(0x4382)]
h.wr(0x4386, 42); h.wr(0x4386, 42); h.wr(0x4386, 42)   # last register written 3 times
res["three"] = [h.rd(0x4381), h.rd(0x4382), h.rd(0x4386)]
h.wr(0xE7E3, 0x80)                        # without the key: no protection
h.wr(0x4384, 9); h.wr(0x4384, 9); h.wr(0x4384, 9)
res["nokey"] = h.rd(0x4384)
h.wr(0xE7FE, 0xAD); h.wr(0xE7E3, 0x80)
h.wr(0x4384, 1); h.wr(0x4384, 1); h.wr(0x4384, 1)
res["protected"] = [h.rd(0xEA01), h.rd(0xE9FE), h.rd(0x4384)]   # the write was taken, not applied
out(res)
''')
    assert r["pending"] == 0 and r["still"] == 0
    assert r["landed"] == [0x123456, 0, 0]
    assert r["three"] == [0x0FF00000, 7, 42]
    assert r["nokey"] == 9
    assert r["protected"] == [0xCA, 0x4384, 9]


SCN3 = {"frequency_hz": 50.0, "phases": {
    "L1": {"v_rms": 230.0, "i_rms": 10.0, "phi_deg": 30.0},
    "L2": {"v_rms": 231.5, "i_rms": 42.0, "phi_deg": 200.0},
    "L3": {"v_rms": 228.0, "i_rms": 3.3, "phi_deg": -30.0}}}


def expected_codes(scn, gains=None):
    ct = scn.get("ct_primary_a")
    gains = gains or {}
    out = []
    for n, name in enumerate(("L1", "L2", "L3")):
        p = scn["phases"].get(name, {})
        v, i, phi = p.get("v_rms", 0.0), p.get("i_rms", 0.0), p.get("phi_deg", 0.0)
        gv = 1 + gains.get(("v", n), 0) / 2 ** 23
        gi = 1 + gains.get(("i", n), 0) / 2 ** 23
        gp = 1 + gains.get(("p", n), 0) / 2 ** 23
        u, x = u_of(v) * gv, i_of(i, ct) * gi
        c, s = math.cos(math.radians(phi)), math.sin(math.radians(phi))
        out.append({
            "vrms": RMS_FS_CODE / math.sqrt(2) * u, "irms": RMS_FS_CODE / math.sqrt(2) * x,
            "watt": PMAX * u * x * gp * c / 16, "fvar": PMAX * u * x * gp * s / 16,
            "va": PMAX * u * x * gp / 16})
    return out


MEAS = r'''
res = []
for ph in range(3):
    res.append({"irms": h.rd(0x43C0 + 2 * ph), "vrms": h.rd(0x43C1 + 2 * ph),
                "watt": h.rd(0xE513 + ph, True), "fvar": h.rd(0xE516 + ph, True),
                "va": h.rd(0xE519 + ph, True)})
'''


@pytest.mark.parametrize("scn", [SCN3, dict(SCN3, ct_primary_a=200)])
def test_rms_and_power_codes(mpy_any, scn):
    import json
    r = run(mpy_any, "h = Host(%s)\nh.start()\n" % json.dumps(scn) + MEAS + "out(res)\n")
    exp = expected_codes(scn)
    for got, want in zip(r, exp):
        for k in want:
            assert abs(got[k] - want[k]) <= 1, (k, got, want)
    assert r[0]["vrms"] > 2_400_000 and r[0]["watt"] > 0 and r[1]["watt"] < 0


def test_gains_scale_codes(mpy_any):
    import json
    gains = {("v", 0): 0x100000, ("i", 0): -0x080000, ("p", 0): 0x040000, ("i", 1): 0x7FFFFF}
    body = "h = Host(%s)\nh.spi_mode()\n" % json.dumps(SCN3)
    for (kind, ph), g in gains.items():
        addr = {"i": 0x4380 + 2 * ph, "v": 0x4381 + 2 * ph, "p": 0x4389 + 2 * ph}[kind]
        body += "h.wr(%d, %d)\n" % (addr, g & 0x0FFFFFFF if g >= 0 else (g & 0xFFFFFF) | 0x0F000000)
    body += "h.wr(0x439F, 0); h.wr(0x439F, 0); h.wr(0x439F, 0)\nh.wr(0xE228, 1)\n" + MEAS + "out(res)\n"
    r = run(mpy_any, body)
    exp = expected_codes(SCN3, gains)
    for got, want in zip(r, exp):
        for k in want:
            assert abs(got[k] - want[k]) <= 1, (k, got, want)


@pytest.mark.parametrize("f", [50.0, 60.0, 49.9])
def test_period_angle_pf_phsign(mpy_any, f):
    import json
    scn = {"frequency_hz": f, "phases": {
        "L1": {"v_rms": 230, "i_rms": 10, "phi_deg": 30},
        "L2": {"v_rms": 230, "i_rms": 10, "phi_deg": 200},
        "L3": {"v_rms": 230, "i_rms": 10, "phi_deg": 330}}}
    r = run(mpy_any, "h = Host(%s)\nh.start()\n" % json.dumps(scn) + r'''
out({"period": [h.rd(0xE905 + n) for n in range(3)], "angle": [h.rd(0xE601 + n) for n in range(3)],
     "pf": [h.rd(0xE902 + n, True) for n in range(3)], "phsign": h.rd(0xE617)})
''')
    ticks = 256000.0 / f
    assert r["period"] == [round(ticks) - 1] * 3           # f = 256 kHz / (xPERIOD + 1)
    for got, phi in zip(r["angle"], (30, 200, 330)):
        assert abs(got - phi / 360.0 * ticks) <= 0.5
    # xPF = sign(fundamental Q) * |P| / S in 1.15 format
    for got, phi in zip(r["pf"], (30, 200, 330)):
        want = math.copysign(abs(math.cos(math.radians(phi))), math.sin(math.radians(phi))) * 32768
        assert abs(got - want) <= 1, (got, want)
    # P: +, -, + ; Q: +, -, -  -> AWSIGN..CWSIGN b0-2, AFVARSIGN..CFVARSIGN b4-6
    assert r["phsign"] == (0b010) | (0b110 << 4)


def test_nothing_before_run(mpy_any):
    r = run(mpy_any, r'''
h = Host({"phases": {"L1": {"v_rms": 230, "i_rms": 10}}})
h.spi_mode()
h.run(5000000)
res = [h.rd(0x43C1), h.rd(0xE513), h.rd(0xE400), h.rd(0xE905)]
led = h.chip.ledger_dict()["L1"]["watt"]
h.wr(0xE228, 1)
h.run(1000000)
res += [h.rd(0xE400), led["ideal_run_j"], led["ideal_j"]]
out(res)
''')
    assert r[:4] == [0, 0, 0, 0]
    assert abs(r[4] - 2300.0 / lsb_joules()) <= 1
    assert r[5] == 0 and abs(r[6] - 5 * 2300) < 1e-6


def energy_body(scn, regs, seconds, step_s):
    import json
    return ("h = Host(%s)\nh.start(%r)\n" % (json.dumps(scn), regs) + r'''
tot = [[0] * 3 for _ in range(3)]
regs = ((0xE400, 0xE401, 0xE402), (0xE409, 0xE40A, 0xE40B), (0xE40C, 0xE40D, 0xE40E))
def drain():
    for k in range(3):
        for ph in range(3):
            tot[ph][k] += h.rd(regs[k][ph], True)
for _ in range(%d):
    h.run(%d)
    drain()
led = h.chip.ledger_dict()
out({"tot": tot, "led": led})
''' % (int(seconds / step_s), int(step_s * 1e6)))


@pytest.mark.parametrize("ct,thr", [(None, 3), (200, 5)])
def test_energy_over_an_hour_is_exact(mpy_any, ct, thr):
    scn = dict(SCN3)
    if ct:
        scn["ct_primary_a"] = ct
    r = run(mpy_any, energy_body(scn, [(0xEA02, thr), (0xEA03, thr), (0xEA04, thr)], 3600, 10))
    lsb = lsb_joules(thr, ct)
    for n, name in enumerate(("L1", "L2", "L3")):
        p = scn["phases"][name]
        e = p["v_rms"] * p["i_rms"] * 3600.0
        phi = math.radians(p["phi_deg"])
        for k, ideal in enumerate((e * math.cos(phi), e * math.sin(phi), e)):
            assert abs(r["tot"][n][k] - ideal / lsb) <= 1.0, (name, k, r["tot"][n][k], ideal / lsb)
            led = r["led"][name][("watt", "fvar", "va")[k]]
            assert abs(led["ideal_run_j"] - ideal) <= 1e-6 * abs(ideal) + 1e-6
            assert led["read"] == r["tot"][n][k] and led["pending"] == 0 and led["lost"] == 0
            assert led["pulses"] == led["read"]


def test_line_cycle_windows_and_irq0(mpy_any):
    r = run(mpy_any, r'''
h = Host({"phases": {"L1": {"v_rms": 230, "i_rms": 10, "phi_deg": 60}, "L2": {"v_rms": 230, "i_rms": 20}}})
h.start([(0xE60C, 100), (0xE702, 0x0F), (0xE50A, 0x20)])
t_run = h.clk.now_us()
res = {"first": h.chip.next_event_us() - t_run}
h.run(1000000)
res["edges"] = len(h.e0)
res["irq0"] = h.chip.irq0()
w1 = [h.rd(0xE400), h.rd(0xE401), h.rd(0xE409), h.rd(0xE40D)]
res["again"] = [h.rd(0xE400), h.rd(0xE401), h.rd(0xE409), h.rd(0xE40D)] == w1
res["status0"] = h.rd(0xE502)
h.wr(0xE502, 0x20)
res["cleared"] = [h.rd(0xE502), h.chip.irq0()]
wins = []
for _ in range(5):
    h.run(1000000)
    wins.append([h.rd(0xE400), h.rd(0xE401), h.rd(0xE409), h.rd(0xE40D)])
    h.wr(0xE502, 0x20)
res["wins"] = wins
res["edges_t"] = h.e0
res["led"] = h.chip.ledger_dict()
out(res)
''')
    lsb = lsb_joules()
    assert 990_000 < r["first"] <= 1_000_000       # the 100th half cycle after RUN
    assert r["edges"] == 1 and r["irq0"] == 0
    assert r["again"] is True                      # line-cycle reads do not reset
    assert r["status0"] & 0x20 and r["cleared"] == [0, 1]
    gaps = [b - a for a, b in zip(r["edges_t"], r["edges_t"][1:])]
    assert len(r["edges_t"]) == 6 and all(abs(g - 1_000_000) <= 1 for g in gaps)
    for w in r["wins"]:   # energy of exactly one second
        assert abs(w[0] - 230 * 10 * 0.5 / lsb) <= 1
        assert abs(w[1] - 230 * 20 / lsb) <= 1
        assert abs(w[2] - 230 * 10 * math.sin(math.radians(60)) / lsb) <= 1
        assert abs(w[3] - 230 * 20 / lsb) <= 1
    led = r["led"]
    assert led["windows"] == 6 and led["overwritten"] == 0
    la = led["L1"]["watt"]
    assert la["pulses"] == la["latched"] + la["pending"] and la["read"] == 0


def test_line_cycle_selection_frequency_and_dead_phase(mpy_any):
    r = run(mpy_any, r'''
res = {}
h = Host({"phases": {"L1": {"v_rms": 230}, "L2": {"v_rms": 230}, "L3": {"v_rms": 230}}})
h.start([(0xE60C, 100), (0xE702, 0x3F), (0xE50A, 0x20)])
h.run(3000000, ack=True)
res["three"] = [b - a for a, b in zip(h.e0, h.e0[1:])]
h = Host({"phases": {"L2": {"v_rms": 230, "i_rms": 1}}})
h.start([(0xE60C, 100), (0xE702, 0x09), (0xE50A, 0x20)])     # ZXSEL = phase A only
res["dead"] = [h.chip.next_event_us(), h.rd(0xE502)]
h.run(3000000)
res["dead_after"] = [len(h.e0), h.rd(0xE502)]
h = Host({"frequency_hz": 50, "phases": {"L1": {"v_rms": 230}},
          "timeline": [{"at_s": 2.5, "frequency_hz": 49.9}, {"at_s": 7.2, "phases": {"L1": {"v_rms": 0}}}]})
h.start([(0xE60C, 100), (0xE702, 0x09), (0xE50A, 0x20)])
h.run(10000000, ack=True)
res["freq"] = h.e0
res["freq_next"] = h.chip.next_event_us()
out(res)
''')
    gaps = r["three"]
    assert len(gaps) >= 7 and all(abs(g - 1_000_000 / 3) <= 1 for g in gaps)
    assert r["dead"] == [None, 0] and r["dead_after"] == [0, 0]
    e = r["freq"]
    gaps = [b - a for a, b in zip(e, e[1:])]
    assert abs(gaps[0] - 1_000_000) <= 1                      # before 2.5 s
    assert abs(gaps[-1] - 1_000_000 * 50 / 49.9) <= 1         # after the change
    assert e[-1] < 7_201_000 and r["freq_next"] is None       # no voltage, no windows


def test_fault_reset_loses_pending_energy(mpy_any):
    r = run(mpy_any, r'''
h = Host({"phases": {"L1": {"v_rms": 230, "i_rms": 10}}})
h.start()
h.run(2000000)
first = h.rd(0xE400)
h.run(1500000)
before = h.chip.ledger_dict()["L1"]["watt"]
h.chip.inject_reset()
res = {"first": first, "pending_before": before["pending"], "edges1": len(h.e1), "irq1": h.chip.irq1(),
       "i2c": list(h.frame(bytes([1, 0xE6, 0x10, 0, 0])))}
h.spi_mode()
res["after"] = [h.rd(0xE503), h.rd(0xE610), h.rd(0xE228), h.rd(0xE400), h.rd(0x43C1)]
h.wr(0xE503, 0x8000)
res["irq1_acked"] = h.chip.irq1()
led = h.chip.ledger_dict()
res["led"] = led["L1"]["watt"]
res["resets"] = led["resets"]
out(res)
''')
    lsb = lsb_joules()
    assert abs(r["first"] - 2 * 2300 / lsb) <= 1
    assert r["edges1"] == 1 and r["irq1"] == 0 and r["i2c"] == [0xFF] * 5
    assert r["after"] == [0x8000, 0x0EA0, 0, 0, 0] and r["irq1_acked"] == 1
    led = r["led"]
    assert led["lost"] == r["pending_before"] and abs(led["lost"] - 1.5 * 2300 / lsb) <= 1
    assert led["pulses"] == led["read"] + led["lost"] + led["pending"] and r["resets"] == 1


def test_fault_checksum_upset_and_crc(mpy_any):
    r = run(mpy_any, r'''
h = Host({"phases": {"L1": {"v_rms": 230, "i_rms": 10}}})
h.start([(0xE50B, 1 << 25)])
res = {"c0": h.rd(0xE51F), "irq1": h.chip.irq1()}
h.wr(0xE60C, 200)                          # a config change after RUN is flagged too
res["cfg"] = [h.rd(0xE51F) != res["c0"], h.rd(0xE503), h.chip.irq1(), len(h.e1)]
h.wr(0xE503, 1 << 25)
c1 = h.rd(0xE51F)
a, old, new = h.chip.inject_checksum_upset(0x4381, 22)   # AVGAIN bit 22
res["upset"] = [a, old, new, h.rd(0x4381), h.rd(0xE51F) != c1, h.rd(0xE503), h.chip.irq1(), len(h.e1)]
res["vrms"] = h.rd(0x43C1)
h.wr(0xE503, 1 << 25)
res["ack"] = [h.rd(0xE503), h.chip.irq1()]
x = h.chip.inject_checksum_upset()
res["random"] = [x[1] != x[2], h.rd(0xE503)]
out(res)
''')
    assert r["irq1"] == 1
    assert r["cfg"] == [True, 1 << 25, 0, 1]
    assert r["upset"][:4] == [0x4381, 0, 1 << 22, 1 << 22]
    assert r["upset"][4:] == [True, 1 << 25, 0, 2]
    assert abs(r["vrms"] - RMS_FS_CODE / math.sqrt(2) * u_of(230) * 1.5) <= 1   # gain 1 + 2^22/2^23
    assert r["ack"] == [0, 1] and r["random"] == [True, 1 << 25]


def test_fault_miso_garbage_keeps_last_rwdata(mpy_any):
    r = run(mpy_any, r'''
h = Host({"phases": {"L1": {"v_rms": 230, "i_rms": 10}}})
h.start()
h.run(1000000)
h.chip.inject_miso_garbage(1)
g1 = h.rd(0xE610)
t1 = [h.rd(0xE9FF), h.rd(0xEA01), h.rd(0xE9FE)]    # the chip did the read: LAST_* tell the truth
h.chip.inject_miso_garbage(1)
g2 = h.rd(0xE400)                                   # read-with-reset: handed out anyway
t2 = h.rd(0xE5FF)
out({"g1": g1, "t1": t1, "g2": g2, "t2": t2, "next": h.rd(0xE610), "e": h.rd(0xE400),
     "led": h.chip.ledger_dict()["L1"]["watt"]})
''')
    assert r["t1"] == [0x0EA0, 0x35, 0xE610] and r["next"] == 0x0EA0
    assert r["g1"] != 0x0EA0 or r["g2"] != r["t2"]   # garbage (a collision on both is ~1e-14)
    assert abs(r["t2"] - 2300 / lsb_joules()) <= 1 and r["e"] == 0
    assert r["led"]["read"] == r["t2"]


def test_fault_drop_irq_and_overwritten_windows(mpy_any):
    r = run(mpy_any, r'''
h = Host({"phases": {"L1": {"v_rms": 230, "i_rms": 10}}})
h.start([(0xE60C, 100), (0xE702, 0x09), (0xE50A, 0x20)])
h.run(1000000)
n1 = len(h.e0); h.rd(0xE400); h.wr(0xE502, 0x20)
h.chip.inject_drop_irq(1)
h.run(1000000)
res = {"n1": n1, "dropped": [len(h.e0), h.chip.irq0(), h.rd(0xE502)]}
h.run(1000000)                            # window 3 ends: its edge comes, window 2 unread
res["third"] = [len(h.e0), h.chip.irq0()]
led = h.chip.ledger_dict()
res["led"] = [led["overwritten"], led["L1"]["watt"]["unread"], led["windows"]]
out(res)
''')
    assert r["n1"] == 1 and r["dropped"] == [1, 1, 0x20]
    assert r["third"] == [2, 0]
    ow, unread, windows = r["led"]
    assert ow == 1 and windows == 3 and abs(unread - 2300 / lsb_joules()) <= 1


def test_set_scenario_keeps_energy_exact(mpy_any):
    r = run(mpy_any, r'''
h = Host({"phases": {"L1": {"v_rms": 230, "i_rms": 10}}})
h.start()
h.run(1234567)
h.chip.set_scenario(scenario.parse({"phases": {"L1": {"v_rms": 230, "i_rms": 20, "phi_deg": 180}},
                                    "timeline": [{"at_s": 1.0, "phases": {"L1": {"i_rms": 5, "phi_deg": 0}}}]}))
h.run(3000000)
out([h.rd(0xE400, True), h.chip.ledger_dict()["L1"]["watt"]["ideal_run_j"]])
''')
    ideal = 2300 * 1.234567 - 4600 * 1.0 + 1150 * 2.0
    assert abs(r[1] - ideal) < 1e-6
    assert abs(r[0] - ideal / lsb_joules()) <= 1


def test_set_scenario_keeps_counting_the_window(mpy_any):
    r = run(mpy_any, r'''
h = Host({"phases": {"L1": {"v_rms": 230, "i_rms": 1}}})
h.start([(0xE60C, 100), (0xE702, 0x09), (0xE50A, 0x20)])
t0 = h.clk.now_us()
h.run(400000)                              # 40 of 100 half cycles at 50 Hz
h.chip.set_scenario(scenario.parse({"frequency_hz": 60, "phases": {"L1": {"v_rms": 230, "i_rms": 2}}}))
out([h.chip.next_event_us() - t0])
''')
    assert abs(r[0] - (400_000 + 60 / 120 * 1e6)) <= 1


def test_accmode_positive_only_and_absolute(mpy_any):
    r = run(mpy_any, r'''
h = Host({"phases": {"L1": {"v_rms": 230, "i_rms": 10, "phi_deg": 200}}})
h.start([(0xE701, 0x01)])                  # WATTACC = 01: positive only
h.run(1000000)
a = [h.rd(0xE400, True), h.rd(0xE409, True)]
h.wr(0xE701, 0x0F)                         # WATTACC = 11, VARACC = 11: absolute
h.run(1000000)
out(a + [h.rd(0xE400, True), h.rd(0xE409, True)])
''')
    lsb = lsb_joules()
    c, s = math.cos(math.radians(200)), math.sin(math.radians(200))
    assert r[0] == 0 and abs(r[1] - 2300 * s / lsb) <= 1
    assert abs(r[2] - 2300 * abs(c) / lsb) <= 1 and abs(r[3] - 2300 * abs(s) / lsb) <= 1


def test_scenario_validation_names_the_field(mpy_any):
    bad = [
        ({"phases": {"L2": {"i_rms": "abc"}}}, "phases.L2.i_rms: must be a number >= 0, got 'abc'"),
        ({"phases": {"L1": {"v_rms": -1}}}, "phases.L1.v_rms"),
        ({"phases": {"L4": {}}}, "phases.L4: unknown key"),
        ({"phases": {"L1": {"volts": 1}}}, "phases.L1.volts: unknown key"),
        ({"frequency_hz": 70}, "frequency_hz: must be a number in 45..66"),
        ({"frequency_hz": True}, "frequency_hz"),
        ({"ct_primary_a": 0}, "ct_primary_a: must be a number in 1..5000"),
        ({"ct_primary_a": 6000}, "ct_primary_a"),
        ({"colour": 1}, "colour: unknown key"),
        ({"phases": []}, "phases: must be an object"),
        ({"timeline": {}}, "timeline: must be a list"),
        ({"timeline": [{"at_s": 5}, {"at_s": 5}]}, "timeline[1].at_s: must be greater"),
        ({"timeline": [{"at_s": 5}, {"at_s": 2}]}, "timeline[1].at_s"),
        ({"timeline": [{"phases": {}}]}, "timeline[0].at_s: missing"),
        ({"timeline": [{"at_s": 1, "frequency_hz": 30}]}, "timeline[0].frequency_hz"),
        ({"timeline": [{"at_s": 1, "phases": {"L3": {"phi_deg": "x"}}}]}, "timeline[0].phases.L3.phi_deg"),
        ({"timeline": [{"at_s": 1, "ct_primary_a": 5}]}, "timeline[0].ct_primary_a: unknown key"),
    ]
    import json
    r = run(mpy_any, r'''
cases = json.loads(%r)
res = []
for c in cases:
    try:
        scenario.parse(c)
        res.append(None)
    except scenario.ScenarioError as e:
        res.append([str(e), isinstance(e, ValueError)])
good = scenario.parse({"frequency_hz": 50, "phases": {"L1": {"v_rms": 230, "i_rms": 10, "phi_deg": -30}, "L3": None},
                       "timeline": [{"at_s": 10, "frequency_hz": 49.9, "phases": {"L2": {"i_rms": 3}}}]})
res.append([good.at(0), good.at(9999999), good.at(10000000), good.change_times_us()])
for f in (lambda: scenario.load("/nonexistent/x.json"), lambda: scenario.loads("{bad")):
    try:
        f()
        res.append(None)
    except scenario.ScenarioError as e:
        res.append(str(e))
out(res)
''' % json.dumps([c for c, _ in bad]))
    for (case, want), got in zip(bad, r):
        assert got is not None, case
        assert got[1] is True and got[0].startswith(want), (got, want)
    assert r[-2].startswith("/nonexistent/x.json: cannot read")
    assert r[-1].startswith("not valid JSON")
    at0, at_before, at_after, changes = r[-3]
    assert at0 == [50.0, [[230.0, 10.0, 330.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]]
    assert at_before == at0
    assert at_after == [49.9, [[230.0, 10.0, 330.0], [0.0, 3.0, 0.0], [0.0, 0.0, 0.0]]]
    assert changes == [10_000_000]


def test_clocks(mpy_any):
    r = run(mpy_any, r'''
from boards.sim.clock import RealClock
import time
v = VirtualClock(5)
v.advance_us(10); v.sleep_ms(2)
rc = RealClock()
a = rc.now_us(); time.sleep_ms(3); b = rc.now_us()
out([v.now_us(), v.ticks_ms(), b - a >= 1000, b >= a])
''')
    assert r == [2015, 2, True, True]
