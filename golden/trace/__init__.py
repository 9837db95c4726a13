"""MoE routing traces: the model, the generator and the ``.npz`` file format.

Pure numpy (no RTL): every layer above (the RTL benches in ``tb``, the runners and
``make sim`` in ``sim``) reads traces through this package.

* :mod:`golden.trace.model`: model presets, scaled shapes, :class:`Trace` and
  :class:`TraceStep`;
* :mod:`golden.trace.generator`: :func:`generate` (continuous batching, top-k
  routing, uniform / zipf / hot load skew);
* :mod:`golden.trace.fileformat`: :func:`save`, :func:`load` (strict validation,
  no pickles) and the shipped default trace (:func:`load_default`).

The command line (``python -m sim.traces gen | import | show``) is :mod:`sim.traces`;
recorded routing is imported by :mod:`sim.recorded`.
"""
from .fileformat import DEFAULT_PATH, from_arrays, load, load_default, save
from .generator import generate, quantize_gate
from .model import (PAPER_SETUPS, PRESETS, SCHEMA_VERSION, SKEWS, ModelPreset, Trace, TraceStep,
                    preset_shape, scaled_dim)

__all__ = ["DEFAULT_PATH", "PAPER_SETUPS", "PRESETS", "SCHEMA_VERSION", "SKEWS", "ModelPreset",
           "Trace", "TraceStep", "from_arrays", "generate", "load", "load_default",
           "preset_shape", "quantize_gate", "save", "scaled_dim"]
