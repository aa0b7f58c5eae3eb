"""The sim board's flash: a block device for littlefs (VfsLfs2) with power cuts.

    from boards.sim.blockdev import SimFlash
    flash = SimFlash(blocks=64)              # 64 x 4 KiB, erased (0xFF)
    os.VfsLfs2.mkfs(flash); vfs = os.VfsLfs2(flash)
    flash.cut_power_after(3)                 # the 4th block write and all later fail
    flash2 = flash.reboot()                  # what survived, as a new device

Implements MicroPython's extended block device protocol (readblocks/writeblocks with
an offset, ioctl 4 count / 5 size / 6 erase). A power cut lands in the middle of a
program: the cut write stores only its first half, as a NOR flash page program
interrupted mid-way would, and raises OSError(EIO) like a dead bus; everything after
it fails too until reboot(). Later steps (persistence, protected config) test against
this that no counter or config is ever lost.
"""
import errno


class SimFlash:
    def __init__(self, blocks=64, block_size=4096, data=None):
        if blocks < 2 or block_size < 128:
            raise ValueError("flash too small: %d blocks of %d bytes" % (blocks, block_size))
        self.blocks = blocks
        self.block_size = block_size
        self.data = bytearray(data) if data is not None else bytearray(b"\xff" * (blocks * block_size))
        self.writes = 0
        self._cut_after = None
        self.dead = False

    def cut_power_after(self, n_writes):
        """Let n more block writes (or erases) through, then cut power."""
        self._cut_after = self.writes + n_writes

    def reboot(self):
        """A fresh device holding what the flash held when the power went."""
        return SimFlash(self.blocks, self.block_size, self.data)

    def _check(self, block, n, offset):
        if block < 0 or block >= self.blocks or offset + n > self.block_size:
            raise OSError(errno.EIO)
        return block * self.block_size + offset

    def readblocks(self, block, buf, offset=0):
        start = self._check(block, len(buf), offset)
        buf[:] = self.data[start:start + len(buf)]

    def _program(self, start, buf):
        if self.dead:
            raise OSError(errno.EIO)
        if self._cut_after is not None and self.writes >= self._cut_after:
            half = len(buf) // 2
            self.data[start:start + half] = buf[:half]
            self.dead = True
            raise OSError(errno.EIO)
        self.writes += 1
        self.data[start:start + len(buf)] = buf

    def writeblocks(self, block, buf, offset=None):
        if offset is None:      # simple protocol: whole blocks, erase implied
            start = self._check(block, len(buf), 0)
        else:
            start = self._check(block, len(buf), offset)
        self._program(start, buf)

    def ioctl(self, op, arg):
        if op == 4:             # block count
            return self.blocks
        if op == 5:             # block size
            return self.block_size
        if op == 6:             # erase block arg
            start = self._check(arg, self.block_size, 0)
            self._program(start, b"\xff" * self.block_size)
            return 0
        return 0 if op in (1, 2, 3) else None
