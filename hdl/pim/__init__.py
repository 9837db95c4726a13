"""Engine 2: the Logic-PIM unit on the HBM logic die (Duplex), in Amaranth.

``build(cfg)`` returns the top component (:class:`hdl.pim.unit.PIMUnit`);
sub-blocks: :mod:`hdl.pim.dram` (pseudo-channel model), :mod:`hdl.pim.ctrl`
(DRAM controller), :mod:`hdl.pim.gemm` (GEMM module). The golden model and the
cycle model are :mod:`golden.pim`; docs in docs/pim.md.
"""
from __future__ import annotations

from dataclasses import asdict

from golden.pim import CONFIG_DEFAULT, CONFIG_FPGA, CONFIG_SMALL, PIMConfig

from .unit import PIMUnit

MODULE_NAME = "moe_pim"

# "fpga": the default's datapath with a bank slice that fits the ECP5-85k's block
# RAM (golden.pim.CONFIG_FPGA); the FPGA flow builds it for --config default.
CONFIGS = {"default": CONFIG_DEFAULT, "small": CONFIG_SMALL, "fpga": CONFIG_FPGA}


def build(config: PIMConfig = CONFIG_DEFAULT) -> PIMUnit:
    return PIMUnit(config)


def config_params(config: PIMConfig) -> dict:
    """Flat name -> value for the Verilog header (timing fields prefixed ``timing.``)."""
    d = asdict(config)
    timing = d.pop("timing")
    d.update({f"timing.{k}": v for k, v in timing.items()})
    d.update(bundles=config.bundles, words=config.words, elems=config.elems)
    return d


__all__ = ["MODULE_NAME", "CONFIGS", "build", "config_params", "PIMUnit", "PIMConfig"]
