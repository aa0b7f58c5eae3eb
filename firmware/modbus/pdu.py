"""Modbus PDU codec and dispatch: request PDU in, response PDU out.

    from firmware.modbus.pdu import Dispatcher
    d = Dispatcher(holding, inputs, (b"KOSTAL", b"KSEM", b"2.6.0"), rtu=True)
    n = d.handle(req, req_len, out, 1, 0, ctx)   # response PDU in out[1:1+n]; 0 = no reply

It knows nothing of sockets, frames or what a register means: `holding` (FC 03, 06,
16) and `inputs` (FC 04) are spaces (see space.py). `ident` gives the device
identification objects of FC 43/14: a sequence (object id = index, ids 0..2 are
the mandatory VendorName, ProductCode, MajorMinorRevision; 3..6 are regular
objects) or a dict {object id: value}. Values are bytes or str.

`ctx` says who asked: a Caller (one per RTU port, one per TCP connection, reset when
the connection is replaced). Writes pass it on, as write(addr, count, src, soff, ctx),
so a space can keep per-caller state (an unlock expiry, say) in ctx.state; reads do not
take it. A caller of handle() that has none passes None.

`out` needs room for 253 bytes from `off` (the largest PDU, Application Protocol
v1.1b3 section 4.1). handle() never awaits, so a request is answered from one
consistent state even with several ports sharing one dispatcher.

Section numbers below are those of the Modbus Application Protocol v1.1b3.
"""
from micropython import const

# Function codes (section 5.1).
_FC_READ_HOLDING = const(0x03)    # 6.3
_FC_READ_INPUT = const(0x04)      # 6.4
_FC_WRITE_SINGLE = const(0x06)    # 6.6
_FC_DIAGNOSTICS = const(0x08)     # 6.8 (serial line only)
_FC_WRITE_MULTIPLE = const(0x10)  # 6.12
_FC_MEI = const(0x2B)             # 6.21 encapsulated interface transport
_MEI_DEVICE_ID = const(0x0E)      # 6.21 Read Device Identification
_DIAG_RETURN_QUERY = const(0x0000)

# Exception codes (section 7).
_EXC_ILLEGAL_FUNCTION = const(0x01)
_EXC_ILLEGAL_ADDRESS = const(0x02)
EXC_ILLEGAL_VALUE = const(0x03)
_EXC_DEVICE_FAILURE = const(0x04)
EXC_GATEWAY_NO_RESPONSE = const(0x0B)

_MAX_PDU = const(253)            # 4.1: 256-byte serial ADU minus address and CRC
_MAX_READ = const(125)           # 6.3/6.4: 0x007D registers
_MAX_WRITE = const(123)          # 6.12: 0x007B registers
_DEVID_HEAD = const(7)           # 6.21 response bytes before the object list
_DEVID_LAST_BASIC = const(0x02)
_DEVID_LAST_REGULAR = const(0x7F)


class Caller:
    """Who sent a request: `port` names the port ("rtu-a", "tcp"), `conn` counts the
    connections a TCP slot has served (0 on a serial port), `state` is free for the
    spaces (None for a new connection)."""
    __slots__ = ("port", "conn", "state")

    def __init__(self, port, conn=0):
        self.port = port
        self.conn = conn
        self.state = None

    def renew(self, conn):
        """A new connection takes over the slot: nothing carries over."""
        self.conn = conn
        self.state = None


def exception(out, off, fc, code):
    """Write an exception response PDU (section 7); return its length, 2."""
    out[off] = (fc | 0x80) & 0xFF
    out[off + 1] = code
    return 2


