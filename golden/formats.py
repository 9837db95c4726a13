"""Compressed weight formats and the token-selection array, exactly as the hardware reads them.

The arrays stored here are the bits loaded into the engine's weight and metadata
memories, so every constructor validates all of them: an invalid nibble or index
would make the RTL and the golden model silently disagree about what was meant.
Validated objects are immutable (their arrays are read-only copies).

Sparse24 (NVIDIA 2:4 along K)
    Each group of 4 consecutive K elements stores 2 values and a 4-bit nibble:
    bits [1:0] = index of the first value, bits [3:2] = index of the second,
    first < second. Padding convention (groups with fewer than 2 nonzeros):
    the kept positions are the nonzero positions topped up with the *lowest
    unused* indices, then sorted. So one nonzero at i pairs with 1 if i == 0,
    else with 0 (nibbles 0b0100, 0b0100, 0b1000, 0b1100 for i = 0..3), and an
    all-zero group is (0, 1) = 0b0100, values (0, 0).

SamoyedsWeight (N, M, V)
    Blocks of M rows x V columns; each row piece of V columns is a sub-row; N of
    the M sub-rows of each block are kept (data row r <-> block-row r // N, slot
    r % N), 2:4 inside each. Padding convention: when a block has fewer than N
    nonzero sub-rows, the kept list is the nonzero sub-rows topped up with the
    *lowest unused* sub-row indices, sorted (the same rule as for 2:4).
"""
from __future__ import annotations

import numpy as np

from .errors import FormatError

#: The six valid 2:4 nibbles, (first, second) index pairs with first < second.
VALID_NIBBLES = tuple((b << 2) | a for a in range(4) for b in range(4) if a < b)
_NIBBLE_OK = np.zeros(256, dtype=bool)
_NIBBLE_OK[list(VALID_NIBBLES)] = True

#: Samoyeds configurations from the paper (N, M, V); its kernel hard-codes (1, 2, 128).
PAPER_CONFIGS = ((1, 2, 16), (1, 2, 32), (4, 8, 32), (8, 16, 32), (1, 2, 128))


def _frozen(a: np.ndarray, dtype) -> np.ndarray:
    a = np.array(a, dtype=dtype, copy=True)
    a.flags.writeable = False
    return a


def _check_array(a, field: str, dtype, ndim: int = 2) -> np.ndarray:
    if not isinstance(a, np.ndarray):
        raise FormatError(f"{field}: expected a numpy ndarray, got {type(a).__name__}")
    if a.dtype != dtype:
        raise FormatError(f"{field}: expected dtype {np.dtype(dtype)}, got {a.dtype}")
    if a.ndim != ndim:
        raise FormatError(f"{field}: expected {ndim}-D, got shape {a.shape}")
    return a


def _check_nibbles(meta: np.ndarray, field: str) -> None:
    bad = ~_NIBBLE_OK[meta]
    if bad.any():
        r, g = np.argwhere(bad)[0]
        raise FormatError(f"{field}: row {r} group {g} has invalid 2:4 nibble "
                          f"{int(meta[r, g]):#06b} (indices must be a strictly increasing pair)")


