"""ADE7880 driver against the simulator: framing, bring-up, verification and faults.

Framing facts are typed in here from the datasheet (anchors-public-facts.md section 3),
not imported from the driver. Fault tests check the energy ledger exactly: every LSB the
chip latched into a window is counted once by the firmware, none twice, none missed.
"""
import json

import pytest

DEFAULT = {"frequency_hz": 50.0, "phases": {
    "L1": {"v_rms": 231.0, "i_rms": 12.5, "phi_deg": 184.0},
    "L2": {"v_rms": 229.5, "i_rms": 8.2, "phi_deg": 25.0},
    "L3": {"v_rms": 230.4, "i_rms": 3.1, "phi_deg": 318.0}}}


def width(addr):
    if 0xE700 <= addr <= 0xE7FE or 0xEA00 <= addr <= 0xEC01:
        return 1
    if 0xE600 <= addr <= 0xE618 or 0xE900 <= addr <= 0xE9FF or addr == 0xE228:
        return 2
    return 4


LOG_INIT = r"""
import json
from tools.mpy.cycle_harness import Harness
class LogSPI:
    def __init__(self, spi): self.spi = spi; self.log = []
    def write_readinto(self, tx, rx):
        self.log.append(bytes(tx))
        self.spi.write_readinto(tx, rx)
h = Harness(json.loads(%r), json.loads(%r), start=False)
spi = LogSPI(h.chip._spi); h.chip._spi = spi
h.meter.start()
sim = h.sim
regs = {a: sim.peek(a) for a in (0xE702, 0xE60C, 0xE50A, 0xEC01, 0xE228, 0xE7E3)}
h.run_windows(3)
print("@@JSON", json.dumps({"frames": [list(f) for f in spi.log], "regs": regs,
      "running": sim.running, "port": sim.port, "locked": sim.locked,
      "events": h.app.events.recent(), "inst": list(h.meter.front.inst)}))
"""


def decode(frames):
    out = []
    for f in frames:
        op, addr = f[0], (f[1] << 8) | f[2]
        data = int.from_bytes(bytes(f[3:]), "big")
        out.append((op, addr, len(f), data))
    return out


def test_framing_and_init_sequence(mpy):
    res = mpy(LOG_INIT % (json.dumps(DEFAULT), "null"))
    fr = decode(res["frames"])
    # Every frame: 0x00 write / 0x01 read, 16-bit address, 1/2/4 data bytes by range.
    for op, addr, n, _ in fr:
        assert op in (0x00, 0x01)
        assert n == 3 + width(addr), hex(addr)
    # SPI selection: three writes to 0xEBFF first, then CONFIG2 with the lock bit.
    assert [(op, a) for op, a, _, _ in fr[:3]] == [(0, 0xEBFF)] * 3
    writes = [(a, d, i) for i, (op, a, _, d) in enumerate(fr) if op == 0 and a != 0xEBFF]
    assert writes[0][0] == 0xEC01 and writes[0][1] & 0x02
    # Every write is verified: LAST_OP, LAST_ADD and the LAST_RWDATA of its width follow.
    echo = {1: 0xE7FD, 2: 0xE9FF, 4: 0xE5FF}
    for a, d, i in writes:
        follow = [x[1] for x in fr[i + 1:i + 4]]
        assert follow == [0xEA01, 0xE9FE, echo[width(a)]], (hex(a), [hex(x) for x in follow])
    # Identity check reads CFMODE before configuring anything else.
    first_cfg = next(i for a, d, i in writes if a not in (0xEC01,))
    assert any(op == 1 and a == 0xE610 for op, a, _, _ in fr[:first_cfg])
    # DSP RAM: the last RAM write is repeated three times in total, all RAM writes come
    # before the write protection (0xE7FE = 0xAD, 0xE7E3 = 0x80), and RUN = 1 after it.
    ram = [(a, d, i) for a, d, i in writes if 0x4380 <= a <= 0x43BF]
    assert len(ram) >= 3 and ram[-1][0] == ram[-2][0] == ram[-3][0]
    prot = [i for a, d, i in writes if a == 0xE7E3 and d == 0x80]
    key = [i for a, d, i in writes if a == 0xE7FE and d == 0xAD]
    run = [i for a, d, i in writes if a == 0xE228 and d == 1]
    assert prot and key and run
    assert key[-1] < prot[-1] < run[-1]
    assert all(i < prot[-1] for _, _, i in ram)
    # The chip ends up configured: line-cycle energy for W, var and VA on all three
    # phases' crossings, 20 half cycles x 3 phases, LENERGY interrupt, SPI locked, running.
    regs = {int(k): v for k, v in res["regs"].items()}
    assert regs[0xE702] & 0x07 == 0x07 and regs[0xE702] & 0x38 == 0x38
    assert regs[0xE702] & 0x40 == 0            # RSTREAD off in line-cycle mode
    assert regs[0xE60C] == 60
    assert regs[0xE50A] & 0x20
    assert res["running"] and res["port"] == "spi" and res["locked"]


