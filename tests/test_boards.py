"""Real board modules on the unix port, with stand-ins for machine/network/rp2/esp32.

tests/stubs/ (first on MICROPYPATH) records every constructor call and checks keyword
names against MicroPython's documented signatures. The truths here are the chips' own
tables, not the board modules: the RP2040's GPIO function table (RP2040 datasheet
section 2.19.2: which GPIO carries which SPI/UART signal), the W5500-EVB-Pico's
board wiring, and the ESP32's fixed RMII pins, input-only pins and strapping pins (ESP32
datasheet: "Strapping Pins", "EMAC"; Olimex ESP32-POE schematic for MDC/MDIO/power/clock).
"""
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, MICROPYTHON

BOARDS = ("rp2040_w5500", "esp32_lan8720")

# RP2040 datasheet 2.19.2, GPIO function table (F1 SPI, F2 UART).
RP2040_SPI = {
    0: {"miso": {0, 4, 16, 20}, "sck": {2, 6, 18, 22}, "mosi": {3, 7, 19, 23}},
    1: {"miso": {8, 12, 24, 28}, "sck": {10, 14, 26}, "mosi": {11, 15, 27}},
}
RP2040_UART = {0: {"tx": {0, 12, 16, 28}, "rx": {1, 13, 17, 29}},
               1: {"tx": {4, 8, 20, 24}, "rx": {5, 9, 21, 25}}}
# GP23-25 and GP29 are the Pico module's own (SMPS mode, VBUS sense, LED, VSYS/3)
RP2040_GPIO = set(range(30)) - {23, 24, 25, 29}
ESP32_GPIO = set(range(40)) - {6, 7, 8, 9, 10, 11, 20, 24, 28, 29, 30, 31}
ESP32_INPUT_ONLY = {34, 35, 36, 37, 38, 39}
ESP32_RMII = {0, 19, 21, 22, 25, 26, 27}
ESP32_STRAPPING = {0, 2, 5, 12, 15}
ESP32_POE_ETH = {"mdc": 23, "mdio": 18, "power": 12, "ref_clk": 17}
ESP32_CONSOLE = {1, 3}

# What the firmware needs of each board (boards/contract.py: chip, two RS485 ports, LEDs,
# button) and what the issue asks for the RP2040 board besides.
NEEDED = {
    "rp2040_w5500": ("ade_sck", "ade_mosi", "ade_miso", "ade_cs", "ade_irq0", "ade_irq1",
                     "ade_reset", "rs485a_tx", "rs485a_rx", "rs485a_de", "rs485b_tx",
                     "rs485b_rx", "rs485b_de", "led_status_g", "led_status_r",
                     "led_network", "led_bus_g", "led_bus_r", "button", "bus_overload",
                     "w5500_cs", "w5500_rst", "w5500_sck", "w5500_mosi", "w5500_miso"),
    "esp32_lan8720": ("ade_sck", "ade_mosi", "ade_miso", "ade_cs", "ade_irq1",
                      "rs485a_tx", "rs485a_rx", "rs485b_tx", "rs485b_rx", "led_status_g",
                      "led_status_r", "button", "eth_mdc", "eth_mdio", "eth_power",
                      "eth_clk"),
}


def run_stubbed(code, timeout=120):
    env = dict(os.environ, MICROPYPATH="%s:.frozen:%s" % (ROOT / "tests" / "stubs", ROOT))
    p = subprocess.run([MICROPYTHON, "-c", code], capture_output=True, text=True,
                       timeout=timeout, env=env, cwd=str(ROOT))
    assert p.returncode == 0 and "@@JSON" in p.stdout, p.stdout + p.stderr
    return json.loads(p.stdout.split("@@JSON", 1)[1].strip().splitlines()[0])


