"""The board contract (boards/contract.py) and the seams later issues plug into:
the sim board implements the contract, config validation returns independent copies,
and ModbusPorts applies a new config (maps swapped, RTU ports reconfigured, TCP kept).
"""
import socket
import struct
import time

from conftest import free_port


def test_sim_board_meets_the_contract(mpy_any):
    res = mpy_any(r"""
import json
from boards.contract import check
from boards.sim import scenario
from boards.sim.board import SimBoard
b = SimBoard(scenario.parse({"frequency_hz": 50.0, "phases": {
    "L1": {"v_rms": 230.0, "i_rms": 1.0, "phi_deg": 0.0}}}))
class Half:
    name = "half"
print("@@JSON", json.dumps({"sim": check(b), "half": check(Half()),
                            "wdt": b.watchdog(100).expired(),
                            "utc": b.time_utc() > 1700000000 or b.time_utc() is None}))
""")
    assert res["sim"] == []
    # The check really checks: an object with a name only lacks everything else.
    assert "clock" in res["half"] and "ade7880()" in res["half"] and "tasks()" in res["half"]
    assert res["wdt"] is False


def test_no_board_facts_left_in_firmware():
    """Front-end calibration and the direct rating live in the board, not in firmware/."""
    import pathlib
    root = pathlib.Path(__file__).resolve().parent.parent / "firmware"
    text = "".join(p.read_text() for p in root.rglob("*.py"))
    assert "DIRECT_MAX_A" not in text.replace("board.DIRECT_MAX_A", "")
    # The front end's calibration numbers (boards/sim/board.py CALIBRATION) appear in
    # firmware/ only as examples in the config format's messages, never as defaults.
    assert "9.395996" not in repr(_defaults(root / "config.py"))
    # The simulator's tick hook is a board task, not something the app looks for.
    assert "getattr(self.board, \"tick\"" not in text


def _defaults(path):
    """config.defaults()'s returned literal as data, read with CPython's ast (no
    MicroPython imports); its sequences are tuples, its names consts (left as names)."""
    import ast
    tree = ast.parse(path.read_text())
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "defaults":
            ret = [n for n in node.body if isinstance(n, ast.Return)][0].value
            return ast.unparse(ret)
    raise AssertionError("no defaults() in config.py")


def test_modbus_ports_apply_config(mpy):
    port = free_port()
    res = mpy(r"""
import asyncio, io, json, socket
from boards.sim import scenario
from boards.sim.board import SimBoard
from drivers.rs485 import RS485
from firmware.app import App

class FakeUART(io.IOBase):
    # Line settings only; never readable, so the port's task just waits.
    def init(self, baudrate=19200, bits=8, parity=None, stop=1, **kw):
        self.settings = (baudrate, bits, parity, stop)
    def readinto(self, b):
        return None
    def write(self, b):
        return len(b)
    def ioctl(self, req, arg):
        return 0

class Board(SimBoard):
    def rs485(self, name, baud, parity, stop):
        return RS485(FakeUART(), None, baud, parity, stop)

def read_regs(space, addr, n):
    out = bytearray(2 * n)
    err = space.read(addr, n, out, 0)
    return err, out

async def main():
    b = Board(scenario.parse({"frequency_hz": 50.0, "phases": {
        "L1": {"v_rms": 230.0, "i_rms": 10.0, "phi_deg": 0.0}}}))
    app = App(b, {"modbus": {"rs485_b": {"address": 200}}})
    await app.start("127.0.0.1", %d)
    await asyncio.sleep_ms(500)
    ports = app.ports
    old_holding = ports.holding
    before = {n: s.settings() for n, s in ports.rtu.items()}
    uart_b = ports.rtu["b"].port.uart.settings
    new = await app.apply_config({"modbus": {"rs485_b": {"address": 17, "baud": 9600,
                                                         "parity": "O", "stop": 2},
                                             "tcp": {"own_id_only": True}},
                                  "identity": {"serial": "SN-4711"}})
    after = {n: s.settings() for n, s in ports.rtu.items()}
    # The PnP serial string (KSEM 0x2000 block) comes from the new maps.
    err, serial = read_regs(ports.rtu_dispatcher.holding, 0x2024, 16)
    try:
        bad = await app.apply_config({"modbus": {"rs485_a": {"baud": 1234}}})
        refused = None
    except ValueError as e:
        refused = str(e)
    out = {"before": before, "after": after, "uart_b_before": list(uart_b),
           "uart_b_after": list(ports.rtu["b"].port.uart.settings),
           "swapped": ports.rtu_dispatcher.holding is not old_holding
                      and ports.tcp_dispatcher.holding is ports.rtu_dispatcher.holding,
           "serial_found": b"SN-4711" in bytes(serial), "err": err,
           "own_id_only": ports.tcp.own_id_only, "refused": refused,
           "still_a": ports.rtu["a"].settings(), "cfg_b": app.cfg["modbus"]["rs485_b"]}
    app.stop()
    return out
print("@@JSON", json.dumps(asyncio.run(main())))
""" % port, timeout=60)
    assert res["before"]["b"]["address"] == 200
    assert res["after"]["b"] == {"enabled": True, "address": 17, "baud": 9600,
                                 "parity": "O", "stop": 2}
    assert res["uart_b_after"] == [9600, 8, 1, 2]          # machine.UART: 1 = odd parity
    assert res["after"]["a"] == res["before"]["a"]
    assert res["swapped"] and res["err"] == 0 and res["serial_found"]
    assert res["own_id_only"] is True
    # A refused value names the key and changes nothing.
    assert "rs485_a.baud" in res["refused"]
    assert res["still_a"] == res["before"]["a"]
    assert res["cfg_b"]["address"] == 17


