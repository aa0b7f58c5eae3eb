"""The 32-bit runtime is what the tests take it for: the boards' integer and object sizes.

The wasm32 fixture (tools/wasm/run.mjs, the official WebAssembly port) stands for the
RP2040/ESP32 builds in everything integer: 31-bit small ints, 4-byte array('l') slots
that silently truncate, sys.maxsize 2**31-1. These tests pin those facts (each one a
reason a test passing on the 64-bit unix port may fail on a board), the differences
the README lists (no native emitter, double floats, a heap that grows), the garbage
collection the heap figures rely on, and that every firmware/ and drivers/ module
loads there.
"""
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT, WASM_RUN, run_mpy, run_mpy32

WORD = {"unix": 64, "wasm32": 32}


def wrap32(v):
    """What a 4-byte two's-complement slot keeps of v."""
    return ((v + 2 ** 31) % 2 ** 32) - 2 ** 31


@pytest.mark.parametrize("rt", ["unix", "wasm32"])
def test_word_size_and_array_slots(rt):
    run = {"unix": run_mpy, "wasm32": run_mpy32}[rt]
    res = run(r"""
import sys, json, array
a = array.array('l', [0])
print("@@JSON", json.dumps({"maxsize": sys.maxsize, "slot": len(bytes(a)),
                            "impl": sys.implementation.name}))
""")
    bits = WORD[rt]
    assert res["impl"] == "micropython"
    assert res["maxsize"] == 2 ** (bits - 1) - 1
    assert res["slot"] == bits // 8


def test_array_l_truncates_long_ints_silently(mpy32):
    vals = [2 ** 31 - 1, 2 ** 31 + 5, 2 ** 40 + 7, -2 ** 31, -2 ** 31 - 1, 3 * 2 ** 33 - 9]
    res = mpy32(r"""
import json, array
vals = %r
a = array.array('l', [0] * len(vals))
err = None
try:
    for k, v in enumerate(vals):
        a[k] = v
except Exception as e:
    err = repr(e)
print("@@JSON", json.dumps({"got": list(a), "err": err}))
""" % (vals,))
    assert res["err"] is None                      # no OverflowError: silent
    assert res["got"] == [wrap32(v) for v in vals]
    assert res["got"][1] != vals[1]                # i.e. wrong, not clamped or kept


SMALL_INT = r"""
import gc, json
def cost(x, k):
    gc.collect()
    gc.disable()
    a0 = gc.mem_alloc()
    y = x + k
    d = gc.mem_alloc() - a0
    gc.enable()
    return d
top = (1 << 30) - 1        # the largest small int on a 32-bit build (31-bit signed)
print("@@JSON", json.dumps({"below": cost(top - 1, 1), "at": cost(top, 1),
                            "neg_edge": cost(-top, -1), "neg_over": cost(-top - 1, -1)}))
"""


def test_small_int_boundary_is_2_pow_30(mpy32):
    res = mpy32(SMALL_INT)
    assert res["below"] == 0 and res["neg_edge"] == 0     # 2**30-1 and -2**30 stay small
    assert res["at"] > 0 and res["neg_over"] > 0          # 2**30, -2**30-1: heap long ints


def test_small_int_boundary_is_far_away_on_unix(mpy):
    res = mpy(SMALL_INT)
    assert res == {"below": 0, "at": 0, "neg_edge": 0, "neg_over": 0}


def modules(*tops):
    out = []
    for top in tops:
        for p in sorted((ROOT / top).rglob("*.py")):
            if p.name == "manifest.py":
                continue      # a board's frozen-build manifest: read by MicroPython's
                              # build (include/package), not imported
            rel = p.relative_to(ROOT).with_suffix("")
            out.append(".".join(rel.parts).replace(".__init__", ""))
    return out


# boards.sim.uart opens host ptys (termios): the unix port only.
UNIX_ONLY = {"boards.sim.uart"}


# Native-emitter kernels (*_viper) are picked at import where the port compiles viper
# (boards, unix port); this runtime has no native emitter, so it must refuse them and
# the plain fallbacks run instead (their equality is tested beside each kernel).
VIPER = {m for m in modules("firmware", "drivers", "boards") if m.endswith("_viper")}


