"""Expert FFN golden against a slow reference with explicit loops and Python ints."""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from golden import FormatError, SamoyedsWeight, Sparse24, prune_2to4, prune_samoyeds
from golden.ffn import FFNParams, apply_lut, expert_ffn, silu_lut


def rq(acc, mult, shift):
    return max(-128, min(127, (acc * mult + (1 << (shift - 1))) >> shift))


def slow_ffn(G, U, D, gate_rq, up_rq, prod_rq, out_down, lut, x, sel):
    """Straight from the spec: dense weights, Python-int dot products, table by byte address."""
    f, hid = G.shape
    toks = range(x.shape[1]) if sel is None else [int(t) for t in sel]
    y = np.zeros((hid, len(toks)), dtype=np.int64)
    for j, t in enumerate(toks):
        h = []
        for i in range(f):
            g = rq(sum(int(G[i, c]) * int(x[c, t]) for c in range(hid)), *gate_rq)
            u = rq(sum(int(U[i, c]) * int(x[c, t]) for c in range(hid)), *up_rq)
            a = int(lut[g + 256 if g < 0 else g])
            h.append(rq(a * u, *prod_rq))
        for o in range(hid):
            acc = sum(int(D[o, i]) * h[i] for i in range(f))
            if out_down == "int32":
                y[o, j] = acc
            elif out_down == "int8_sat":
                y[o, j] = max(-128, min(127, acc))
            else:
                y[o, j] = rq(acc, *out_down[1:])
    return y


def make_weights(rng, fmt, f, hid):
    G = rng.integers(-128, 128, (f, hid), dtype=np.int8)
    U = rng.integers(-128, 128, (f, hid), dtype=np.int8)
    D = rng.integers(-128, 128, (hid, f), dtype=np.int8)
    if fmt == "dense":
        return (G, U, D), (G, U, D)
    if fmt == "2:4":
        dense = tuple(prune_2to4(w) for w in (G, U, D))
        return dense, tuple(Sparse24.from_dense(w) for w in dense)
    n, m, v = fmt
    dense = tuple(prune_samoyeds(w, n, m, v) for w in (G, U, D))
    return dense, tuple(SamoyedsWeight.from_dense(w, n, m, v) for w in dense)


@settings(max_examples=50, deadline=None)
@given(st.sampled_from(["dense", "2:4", (1, 2, 4), (2, 4, 8), (1, 2, 16)]),
       st.sampled_from(["int32", "int8_sat", ("requant", 40, 13)]),
       st.integers(0, 6), st.integers(0, 2**32 - 1))
def test_expert_ffn_bit_exact(fmt, out_down, t, seed):
    rng = np.random.default_rng(seed)
    f, hid = 16, 16
    dense, weights = make_weights(rng, fmt, f, hid)
    x = rng.integers(-128, 128, (hid, t), dtype=np.int8)
    sel = None if rng.random() < 0.3 else np.flatnonzero(rng.random(t) < 0.6)
    gate_rq = (int(rng.integers(0, 65536)), int(rng.integers(14, 24)))
    up_rq = (int(rng.integers(0, 65536)), int(rng.integers(14, 24)))
    prod_rq = (int(rng.integers(1, 300)), int(rng.integers(1, 12)))
    lut = silu_lut() if rng.random() < 0.5 else rng.integers(-128, 128, 256, dtype=np.int8)
    p = FFNParams(*weights, gate_rq, up_rq, prod_rq, out_down, lut)
    y = expert_ffn(p, x, sel)
    assert y.dtype == (np.int32 if out_down == "int32" else np.int8)
    assert y.shape == (hid, t if sel is None else len(sel))
    np.testing.assert_array_equal(y.astype(np.int64),
                                  slow_ffn(*dense, gate_rq, up_rq, prod_rq, out_down, lut, x, sel))


def test_expert_ffn_rectangular_and_empty_sel():
    rng = np.random.default_rng(3)
    f, hid = 24, 8
    dense, weights = make_weights(rng, (1, 2, 8), f, hid)
    x = rng.integers(-128, 128, (hid, 7), dtype=np.int8)
    p = FFNParams(*weights, (3000, 16), (2000, 16), (5, 4))
    for sel in (np.array([1, 4, 6]), np.array([], dtype=np.int64)):
        np.testing.assert_array_equal(expert_ffn(p, x, sel),
                                      slow_ffn(*dense, (3000, 16), (2000, 16), (5, 4), "int32",
                                               p.lut, x, sel))


def test_silu_lut():
    lut = silu_lut()
    assert lut.dtype == np.int8 and lut.shape == (256,)
    for q in range(-128, 128):
        r = q / 16
        v = r / (1 + math.exp(-r)) * 16
        expect = max(-128, min(127, int(math.floor(abs(v) + 0.5)) * (1 if v >= 0 else -1)))
        assert int(lut[q & 0xFF]) == expect, q
    assert lut[0] == 0 and lut[127] == 127 and lut[0x80] == 0  # silu(-8) * 16 = -0.0054
    assert min(lut.tolist()) == -4  # silu's minimum -0.278 * 16 = -4.45
    codes = np.array([[0, 1, -1, -128, 127]], dtype=np.int8)
    assert apply_lut(lut, codes).tolist() == [[lut[0], lut[1], lut[255], lut[128], lut[127]]]
    with pytest.raises(FormatError, match="codes"):
        apply_lut(lut, codes.astype(np.int32))
    with pytest.raises(FormatError, match="in_scale"):
        silu_lut(0.0, 1.0)


def test_ffn_params_validation():
    g = np.zeros((6, 4), dtype=np.int8)
    d = np.zeros((4, 6), dtype=np.int8)
    FFNParams(g, g, d, (1, 1), (1, 1), (1, 1))
    with pytest.raises(FormatError, match=r"up: shape"):
        FFNParams(g, d, d, (1, 1), (1, 1), (1, 1))
    with pytest.raises(FormatError, match=r"down: shape"):
        FFNParams(g, g, g, (1, 1), (1, 1), (1, 1))
    with pytest.raises(FormatError, match=r"shift: 0"):
        FFNParams(g, g, d, (1, 1), (1, 0), (1, 1))
    with pytest.raises(FormatError, match=r"prod_rq: expected \(mult, shift\)"):
        FFNParams(g, g, d, (1, 1), (1, 1), 3)
    with pytest.raises(FormatError, match=r"mult: 70000"):
        FFNParams(g, g, d, (70000, 1), (1, 1), (1, 1))
    with pytest.raises(FormatError, match=r"kind: "):
        FFNParams(g, g, d, (1, 1), (1, 1), (1, 1), "fp16")
    with pytest.raises(FormatError, match=r"lut: "):
        FFNParams(g, g, d, (1, 1), (1, 1), (1, 1), "int32", np.zeros(255, dtype=np.int8))
