"""The CIM cycle model straight from a mapping (for shapes too large to encode or
simulate), and :func:`run_mapping`: encode + execute, for the pure-Python tests.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import FormatError
from .config import CIMConfig
from .execute import ExecResult, cost_cfg, cost_input, cost_loadw, cost_mid, cost_output, \
    cost_step, execute
from .mapper import Mapping, _as_list
from .program import encode_program, pack_inputs


def load_cycles(mapping: Mapping, config: CIMConfig) -> int:
    """Cycles to load every used array (one LOADW of all m columns per array)."""
    return mapping.arrays * cost_loadw(config.m, config)


def token_cycles(mapping: Mapping, config: CIMConfig, matrix: int = 0) -> int:
    """Cycles of one token section: INPUT, R steps, MID, L steps, OUTPUT."""
    n, b = mapping.n, mapping.b
    t = cost_input(n, config) + cost_mid(n, b, config) + cost_output(n, config)
    for s in mapping.steps:
        if s.matrix == matrix:
            t += cost_step(s.col_mask, b, config)
    return t


def program_cycles(mapping: Mapping, config: CIMConfig, tokens) -> int:
    """Total cycles of :func:`encode_program`'s program (no stalls)."""
    if isinstance(tokens, (int, np.integer)):
        tokens = [int(tokens)] * mapping.matrices
    total = load_cycles(mapping, config)
    for mat, t in enumerate(tokens):
        if t:
            total += cost_cfg(config) + t * token_cycles(mapping, config, mat)
    return total


def run_mapping(mapping: Mapping, monarchs, xs: Sequence[np.ndarray],
                config: CIMConfig | None = None) -> tuple[list, ExecResult]:
    """Encode + execute ``xs`` through matrix 0..K-1 (len(xs) tokens each, same xs).

    Returns the natural-order results ``y`` (one (n,) array per matrix and token, matrix
    major) and the :class:`ExecResult`. Used by the pure-Python tests of every strategy.
    """
    monarchs = _as_list(monarchs, mapping)
    if config is None:
        config = CIMConfig(array_size=mapping.array_size, arrays=max(1, mapping.arrays),
                           lanes=max(1, mapping.array_size // 8),
                           n_max=max(mapping.n, mapping.array_size))
    prog = encode_program(mapping, monarchs, len(xs), config)
    beats = pack_inputs(list(xs) * mapping.matrices, mapping.b, config)
    res = execute(prog.words, config, beats)
    if res.error != "OK":
        raise FormatError(f"program: {res.error} at word {res.error_index}")
    b = mapping.b
    ys = [np.asarray(z)[((np.arange(b * b) % b) * b + np.arange(b * b) // b)]
          for z in res.outputs]
    return ys, res
