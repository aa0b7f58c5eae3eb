"""The sim board's flash: a block device for littlefs (VfsLfs2) with power cuts.

    from boards.sim.blockdev import SimFlash
    flash = SimFlash(blocks=64)              # 64 x 4 KiB, erased (0xFF)
    os.VfsLfs2.mkfs(flash); vfs = os.VfsLfs2(flash)
    flash.cut_power_after(3)                 # the 4th block write and all later fail
    flash2 = flash.reboot()                  # what survived, as a new device
    flash = SimFlash(64, path="run/flash.img")   # backed by a file: survives the process

Implements MicroPython's extended block device protocol (readblocks/writeblocks with
an offset, ioctl 4 count / 5 size / 6 erase). A power cut lands in the middle of a
program: the cut write stores only its first half, as a NOR flash page program
interrupted mid-way would, and raises OSError(EIO) like a dead bus; everything after
it (reads too) fails until reboot(). Later steps (persistence, protected config) test against
this that no counter or config is ever lost.

With `path` the image lives in a file only (not in RAM: the host run's heap stays the
firmware's): used when it exists with the right size (else created erased), read with
seek/readinto, and every program or erase is written through to it at once
(unbuffered), so a process killed with SIGKILL loses nothing the flash had taken. Counters
`progs` (block writes), `erases` and `bytes` (programmed, erases excluded) measure what a
write costs.
"""
import errno



class SimFlash:
    def __init__(self, blocks=64, block_size=4096, data=None, path=None):
        if blocks < 2 or block_size < 128:
            raise ValueError("flash too small: %d blocks of %d bytes" % (blocks, block_size))
        self.blocks = blocks
        self.block_size = block_size
        size = blocks * block_size
        self.path = path
        self._file = None
        if path is not None and data is None:
            self._prepare(path, size, block_size)
            self._file = open(path, "r+b")
            self._blk = None          # the file is the flash
        else:
            # In RAM, one buffer per block, None while erased: a fresh device costs
            # nothing, a used one only its written blocks (many boards in one test
            # process never need a contiguous image).
            self._blk = [None] * blocks
            if data is not None:
                for b in range(blocks):
                    chunk = data[b * block_size:(b + 1) * block_size]
                    if chunk != b"\xff" * block_size:
                        self._blk[b] = bytearray(chunk)
        self.writes = 0
        self.progs = 0
        self.erases = 0
        self.bytes = 0
        self._cut_after = None
        self.dead = False

    @staticmethod
    def _prepare(path, size, block_size):
        import os
        try:
            have = os.stat(path)[6]
            if have == size:
                return
            print("flash image %s has %d bytes, not %d: starting erased" % (path, have, size))
        except OSError:
            pass
        erased = b"\xff" * block_size
        with open(path, "wb") as f:
            for _ in range(size // block_size):
                f.write(erased)

    def close(self):
        if self._file is not None:
            self._file.close()
            self._file = None

    def cut_power_after(self, n_writes):
        """Let n more block writes (or erases) through, then cut power."""
        self._cut_after = self.writes + n_writes

    def reboot(self):
        """A fresh device holding what the flash held when the power went (from its
        file when it has one)."""
        if self.path is not None:
            self.close()
            return SimFlash(self.blocks, self.block_size, path=self.path)
        g = SimFlash(self.blocks, self.block_size)
        g._blk = [bytearray(b) if b is not None else None for b in self._blk]
        return g

    @property
    def data(self):
        """The whole image as bytes (a copy; tests look into it)."""
        if self._blk is None:
            with open(self.path, "rb") as f:
                return f.read()
        erased = b"\xff" * self.block_size
        return b"".join(bytes(b) if b is not None else erased for b in self._blk)

    def flip(self, offset, mask=1):
        """Corrupt the image: XOR one byte with mask (a bit flipped in the flash)."""
        bs = self.block_size
        b = offset // bs
        if self._blk is None:
            raise ValueError("flip() is for the RAM flash")
        if self._blk[b] is None:
            self._blk[b] = bytearray(b"\xff" * bs)
        self._blk[b][offset % bs] ^= mask

    def _check(self, block, n, offset):
        if block < 0 or block >= self.blocks or offset + n > self.block_size:
            raise OSError(errno.EIO)
        return block * self.block_size + offset

    def readblocks(self, block, buf, offset=0):
        if self.dead:           # a chip without power answers nothing (and littlefs,
            raise OSError(errno.EIO)    # told so, stops instead of looping on a failed commit)
        start = self._check(block, len(buf), offset)
        f = self._file
        if f is not None:
            f.seek(start)
            f.readinto(buf)
            return
        d = self._blk[block]
        n = len(buf)
        if d is None:
            for k in range(n):       # erased: no slice, so no allocation either
                buf[k] = 0xFF
            return
        try:
            buf[:] = memoryview(d)[offset:offset + n]
        except MemoryError:     # heap locked: littlefs closing a file from a finaliser
            for k in range(n):
                buf[k] = d[offset + k]

    def _program(self, start, buf):
        if self.dead:
            raise OSError(errno.EIO)
        if self._cut_after is not None and self.writes >= self._cut_after:
            half = len(buf) // 2
            self._store(start, buf[:half])
            self.dead = True
            raise OSError(errno.EIO)
        self.writes += 1
        self._store(start, buf)

    def _store(self, start, buf):
        f = self._file
        if f is not None:       # write-through: a killed process keeps what was written
            f.seek(start)
            f.write(buf)
            return
        bs = self.block_size
        b, off = divmod(start, bs)
        d = self._blk[b]
        if d is None:
            d = self._blk[b] = bytearray(b"\xff" * bs)
        d[off:off + len(buf)] = buf

    def writeblocks(self, block, buf, offset=None):
        if offset is None:      # simple protocol: whole blocks, erase implied
            start = self._check(block, len(buf), 0)
        else:
            start = self._check(block, len(buf), offset)
        self._program(start, buf)
        self.progs += 1
        self.bytes += len(buf)

    def ioctl(self, op, arg):
        if op == 4:             # block count
            return self.blocks
        if op == 5:             # block size
            return self.block_size
        if op == 6:             # erase block arg
            start = self._check(arg, self.block_size, 0)
            self._program(start, b"\xff" * self.block_size)
            self.erases += 1
            return 0
        return 0 if op in (1, 2, 3) else None
