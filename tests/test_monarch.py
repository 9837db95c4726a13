"""golden.monarch: the convention, the bit-exact factored matmul, projection and counts."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from golden import FormatError, apply_out
from golden import monarch as gm


def dense_reference(mon: gm.Monarch, x: np.ndarray) -> np.ndarray:
    """Independent reference: dense n x n factors and explicit permutation matrices."""
    Ld, Rd = mon.dense_factors()
    Pm = np.eye(mon.n, dtype=np.int64)[gm.perm(mon.b)]
    u = Rd @ (Pm @ x.astype(np.int64))
    h = apply_out(u, mon.mid_mode).astype(np.int64)
    v = Ld @ (Pm @ h)
    return Pm @ apply_out(v, mon.out_mode).astype(np.int64)


@pytest.mark.parametrize("b", [1, 2, 3, 4, 5, 8, 16])
def test_perm_is_the_transpose_involution(b):
    p = gm.perm(b)
    n = b * b
    assert sorted(p) == list(range(n))
    assert np.array_equal(p[p], np.arange(n))
    grid = np.arange(n).reshape(b, b)
    assert np.array_equal(p, grid.T.reshape(-1))
    if b & (b - 1) == 0 and b > 1:       # power of two: swap of the two index halves
        k = b.bit_length() - 1
        i = np.arange(n)
        assert np.array_equal(p, ((i & (b - 1)) << k) | (i >> k))


def test_entry_is_one_product():
    rng = np.random.default_rng(0)
    mon = gm.random_monarch(4, rng, lo=-5, hi=5)
    M, b = mon.to_dense(), 4
    for a in range(b):
        for c in range(b):
            for e in range(b):
                for j in range(b):
                    assert M[a * b + c, e * b + j] == int(mon.L[c][a, j]) * int(mon.R[j][c, e])


@pytest.mark.parametrize("b", [2, 4, 8])
def test_matmul_equals_dense_when_nothing_saturates(b):
    rng = np.random.default_rng(b)
    mon = gm.random_monarch(b, rng, lo=-2, hi=2)            # |u| <= 4 b: no saturation
    x = rng.integers(-3, 4, size=(b * b, 5)).astype(np.int8)
    assert np.array_equal(mon.matmul(x), mon.to_dense() @ x.astype(np.int64))
    assert np.array_equal(mon @ x[:, 0], mon.to_dense() @ x[:, 0].astype(np.int64))


@settings(max_examples=40, deadline=None)
@given(b=st.integers(1, 6), seed=st.integers(0, 2**32 - 1), t=st.integers(1, 4),
       mid=st.sampled_from(["int8_sat", ("requant", 1, 1), ("requant", 977, 13),
                            ("requant", 65535, 31), ("requant", 0, 5)]),
       out=st.sampled_from(["int32", "int8_sat", ("requant", 300, 9)]))
def test_matmul_matches_dense_factor_reference(b, seed, t, mid, out):
    rng = np.random.default_rng(seed)
    mon = gm.random_monarch(b, rng, mid=mid, out=out)
    x = rng.integers(-128, 128, size=(b * b, t)).astype(np.int8)
    got = mon.matmul(x)
    assert got.dtype == mon.out_mode.out_dtype
    assert np.array_equal(got.astype(np.int64), dense_reference(mon, x))


def test_stages_requantize_once_between_r_and_l():
    rng = np.random.default_rng(7)
    mon = gm.random_monarch(4, rng, mid=("requant", 1234, 15), out=("requant", 99, 12))
    x = rng.integers(-128, 128, size=(16, 3)).astype(np.int8)
    s = mon.stages(x)
    assert s["u"].dtype == np.int64 and np.abs(s["u"]).max() < 2**31
    assert np.array_equal(s["h"], apply_out(s["u"], ("requant", 1234, 15)))
    assert np.array_equal(s["hp"], s["h"][gm.perm(4)])
    assert np.array_equal(s["z"], apply_out(s["v"], ("requant", 99, 12)))
    assert np.array_equal(gm.unfold_output(s["z"], 4), mon.matmul(x))
    assert np.array_equal(gm.fold_input(x, 4), s["xp"])


@pytest.mark.parametrize("n,b", [(256, 16), (1024, 32), (4096, 64)])
def test_counts_reduce_parameters_and_macs(n, b):
    c = gm.counts(n, b)
    assert c["monarch_params"] == c["monarch_macs"] == 2 * n * b
    assert c["param_reduction"] == c["mac_reduction"] == b / 2 >= 4
    rng = np.random.default_rng(0)
    if n <= 256:
        assert gm.random_monarch(b, rng).params == 2 * n * b


def test_project_recovers_a_monarch_and_approximates_dense():
    rng = np.random.default_rng(3)
    b = 4
    L, R = rng.normal(size=(b, b, b)), rng.normal(size=(b, b, b))
    M = gm.dense_from_float(L, R)
    L2, R2 = gm.project(M, b)
    assert np.allclose(gm.dense_from_float(L2, R2), M, atol=1e-9)
    # the float and the int8 paths describe the same matrix
    mon = gm.random_monarch(b, rng, lo=-3, hi=3)
    assert np.array_equal(gm.dense_from_float(mon.L.astype(float), mon.R.astype(float)),
                          mon.to_dense().astype(float))
    # projection of a dense matrix is the best rank-1-per-slice fit: never worse than zero
    W = rng.normal(size=(16, 16))
    L3, R3 = gm.project(W, 4)
    assert np.linalg.norm(W - gm.dense_from_float(L3, R3)) < np.linalg.norm(W)
    q = gm.quantize(L3, R3)
    assert q.L.dtype == np.int8 and q.mid_mode.kind == "requant"
    x = rng.integers(-128, 128, size=16).astype(np.int8)
    assert q.matmul(x).shape == (16,)


def test_bad_inputs_raise_format_errors():
    rng = np.random.default_rng(0)
    L = rng.integers(-5, 5, size=(4, 4, 4)).astype(np.int8)
    with pytest.raises(FormatError, match="L: expected int8"):
        gm.Monarch(L.astype(np.int16), L)
    with pytest.raises(FormatError, match=r"R: expected shape \(b, b, b\)"):
        gm.Monarch(L, L[:, :, :3])
    with pytest.raises(FormatError, match="R: shape"):
        gm.Monarch(L, np.zeros((2, 2, 2), np.int8))
    with pytest.raises(FormatError, match="mid: the stage-L input is int8"):
        gm.Monarch(L, L, mid="int32")
    with pytest.raises(FormatError, match="shift"):
        gm.Monarch(L, L, out=("requant", 5, 0))
    mon = gm.Monarch(L, L)
    with pytest.raises(FormatError, match="x: expected int8"):
        mon.matmul(np.zeros(16, np.int32))
    with pytest.raises(FormatError, match=r"x: expected shape \(16,\)"):
        mon.matmul(np.zeros(15, np.int8))
    with pytest.raises(FormatError, match="b: 3 does not divide n = 16"):
        gm.check_shape(16, 3)
    with pytest.raises(FormatError, match="n: 32 != b\\*b = 16"):
        gm.check_shape(32, 4)
    with pytest.raises(FormatError, match="b: expected an integer"):
        gm.perm(2.0)
    with pytest.raises(FormatError, match="W: expected a square matrix"):
        gm.project(np.zeros((4, 8)), 2)
