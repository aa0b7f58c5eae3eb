"""Build the register spaces the Modbus server serves from one meter.

    from firmware.regmaps.build import build_spaces
    holding, inputs = build_spaces(meter, ident, config)
    code = holding.read(40000, 2, out, 0)       # FC 03: KSEM + PnP + SunSpec
    code = inputs.read(0x0034, 2, out, 0)       # FC 04: SDM630 floats

ident (all optional): vendor, model, options, serial, hw_version, fw_version (strings;
versions "major.minor[.patch]" or uint16 ints for the PnP block), product_id (uint16,
KSEM PnP 0x2001). Missing keys take DEFAULT_IDENT.
config (all optional; check_config() names a bad key or value): i_max_a (rated current
per phase, A: 63 direct or the CT primary; sizes the SunSpec scale factors), phases
(3, or 1 for single-phase wiring), sunspec_sf ({"W_SF": 0, ...} overrides, -3..6),
sunspec_da (model 1 DA, 1..247, default 1), sdm630_max_regs (registers per FC 04
read, default 80, 0 = no limit). The firmware config carries sunspec_sf and
sunspec_da under "modbus" (firmware/config.py validates them with check_config()).
"""
from firmware.regmaps.table import Space
from firmware.version import VERSION
from firmware.regmaps import ksem, sunspec, sdm630

DEFAULT_IDENT = {
    "vendor": "OpenMeter",
    "model": "3P-ADE7880",
    "options": "",
    "serial": "00000000",
    "hw_version": "1.0",
    "fw_version": VERSION,    # one identity source: firmware/version.py
    "product_id": ksem.DEFAULT_PRODUCT_ID,
}


CONFIG_KEYS = ("i_max_a", "phases", "sunspec_sf", "sunspec_da", "sdm630_max_regs")


def check_config(config):
    """Raise ValueError naming the first unknown key or bad value of a map config."""
    for k in config:
        if k not in CONFIG_KEYS:
            raise ValueError("map config: unknown key %r (known: %s)"
                             % (k, ", ".join(CONFIG_KEYS)))
    sunspec.scale_factors(config)    # i_max_a, phases, sunspec_sf
    for k, lo, hi in (("sunspec_da", 1, 247), ("sdm630_max_regs", 0, 125)):
        v = config.get(k, lo)
        if not isinstance(v, int) or not lo <= v <= hi:
            raise ValueError("%s must be a whole number %d..%d, got %r" % (k, lo, hi, v))


def build_spaces(meter, ident=None, config=None, keep_rows=False):
    """(holding space for FC 03/06/16, input space for FC 04) over meter.front.

    keep_rows keeps the row tuples for Space.rows() (export tool, tests); the
    firmware leaves it off to save the heap."""
    idn = dict(DEFAULT_IDENT)
    if ident:
        idn.update(ident)
    cfg = config or {}
    check_config(cfg)
    holding = Space(meter, ksem.rows(idn) + sunspec.rows(idn, cfg),
                    ksem.GROUPS + sunspec.GROUPS, split_ok=True, keep_rows=keep_rows)
    inputs = Space(meter, sdm630.rows(), sdm630.GROUPS, split_ok=False,
                   max_count=int(cfg.get("sdm630_max_regs", sdm630.MAX_REGS)),
                   keep_rows=keep_rows)
    return holding, inputs
