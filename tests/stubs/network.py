"""Stand-in for MicroPython's `network` (tests/test_boards.py): WIZNET5K (rp2) and LAN
(esp32) with the signatures MicroPython documents, calls recorded in machine.CALLS."""
from machine import CALLS, _record, Pin, SPI

PHY_LAN8720 = 0
PHY_IP101 = 1
STAT_IDLE = 0
STAT_GOT_IP = 3
HOSTNAME = [""]
DNS = [None]


def hostname(name=None):
    if name is None:
        return HOSTNAME[0]
    CALLS.append(("hostname", (name,), {}))
    HOSTNAME[0] = name


def ipconfig(**kw):
    _record("network.ipconfig", (), kw, 0, ("dns", "prefer"))
    DNS[0] = kw.get("dns", DNS[0])


class _Nic:
    def __init__(self):
        self._active = False
        self.link = False
        self.ip = None

    def active(self, on=None):
        if on is None:
            return self._active
        CALLS.append((type(self).__name__ + ".active", (on,), {}))
        self._active = bool(on)

    def ipconfig(self, *args, **kw):
        _record(type(self).__name__ + ".ipconfig", args, kw, 1,
                ("dhcp4", "addr4", "gw4", "autoconf6"))
        if kw.get("dhcp4"):
            self.ip = "dhcp"
        elif "addr4" in kw:
            # addr4: (address, netmask) or "address/prefix length" (MicroPython docs)
            a = kw["addr4"]
            ok = (isinstance(a, tuple) and len(a) == 2) or (
                isinstance(a, str) and (a.count("/") == 0 or a.split("/")[1].isdigit()))
            if not ok:
                raise ValueError("ipconfig addr4: (address, netmask) or 'a.b.c.d/len', "
                                 "got %r" % (a,))
            self.ip = a

    def ifconfig(self, cfg=None):
        CALLS.append((type(self).__name__ + ".ifconfig", (cfg,), {}))

    def isconnected(self):
        return self._active and self.link and self.ip is not None

    def status(self):
        return STAT_GOT_IP if self.isconnected() else STAT_IDLE


class WIZNET5K(_Nic):
    # network.WIZNET5K(spi, pin_cs, pin_rst): three positionals (rp2 port docs)
    def __init__(self, *args, **kw):
        _record("WIZNET5K", args, kw, 3, ())
        if len(args) != 3 or not isinstance(args[0], SPI) or not isinstance(args[1], Pin) \
                or not isinstance(args[2], Pin):
            raise TypeError("WIZNET5K(spi, pin_cs, pin_rst), got %r" % (args,))
        _Nic.__init__(self)


class LAN(_Nic):
    # network.LAN(id=0, *, mdc, mdio, power=None, phy_addr, phy_type, ref_clk,
    #             ref_clk_mode)  (esp32 port docs)
    def __init__(self, *args, **kw):
        _record("LAN", args, kw, 1, ("id", "mdc", "mdio", "power", "phy_addr", "phy_type",
                                     "ref_clk", "ref_clk_mode", "spi", "cs", "int"))
        for k in ("mdc", "mdio", "phy_addr", "phy_type"):
            if k not in kw:
                raise TypeError("LAN(): %s is required" % k)
        _Nic.__init__(self)
