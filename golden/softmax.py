"""The integer softmax of the attention unit: one definition for golden and RTL.

A row of int32 scores ``s[0..n-1]`` (1 <= n <= MAX_ROW) becomes unsigned
probabilities ``p[j]`` in Q0.15 (``p / 2**15``, 0..32768), every step an integer
operation (docs/attention.md has the contract with widths and its error):

1. ``m = max(s)``; ``d[j] = m - s[j]`` (0 .. 2**32 - 1, unsigned 32-bit).
2. ``t[j] = min((d[j] * mult + (1 << (shift - 1))) >> shift, T_CUT)``: the exponent
   argument in units of 2**-8 of log2, T_CUT = 4096 (``mult`` unsigned 16-bit, ``1 <= shift <=
   SHIFT_MAX``, the sum below 2**49). ``mult / 2**shift`` is the real score
   scale times ``log2(e) * 256`` (:func:`scale_config` picks them).
3. ``e[j] = (EXP_TABLE[f] + ((1 << i) >> 1)) >> i`` with ``f = t[j] & 255``, ``i =
   t[j] >> 8`` (0..15; round half up), and ``e[j] = 0`` where ``t[j] = T_CUT``;
   ``EXP_TABLE[f] = round(2**15 * 2**(-f / 256))``: ``2**(-t/256)`` in Q0.15,
   0..32768 (16 bits); ``e = 32768`` at the row's maximum.
4. ``S = sum(e)`` (int32: ``S <= MAX_ROW * 2**15 < 2**31``; ``S >= 2**15``).
5. ``k = floor(log2(S))`` (15..30), ``i = (S >> (k - 10)) - 1024`` (the 10 bits after
   the leading one), ``R = RECIP_TABLE[i] = round(2**26 / (1024 + i + 1/2))``
   (16 bits): ``1/S ~= R * 2**-(16 + k)``, the interval's midpoint.
6. ``p[j] = (e[j] * R + (1 << k)) >> (k + 1)`` (round half up; the sum below 2**32;
   ``p <= 32752``).
"""
from __future__ import annotations

import numpy as np

from .errors import FormatError

MAX_ROW = 65535          # the sum of e (each <= 2**15) stays below 2**31
P_FRAC = 15              # probabilities in Q0.15
E_FRAC = 15              # exp values in Q0.15
T_FRAC = 8               # exponent argument: 2**-8 units of log2
T_CUT = 16 << T_FRAC     # t clamps here; e = 0 (2**15 * 2**-16 = 0.5 rounds down)
RECIP_BITS = 10          # reciprocal table index: bits after the leading one of S
MULT_MAX = (1 << 16) - 1
SHIFT_MIN, SHIFT_MAX = 1, 47

#: 2**(-f/256) in Q0.15, rounded to nearest; EXP_TABLE[0] = 32768.
EXP_TABLE = np.floor((1 << E_FRAC) * np.exp2(-np.arange(1 << T_FRAC) / (1 << T_FRAC))
                     + 0.5).astype(np.int64)
#: round(2**26 / (1024 + i + 1/2)) exactly (integer arithmetic): 65504 .. 32776.
RECIP_TABLE = np.array([((1 << 28) + (2049 + 2 * i)) // (2 * (2049 + 2 * i))
                        for i in range(1 << RECIP_BITS)], dtype=np.int64)


