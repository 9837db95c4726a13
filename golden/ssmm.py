"""Selected sparse matrix multiplication: the golden model of Engine 1 (the SpTC).

``ssmm`` computes ``W @ X[:, sel]`` the way the hardware does, from the compressed
operands: for 2:4 weights each stored value meets the activation row its nibble
selects (the PE's 4:1 multiplexer), and for Samoyeds weights each kept sub-row's
partial sum over a V-column block is added to the output row named by
``indices`` (data-stationary accumulation, re-targeted every V columns). It
never expands a weight to dense, so a format or decoding bug cannot hide behind
a correct dense product; the tests compare it against a plain int64 matmul.
"""
from __future__ import annotations

import numpy as np

from .errors import FormatError
from .formats import SamoyedsWeight, Sparse24, check_sel, decode_meta
from .numerics import INT32_MAX, INT32_MIN, apply_out, check_k, parse_out

_CHUNK = 1 << 21  # int64 elements per intermediate: bounds memory to ~16 MB


def _block_partials(values: np.ndarray, meta: np.ndarray, xs: np.ndarray, block: int):
    """Per-row partial sums of a 2:4 matrix times xs, one per ``block`` K columns.

    values (R, k/2) int8, meta (R, k/4) nibbles, xs (k, T) int8 -> (R, k/block, T) int64.
    """
    r, half = values.shape
    t = xs.shape[1]
    nb = 2 * half // block if half else 0
    out = np.zeros((r, nb, t), dtype=np.int64)
    if half == 0:  # K = 0: every sum is empty
        return out
    cols = decode_meta(meta)  # (R, k/2) absolute activation row of each stored value
    tc = max(1, min(t, _CHUNK // max(half, 1)))
    rc = max(1, _CHUNK // max(half * tc, 1))
    for t0 in range(0, t, tc):
        xt = xs[:, t0:t0 + tc]
        for r0 in range(0, r, rc):
            gathered = xt[cols[r0:r0 + rc]].astype(np.int64)  # (rc, k/2, tc)
            prod = values[r0:r0 + rc, :, None].astype(np.int64) * gathered
            prod = prod.reshape(len(gathered), nb, block // 2, xt.shape[1])
            out[r0:r0 + rc, :, t0:t0 + tc] = prod.sum(axis=2)
    return out


def _weight_shape(weight) -> tuple[int, int]:
    if isinstance(weight, (Sparse24, SamoyedsWeight)):
        return weight.shape
    if not isinstance(weight, np.ndarray):
        raise FormatError(f"weight: expected an int8 ndarray, Sparse24 or SamoyedsWeight, "
                          f"got {type(weight).__name__}")
    if weight.dtype != np.int8 or weight.ndim != 2:
        raise FormatError(f"weight: expected a 2-D int8 array, got dtype {weight.dtype} "
                          f"shape {weight.shape}")
    return weight.shape


def ssmm(weight, x: np.ndarray, sel=None, out="int32") -> np.ndarray:
    """``W @ X[:, sel]`` with output mode ``out``; returns (rows of W, len(sel)).

    weight: int8 (m, k) ndarray, Sparse24 or SamoyedsWeight. x: int8 (k, T), one
    token per column. sel: sorted unique token columns (None = all); output
    column j is token sel[j] (compressed output, as the hardware writes it).
    """
    mode = parse_out(out)
    m, k = _weight_shape(weight)
    if not isinstance(x, np.ndarray) or x.dtype != np.int8 or x.ndim != 2:
        what = f"dtype {x.dtype} shape {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
        raise FormatError(f"x: expected a 2-D int8 array, got {what}")
    check_k(k)
    check_k(x.shape[0])
    if x.shape[0] != k:
        raise FormatError(f"x: {x.shape[0]} rows, but the weight has K = {k} columns")
    xs = x if sel is None else x[:, check_sel(sel, x.shape[1])]

    if isinstance(weight, np.ndarray):
        acc = weight.astype(np.int64) @ xs.astype(np.int64)
    elif isinstance(weight, Sparse24):
        acc = _block_partials(weight.values, weight.meta, xs, k).sum(axis=1)
    else:
        w = weight
        part = _block_partials(w.data, w.meta, xs, w.v)  # (m*N/M, k/V, T)
        # Output row of data row r in column block j: (r // N) * M + indices[r, j].
        target = (np.arange(w.data.shape[0]) // w.n * w.m)[:, None] + w.indices.astype(np.int64)
        acc = np.zeros((m, xs.shape[1]), dtype=np.int64)
        for j in range(k // w.v):  # targets within one column block are distinct
            acc[target[:, j]] += part[:, j]
    assert acc.size == 0 or (INT32_MIN <= acc.min() and acc.max() <= INT32_MAX), \
        "accumulator left int32 despite K <= MAX_K"
    return apply_out(acc, mode)
