"""The meter's Modbus ports: RTU slaves on RS485 A and B and the TCP server.

    from firmware.ports import ModbusPorts
    ports = ModbusPorts(meter, cfg, board)     # cfg validated by firmware.config
    await ports.start(tcp_host, tcp_port, supervisor)   # RTU tasks run supervised
    await ports.apply_config(new_cfg)          # rebuild maps, reconfigure ports
    ports.rtu["a"].stats, ports.tcp.stats      # for the bus and network LEDs

One register view serves every port: KSEM + PnP + SunSpec on FC 03, SDM630 on FC 04,
all read from the meter's published snapshot, and the config registers (0xC000..,
`device`: firmware/regmaps/device.py) on FC 03/06/16, behind one routing space. RS485 ports come from the board
(board.rs485(name, baud, parity, stop) -> drivers.rs485.RS485 or None when the board
has no such port); settings come from config "modbus"; the rated current for the map
scale factors from the board (board.DIRECT_MAX_A) or the CT primary.

apply_config swaps new register spaces into the dispatchers in one step (a request is
answered wholly from the old or the new maps), and changes an RTU port's line settings
only while that port is between frames, so a reply in progress (the reply to the very
write that changed the setting, say) goes out with the settings it was asked with.
"""
import asyncio
from micropython import const

from firmware.modbus.pdu import Dispatcher
from firmware.modbus.rtu import RtuSlave
from firmware.modbus.tcp import TcpServer
from firmware.regmaps.build import build_spaces, check_config
from firmware.regmaps.device import Routed
from firmware.regmaps.eventlog import EventLogSpace
from firmware.regmaps.rings import space_of
from firmware.version import VERSION

_SETTLE_MS = const(5)          # poll interval while waiting for a port to be between frames
_SETTLE_MAX_MS = const(2000)   # a port busy longer than this is reconfigured anyway


def identity(cfg):
    idn = dict(cfg["identity"])
    idn["fw_version"] = VERSION
    return idn


def map_config(cfg, board):
    """The register maps' settings: rating (the board's direct rating or the CT
    primary), phases (SunSpec model 201 for 1P2W), scale factor overrides."""
    m = cfg["metering"]
    i_max = m["ct_primary_a"] if m["ct_enabled"] else board.DIRECT_MAX_A
    out = {"i_max_a": i_max, "sunspec_da": cfg["modbus"]["sunspec_da"],
           "phases": 1 if m["wiring"] == "1P2W" else 3}
    if cfg["modbus"]["sunspec_sf"]:
        out["sunspec_sf"] = cfg["modbus"]["sunspec_sf"]
    return out


def check_maps(cfg, board):
    """ValueError naming the problem if the maps could not be built from cfg."""
    check_config(map_config(cfg, board))


