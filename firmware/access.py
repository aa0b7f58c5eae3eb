"""The device password: unlock per caller, lockout after wrong passwords, changes.

    from firmware.access import Access, factory_password
    acc = Access(clock, events, factory_password(serial, uid))
    acc.load(payload)             # the secrets record (firmware/cfgstore.py) or None
    code = acc.unlock(ctx, "AbcdEfgh")   # 0, 3 wrong password, 6 locked out
    acc.allowed(ctx)              # True while ctx is unlocked (renews the time)
    acc.change(ctx, old, new)     # 0 or 3; then persist acc.dump()

Unlock: the right password opens write access for that caller only (one TCP
connection or one RTU port: a pdu.Caller, whose state holds [deadline, epoch]) for
unlock_ms (5 min), renewed by each accepted write; a new TCP connection starts locked.
A password change or reset bumps the epoch: every open unlock ends.

Lockout: 5 wrong passwords in a row (unlock or change) refuse unlock for lock_base_ms
(1 min), doubling with each further lockout up to lock_max_ms (1 h); attempts during a
lockout are refused without being checked and do not restart it; a right password
resets the count and the delay. Each failure is an event (unlock_failed, arg the
count; locked_out, arg the minutes). The state is RAM only: a restart (power or the
button: physical access, or a command that needed an unlock) clears it.

Passwords as the KSEM (manual 6.3): at least 8 letters, upper and lower case, letters
only; here at most 32 (16 registers). Stored as a salted, iterated SHA-256, never
readable. The factory password is derived per device from the serial and the board's
unique id (10 letters, upper and lower case; no I, O, l to read apart): the nameplate
password of a KSEM. The derivation is public, so the unique id must stay off the
network (it is: no register serves it).
"""
import hashlib
import json
import time
from micropython import const

from firmware.events import EV_UNLOCK_FAILED, EV_LOCKED_OUT

_UNLOCK_MS = const(300000)       # 5 min
_MAX_FAILS = const(5)
_LOCK_BASE_MS = const(60000)     # 1 min
_LOCK_MAX_MS = const(3600000)    # 1 h
_PW_MAX = const(32)
_ROUNDS = const(64)
_UPPER = b"ABCDEFGHJKLMNPQRSTUVWXYZ"
_LOWER = b"abcdefghijkmnopqrstuvwxyz"
_EXC_VALUE = const(3)      # wrong password (Modbus Application Protocol 7)
_EXC_BUSY = const(6)       # locked out: "retry later"


def factory_password(serial, uid):
    h = hashlib.sha256(b"openmeter-factory-password\x00" + str(serial).encode()
                       + b"\x00" + bytes(uid)).digest()
    out = bytearray(10)
    both = _UPPER + _LOWER
    for i in range(10):
        tab = _UPPER if i % 5 == 0 else (_LOWER if i % 5 == 1 else both)
        out[i] = tab[h[i] % len(tab)]
    return out.decode()


def rule_error(pw):
    """None if pw is a valid password, else the reason."""
    if not isinstance(pw, str) or not 8 <= len(pw) <= _PW_MAX:
        return "8 to %d letters" % _PW_MAX
    up = lo = False
    for ch in pw:
        if "A" <= ch <= "Z":
            up = True
        elif "a" <= ch <= "z":
            lo = True
        else:
            return "letters only"
    return None if up and lo else "upper and lower case"


def pw_hash(salt, pw):
    d = salt + pw.encode()
    for _ in range(_ROUNDS):
        d = hashlib.sha256(d + salt).digest()
    return d


def _same(a, b):
    if len(a) != len(b):
        return False
    x = 0
    for i in range(len(a)):
        x |= a[i] ^ b[i]
    return x == 0


class Access:
    def __init__(self, clock, events, factory, unlock_ms=_UNLOCK_MS,
                 lock_base_ms=_LOCK_BASE_MS, lock_max_ms=_LOCK_MAX_MS):
        self.clock = clock
        self.events = events
        self.factory = factory
        self.unlock_ms = unlock_ms
        self.lock_base_ms = lock_base_ms
        self.lock_max_ms = lock_max_ms
        self.salt = None          # None: the factory password holds
        self.hash = None
        self.fails = 0            # wrong passwords since the last right one or lockout
        self.level = 0            # lockouts in a row
        self.until = None         # ticks_ms when the lockout ends
        self.epoch = 0

    # ---- the secrets record ----
    def load(self, payload):
        if payload:
            d = json.loads(payload)
            self.salt = bytes.fromhex(d["salt"])
            self.hash = bytes.fromhex(d["hash"])

    def dump(self):
        if self.salt is None:
            return b"{}"
        return json.dumps({"salt": self.salt.hex(), "hash": self.hash.hex()}).encode()

    def lock_left_ms(self):
        if self.until is None:
            return 0
        left = time.ticks_diff(self.until, self.clock.ticks_ms())
        if left <= 0:
            self.until = None
            return 0
        return left

    def attempt(self, pw):
        """0 right, _EXC_VALUE wrong (counted), _EXC_BUSY locked out (not checked)."""
        if self.lock_left_ms():
            return _EXC_BUSY
        if (_same(pw.encode(), self.factory.encode()) if self.salt is None
                else _same(pw_hash(self.salt, pw), self.hash)):
            self.fails = 0
            self.level = 0
            return 0
        self.fails += 1
        now = self.clock.ticks_ms()
        self.events.add(now, EV_UNLOCK_FAILED, self.fails)
        if self.fails >= _MAX_FAILS:
            ms = self.lock_base_ms << self.level
            if ms >= self.lock_max_ms:
                ms = self.lock_max_ms
            else:
                self.level += 1
            self.until = time.ticks_add(now, ms)
            self.fails = 0
            self.events.add(now, EV_LOCKED_OUT, min(255, (ms + 59999) // 60000))
        return _EXC_VALUE

    # ---- per caller ----
    def unlock(self, ctx, pw):
        code = self.attempt(pw)
        if code == 0 and ctx is not None:
            ctx.state = [time.ticks_add(self.clock.ticks_ms(), self.unlock_ms), self.epoch]
        return code

    def allowed(self, ctx):
        """Is ctx unlocked? Renews its time when it is."""
        st = ctx.state if ctx is not None else None
        if not isinstance(st, list) or st[1] != self.epoch:
            return False
        now = self.clock.ticks_ms()
        if time.ticks_diff(st[0], now) <= 0:
            ctx.state = None
            return False
        st[0] = time.ticks_add(now, self.unlock_ms)
        return True

    # ---- changes ----
    def change(self, old, new):
        """0, _EXC_VALUE (old wrong or new breaks the rules), _EXC_BUSY (locked out)."""
        if rule_error(new) is not None:
            return _EXC_VALUE
        code = self.attempt(old)
        if code:
            return code
        try:
            from os import urandom
            self.salt = urandom(16)
        except ImportError:     # a port without urandom (the wasm32 tests)
            self.salt = hashlib.sha256(b"%d" % self.clock.ticks_us()).digest()[:16]
        self.hash = pw_hash(self.salt, new)
        self.epoch += 1
        return 0

    def reset(self):
        """Back to the factory password; every unlock ends."""
        self.salt = self.hash = None
        self.epoch += 1
