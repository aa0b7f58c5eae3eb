"""ESP32 + LAN8720 board (Olimex ESP32-POE layout): the only place with its pins.

    from boards.esp32_lan8720.board import Board
    board = Board()                      # builds every part; boards/contract.py

The ESP32-POE's Ethernet (Olimex ESP32-POE user manual and schematic) takes GPIO 23 MDC,
18 MDIO, 12 PHY power, 17 the 50 MHz RMII clock out to the PHY, and the fixed RMII pins
19 TXD0, 21 TX_EN, 22 TXD1, 25 RXD0, 26 RXD1, 27 CRS_DV and 0; GPIO 1/3 are the USB
serial console (REPL, deploy), 6-11 the module's flash, 39 the board's power sense and
34 its button BUT1. What is left: 2, 4, 5, 13, 14, 15, 16, 32, 33 (in and out) and
35, 36 (input only), so this board makes do with fewer lines than the RP2040's:
- ADE7880 on HSPI (id 1) through the GPIO matrix: 14 SCK, 13 MOSI, 35 MISO (an input,
  so an input-only pin serves), 5 /SS; IRQ1 on 36 (SAG: the supply-failure signal the
  counters depend on). No IRQ0 (the driver polls STATUS0 for the window end) and no
  RESET line (the chip's own power-on reset).
- RS485 A on UART1 (4 TX, 15 RX), B on UART2 (33 TX, 32 RX), through transceivers that
  switch direction by themselves (no DE line; drivers/rs485.py de=None).
- Status LED red/green: 16 green, 2 red. GPIO 2 is a strapping pin that must be low or
  floating to enter the serial boot loader: the LED's resistor to GND keeps it low.
  The network LED is the PHY's own green link LED on the board (hardware); the bus
  LED has no line left. Both are pinless LED objects here (they keep the colour).
- Strapping pins 0, 2, 5, 12, 15 drive nothing that matters at boot: 5 is /SS (idle
  high, its strap default), 15 is an RX input (the transceiver holds it high: the boot
  log stays on), 12 is the PHY power switch of the board itself.
"""
from boards.realboard import RealBoard

PINS = (
    ("eth_mdc", 23, "LAN8720 MDC, board-wired"),
    ("eth_mdio", 18, "LAN8720 MDIO, board-wired"),
    ("eth_power", 12, "LAN8720 power enable, board-wired"),
    ("eth_clk", 17, "RMII 50 MHz clock out, board-wired"),
    ("ade_sck", 14, "HSPI SCK"),
    ("ade_mosi", 13, "HSPI MOSI"),
    ("ade_miso", 35, "HSPI MISO, input only"),
    ("ade_cs", 5, "ADE7880 /SS, output (strapping pin, idle high)"),
    ("ade_irq1", 36, "ADE7880 IRQ1 (SAG), input only"),
    ("rs485a_tx", 4, "UART1 TX"),
    ("rs485a_rx", 15, "UART1 RX (strapping pin, input)"),
    ("rs485b_tx", 33, "UART2 TX"),
    ("rs485b_rx", 32, "UART2 RX"),
    ("led_status_g", 16, "status LED green, output"),
    ("led_status_r", 2, "status LED red, output (strapping pin, kept low)"),
    ("button", 34, "BUT1 on the board, input only, external pull-up"),
)
# GPIOs the RMII interface owns (ESP32 EMAC: fixed pins) beside the ones in PINS.
RMII_FIXED = (0, 19, 21, 22, 25, 26, 27)

UARTS = {"a": (1, "rs485a"), "b": (2, "rs485b")}
ADE_SPI = 1            # HSPI
ADE_BAUD = 2000000     # ADE7880 SPI: SCLK at most 2.5 MHz (datasheet timing table)
PHY_ADDR = 0           # the ESP32-POE's LAN8720 strap address


class PinlessLED:
    """An LED the board has no line for: keeps the colour (value()), shows nothing."""

    def __init__(self):
        self._colour = 0

    def value(self, colour=None):
        if colour is None:
            return self._colour
        self._colour = colour

    def on(self):
        self._colour = 1

    def off(self):
        self._colour = 0


class Board(RealBoard):
    name = "esp32-lan8720"
    PINS = PINS
    UARTS = UARTS

    def __init__(self):
        from machine import Pin, SPI
        from drivers.led import BiLED
        RealBoard.__init__(self)
        p = self.pin
        self.leds = {"status": BiLED(Pin(p("led_status_g"), Pin.OUT, value=0),
                                     Pin(p("led_status_r"), Pin.OUT, value=0)),
                     "network": PinlessLED(), "bus": PinlessLED()}
        self.button = Pin(p("button"), Pin.IN)      # GPIO34: no internal pull-up
        self.power_fail = None                      # the ADE7880's SAG on IRQ1
        self.ade_cs = Pin(p("ade_cs"), Pin.OUT, value=1)
        self.ade_irq1 = Pin(p("ade_irq1"), Pin.IN)
        # ADE7880 SPI: SCLK idle high, data taken on the rising edge (mode 3)
        self.spi = SPI(ADE_SPI, baudrate=ADE_BAUD, polarity=1, phase=1,
                       sck=Pin(p("ade_sck")), mosi=Pin(p("ade_mosi")),
                       miso=Pin(p("ade_miso")))

    def ade7880(self, **kw):
        from drivers.ade7880 import ADE7880
        return ADE7880(self.spi, self.ade_cs, irq0=None, irq1=self.ade_irq1, **kw)

    def rs485(self, name, baud, parity, stop):
        from drivers.rs485 import RS485
        return RS485(self._uart(name, baud, stop)[0], None, baud, parity, stop)

    def block_device(self):
        from esp32 import Partition
        return Partition.find(Partition.TYPE_DATA, label="vfs")[0]

    def _nic(self):
        import network
        from machine import Pin
        p = self.pin
        return network.LAN(mdc=Pin(p("eth_mdc")), mdio=Pin(p("eth_mdio")),
                           power=Pin(p("eth_power")), phy_type=network.PHY_LAN8720,
                           phy_addr=PHY_ADDR, ref_clk=Pin(p("eth_clk")),
                           ref_clk_mode=Pin.OUT)
