"""The meter's Modbus ports: RTU slaves on RS485 A and B and the TCP server.

    from firmware.ports import ModbusPorts
    ports = ModbusPorts(meter, cfg, board)     # cfg validated by firmware.config
    await ports.start(tcp_host, tcp_port)      # tasks run until cancelled
    ports.rtu["a"].stats, ports.tcp.stats      # for the bus and network LEDs

One register view serves every port: KSEM + PnP + SunSpec on FC 03, SDM630 on FC 04,
all read from the meter's published snapshot. RS485 ports come from the board
(board.rs485(name, baud, parity, stop) -> drivers.rs485.RS485 or None when the board
has no such port); settings come from config "modbus".
"""
import asyncio

from firmware.modbus.pdu import Dispatcher
from firmware.modbus.rtu import RtuSlave
from firmware.modbus.tcp import TcpServer
from firmware.regmaps.build import build_spaces
from firmware.version import VERSION

DIRECT_MAX_A = 63      # KSEM: direct measurement up to 63 A per line (manual 5.15.4)


def identity(cfg):
    idn = dict(cfg["identity"])
    idn["fw_version"] = VERSION
    return idn


class ModbusPorts:
    def __init__(self, meter, cfg, board):
        mb = cfg["modbus"]
        m = cfg["metering"]
        idn = identity(cfg)
        i_max = m["ct_primary_a"] if m["ct_enabled"] else DIRECT_MAX_A
        holding, inputs = build_spaces(meter, idn, {"i_max_a": i_max,
                                                    "sunspec_da": mb["sunspec_da"]})
        dev_id = (idn["vendor"], idn["model"], VERSION)   # FC 43/14 basic objects
        self.holding = holding
        self.inputs = inputs
        self.rtu = {}
        rtu_disp = Dispatcher(holding, inputs, dev_id, rtu=True)
        for name in ("a", "b"):
            pc = mb["rs485_" + name]
            port = board.rs485(name, pc["baud"], pc["parity"], pc["stop"])
            if port is None:
                continue
            self.rtu[name] = RtuSlave(port, rtu_disp, address=pc["address"], baud=pc["baud"],
                                      parity=pc["parity"], stop=pc["stop"],
                                      enabled=pc["enabled"])
        t = mb["tcp"]
        self.tcp_cfg = t
        self.tcp = TcpServer(Dispatcher(holding, inputs, dev_id), max_clients=t["max_clients"],
                             idle_s=t["idle_s"], unit_id=mb["rs485_a"]["address"],
                             own_id_only=t["own_id_only"])
        self.tasks = []

    async def start(self, host="0.0.0.0", port=None):
        for slave in self.rtu.values():
            self.tasks.append(asyncio.create_task(slave.run()))
        if self.tcp_cfg["enabled"]:
            await self.tcp.start(host, port or self.tcp_cfg["port"])

    def close(self):
        for t in self.tasks:
            t.cancel()
        self.tcp.close()
