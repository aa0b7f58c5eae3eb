"""The native (viper) kernels compile for the boards' architectures.

The unix port compiles viper at import for 64-bit x86, where every literal and folded
constant is a small int; on the boards (RP2040: armv6m, ESP32: xtensawin) 2**30 and
above are long-int objects, which viper refuses to mix with machine ints. So each
*_viper.py is compiled with mpy-cross for both, as a frozen build or a deploy does.
"""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MPY_CROSS = str(Path(sys.executable).parent / "mpy-cross")
KERNELS = sorted(p.relative_to(ROOT) for top in ("firmware", "drivers")
                 for p in (ROOT / top).rglob("*_viper.py"))


def test_there_are_kernels():
    assert len(KERNELS) >= 3, KERNELS


@pytest.mark.parametrize("arch", ["armv6m", "xtensawin"])
@pytest.mark.parametrize("path", KERNELS, ids=[str(k) for k in KERNELS])
def test_viper_kernel_compiles_for_the_boards(tmp_path, path, arch):
    p = subprocess.run([MPY_CROSS, "-march=" + arch, "-o", str(tmp_path / "k.mpy"),
                        str(path)], cwd=str(ROOT), capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "k.mpy").stat().st_size > 100
