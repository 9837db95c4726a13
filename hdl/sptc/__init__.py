"""Engine 1: the Sparse Tensor Core with dual-side structured sparsity (Samoyeds)."""
from .config import SpTCConfig, lane_layout, result_layout, sel_layout, weight_layout
from .core import SparseTensorCore

MODULE_NAME = "moe_sptc"
CONFIGS = {
    "default": SpTCConfig(),
    # The regression's build: 4 x 4 PEs, every paper (N, M) that fits 4 rows,
    # and room for a scaled-down trace step (hidden 64, up to 64 tokens).
    "small": SpTCConfig(rows=4, cols=4, max_k=64, max_tokens=64, max_sel=64,
                        samoyeds_nm=((1, 2), (2, 4), (4, 8))),
}


def build(config: SpTCConfig = CONFIGS["default"]) -> SparseTensorCore:
    return SparseTensorCore(config)


def config_params(config: SpTCConfig) -> dict:
    return {"rows": config.rows, "cols": config.cols, "max_k": config.max_k,
            "max_tokens": config.max_tokens, "max_sel": config.max_sel,
            "samoyeds_nm": config.samoyeds_nm, "sel_lanes": config.sel_lanes,
            "drain_rows": config.drain_rows, "requant_hi_dsp": config.requant_hi_dsp}


__all__ = ["SparseTensorCore", "SpTCConfig", "MODULE_NAME", "CONFIGS", "build", "config_params",
           "lane_layout", "weight_layout", "result_layout", "sel_layout"]
