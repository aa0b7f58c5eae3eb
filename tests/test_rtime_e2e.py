"""Clock, tariffs and demand over Modbus on the host run (firmware/regmaps/records.py):
pymodbus reads the block at 0xC800, the time write needs the config unlock, and the
per-class counters survive a restart and add up to the KSEM total (register 512)."""
import datetime
import time
import zoneinfo

import json

from test_config_e2e import SCN, code, read, start as _start, tcp, unlock, settle


def start(tmp):
    # The records (clock, tariffs, demand) are off by default: on here.
    cfg = tmp / "records-on.json"
    cfg.write_text(json.dumps({"records": {"enabled": True}}))
    return _start(tmp, "--config", str(cfg))

CLK, CLASS0, CORR0 = 0xC800, 0xC820, 0xC900


def u(regs):
    v = 0
    for r in regs:
        v = (v << 16) | r
    return v


def test_clock_registers_time_write_and_class_counters(tmp_path):
    h = start(tmp_path)
    try:
        c = tcp(h)
        r = read(c, CLK, 0x1B)
        host = int(time.time())
        assert r[2] == 1 and r[3] == 1                    # valid, from the board's RTC
        assert abs(u(r[0:2]) - host) <= 3
        loc = datetime.datetime.fromtimestamp(u(r[0:2]), zoneinfo.ZoneInfo("Europe/Paris"))
        assert r[6:13] == [loc.year, loc.month, loc.day, loc.hour, loc.minute, loc.second,
                           loc.weekday()]
        assert r[13] == loc.utcoffset().total_seconds() // 60
        assert r[14:16] == [0, 1] and r[0x15] == 10       # class BASE, period 10 min
        # the time write: locked -> 01; unlocked -> set, source Modbus (3)
        t = 1798761600                                     # 2027-01-01T00:00:00Z
        words = [t >> 16, t & 0xFFFF]
        assert code(c.write_registers(CLK, words, device_id=1)) == 1
        assert unlock(c, h.password) == 0
        assert code(c.write_registers(CLK, [0, 5], device_id=1)) == 3     # 1970
        assert code(c.write_registers(CLK + 1, [5], device_id=1)) == 2
        assert code(c.write_registers(CLK, words, device_id=1)) == 0
        r = read(c, CLK, 14)
        assert t <= u(r[0:2]) <= t + 3 and r[3] == 3
        assert r[6:10] == [2027, 1, 1, 1]                  # CET: 01:xx local
        # the meter counts under load: class 0 holds what the total counted
        time.sleep(3)
        a = read(c, 512, 4)
        b = read(c, CLASS0, 24)
        assert u(b[0:4]) > 0 and abs(u(a) - u(b[0:4])) <= u(a) // 50 + 50
        assert read(c, CLASS0 + 24, 24) == [0] * 24        # class 1 never in force
        c.close()
    finally:
        h.stop()
    # restart on the same flash: the record is back, the sum still the total's
    h = start(tmp_path)
    try:
        c = tcp(h)
        time.sleep(2)
        a = u(read(c, 512, 4))
        b = u(read(c, CLASS0, 4))
        assert b > 0 and abs(a - b) <= a // 50 + 50
        c.close()
    finally:
        h.stop()