def test_config_validate_returns_independent_copies(mpy_any):
    res = mpy_any(r"""
import json
from firmware import config
from boards.sim.board import SimBoard
a = config.validate({}, SimBoard.CALIBRATION)
a["calibration"]["gains"][0][0] = 12345
a["modbus"]["rs485_a"]["address"] = 99
b = config.validate({}, SimBoard.CALIBRATION)
print("@@JSON", json.dumps({"gain": b["calibration"]["gains"][0][0],
                            "addr": b["modbus"]["rs485_a"]["address"],
                            "default": config.DEFAULTS["modbus"]["rs485_a"]["address"]}))
""")
    assert res == {"gain": 0, "addr": 1, "default": 1}


def test_config_writes_are_staged_then_committed_by_a_task(mpy):
    res = mpy(r"""
import asyncio, json
from boards.sim import scenario
from boards.sim.board import SimBoard
from firmware.app import App
from firmware.staging import ConfigStage

async def main():
    b = SimBoard(scenario.parse({"frequency_hz": 50.0, "phases": {
        "L1": {"v_rms": 230.0, "i_rms": 10.0, "phi_deg": 0.0}}}))
    app = App(b)
    await app.start(modbus=False)
    saved = []
    async def persist(cfg):
        saved.append(cfg["metering"]["cycle_ms"])
    st = ConfigStage(app, persist, depth=2)
    app.supervisor.spawn("config", st.run)
    bad = st.stage({"metering": {"cycle_ms": 300}})
    ok = st.stage({"metering": {"cycle_ms": 500}})
    # Staged, not applied: handle() returns before anything is persisted or applied.
    same_now = app.cfg["metering"]["cycle_ms"]
    ok2 = st.stage({"metering": {"wiring": "1P2W"}})
    busy = st.stage({"metering": {"nominal_hz": 60}})
    await asyncio.sleep_ms(50)
    out = {"bad": bad, "ok": ok, "ok2": ok2, "busy": busy, "same_now": same_now,
           "cycle": app.cfg["metering"]["cycle_ms"], "wiring": app.cfg["metering"]["wiring"],
           "meter_cycle": app.meter.cycle_ms, "saved": saved, "committed": st.committed,
           "err": st.last_error}
    app.stop()
    return out
print("@@JSON", json.dumps(asyncio.run(main())))
""")
    assert res["bad"] == 3 and "metering.cycle_ms" in res["err"]
    assert res["ok"] == 0 and res["ok2"] == 0
    assert res["busy"] == 6                      # queue of 2 full: server device busy
    assert res["same_now"] == 200
    assert res["cycle"] == 500 and res["meter_cycle"] == 500 and res["wiring"] == "1P2W"
    assert res["saved"] == [500, 500] and res["committed"] == 2


def test_ports_serve_the_configured_sunspec_model_and_scale_factors(mpy):
    """Config reaches the maps: 1P2W wiring serves SunSpec model 201 (single phase),
    modbus.sunspec_sf overrides a scale factor, a bad one is refused before anything
    changes (issue 9 items 1 and 4)."""
    res = mpy(r"""
import asyncio, json
from boards.sim import scenario
from boards.sim.board import SimBoard
from firmware.app import App

def reg(space, addr):
    out = bytearray(2)
    assert space.read(addr, 1, out, 0) == 0
    v = (out[0] << 8) | out[1]
    return v - 65536 if v >= 32768 else v

async def main():
    b = SimBoard(scenario.parse({"frequency_hz": 50.0, "phases": {
        "L1": {"v_rms": 230.0, "i_rms": 10.0, "phi_deg": 0.0}}}))
    app = App(b, {"metering": {"wiring": "1P2W"}})
    await app.start(tcp_port=0)
    out = {"model_1p": reg(app.ports.holding, 40070), "wsf_default": reg(app.ports.holding, 40092)}
    await app.apply_config({"metering": {"wiring": "3P4W"}, "modbus": {"sunspec_sf": {"W_SF": 2}}})
    out["model_3p"] = reg(app.ports.holding, 40070)
    out["wsf_over"] = reg(app.ports.holding, 40092)
    try:
        await app.apply_config({"metering": {"cycle_ms": 500}, "modbus": {"sunspec_sf": {"W_SF": 9}}})
        out["refused"] = None
    except ValueError as e:
        out["refused"] = str(e)
    out["cycle_kept"] = app.meter.cycle_ms
    app.stop()
    return out
print("@@JSON", json.dumps(asyncio.run(main())))
""")
    assert res["model_1p"] == 201 and res["model_3p"] == 203
    assert res["wsf_over"] == 2 and res["wsf_default"] != 2
    assert "W_SF" in res["refused"] and res["cycle_kept"] == 200
