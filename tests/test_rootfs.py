"""A board hands over the littlefs its _boot.py mounted at "/" (firmware/rootfs.py).

Truth: the real littlefs of the unix port (os.VfsLfs2) on the sim block device,
mounted with os.mount exactly as a board's _boot.py does, and the counter store's
guarantees measured on the flash itself: the supply-failure write through the mounted
filesystem needs no erase, and a remount restores what was written.
"""


def test_counter_store_through_the_mounted_root(mpy):
    out = mpy(r"""
import os, json
from boards.sim.blockdev import SimFlash
from firmware.energy import EnergyRegisters
from firmware.events import EventLog, EV_COUNTERS_RESTORED
from firmware.persist import CounterStore
from firmware.rootfs import RootFs

class Clock:
    def ticks_ms(self):
        return 0

f = SimFlash(64, 4096)
os.VfsLfs2.mkfs(f)
os.mount(os.VfsLfs2(f), "/flash")       # as _boot.py mounts "/" on a board
fs = RootFs("/flash")
e = EnergyRegisters(32)
s = CounterStore(fs, e, EventLog(16), Clock())
s.restore()
s.arm()
for i in range(32):
    e.add(i, (i + 1) * 10**12)
s.persist()                               # periodic: write, then re-arm
e.add(3, 7 * 10**9)
e0 = f.erases
s.supply_failed()                         # the hold-up write
pf_erases = f.erases - e0
want = [e.pico(i) for i in range(32)]
files = sorted(os.listdir("/flash/cnt"))
os.umount("/flash")
# Power back: the board mounts again; the firmware restores through the adapter.
os.mount(os.VfsLfs2(f), "/flash")
e2 = EnergyRegisters(32)
ev = EventLog(16)
seq = CounterStore(RootFs("/flash"), e2, ev, Clock()).restore()
os.umount("/flash")
print("@@JSON", json.dumps({"erase_free": s.erase_free, "pf_erases": pf_erases, "files": files,
                  "same": [e2.pico(i) for i in range(32)] == want, "seq": seq,
                  "restored": ev.count(EV_COUNTERS_RESTORED), "last": want[3]}))
""")
    r = out
    assert r["erase_free"] and r["pf_erases"] == 0
    assert r["files"] == ["j0", "j1"]      # periodic record, then the hold-up one
    assert r["same"] and r["seq"] == 2 and r["restored"] == 1
    assert r["last"] == 4 * 10**12 + 7 * 10**9


def test_paths_stay_under_the_root(mpy, tmp_path):
    out = mpy(r"""
import os
from firmware.rootfs import RootFs
fs = RootFs(%r)
fs.mkdir("/cfg")
with fs.open("/cfg/a", "wb") as f:
    f.write(b"x")
fs.rename("/cfg/a", "/cfg/b")
got = [sorted(t[0] for t in fs.ilistdir("/cfg")), fs.stat("/cfg/b")[6], fs.statvfs("/")[0] > 0]
fs.remove("/cfg/b")
fs.rmdir("/cfg")
got.append(os.listdir(%r))
import json
print("@@JSON", json.dumps(got))
""" % (str(tmp_path), str(tmp_path)))
    assert out == [["b"], 1, True, []]


def test_app_takes_the_boards_filesystem(mpy, tmp_path):
    """A board with filesystem() gets its config and counters there; block_device() is
    never mounted (it would be a second littlefs on the same flash)."""
    out = mpy(r"""
import json, os
from boards.sim import scenario
from boards.sim.board import SimBoard
from firmware.app import App
from firmware.rootfs import RootFs

class Board(SimBoard):
    mounted = 0
    def filesystem(self):
        return RootFs(%r)
    def block_device(self):
        Board.mounted += 1
        return SimBoard.block_device(self)

app = App(Board(scenario.parse({"frequency_hz": 50.0, "phases": {
    "L1": {"v_rms": 230.0, "i_rms": 1.0, "phi_deg": 0.0}}})))
app.stop()                       # a clean stop writes a counter record
print("@@JSON", json.dumps({"mounted": Board.mounted, "root": sorted(os.listdir(%r))}))
""" % (str(tmp_path), str(tmp_path)))
    assert out["mounted"] == 0
    assert "cnt" in out["root"]          # the counters' journals, on the handed-over fs
