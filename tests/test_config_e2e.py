"""Configuration over Modbus end to end: the host run, pymodbus masters (issue 10, item 4).

The truths are the Modbus exception codes of the Application Protocol v1.1b3 (section 7)
as pymodbus decodes them, values read back over the wire, and the host run restarted
on the same RUN_DIR (its flash image) without --config. Lockouts use the run's
--lockout-ms so that a doubling is seen in seconds.
"""
import time

import pytest
from pymodbus.client import ModbusSerialClient, ModbusTcpClient
from pymodbus.exceptions import ModbusIOException

from test_host_run import HostRun

SCN = {"frequency_hz": 50.0, "ct_primary_a": 400, "phases": {
    "L1": {"v_rms": 231.0, "i_rms": 300.0, "phi_deg": 10.0},
    "L2": {"v_rms": 229.5, "i_rms": 120.0, "phi_deg": 25.0},
    "L3": {"v_rms": 230.4, "i_rms": 60.0, "phi_deg": 318.0}}}

UNLOCK, PWCHG, CMD, LOCKOUT_S, PENDING = 0xC000, 0xC010, 0xC030, 0xC031, 0xC034
RS_A, RS_B, TCP_IDLE, PERSIST, HOST = 0xC040, 0xC050, 0xC063, 0xC078, 0xC0E0


def words(text, n):
    b = text.encode().ljust(2 * n, b"\0")
    return [(b[i] << 8) | b[i + 1] for i in range(0, 2 * n, 2)]


def text(regs):
    return b"".join(r.to_bytes(2, "big") for r in regs).rstrip(b"\0").decode()


def start(tmp, *extra):
    h = HostRun(tmp, SCN, extra=extra)
    h.wait_line(lambda l: l.startswith("READY"))
    h.password = h.wait_line(lambda l: l.startswith("FACTORY PASSWORD ")).split()[2]
    return h


def tcp(h):
    c = ModbusTcpClient("127.0.0.1", port=h.port, timeout=3, retries=0)
    assert c.connect()
    return c


def rtu_a(h, baud=38400):
    c = ModbusSerialClient(str(h.run_dir / "rs485-a"), baudrate=baud, parity="N",
                           stopbits=2, timeout=1, retries=0)
    assert c.connect()
    return c


def code(r):
    """0 for a normal response, else the exception code."""
    return r.exception_code if r.isError() else 0


def read(c, addr, n, dev=1):
    r = c.read_holding_registers(addr, count=n, device_id=dev)
    assert not r.isError(), r
    return r.registers


def settle(c, dev=1):
    """Wait until every accepted write is persisted and applied (pending 0)."""
    for _ in range(100):
        if read(c, PENDING, 1, dev) == [0]:
            return
        time.sleep(0.05)
    raise AssertionError("writes still pending")


def unlock(c, pw, dev=1):
    return code(c.write_registers(UNLOCK, words(pw, 16), device_id=dev))


@pytest.fixture
def run_dir(tmp_path):
    return tmp_path


def test_unlock_per_caller_validation_persistence_and_rs485_after_reply(run_dir):
    h = start(run_dir)
    try:
        a, b = tcp(h), tcp(h)
        r = rtu_a(h)
        assert read(a, RS_A, 7) == [1, 1, 1, 0, 38400, 0, 2]   # preset 1: PIKO IQ/PLENTICORE
        # Locked: 01 on every config register, whatever the transport.
        assert code(a.write_register(PERSIST, 120, device_id=1)) == 1
        assert code(r.write_register(PERSIST, 120, device_id=1)) == 1
        # Measurement registers are never writable: 02 (also once unlocked, below).
        assert code(a.write_register(0, 5, device_id=1)) == 2
        assert code(a.write_register(40070, 5, device_id=1)) == 2
        # Unlock on connection a only: b and the RTU port stay locked.
        assert unlock(a, "Wrongpassword") == 3
        assert unlock(a, h.password) == 0
        assert code(b.write_register(PERSIST, 120, device_id=1)) == 1
        assert code(r.write_register(PERSIST, 120, device_id=1)) == 1
        assert code(a.write_register(0, 5, device_id=1)) == 2
        assert code(a.write_registers(0xBFFF, [0, 0], device_id=1)) == 2   # crosses spaces
        assert code(a.write_register(0xC031, 0, device_id=1)) == 2           # read-only
        # Invalid values: 03, nothing changed.
        assert code(a.write_register(0xC070, 300, device_id=1)) == 3        # cycle_ms
        assert code(a.write_registers(TCP_IDLE, [1, 0x5181], device_id=1)) == 3  # 86401 s
        # One write over several keys is one change: address ok, baud bad -> nothing.
        assert code(a.write_registers(RS_B + 2, [5, 0, 1234], device_id=1)) == 3
        assert code(a.write_registers(HOST, words("bad_name", 16), device_id=1)) == 3
        assert read(a, RS_B, 7) == [2, 1, 247, 0, 19200, 1, 1]
        assert read(a, 0xC070, 1) == [200]
        assert read(a, TCP_IDLE, 2) == [0, 60]
        # Valid writes, read back once committed (over the other connection too).
        assert code(a.write_register(PERSIST, 120, device_id=1)) == 0
        assert code(a.write_registers(TCP_IDLE, [1, 0x5180], device_id=1)) == 0  # 86400 s
        assert code(a.write_registers(HOST, words("meter-roof", 16), device_id=1)) == 0
        settle(a)
        assert read(b, PERSIST, 1) == [120]
        assert read(b, TCP_IDLE, 2) == [1, 0x5180]
        assert text(read(b, HOST, 16)) == "meter-roof"
        # RS485 A: its own unlock; then address 1 -> 5 and 38400 -> 19200 in one write.
        # The reply comes from address 1 (pymodbus checks the address), sent with the
        # old settings; the next request works at the new address and baud, the old
        # address gets no answer. (A pty carries bytes, not a line rate: the address is
        # what shows on the wire; the baud read back shows the new setting.)
        assert unlock(r, h.password) == 0
        assert code(r.write_registers(RS_A + 2, [5, 0, 19200], device_id=1)) == 0
        r.close()
        r5 = rtu_a(h, baud=19200)
        resp = None
        for _ in range(40):                   # committed by the task, after the reply
            try:
                resp = r5.read_holding_registers(RS_A, count=7, device_id=5)
                break
            except ModbusIOException:         # not yet applied: nobody at address 5
                time.sleep(0.1)
        assert resp.registers == [0, 1, 5, 0, 19200, 0, 2]
        with pytest.raises(ModbusIOException):          # no answer at the old address
            r5.read_holding_registers(RS_A, count=1, device_id=1)
        r5.close()
        for c in (a, b):
            c.close()
    finally:
        h.stop()
    # The same RUN_DIR without --config: everything written is still there, and the
    # new connection starts locked.
    h = start(run_dir)
    try:
        c = tcp(h)
        assert read(c, PERSIST, 1) == [120]
        assert read(c, TCP_IDLE, 2) == [1, 0x5180]
        assert text(read(c, HOST, 16)) == "meter-roof"
        assert read(c, RS_A, 7) == [0, 1, 5, 0, 19200, 0, 2]
        assert code(c.write_register(PERSIST, 90, device_id=1)) == 1
        assert any(l.startswith("CONFIG stored config used") for l in h.lines)
        c.close()
    finally:
        h.stop()