# Build the board and every part the firmware asks of it; report the recorded calls
# with pins as their GPIO numbers.
BRING_UP = r'''
import json, machine, network
from boards.contract import check
from boards.%(name)s.board import Board, PINS
b = Board()
parts = {"a": b.rs485("a", 19200, "E", 1), "b": b.rs485("b", 38400, "N", 2)}
chip = b.ade7880()
net = b.network()
bd = b.block_device()
w = b.watchdog(8000)
def enc(v):
    if isinstance(v, machine.Pin):
        return {"pin": v.id, "mode": v.mode, "pull": v.pull}
    if isinstance(v, (machine.SPI, machine.UART)):
        return {"bus": v.id}
    if isinstance(v, (int, str, bool)) or v is None:
        return v
    return repr(v)
calls = [[n, [enc(a) for a in args], {k: enc(x) for k, x in kw.items()}]
         for n, args, kw in machine.CALLS]
print("@@JSON", json.dumps({
    "missing": check(b), "pins": [list(p) for p in PINS], "calls": calls,
    "de": [parts[k].de.id if parts[k].de is not None else None for k in "ab"],
    "irq0": chip.has_irq, "irq1": chip.irq1.id if chip.irq1 else None,
    "net": type(net).__name__, "hostname": network.HOSTNAME[0],
    "block_device": type(bd).__name__, "wdt": w.timeout,
    "leds": sorted(b.leds), "power_fail": b.power_fail,
    "overload": b.bus_overload.id if getattr(b, "bus_overload", None) else None,
    "button": [b.button.id, b.button.mode, b.button.pull]}))
'''


@pytest.fixture(scope="module", params=BOARDS)
def brought_up(request):
    return request.param, run_stubbed(BRING_UP % {"name": request.param})


def _pin_calls(r):
    return [c for c in r["calls"] if c[0] == "Pin"]


def test_board_meets_the_contract(brought_up):
    name, r = brought_up
    assert r["missing"] == []
    assert r["leds"] == ["bus", "network", "status"]
    assert r["power_fail"] is None            # the ADE7880's SAG instead
    assert r["irq1"] is not None              # ... on IRQ1
    assert r["wdt"] == 8000
    assert r["net"] == "Net" and r["hostname"] == "OpenMeter-00000000"
    assert r["block_device"] == {"rp2040_w5500": "Flash",
                                 "esp32_lan8720": "Partition"}[name]


def test_every_needed_pin_exists_once(brought_up):
    name, r = brought_up
    table = {f: g for f, g, _ in r["pins"]}
    assert len(table) == len(r["pins"]), "a function named twice"
    for f in NEEDED[name]:
        assert f in table, "%s lacks %s" % (name, f)
    gpios = [g for _, g, _ in r["pins"]]
    assert len(set(gpios)) == len(gpios), "a GPIO used twice in PINS"
    # and the bring-up constructs each GPIO once, only those of the table
    made = [c[1][0] for c in _pin_calls(r)]
    assert len(set(made)) == len(made), sorted(made)
    assert set(made) <= set(gpios)
    valid = RP2040_GPIO if name == "rp2040_w5500" else ESP32_GPIO
    assert set(gpios) <= valid, set(gpios) - valid


def test_rp2040_buses_use_valid_pins():
    r = run_stubbed(BRING_UP % {"name": "rp2040_w5500"})
    spis = [c for c in r["calls"] if c[0] == "SPI"]
    assert sorted(c[1][0] for c in spis) == [0, 1]
    for _, args, kw in spis:
        opts = RP2040_SPI[args[0]]
        for sig in ("sck", "mosi", "miso"):
            assert kw[sig]["pin"] in opts[sig], (args[0], sig, kw[sig])
    ade = [kw for _, a, kw in spis if a[0] == 1][0]
    # ADE7880: SPI mode 3, SCLK at most 2.5 MHz (datasheet SPI timing)
    assert (ade["polarity"], ade["phase"]) == (1, 1) and ade["baudrate"] <= 2500000
    w5500 = [kw for _, a, kw in spis if a[0] == 0][0]
    # W5500-EVB-Pico wiring: GP18 SCK, GP19 MOSI, GP16 MISO
    assert (w5500["sck"]["pin"], w5500["mosi"]["pin"], w5500["miso"]["pin"]) == (18, 19, 16)
    wiz = [c for c in r["calls"] if c[0] == "WIZNET5K"][0]
    assert wiz[1][0] == {"bus": 0} and wiz[1][1]["pin"] == 17 and wiz[1][2]["pin"] == 20
    uarts = [c for c in r["calls"] if c[0] == "UART"]
    assert sorted(c[1][0] for c in uarts) == [0, 1]
    for _, args, kw in uarts:
        assert kw["tx"]["pin"] in RP2040_UART[args[0]]["tx"]
        assert kw["rx"]["pin"] in RP2040_UART[args[0]]["rx"]
        assert kw["timeout"] == 0 and kw["rxbuf"] >= 512 and kw["bits"] == 8
    assert r["de"] == [2, 3] and r["irq0"] is True and r["overload"] == 28
    assert r["button"] == [27, 0, 1]          # input with pull-up