class Dispatcher:
    def __init__(self, holding, inputs, ident, rtu=False):
        self.holding = holding
        self.inputs = inputs
        self.rtu = rtu
        self.set_ident(ident)

    def set_ident(self, ident):
        """Replace the identification objects; ValueError if one is missing or too long."""
        items = ident.items() if hasattr(ident, "items") else enumerate(ident)
        objs = []
        for oid, v in items:
            if isinstance(v, str):
                v = v.encode()
            if not 0 <= oid <= 0xFF or len(v) > _MAX_PDU - _DEVID_HEAD - 2:
                raise ValueError("bad device id object %d" % oid)
            objs.append((oid, bytes(v)))
        objs.sort()
        ids = [o[0] for o in objs]
        if ids[:3] != [0, 1, 2]:
            raise ValueError("device id objects 0, 1 and 2 are mandatory")
        self._objs = tuple(objs)
        # Conformity level (6.21 table): 0x80 = stream and individual access.
        top = ids[-1]
        self._conformity = 0x83 if top > _DEVID_LAST_REGULAR else (
            0x82 if top > _DEVID_LAST_BASIC else 0x81)

    def handle(self, req, n, out, off, roff=0, ctx=None):
        """Answer the n-byte request PDU at req[roff:] from caller ctx; the response
        goes to out[off:].

        Returns the response PDU length, or 0 when there is nothing to send.
        """
        if n < 1:
            return 0
        fc = req[roff]
        if fc == _FC_READ_HOLDING or fc == _FC_READ_INPUT:
            # 6.3 / 6.4, inline: nearly every request is one, and a call costs.
            # Quantity is checked before address, as in the state diagrams.
            if n != 5:
                return exception(out, off, fc, EXC_ILLEGAL_VALUE)
            qty = (req[roff + 3] << 8) | req[roff + 4]
            if qty < 1 or qty > _MAX_READ:
                return exception(out, off, fc, EXC_ILLEGAL_VALUE)
            addr = (req[roff + 1] << 8) | req[roff + 2]
            if addr + qty > 0x10000:
                return exception(out, off, fc, _EXC_ILLEGAL_ADDRESS)
            try:
                err = (self.holding if fc == _FC_READ_HOLDING else self.inputs).read(
                    addr, qty, out, off + 2)
            except Exception:
                err = _EXC_DEVICE_FAILURE
            if err:
                return exception(out, off, fc, err)
            out[off] = fc
            out[off + 1] = 2 * qty
            return 2 + 2 * qty
        if fc == _FC_WRITE_SINGLE:
            return self._write_single(req, n, out, off, roff, ctx)
        if fc == _FC_WRITE_MULTIPLE:
            return self._write_multiple(req, n, out, off, roff, ctx)
        if fc == _FC_MEI:
            return self._device_id(req, n, out, off, roff)
        if fc == _FC_DIAGNOSTICS and self.rtu:
            return self._diagnostics(req, n, out, off, roff)
        return exception(out, off, fc, _EXC_ILLEGAL_FUNCTION)

    # 6.6: the normal response echoes the request.
    def _write_single(self, req, n, out, off, roff, ctx):
        if n != 5:
            return exception(out, off, _FC_WRITE_SINGLE, EXC_ILLEGAL_VALUE)
        addr = (req[roff + 1] << 8) | req[roff + 2]
        return self._write_echo(_FC_WRITE_SINGLE, addr, 1, req, roff + 3, out, off, roff, ctx)

    def _write_echo(self, fc, addr, qty, req, soff, out, off, roff, ctx):
        """Carry out a write; the reply echoes the request's first 5 bytes (6.6, 6.12)."""
        try:
            err = self.holding.write(addr, qty, req, soff, ctx)
        except Exception:
            err = _EXC_DEVICE_FAILURE
        if err:
            return exception(out, off, fc, err)
        for i in range(5):
            out[off + i] = req[roff + i]
        return 5

    # 6.12: byte count must equal 2 * quantity and match the PDU length.
    def _write_multiple(self, req, n, out, off, roff, ctx):
        if n < 6:
            return exception(out, off, _FC_WRITE_MULTIPLE, EXC_ILLEGAL_VALUE)
        addr = (req[roff + 1] << 8) | req[roff + 2]
        qty = (req[roff + 3] << 8) | req[roff + 4]
        nb = req[roff + 5]
        if qty < 1 or qty > _MAX_WRITE or nb != 2 * qty or n != 6 + nb:
            return exception(out, off, _FC_WRITE_MULTIPLE, EXC_ILLEGAL_VALUE)
        if addr + qty > 0x10000:
            return exception(out, off, _FC_WRITE_MULTIPLE, _EXC_ILLEGAL_ADDRESS)
        return self._write_echo(_FC_WRITE_MULTIPLE, addr, qty, req, roff + 6, out, off, roff,
                                ctx)

    # 6.8 sub-function 00: echo the whole request. Other sub-functions: 01.
    def _diagnostics(self, req, n, out, off, roff):
        if n < 3:
            return exception(out, off, _FC_DIAGNOSTICS, EXC_ILLEGAL_VALUE)
        if ((req[roff + 1] << 8) | req[roff + 2]) != _DIAG_RETURN_QUERY:
            return exception(out, off, _FC_DIAGNOSTICS, _EXC_ILLEGAL_FUNCTION)
        for i in range(n):
            out[off + i] = req[roff + i]
        return n

    # 6.21: read device id codes 1 basic, 2 regular, 3 extended (stream), 4 one object.
    def _device_id(self, req, n, out, off, roff):
        if n < 2:
            return exception(out, off, _FC_MEI, EXC_ILLEGAL_VALUE)
        if req[roff + 1] != _MEI_DEVICE_ID:
            return exception(out, off, _FC_MEI, _EXC_ILLEGAL_FUNCTION)
        if n != 4:
            return exception(out, off, _FC_MEI, EXC_ILLEGAL_VALUE)
        code = req[roff + 2]
        oid = req[roff + 3]
        objs = self._objs
        if code < 1 or code > 4:
            return exception(out, off, _FC_MEI, EXC_ILLEGAL_VALUE)
        if code == 4:
            first = last = oid
            for o in objs:
                if o[0] == oid:
                    break
            else:
                return exception(out, off, _FC_MEI, _EXC_ILLEGAL_ADDRESS)
        else:
            last = (_DEVID_LAST_BASIC, _DEVID_LAST_REGULAR, 0xFF)[code - 1]
            first = oid
            # An unknown start object restarts the stream at object 0 (6.21).
            for o in objs:
                if o[0] == oid:
                    break
            else:
                first = 0
            if first > last:
                first = 0
        out[off] = _FC_MEI
        out[off + 1] = _MEI_DEVICE_ID
        out[off + 2] = code
        out[off + 3] = self._conformity
        more = 0
        nxt = 0
        count = 0
        p = off + _DEVID_HEAD
        end = off + _MAX_PDU
        for oid, val in objs:
            if oid < first or oid > last:
                continue
            ln = len(val)
            if p + 2 + ln > end:
                # Objects are indivisible: the client asks again from `nxt`.
                more = 0xFF
                nxt = oid
                break
            out[p] = oid
            out[p + 1] = ln
            out[p + 2:p + 2 + ln] = val
            p += 2 + ln
            count += 1
        out[off + 4] = more
        out[off + 5] = nxt
        out[off + 6] = count
        return p - off
