"""Private consts that mirror another module's public names stay equal to them.

A module that uses another's constants defines its own private copies (`_NAME =
const(v)`): MicroPython inlines those and gives them no global slot, where each
imported name would be a global (RAM on a board, frozen or not: the heap budget,
tests/test_heap32.py). The copies must never drift from the names they stand for:
each one is read from the source text and compared with the real module's value on
MicroPython.
"""
import ast

import pytest

from conftest import ROOT

# module file -> the modules whose public names it mirrors
MIRRORS = {
    "firmware/metering.py": ("drivers.ade7880", "firmware.events", "firmware.energy",
                             "firmware.snapshot"),
    "firmware/leds.py": ("boards.contract", "firmware.events", "firmware.snapshot"),
    "firmware/app.py": ("firmware.events", "firmware.button", "firmware.leds"),
    "firmware/regmaps/table.py": ("firmware.snapshot",),
    "firmware/persist.py": ("firmware.events",),
    "firmware/supervisor.py": ("firmware.events",),
}


def private_consts(path):
    out = {}
    for node in ast.parse((ROOT / path).read_text()).body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id[:1] == "_" and isinstance(node.value, ast.Call)
                and getattr(node.value.func, "id", "") == "const"):
            try:
                out[node.targets[0].id[1:]] = ast.literal_eval(node.value.args[0])
            except ValueError:
                pass      # an expression of other consts: not a mirror
    return out


def public_ints(mpy, module):
    return mpy("import json, %s\nprint('@@JSON', json.dumps({k: v for k, v in "
               "%s.__dict__.items() if k[:1].isupper() and isinstance(v, int)}))"
               % (module, module))


@pytest.mark.parametrize("path", sorted(MIRRORS))
def test_private_mirrors_equal_their_sources(mpy, path):
    mine = private_consts(path)
    theirs = {}
    for m in MIRRORS[path]:
        for k, v in public_ints(mpy, m).items():
            theirs.setdefault(k, (m, v))
    mirrored = [k for k in mine if k in theirs]
    assert len(mirrored) >= 2, (path, sorted(mine))
    for k in mirrored:
        m, v = theirs[k]
        assert mine[k] == v, "%s: _%s = %r, but %s.%s is %r" % (path, k, mine[k], m, k, v)
