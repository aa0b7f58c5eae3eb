"""Ten years of 1 s increments through the real EnergyRegisters.add_lsb (`make soak`).

    micropython tools/mpy/soak_energy.py 1 50000     # watts; ~3 min per profile

Each second adds what the engine would: the chip's whole LSBs for that second (the
fraction stays in the chip) times the pWh per LSB of the sim board's calibration, by
add_lsb as the engine does. At the
end the register must hold exactly the sum of all adds.
"""
import json
import sys

from firmware.energy import EnergyRegisters

KE = 126267100                      # pWh per LSB (boards/sim/board.py wh_per_lsb)
SECONDS = 10 * 365 * 24 * 3600


def soak(watts):
    num, den = watts * 10**12, KE * 3600       # LSB per second, exactly
    r = EnergyRegisters(1)
    r.set_scale(KE)
    add = r.add_lsb
    prev = 0
    acc = 0
    for t in range(1, SECONDS + 1):
        acc += num
        cur = acc // den
        add(0, cur - prev)
        prev = cur
    exact = prev * KE
    return {"watts": watts, "seconds": SECONDS, "exact": r.pico(0) == exact,
            "mwh": r.milli(0), "expected_mwh": exact // 10**9}


out = [soak(int(w)) for w in (sys.argv[1:] or ["1", "50000"])]
print("@@JSON", json.dumps(out))
