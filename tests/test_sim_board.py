"""Sim board parts for later steps: littlefs on the simulated flash survives power cuts.

littlefs is power-safe by design: after a cut at any block write, a remount finds the
file either as it was before the rewrite or as it was after, never torn. Cutting at every
write of a rewrite checks both that claim and that SimFlash cuts where it says.
"""


# Unix port only: the WebAssembly build has no os.VfsLfs2 (littlefs), boards do.
def test_littlefs_survives_a_power_cut_at_every_write(mpy):
    res = mpy(r"""
import os, json
from boards.sim.blockdev import SimFlash
OLD = b"counter=1234567890;" * 20
NEW = b"counter=1234567999;" * 20

def setup():
    f = SimFlash(blocks=32, block_size=512)
    os.VfsLfs2.mkfs(f)
    v = os.VfsLfs2(f)
    with v.open("/e.dat", "wb") as fh:
        fh.write(OLD)
    return f, v

def rewrite(v):
    with v.open("/e.dat", "wb") as fh:
        fh.write(NEW)

f, v = setup()
w0 = f.writes
rewrite(v)
total = f.writes - w0
seen = {"old": 0, "new": 0}
bad = []
for k in range(total + 1):
    f, v = setup()
    f.cut_power_after(k)
    try:
        rewrite(v)
        done = True
    except OSError:
        done = False
    g = f.reboot()
    v2 = os.VfsLfs2(g)
    with v2.open("/e.dat", "rb") as fh:
        data = fh.read()
    if data == OLD:
        seen["old"] += 1
    elif data == NEW:
        seen["new"] += 1
    else:
        bad.append(k)
print("@@JSON", json.dumps({"total": total, "seen": seen, "bad": bad}))
""")
    assert res["total"] >= 2
    assert res["bad"] == []
    # Early cuts keep the old content, the last (no cut) gives the new one.
    assert res["seen"]["old"] >= 1 and res["seen"]["new"] >= 1
    assert res["seen"]["old"] + res["seen"]["new"] == res["total"] + 1


def test_board_parts(mpy_any):
    res = mpy_any(r"""
import json
from boards.sim.board import SimBoard
from boards.sim import scenario
from boards.sim.clock import VirtualClock
b = SimBoard(scenario.parse({"phases": {"L1": {"v_rms": 230, "i_rms": 1}}}), clock=VirtualClock())
b.leds["bus"].on()
print("@@JSON", json.dumps({"leds": {k: p.value() for k, p in b.leds.items()},
      "button": b.button.value(), "flash": b.block_device().ioctl(4, 0),
      "same": b.block_device() is b.block_device(), "rs485": b.rs485("a", 38400, "N", 2)}))
""")
    assert res["leds"] == {"status": 0, "network": 0, "bus": 1}
    assert res["button"] == 1 and res["flash"] == 64 and res["same"]
    assert res["rs485"] is None          # no run dir: no pty
