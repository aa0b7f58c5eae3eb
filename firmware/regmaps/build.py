"""Build the register spaces the Modbus server serves from one meter.

    from firmware.regmaps.build import build_spaces
    holding, inputs = build_spaces(meter, ident, config)
    code = holding.read(40000, 2, out, 0)       # FC 03: KSEM + PnP + SunSpec
    code = inputs.read(0x0034, 2, out, 0)       # FC 04: SDM630 floats

ident (all optional): vendor, model, options, serial, hw_version, fw_version (strings;
versions "major.minor[.patch]" or uint16 ints for the PnP block), product_id (uint16,
KSEM PnP 0x2001). Missing keys take DEFAULT_IDENT.
config (all optional): i_max_a (rated current per phase, A; sizes SunSpec scale
factors), sunspec_sf ({"W_SF": 1, ...} overrides), sunspec_da (model 1 DA, default 1),
sdm630_max_regs (registers per FC 04 read, default 80, 0 = no limit).
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


def build_spaces(meter, ident=None, config=None, keep_rows=False):
    """(holding space for FC 03/06/16, input space for FC 04) over meter.front.

    keep_rows keeps the row tuples for Space.rows() (export tool, tests); the
    firmware leaves it off to save the heap."""
    idn = dict(DEFAULT_IDENT)
    if ident:
        idn.update(ident)
    cfg = config or {}
    holding = Space(meter, ksem.rows(idn) + sunspec.rows(idn, cfg),
                    ksem.GROUPS + sunspec.GROUPS, split_ok=True, keep_rows=keep_rows)
    inputs = Space(meter, sdm630.rows(), sdm630.GROUPS, split_ok=False,
                   max_count=int(cfg.get("sdm630_max_regs", sdm630.MAX_REGS)),
                   keep_rows=keep_rows)
    return holding, inputs
