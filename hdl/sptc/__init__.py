"""Engine 1: the Sparse Tensor Core with dual-side structured sparsity (Samoyeds)."""
from golden.sptc import SpTCConfig

from .core import SparseTensorCore, lane_layout, result_layout, weight_layout

MODULE_NAME = "moe_sptc"
CONFIGS = {
    "default": SpTCConfig(),
    "small": SpTCConfig(rows=4, cols=4, max_k=64, max_tokens=16, max_sel=16,
                        samoyeds_nm=((1, 2), (2, 4))),
}


def build(config: SpTCConfig = CONFIGS["default"]) -> SparseTensorCore:
    return SparseTensorCore(config)


def config_params(config: SpTCConfig) -> dict:
    return {"rows": config.rows, "cols": config.cols, "max_k": config.max_k,
            "max_tokens": config.max_tokens, "max_sel": config.max_sel,
            "samoyeds_nm": config.samoyeds_nm}


__all__ = ["SparseTensorCore", "SpTCConfig", "MODULE_NAME", "CONFIGS", "build", "config_params",
           "lane_layout", "weight_layout", "result_layout"]
