"""golden.softmax and golden.attention: hand-checked cases, the tables, GQA grouping
against per-head computation, decode lengths and the prefill causal mask against
decode, the error against float64 within the contract's bound, bad input."""
from decimal import Decimal, getcontext

import numpy as np
import pytest

from golden.attention import (decode_attention, error_rows, format_error_table, main,
                              prefill_attention)
from golden.errors import FormatError
from golden.numerics import requant
from golden.softmax import (EXP_TABLE, MAX_ROW, RECIP_TABLE, T_CUT, config_scale,
                            error_bound, reference, scale_config, softmax, softmax_steps)

I8 = np.int8


def rnd8(rng, *shape):
    return rng.integers(-128, 128, shape).astype(I8)


# --- softmax ------------------------------------------------------------------------

def _round(x: Decimal) -> int:
    return int((x + Decimal("0.5")).to_integral_value(rounding="ROUND_FLOOR"))


def test_tables_equal_exact_values():
    getcontext().prec = 50
    for f in range(256):
        assert int(EXP_TABLE[f]) == _round(Decimal(2) ** (Decimal(15) - Decimal(f) / 256)), f
    for i in range(1024):
        exact = Decimal(1 << 26) / (Decimal(1024 + i) + Decimal("0.5"))
        assert int(RECIP_TABLE[i]) == _round(exact)
    assert (EXP_TABLE[0], EXP_TABLE[128], RECIP_TABLE[0], RECIP_TABLE[-1]) == \
        (32768, 23170, 65504, 32776)


def test_softmax_hand_checked():
    # one score: e = 32768, S = 2**15, k = 15, idx 0, R = 65504:
    # p = (32768 * 65504 + 32768) >> 16 = 32752
    assert softmax([[123]], 1, 1).tolist() == [[32752]]
    # two equal scores: S = 65536, k = 16, idx = (65536 >> 6) - 1024 = 0, R = 65504,
    # p = (32768 * 65504 + 65536) >> 17 = 2146500608 >> 17 = 16376
    assert softmax([[5, 5]], 100, 3).tolist() == [[16376, 16376]]
    # [0, -256], mult 1, shift 1: t = (256 + 1) >> 1 = 128, e = EXP_TABLE[128] = 23170;
    # S = 55938, k = 15, idx = (55938 >> 5) - 1024 = 724, R = round(2**26 / 1748.5) = 38381;
    # p0 = (32768 * 38381 + 32768) >> 16 = 19191, p1 = (23170 * 38381 + 32768) >> 16 = 13569
    st = softmax_steps([[0, -256]], 1, 1)
    assert st["t"].tolist() == [[0, 128]] and st["e"].tolist() == [[32768, 23170]]
    assert (int(st["S"][0, 0]), int(st["k"][0, 0]), int(st["idx"][0, 0]),
            int(st["R"][0, 0])) == (55938, 15, 724, 38381)
    assert st["p"].tolist() == [[19191, 13569]]
    # t = 4095 (i = 15, f = 255): e = (16428 + 16384) >> 15 = 1; t >= T_CUT: e = 0
    assert softmax_steps([[0, -8190]], 1, 1)["e"].tolist() == [[32768, 1]]
    st = softmax_steps([[0, -8192, -(1 << 31)]], 1, 1)
    assert st["t"].tolist() == [[0, T_CUT, T_CUT]] and st["e"].tolist() == [[32768, 0, 0]]


def test_softmax_properties():
    rng = np.random.default_rng(0)
    s = rng.integers(-(1 << 20), 1 << 20, (50, 33))
    mult, shift = scale_config(1e-5)
    p = softmax(s, mult, shift).astype(np.int64)
    # shift invariance: only m - s matters
    assert (softmax(s + 12345, mult, shift) == p).all()
    # order: a larger score never gets a smaller probability
    order = np.argsort(s, axis=1)
    assert (np.diff(np.take_along_axis(p, order, 1), axis=1) >= 0).all()
    # permutation: each element's probability follows it
    perm = rng.permutation(33)
    assert (softmax(s[:, perm], mult, shift) == p[:, perm]).all()
    # mult 0: every t is 0, a uniform row
    assert len(set(softmax(s[:1], 0, 5)[0].tolist())) == 1
    # extremes stay in range and sum near 2**15
    ext = np.array([[-(1 << 31), (1 << 31) - 1, 0, -(1 << 31)]])
    pe = softmax(ext, 65535, 1)
    assert pe.tolist() == [[0, 32752, 0, 0]]