def test_esp32_keeps_off_rmii_input_only_and_strapping_pins():
    r = run_stubbed(BRING_UP % {"name": "esp32_lan8720"})
    pins = {f: g for f, g, _ in r["pins"]}
    lan = [c for c in r["calls"] if c[0] == "LAN"][0]
    kw = lan[2]
    for k, gpio in ESP32_POE_ETH.items():
        assert kw[k]["pin"] == gpio, k
    assert kw["phy_type"] == 0 and kw["phy_addr"] == 0 and kw["ref_clk_mode"] == 1
    eth = set(ESP32_POE_ETH.values())
    for f, g in pins.items():
        if not f.startswith("eth_"):
            assert g not in ESP32_RMII | eth | ESP32_CONSOLE, (f, g)
    # input-only GPIOs: constructed as inputs, or a bus input (MISO/RX)
    ins = set()
    for _, args, kw2 in r["calls"]:
        for v in list(args) + list(kw2.values()):
            if isinstance(v, dict) and v.get("pin") in ESP32_INPUT_ONLY:
                ins.add(v["pin"])
    bus_inputs = set()
    for name, _, kw2 in r["calls"]:
        if name == "SPI":
            bus_inputs.add(kw2["miso"]["pin"])
            for s in ("sck", "mosi"):
                assert kw2[s]["pin"] not in ESP32_INPUT_ONLY
        if name == "UART":
            bus_inputs.add(kw2["rx"]["pin"])
            assert kw2["tx"]["pin"] not in ESP32_INPUT_ONLY
    for c in _pin_calls(r):
        g, mode = c[1][0], (c[1][1] if len(c[1]) > 1 else None)
        if g in ESP32_INPUT_ONLY:
            assert mode == 0 or g in bus_inputs, (g, mode)
    # outputs that matter at boot (bus clocks/data, RS485 TX) never on a strapping pin
    for name, _, kw2 in r["calls"]:
        if name == "SPI":
            assert kw2["sck"]["pin"] not in ESP32_STRAPPING
            assert kw2["mosi"]["pin"] not in ESP32_STRAPPING
        if name == "UART":
            assert kw2["tx"]["pin"] not in ESP32_STRAPPING
            assert sorted(c[1][0] for c in r["calls"] if c[0] == "UART") == [1, 2]


def test_stand_ins_refuse_wrong_names():
    # the signature checks can fail: a misspelt keyword or a fourth WIZNET5K positional
    code = r'''
import json, machine, network
out = []
for f in (lambda: machine.SPI(1, baud=1000000),
          lambda: machine.UART(1, 9600, tx_pin=machine.Pin(4)),
          lambda: network.WIZNET5K(machine.SPI(0), machine.Pin(17), machine.Pin(20), 1),
          lambda: network.LAN(mdc=machine.Pin(23), mdio=machine.Pin(18), phy=0)):
    try:
        f()
        out.append("accepted")
    except TypeError as e:
        out.append(str(e))
print("@@JSON", json.dumps(out))
'''
    out = run_stubbed(code)
    assert "accepted" not in out, out
    assert "'baud'" in out[0] and "'tx_pin'" in out[1] and "'phy'" in out[3]