def test_lockout_grows_and_password_change_and_resets(run_dir):
    h = start(run_dir, "--lockout-ms", "1500")
    try:
        c = tcp(h)
        for _ in range(5):
            assert unlock(c, "Wrongpassword") == 3
        # Locked out: even the right password is refused (06, retry later), unchecked.
        assert unlock(c, h.password) == 6
        assert read(c, LOCKOUT_S, 1) == [2]            # 1.5 s, rounded up
        time.sleep(1.7)
        assert unlock(c, "Wrongpassword") == 3         # over: wrong ones count again
        for _ in range(4):
            assert unlock(c, "Wrongpassword") == 3
        # The second lockout is twice as long: refused at 1.7 s, open after 3 s.
        time.sleep(1.7)
        assert unlock(c, h.password) == 6
        assert read(c, LOCKOUT_S, 1)[0] >= 1
        time.sleep(1.5)
        assert unlock(c, h.password) == 0
        assert read(c, 0xC032, 1) == [0]               # the count starts over
        # Password change: old + new in one write; rules as the KSEM.
        assert code(c.write_registers(PWCHG, words(h.password, 16) + words("short", 16),
                                      device_id=1)) == 3
        assert code(c.write_registers(PWCHG, words(h.password, 16)
                                      + words("RoofTopMeter", 16), device_id=1)) == 0
        settle(c)
        # The change ended every unlock; the old password no longer opens.
        assert code(c.write_register(PERSIST, 90, device_id=1)) == 1
        assert unlock(c, h.password) == 3
        assert unlock(c, "RoofTopMeter") == 0
        assert read(c, UNLOCK, 48) == [0] * 48          # never readable
        # Change settings, then a factory reset: defaults, factory password, counters 0.
        assert code(c.write_register(PERSIST, 90, device_id=1)) == 0
        settle(c)
        e0 = read(c, 512, 4)
        assert any(e0)
        assert code(c.write_register(CMD, 9, device_id=1)) == 3          # no such command
        assert code(c.write_register(CMD, 4, device_id=1)) == 0
        time.sleep(0.5)
        settle(tcp(h))
        d = tcp(h)
        assert read(d, PERSIST, 1) == [60]
        e1 = read(d, 512, 4)
        assert (e1[0], e1[1]) <= (e0[0], e0[1]) and e1 < e0
        assert unlock(d, "RoofTopMeter") == 3
        assert unlock(d, h.password) == 0
        # ... and the event log was cleared: it opens with the factory reset (code 27,
        # argument 4) as its event 1, then what happened since (the wrong password above:
        # unlock_failed, 24). Header: stored count, newest seq; select 1; window at 0xC410.
        assert code(d.write_registers(0xC406, [0, 1], device_id=1)) == 0
        head = read(d, 0xC400, 3)
        assert head[0] == (head[1] << 16 | head[2]) < 8, head
        recs = read(d, 0xC410, 8 * head[0])
        seqs = [recs[k] << 16 | recs[k + 1] for k in range(0, len(recs), 8)]
        codes = [recs[k + 6] for k in range(0, len(recs), 8)]
        assert seqs == list(range(1, head[0] + 1)), recs
        assert recs[6:8] == [27, 4] and 24 in codes, codes
        # Network reset: DHCP on (after switching it off).
        assert code(d.write_register(0xC0D0, 0, device_id=1)) == 0
        settle(d)
        assert read(d, 0xC0D0, 1) == [0]
        assert code(d.write_register(CMD, 2, device_id=1)) == 0
        time.sleep(0.3)
        settle(d)
        assert read(d, 0xC0D0, 1) == [1]
        # Restart: the sim board reports the request after the reply went out.
        assert code(d.write_register(CMD, 1, device_id=1)) == 0
        h.wait_line(lambda l: "RESET requested" in l, timeout=5)
    finally:
        h.stop()
