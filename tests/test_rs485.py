"""drivers/rs485.py with fake UARTs on the unix port: the bus is released when the UART
says the frame is out, awaited at ms steps (no spinning on txdone), and where the UART
has an idle-line interrupt, recv() is woken by it rather than by polling."""
from test_modbus_stack import run_mpy_async

TX = r"""
import asyncio, json
from time import ticks_us, ticks_diff
from drivers.rs485 import RS485

class Pin:
    def __init__(self, uart):
        self.uart = uart
        self.log = []
    def value(self, v):
        self.log.append((v, self.uart.txdone() if self.uart.t_end else None,
                         ticks_us()))

class Uart:
    # Bytes leave at the line rate once queued (a FIFO); txdone() is counted.
    def __init__(self):
        self.t_end = None
        self.polls = 0
    def init(self, baudrate, bits, parity, stop):
        pass
    def write(self, b):
        self.t_end = ticks_us() + len(b) * self.char_us
        return len(b)
    def txdone(self):
        self.polls += 1
        return ticks_diff(ticks_us(), self.t_end) >= 0
    def readinto(self, b):
        return None

async def main():
    res = {}
    for late in (0, 3000):
        u = Uart()
        de = Pin(u)
        port = RS485(u, de, baudrate=9600, parity="E", stop=1, txdone_late_us=late)
        u.char_us = port.char_us
        t0 = ticks_us()
        await port.send(bytearray(100), 60)
        end_wire = ticks_diff(u.t_end, t0)
        low = ticks_diff(de.log[-1][2], t0)
        res[late] = {"polls": u.polls, "wire": end_wire, "low": low,
                     "done_at_low": de.log[-1][1], "levels": [x[0] for x in de.log]}
    print("@@JSON", json.dumps(res))
asyncio.run(main())
"""


def test_rs485_releases_the_bus_after_the_frame_without_spinning():
    got = run_mpy_async(TX)
    for late, r in got.items():
        late = int(late)
        assert r["levels"] == [0, 1, 0]               # DE low, high to send, low after
        assert r["done_at_low"] is True               # only once the UART is empty
        assert r["low"] >= r["wire"] + late           # never before the last stop bit
        # 60 characters at 9600 8E1 take 68.8 ms: slept through, then a few 1 ms polls
        # (a spin would poll txdone thousands of times).
        assert r["polls"] <= 6, r
        assert r["low"] - r["wire"] - late < 15000    # released within a few ms


IRQ = r"""
import asyncio, json
from drivers.rs485 import RS485

class Uart:
    # An rp2/esp32-like UART with an idle-line interrupt and no stream poll (no ioctl):
    # if recv() polled, it would never wake.
    IRQ_RXIDLE = 4
    def __init__(self):
        self.buf = b""
        self.handler = None
    def init(self, **kw):
        pass
    def irq(self, handler=None, trigger=0, hard=False):
        self.handler = handler
        self.trigger = trigger
    def readinto(self, b):
        if not self.buf:
            return None
        n = len(self.buf)
        b[:n] = self.buf
        self.buf = b""
        return n

async def main():
    u = Uart()
    port = RS485(u, None, 38400, "N", 2)
    mv = memoryview(bytearray(64))
    t = asyncio.create_task(port.recv(mv))
    await asyncio.sleep_ms(10)
    u.buf = b"\x01\x03\x00\x00\x00\x01\x84\x0a"      # bytes arrive, line not idle yet
    await asyncio.sleep_ms(30)
    before = t.done()
    u.handler(u)                                      # the idle-line interrupt
    n = await asyncio.wait_for_ms(t, 100)
    print("@@JSON", json.dumps({"trigger": u.trigger, "before_irq": before, "n": n,
                                "data": bytes(mv[:n]).hex()}))
asyncio.run(main())
"""


def test_rs485_wakes_on_the_idle_line_interrupt():
    got = run_mpy_async(IRQ)
    assert got["trigger"] == 4
    assert got["before_irq"] is False                 # not woken by polling
    assert got["n"] == 8 and got["data"] == "01030000000184" + "0a"