def test_calibration_gains_reach_the_dsp(mpy):
    # IGAIN of L2 = +2**20 -> x1.125; PGAIN of L3 (the last gain written) = -2**21 -> x0.75.
    cfg = {"calibration": {"gains": [[0, 0, 0], [1 << 20, 0, 0], [0, 0, -(1 << 21)]]}}
    res = mpy(LOG_INIT % (json.dumps(DEFAULT), json.dumps(cfg)))
    inst = res["inst"]
    nq = 9
    assert inst[nq + 1] == pytest.approx(8200 * 1.125, rel=1e-3)            # L2 I, mA
    p3 = 230.4 * 3.1 * 0.7431448 * 1000
    assert inst[2 * nq + 2] * 10 == pytest.approx(p3 * 0.75, rel=2e-3)       # L3 P, 10 mW


def test_no_chip_and_wrong_chip_are_refused(mpy):
    res = mpy(r"""
import json
from drivers.ade7880 import ADE7880, ChipError
from tools.mpy.cycle_harness import Harness
class Dead:
    def write_readinto(self, tx, rx):
        for i in range(len(rx)): rx[i] = 0xFF
out = {}
try:
    ADE7880(Dead(), lambda v: None).begin(); out["dead"] = None
except ChipError as e:
    out["dead"] = str(e)
h = Harness(%s)
h.chip.write(0xE610, 0x1234)        # CFMODE no longer the ADE7880 reset default
try:
    h.chip.begin(); out["wrong"] = None
except ChipError as e:
    out["wrong"] = str(e)
for bad in (dict(line_cycles=0), dict(zx_phases=2), dict(gains=((1 << 23, 0, 0),) * 3),
            dict(phcal=(0, 0, 1024))):
    try:
        ADE7880(Dead(), lambda v: None, **bad); out[str(bad)] = None
    except ValueError as e:
        out[str(bad)] = str(e)
print("@@JSON", json.dumps(out))
""" % json.dumps(DEFAULT))
    assert res["dead"] and "not confirmed" in res["dead"]
    assert res["wrong"] and "CFMODE read 0x1234" in res["wrong"]
    assert all(v for v in res.values())


FAULT_HEAD = r"""
import json
from tools.mpy.cycle_harness import Harness
h = Harness(%s)
h.advance_ms(2000)
before = h.app.events.total
%s
h.advance_ms(3000)
"""
TAIL = r"""
from firmware.events import EVENT_NAMES
m = h.meter
k = m.energy.scale
led = h.sim.ledger_dict()
e = m.energy
names = ("L1", "L2", "L3")
out = {"events": [EVENT_NAMES[c] for t, c in h.app.events.recent()[before:]],
       "ke": k, "phases": {}, "windows": m.windows, "led_windows": led["windows"],
       "overwritten": led["overwritten"], "resets": led["resets"],
       "status": m.front.status, "spi_errors": h.chip.spi_errors}
for ph in range(4):
    c = ph * 8
    net_p = e.pico(c) - e.pico(c + 1)
    net_q = e.pico(c + 2) + e.pico(c + 3) - e.pico(c + 4) - e.pico(c + 5)
    s = e.pico(c + 6) + e.pico(c + 7)
    d = {"net_p": net_p, "net_q": net_q, "s": s}
    if ph < 3:
        L = led[names[ph]]
        d["chip"] = {kind: [L[kind]["latched"], L[kind]["unread"], L[kind]["lost"]]
                     for kind in ("watt", "fvar", "va")}
    out["phases"][str(ph)] = d
print("@@JSON", json.dumps(out))
"""
FAULT = FAULT_HEAD + TAIL


