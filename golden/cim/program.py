"""Building CIM programs: :func:`encode_program` turns a mapping and its Monarch
matrices into the controller's words; activation beats in, result beats out.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import FormatError
from ..monarch import fold_input
from .config import CIMConfig, _int
from .isa import OP_INPUT, OP_MID, OP_OUTPUT, column_words, enc_cfg, enc_loadw, enc_step
from .mapper import Mapping, _as_list, array_weights


@dataclass(frozen=True, eq=False)
class Program:
    """An encoded program and what it expects on its streams."""
    words: np.ndarray        # uint64
    config: CIMConfig
    mapping: Mapping
    tokens: tuple            # tokens per matrix, in program order
    n: int

    @property
    def beats_per_token(self) -> int:
        return self.n // self.config.lanes

    def __len__(self):
        return len(self.words)


def encode_program(mapping: Mapping, monarchs, tokens, config: CIMConfig) -> Program:
    """Binary program: load every used array, then per matrix a CFG and its tokens.

    ``tokens``: int (same count for every matrix) or one count per matrix. Each token
    section is ``INPUT, stage-R STEPs, MID, stage-L STEPs, OUTPUT``.
    """
    monarchs = _as_list(monarchs, mapping)
    if not isinstance(config, CIMConfig):
        raise FormatError(f"config: expected a CIMConfig, got {type(config).__name__}")
    if mapping.array_size != config.m:
        raise FormatError(f"array_size: mapping uses {mapping.array_size}, config has "
                          f"{config.m}")
    config.check_b(mapping.b)
    if mapping.n > config.n_max:
        raise FormatError(f"n: {mapping.n} exceeds the config's n_max {config.n_max}")
    if mapping.arrays > config.arrays:
        raise FormatError(f"arrays: the {mapping.strategy} mapping needs {mapping.arrays} "
                          f"arrays, the config has {config.arrays}")
    if isinstance(tokens, (int, np.integer)) and not isinstance(tokens, bool):
        tokens = [int(tokens)] * mapping.matrices
    tokens = [_int(t, "tokens") for t in tokens]
    if len(tokens) != mapping.matrices or any(t < 0 for t in tokens):
        raise FormatError(f"tokens: expected {mapping.matrices} counts >= 0, got {tokens}")
    m = config.m
    words: list[int] = []
    W = array_weights(mapping, monarchs)
    for a in range(mapping.arrays):
        words.append(enc_loadw(a, 0, m))
        for c in range(m):
            words += column_words(W[a][:, c])
    log2b = mapping.b.bit_length() - 1
    for mat, mon in enumerate(monarchs):
        if not tokens[mat]:
            continue
        words.append(enc_cfg(log2b, mon.mid_mode, mon.out_mode))
        r_steps = [enc_step(s) for s in mapping.steps_for(mat, 0)]
        l_steps = [enc_step(s) for s in mapping.steps_for(mat, 1)]
        for _ in range(tokens[mat]):
            words += [OP_INPUT, *r_steps, OP_MID, *l_steps, OP_OUTPUT]
    return Program(np.array(words, dtype=np.uint64), config, mapping, tuple(tokens), mapping.n)


def pack_inputs(xs: Sequence[np.ndarray], b: int, config: CIMConfig) -> list[int]:
    """Activation beats for a list of natural-order int8 vectors (folds the leading P)."""
    beats: list[int] = []
    p = config.lanes
    for x in xs:
        x = np.asarray(x)
        if x.dtype != np.int8 or x.shape != (b * b,):
            raise FormatError(f"x: expected an int8 vector of length {b * b}, got "
                              f"{x.dtype} {x.shape}")
        raw = fold_input(x, b).view(np.uint8)
        beats += [int.from_bytes(bytes(raw[i:i + p]), "little") for i in range(0, len(raw), p)]
    return beats


def unpack_outputs(beats: Sequence[int], n: int, config: CIMConfig) -> np.ndarray:
    """Output beats -> (tokens, n) int64 values in hardware (stage-L) order."""
    p = config.lanes
    vals = []
    for beat in beats:
        for i in range(p):
            v = (int(beat) >> (32 * i)) & 0xFFFFFFFF
            vals.append(v - (1 << 32) if v >> 31 else v)
    a = np.array(vals, dtype=np.int64)
    if a.size % n:
        raise FormatError(f"beats: {len(beats)} beats do not make whole vectors of {n}")
    return a.reshape(-1, n)