def _check_24(w: np.ndarray, field: str) -> None:
    """w (int8, 2-D, k % 4 == 0) has at most 2 nonzeros in every group of 4."""
    m, k = w.shape
    if k % 4:
        raise FormatError(f"{field}: K = {k} is not a multiple of 4 (2:4 groups)")
    count = (w.reshape(m, k // 4, 4) != 0).sum(axis=-1)
    if (count > 2).any():
        r, g = np.argwhere(count > 2)[0]
        raise FormatError(f"{field}: row {r} group {g} (columns {4 * g}..{4 * g + 3}) has "
                          f"{count[r, g]} nonzeros; 2:4 allows at most 2")


def decode_meta(meta: np.ndarray) -> np.ndarray:
    """Absolute K column of every stored value: (rows, k/4) nibbles -> (rows, k/2) int64.

    This is the index the PE's 4:1 activation multiplexers compute.
    """
    meta = meta.astype(np.int64)
    pos = np.stack([meta & 3, meta >> 2], axis=-1)  # (rows, groups, 2)
    pos += 4 * np.arange(meta.shape[1])[:, None]
    return pos.reshape(meta.shape[0], 2 * meta.shape[1])


def _compress_24(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Values and nibbles of a conforming 2:4 matrix, with the module's padding rule."""
    m, k = w.shape
    g4 = w.reshape(m, k // 4, 4)
    # Stable sort on "is zero": nonzero positions first, then zeros, both ascending;
    # the first two are the nonzeros topped up with the lowest unused indices.
    keep = np.sort(np.argsort(g4 == 0, axis=-1, kind="stable")[..., :2], axis=-1)
    values = np.take_along_axis(g4, keep, axis=-1).reshape(m, k // 2)
    meta = (keep[..., 0] | (keep[..., 1] << 2)).astype(np.uint8)
    return values, meta


def _expand_24(values: np.ndarray, meta: np.ndarray) -> np.ndarray:
    m = values.shape[0]
    dense = np.zeros((m, 4 * meta.shape[1]), dtype=np.int8)
    np.put_along_axis(dense, decode_meta(meta), values, axis=1)
    return dense


class Sparse24:
    """An m x k int8 weight in NVIDIA 2:4 form, as loaded into the PE array's 2:4 mode.

    ``values`` (m, k/2) int8 feed the two multipliers of a PE; ``meta`` (m, k/4)
    uint8, one nibble per group, drives its two 4:1 activation multiplexers.
    """

    def __init__(self, values: np.ndarray, meta: np.ndarray):
        _check_array(values, "values", np.int8)
        _check_array(meta, "meta", np.uint8)
        m, g = meta.shape
        if values.shape != (m, 2 * g):
            raise FormatError(f"values: shape {values.shape} does not match meta shape "
                              f"{meta.shape} (expected {(m, 2 * g)})")
        _check_nibbles(meta, "meta")
        self.values = _frozen(values, np.int8)
        self.meta = _frozen(meta, np.uint8)

    @classmethod
    def from_dense(cls, w: np.ndarray) -> "Sparse24":
        _check_array(w, "w", np.int8)
        _check_24(w, "w")
        return cls(*_compress_24(w))

    def to_dense(self) -> np.ndarray:
        return _expand_24(self.values, self.meta)

    @property
    def shape(self) -> tuple[int, int]:
        return self.meta.shape[0], 4 * self.meta.shape[1]

    def __repr__(self):
        return f"Sparse24(shape={self.shape})"


def meta_words(meta: np.ndarray, groups_per_word: int = 8) -> np.ndarray:
    """Pack nibbles into metadata-memory words (uint32 for the default 8 groups per word).

    Group g of a row sits in word g // groups_per_word at bits 4*(g % groups_per_word)
    and up: the first group is in the least significant nibble. A short last word
    is padded with zero nibbles, which never describe a group.
    """
    _check_array(meta, "meta", np.uint8)
    if not 1 <= groups_per_word <= 16:
        raise FormatError(f"groups_per_word: {groups_per_word} out of range 1..16")
    m, g = meta.shape
    nw = -(-g // groups_per_word)
    padded = np.zeros((m, nw * groups_per_word), dtype=np.uint64)
    padded[:, :g] = meta
    shifts = (4 * np.arange(groups_per_word)).astype(np.uint64)
    words = (padded.reshape(m, nw, groups_per_word) << shifts).sum(axis=-1, dtype=np.uint64)
    return words.astype(np.uint32 if groups_per_word <= 8 else np.uint64)


def prune_2to4(w: np.ndarray) -> np.ndarray:
    """Keep the 2 largest |x| of every group of 4 (ties: lower index), zero the rest."""
    _check_array(w, "w", np.int8)
    m, k = w.shape
    if k % 4:
        raise FormatError(f"w: K = {k} is not a multiple of 4 (2:4 groups)")
    g4 = w.reshape(m, k // 4, 4)
    order = np.argsort(-np.abs(g4.astype(np.int16)), axis=-1, kind="stable")
    mask = np.zeros(g4.shape, dtype=bool)
    np.put_along_axis(mask, order[..., :2], True, axis=-1)
    return np.where(mask, g4, 0).astype(np.int8).reshape(m, k)


def _check_nmv(n, m, v) -> tuple[int, int, int]:
    for name, val in (("n", n), ("m", m), ("v", v)):
        if isinstance(val, (bool, np.bool_)) or not isinstance(val, (int, np.integer)):
            raise FormatError(f"{name}: expected an integer, got {val!r}")
    n, m, v = int(n), int(m), int(v)
    if not 1 <= n <= m:
        raise FormatError(f"n: {n} must satisfy 1 <= n <= m = {m}")
    if v < 4 or v % 4:
        raise FormatError(f"v: {v} must be a positive multiple of 4 (2:4 inside sub-rows)")
    return n, m, v


def _check_samoyeds_shape(rows: int, k: int, m: int, v: int, field: str) -> None:
    if rows % m:
        raise FormatError(f"{field}: {rows} rows is not a multiple of m = {m}")
    if k % v:
        raise FormatError(f"{field}: K = {k} is not a multiple of v = {v}")


class SamoyedsWeight:
    """A rows x k int8 weight in Samoyeds (N, M, V) form.

    ``data`` (rows*N/M, k/2) int8 and ``meta`` (rows*N/M, k/4) uint8 are the 2:4
    form of the kept sub-rows; ``indices`` (rows*N/M, k/V) says which of the M
    sub-rows of its block each one is. For column block j, data row r belongs to
    original row ``(r // N) * M + indices[r, j]``: the hardware re-targets its
    accumulators with exactly this every V columns.
    """

    def __init__(self, data, indices, meta, n: int, m: int, v: int):
        n, m, v = _check_nmv(n, m, v)
        _check_array(data, "data", np.int8)
        _check_array(meta, "meta", np.uint8)
        if not isinstance(indices, np.ndarray) or indices.dtype.kind not in "iu":
            raise FormatError(f"indices: expected an integer ndarray, got "
                              f"{getattr(indices, 'dtype', type(indices).__name__)}")
        _check_array(indices, "indices", indices.dtype)
        r, k = data.shape[0], 2 * data.shape[1]
        if r % n:
            raise FormatError(f"data: {r} rows is not a multiple of n = {n}")
        if k % v:
            raise FormatError(f"data: K = {k} is not a multiple of v = {v}")
        if meta.shape != (r, k // 4):
            raise FormatError(f"meta: shape {meta.shape}, expected {(r, k // 4)}")
        if indices.shape != (r, k // v):
            raise FormatError(f"indices: shape {indices.shape}, expected {(r, k // v)}")
        _check_nibbles(meta, "meta")
        out = (indices < 0) | (indices >= m)     # on the stored dtype: no wrap-around
        if out.any():
            i, j = np.argwhere(out)[0]
            raise FormatError(f"indices: row {i} column block {j} has value "
                              f"{int(indices[i, j])}, outside 0..{m - 1}")
        idx = indices.astype(np.int64)
        step = np.diff(idx.reshape(r // n, n, k // v), axis=1)
        if (step <= 0).any():
            b, s, j = np.argwhere(step <= 0)[0]
            raise FormatError(f"indices: block-row {b} column block {j}: kept sub-rows must be "
                              f"strictly increasing, got {idx[b * n + s, j]} then "
                              f"{idx[b * n + s + 1, j]} at rows {b * n + s}, {b * n + s + 1}")
        self.n, self.m, self.v = n, m, v
        self.data = _frozen(data, np.int8)
        self.meta = _frozen(meta, np.uint8)
        self.indices = _frozen(idx, _index_dtype(m))

    @classmethod
    def from_dense(cls, w: np.ndarray, n: int, m: int, v: int) -> "SamoyedsWeight":
        n, m, v = _check_nmv(n, m, v)
        _check_array(w, "w", np.int8)
        rows, k = w.shape
        _check_samoyeds_shape(rows, k, m, v, "w")
        blocks = w.reshape(rows // m, m, k // v, v)
        nz = (blocks != 0).any(axis=-1)  # (block-rows, m, column blocks)
        count = nz.sum(axis=1)
        if (count > n).any():
            b, j = np.argwhere(count > n)[0]
            raise FormatError(f"w: block at rows {b * m}..{b * m + m - 1}, columns "
                              f"{j * v}..{j * v + v - 1} has {count[b, j]} nonzero sub-rows; "
                              f"n = {n} allowed")
        _check_24(w, "w")
        # Nonzero sub-rows first, topped up with the lowest unused indices, sorted.
        keep = np.sort(np.argsort(~nz, axis=1, kind="stable")[:, :n, :], axis=1)
        sub = np.take_along_axis(blocks, keep[..., None], axis=1)  # (B, n, J, v)
        r = rows // m * n
        data, meta = _compress_24(sub.reshape(r, k))
        return cls(data, keep.reshape(r, k // v), meta, n, m, v)

    def to_dense(self) -> np.ndarray:
        rows, k = self.shape
        sub = _expand_24(self.data, self.meta).reshape(rows // self.m, self.n, k // self.v, self.v)
        dense = np.zeros((rows // self.m, self.m, k // self.v, self.v), dtype=np.int8)
        idx = self.indices.astype(np.int64).reshape(rows // self.m, self.n, k // self.v)
        np.put_along_axis(dense, idx[..., None], sub, axis=1)
        return dense.reshape(rows, k)

    @property
    def shape(self) -> tuple[int, int]:
        return self.data.shape[0] // self.n * self.m, 2 * self.data.shape[1]

    def __repr__(self):
        return f"SamoyedsWeight(shape={self.shape}, n={self.n}, m={self.m}, v={self.v})"


def _index_dtype(m: int):
    return np.uint8 if m <= 256 else np.int16 if m <= 1 << 15 else np.int32


def prune_samoyeds(w: np.ndarray, n: int, m: int, v: int) -> np.ndarray:
    """Keep the N sub-rows of largest L1 norm per block (ties: lower index), then 2:4-prune."""
    n, m, v = _check_nmv(n, m, v)
    _check_array(w, "w", np.int8)
    rows, k = w.shape
    _check_samoyeds_shape(rows, k, m, v, "w")
    blocks = w.reshape(rows // m, m, k // v, v)
    l1 = np.abs(blocks.astype(np.int64)).sum(axis=-1)
    order = np.argsort(-l1, axis=1, kind="stable")
    mask = np.zeros(l1.shape, dtype=bool)
    np.put_along_axis(mask, order[:, :n, :], True, axis=1)
    kept = np.where(mask[..., None], blocks, 0).astype(np.int8).reshape(rows, k)
    return prune_2to4(kept)


def check_sel(sel, num_tokens: int) -> np.ndarray:
    """Validate SEL, the sorted unique list of token columns routed to an expert.

    The hardware walks SEL once, gathering columns in order and writing output
    column j for token sel[j]; an unsorted or repeated entry would make its
    compressed output ambiguous, so both are refused. Returns an int64 copy.
    """
    a = np.asarray(sel)
    if a.size == 0 and not isinstance(sel, np.ndarray):
        a = a.astype(np.int64)  # a plain empty list defaults to float64
    if a.dtype.kind not in "iu":
        raise FormatError(f"sel: expected integer token indices, got dtype {a.dtype}")
    if a.ndim != 1:
        raise FormatError(f"sel: expected a 1-D array, got shape {a.shape}")
    bad = (a < 0) | (a >= num_tokens)      # on the given dtype: a huge uint64 stays huge
    if bad.any():
        i = int(np.argmax(bad))
        raise FormatError(f"sel: position {i} has token {int(a[i])}, outside "
                          f"0..{num_tokens - 1}")
    a = a.astype(np.int64)
    step = np.diff(a)
    if (step <= 0).any():
        i = int(np.argmax(step <= 0)) + 1
        what = "duplicate" if step[i - 1] == 0 else "unsorted"
        raise FormatError(f"sel: position {i} has token {a[i]} after {a[i - 1]} "
                          f"({what}; SEL must be strictly increasing)")
    return a