def check_exact(res):
    """Firmware counters == LSBs the chip latched and nobody missed, times pWh/LSB."""
    ke = res["ke"]
    tot = {"net_p": 0, "net_q": 0, "s": 0}
    for ph in ("0", "1", "2"):
        d = res["phases"][ph]
        for key, kind in (("net_p", "watt"), ("net_q", "fvar"), ("s", "va")):
            latched, unread, lost = d["chip"][kind]
            assert unread == 0, "a latched window was never read (%s %s)" % (ph, kind)
            assert d[key] == ke * latched, (ph, kind, d[key] / ke, latched)
            tot[key] += d[key]
    for key in tot:
        assert res["phases"]["3"][key] == tot[key]


def test_steady_run_counts_every_window_once(mpy):
    res = mpy(FAULT % (json.dumps(DEFAULT), "pass"))
    check_exact(res)
    assert res["events"] == []
    assert res["windows"] == res["led_windows"] >= 24


@pytest.mark.parametrize("fault,expect", [
    ("h.advance_ms(90); h.sim.inject_reset()", {"chip_reset", "init"}),
    ("h.sim.inject_checksum_upset()", {"checksum_changed", "init"}),
    ("h.sim.inject_miso_garbage(40)", {"spi_error", "init"}),
    ("h.sim.inject_drop_irq(1)", {"irq_missed", "init"}),
    ("h.sim.inject_drop_irq(1); h.advance_ms(1000); h.sim.inject_reset(); "
     "h.advance_ms(700); h.sim.inject_miso_garbage(25)",
     {"irq_missed", "chip_reset", "spi_error", "init"}),
])
def test_fault_reinit_event_and_exact_energy(mpy, fault, expect):
    res = mpy(FAULT % (json.dumps(DEFAULT), fault))
    assert expect <= set(res["events"]), res["events"]
    assert res["status"] & 1, "chip must be OK again after recovery"
    check_exact(res)
    assert res["windows"] >= 15
    if fault.startswith("h.advance_ms(90)"):
        # Mid-window reset: the chip itself lost the window in progress (its ledger
        # says so); the firmware still counted exactly what the chip latched.
        assert res["resets"] >= 1
        assert any(res["phases"][ph]["chip"]["watt"][2] for ph in ("0", "1", "2"))


ACK = r"""
import json
from tools.mpy.cycle_harness import Harness
h = Harness(%s)
h.advance_ms(1000)
before = h.app.events.total
sim_spi = h.chip._spi
class AckTrouble:
    # After a write to STATUS0, corrupt what comes back for the next frames (the ack's
    # verification), and optionally swallow the write itself (the ack never arrives).
    def __init__(self, spi, swallow): self.spi = spi; self.bad = 0; self.swallow = swallow; self.armed = True
    def write_readinto(self, tx, rx):
        ack = self.armed and tx[0] == 0 and tx[1] == 0xE5 and tx[2] == 0x02
        if ack:
            self.armed = False
            self.bad = 9
            if self.swallow:
                for i in range(len(rx)): rx[i] = 0
                return
        if self.bad and not ack:
            self.bad -= 1
            self.spi.write_readinto(tx, rx)
            for i in range(3, len(rx)): rx[i] ^= 0x5A
            return
        self.spi.write_readinto(tx, rx)
h.chip._spi = AckTrouble(sim_spi, %s)
h.advance_ms(3000)
"""


@pytest.mark.parametrize("swallow", [False, True])
def test_unconfirmed_ack_neither_loses_nor_repeats(mpy, swallow):
    res = mpy(ACK % (json.dumps(DEFAULT), swallow) + TAIL)
    assert "ack_unconfirmed" in res["events"]
    check_exact(res)


def test_board_without_irq_line_polls_status0(mpy):
    """A board that does not wire IRQ0: the engine polls LENERGY, counts every window
    exactly once and reports no missed interrupt."""
    res = mpy(r"""
import json
from tools.mpy.cycle_harness import Harness
h = Harness(json.loads(%r), start=False)
h.sim.irq0.irq(handler=None)
h.chip.has_irq = False
h.meter.start()
before = h.app.events.total
h.advance_ms(5000)
""" % json.dumps(DEFAULT) + TAIL)
    check_exact(res)
    assert res["events"] == []          # no irq_missed, no re-init
    assert res["windows"] == res["led_windows"] >= 24
