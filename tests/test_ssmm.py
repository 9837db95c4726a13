"""ssmm (computed from compressed operands) against an independent dense int64 reference."""
import zlib

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from golden import (MAX_K, FormatError, OutMode, SamoyedsWeight, Sparse24, prune_2to4,
                    prune_samoyeds, ssmm)
from golden.formats import PAPER_CONFIGS

MODES = ["int32", "int8_sat", ("requant", 1, 1), ("requant", 0, 7), ("requant", 65535, 31),
         ("requant", 300, 12), ("requant", 65535, 1), OutMode("requant", 77, 9)]


def ref_out(acc, out):
    """The output modes written out independently of golden.numerics, with Python ints."""
    if isinstance(out, OutMode):
        out = out.kind if out.kind != "requant" else ("requant", out.mult, out.shift)
    if out == "int32":
        f = int
    elif out == "int8_sat":
        def f(a):
            return max(-128, min(127, a))
    else:
        _, mult, shift = out

        def f(a):
            return max(-128, min(127, (a * mult + (1 << (shift - 1))) >> shift))
    return np.array([[f(int(a)) for a in row] for row in acc], dtype=np.int64).reshape(acc.shape)


def reference(w_dense, x, sel, out):
    acc = w_dense.astype(np.int64) @ x.astype(np.int64)
    if sel is not None:
        acc = acc[:, sel]
    return ref_out(acc, out)


def check(weight, w_dense, x, sel, out):
    y = ssmm(weight, x, sel, out)
    kind = out.kind if isinstance(out, OutMode) else (out if isinstance(out, str) else out[0])
    assert y.dtype == (np.int32 if kind == "int32" else np.int8)
    assert y.shape == (w_dense.shape[0], x.shape[1] if sel is None else len(sel))
    np.testing.assert_array_equal(y.astype(np.int64), reference(w_dense, x, sel, out))


def random_sel(rng, t):
    dtype = rng.choice([np.int32, np.int64, np.uint16])
    return np.flatnonzero(rng.random(t) < rng.random()).astype(dtype)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 9), st.integers(1, 6), st.integers(0, 7), st.sampled_from(MODES),
       st.integers(0, 2**32 - 1))
def test_dense_and_sparse24(m, groups, t, out, seed):
    rng = np.random.default_rng(seed)
    k = 4 * groups
    w = rng.integers(-128, 128, (m, k), dtype=np.int8)
    x = rng.integers(-128, 128, (k, t), dtype=np.int8)
    sel = None if rng.random() < 0.3 else random_sel(rng, t)
    check(w, w, x, sel, out)
    w24 = prune_2to4(w)
    check(Sparse24.from_dense(w24), w24, x, sel, out)


@pytest.mark.parametrize("cfg", PAPER_CONFIGS)
@pytest.mark.parametrize("out", MODES)
def test_samoyeds_paper_configs(cfg, out):
    n, m, v = cfg
    rng = np.random.default_rng(zlib.crc32(repr((cfg, out)).encode()))
    rows, k, t = 2 * m, 3 * v, 9
    w = prune_samoyeds(rng.integers(-128, 128, (rows, k), dtype=np.int8), n, m, v)
    x = rng.integers(-128, 128, (k, t), dtype=np.int8)
    s = SamoyedsWeight.from_dense(w, n, m, v)
    for sel in (None, np.array([0, 2, 3, 8]), np.array([5]), np.array([], dtype=np.int64)):
        check(s, w, x, sel, out)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(PAPER_CONFIGS + ((2, 4, 8), (3, 5, 4))), st.integers(1, 3),
       st.integers(1, 3), st.integers(0, 6), st.sampled_from(MODES), st.integers(0, 2**32 - 1))
def test_samoyeds_random(cfg, br, bc, t, out, seed):
    n, m, v = cfg
    rng = np.random.default_rng(seed)
    w = rng.integers(-128, 128, (br * m, bc * v), dtype=np.int8)
    w = np.where(rng.random(w.shape) < rng.random(), w, 0).astype(np.int8)
    w = prune_samoyeds(w, n, m, v)
    x = rng.integers(-128, 128, (bc * v, t), dtype=np.int8)
    check(SamoyedsWeight.from_dense(w, n, m, v), w, x, random_sel(rng, t), out)


def test_compressed_values_are_used_not_a_dense_copy():
    # A nonzero value at a "padding" slot must be multiplied like any other.
    s = Sparse24(np.array([[3, 4]], dtype=np.int8), np.array([[0b1001]], dtype=np.uint8))
    x = np.array([[1], [10], [100], [1000 % 128]], dtype=np.int8)
    assert ssmm(s, x).tolist() == [[3 * 10 + 4 * 100]]


