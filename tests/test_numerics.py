"""The numerics contract against pure-Python big-int references."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from golden import MAX_K, FormatError, OutMode, apply_out, parse_out, requant, sat8
from golden.numerics import check_k

I32 = st.integers(-(1 << 31), (1 << 31) - 1)
EXTREME_ACC = [-(1 << 31), -(1 << 31) + 1, -(1 << 30), -1, 0, 1, (1 << 30), (1 << 31) - 1]


def ref_requant(acc: int, mult: int, shift: int) -> int:
    """Python ints are unbounded and their >> is arithmetic: the contract, literally."""
    return max(-128, min(127, (acc * mult + (1 << (shift - 1))) >> shift))


def test_max_k_keeps_accumulator_in_int32():
    assert MAX_K == 65536
    assert MAX_K * 128 * 128 < 1 << 31
    check_k(MAX_K)
    with pytest.raises(FormatError, match=r"k: K = 65537"):
        check_k(MAX_K + 1)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-(1 << 40), 1 << 40), max_size=20))
def test_sat8(xs):
    y = sat8(np.array(xs, dtype=np.int64))
    assert y.dtype == np.int8
    assert y.tolist() == [max(-128, min(127, v)) for v in xs]


def test_sat8_bounds():
    assert sat8(np.array([-129, -128, 127, 128, -(1 << 31), (1 << 31) - 1])).tolist() == \
        [-128, -128, 127, 127, -128, 127]
    with pytest.raises(FormatError, match="dtype"):
        sat8(np.array([1.5]))


@settings(max_examples=300, deadline=None)
@given(st.lists(I32, min_size=1, max_size=16),
       st.one_of(st.sampled_from([0, 1, 65535]), st.integers(0, 65535)),
       st.one_of(st.sampled_from([1, 31]), st.integers(1, 31)))
def test_requant_matches_bigint(accs, mult, shift):
    acc = np.array(accs, dtype=np.int64)
    y = requant(acc, mult, shift)
    assert y.dtype == np.int8
    assert y.tolist() == [ref_requant(a, mult, shift) for a in accs]
    y2 = apply_out(acc.astype(np.int32), ("requant", mult, shift))
    assert y2.tolist() == y.tolist()


@pytest.mark.parametrize("mult", [0, 1, 2, 32767, 65535])
@pytest.mark.parametrize("shift", [1, 2, 15, 16, 30, 31])
def test_requant_extremes(mult, shift):
    y = requant(np.array(EXTREME_ACC, dtype=np.int32), mult, shift)
    assert y.tolist() == [ref_requant(a, mult, shift) for a in EXTREME_ACC]


def test_requant_rounds_half_up():
    # (acc + 1) >> 1 for mult 1, shift 1: -3/2 -> -1, -1/2 -> 0, 1/2 -> 1, 3/2 -> 2
    assert requant(np.array([-3, -1, 1, 3]), 1, 1).tolist() == [-1, 0, 1, 2]


def test_output_modes():
    acc = np.array([[-(1 << 31), -129, -5, 0, 200, (1 << 31) - 1]], dtype=np.int64)
    y = apply_out(acc, "int32")
    assert y.dtype == np.int32 and y.tolist() == acc.tolist()
    y = apply_out(acc, "int8_sat")
    assert y.dtype == np.int8 and y.tolist() == [[-128, -128, -5, 0, 127, 127]]
    y = apply_out(acc, OutMode("requant", 3, 2))
    assert y.dtype == np.int8 and y.shape == acc.shape


def test_outmode_codes():
    assert parse_out("int32") == OutMode("int32")
    codes = [OutMode("int32").code, OutMode("int8_sat").code, OutMode("requant", 1, 1).code]
    assert codes == [0, 1, 2]
    assert OutMode("int32").out_dtype == np.int32
    assert OutMode("int8_sat").out_dtype == np.int8
    assert parse_out(("requant", 0, 31)) == OutMode("requant", 0, 31)
    assert parse_out(("requant", np.uint16(65535), np.int64(1))).mult == 65535


@pytest.mark.parametrize("out, pattern", [
    ("int16", r"kind: .*'int16'"),
    ("requant", r"out: .*needs parameters"),
    (("requant", 65536, 4), r"mult: 65536"),
    (("requant", -1, 4), r"mult: -1"),
    (("requant", 1.5, 4), r"mult: .*1\.5"),
    (("requant", 1, 0), r"shift: 0"),
    (("requant", 1, 32), r"shift: 32"),
    (("requant", 1, True), r"shift: .*True"),
    (("int32", 1, 1), r"out: "),
    (42, r"out: .*got 42"),
])
def test_invalid_modes(out, pattern):
    with pytest.raises(FormatError, match=pattern):
        parse_out(out)


def test_invalid_outmode_direct():
    with pytest.raises(FormatError, match="mult/shift"):
        OutMode("int8_sat", 1, 0)
    with pytest.raises(FormatError, match="shift: 40"):
        requant(np.array([1]), 1, 40)


def test_apply_out_refuses_non_int32_accumulators():
    with pytest.raises(FormatError, match=r"acc: value 2147483648"):
        apply_out(np.array([0, 1 << 31]), "int32")
    with pytest.raises(FormatError, match=r"acc: value -2147483649"):
        apply_out(np.array([-(1 << 31) - 1]), "int8_sat")
    with pytest.raises(FormatError, match="acc: .*dtype float64"):
        apply_out(np.array([1.0]), "int32")
