"""LED drivers: one colour on one pin, or a bi-colour (red/green) LED on two pins.

    from machine import Pin
    from drivers.led import LED, BiLED
    run = LED(Pin(25, Pin.OUT))                         # lit for any colour but LED_OFF
    st = BiLED(Pin(6, Pin.OUT), Pin(7, Pin.OUT))         # green pin, red pin
    st = BiLED(g, r, active_high=False)                 # common anode: pins sink current
    st.value(LED_ORANGE)                                # both dies lit: orange/yellow
    st.value()                                          # -> the colour shown now
    st.on(); st.off()                                   # Pin-like: green / off

Colours are the board contract's (boards/contract.py): LED_OFF 0, LED_GREEN 1, LED_RED 2,
LED_ORANGE 3. The numbers are chosen so bit 0 is the green die and bit 1 the red one:
a three-leg bi-colour LED (common cathode or common anode) shows orange with both
dies on. A two-leg anti-parallel LED would need the pins alternated to show orange;
that is not supported here. value() never allocates: the LED task calls it every tick.
"""
from micropython import const

_GREEN_BIT = const(1)
_RED_BIT = const(2)
_COLOURS = const(4)


def _check(colour):
    if not 0 <= colour < _COLOURS:
        raise ValueError("LED colour must be 0..3 (off, green, red, orange), got %r"
                         % (colour,))


class LED:
    """A single-colour LED: any colour other than LED_OFF lights it."""

    def __init__(self, pin, active_high=True):
        self.pin = pin
        self._on = 1 if active_high else 0
        self._colour = 0
        pin.value(1 - self._on)

    def value(self, colour=None):
        if colour is None:
            return self._colour
        _check(colour)
        self._colour = colour
        self.pin.value(self._on if colour else 1 - self._on)

    def on(self):
        self.value(_GREEN_BIT)

    def off(self):
        self.value(0)


class BiLED:
    """A red/green LED on two pins; orange is both dies lit."""

    def __init__(self, green, red, active_high=True):
        self.green = green
        self.red = red
        self._on = 1 if active_high else 0
        self._colour = 0
        green.value(1 - self._on)
        red.value(1 - self._on)

    def value(self, colour=None):
        if colour is None:
            return self._colour
        _check(colour)
        self._colour = colour
        on = self._on
        self.green.value(on if colour & _GREEN_BIT else 1 - on)
        self.red.value(on if colour & _RED_BIT else 1 - on)

    def on(self):
        self.value(_GREEN_BIT)        # Pin-like: "on" is the normal colour, green

    def off(self):
        self.value(0)