def test_never_expands_to_dense(monkeypatch):
    rng = np.random.default_rng(5)
    w = prune_samoyeds(rng.integers(-128, 128, (16, 64), dtype=np.int8), 4, 8, 32)
    x = rng.integers(-128, 128, (64, 5), dtype=np.int8)
    weights = [Sparse24.from_dense(w), SamoyedsWeight.from_dense(w, 4, 8, 32)]

    def forbidden(self):
        raise AssertionError("ssmm must compute from the compressed arrays")
    monkeypatch.setattr(Sparse24, "to_dense", forbidden)
    monkeypatch.setattr(SamoyedsWeight, "to_dense", forbidden)
    for s in weights:
        check(s, w, x, np.array([0, 4]), "int32")


@pytest.mark.parametrize("rows, k, t", [(0, 8, 3), (4, 0, 3), (4, 8, 0), (0, 0, 0)])
def test_degenerate_shapes(rows, k, t):
    w = np.zeros((rows, k), dtype=np.int8)
    x = np.ones((k, t), dtype=np.int8)
    for weight in (w, Sparse24.from_dense(w), SamoyedsWeight.from_dense(w, 1, 2, 4)):
        y = ssmm(weight, x)
        assert y.shape == (rows, t) and not y.any()


def test_larger_shape():
    rng = np.random.default_rng(1)
    w = rng.integers(-128, 128, (256, 1024), dtype=np.int8)
    x = rng.integers(-128, 128, (1024, 64), dtype=np.int8)
    sel = np.arange(0, 64, 3)
    w24 = prune_2to4(w)
    check(Sparse24.from_dense(w24), w24, x, sel, "int32")
    ws = prune_samoyeds(w, 1, 2, 32)
    check(SamoyedsWeight.from_dense(ws, 1, 2, 32), ws, x, sel, ("requant", 3, 16))


@pytest.mark.parametrize("make", [lambda w: w, Sparse24.from_dense,
                                  lambda w: SamoyedsWeight.from_dense(w, 1, 1, 4)])
def test_empty_sel(make):
    w = np.zeros((3, 8), dtype=np.int8)
    x = np.ones((8, 5), dtype=np.int8)
    for out in ("int32", "int8_sat", ("requant", 1, 1)):
        y = ssmm(make(w), x, np.array([], dtype=np.int32), out)
        assert y.shape == (3, 0)


def test_extremes_at_max_k_exact():
    w = np.full((1, MAX_K), -128, dtype=np.int8)
    x = np.full((MAX_K, 2), -128, dtype=np.int8)
    x[:, 1] = 127
    assert ssmm(w, x).tolist() == [[1 << 30, -128 * 127 * MAX_K]]
    w24 = w.copy()
    w24[:, 2::4] = 0
    w24[:, 3::4] = 0
    assert ssmm(Sparse24.from_dense(w24), x).tolist() == [[1 << 29, -128 * 127 * MAX_K // 2]]
    assert ssmm(w, x, None, "int8_sat").tolist() == [[127, -128]]
    assert ssmm(w, x, [1], ("requant", 65535, 31)).tolist() == \
        [[max(-128, (-128 * 127 * MAX_K * 65535 + (1 << 30)) >> 31)]]


def test_k_over_max_refused():
    k = MAX_K + 4
    x = np.zeros((k, 1), dtype=np.int8)
    with pytest.raises(FormatError, match=rf"k: K = {k} exceeds MAX_K = {MAX_K}"):
        ssmm(np.zeros((1, k), dtype=np.int8), x)
    with pytest.raises(FormatError, match=rf"k: K = {k}"):
        ssmm(Sparse24.from_dense(np.zeros((1, k), dtype=np.int8)), x)
    with pytest.raises(FormatError, match=rf"k: K = {k}"):
        ssmm(np.zeros((1, 8), dtype=np.int8), x)  # x alone is too long


def test_operand_checks():
    w = np.zeros((2, 8), dtype=np.int8)
    x = np.zeros((8, 3), dtype=np.int8)
    with pytest.raises(FormatError, match=r"x: 4 rows, but the weight has K = 8"):
        ssmm(w, x[:4])
    with pytest.raises(FormatError, match=r"x: expected a 2-D int8 array"):
        ssmm(w, x.astype(np.int16))
    with pytest.raises(FormatError, match=r"x: expected a 2-D int8 array"):
        ssmm(w, x[:, 0])
    with pytest.raises(FormatError, match=r"weight: expected a 2-D int8 array"):
        ssmm(w.astype(np.int32), x)
    with pytest.raises(FormatError, match=r"weight: expected an int8 ndarray"):
        ssmm(w.tolist(), x)
    with pytest.raises(FormatError, match=r"sel: position 1 .*duplicate"):
        ssmm(w, x, np.array([1, 1]))
    with pytest.raises(FormatError, match=r"sel: position 0 has token 3"):
        ssmm(w, x, np.array([3]))
    with pytest.raises(FormatError, match=r"shift: 0"):
        ssmm(w, x, None, ("requant", 1, 0))
