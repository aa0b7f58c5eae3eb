"""What the real boards share: clock, watchdog, reset, RTC time, Ethernet set-up.

    from boards.realboard import RealBoard
    class Pico(RealBoard): ...          # a board module adds PINS and its parts

A board module (boards/rp2040_w5500, boards/esp32_lan8720) is the only place with its
pins; this base holds what is the same on every MicroPython port (machine.WDT,
machine.reset, machine.RTC, network.hostname, nic.ipconfig/ifconfig) so both boards
meet boards/contract.py the same way.
"""
import time

from firmware.rootfs import RootFs

RTC_MIN_YEAR = 2025   # the RTC counts from a fixed date after power-up: earlier = not set


def days_from_civil(y, m, d):
    """Days since 1970-01-01 of a Gregorian date (proleptic; no port epoch involved)."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


class Clock:
    """time.ticks_* (wrapping) and now_us(): monotonic us, exact while called at least
    every half ticks period (rp2: 2**30 us / 2 = 8.9 min; the metering loop runs every
    200-500 ms)."""

    def __init__(self):
        self._last = time.ticks_us()
        self._now = 0

    def ticks_ms(self):
        return time.ticks_ms()

    def ticks_us(self):
        return time.ticks_us()

    def now_us(self):
        t = time.ticks_us()
        self._now += time.ticks_diff(t, self._last)
        self._last = t
        return self._now


class Net:
    """The Ethernet interface handed to the firmware: link state for the network LED."""

    def __init__(self, nic):
        self.nic = nic

    def isconnected(self):
        return self.nic.isconnected()


def configure_ip(nic, net):
    """DHCP or the static address of config "network" (firmware/config.py): ipconfig()
    (MicroPython >= 1.23: addr4 as (address, netmask), the DNS server global) where the
    port has it, else the older ifconfig()."""
    import network
    if hasattr(nic, "ipconfig"):
        if net["dhcp"]:
            nic.ipconfig(dhcp4=True)
        else:
            nic.ipconfig(addr4=(net["ip"], net["netmask"]), gw4=net["gateway"])
            network.ipconfig(dns=net["dns"])
    elif net["dhcp"]:
        nic.ifconfig("dhcp")
    else:
        nic.ifconfig((net["ip"], net["netmask"], net["gateway"], net["dns"]))


class RealBoard:
    """Contract methods the same on rp2 and esp32; subclasses set name, PINS, the parts."""
    fs_root = "/"          # where the port's _boot.py mounted littlefs
    # Both boards carry the reference metering front end, the sim board's design
    # (1 MOhm : 1 kOhm divider, 2500:1 CT into 10 Ohm; derivation in boards/sim/board.py).
    # A board with another front end overrides this.
    CALIBRATION = {
        "v_per_code": "9.395996e-05",
        "i_per_code": "2.346652e-05",
        "w_per_code": "1.849616e-02",
        "wh_per_lsb": "1.262671e-04",
        "gains": [[0, 0, 0], [0, 0, 0], [0, 0, 0]],
        "phcal": [0, 0, 0],
    }
    DIRECT_MAX_A = 63      # per line without CTs: "up to 63 A direct" (ksem-manual-digest.md)
    UART_RXBUF = 512       # drivers/rs485.py: a flash erase's worth of bytes at 38400 baud

    def __init__(self):
        self.clock = Clock()
        self.nic = None

    def pin(self, function):
        """The GPIO number of a function of the board's PINS table (KeyError names it)."""
        for f, gpio, _ in self.PINS:
            if f == function:
                return gpio
        raise KeyError("board %s has no pin for %r" % (self.name, function))

    def _uart(self, name, baud, stop):
        """RS485 port `name`'s UART (self.UARTS: name -> (UART id, PINS prefix)) with
        8 data bits (parity is drivers/rs485.py's), and the prefix of its pins."""
        from machine import Pin, UART
        if name not in self.UARTS:
            raise ValueError("RS485 port %r: the board has 'a' and 'b'" % (name,))
        uid, pre = self.UARTS[name]
        p = self.pin
        return UART(uid, baudrate=baud, bits=8, parity=None, stop=stop,
                    tx=Pin(p(pre + "_tx")), rx=Pin(p(pre + "_rx")), rxbuf=self.UART_RXBUF,
                    timeout=0), pre

    def filesystem(self):
        return RootFs(self.fs_root)

    def watchdog(self, timeout_ms):
        from machine import WDT
        return WDT(timeout=timeout_ms)

    def reset(self):
        import machine
        machine.reset()

    def reset_cause(self):
        import machine
        return machine.reset_cause()

    def unique_id(self):
        import machine
        return machine.unique_id()

    def time_utc(self):
        """UTC seconds from machine.RTC, or None while it is not set (still counting
        from its power-up date); SNTP or Modbus set it."""
        from machine import RTC
        y, mo, d, _, h, mi, s, _ = RTC().datetime()
        if y < RTC_MIN_YEAR:
            return None
        return days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s

    def tasks(self):
        return []

    def network(self, cfg=None):
        """Bring Ethernet up with the config's "network" section (DHCP by default) and
        the hostname from the serial, set first so DHCP announces it
        (network.hostname(), MicroPython >= 1.20); Net (isconnected()) for the network
        LED."""
        import network
        from firmware import config as config_mod
        if cfg is None:
            cfg = config_mod.defaults()
        network.hostname(config_mod.hostname(cfg))
        nic = self.nic = self._nic()
        nic.active(True)
        configure_ip(nic, cfg["network"])
        return Net(nic)
