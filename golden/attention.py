"""GQA attention, integer and bit-exact: decode (one query per request) and prefill
(causal), on int8 q / K / V with the integer softmax of :mod:`golden.softmax`.

Shapes (one layer; ``Hq = G * Hkv`` query heads, query head ``h`` reads KV head
``h // G``; ``D`` the head dimension):

* :func:`decode_attention`: ``q`` (B, Hq, D), ``k_cache`` / ``v_cache``
  (B, Hkv, L, D), ``lengths`` (B,) with ``1 <= lengths[b] <= L``: request ``b``
  attends its first ``lengths[b]`` positions.
* :func:`prefill_attention`: ``q`` (T, Hq, D), ``k`` / ``v`` (L, Hkv, D) with
  ``T <= L``: query ``i`` sits at position ``L - T + i`` and attends positions
  ``0 .. L - T + i`` (causal; ``T < L`` is a chunk after ``L - T`` earlier tokens).

Steps (docs/attention.md): scores ``s = q . k`` in int32 (D <= MAX_K); ``p =
softmax(s)`` in Q0.15 (``sm_mult``, ``sm_shift``: :func:`golden.softmax.scale_config`);
``acc = sum_j p[j] * v[j]`` in int32 (``sum p <= 2**15 * (1 + 2**-10) + n / 2``, so
``|acc| < 2**24``);
``out = requant(acc, out_mult, out_shift)`` (golden.numerics), int8.

``python -m golden.attention --error-table`` prints the error against float64.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from .errors import FormatError
from .numerics import MAX_K, requant
from .softmax import MAX_ROW, P_FRAC, check_config, error_bound, reference, scale_config
from .softmax import softmax_steps


def _int8(a, field: str, ndim: int) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype != np.int8:
        raise FormatError(f"{field}: expected dtype int8, got {a.dtype}")
    if a.ndim != ndim:
        raise FormatError(f"{field}: expected {ndim} dimensions, got shape {a.shape}")
    if 0 in a.shape:
        raise FormatError(f"{field}: empty dimension in shape {a.shape}")
    return a.astype(np.int64)


def _heads(hq: int, hkv: int) -> int:
    if hq % hkv:
        raise FormatError(f"q: {hq} query heads is not a multiple of the {hkv} KV heads")
    return hq // hkv


def _check_out(out_mult, out_shift):
    requant(np.zeros(1, np.int64), out_mult, out_shift)     # FormatError names the field


def decode_attention(q, k_cache, v_cache, lengths, sm_mult: int, sm_shift: int,
                     out_mult: int, out_shift: int, *, steps: bool = False):
    """int8 (B, Hq, D) decode attention output; with ``steps=True`` a dict with
    ``out``, ``scores`` (B, Hq, L) int64 (positions past a request's length 0),
    ``p`` (B, Hq, L) Q0.15 (0 past the length), ``acc`` (B, Hq, D) int64."""
    qi = _int8(q, "q", 3)
    k = _int8(k_cache, "k_cache", 4)
    v = _int8(v_cache, "v_cache", 4)
    B, Hq, D = qi.shape
    if k.shape[0] != B or k.shape[3] != D:
        raise FormatError(f"k_cache: shape {k.shape} does not match q {qi.shape} "
                          "(expected (B, Hkv, L, D))")
    if v.shape != k.shape:
        raise FormatError(f"v_cache: shape {v.shape} differs from k_cache {k.shape}")
    Hkv, L = k.shape[1], k.shape[2]
    G = _heads(Hq, Hkv)
    if D > MAX_K:
        raise FormatError(f"q: head dimension {D} exceeds MAX_K = {MAX_K}")
    if L > MAX_ROW:
        raise FormatError(f"k_cache: context {L} exceeds the softmax's MAX_ROW = {MAX_ROW}")
    lens = np.asarray(lengths)
    if lens.dtype.kind not in "iu" or lens.shape != (B,):
        raise FormatError(f"lengths: expected {B} integers, got {lens.dtype} {lens.shape}")
    if lens.min() < 1 or lens.max() > L:
        bad = int(lens[(lens < 1) | (lens > L)][0])
        raise FormatError(f"lengths: {bad} out of range 1..{L} (the cache's positions)")
    check_config(sm_mult, sm_shift)
    _check_out(out_mult, out_shift)
    kq = np.repeat(k, G, axis=1)                                # (B, Hq, L, D)
    vq = np.repeat(v, G, axis=1)
    scores = np.einsum("bhd,bhld->bhl", qi, kq)
    mask = np.arange(L)[None, None, :] < lens[:, None, None]
    return _softmax_pv(scores, mask, "bhl,bhld->bhd", vq, sm_mult, sm_shift, out_mult,
                       out_shift, steps)


def prefill_attention(q, k, v, sm_mult: int, sm_shift: int, out_mult: int, out_shift: int,
                      *, steps: bool = False):
    """int8 (T, Hq, D) causal attention output; with ``steps=True`` a dict with
    ``out``, ``scores`` (Hq, T, L) (masked positions 0), ``p`` (Hq, T, L), ``acc``
    (T, Hq, D)."""
    qi = _int8(q, "q", 3)
    ki = _int8(k, "k", 3)
    vi = _int8(v, "v", 3)
    T, Hq, D = qi.shape
    L, Hkv = ki.shape[0], ki.shape[1]
    if ki.shape[2] != D:
        raise FormatError(f"k: shape {ki.shape} does not match q {qi.shape} "
                          "(expected (L, Hkv, D))")
    if vi.shape != ki.shape:
        raise FormatError(f"v: shape {vi.shape} differs from k {ki.shape}")
    if T > L:
        raise FormatError(f"q: {T} queries but only {L} key positions (need T <= L)")
    G = _heads(Hq, Hkv)
    if D > MAX_K:
        raise FormatError(f"q: head dimension {D} exceeds MAX_K = {MAX_K}")
    if L > MAX_ROW:
        raise FormatError(f"k: context {L} exceeds the softmax's MAX_ROW = {MAX_ROW}")
    check_config(sm_mult, sm_shift)
    _check_out(out_mult, out_shift)
    kq = np.repeat(ki, G, axis=1)                               # (L, Hq, D)
    vq = np.repeat(vi, G, axis=1)
    scores = np.einsum("thd,lhd->htl", qi, kq)
    mask = np.arange(L)[None, :] <= (L - T + np.arange(T))[:, None]    # (T, L)
    return _softmax_pv(scores, mask, "htl,lhd->thd", vq, sm_mult, sm_shift, out_mult,
                       out_shift, steps)


def _softmax_pv(scores, mask, pv, vq, sm_mult, sm_shift, out_mult, out_shift, steps):
    """The part decode and prefill share: masked scores -> integer softmax -> P x V
    (einsum ``pv``) in int32 -> requant to int8; with ``steps`` every intermediate."""
    mask = np.broadcast_to(mask, scores.shape)
    scores = np.where(mask, scores, 0)
    p = softmax_steps(scores, sm_mult, sm_shift, mask)["p"]
    acc = np.einsum(pv, p, vq)
    out = requant(acc, out_mult, out_shift)
    if steps:
        return dict(out=out, scores=scores, p=p, acc=acc)
    return out


# --- the error against float64 -------------------------------------------------------

#: error-table sweep: context lengths, and the std of the real-valued logits
TABLE_LENGTHS = (16, 128, 1024, 8192)
TABLE_SPREADS = (0.5, 2.0, 8.0)
TABLE_ROWS = 64


def error_rows(n: int, spread: float, rows: int = TABLE_ROWS, seed: int = 0,
               out_shift: int = 15):
    """One table line: random decode attention of ``rows`` query rows over ``n``
    positions (D = 64, int8 q, K, V uniform), the softmax scale chosen so the real
    logits have std ``spread``; the output requant is (1, out_shift), i.e. ``out =
    sum p v`` rounded. Returns a dict of measured errors and their bounds."""
    rng = np.random.default_rng(seed)
    D = 64
    q = rng.integers(-128, 128, (rows, D), dtype=np.int64)
    k = rng.integers(-128, 128, (n, D), dtype=np.int64)
    v = rng.integers(-128, 128, (n, D), dtype=np.int64)
    s = q @ k.T
    mult, shift = scale_config(spread / float(s.std()))
    st = softmax_steps(s, mult, shift)
    pi = reference(s, mult, shift)
    bound = error_bound(s, mult, shift)
    perr = np.abs(st["p"] / 2.0 ** P_FRAC - pi)
    out = requant(st["p"] @ v, 1, out_shift).astype(np.float64)
    ref = np.clip((pi @ v) * 2.0 ** (P_FRAC - out_shift), -128, 127)
    oerr = np.abs(out - ref)
    obound = 128 * 2.0 ** (P_FRAC - out_shift) * bound.sum(axis=-1, keepdims=True) + 0.5
    return dict(n=n, spread=spread, mult=mult, shift=shift,
                p_max=float(perr.max()), p_mean=float(perr.mean()),
                p_bound=float(bound.max()), p_ok=bool((perr <= bound).all()),
                out_max=float(oerr.max()), out_mean=float(oerr.mean()),
                out_bound=float(obound.max()), out_ok=bool((oerr <= obound).all()))


def error_table(lengths=TABLE_LENGTHS, spreads=TABLE_SPREADS, rows: int = TABLE_ROWS):
    return [error_rows(n, sp, rows) for n in lengths for sp in spreads]


def format_error_table(lines) -> str:
    head = ("| n | logit std | p max abs err | p mean abs err | p bound | "
            "out max err (LSB) | out mean err (LSB) | out bound (LSB) |")
    out = [head, "|" + "---|" * 8]
    for r in lines:
        out.append(f"| {r['n']} | {r['spread']:g} | {r['p_max']:.2e} | {r['p_mean']:.2e} | "
                   f"{r['p_bound']:.2e} | {r['out_max']:.3f} | {r['out_mean']:.3f} | "
                   f"{r['out_bound']:.2f} |")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m golden.attention",
                                 description="integer attention: error against float64")
    ap.add_argument("--error-table", action="store_true",
                    help="print the softmax / attention error table (markdown)")
    ap.add_argument("--rows", type=int, default=TABLE_ROWS, help="query rows per line")
    ap.add_argument("--lengths", type=int, nargs="+", default=list(TABLE_LENGTHS),
                    help="context lengths (1..MAX_ROW)")
    args = ap.parse_args(argv)
    if not args.error_table:
        ap.print_help()
        return 2
    if args.rows < 1 or any(not 1 <= n <= MAX_ROW for n in args.lengths):
        ap.error(f"--rows must be >= 1 and --lengths in 1..{MAX_ROW}")
    lines = error_table(lengths=args.lengths, rows=args.rows)
    print(format_error_table(lines))
    bad = [(r["n"], r["spread"]) for r in lines if not (r["p_ok"] and r["out_ok"])]
    if bad:
        print(f"above the contract's bound: {bad}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
