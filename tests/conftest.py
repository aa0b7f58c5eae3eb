"""Shared test helpers: run code on the real MicroPython unix port and a 32-bit one.

`run_mpy(code)` runs a snippet with the project root on MICROPYPATH and returns what the
snippet printed after a line `@@JSON` parsed as JSON (so tests can return structures).
`run_mpy32(code)` does the same on the 32-bit WebAssembly port; the `mpy_any` fixture
runs a test on both (README, Runtimes).
"""
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
MICROPYTHON = str(VENV_BIN / "micropython")


def mpy_env(extra=None):
    env = dict(os.environ)
    # .frozen holds asyncio; lib the MQTT client (make umqtt)
    env["MICROPYPATH"] = ".frozen:" + str(ROOT) + ":" + str(ROOT / "lib")
    if extra:
        env.update(extra)
    return env


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_mpy(code, timeout=120, heapsize=None, check=True):
    """Run `code` on the unix port; return the JSON value printed after '@@JSON'."""
    args = [MICROPYTHON]
    if heapsize:
        args += ["-X", "heapsize=%s" % heapsize]
    args += ["-c", code]
    p = subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                       env=mpy_env(), cwd=str(ROOT))
    if check and p.returncode != 0:
        raise AssertionError("micropython failed (%d):\n%s\n%s" % (p.returncode, p.stdout, p.stderr))
    out = p.stdout
    if "@@JSON" not in out:
        if check:
            raise AssertionError("no @@JSON marker in output:\n" + out + p.stderr)
        return None
    return json.loads(out.split("@@JSON", 1)[1].strip().splitlines()[0])


WASM_RUN = ROOT / "tools" / "wasm" / "run.mjs"
WASM_PKG = ROOT / "tools" / "wasm" / "node_modules" / "@micropython" / \
    "micropython-webassembly-pyscript" / "package.json"


def run_mpy32(code, timeout=120, check=True, heapsize=None):
    """Run `code` on the 32-bit MicroPython (WebAssembly port under node, see
    tools/wasm/run.mjs); same '@@JSON' protocol as run_mpy. Chunks separated by a line
    '#@@CHUNK' run as separate top-level calls (garbage is collected only between them).
    heapsize is accepted for run_mpy's signature but is no limit there: that build grows
    its heap on demand (README, Runtimes)."""
    if shutil.which("node") is None or not WASM_PKG.exists():
        raise AssertionError("the 32-bit MicroPython is not installed: run `make wasm32` "
                             "(node and tools/wasm/node_modules)")
    args = ["node", str(WASM_RUN)]
    if heapsize:
        args += ["--heap", str(heapsize)]
    p = subprocess.run(args + ["-"], input=code, capture_output=True,
                       text=True, timeout=timeout, cwd=str(ROOT))
    if check and p.returncode != 0:
        raise AssertionError("wasm32 micropython failed (%d):\n%s\n%s"
                             % (p.returncode, p.stdout, p.stderr))
    out = p.stdout
    if "@@JSON" not in out:
        if check:
            raise AssertionError("no @@JSON marker in output:\n" + out + p.stderr)
        return None
    return json.loads(out.split("@@JSON", 1)[1].strip().splitlines()[0])


RUNTIMES = {"unix": run_mpy, "wasm32": run_mpy32}


def run_parallel(run, codes, **kw):
    """run(code, **kw) for each of codes in processes side by side (one per core):
    a long sweep split into parts takes the time of one part on a CI machine's cores.
    Results in the order of codes."""
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max_workers=max(1, min(len(codes), os.cpu_count() or 1))) as ex:
        return list(ex.map(lambda c: run(c, **kw), codes))


@pytest.fixture
def mpy():
    return run_mpy


@pytest.fixture
def mpy32():
    return run_mpy32


@pytest.fixture(params=["unix", "wasm32"])
def mpy_any(request):
    """Unit-level tests of firmware/ and drivers/ run on both runtimes."""
    return RUNTIMES[request.param]
