#!/usr/bin/env python3
"""The README's pin tables, generated from each board module's PINS (the only place
with its pins).

    python tools/export_pins.py           # rewrite the tables in README.md
    python tools/export_pins.py --check   # exit 1 if README.md is out of date

Each table sits between `<!-- pins:NAME -->` and `<!-- /pins -->` in the README.
"""
import importlib
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BOARDS = ("rp2040_w5500", "esp32_lan8720")


def table(name):
    sys.path.insert(0, str(ROOT))
    pins = importlib.import_module("boards.%s.board" % name).PINS
    rows = ["| Function | GPIO | What |", "|---|---|---|"]
    for f, gpio, what in sorted(pins, key=lambda p: p[1]):
        rows.append("| %s | %d | %s |" % (f, gpio, what))
    return "\n".join(rows)


def render(text):
    for name in BOARDS:
        pat = re.compile(r"(<!-- pins:%s -->\n)(?:\|[^\n]*\n)*(<!-- /pins -->)" % name)
        if not pat.search(text):
            raise SystemExit("README.md has no <!-- pins:%s --> block" % name)
        text = pat.sub(lambda m: m.group(1) + table(name) + "\n" + m.group(2), text)
    return text


def main():
    readme = ROOT / "README.md"
    old = readme.read_text()
    new = render(old)
    if "--check" in sys.argv[1:]:
        if new != old:
            print("README.md pin tables are out of date: run tools/export_pins.py")
            return 1
        return 0
    readme.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
