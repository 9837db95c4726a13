"""Engine 3: the CIM tile controller for block-diagonal (Monarch) weights, in Amaranth.

``build(cfg)`` returns the top component (:class:`hdl.cim.tile.CIMTile`): digital CIM
arrays (int8 cells, exact int32 column dot products over the activated rows) and the
controller that executes a program from :func:`golden.cim.encode_program`. The golden
model, mapper, program format and cycle model are :mod:`golden.cim`; docs in docs/cim.md.
"""
from __future__ import annotations

from dataclasses import asdict

from golden.cim import CIMConfig

from .tile import CIMTile

MODULE_NAME = "moe_cim"

CONFIGS = {
    # Simulation default: 32 x 32 arrays, 4 columns read per cycle, n up to 256.
    "default": CIMConfig(array_size=32, arrays=64, lanes=4, n_max=256),
    # Smallest sensible tile (CI synthesis smoke, fast tests): 16 x 16 arrays.
    "small": CIMConfig(array_size=16, arrays=16, lanes=2, n_max=64),
}


def build(config: CIMConfig = CONFIGS["default"]) -> CIMTile:
    return CIMTile(config)


def config_params(config: CIMConfig) -> dict:
    d = asdict(config)
    d.update(b_min=config.b_min, b_max=config.b_max, lines=config.lines)
    return d


__all__ = ["MODULE_NAME", "CONFIGS", "build", "config_params", "CIMTile", "CIMConfig"]
