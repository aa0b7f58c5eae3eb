"""The device's settings: stored config and secrets, password, staged writes, resets.

    from firmware.cfgstore import Settings, Slots, Access
    s = Settings(app, vfs)            # vfs: the mounted littlefs, or None (nothing kept)
    cfg = s.boot_config(given)        # given (e.g. --config) replaces the stored config
    supervisor.spawn("commit", s.stage.run)   # the commit task (firmware/staging.py)
    s.read(...), s.write(...)         # it is the config space (firmware/regmaps/device.py)

Config: /cfg/c0, /cfg/c1 (Slots, below), the whole validated config as JSON.
At boot a given config (the host run's --config) is validated, stored if it differs
from the stored one and used; without one the stored config is used (a stored config
the firmware no longer accepts is dropped for the defaults, event record_corrupt arg
3), else the defaults. Secrets: /cfg/s0, /cfg/s1 (Access's record; "{}"
or absent = the factory password).

Commands (register 0xC030, unlocked callers only; each an event device_reset, arg the
command): 1 restart (board.reset() once the reply is out), 2 network reset (DHCP on,
as the button's short-long), 3 password reset (the factory password, as the button's
long-short), 4 factory reset: the default config, the factory password, counters
zeroed (a new counter record) and the event log emptied, stored at once; the meter
runs on with them (no restart needed).

Records (Slots):
    cfg = Slots(vfs, "/cfg/c")       # the config (JSON of the validated config)
    data = cfg.load()                # newest valid payload (bytes) or None
    cfg.save(b'{"metering": ...}')   # into the older slot: old or new after any cut
    sec = Slots(vfs, "/cfg/s")       # the device secrets (Access)

Record (little-endian): b"CF", u8 version 1, u8 0, u32 seq, u32 payload length,
payload, u32 CRC-32 (firmware/persist.py, as zlib) of everything before it. Two slot
files <prefix>0 and <prefix>1; a save writes seq + 1 into the slot not holding the
newest record, so the newest valid record is always whole in the other one: a power cut
at any block write leaves the old record or the new one, never a mix (littlefs commits
a file at close; the CRC and the length catch what it does not). clear() removes both
(factory reset). The counters live beside them in /cnt (firmware/persist.py); the same
littlefs, mounted once by firmware/app.py.

Password (Access):
    acc = Access(clock, events, factory_password(serial, uid))
    acc.load(payload)             # the secrets record (Slots) or None
    code = acc.unlock(ctx, "AbcdEfgh")   # 0, 3 wrong password, 6 locked out
    acc.allowed(ctx)              # True while ctx is unlocked (renews the time)
    acc.change(old, new)          # 0, 3 or 6; then persist acc.dump()

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
import asyncio
import hashlib
import json
import struct
import time
from micropython import const

from firmware import config as config_mod
from firmware import events as ev      # its EV_ codes: one global here, not four
from firmware.persist import _crc_halves
from firmware.regmaps.device import DeviceSpace
from firmware.staging import ConfigStage

_HEAD = const(12)
_MAX = const(4096)        # a payload larger than this is not ours


def record(seq, payload):
    n = len(payload)
    buf = bytearray(_HEAD + n + 4)
    buf[0:4] = b"CF\x01\x00"
    struct.pack_into("<II", buf, 4, seq, n)
    buf[_HEAD:_HEAD + n] = payload
    ch, cl = _crc_halves(buf, _HEAD + n)
    struct.pack_into("<HH", buf, _HEAD + n, cl, ch)
    return buf


def parse(data):
    """(seq, payload) of a valid record, or None."""
    if len(data) < _HEAD + 4 or data[0:4] != b"CF\x01\x00":
        return None
    seq, n = struct.unpack_from("<II", data, 4)
    if n > _MAX or len(data) != _HEAD + n + 4:
        return None
    ch, cl = _crc_halves(data, _HEAD + n)
    if struct.unpack_from("<HH", data, _HEAD + n) != (cl, ch):
        return None
    return seq, bytes(data[_HEAD:_HEAD + n])


class Slots:
    def __init__(self, vfs, prefix):
        self.vfs = vfs
        self.prefix = prefix
        self.seq = 0
        self.slot = 1           # the slot holding the newest record
        self.corrupt = 0        # slots found torn or corrupt by the last load()
        d = prefix[:prefix.rfind("/")]
        if d:
            try:
                vfs.mkdir(d)
            except OSError:
                pass            # already there

    def _read(self, i):
        try:
            with self.vfs.open(self.prefix + str(i), "rb") as f:
                return f.read()
        except OSError:
            return None

    def load(self):
        best = None
        self.corrupt = 0
        for i in (0, 1):
            data = self._read(i)
            if data is None:
                continue
            r = parse(data)
            if r is None:
                self.corrupt += 1
            elif best is None or r[0] > best[0]:
                best = (r[0], i, r[1])
        if best is None:
            return None
        self.seq, self.slot = best[0], best[1]
        return best[2]

    def save(self, payload):
        """Write payload as the newest record (OSError when the flash refuses)."""
        i = 1 - self.slot
        buf = record(self.seq + 1, payload)
        with self.vfs.open(self.prefix + str(i), "wb") as f:
            f.write(buf)
        self.seq += 1
        self.slot = i

    def clear(self):
        for i in (0, 1):
            try:
                self.vfs.remove(self.prefix + str(i))
            except OSError:
                pass
        self.seq = 0
        self.slot = 1


# ---- the password ----------------------------------------------------------
_UNLOCK_MS = const(300000)       # 5 min
_MAX_FAILS = const(5)
_LOCK_BASE_MS = const(60000)     # 1 min
_LOCK_MAX_MS = const(3600000)    # 1 h
_PW_MAX = const(32)
_ROUNDS = const(64)
_UPPER = const(b"ABCDEFGHJKLMNPQRSTUVWXYZ")     # consts: no global slot
_LOWER = const(b"abcdefghijkmnopqrstuvwxyz")
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
        self.events.add(now, ev.EV_UNLOCK_FAILED, self.fails)
        if self.fails >= _MAX_FAILS:
            ms = self.lock_base_ms << self.level
            if ms >= self.lock_max_ms:
                ms = self.lock_max_ms
            else:
                self.level += 1
            self.until = time.ticks_add(now, ms)
            self.fails = 0
            self.events.add(now, ev.EV_LOCKED_OUT, min(255, (ms + 59999) // 60000))
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


# ---- the settings owner ----------------------------------------------------
# Commands (register 0xC030, firmware/regmaps/device.py) and job codes of the stage.
_SAVE_SECRETS = const(0)   # persist the secrets record
_CMD_RESTART = const(1)
_CMD_NETWORK_RESET = const(2)
_CMD_PASSWORD_RESET = const(3)
_CMD_FACTORY_RESET = const(4)
_RESTART_DELAY_MS = const(200)    # the reply to the restart command goes out first


def _factory(board, cfg):
    """The factory password: the serial and the board's unique id."""
    return factory_password(cfg["identity"]["serial"],
                            board.unique_id() if hasattr(board, "unique_id") else b"")


