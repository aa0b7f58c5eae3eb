"""Press the sim board's reset button from a script: the control file RUN_DIR/button.

    from boards.sim.button_ctl import ButtonControl
    asyncio.create_task(ButtonControl(board, run_dir).run())    # the host run starts it

A script writes one line of words to RUN_DIR/button (best written to a temporary name
and renamed, so a half-written file is never read). Within 50 ms the run reads it,
deletes the file (that is the acknowledgement: wait for it to vanish) and plays it on
board.button (active low, as the contract says):

    short        press 0.5 s, then release
    long         press 4 s, then release
    restart      press 7 s, then release
    press S      press S seconds (a decimal, 0 < S <= 600), then release
    wait S       stay released S seconds
    press        press and keep it pressed
    release      release it

Two timed presses with no "wait" between them get 0.5 s released between them. So
"long short" resets the password, "short long" the network settings, "restart" or
"press 6.5" restarts, and "press 2.9 short" or "long wait 1.1 short" do nothing.
A new command replaces one still playing (the button is released first). The run
prints "BUTTON <line>" when it takes a command, "BUTTON done" once it has played, and
"BUTTON ERROR <reason>" (nothing played) for a line it refuses.

Timing follows the board clock in 10 ms steps; the firmware samples the button every
10 ms, so a "press 3.0" is seen as 3.0 s give or take 20 ms: test the edges of the
button's bands with some margin (firmware/button.py: long is 3.0 .. 5.0 s).
"""
import asyncio
import os
from time import ticks_add, ticks_diff

FILE = "button"
SHORT_MS = 500
LONG_MS = 4000
RESTART_MS = 7000
GAP_MS = 500
MAX_S = 600


def _seconds(word, what):
    try:
        s = float(word)
    except ValueError:
        s = -1.0
    if not 0 < s <= MAX_S:
        raise ValueError("%s needs seconds in (0, %d], got %r" % (what, MAX_S, word))
    return int(s * 1000 + 0.5)


def _release(steps, ms):
    # Released for ms: merged into a bare release just before it.
    if steps and steps[-1] == (1, 0):
        steps[-1] = (1, ms)
    else:
        steps.append((1, ms))


def parse(line):
    """The steps of a command line: a list of (level, hold_ms), level 0 = pressed.
    ValueError naming the word for anything else."""
    words = line.split()
    if not words:
        raise ValueError("empty command")
    steps = []
    timed = False       # the previous word was a timed press: a gap goes before the next
    i = 0
    while i < len(words):
        w = words[i]
        ms = None
        if w in ("short", "long", "restart"):
            ms = {"short": SHORT_MS, "long": LONG_MS, "restart": RESTART_MS}[w]
        elif w == "press" and i + 1 < len(words) and words[i + 1][:1] in "0123456789.":
            i += 1
            ms = _seconds(words[i], "press")
        elif w == "press":
            steps.append((0, 0))
            timed = False
        elif w == "release":
            steps.append((1, 0))
            timed = False
        elif w == "wait":
            if i + 1 >= len(words):
                raise ValueError("wait needs seconds")
            i += 1
            _release(steps, _seconds(words[i], "wait"))
            timed = False
        else:
            raise ValueError("unknown word %r (short, long, restart, press [S], "
                             "wait S, release)" % w)
        if ms is not None:
            if timed:
                _release(steps, GAP_MS)
            steps.append((0, ms))
            steps.append((1, 0))
            timed = True
        i += 1
    return steps


class ButtonControl:
    def __init__(self, board, run_dir):
        self.pin = board.button
        self.clock = board.clock
        self.path = "%s/%s" % (run_dir, FILE)
        self.steps = []
        self.i = 0
        self.t = 0

    def take(self):
        """The command waiting in the control file (file removed), or None."""
        try:
            with open(self.path) as f:
                line = f.read()
        except OSError:
            return None
        try:
            os.remove(self.path)
        except OSError:
            pass
        return line.strip()

    def start(self, line, now):
        try:
            steps = parse(line)
        except ValueError as e:
            print("BUTTON ERROR %s" % e)
            return False
        print("BUTTON %s" % line)
        self.pin.value(1)
        self.steps = steps
        self.i = 0
        self._enter(now)
        return True

    def _enter(self, now):
        self.pin.value(self.steps[self.i][0])
        self.t = now

    def advance(self, now):
        """Move through the steps whose hold time is over."""
        while self.i < len(self.steps):
            level, ms = self.steps[self.i]
            if ticks_diff(now, self.t) < ms:
                return
            self.i += 1
            if self.i == len(self.steps):
                print("BUTTON done")
                return
            self.t = now if ms == 0 else ticks_add(self.t, ms)   # durations stay exact
            self.pin.value(self.steps[self.i][0])

    async def run(self, period_ms=10):
        n = 0
        while True:
            now = self.clock.ticks_ms()
            if n % 5 == 0:
                line = self.take()
                if line is not None:
                    self.start(line, now)
            n += 1
            self.advance(now)
            await asyncio.sleep_ms(period_ms)
