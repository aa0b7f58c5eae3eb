#!/usr/bin/env python3
"""`make bench`: every benchmark, results as JSON plus a human summary.

    python tools/bench.py --out bench/results.json [--cycles 1000] [--skip-modbus]

Timings are medians on a shared, noisy machine: compare ratios measured in the same
run, not absolute figures between runs. Allocation figures are in bytes and stable.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MICROPYTHON = str(Path(sys.executable).parent / "micropython")


def run_mpy(script, *args, timeout=600):
    env = dict(os.environ, MICROPYPATH=".frozen:" + str(ROOT))  # .frozen: asyncio
    p = subprocess.run([MICROPYTHON, script, *map(str, args)], capture_output=True,
                       text=True, timeout=timeout, env=env, cwd=str(ROOT))
    if p.returncode != 0 or "@@JSON" not in p.stdout:
        raise SystemExit("benchmark %s failed:\n%s\n%s" % (script, p.stdout, p.stderr))
    return json.loads(p.stdout.split("@@JSON", 1)[1].strip().splitlines()[0])


def run_wasm32(code, timeout=600):
    """Run code on the 32-bit MicroPython (WebAssembly port, tools/wasm/run.mjs)."""
    p = subprocess.run(["node", str(ROOT / "tools" / "wasm" / "run.mjs"), "-c", code],
                       capture_output=True, text=True, timeout=timeout, cwd=str(ROOT))
    if p.returncode != 0 or "@@JSON" not in p.stdout:
        raise SystemExit("wasm32 benchmark failed:\n%s\n%s" % (p.stdout, p.stderr))
    return json.loads(p.stdout.split("@@JSON", 1)[1].strip().splitlines()[0])


def bench_metering(cycles):
    res = run_mpy("tools/mpy/bench_cycle.py", cycles)
    # Bytes per cycle on the 32-bit runtime, new driver and the reference copy.
    res["wasm32"] = run_wasm32("from tools.mpy.driver_cycle import main; main()")
    return res


def bench_modbus(out_dir):
    script = ROOT / "tools" / "bench_modbus.py"
    if not script.exists():
        return None
    out = out_dir / "modbus.json"
    p = subprocess.run([sys.executable, str(script), "--out", str(out)], cwd=str(ROOT),
                       capture_output=True, text=True, timeout=900)
    sys.stdout.write(p.stdout[-4000:])
    if p.returncode != 0:
        raise SystemExit("modbus benchmark failed:\n%s" % p.stderr[-4000:])
    return json.loads(out.read_text())


def bench_heap(out_dir):
    out = out_dir / "heap.json"
    p = subprocess.run([sys.executable, str(ROOT / "tools" / "heap_budget.py"), "--out",
                        str(out)], cwd=str(ROOT), capture_output=True, text=True, timeout=900)
    if p.returncode != 0:
        raise SystemExit("heap budget failed:\n%s%s" % (p.stdout[-2000:], p.stderr[-2000:]))
    return json.loads(out.read_text())


def bench_readpath(out_dir):
    """Cold/warm read times per block, CRC us/byte, bytes per read (tools/bench_readpath.py)."""
    sys.path.insert(0, str(ROOT / "tools"))
    import bench_readpath
    res = bench_readpath.measure()
    (out_dir / "readpath.json").write_text(json.dumps(res, indent=2) + "\n")
    return res


def bench_heap32(out_dir):
    """Live heap by part on the 32-bit wasm32 runtime (tools/heap32.py)."""
    out = out_dir / "heap32.json"
    p = subprocess.run([sys.executable, str(ROOT / "tools" / "heap32.py"), "--out", str(out)],
                       cwd=str(ROOT), capture_output=True, text=True, timeout=900)
    if p.returncode != 0:
        raise SystemExit("heap32 failed:\n%s%s" % (p.stdout[-2000:], p.stderr[-2000:]))
    return json.loads(out.read_text())


def summary(res):
    m = res["metering"]
    new, ref, w = m["new"], m["ref"], m.get("wasm32", {})
    lines = [
        "Metering cycle on the unix port (%d cycles, recorded SPI replay; driver = "
        "health() + read_window()):" % m["cycles"],
        "  SPI frames per cycle: %.2f (reference driver %.2f)"
        % (new["frames_per_cycle"], ref["frames_per_cycle"]),
        "  driver:          median %d us, p99 %d us (reference %d / %d): old/new %.2fx"
        % (new["driver"]["median_us"], new["driver"]["p99_us"], ref["driver"]["median_us"],
           ref["driver"]["p99_us"], m["ratio_old_new"]["driver"]),
        "  engine (Meter._publish: scale, classify, count, publish; %s): median %d us, "
        "p99 %d us (reference engine %d / %d): old/new %.2fx"
        % (m.get("engine_native", "?"), new["engine"]["median_us"], new["engine"]["p99_us"],
           ref["engine"]["median_us"], ref["engine"]["p99_us"], m["ratio_old_new"]["engine"]),
        "  driver + engine: median %d us, p99 %d us (reference driver + engine %d / %d): "
        "old/new %.2fx"
        % (new["driver_engine"]["median_us"], new["driver_engine"]["p99_us"],
           ref["driver_engine"]["median_us"], ref["driver_engine"]["p99_us"],
           m["ratio_old_new"]["driver_engine"]),
        "  driver without the replay's SPI/CS stubs (Python here, C on a board): %d us "
        "(reference %d us): old/new %.2fx" % (new["driver_own_us"], ref["driver_own_us"],
                                              m["ratio_old_new"]["driver_own"]),
        "  RP2040 projection (driver's own work + engine, %d us here, x%d..%d): %.1f..%.1f ms "
        "per cycle, target %d ms (reference %d us: %.1f..%.1f ms); plus the SPI frames' C "
        "calls, not measured here"
        % (new["rp2040"]["driver_own_engine_us"], new["rp2040"]["factors"][0],
           new["rp2040"]["factors"][1], new["rp2040"]["projected_ms"][0],
           new["rp2040"]["projected_ms"][1], new["rp2040"]["target_ms"],
           ref["rp2040"]["driver_own_engine_us"], ref["rp2040"]["projected_ms"][0],
           ref["rp2040"]["projected_ms"][1]),
        "  with the simulator in the loop:  median %d us, p99 %d us per cycle"
        % (m["with_simulator"]["median_us"], m["with_simulator"]["p99_us"]),
        "  allocation, unix port: %.1f bytes per cycle (driver + engine), %.1f (driver); "
        "%.1f with the simulator" % (m["alloc_bytes_per_cycle"],
                                     new["alloc_bytes_per_driver_cycle"],
                                     m["alloc_bytes_per_cycle_with_simulator"]),
    ]
    if w:
        lines.append("  allocation, 32-bit runtime: driver %.1f bytes per cycle (reference "
                     "%.1f), driver + engine %.1f (reference %.1f)"
                     % (w["new"]["driver_cycle"], w["ref"]["driver_cycle"],
                        w["new"]["driver_engine"], w["ref"]["driver_engine"]))
    hp = res.get("heap")
    if hp:
        lines.append("Heap: the firmware boots and serves TCP + RS485 A + B with %d KiB "
                     "(unix port, 64-bit objects, .mpy, simulator included)"
                     % (hp["heap_bytes"] // 1024))
    rp = res.get("readpath")
    if rp:
        lines.append(rp["summary"])
    h32 = res.get("heap32")
    if h32:
        sys.path.insert(0, str(ROOT / "tools"))
        from heap32 import summary_line
        lines.append(summary_line(h32))
    mb = res.get("modbus")
    if mb and "summary" in mb:
        lines.append(mb["summary"])
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="bench/results.json")
    ap.add_argument("--cycles", type=int, default=1000)
    ap.add_argument("--skip-modbus", action="store_true")
    ap.add_argument("--skip-heap", action="store_true")
    a = ap.parse_args()
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    res = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                       "platform": platform.platform()}}
    res["metering"] = bench_metering(a.cycles)
    res["readpath"] = bench_readpath(out.parent)
    if not a.skip_heap:
        res["heap"] = bench_heap(out.parent)
        res["heap32"] = bench_heap32(out.parent)
    if not a.skip_modbus:
        res["modbus"] = bench_modbus(out.parent)
    text = summary(res)
    res["summary"] = text
    out.write_text(json.dumps(res, indent=2) + "\n")
    (out.parent / "summary.txt").write_text(text + "\n")
    print(text)
    print("results: %s" % out)


if __name__ == "__main__":
    main()