# Boot the App on the board: the simulated ADE7880 answers behind the stand-in SPI (its
# IRQ lines forwarded to the board's input pins), the littlefs is a host directory,
# Ethernet the stand-in NIC; metering runs for 1.5 s of real time.
BOOT = r'''
import asyncio, json, time, machine, network
from boards.%(name)s.board import Board
from boards.sim.ade7880 import ADE7880Sim
from boards.sim.bus import SimSPI
from boards.sim import scenario
from firmware.app import App
from firmware.snapshot import NQ, U_MV, F_MHZ
b = Board()
b.fs_root = %(root)r
chip = ADE7880Sim(b.clock, scenario.parse(%(scn)r))
b.spi.target = SimSPI(chip, b.ade_cs)
for src, dst in ((chip.irq0, getattr(b, "ade_irq0", None)), (chip.irq1, b.ade_irq1)):
    if dst is not None:
        src._watch = dst.value
async def main():
    app = App(b)
    await app.start(modbus=False)
    async def tick():            # the simulated chip keeps its IRQs on time
        while True:
            chip.advance()
            await asyncio.sleep_ms(10)
    t = asyncio.create_task(tick())
    await asyncio.sleep_ms(700)
    link0 = app.indicators.link
    b.nic.link = True
    await asyncio.sleep_ms(800)
    snap = app.meter.front
    res = {"seq": snap.seq, "link": [link0, app.indicators.link],
           "status": app.indicators.names()["status"],
           "u_mv": [snap.inst[k * NQ + U_MV] for k in range(3)],
           "f_mhz": snap.inst[F_MHZ], "wdt_feeds": app.feeder.wdt.feeds,
           "ethernet_first": machine.CALLS.index([c for c in machine.CALLS
                                                  if c[0].endswith(".active")][0])
                             < machine.CALLS.index([c for c in machine.CALLS
                                                    if c[0] == "WDT"][0])}
    t.cancel()
    app.stop()
    return res
print("@@JSON", json.dumps(asyncio.run(main())))
'''
SCN = {"frequency_hz": 50.0, "phases": {
    "L1": {"v_rms": 231.0, "i_rms": 12.5, "phi_deg": 10.0},
    "L2": {"v_rms": 229.5, "i_rms": 8.2, "phi_deg": 25.0},
    "L3": {"v_rms": 230.4, "i_rms": 3.1, "phi_deg": 318.0}}}


@pytest.mark.parametrize("name", BOARDS)
def test_app_boots_on_the_board(name, tmp_path):
    r = run_stubbed(BOOT % {"name": name, "root": str(tmp_path), "scn": SCN})
    assert r["seq"] >= 3, r               # windows measured through the board's SPI
    # what the simulated mains carries, within the calibration's 0.5 %
    for got, want in zip(r["u_mv"], (231000, 229500, 230400)):
        assert abs(got - want) < want // 200, r
    assert abs(r["f_mhz"] - 50000) < 100, r
    assert r["status"] == "green", r      # ready: chip answering, metering running
    assert r["wdt_feeds"] > 0 and r["ethernet_first"], r
    assert r["link"] == [False, True]     # the network LED follows the NIC's link
    assert (tmp_path / "cnt").exists() or any(tmp_path.iterdir())   # stores on the fs


# ---- frozen build: the manifests name every module the firmware imports on the board --
import ast  # noqa: E402

# Modules the ports provide (built in, or frozen by the port's own manifest: asyncio).
PORT_MODULES = {"asyncio", "machine", "network", "micropython", "time", "array", "os", "gc",
                "sys", "struct", "json", "uctypes", "rp2", "esp32", "errno", "select",
                "socket", "binascii", "hashlib", "random", "io", "collections", "math",
                "deflate", "re", "framebuf", "ntptime", "vfs"}
OWN = ("firmware", "drivers", "boards", "tools", "tests")


def _module_file(name):
    p = ROOT.joinpath(*name.split(".")).with_suffix(".py")
    return p if p.exists() else None


