"""The sim board's UART: one end of a host pty pair, in place of machine.UART.

    from boards.sim.uart import PtyUART
    from drivers.rs485 import RS485
    uart = PtyUART("run/rs485-a-dev")         # made by: socat -d -d
    port = RS485(uart, None, 38400, "N", 2)   #   pty,raw,echo=0,link=run/rs485-a-dev
                                              #   pty,raw,echo=0,link=run/rs485-a
The client (pymodbus, mbpoll) opens the other end, run/rs485-a.

It offers the machine.UART subset that drivers/rs485.py uses: init(), readinto()
and write() that never wait (None when nothing moved), txdone(), flush(), and the
stream ioctl that lets asyncio poll it. The line is put in raw mode with VMIN=0 and
VTIME=0, so a read returns what is there; baud rate, parity and stop bits are
recorded but a pty does not use them (the host has no bit timing).
"""
import io
import select
import termios
from micropython import const

_VTIME = const(5)             # indexes into the termios c_cc list (Linux)
_VMIN = const(6)
_IOCTL_POLL = const(3)        # MicroPython stream ioctl requests (py/stream.h)
_IOCTL_CLOSE = const(4)
_IOCTL_GET_FILENO = const(10)


class PtyUART(io.IOBase):
    def __init__(self, path, baudrate=19200, bits=8, parity=None, stop=1, **kw):
        try:
            self._f = open(path, "r+b")
        except OSError as e:
            raise OSError("cannot open pty %s: %s" % (path, e))
        self.path = path
        fd = self._f.fileno()
        termios.setraw(fd)
        a = termios.tcgetattr(fd)
        a[6][_VMIN] = 0
        a[6][_VTIME] = 0
        termios.tcsetattr(fd, termios.TCSANOW, a)
        self._poll = select.poll()
        self._poll.register(fd, select.POLLOUT)
        self.init(baudrate, bits, parity, stop)

    def init(self, baudrate=19200, bits=8, parity=None, stop=1, **kw):
        """Record the line settings (a pty ignores them)."""
        self.baudrate = baudrate
        self.bits = bits
        self.parity = parity
        self.stop = stop

    def fileno(self):
        return self._f.fileno()

    def readinto(self, buf, nbytes=None):
        if nbytes is not None:
            buf = memoryview(buf)[:nbytes]
        n = self._f.readinto(buf)
        return n if n else None

    def write(self, buf):
        # A full pty (nobody draining the other end) must not stall the board.
        if not self._poll.poll(0):
            return None
        return self._f.write(buf)

    def txdone(self):
        return True

    def flush(self):
        pass

    def deinit(self):
        self.close()

    def close(self):
        if self._f is not None:
            self._f.close()
            self._f = None

    def ioctl(self, req, arg):
        if req == _IOCTL_GET_FILENO:
            return self._f.fileno()
        if req == _IOCTL_POLL:
            p = select.poll()
            p.register(self._f.fileno(), arg)
            r = p.poll(0)
            return r[0][1] if r else 0
        if req == _IOCTL_CLOSE:
            self.close()
            return 0
        return -1
