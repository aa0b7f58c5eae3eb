"""RP2040 + W5500 board (W5500-EVB-Pico layout): the only place with its pins.

    from boards.rp2040_w5500.board import Board
    board = Board()                      # builds every part; boards/contract.py

Wiring (PINS below; the README table is generated from it by tools/export_pins.py):
- W5500 on SPI0, wired on the W5500-EVB-Pico: GP16 MISO, GP17 CSn, GP18 SCK, GP19 MOSI,
  GP20 RSTn, GP21 INTn (WIZnet's board documentation); MicroPython's rp2 port drives it
  as network.WIZNET5K(spi, pin_cs, pin_rst).
- ADE7880 on SPI1 (GP10 SCK, GP11 TX/MOSI, GP12 RX/MISO: RP2040 datasheet 2.19.2 GPIO
  functions), chip select GP13 as a plain output (the driver frames each transfer),
  IRQ0 GP14 (window end), IRQ1 GP15 (SAG: supply failure), RESET GP22.
- RS485 A on UART0 (GP0 TX, GP1 RX), B on UART1 (GP4 TX, GP5 RX), DE GP2 / GP3.
- LEDs: status red/green (GP6 green, GP7 red), network green GP8 (its states use green
  only: firmware/leds.py), bus red/green (GP9 green, GP26 red); active high.
- Reset button GP27 (to GND, internal pull-up); 5 V bus-supply overload GP28 (low =
  overloaded, open-drain flag of the current switch, internal pull-up).
GP23-25 and GP29 are the Pico's own (SMPS mode, VBUS sense, LED, VSYS/3), so every free
GPIO is used. The power-fail input is the ADE7880's SAG on IRQ1 (power_fail None).
"""
from boards.realboard import RealBoard

# function, GPIO, what it is
PINS = (
    ("w5500_miso", 16, "SPI0 RX, board-wired"),
    ("w5500_cs", 17, "W5500 CSn, board-wired"),
    ("w5500_sck", 18, "SPI0 SCK, board-wired"),
    ("w5500_mosi", 19, "SPI0 TX, board-wired"),
    ("w5500_rst", 20, "W5500 RSTn, board-wired"),
    ("w5500_int", 21, "W5500 INTn, board-wired (unused by the driver)"),
    ("ade_sck", 10, "SPI1 SCK"),
    ("ade_mosi", 11, "SPI1 TX"),
    ("ade_miso", 12, "SPI1 RX"),
    ("ade_cs", 13, "ADE7880 /SS, output"),
    ("ade_irq0", 14, "ADE7880 IRQ0, input"),
    ("ade_irq1", 15, "ADE7880 IRQ1 (SAG), input"),
    ("ade_reset", 22, "ADE7880 /RESET, output"),
    ("rs485a_tx", 0, "UART0 TX"),
    ("rs485a_rx", 1, "UART0 RX"),
    ("rs485a_de", 2, "RS485 A DE+/RE, output"),
    ("rs485b_de", 3, "RS485 B DE+/RE, output"),
    ("rs485b_tx", 4, "UART1 TX"),
    ("rs485b_rx", 5, "UART1 RX"),
    ("led_status_g", 6, "status LED green, output"),
    ("led_status_r", 7, "status LED red, output"),
    ("led_network", 8, "network LED green, output"),
    ("led_bus_g", 9, "bus LED green, output"),
    ("led_bus_r", 26, "bus LED red, output"),
    ("button", 27, "reset button to GND, pull-up"),
    ("bus_overload", 28, "5 V overload flag, low active, pull-up"),
)

# UART id per RS485 port, and the SPI buses: (id, sck, mosi, miso)
UARTS = {"a": (0, "rs485a"), "b": (1, "rs485b")}
W5500_SPI = 0
ADE_SPI = 1
ADE_BAUD = 2000000     # ADE7880 SPI: SCLK at most 2.5 MHz (datasheet timing table)
W5500_BAUD = 20000000  # W5500 SPI: up to 80 MHz per its datasheet; 20 MHz on jumpers
# rp2's UART reports txdone while the last character is still in the shift register
# (MicroPython machine.UART docs): one character at the slowest rate (9600, 11 bits).
TXDONE_LATE_US = 1146


class Board(RealBoard):
    name = "rp2040-w5500"
    PINS = PINS
    UARTS = UARTS

    def __init__(self):
        from machine import Pin
        from drivers.led import LED, BiLED
        RealBoard.__init__(self)
        p = self.pin
        out = lambda f, v=0: Pin(p(f), Pin.OUT, value=v)
        self.leds = {"status": BiLED(out("led_status_g"), out("led_status_r")),
                     "network": LED(out("led_network")),
                     "bus": BiLED(out("led_bus_g"), out("led_bus_r"))}
        self.button = Pin(p("button"), Pin.IN, Pin.PULL_UP)
        self.bus_overload = Pin(p("bus_overload"), Pin.IN, Pin.PULL_UP)
        self.power_fail = None            # the ADE7880's SAG on IRQ1 instead
        self.ade_cs = out("ade_cs", 1)
        self.ade_reset = out("ade_reset", 1)   # released: the chip runs
        self.ade_irq0 = Pin(p("ade_irq0"), Pin.IN, Pin.PULL_UP)
        self.ade_irq1 = Pin(p("ade_irq1"), Pin.IN, Pin.PULL_UP)
        self.spi = self._spi(ADE_SPI, "ade", ADE_BAUD, 1)

    def _spi(self, bus, part, baud, mode):
        from machine import Pin, SPI
        p = self.pin
        return SPI(bus, baudrate=baud, polarity=mode, phase=mode,
                   sck=Pin(p(part + "_sck")), mosi=Pin(p(part + "_mosi")),
                   miso=Pin(p(part + "_miso")))

    def ade7880(self, **kw):
        from drivers.ade7880 import ADE7880
        # ADE7880 SPI: SCLK idle high, data taken on the rising edge (mode 3)
        return ADE7880(self.spi, self.ade_cs, irq0=self.ade_irq0, irq1=self.ade_irq1, **kw)

    def rs485(self, name, baud, parity, stop):
        from machine import Pin
        from drivers.rs485 import RS485
        uart, pre = self._uart(name, baud, stop)
        de = Pin(self.pin(pre + "_de"), Pin.OUT, value=0)
        return RS485(uart, de, baud, parity, stop, txdone_late_us=TXDONE_LATE_US)

    def block_device(self):
        import rp2
        return rp2.Flash()

    def _nic(self):
        import network
        from machine import Pin
        spi = self._spi(W5500_SPI, "w5500", W5500_BAUD, 0)
        return network.WIZNET5K(spi, Pin(self.pin("w5500_cs"), Pin.OUT, value=1),
                                Pin(self.pin("w5500_rst"), Pin.OUT, value=1))
