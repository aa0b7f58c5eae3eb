#!/usr/bin/env python3
"""Read-path benchmark (`make bench`, results key "readpath"): cold and warm FC 03/04 read
times per block and the CRC's time per byte on the unix port, bytes per read on both
runtimes, each next to a reference tree measured in the same run.

    python tools/bench_readpath.py [--out bench/readpath.json] [--reps 300] [--ref COMMIT]

The reference is the read path before the rework (commit REF_COMMIT: per-row encoding in
bytecode, table CRC), taken from git into a temporary directory and run by the same
tools/mpy/bench_readpath.py; without git history the reference is left out. Ratios are
reference / now (above 1: faster now). Targets (issue 6): a cold read of any block at
most 2 ms on an RP2040, about 50-100x slower than the unix port here, so about 20 us
here; the CRC at most 1 us per byte there; 0 bytes per warm read on the 32-bit build.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MICROPYTHON = str(Path(sys.executable).parent / "micropython")
SCRIPT = "tools/mpy/bench_readpath.py"
REF_COMMIT = "58bbd8d"   # the read path as issue 6 measured it


def _json(stdout, what):
    if "@@JSON" not in stdout:
        raise SystemExit("%s: no result\n%s" % (what, stdout[-2000:]))
    return json.loads(stdout.split("@@JSON", 1)[1].strip().splitlines()[0])


def run_unix(root, reps):
    env = dict(os.environ, MICROPYPATH="%s:%s" % (ROOT / ".frozen", root))
    p = subprocess.run([MICROPYTHON, str(Path(root) / SCRIPT), str(reps)], cwd=str(root),
                       env=env, capture_output=True, text=True, timeout=600)
    if p.returncode:
        raise SystemExit("read-path benchmark failed (%s):\n%s" % (root, p.stderr[-2000:]))
    return _json(p.stdout, "unix port")


def run_wasm(root):
    p = subprocess.run(["node", str(ROOT / "tools" / "wasm" / "run.mjs"), "--root", str(root),
                        str(Path(root) / SCRIPT)], capture_output=True, text=True, timeout=600)
    if p.returncode:
        return None   # no node: the 32-bit figures are left out
    return _json(p.stdout, "wasm32")


def ref_tree(commit, dst):
    """The firmware of `commit` plus today's benchmark script, or None without git."""
    try:
        tar = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "firmware"],
                             capture_output=True, timeout=60, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dst)], input=tar, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    (dst / "tools" / "mpy").mkdir(parents=True)
    shutil.copy(ROOT / SCRIPT, dst / SCRIPT)
    return dst


def measure(reps=300, ref=REF_COMMIT):
    now = run_unix(ROOT, reps)
    now32 = run_wasm(ROOT)
    before = before32 = None
    with tempfile.TemporaryDirectory() as tmp:
        tree = ref_tree(ref, Path(tmp))
        if tree:
            before = run_unix(tree, reps)
            before32 = run_wasm(tree)
    blocks = []
    for k, b in enumerate(now["blocks"]):
        row = {"block": b["block"], "cold_us": b["cold_us"], "warm_us": b["warm_us"],
               "cold_bytes": b["cold_bytes"], "warm_bytes": b["warm_bytes"]}
        if now32:
            row["cold_bytes_32"] = now32["blocks"][k]["cold_bytes"]
            row["warm_bytes_32"] = now32["blocks"][k]["warm_bytes"]
        if before:
            r = before["blocks"][k]
            row["ref"] = {"cold_us": r["cold_us"], "warm_us": r["warm_us"],
                          "cold_bytes": r["cold_bytes"], "warm_bytes": r["warm_bytes"]}
            if before32:
                row["ref"]["cold_bytes_32"] = before32["blocks"][k]["cold_bytes"]
                row["ref"]["warm_bytes_32"] = before32["blocks"][k]["warm_bytes"]
            row["cold_ratio"] = round(r["cold_us"] / max(b["cold_us"], 1), 1)
            row["warm_ratio"] = round(r["warm_us"] / max(b["warm_us"], 0.1), 1)
        blocks.append(row)
    crc = {"path": now["crc_path"], "us_per_byte": now["crc_us_per_byte"]}
    for k in ("crc16_viper_us_per_byte", "crc16_plain_us_per_byte"):
        if k in now:
            crc[k.split("_")[1]] = now[k]
    if before:
        crc["ref_us_per_byte"] = before["crc_us_per_byte"]
    res = {"reps": reps, "ref_commit": ref if before else None, "blocks": blocks, "crc": crc,
           "max_cold_us": max(b["cold_us"] for b in blocks)}
    res["summary"] = summary(res)
    return res


def summary(res):
    lines = ["Read path, unix port (median of %d; cold = first read after a new snapshot;"
             " ref = %s):" % (res["reps"], res["ref_commit"] or "none")]
    for b in res["blocks"]:
        s = "  %-22s cold %4d us, warm %4.1f us" % (b["block"], b["cold_us"], b["warm_us"])
        if "ref" in b:
            s += "  (ref %4d / %4.1f us: %.1fx / %.1fx)" % (
                b["ref"]["cold_us"], b["ref"]["warm_us"], b["cold_ratio"], b["warm_ratio"])
        s += "; bytes/read warm %d cold %d" % (b["warm_bytes"], b["cold_bytes"])
        if "warm_bytes_32" in b:
            s += ", 32-bit %d / %d" % (b["warm_bytes_32"], b["cold_bytes_32"])
            if "ref" in b and "warm_bytes_32" in b["ref"]:
                s += " (ref %d / %d)" % (b["ref"]["warm_bytes_32"], b["ref"]["cold_bytes_32"])
        lines.append(s)
    c = res["crc"]
    s = "  CRC-16: %.3f us/byte (%s)" % (c["us_per_byte"], c["path"])
    if "plain" in c:
        s += ", plain path %.3f" % c["plain"]
    if "ref_us_per_byte" in c:
        s += ", ref %.3f" % c["ref_us_per_byte"]
    lines.append(s + "; targets on an RP2040 (50-100x slower): cold <= 2 ms, CRC <= 1 us/byte")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out")
    ap.add_argument("--reps", type=int, default=300)
    ap.add_argument("--ref", default=REF_COMMIT)
    a = ap.parse_args()
    res = measure(a.reps, a.ref)
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=2) + "\n")
    print(res["summary"])


if __name__ == "__main__":
    main()