class Settings(DeviceSpace):
    def __init__(self, app, vfs, **timing):     # unlock_ms, lock_base_ms (tests)
        self.app = app
        self.cfgs = Slots(vfs, "/cfg/c") if vfs is not None else None
        self.secs = Slots(vfs, "/cfg/s") if vfs is not None else None
        self.stage = ConfigStage(app, self._persist, self._job)
        self.access = Access(app.board.clock, app.events, "", **timing)
        self.note = ""            # how the config was chosen (the host run prints it)

    def boot_config(self, given=None):
        board = self.app.board
        stored = None
        data = self.cfgs.load() if self.cfgs is not None else None
        if data is not None:
            try:
                stored = config_mod.validate(json.loads(data), board.CALIBRATION)
            except ValueError as e:
                self.app.events.add(board.clock.ticks_ms(), ev.EV_RECORD_CORRUPT, 3)
                self.note = "stored config dropped (%s)" % e
        if given is not None:
            cfg = config_mod.validate(given, board.CALIBRATION)
            if self.cfgs is not None and cfg != stored:
                self.cfgs.save(json.dumps(cfg).encode())
                self.note = "given config stored, replacing the stored one"
            elif self.cfgs is not None:
                self.note = "given config equals the stored one"
        elif stored is not None:
            cfg = stored
            self.note = "stored config used"
        else:
            cfg = config_mod.validate(None, board.CALIBRATION)
            self.note = self.note or "defaults"
        self.access.factory = _factory(board, cfg)
        if self.secs is not None:
            try:
                self.access.load(self.secs.load())
            except (ValueError, KeyError):
                self.app.events.add(board.clock.ticks_ms(), ev.EV_RECORD_CORRUPT, 4)
        return cfg

    def command(self, code, ctx=None):
        """A command register write: 0, 03 (no such command) or 06 (queue full)."""
        if not _CMD_RESTART <= code <= _CMD_FACTORY_RESET:
            return 3
        r = self.stage.call(code, ctx)
        if r == 0:
            self.app.events.add(self.app.board.clock.ticks_ms(), ev.EV_DEVICE_RESET, code)
        return r

    # ---- the button (app.password_reset / app.network_reset) ----
    def password_reset(self):
        self.access.reset()
        self.stage.call(_SAVE_SECRETS)

    def network_reset(self):
        self.stage.stage({"network": {"dhcp": True}})

    # ---- the commit task (firmware/staging.py) ----
    async def _persist(self, cfg):
        if self.cfgs is not None:
            self.cfgs.save(json.dumps(cfg).encode())

    async def _job(self, code):
        app = self.app
        if code == _SAVE_SECRETS:
            if self.secs is not None:
                self.secs.save(self.access.dump())
        elif code == _CMD_RESTART:
            await asyncio.sleep_ms(_RESTART_DELAY_MS)
            app.board.reset()
        elif code == _CMD_NETWORK_RESET:
            self.network_reset()
        elif code == _CMD_PASSWORD_RESET:
            self.password_reset()
        elif code == _CMD_FACTORY_RESET:
            cfg = config_mod.validate(None, app.board.CALIBRATION)
            await self._persist(cfg)
            await app.apply_config(cfg)
            self.access.reset()
            self.access.factory = _factory(app.board, cfg)
            if self.secs is not None:
                self.secs.clear()
            e = app.meter.energy
            for i in range(len(e.hi)):
                e.restore(i, 0)
            if app.store is not None:
                app.store.persist()      # a newer record of zeros wins at the next boot
            if app.events.store is not None:   # the event log on flash
                app.events.store.clear()
            # The new log opens with the reset that cleared the old one.
            app.events.add(app.board.clock.ticks_ms(), ev.EV_DEVICE_RESET, code)
