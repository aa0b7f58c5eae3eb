"""The reset button: debounced presses classified into the KSEM sequences.

    from firmware.button import Button, A_RESTART, A_PASSWORD, A_NETWORK
    b = Button()
    action = b.update(pressed, now_ms)     # one sample; 0 or an action code
    asyncio.create_task(b.run(board.button, clock, on_action))   # polls every 10 ms

KSEM manual 6.1/6.2 (digest section 3) and the tolerances chosen here:

  restart    held >= 6.0 s; acted on at the 6 s mark while still held (the user
             sees the device restart and lets go; "at least 6 s", manual 6.2)
  password   long then short, the second press starting <= 1.0 s after the first
             ended: device password back to the factory one
  network    short then long, gap <= 1.0 s: network settings reset (DHCP on)

  short      0.2 .. 1.5 s held (the manual's "about 0.5 s")
  long       3.0 .. 5.0 s held (2.9 s is not long; 5.0 s still is)
  ignored    anything else: under 0.2 s, 1.5 .. 3.0 s, over 5.0 and under 6.0 s
             (manual: 5-6 s does nothing), a single press, two of a kind, three or
             more presses in a row, or a gap over 1.0 s (the presses then count as
             separate sequences, each of which does nothing alone)

Debounce: a level counts once it has held for 30 ms (_DEBOUNCE_MS); a press or release
is timed from the first sample at its new level, so durations and gaps are exact to
one poll period (10 ms). A sequence is decided when 1.0 s has passed after the last
release with no new press started (the gap time-out): that way long-short-short is
seen as three presses and ignored, never as long-short. The password and network
resets are confirmed by the status LED's two blinks (firmware/leds.py); acting on
them (restoring the password, turning DHCP on) belongs to the config owner.

Pure integer state, no allocation per sample; time is ticks_ms (ticks_diff).
"""
import asyncio
from time import ticks_diff
from micropython import const

_A_NONE = const(0)
A_RESTART = const(1)
A_PASSWORD = const(2)
A_NETWORK = const(3)
ACTION_NAMES = ("none", "restart", "password_reset", "network_reset")

_DEBOUNCE_MS = const(30)
_SHORT_MIN_MS = const(200)
_SHORT_MAX_MS = const(1500)
_LONG_MIN_MS = const(3000)
_LONG_MAX_MS = const(5000)
RESTART_MS = const(6000)
_GAP_MAX_MS = const(1000)
_POLL_MS = const(10)

_BAD = const(0)
_SHORT = const(1)
_LONG = const(2)


def classify(held_ms):
    """_SHORT, _LONG or _BAD for a press held this long (restart is handled while held)."""
    if _SHORT_MIN_MS <= held_ms <= _SHORT_MAX_MS:
        return _SHORT
    if _LONG_MIN_MS <= held_ms <= _LONG_MAX_MS:
        return _LONG
    return _BAD


class Button:
    def __init__(self):
        self.pressed = False       # debounced level
        self._cand = False         # a new raw level is being debounced
        self._cand_t = 0
        self._press_t = 0
        self._rel_t = 0
        self._fired = False        # restart already fired during this press
        self._n = 0                # presses in the current sequence (saturates at 3)
        self._c0 = _BAD
        self._c1 = _BAD
        self.ignored = 0           # sequences that did nothing (for tests / diagnostics)

    def update(self, pressed, now):
        """Feed one sample (True while the button is down) taken at ticks_ms now.
        Returns _A_NONE or the action to carry out now."""
        pressed = bool(pressed)
        if pressed != self.pressed:
            if not self._cand:
                self._cand = True
                self._cand_t = now
            elif ticks_diff(now, self._cand_t) >= _DEBOUNCE_MS:
                self._cand = False
                self.pressed = pressed
                a = self._edge(pressed, self._cand_t)
                if a:
                    return a
        else:
            self._cand = False     # a bounce shorter than the debounce time
        return self._timers(now)

    def _edge(self, pressed, t):
        if pressed:
            a = _A_NONE
            if self._n and ticks_diff(t, self._rel_t) > _GAP_MAX_MS:
                a = self._decide()          # the gap was too long: close the old one
            self._press_t = t
            return a
        if self._fired:                     # the restart press ends: nothing more
            self._fired = False
            self._n = 0
            return _A_NONE
        c = classify(ticks_diff(t, self._press_t))
        if self._n == 0:
            self._c0 = c
        elif self._n == 1:
            self._c1 = c
        if self._n < 3:
            self._n += 1
        self._rel_t = t
        return _A_NONE

    def _timers(self, now):
        if self.pressed:
            # A release being debounced ended the hold at its first sample.
            end = self._cand_t if self._cand else now
            if not self._fired and ticks_diff(end, self._press_t) >= RESTART_MS:
                self._fired = True
                self._n = 0
                return A_RESTART
        elif self._n and not self._cand and ticks_diff(now, self._rel_t) > _GAP_MAX_MS:
            return self._decide()
        return _A_NONE

    def _decide(self):
        n, c0, c1 = self._n, self._c0, self._c1
        self._n = 0
        if n == 2 and c0 == _LONG and c1 == _SHORT:
            return A_PASSWORD
        if n == 2 and c0 == _SHORT and c1 == _LONG:
            return A_NETWORK
        self.ignored += 1
        return _A_NONE

    async def run(self, pin, clock, on_action, period_ms=_POLL_MS):
        """Poll pin (Pin-like, value() 0 while pressed: board contract) and call
        on_action(code) for each recognised action."""
        while True:
            a = self.update(pin.value() == 0, clock.ticks_ms())
            if a:
                on_action(a)
            await asyncio.sleep_ms(period_ms)
