"""Duplex dispatch: Op/B of each operation, the stage rule and expert co-processing.

* :func:`op_per_byte` - operations (2 per MAC) per byte of DRAM traffic for the
  operations of a decoder layer. With int8 weights (our numerics) an expert FFN
  with t tokens has Op/B of about 2t; with the paper's FP16 (``weight_bytes=2``)
  about t. GQA decode attention: about 2g / kv_bytes (= g with an FP16 KV cache).
* :func:`dispatch_stage` - Duplex's rule: MoE of decode-only stages and decode
  attention go to Logic-PIM, everything else to the xPU.
* :func:`coprocess` - expert co-processing: from per-unit time tables, start with
  every expert on the xPU, move the experts with the fewest tokens to Logic-PIM
  one at a time, keep the split with the smallest max(time_xPU, time_PIM).
* :func:`pim_time_table` / :func:`xpu_time_table` - the per-unit tables from our
  two cycle models (golden.pim for Logic-PIM, golden.sptc for the xPU = Engine 1).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .errors import FormatError

OPS = ("expert_ffn", "linear", "attention_decode", "attention_prefill")
PIM, XPU = "pim", "xpu"


def _pos_int(v, name, lo=1):
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < lo:
        raise FormatError(f"{name}: expected an integer >= {lo}, got {v!r}")
    return int(v)


def _pos_num(v, name):
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) \
            or not math.isfinite(v) or v <= 0:
        raise FormatError(f"{name}: expected a positive number, got {v!r}")
    return float(v)


def op_per_byte(op: str, *, tokens: int = 1, hidden: int = 4096, ffn: int = 14336,
                m: int | None = None, k: int | None = None, group: int = 8, seq_len: int = 2048,
                head_dim: int = 128, kv_heads: int = 1, weight_bytes: float = 1,
                act_bytes: float = 1, kv_bytes: float = 1) -> float:
    """Ops (2 per multiply-accumulate) per byte of off-chip traffic.

    ``expert_ffn``: gated FFN, three (ffn x hidden) matrices, ``tokens`` tokens:
    2*t*3*h*f ops over 3*h*f weight bytes + t*2h activation bytes (input and
    output; the intermediate stays on chip).
    ``linear``: (m x k) weights and ``tokens`` tokens: 2*t*m*k over m*k weights +
    t*(k+m) activations.
    ``attention_decode``: one decode token per sequence, GQA with ``group``
    query heads per KV head, ``kv_heads`` KV heads, context ``seq_len``:
    QK^T and PV = 4*g*L*d*kv_heads ops over the K and V caches 2*L*d*kv_heads
    bytes (+ the g query and output vectors).
    ``attention_prefill``: causal self-attention over ``seq_len`` prompt tokens,
    ``group`` query heads per KV head: 2*g*L*L*d*kv_heads ops (half of the full
    4*g*L*L*d by causality) over Q, O (g*L*d each) and K, V (L*d each) per KV head.
    """
    wb, ab, kb = (_pos_num(weight_bytes, "weight_bytes"), _pos_num(act_bytes, "act_bytes"),
                  _pos_num(kv_bytes, "kv_bytes"))
    if op == "expert_ffn":
        t, h, f = _pos_int(tokens, "tokens"), _pos_int(hidden, "hidden"), _pos_int(ffn, "ffn")
        return 2 * t * 3 * h * f / (3 * h * f * wb + t * 2 * h * ab)
    if op == "linear":
        if m is None or k is None:
            raise FormatError("m/k: 'linear' needs the weight shape m and k")
        t, m, k = _pos_int(tokens, "tokens"), _pos_int(m, "m"), _pos_int(k, "k")
        return 2 * t * m * k / (m * k * wb + t * (k + m) * ab)
    if op == "attention_decode":
        g, L, d, hk = (_pos_int(group, "group"), _pos_int(seq_len, "seq_len"),
                       _pos_int(head_dim, "head_dim"), _pos_int(kv_heads, "kv_heads"))
        return 4 * g * L * d * hk / (2 * L * d * hk * kb + 2 * g * d * hk * ab)
    if op == "attention_prefill":
        g, L, d, hk = (_pos_int(group, "group"), _pos_int(seq_len, "seq_len"),
                       _pos_int(head_dim, "head_dim"), _pos_int(kv_heads, "kv_heads"))
        return 2 * g * L * L * d * hk / (2 * g * L * d * hk * ab + 2 * L * d * hk * kb)
    raise FormatError(f"op: unknown operation {op!r} (expected one of {OPS})")


def dispatch_stage(op: str, decode_only: bool) -> str:
    """Duplex's stage rule: which unit runs ``op`` in a step.

    MoE expert FFNs of a decode-only step and decode attention (in any step)
    go to Logic-PIM; prefill attention, linear layers and the MoE of steps that
    mix in prefill tokens go to the xPU.
    """
    if op not in OPS:
        raise FormatError(f"op: unknown operation {op!r} (expected one of {OPS})")
    if not isinstance(decode_only, (bool, np.bool_)):
        raise FormatError(f"decode_only: expected a bool, got {decode_only!r}")
    if op == "attention_decode" or (op == "expert_ffn" and decode_only):
        return PIM
    return XPU


def _lookup(table, n: int, name: str) -> float:
    if n == 0:
        return 0.0
    try:
        if callable(table):
            v = table(n)
        elif isinstance(table, Mapping):
            v = table[n]
        elif isinstance(table, (Sequence, np.ndarray)):
            if n >= len(table):
                raise IndexError(n)
            v = table[n]
        else:
            raise FormatError(f"{name}: expected a callable, mapping or sequence, got "
                              f"{type(table).__name__}")
    except (KeyError, IndexError):
        raise FormatError(f"{name}: no time for {n} tokens") from None
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)) \
            or not math.isfinite(v) or v < 0:
        raise FormatError(f"{name}: time for {n} tokens must be a finite number >= 0, got {v!r}")
    return v


@dataclass(frozen=True)
class Assignment:
    """Result of :func:`coprocess`.

    units        per expert, ``"xpu"`` or ``"pim"`` (experts with 0 tokens: ``"xpu"``, time 0)
    time_xpu     sum of the xPU experts' times
    time_pim     sum of the Logic-PIM experts' times
    makespan     max(time_xpu, time_pim)
    moved        how many experts went to Logic-PIM
    all_xpu      makespan with every expert on the xPU
    all_pim      makespan with every expert on Logic-PIM
    splits       (moved, time_xpu, time_pim) of every split tried, in order
    """
    units: tuple
    time_xpu: float
    time_pim: float
    makespan: float
    moved: int
    all_xpu: float
    all_pim: float
    splits: tuple

    @property
    def speedup(self) -> float:
        """all-on-xPU time / co-processed time."""
        return self.all_xpu / self.makespan if self.makespan else 1.0


def coprocess(tokens_per_expert, t_xpu, t_pim) -> Assignment:
    """Duplex expert co-processing.

    ``t_xpu`` and ``t_pim`` map a token count to that unit's time for one expert
    (a callable, a mapping or a sequence indexed by token count). Experts run
    one after another on each unit and the two units run in parallel. Start with
    every expert on the xPU; move experts to Logic-PIM in ascending token order
    (ties: lower expert index first), one at a time; keep the split with the
    smallest max(time_xpu, time_pim) (ties: fewer moved). Since the all-xPU and
    all-PIM splits are among those tried, the result is never worse than either.
    """
    counts = list(tokens_per_expert) if not isinstance(tokens_per_expert, np.ndarray) \
        else tokens_per_expert.tolist()
    if not counts:
        raise FormatError("tokens_per_expert: empty")
    for i, c in enumerate(counts):
        _pos_int(c, f"tokens_per_expert[{i}]", lo=0)
    counts = [int(c) for c in counts]
    tx = [_lookup(t_xpu, c, "t_xpu") for c in counts]
    tp = [_lookup(t_pim, c, "t_pim") for c in counts]
    order = [i for i in sorted(range(len(counts)), key=lambda i: (counts[i], i)) if counts[i] > 0]
    cur_x, cur_p = float(sum(tx)), 0.0
    best = (max(cur_x, cur_p), 0, cur_x, cur_p)
    splits = [(0, cur_x, cur_p)]
    for k, e in enumerate(order, start=1):
        cur_x -= tx[e]
        cur_p += tp[e]
        splits.append((k, cur_x, cur_p))
        if max(cur_x, cur_p) < best[0]:
            best = (max(cur_x, cur_p), k, cur_x, cur_p)
    _, k, bx, bp = best
    on_pim = set(order[:k])
    units = tuple(PIM if i in on_pim else XPU for i in range(len(counts)))
    return Assignment(units, bx, bp, max(bx, bp), k, float(sum(tx)), float(sum(tp)),
                      tuple(splits))


# --------------------------------------------------------------------------- per-unit tables

def pim_time_table(hidden: int, ffn: int, max_tokens: int, cfg=None) -> list[int]:
    """Logic-PIM cycles of one expert FFN for 0..max_tokens tokens (golden.pim cycle model)."""
    from . import pim
    cfg = cfg or pim.CONFIG_DEFAULT
    return [pim.expert_ffn_cycles(cfg, hidden, ffn, t) for t in range(max_tokens + 1)]


def xpu_time_table(hidden: int, ffn: int, max_tokens: int, cfg=None, mode: str = "dense",
                   bytes_per_cycle: float | None = None, nmv: tuple = (1, 2, 32)) -> list[int]:
    """xPU (Engine 1, the SpTC) cycles of one expert FFN for 0..max_tokens tokens.

    Each of the three GEMMs takes ``golden.sptc.predict_cycles``; with
    ``bytes_per_cycle`` set, no GEMM is faster than streaming its weights, in the
    format of ``mode`` (``golden.costmodel.weight_bytes``: dense m*k, 2:4 0.625 m*k,
    Samoyeds less), at that rate (the xPU reads HBM through the ordinary interface:
    Duplex's premise is that Logic-PIM sees about 4x that bandwidth).
    """
    from . import sptc
    from .costmodel import weight_bytes
    cfg = cfg or sptc.SpTCConfig()
    shapes = [(ffn, hidden), (ffn, hidden), (hidden, ffn)]
    out = [0]
    for t in range(1, max_tokens + 1):
        c = 0
        for m, k in shapes:
            g = sptc.predict_cycles(cfg, mode, m, k, t, nmv)
            if bytes_per_cycle:
                g = max(g, math.ceil(weight_bytes(mode, m, k, nmv) / bytes_per_cycle))
            c += g
        out.append(c)
    return out


def crossover(t_xpu, t_pim, max_tokens: int) -> int | None:
    """Smallest token count at which Logic-PIM is no faster than the xPU (None: never)."""
    for t in range(1, max_tokens + 1):
        if _lookup(t_pim, t, "t_pim") >= _lookup(t_xpu, t, "t_xpu"):
            return t
    return None
