"""2:4, Samoyeds and SEL: round trips, exact shapes, and every malformed input refused."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from golden import FormatError, SamoyedsWeight, Sparse24, check_sel, prune_2to4, prune_samoyeds
from golden.formats import PAPER_CONFIGS, VALID_NIBBLES, meta_words

VALID = {0b0100: (0, 1), 0b1000: (0, 2), 0b1001: (1, 2),
         0b1100: (0, 3), 0b1101: (1, 3), 0b1110: (2, 3)}


def sparse_matrix(rng, m, k, density=0.5):
    """Random int8 matrix with random sparsity (so groups hold 0..4 nonzeros before pruning)."""
    w = rng.integers(-128, 128, (m, k), dtype=np.int8)
    return np.where(rng.random((m, k)) < density, w, 0).astype(np.int8)


def ref_prune_2to4(w):
    out = np.zeros_like(w)
    for r in range(w.shape[0]):
        for g in range(0, w.shape[1], 4):
            grp = [int(v) for v in w[r, g:g + 4]]
            keep = sorted(range(4), key=lambda i: (-abs(grp[i]), i))[:2]
            for i in keep:
                out[r, g + i] = grp[i]
    return out


def is_24(w):
    return ((w.reshape(w.shape[0], -1, 4) != 0).sum(-1) <= 2).all()


# ---------------------------------------------------------------- 2:4

def test_valid_nibble_table():
    assert sorted(VALID_NIBBLES) == sorted(VALID)
    for nib, (a, b) in VALID.items():
        assert (nib & 3, nib >> 2) == (a, b)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 6), st.integers(1, 6), st.integers(0, 2**32 - 1))
def test_sparse24_round_trip(m, groups, seed):
    rng = np.random.default_rng(seed)
    w = prune_2to4(sparse_matrix(rng, m, 4 * groups, rng.random()))
    s = Sparse24.from_dense(w)
    assert s.shape == (m, 4 * groups)
    assert s.values.shape == (m, 2 * groups) and s.values.dtype == np.int8
    assert s.meta.shape == (m, groups) and s.meta.dtype == np.uint8
    assert set(np.unique(s.meta)) <= set(VALID)
    np.testing.assert_array_equal(s.to_dense(), w)
    s2 = Sparse24(s.values, s.meta)
    np.testing.assert_array_equal(s2.to_dense(), w)
    s3 = Sparse24.from_dense(s2.to_dense())
    np.testing.assert_array_equal(s3.values, s.values)
    np.testing.assert_array_equal(s3.meta, s.meta)


def test_sparse24_layout_and_padding():
    w = np.array([[0, 5, 0, -7,   0, 0, 0, 0,   9, 0, 0, 0,   0, 0, 3, 0,
                   0, 0, 0, 4,   0, 2, 0, 0,   1, 1, 0, 0,   0, 0, 8, 8]], dtype=np.int8)
    s = Sparse24.from_dense(w)
    assert s.meta.tolist() == [[0b1101, 0b0100, 0b0100, 0b1000, 0b1100, 0b0100, 0b0100, 0b1110]]
    assert s.values.tolist() == [[5, -7, 0, 0, 9, 0, 0, 3, 0, 4, 0, 2, 1, 1, 8, 8]]


def test_sparse24_nonzero_padding_values_decode():
    # A stored value is a value even where from_dense would have padded with 0.
    s = Sparse24(np.array([[3, 4]], dtype=np.int8), np.array([[0b1110]], dtype=np.uint8))
    assert s.to_dense().tolist() == [[0, 0, 3, 4]]


@pytest.mark.parametrize("nib", [0b0000, 0b0101, 0b1010, 0b1111, 0b0110, 0b0001, 0b0010,
                                 0b0011, 0b0111, 0b1011, 0b0100 | 16, 255])
def test_sparse24_invalid_nibbles(nib):
    meta = np.full((3, 2), 0b1001, dtype=np.uint8)
    meta[2, 1] = nib
    with pytest.raises(FormatError, match=rf"meta: row 2 group 1 .*{nib:#06b}"):
        Sparse24(np.zeros((3, 4), dtype=np.int8), meta)


def test_sparse24_all_invalid_nibbles_rejected():
    for nib in range(256):
        meta = np.array([[nib]], dtype=np.uint8)
        if nib in VALID:
            Sparse24(np.zeros((1, 2), dtype=np.int8), meta)
        else:
            with pytest.raises(FormatError):
                Sparse24(np.zeros((1, 2), dtype=np.int8), meta)


def test_sparse24_rejects_dense_and_bad_operands():
    w = np.zeros((4, 12), dtype=np.int8)
    w[2, 5:8] = [1, 2, 3]
    w[3, 0:4] = 1
    with pytest.raises(FormatError, match=r"w: row 2 group 1 .*3 nonzeros"):
        Sparse24.from_dense(w)
    with pytest.raises(FormatError, match=r"w: expected dtype int8, got int16"):
        Sparse24.from_dense(w.astype(np.int16))
    with pytest.raises(FormatError, match=r"w: expected 2-D"):
        Sparse24.from_dense(w[0])
    with pytest.raises(FormatError, match=r"w: K = 6"):
        Sparse24.from_dense(np.zeros((2, 6), dtype=np.int8))
    with pytest.raises(FormatError, match=r"w: expected a numpy ndarray"):
        Sparse24.from_dense([[1, 0, 0, 0]])
    with pytest.raises(FormatError, match=r"values: shape"):
        Sparse24(np.zeros((2, 3), dtype=np.int8), np.full((2, 2), 4, dtype=np.uint8))
    with pytest.raises(FormatError, match=r"meta: expected dtype uint8"):
        Sparse24(np.zeros((2, 4), dtype=np.int8), np.full((2, 2), 4, dtype=np.int8))
    with pytest.raises(FormatError, match=r"values: expected dtype int8"):
        Sparse24(np.zeros((2, 4), dtype=np.int16), np.full((2, 2), 4, dtype=np.uint8))


def test_sparse24_is_immutable():
    s = Sparse24.from_dense(np.zeros((1, 4), dtype=np.int8))
    with pytest.raises(ValueError):
        s.meta[0, 0] = 0


@settings(max_examples=60, deadline=None)
@given(arrays(np.int8, st.tuples(st.integers(1, 4), st.integers(1, 5).map(lambda g: 4 * g)),
              elements=st.integers(-128, 127) | st.sampled_from([0, 1, -1, -128, 127])))
def test_prune_2to4(w):
    p = prune_2to4(w)
    assert p.dtype == np.int8 and is_24(p)
    np.testing.assert_array_equal(p, ref_prune_2to4(w))
    Sparse24.from_dense(p)


def test_prune_2to4_ties():
    w = np.array([[3, -3, 3, -3,  -128, 127, 127, -128,  0, 0, 0, 0,  1, 0, 0, 2]], dtype=np.int8)
    assert prune_2to4(w).tolist() == [[3, -3, 0, 0,  -128, 0, 0, -128,  0, 0, 0, 0,  1, 0, 0, 2]]


def test_meta_words():
    meta = np.array([[0b0100, 0b1000, 0b1001, 0b1100, 0b1101, 0b1110, 0b0100, 0b1000, 0b1110]],
                    dtype=np.uint8)
    words = meta_words(meta)
    assert words.dtype == np.uint32
    assert words.tolist() == [[0x8_4_E_D_C_9_8_4, 0xE]]


# ---------------------------------------------------------------- Samoyeds

@pytest.mark.parametrize("cfg", PAPER_CONFIGS)
def test_samoyeds_round_trip_paper_configs(cfg):
    n, m, v = cfg
    rng = np.random.default_rng(sum(cfg))
    rows, k = 2 * m, 2 * v
    w = prune_samoyeds(rng.integers(-128, 128, (rows, k), dtype=np.int8), n, m, v)
    s = SamoyedsWeight.from_dense(w, n, m, v)
    assert (s.n, s.m, s.v, s.shape) == (n, m, v, (rows, k))
    assert s.data.shape == (rows * n // m, k // 2) and s.data.dtype == np.int8
    assert s.indices.shape == (rows * n // m, k // v) and s.indices.dtype.kind in "iu"
    assert s.meta.shape == (rows * n // m, k // 4) and s.meta.dtype == np.uint8
    np.testing.assert_array_equal(s.to_dense(), w)
    s2 = SamoyedsWeight(s.data, s.indices, s.meta, n, m, v)
    np.testing.assert_array_equal(s2.to_dense(), w)
    # data row r, column block j is original row (r // n) * m + indices[r, j]
    for r in range(s.data.shape[0]):
        for j in range(k // v):
            orig = (r // n) * m + int(s.indices[r, j])
            sub = Sparse24(s.data[r:r + 1, j * v // 2:(j + 1) * v // 2],
                           s.meta[r:r + 1, j * v // 4:(j + 1) * v // 4]).to_dense()
            np.testing.assert_array_equal(sub[0], w[orig, j * v:(j + 1) * v])


@settings(max_examples=50, deadline=None)
@given(st.sampled_from(PAPER_CONFIGS + ((2, 4, 8), (3, 3, 4), (1, 1, 4), (2, 5, 12))),
       st.integers(1, 3), st.integers(1, 3), st.integers(0, 2**32 - 1))
def test_samoyeds_round_trip_random(cfg, br, bc, seed):
    n, m, v = cfg
    rng = np.random.default_rng(seed)
    w = prune_samoyeds(sparse_matrix(rng, br * m, bc * v, rng.random()), n, m, v)
    s = SamoyedsWeight.from_dense(w, n, m, v)
    np.testing.assert_array_equal(s.to_dense(), w)
    idx = s.indices.astype(int).reshape(br, n, bc)
    assert (np.diff(idx, axis=1) > 0).all() and idx.min() >= 0 and idx.max() < m
    again = SamoyedsWeight.from_dense(s.to_dense(), n, m, v)
    for a in ("data", "indices", "meta"):
        np.testing.assert_array_equal(getattr(again, a), getattr(s, a))


def test_samoyeds_padding_uses_lowest_unused_subrows():
    n, m, v = 3, 4, 4
    w = np.zeros((4, 8), dtype=np.int8)
    w[2, 1] = 5          # block column 0: only sub-row 2 nonzero -> kept [0, 1, 2]
    w[0, 4] = w[3, 7] = 1  # block column 1: sub-rows 0, 3 -> kept [0, 1, 3]
    s = SamoyedsWeight.from_dense(w, n, m, v)
    assert s.indices.tolist() == [[0, 0], [1, 1], [2, 3]]
    assert s.data.tolist() == [[0, 0, 1, 0], [0, 0, 0, 0], [0, 5, 0, 1]]


def test_prune_samoyeds_keeps_largest_l1_with_tie_rule():
    w = np.array([[1, 1, 0, 0,   9, 0, 0, 0],
                  [0, 2, 0, 0,   0, 0, 0, -9],
                  [-5, 0, 0, 0,  0, 0, 0, 0],
                  [0, 0, 1, 0,   0, 0, 0, 0]], dtype=np.int8)
    p = prune_samoyeds(w, 2, 4, 4)
    # column block 0: L1 = 2, 2, 5, 1 -> keep rows 2 and 0 (tie 0 vs 1: lower index)
    # column block 1: L1 = 9, 9, 0, 0 -> keep rows 0 and 1
    assert p.tolist() == [[1, 1, 0, 0,   9, 0, 0, 0],
                          [0, 0, 0, 0,   0, 0, 0, -9],
                          [-5, 0, 0, 0,  0, 0, 0, 0],
                          [0, 0, 0, 0,   0, 0, 0, 0]]


def test_samoyeds_from_dense_rejects_nonconforming():
    w = np.zeros((4, 8), dtype=np.int8)
    w[0, 5] = w[1, 6] = 1
    with pytest.raises(FormatError, match=r"w: block at rows 0..1, columns 4..7 has 2 nonzero"):
        SamoyedsWeight.from_dense(w, 1, 2, 4)
    w = np.zeros((4, 8), dtype=np.int8)
    w[3, 4:7] = 1
    with pytest.raises(FormatError, match=r"w: row 3 group 1 .*3 nonzeros"):
        SamoyedsWeight.from_dense(w, 1, 2, 4)
    with pytest.raises(FormatError, match=r"w: 3 rows is not a multiple of m = 2"):
        SamoyedsWeight.from_dense(np.zeros((3, 8), dtype=np.int8), 1, 2, 4)
    with pytest.raises(FormatError, match=r"w: K = 8 is not a multiple of v = 16"):
        SamoyedsWeight.from_dense(np.zeros((2, 8), dtype=np.int8), 1, 2, 16)
    for (n, m, v), field in [((0, 2, 4), "n"), ((3, 2, 4), "n"), ((1, 2, 6), "v"), ((1, 2, 0), "v"),
                             ((1.0, 2, 4), "n")]:
        with pytest.raises(FormatError, match=rf"^{field}: "):
            SamoyedsWeight.from_dense(np.zeros((4, 8), dtype=np.int8), n, m, v)


def _valid_samoyeds():
    rng = np.random.default_rng(7)
    w = prune_samoyeds(rng.integers(-128, 128, (8, 16), dtype=np.int8), 2, 4, 8)
    return SamoyedsWeight.from_dense(w, 2, 4, 8)


@pytest.mark.parametrize("bad, pattern", [
    ((0, 1, 4), r"indices: row 0 column block 1 has value 4, outside 0..3"),
    ((3, 0, 255), r"indices: row 3 column block 0 has value 255"),
    ((1, 1, 0), r"indices: block-row 0 column block 1: .*strictly increasing"),
])
def test_samoyeds_invalid_indices(bad, pattern):
    s = _valid_samoyeds()
    idx = s.indices.copy()
    r, j, val = bad
    if r == 1 and val == 0:  # make slot 1 equal slot 0 -> not increasing
        val = idx[0, j]
    idx[r, j] = val
    with pytest.raises(FormatError, match=pattern):
        SamoyedsWeight(s.data, idx, s.meta, 2, 4, 8)


def test_samoyeds_decreasing_and_negative_indices():
    s = _valid_samoyeds()
    idx = s.indices.astype(np.int16)
    idx[2:4, 1] = [3, 1]
    with pytest.raises(FormatError, match=r"block-row 1 column block 1: .*got 3 then 1"):
        SamoyedsWeight(s.data, idx, s.meta, 2, 4, 8)
    idx = s.indices.astype(np.int16)
    idx[0, 0] = -1
    with pytest.raises(FormatError, match=r"indices: row 0 column block 0 has value -1"):
        SamoyedsWeight(s.data, idx, s.meta, 2, 4, 8)
    with pytest.raises(FormatError, match=r"indices: expected an integer"):
        SamoyedsWeight(s.data, s.indices.astype(float), s.meta, 2, 4, 8)


def test_samoyeds_constructor_checks_shapes_and_nibbles():
    s = _valid_samoyeds()
    meta = s.meta.copy()
    meta[3, 2] = 0b1010
    with pytest.raises(FormatError, match=r"meta: row 3 group 2 .*0b1010"):
        SamoyedsWeight(s.data, s.indices, meta, 2, 4, 8)
    with pytest.raises(FormatError, match=r"indices: shape"):
        SamoyedsWeight(s.data, s.indices[:, :1], s.meta, 2, 4, 8)
    with pytest.raises(FormatError, match=r"meta: shape"):
        SamoyedsWeight(s.data, s.indices, s.meta[:, :3], 2, 4, 8)
    with pytest.raises(FormatError, match=r"data: 4 rows is not a multiple of n = 3"):
        SamoyedsWeight(s.data, s.indices, s.meta, 3, 4, 8)
    with pytest.raises(FormatError, match=r"data: expected dtype int8"):
        SamoyedsWeight(s.data.astype(np.int32), s.indices, s.meta, 2, 4, 8)


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(PAPER_CONFIGS), st.integers(0, 2**32 - 1))
def test_prune_samoyeds_conforms(cfg, seed):
    n, m, v = cfg
    rng = np.random.default_rng(seed)
    w = rng.integers(-128, 128, (2 * m, 2 * v), dtype=np.int8)
    p = prune_samoyeds(w, n, m, v)
    assert p.dtype == np.int8 and is_24(p)
    blocks = p.reshape(2, m, 2, v)
    assert ((blocks != 0).any(-1).sum(1) <= n).all()
    # every kept value is an original value, pruning only zeroes
    assert ((p == w) | (p == 0)).all()
    SamoyedsWeight.from_dense(p, n, m, v)


# ---------------------------------------------------------------- SEL

def test_check_sel_accepts():
    assert check_sel(np.array([0, 3, 9], dtype=np.uint8), 10).tolist() == [0, 3, 9]
    assert check_sel(np.array([], dtype=np.int32), 0).shape == (0,)
    assert check_sel([], 5).dtype == np.int64
    assert check_sel([1, 2], 3).dtype == np.int64


@pytest.mark.parametrize("sel, pattern", [
    (np.array([0, 5, 10]), r"sel: position 2 has token 10, outside 0..9"),
    (np.array([-1, 2]), r"sel: position 0 has token -1"),
    (np.array([1, 3, 3]), r"sel: position 2 .*duplicate"),
    (np.array([1, 4, 2]), r"sel: position 2 .*unsorted"),
    (np.array([[1, 2]]), r"sel: expected a 1-D array"),
    (np.array([1.0, 2.0]), r"sel: expected integer .*float64"),
    (np.array([True, False]), r"sel: expected integer .*bool"),
])
def test_check_sel_rejects(sel, pattern):
    with pytest.raises(FormatError, match=pattern):
        check_sel(sel, 10)
