"""The MoE-layer top (SpTC + Logic-PIM + dispatcher + combine), in Amaranth.

The schedule compiler and the golden layer are :mod:`golden.schedule` and
:mod:`golden.moe`; docs in docs/moe.md.
"""
from __future__ import annotations

from dataclasses import asdict, replace

from golden.moe import MoEConfig, PIM_SMALL, SPTC_SMALL

from .top import MoETop, trace_layout, y_layout

MODULE_NAME = "moe_layer"

CONFIGS = {
    # 4x4 SpTC (K <= 256, 64 token slots) + the small Logic-PIM (128-bit bundles, 8
    # tokens, 512 KiB of banks); 32 tokens per step, hidden <= 64, ffn <= 256
    "default": MoEConfig(),
    # the regression's top: 16 tokens, hidden <= 32, ffn <= 128, 128 KiB of Logic-PIM
    # banks, y beats of 8 rows (4 per token), so the narrow drain is covered as the
    # default's whole-row drain is by make sim's top
    "small": MoEConfig(pim=replace(PIM_SMALL, rows=256), max_tokens=16, max_hidden=32,
                       max_ffn=128, tok_depth=16, y_lanes=8),
    # make synth's ECP5 build: the default top with 32 KiB of Logic-PIM banks (2,048
    # words; the default's 512 KiB exceed the ECP5-85k's 3.7 Mbit of block RAM)
    "fpga": MoEConfig(pim=replace(PIM_SMALL, rows=64)),
}


def build(config: MoEConfig = CONFIGS["default"]) -> MoETop:
    return MoETop(config)


def config_params(config: MoEConfig) -> dict:
    d = {f"sptc.{k}": v for k, v in asdict(config.sptc).items()}
    p = asdict(config.pim)
    p.pop("timing")
    d.update({f"pim.{k}": v for k, v in p.items()})
    d.update(max_tokens=config.max_tokens, max_hidden=config.max_hidden,
             max_ffn=config.max_ffn,
             expert_bits=config.expert_bits, job_depth=config.job_depth,
             tok_depth=config.tok_depth, y_lanes=config.lanes)
    return d


__all__ = ["MODULE_NAME", "CONFIGS", "build", "config_params", "MoETop", "MoEConfig",
           "PIM_SMALL", "SPTC_SMALL", "y_layout", "trace_layout"]