class ModbusPorts:
    def __init__(self, meter, cfg, board, device=None, push=None):
        mb = cfg["modbus"]
        self.meter = meter
        self.device = device
        self.evspace = None
        self.push = push       # firmware/pushmb.py Pusher: its status space
        self.board = board
        self.cfg = cfg
        holding, inputs, dev_id = self._maps(cfg)
        self.holding = holding
        self.inputs = inputs
        self.rtu = {}
        self.rs485 = {}      # the port objects: a "master" port is the push's (pushmb.py)
        self.masters = ""    # names of the ports whose role was "master" at start()
        self.rtu_dispatcher = Dispatcher(holding, inputs, dev_id, rtu=True)
        for name in ("a", "b"):
            pc = mb["rs485_" + name]
            port = board.rs485(name, pc["baud"], pc["parity"], pc["stop"])
            if port is None:
                continue
            self.rs485[name] = port
            self.rtu[name] = RtuSlave(port, self.rtu_dispatcher, address=pc["address"],
                                      baud=pc["baud"], parity=pc["parity"], stop=pc["stop"],
                                      enabled=pc["enabled"], name="rtu-" + name)
        t = mb["tcp"]
        self.tcp_cfg = t
        self.tcp_dispatcher = Dispatcher(holding, inputs, dev_id)
        self.tcp = self._tcp_server(cfg)
        self._host = None
        self._port = None
        self.tasks = []

    def _maps(self, cfg):
        """(holding space, input space, FC 43/14 basic objects) for cfg."""
        idn = identity(cfg)
        meas, inputs = build_spaces(self.meter, idn, map_config(cfg, self.board))
        store = self.meter.events.store      # the event log on flash, when there is one
        if store is not None and self.evspace is None:
            self.evspace = EventLogSpace(store)  # one select register across config changes
        # The holding-register address ranges, in one place (inclusive).
        ranges = ((0x0000, 0xBFFF, meas),          # KSEM, PnP, SunSpec: never writable
                  (0xC000, 0xC3FF, self.device),   # config (firmware/regmaps/device.py)
                  (0xC400, 0xC7FF, self.evspace),  # event log (firmware/regmaps/eventlog.py)
                  (0xC800, 0xCBFF, getattr(self.device, "records_space", None)),  # clock, tariffs, demand (regmaps/records.py)
                  (0xCC00, 0xCFFF, space_of(self.meter)),  # load curve, KSEM log (rings.py)
                  (0xD000, 0xD1FF, self.push),     # push status (firmware/pushmb.py)
                  (0xD200, 0xD3FF, getattr(getattr(self.device, "app", None), "mqtt", None)))
        holding = Routed(r for r in ranges if r[2] is not None)
        self.meas = meas       # the KSEM map the push reads (firmware/pushmb.py)
        return holding, inputs, (idn["vendor"], idn["model"], VERSION)

    def _tcp_server(self, cfg):
        t = cfg["modbus"]["tcp"]
        return TcpServer(self.tcp_dispatcher, max_clients=t["max_clients"],
                         idle_s=t["idle_s"], unit_id=cfg["modbus"]["rs485_a"]["address"],
                         own_id_only=t["own_id_only"])

    async def start(self, host="0.0.0.0", port=None, supervisor=None):
        for name, slave in self.rtu.items():
            role = self.cfg["modbus"]["rs485_" + name]["role"]
            if role == "master":
                self.masters += name      # the push's port (firmware/pushmb.py)
            if role != "slave":
                continue     # one owner per port (KSEM 5.14.1): set at boot
            if supervisor is not None:
                supervisor.spawn("rs485_" + name, slave.run)
            else:
                self.tasks.append(asyncio.create_task(slave.run()))
        self._host = host
        self._port = port
        if self.tcp_cfg["enabled"]:
            # port None: the configured one; 0: any free port (tests, several instances)
            await self.tcp.start(host, self.tcp_cfg["port"] if port is None else port)

    async def apply_config(self, cfg):
        """Apply a validated config: new maps, then RTU line settings, then TCP."""
        holding, inputs, dev_id = self._maps(cfg)
        for d in (self.rtu_dispatcher, self.tcp_dispatcher):
            d.set_ident(dev_id)        # validates first: a bad identity changes nothing
        for d in (self.rtu_dispatcher, self.tcp_dispatcher):
            d.holding = holding
            d.inputs = inputs
        self.holding = holding
        self.inputs = inputs
        mb = cfg["modbus"]
        for name, slave in self.rtu.items():
            pc = mb["rs485_" + name]       # the keys of slave.settings(), and role
            if any(slave.settings()[k] != pc[k] for k in ("enabled", "address", "baud",
                                                            "parity", "stop")):
                await self._between_frames(slave)
                slave.configure(pc["address"], pc["baud"], pc["parity"], pc["stop"],
                                pc["enabled"])
        await self._apply_tcp(cfg)
        self.cfg = cfg

    async def _between_frames(self, slave):
        # A slave mid-frame (collecting a request or sending its reply) is not `idle`;
        # wait for it, bounded, so a reply goes out with its request's settings.
        waited = 0
        while slave.enabled and not slave.idle and waited < _SETTLE_MAX_MS:
            await asyncio.sleep_ms(_SETTLE_MS)
            waited += _SETTLE_MS

    async def _apply_tcp(self, cfg):
        old = self.tcp_cfg
        t = cfg["modbus"]["tcp"]
        if t == old and cfg["modbus"]["rs485_a"]["address"] == self.tcp.unit_id:
            return
        if (t["enabled"], t["port"], t["max_clients"]) == (old["enabled"], old["port"],
                                                          old["max_clients"]):
            # In place: the open connections stay.
            self.tcp.idle_ms = t["idle_s"] * 1000
            self.tcp.own_id_only = t["own_id_only"]
            self.tcp.unit_id = cfg["modbus"]["rs485_a"]["address"]
        else:
            self.tcp.close()
            await self.tcp.wait_closed()
            self.tcp = self._tcp_server(cfg)
            if t["enabled"]:
                await self.tcp.start(self._host or "0.0.0.0",
                                     t["port"] if self._port is None else self._port)
        self.tcp_cfg = t

    def close(self):
        for t in self.tasks:
            t.cancel()
        self.tcp.close()
