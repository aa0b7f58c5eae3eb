"""The firmware's files on a filesystem the port has already mounted.

    from firmware.rootfs import RootFs
    fs = RootFs("/")               # what a board's filesystem() returns
    fs.mkdir("/cnt"); f = fs.open("/cnt/r", "wb")

On a board, MicroPython's _boot.py mounts littlefs (VfsLfs2) on the internal flash at
"/" before anything else runs, and the deployed firmware lives on it. A second VfsLfs2
on the same block device would keep its own view of the allocation and corrupt the
first, so a board hands over the mounted filesystem instead: this adapter gives the
firmware's stores (counters, config, event log) the VFS methods they use, on paths
under `root`, through the os module. The sim board mounts littlefs on its own block
device and passes that VfsLfs2 directly (App._open_store); both offer the same calls.
"""
import os


class RootFs:
    def __init__(self, root="/"):
        self.root = root.rstrip("/")      # "" for "/"

    def _p(self, path):
        return self.root + path           # paths given are absolute ("/cnt/j0/r")

    def open(self, path, mode="r"):
        return open(self._p(path), mode)

    def mkdir(self, path):
        os.mkdir(self._p(path))

    def rmdir(self, path):
        os.rmdir(self._p(path))

    def remove(self, path):
        os.remove(self._p(path))

    def rename(self, old, new):
        os.rename(self._p(old), self._p(new))

    def stat(self, path):
        return os.stat(self._p(path))

    def statvfs(self, path):
        return os.statvfs(self._p(path))

    def ilistdir(self, path="/"):
        return os.ilistdir(self._p(path))