def test_firmware_drivers_and_sim_import(mpy32):
    mods = [m for m in modules("firmware", "drivers", "boards")
            if m not in UNIX_ONLY and m not in VIPER]
    assert VIPER, "the viper kernels were expected here"
    assert "firmware.metering" in mods and "drivers.ade7880" in mods
    assert "firmware.modbus.tcp" in mods and "firmware.regmaps.build" in mods
    res = mpy32(r"""
import json
bad = {}
for m in %r:
    try:
        __import__(m)
    except Exception as e:
        bad[m] = repr(e)
refused = []
for m in %r:
    try:
        __import__(m)
    except SyntaxError:
        refused.append(m)
print("@@JSON", json.dumps({"bad": bad, "refused": refused}))
""" % (mods, sorted(VIPER)))
    assert res["bad"] == {}
    assert sorted(res["refused"]) == sorted(VIPER)


def test_what_differs_from_a_board(mpy32):
    res = mpy32(r"""
import json, gc, sys
r = {}
try:
    exec("import micropython\n@micropython.native\ndef f():\n    return 1\n")
    r["native"] = True
except SyntaxError:
    r["native"] = False
r["double"] = 0.1 + 0.2 == 0.30000000000000004 and 1e300 * 10 != float("inf")
r["path"] = sys.path
print("@@JSON", json.dumps(r))
""")
    assert res["native"] is False        # no native/viper emitter: plain fallbacks run
    assert res["double"] is True         # floats are double, boards' are single precision
    assert "/lib" in res["path"]


def node(*args, code=None):
    return subprocess.run(["node", str(WASM_RUN), *args], input=code, capture_output=True,
                          text=True, timeout=120, cwd=str(ROOT))


def test_heapsize_is_not_a_limit():
    # --heap is only the first heap area: this build grows its heap (split heap), so
    # no test can rely on a MemoryError from it.
    p = node("--heap", "65536", "-c",
             "b = [bytearray(100000) for _ in range(20)]\nprint(sum(len(x) for x in b))")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "2000000"


def test_garbage_is_collected_only_between_top_level_calls():
    p = node("-", code=r"""
import gc
def churn():
    x = [bytearray(1000) for _ in range(100)]
    x = None
    gc.collect()
    return gc.mem_alloc()
gc.collect()
#@@CHUNK
import gc
base = gc.mem_alloc()
inside = churn() - base
gc.collect()
#@@CHUNK
after = gc.mem_alloc() - base
print(inside, after)
""")
    assert p.returncode == 0, p.stderr
    inside, after = map(int, p.stdout.split())
    assert inside >= 100 * 1000          # gc.collect() inside a call frees nothing
    assert after < 1000                  # the next top-level call starts collected


def test_runner_reports_a_python_error_with_its_traceback(tmp_path):
    f = tmp_path / "bad.py"
    f.write_text("x = 1\n#@@CHUNK\n\ndef g(v):\n    return {}[v]\ng('key')\n")
    p = node(str(f))
    assert p.returncode == 1
    assert "KeyError: key" in p.stderr
    assert 'line 5, in g' in p.stderr and "line 6" in p.stderr     # the file's lines
    assert "chunk 2 of 2" in p.stderr
    p = node("-c", "import sys\nsys.exit(3)")
    assert p.returncode == 3
    p = node("--heap", "lots", "-c", "1")
    assert p.returncode == 2 and "--heap" in p.stderr and "lots" in p.stderr
    p = node(str(tmp_path / "missing.py"))
    assert p.returncode == 2 and "missing.py" in p.stderr


def test_runner_passes_large_output_whole():
    p = node("-c", "for i in range(3000):\n    print('%05d' % i + 'x' * 994)\n"
                   "print('tail', end='')")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.split("\n")
    assert len(lines) == 3001 and lines[-1] == "tail"
    assert all(len(x) == 999 for x in lines[:-1]) and lines[2999].startswith("02999")