def _int(value, field: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise FormatError(f"{field}: expected an integer, got {value!r}")
    return int(value)


def check_config(mult, shift) -> tuple[int, int]:
    """``(mult, shift)`` as ints, or a FormatError naming the bad one."""
    mult, shift = _int(mult, "mult"), _int(shift, "shift")
    if not 0 <= mult <= MULT_MAX:
        raise FormatError(f"mult: {mult} out of range 0..{MULT_MAX} (unsigned 16-bit)")
    if not SHIFT_MIN <= shift <= SHIFT_MAX:
        raise FormatError(f"shift: {shift} out of range {SHIFT_MIN}..{SHIFT_MAX}")
    return mult, shift


def scale_config(scale: float) -> tuple[int, int]:
    """Host helper: ``(mult, shift)`` with ``mult / 2**shift`` nearest to
    ``scale * log2(e) * 256`` (the largest shift whose mult fits 16 bits).
    ``scale`` is the real value of one score unit (e.g. q and k scales / sqrt(D))."""
    c = float(scale) * np.log2(np.e) * (1 << T_FRAC)
    if not np.isfinite(c) or c <= 0:
        raise FormatError(f"scale: {scale!r} must be a positive finite number")
    for shift in range(SHIFT_MAX, SHIFT_MIN - 1, -1):
        mult = int(np.floor(c * 2.0 ** shift + 0.5))
        if mult <= MULT_MAX:
            if mult == 0:
                raise FormatError(f"scale: {scale!r} is too small for a 16-bit mult "
                                  f"and shift <= {SHIFT_MAX}")
            return mult, shift
    raise FormatError(f"scale: {scale!r} is too large (mult would exceed {MULT_MAX} "
                      f"at shift {SHIFT_MIN})")


def config_scale(mult: int, shift: int) -> float:
    """The real score scale a ``(mult, shift)`` pair represents (inverse of scale_config)."""
    return mult / 2.0 ** shift / (np.log2(np.e) * (1 << T_FRAC))


def _check_rows(scores, field: str, last_axis_len=None) -> np.ndarray:
    a = np.asarray(scores)
    if a.dtype.kind not in "iu":
        raise FormatError(f"{field}: expected an integer array, got dtype {a.dtype}")
    if a.ndim == 0 or a.shape[-1] == 0:
        raise FormatError(f"{field}: expected rows of at least one score, got shape {a.shape}")
    if a.shape[-1] > MAX_ROW:
        raise FormatError(f"{field}: row length {a.shape[-1]} exceeds MAX_ROW = {MAX_ROW}")
    if a.size and (a.min() < -(1 << 31) or a.max() > (1 << 31) - 1):
        bad = a[(a < -(1 << 31)) | (a > (1 << 31) - 1)].flat[0]
        raise FormatError(f"{field}: value {int(bad)} outside the int32 range")
    return a.astype(np.int64)


def softmax_steps(scores, mult: int, shift: int, mask=None) -> dict:
    """Every intermediate of :func:`softmax` along the last axis: ``m``, ``d``, ``t``,
    ``e``, ``S``, ``k``, ``idx``, ``R``, ``p`` (int64 arrays; ``m``, ``S``, ``k``,
    ``idx``, ``R`` with the last axis kept as length 1). ``mask`` (bool, same shape,
    True = take part) drops scores: they get e = p = 0, as if absent from the row;
    every row needs at least one True."""
    mult, shift = check_config(mult, shift)
    s = _check_rows(scores, "scores")
    if mask is None:
        keep = np.ones(s.shape, dtype=bool)
    else:
        keep = np.asarray(mask)
        if keep.dtype != bool or keep.shape != s.shape:
            raise FormatError(f"mask: expected a bool array of shape {s.shape}, "
                              f"got {keep.dtype} {keep.shape}")
        if not keep.any(axis=-1).all():
            raise FormatError("mask: every row needs at least one unmasked score")
    m = np.where(keep, s, np.iinfo(np.int64).min).max(axis=-1, keepdims=True)
    d = np.where(keep, m - s, 0)
    t = np.minimum((d * mult + (1 << (shift - 1))) >> shift, T_CUT)
    i = t >> T_FRAC
    e = (EXP_TABLE[t & ((1 << T_FRAC) - 1)] + ((1 << i) >> 1)) >> i
    e = np.where(keep & (t < T_CUT), e, 0)
    S = e.sum(axis=-1, keepdims=True)
    k = np.floor(np.log2(S)).astype(np.int64)
    k += (S >> k) >= 2          # exact floor(log2) whatever the float log2 did
    k -= (S >> k) == 0
    idx = (S >> (k - RECIP_BITS)) - (1 << RECIP_BITS)
    R = RECIP_TABLE[idx]
    p = (e * R + (1 << k)) >> (k + 1)
    return dict(m=m, d=d, t=t, e=e, S=S, k=k, idx=idx, R=R, p=p)


def softmax(scores, mult: int, shift: int, mask=None) -> np.ndarray:
    """Probabilities (uint16 holding Q0.15, 0..32768) of each row of int32 scores
    along the last axis; see the module docstring for the steps."""
    return softmax_steps(scores, mult, shift, mask)["p"].astype(np.uint16)


def reference(scores, mult: int, shift: int, mask=None) -> np.ndarray:
    """float64 softmax of ``scores * config_scale(mult, shift)`` (the same masked rows):
    what :func:`softmax` approximates, for the error table."""
    s = np.asarray(scores, dtype=np.float64) * config_scale(mult, shift)
    if mask is not None:
        s = np.where(mask, s, -np.inf)
    s = s - s.max(axis=-1, keepdims=True)
    q = np.exp(s)
    return q / q.sum(axis=-1, keepdims=True)


# the contract's error terms (docs/attention.md, "Error bound")
EPS_T = 2.0 ** (0.5 / (1 << T_FRAC)) - 1       # t rounded to 1/256 of log2: relative
ETA_E = 0.75                                    # table + shift rounding (units of e)
EPS_R = 0.5 / (1024.5) + 0.5 / (1 << 15)        # reciprocal table: interval + rounding


def error_bound(scores, mult: int, shift: int, mask=None) -> np.ndarray:
    """Per-element bound on ``|p / 2**15 - reference|`` derived from the contract's
    steps (float64): e = 2**15 q (1 +- EPS_T) +- ETA_E (t rounded by at most half a
    unit; the table entry by 0.5, shifted by i >= 1 at most 0.25, plus the shift's
    rounding 0.5; e = 0 at T_CUT where 2**15 q <= 0.5), S the sum of those,
    1/S off by EPS_R relative, p rounded by 2**-16."""
    pi = reference(scores, mult, shift, mask)
    s = np.asarray(scores, dtype=np.float64) * config_scale(mult, shift)
    if mask is not None:
        s = np.where(mask, s, -np.inf)
    q = np.exp(s - s.max(axis=-1, keepdims=True)) * (1 << E_FRAC)   # 2**15 * q_j
    n = q.shape[-1] if mask is None else np.asarray(mask).sum(axis=-1, keepdims=True)
    Q = q.sum(axis=-1, keepdims=True)
    s_lo = np.maximum(Q * (1 - EPS_T) - ETA_E * n, 1 << E_FRAC)      # S >= 2**15 always
    s_hi = Q * (1 + EPS_T) + ETA_E * n
    hi = (q * (1 + EPS_T) + ETA_E) / s_lo * (1 + EPS_R)
    lo = np.maximum(q * (1 - EPS_T) - ETA_E, 0) / s_hi * (1 - EPS_R)
    bound = np.maximum(hi - pi, pi - lo) + 2.0 ** -(P_FRAC + 1)
    if mask is not None:
        bound = np.where(mask, bound, 0.0)
    return bound


def unit_schedule(lengths) -> list[tuple[int, int]]:
    """Cycle model of the RTL softmax unit (hdl.attn.softmax) with the input always
    valid and the output always ready: for each row (in order), the cycle its first
    score is taken and the cycle its last probability is taken, counted from the
    first row's first score (cycle 0). Per row of ``n``:

    * ``a`` first score (``a + n - 1`` the last; the row is complete at ``a + n``);
    * ``h = max(a + n, g_prev)``: handed to EXP (``g_prev`` the previous row's EXP
      hand-off); the next row's first score at ``h + 1``;
    * ``g = max(h + n + 6, f_prev)``: handed to OUT (n reads, 3 stages, 2 reciprocal
      cycles); ``f_prev`` the cycle the previous row's OUT wrote its last FIFO entry;
    * OUT reads at ``g + 1 .. g + n``, its FIFO writes at ``g + 2 .. g + n + 1``
      (``f = g + n + 1``), the probabilities leave at ``g + 3 .. g + n + 2``.
    """
    out, a, g_prev, f_prev = [], 0, 0, 0
    for n in lengths:
        h = max(a + n, g_prev)
        g = max(h + n + 6, f_prev)
        f = g + n + 1
        out.append((a, g + n + 2))
        a, g_prev, f_prev = h + 1, g, f
    return out
