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
    # Simulation default: 64 x 64 arrays (the default and the smallest array size
    # of the benchmark sweep), 8 columns read per cycle (8 columns per ADC, as the
    # benchmark's cycle model), n up to 1024 (b = 8, 16, 32), 64 arrays (256 KiB of
    # weights: n=1024 SparseMap needs 32, an 8-expert n=256 layer under DenseMap 48).
    "default": CIMConfig(array_size=64, arrays=64, lanes=8, n_max=1024),
    # The previous simulation default, sized for the ECP5-85k flow (128 multipliers,
    # 512 kbit of weights; the 64 x 64 default needs 512 multipliers and 2 Mbit):
    # `python -m synth flow --engine cim --config fpga`. Pipelined for the FPGA
    # (docs/timing.md, "CIM tile"): every adder-tree level and the requantizers registered.
    "fpga": CIMConfig(array_size=32, arrays=64, lanes=4, n_max=256, step_stages=11,
                      out_stages=7),
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
