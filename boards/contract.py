"""The board contract: what a board module gives the firmware. One place, checked.

    from boards.contract import check
    missing = check(board)        # [] when the board provides everything below

A board module (boards/<name>/board.py) is the only place that knows pins, buses and
parts. It exposes one object (SimBoard for the host; Board in boards/rp2040_w5500
and boards/esp32_lan8720, on boards/realboard.py) with:

attributes
  name            str, the board's name ("sim", "rp2040-w5500", ...)
  clock           ticks_ms(), ticks_us() (time.ticks_* domain, wrapping) and now_us()
                  (monotonic, never wraps) for the engine and the supervisor
  CALIBRATION     the analog front end's default calibration (config "calibration"
                  section): divider, CT and burden are the board's, so their constants
                  live here, not in firmware/
  DIRECT_MAX_A    rated current per line without external CTs (A): sizes map scale
                  factors and overload checks
  leds            {"status", "network", "bus"} -> LED objects: value(0/1) for a single
                  colour; a bi-colour LED takes value(colour) with colour in
                  LED_OFF/LED_GREEN/LED_RED/LED_ORANGE (drivers/ owns the LED driver)
  button          the reset button input, Pin-like: value() 0 while pressed
  power_fail      Pin-like input or None: 0 when the supply is failing (boards without
                  a dedicated input detect it from the ADE7880's L1 voltage instead)
  bus_overload    optional (may be absent): Pin-like input, 0 while the RS485
                  connector's 5 V output is overloaded (bus LED red, firmware/leds.py)
  overrun_out     optional (may be absent): Pin-like output, set to 1 while the demand
                  overrun warning is closed (firmware/demand.py; Enedis ICE contact)

methods
  ade7880(**kw)   the drivers.ade7880.ADE7880 on the board's SPI bus with its CS, IRQ0
                  (and reset) pins; kw are the driver's configure() arguments
  rs485(name, baud, parity, stop)
                  name "a" or "b": a drivers.rs485.RS485 (UART + DE pin) or None when
                  the board lacks that port
  block_device()  the flash for littlefs (VfsLfs2), extended block protocol
  filesystem()    optional: the littlefs the port already mounted at "/" (its _boot.py),
                  as firmware.rootfs.RootFs("/"); when present the App uses it and never
                  mounts block_device() a second time (two littlefs on one flash corrupt
                  it). Absent or None: the App mounts block_device() (the sim board)
  watchdog(timeout_ms)
                  machine.WDT(timeout=...) on a board; a stand-in with feed() on the sim
                  board. Created only once the firmware is up: it cannot be stopped.
  time_utc()      calendar time source: UTC seconds since 1970 or None when unknown
                  (RTC not set); SNTP and Modbus set it on boards (later step)
  network(cfg)    bring up Ethernet with cfg["network"] (DHCP or static, hostname from
                  the serial: firmware/config.py hostname) and return an object with
                  isconnected() (the network LED follows it), or None where the host's
                  own stack is used (sim)
  reset_cause()    why the device (re)started: machine.reset_cause() on a board (port
                  constants: 1 power on on rp2 and esp32, 3 watchdog, ...); the sim
                  board reports RESET_CAUSE (1, power on). Logged with the boot event.
  reset()         restart the device: machine.reset() on a board; the sim board counts
                  and prints the request (and ends the run if told to); called by the
                  reset button's restart action (firmware/button.py)
  unique_id()     optional: machine.unique_id() bytes; with the serial it derives the
                  factory password (firmware/cfgstore.py); b"" when absent
  tasks()         coroutine functions the board needs running (the simulator's clock
                  tick on the sim board; [] on real boards); the app supervises them

The firmware uses nothing else of a board; boards/sim implements all of it (checked by
tests/test_contract.py).
"""

ATTRIBUTES = ("name", "clock", "CALIBRATION", "DIRECT_MAX_A", "leds", "button",
              "power_fail")
METHODS = ("ade7880", "rs485", "block_device", "watchdog", "time_utc", "network", "tasks",
           "reset", "reset_cause")
LEDS = ("status", "network", "bus")
CLOCK = ("ticks_ms", "ticks_us", "now_us")

LED_OFF = 0
LED_GREEN = 1
LED_RED = 2
LED_ORANGE = 3


def check(board):
    """Names of what the board lacks (empty list: it meets the contract)."""
    missing = []
    for a in ATTRIBUTES:
        if not hasattr(board, a):
            missing.append(a)
    for m in METHODS:
        if not callable(getattr(board, m, None)):
            missing.append(m + "()")
    clock = getattr(board, "clock", None)
    for m in CLOCK:
        if clock is not None and not callable(getattr(clock, m, None)):
            missing.append("clock." + m + "()")
    leds = getattr(board, "leds", None)
    if leds is not None:
        for n in LEDS:
            if n not in leds:
                missing.append("leds[%r]" % n)
    return missing