def imports_of(name):
    """Names a module imports anywhere in it (top level, in functions, in try), by
    reading its source; `from pkg import mod` counts as pkg.mod when that is a file."""
    tree = ast.parse(_module_file(name).read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            for a in node.names:
                if _module_file(node.module + "." + a.name):
                    out.add(node.module + "." + a.name)
    return out


def needed_modules(roots):
    seen, todo, foreign = set(), list(roots), set()
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        if m.split(".")[0] not in OWN:
            foreign.add(m.split(".")[0])
            continue
        if _module_file(m) is None:
            continue             # a package (namespace) name: its modules come by name
        seen.add(m)
        todo.extend(imports_of(m))
    return seen, foreign


def manifest_modules(path):
    """Module names a manifest freezes, by running it with package()/module()/include()
    as MicroPython's manifest functions define them (paths relative to the file)."""
    here = path.parent
    mods, includes, requires = set(), [], []

    def package(pkg, files=None, base_path=".", opt=None):
        base = (here / base_path).resolve()
        if files is None:
            files = [str(p.relative_to(base / pkg)) for p in (base / pkg).rglob("*.py")]
        for f in files:
            assert (base / pkg / f).exists(), "%s: no %s/%s" % (path, pkg, f)
            mods.add((pkg + "/" + f)[:-3].replace("/", "."))

    def module(f, base_path=".", opt=None):
        mods.add(f[:-3])

    def include(p, **kw):
        includes.append(p)

    exec(compile(path.read_text(), str(path), "exec"),
         {"package": package, "module": module, "include": include,
          "require": lambda name, **k: requires.append(name), "options": None, "metadata": lambda **k: None,
          "freeze": lambda *a, **k: None})
    return mods, includes, requires


@pytest.mark.parametrize("name", BOARDS)
def test_manifest_freezes_what_the_board_imports(name):
    mods, includes, requires = manifest_modules(ROOT / "boards" / name / "manifest.py")
    assert includes == ["$(PORT_DIR)/boards/manifest.py"]
    need, foreign = needed_modules(["firmware.app", "boards.%s.board" % name])
    assert "drivers.ade7880" in need and "firmware.ports" in need   # the scan reaches
    assert not need - mods, sorted(need - mods)
    # micropython-lib packages come in by require() (umqtt.simple for MQTT)
    assert requires == ["umqtt.simple"]
    provided = PORT_MODULES | {r.split(".")[0] for r in requires}
    assert foreign <= provided, foreign - provided
    host_only = [m for m in mods if m.startswith(("boards.sim", "tools", "tests"))]
    assert host_only == []
    other = "esp32_lan8720" if name == "rp2040_w5500" else "rp2040_w5500"
    assert not [m for m in mods if m.startswith("boards." + other)]
    # the scanner itself: the sim board needs the simulator, which no manifest has
    sim_need, _ = needed_modules(["boards.sim.board"])
    assert "boards.sim.ade7880" in sim_need and "boards.sim.ade7880" not in mods


# ---- memory on the target (issue 11, item 5) ----
def test_board_objects_fit_the_sim_boards_share():
    """On the 32-bit runtime, each real board's own objects (Board() and network(), the
    port's Pin/SPI/UART/NIC being static) take no more than the sim board's shell that
    the "meter" share holds today; the App boots on it and measures."""
    import sys
    sys.path.insert(0, str(ROOT / "tools"))
    import heap32
    f = heap32.board_figures()
    assert f["sim_shell"] > 0
    for name in heap32.BOARD_PARTS:
        b = f[name]
        assert 0 < b["board"] <= f["sim_shell"], (name, b, f["sim_shell"])
        assert b["published"] == 3, b       # three windows through the board's SPI
        assert b["module_objects_frozen"] > 0


def test_readme_pin_tables_come_from_the_board_modules():
    p = subprocess.run([sys.executable, str(ROOT / "tools" / "export_pins.py"), "--check"],
                       capture_output=True, text=True, cwd=str(ROOT))
    assert p.returncode == 0, p.stdout + p.stderr


@pytest.mark.parametrize("name", BOARDS)
def test_static_address_and_hostname_from_config(name):
    code = r'''
import json, machine, network
from firmware import config
from boards.%s.board import Board
b = Board()
cfg = config.validate({"network": {"dhcp": False, "ip": "10.0.0.7", "netmask": "255.255.0.0",
                                   "gateway": "10.0.0.1", "dns": "10.0.0.2",
                                   "hostname": "meter-7"}}, b.CALIBRATION)
del machine.CALLS[:]
net = b.network(cfg)
b.nic.link = True
print("@@JSON", json.dumps({"calls": [[c[0], [str(a) for a in c[1]],
                                       {k: str(v) for k, v in c[2].items()}]
                                      for c in machine.CALLS],
                            "up": net.isconnected(), "dns": network.DNS[0]}))
''' % name
    r = run_stubbed(code)
    names = [c[0] for c in r["calls"]]
    nic = "WIZNET5K" if name == "rp2040_w5500" else "LAN"
    # the hostname is set before the interface comes up, so DHCP would announce it
    assert names.index("hostname") < names.index(nic + ".active")
    assert r["calls"][names.index("hostname")][1] == ["meter-7"]
    ip = r["calls"][names.index(nic + ".ipconfig")][2]
    assert ip == {"addr4": "('10.0.0.7', '255.255.0.0')", "gw4": "10.0.0.1"}
    assert r["dns"] == "10.0.0.2" and r["up"] is True