def test_mask_equals_shorter_row():
    rng = np.random.default_rng(1)
    s = rng.integers(-5000, 5000, (6, 20))
    mask = np.arange(20)[None, :] < np.array([1, 3, 7, 20, 11, 2])[:, None]
    mult, shift = scale_config(0.01)
    p = softmax(s, mult, shift, mask)
    for r in range(6):
        n = int(mask[r].sum())
        assert (p[r, :n] == softmax(s[r:r + 1, :n], mult, shift)[0]).all()
        assert (p[r, n:] == 0).all()


def test_scale_config_round_trip():
    for x in (1e-9, 1e-4, 0.0125, 0.7, 3.0, 88.0):
        mult, shift = scale_config(x)
        assert 0 < mult <= 65535 and 1 <= shift <= 47
        assert abs(config_scale(mult, shift) / x - 1) < 2 ** -14 or x < 1e-8
    for bad in (0.0, -1.0, float("nan"), 89.0, 1e-18):
        with pytest.raises(FormatError, match="scale"):
            scale_config(bad)


@pytest.mark.parametrize("n", [1, 16, 300, 4096])
@pytest.mark.parametrize("spread", [0.25, 3.0, 20.0])
def test_error_within_contract_bound(n, spread):
    rng = np.random.default_rng(n)
    s = rng.normal(0, 1 << 16, (8, n)).round().astype(np.int64)
    mult, shift = scale_config(spread / (1 << 16))
    err = np.abs(softmax(s, mult, shift) / 2 ** 15 - reference(s, mult, shift))
    bound = error_bound(s, mult, shift)
    assert (err <= bound).all(), float((err - bound).max())
    # the bound is a real constraint: an unrelated row breaks it
    wrong = np.abs(softmax(s[::-1], mult, shift) / 2 ** 15 - reference(s, mult, shift))
    assert n == 1 or (wrong > bound).any()


@pytest.mark.parametrize("n,spread", [(16, 0.5), (128, 8.0), (1024, 2.0), (8192, 8.0)])
def test_error_table_lines_below_bounds(n, spread):
    r = error_rows(n, spread, rows=8)
    assert r["p_ok"] and r["out_ok"], r
    assert r["p_max"] <= r["p_bound"] and r["out_max"] <= r["out_bound"]


