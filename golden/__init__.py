"""numpy golden models of moe-rtl: formats, bit-exact arithmetic, schedulers, cycle models.

Every RTL output in this project is compared element by element against a
function in this package. The golden models compute from the compressed
representations (values + metadata, indices, SEL) exactly as the hardware is
meant to, and are themselves checked against plain int64 dense references.

Engine-specific models are sub-modules, imported lazily so that importing
``golden`` stays cheap: ``golden.sptc``, ``golden.duplex``, ``golden.pim``,
``golden.monarch``, ``golden.cim``, ``golden.ffn``, ``golden.schedule``, ``golden.moe``,
``golden.trace`` (MoE routing traces), ``golden.softmax``, ``golden.attention``.
"""
import importlib

from .errors import FormatError
from .numerics import MAX_K, OutMode, apply_out, parse_out, requant, sat8
from .formats import Sparse24, SamoyedsWeight, check_sel, prune_2to4, prune_samoyeds
from .ssmm import ssmm

__all__ = [
    "FormatError", "MAX_K", "OutMode", "apply_out", "parse_out", "requant", "sat8",
    "Sparse24", "SamoyedsWeight", "check_sel", "prune_2to4", "prune_samoyeds", "ssmm",
]

_SUBMODULES = {"sptc", "duplex", "pim", "monarch", "cim", "ffn", "schedule", "moe", "trace",
               "softmax", "attention"}


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'golden' has no attribute {name!r}")