def test_error_table_cli(capsys):
    assert main([]) == 2
    capsys.readouterr()
    assert main(["--error-table", "--rows", "2", "--lengths", "16"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("| n | logit std |") and out.count("\n| 16 |") == 3
    assert format_error_table([]).count("\n") == 1


# --- attention ----------------------------------------------------------------------

def test_decode_hand_checked():
    q = np.array([[[1, 0]]], I8)                           # B=1, Hq=1, D=2
    k = np.zeros((1, 1, 2, 2), I8)                         # equal scores
    v = np.array([[[[10, -4], [20, 8]]]], I8)
    st = decode_attention(q, k, v, [2], 100, 3, 1, 15, steps=True)
    assert st["p"].tolist() == [[[16376, 16376]]]
    assert st["acc"].tolist() == [[[16376 * 30, 16376 * 4]]]
    # (491280 + 16384) >> 15 = 15; (65504 + 16384) >> 15 = 2
    assert st["out"].tolist() == [[[15, 2]]]
    # length 1: only position 0 counts, p = 32752
    st = decode_attention(q, k, v, [1], 100, 3, 1, 15, steps=True)
    assert st["p"].tolist() == [[[32752, 0]]]
    assert st["out"].tolist() == [[[(32752 * 10 + 16384) >> 15, (-4 * 32752 + 16384) >> 15]]]


def test_gqa_grouping_equals_per_head():
    rng = np.random.default_rng(2)
    B, Hkv, G, L, D = 3, 2, 4, 37, 16
    q, k, v = rnd8(rng, B, Hkv * G, D), rnd8(rng, B, Hkv, L, D), rnd8(rng, B, Hkv, L, D)
    lens = np.array([37, 1, 20])
    mult, shift = scale_config(1.0 / 4096)
    out = decode_attention(q, k, v, lens, mult, shift, 3, 14)
    for h in range(Hkv * G):
        g = h // G
        one = decode_attention(q[:, h:h + 1], k[:, g:g + 1], v[:, g:g + 1], lens,
                               mult, shift, 3, 14)
        assert (out[:, h:h + 1] == one).all(), h
    rep = decode_attention(q, np.repeat(k, G, 1), np.repeat(v, G, 1), lens, mult, shift, 3, 14)
    assert (rep == out).all()
    for b in range(B):                                     # a request sees only its length
        n = int(lens[b])
        one = decode_attention(q[b:b + 1], k[b:b + 1, :, :n], v[b:b + 1, :, :n], [n],
                               mult, shift, 3, 14)
        assert (one == out[b:b + 1]).all()


def test_decode_equals_plain_reference():
    rng = np.random.default_rng(3)
    q, k, v = rnd8(rng, 1, 2, 8), rnd8(rng, 1, 1, 9, 8), rnd8(rng, 1, 1, 9, 8)
    mult, shift = scale_config(0.002)
    out = decode_attention(q, k, v, [9], mult, shift, 200, 20)
    for h in range(2):
        s = [int(np.dot(q[0, h].astype(int), k[0, 0, j].astype(int))) for j in range(9)]
        p = softmax(np.array([s]), mult, shift)[0].astype(np.int64)
        acc = [sum(int(p[j]) * int(v[0, 0, j, d]) for j in range(9)) for d in range(8)]
        assert out[0, h].tolist() == requant(np.array(acc), 200, 20).tolist()


def test_prefill_causal_equals_decode_per_position():
    rng = np.random.default_rng(4)
    L, T, Hkv, G, D = 12, 5, 2, 2, 8
    q, k, v = rnd8(rng, T, Hkv * G, D), rnd8(rng, L, Hkv, D), rnd8(rng, L, Hkv, D)
    mult, shift = scale_config(1.0 / 2000)
    st = prefill_attention(q, k, v, mult, shift, 5, 16, steps=True)
    kc = np.transpose(k, (1, 0, 2))[None]                  # (1, Hkv, L, D)
    vc = np.transpose(v, (1, 0, 2))[None]
    for i in range(T):
        pos = L - T + i
        one = decode_attention(q[i:i + 1], kc, vc, [pos + 1], mult, shift, 5, 16)
        assert (st["out"][i] == one[0]).all(), i
        assert (st["p"][:, i, pos + 1:] == 0).all()        # the future gets nothing
        assert (st["p"][:, i, :pos + 1] > 0).any()
    full = prefill_attention(q[:1], k[:1], v[:1], mult, shift, 5, 16, steps=True)
    assert full["p"][:, 0, 0].tolist() == [32752] * (Hkv * G)   # position 0 sees itself


def test_prefill_mask_changes_result():
    rng = np.random.default_rng(5)
    q, k, v = rnd8(rng, 6, 1, 4), rnd8(rng, 6, 1, 4), rnd8(rng, 6, 1, 4)
    mult, shift = scale_config(0.01)
    st = prefill_attention(q, k, v, mult, shift, 1, 15, steps=True)
    assert np.triu(st["p"][0], 1).sum() == 0
    last = decode_attention(q[5:6], k.transpose(1, 0, 2)[None], v.transpose(1, 0, 2)[None],
                            [6], mult, shift, 1, 15)
    assert (st["out"][5] == last[0]).all()


def _decode_args(rng):
    return dict(q=rnd8(rng, 2, 4, 8), k_cache=rnd8(rng, 2, 2, 5, 8),
                v_cache=rnd8(rng, 2, 2, 5, 8), lengths=np.array([5, 3]), sm_mult=100,
                sm_shift=10, out_mult=1, out_shift=15)


@pytest.mark.parametrize("change,field", [
    (dict(q=np.zeros((2, 4, 8), np.int16)), "q: expected dtype int8"),
    (dict(q=np.zeros((2, 4), I8)), "q: expected 3 dimensions"),
    (dict(q=np.zeros((2, 3, 8), I8)), "q: 3 query heads"),
    (dict(k_cache=np.zeros((2, 2, 5, 7), I8)), "k_cache: shape"),
    (dict(v_cache=np.zeros((2, 2, 4, 8), I8)), "v_cache: shape"),
    (dict(lengths=np.array([6, 3])), "lengths: 6 out of range 1..5"),
    (dict(lengths=np.array([0, 3])), "lengths: 0 out of range"),
    (dict(lengths=np.array([1.0, 3.0])), "lengths: expected 2 integers"),
    (dict(lengths=np.array([1])), "lengths: expected 2 integers"),
    (dict(sm_mult=65536), "mult: 65536 out of range"),
    (dict(sm_mult=1.5), "mult: expected an integer"),
    (dict(sm_shift=0), "shift: 0 out of range 1..47"),
    (dict(sm_shift=48), "shift: 48 out of range"),
    (dict(out_shift=0), "shift: 0 out of range 1..31"),
    (dict(out_mult=-1), "mult: -1 out of range"),
    (dict(q=np.zeros((2, 4, 0), I8)), "q: empty dimension"),
])
def test_decode_bad_input(change, field):
    args = _decode_args(np.random.default_rng(6))
    args.update(change)
    with pytest.raises(FormatError, match=field):
        decode_attention(**args)


def test_prefill_bad_input():
    rng = np.random.default_rng(7)
    q, k, v = rnd8(rng, 4, 2, 8), rnd8(rng, 6, 1, 8), rnd8(rng, 6, 1, 8)
    with pytest.raises(FormatError, match="q: 7 queries but only 6"):
        prefill_attention(rnd8(rng, 7, 2, 8), k, v, 1, 1, 1, 1)
    with pytest.raises(FormatError, match="v: shape"):
        prefill_attention(q, k, v[:5], 1, 1, 1, 1)
    with pytest.raises(FormatError, match="k: shape"):
        prefill_attention(q, rnd8(rng, 6, 1, 4), v, 1, 1, 1, 1)
    with pytest.raises(FormatError, match="q: 3 query heads is not a multiple of the 2"):
        prefill_attention(rnd8(rng, 4, 3, 8), rnd8(rng, 6, 2, 8), rnd8(rng, 6, 2, 8), 1, 1, 1, 1)
    with pytest.raises(FormatError, match="k: expected dtype int8"):
        prefill_attention(q, k.astype(np.int32), v, 1, 1, 1, 1)


def test_softmax_bad_input():
    with pytest.raises(FormatError, match="scores: expected an integer array"):
        softmax([[0.5]], 1, 1)
    with pytest.raises(FormatError, match="scores: value 2147483648 outside the int32"):
        softmax([[1 << 31]], 1, 1)
    with pytest.raises(FormatError, match=f"row length {MAX_ROW + 1} exceeds MAX_ROW"):
        softmax(np.zeros((1, MAX_ROW + 1), np.int32), 1, 1)
    with pytest.raises(FormatError, match="scores: expected rows of at least one"):
        softmax(np.zeros((2, 0), np.int32), 1, 1)
    with pytest.raises(FormatError, match="mask: every row needs"):
        softmax([[1, 2]], 1, 1, mask=np.array([[False, False]]))
    with pytest.raises(FormatError, match="mask: expected a bool array"):
        softmax([[1, 2]], 1, 1, mask=np.array([[1, 0]]))
