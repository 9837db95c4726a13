"""Synthetic routing traces: continuous batching, top-k routing, load-skew models.

* Continuous batching: each step holds ``decode`` decode requests (1 token each)
  and a Poisson(``prefill``) number of new prefill requests (a prompt of
  ``prompt_len`` = uniform [lo, hi] tokens each). Steps with no prefill are
  *decode-only* (Duplex sends those MoE stages to Logic-PIM). Request ids persist:
  a prefilled request waits for a decode slot and decodes for ``gen_len`` =
  uniform [lo, hi] steps; a slot freed while nobody waits goes to a fresh id
  (a request prefilled before the trace window), so every step has exactly
  ``decode`` decode tokens. Within a step decode tokens come first, then each
  prompt's tokens contiguously.
* Routing: each token picks ``top_k`` *distinct* experts from a step-dependent
  popularity by the Gumbel-top-k trick (= sampling without replacement), ordered
  from the strongest choice down. Gate weights are a softmax of N(0, 1) logits
  over the chosen k, sorted descending so column 0 is the top-1 expert.
  ``gate_q`` is the hardware's int8 copy: ``floor(127 * gate)`` plus the
  largest-remainder correction, so every row lies in 0..127 and sums to exactly
  127 and ``|gate_q - 127 * gate| < 1``.
* Skew models (``skew_param`` meaning in brackets):
  ``uniform`` [unused, 0]; ``zipf`` [exponent s: the expert of rank r has weight
  r**-s, ranks are a fixed random permutation]; ``hot`` [target imbalance]:
  ``hot_experts`` experts get a logit boost and stay hot for a uniform 10..100
  steps (DeepSeek-R1 serving saw hot experts persist for tens to hundreds of
  steps), then a new hot set is drawn. The boost is calibrated by bisection on a
  Monte-Carlo estimate (common random numbers, the trace's own step sizes) so the
  mean per-step imbalance ``(max - mean) / mean`` of tokens per expert hits the
  target; DeepSeek-R1 measured about 11. The imbalance cannot exceed
  ``E / k - 1`` (a step's T tokens give mean T k / E and max <= T): a larger
  target is clamped to it with a warning, and a target below the sampling noise
  of a uniform router falls back to no boost with a warning. The default target
  is the same fraction of that maximum as DeepSeek-R1's 11 of 31 (= 11 exactly
  for DeepSeek-V3). ``skew_param`` records the target actually used.

``gen`` in the trace holds the batching and hot-set knobs and the calibrated
``hot_logit``, so a trace can be regenerated.
"""
from __future__ import annotations

import math
import warnings
from collections import deque

import numpy as np

from .model import PRESETS, SCHEMA_VERSION, SKEWS, Trace, preset_shape

HOT_DWELL = (10, 100)          # inclusive range of steps a hot set stays hot
R1_FRACTION = 11 / 31          # DeepSeek-R1's measured imbalance over its maximum
_MAX_LOGIT = 30.0              # hot boost at which hot experts are always chosen
_CAL_TOKENS, _CAL_STEPS = 4096, 32


def _batches(rng, steps, decode, prefill, prompt_len, gen_len):
    """Continuous-batching token layout: (step sizes, is_prefill, request_id)."""
    slots = [[rid, int(rng.integers(1, gen_len[1] + 1))] for rid in range(decode)]
    next_id, waiting = decode, deque()
    sizes, pre, rid = [], [], []
    for _ in range(steps):
        ids = [s[0] for s in slots]
        n_new = int(rng.poisson(prefill))
        lens = rng.integers(prompt_len[0], prompt_len[1] + 1, size=n_new)
        new = list(range(next_id, next_id + n_new))
        next_id += n_new
        rid += ids + [r for r, n in zip(new, lens) for _ in range(n)]
        pre += [False] * len(ids) + [True] * int(lens.sum())
        sizes.append(len(ids) + int(lens.sum()))
        waiting.extend(new)
        for s in slots:          # each decode slot emits one token; refill finished ones
            s[1] -= 1
            if s[1] == 0:
                if waiting:
                    s[0] = waiting.popleft()
                else:
                    s[0], next_id = next_id, next_id + 1
                s[1] = int(rng.integers(gen_len[0], gen_len[1] + 1))
    return np.array(sizes, np.int64), np.array(pre, bool), np.array(rid, np.int32)


def _topk(keys: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest keys per row, largest first."""
    top = np.argpartition(-keys, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(keys, top, axis=1), axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1)


def _mc_imbalance(gumbels, hot: int, k: int, boost: float) -> float:
    """Mean step imbalance with the first ``hot`` experts boosted by ``boost``."""
    vals = []
    for g in gumbels:
        keys = g.copy()
        keys[:, :hot] += boost
        c = np.bincount(_topk(keys, k).ravel(), minlength=g.shape[1])
        vals.append(c.max() / c.mean() - 1)
    return float(np.mean(vals))


def _calibrate_hot(rng, sizes, E, k, hot, target):
    """Bisect the hot-expert logit boost so the expected imbalance hits ``target``.

    Returns ``(boost, target_used)``. The estimate reuses one set of Gumbel draws
    for every boost (common random numbers), which makes it monotone enough in
    the boost for plain bisection, and samples step sizes from the trace itself
    because the sampling noise of the max depends on the tokens per step.
    """
    limit = E / k - 1
    if target > limit:
        warnings.warn(f"hot imbalance target {target:g} exceeds the maximum E/k-1 = {limit:g} "
                      f"for {E} experts top-{k}; clamped", stacklevel=3)
        target = limit
    cal, total = [], 0
    for t in sizes[sizes > 0]:
        if total >= _CAL_TOKENS or len(cal) >= _CAL_STEPS:
            break
        cal.append(rng.gumbel(size=(int(t), E)))
        total += int(t)
    if not cal:
        return 0.0, float(target)
    f = lambda b: _mc_imbalance(cal, hot, k, b)  # noqa: E731
    if target <= f(0.0):
        warnings.warn(f"hot imbalance target {target:g} is below the sampling noise of a "
                      f"uniform router ({f(0.0):.3g}) at this step size; no hot boost",
                      stacklevel=3)
        return 0.0, float(target)
    lo, hi = 0.0, _MAX_LOGIT
    for _ in range(30):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if f(mid) < target else (lo, mid)
        if hi - lo < 1e-3:
            break
    return (lo + hi) / 2, float(target)


def quantize_gate(gate: np.ndarray) -> np.ndarray:
    """int8 gates in 0..127 summing to exactly 127 per row (largest remainder)."""
    x = gate.astype(np.float64) * 127
    q = np.floor(x).astype(np.int64)
    short = 127 - q.sum(axis=1)
    rank = np.argsort(np.argsort(-(x - q), axis=1, kind="stable"), axis=1)
    return (q + (rank < short[:, None])).astype(np.int8)


def generate(preset: str, steps: int = 16, seed: int = 0, *, scale: int = 64,
             expert_scale: int = 1, skew: str = "uniform", skew_param: float | None = None,
             decode: int = 8, prefill: float = 1.0, prompt_len: tuple[int, int] = (16, 32),
             gen_len: tuple[int, int] = (16, 128), hot_experts: int | None = None) -> Trace:
    """Generate a deterministic routing trace (same arguments -> identical trace).

    ``skew_param`` defaults to 0 (uniform), exponent 1 (zipf) or the DeepSeek-R1
    fraction of the maximum imbalance (hot). ``hot_experts`` (1..top_k, default
    top_k // 2 or 1) is the size of the hot set. Bad arguments raise ValueError, and so
    do parameters the skew does not use (``hot_experts`` without ``skew="hot"``, a
    non-zero ``skew_param`` with ``skew="uniform"``).
    """
    if preset not in PRESETS:
        raise ValueError(f"preset: unknown {preset!r}; choose from {', '.join(PRESETS)}")
    if skew not in SKEWS:
        raise ValueError(f"skew: unknown {skew!r}; choose from {', '.join(SKEWS)}")
    for name, v, lo in (("steps", steps, 1), ("scale", scale, 1), ("expert_scale", expert_scale, 1),
                        ("decode", decode, 0), ("seed", seed, 0)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < lo:
            raise ValueError(f"{name}: must be an integer >= {lo}, got {v!r}")
    if not (prefill >= 0 and math.isfinite(prefill)) or (decode == 0 and prefill == 0):
        raise ValueError(f"prefill: must be >= 0 with decode + prefill > 0, got {prefill!r}")
    for name, (lo, hi) in (("prompt_len", prompt_len), ("gen_len", gen_len)):
        if not 1 <= lo <= hi:
            raise ValueError(f"{name}: need 1 <= lo <= hi, got {lo}..{hi}")
    shape = preset_shape(preset, scale, expert_scale)
    E, k = shape["num_experts"], shape["top_k"]
    if hot_experts is not None and skew != "hot":
        raise ValueError(f"hot_experts: {hot_experts!r} applies to skew hot only, not {skew}")
    if skew == "uniform" and skew_param not in (None, 0):
        raise ValueError(f"skew_param: {skew_param!r} given, but the uniform skew takes no "
                         f"parameter (zipf: exponent, hot: target imbalance)")
    hot = max(1, k // 2) if hot_experts is None else hot_experts
    if skew == "hot" and not 1 <= hot <= k:
        raise ValueError(f"hot_experts: must be in 1..{k} (top_k), got {hot}")
    if skew_param is None:
        skew_param = {"uniform": 0.0, "zipf": 1.0, "hot": R1_FRACTION * (E / k - 1)}[skew]
    skew_param = float(skew_param)
    if not (skew_param >= 0 and math.isfinite(skew_param)):
        raise ValueError(f"skew_param: must be finite and >= 0, got {skew_param}")

    r_batch, r_skew, r_cal, r_route = (np.random.default_rng(s)
                                       for s in np.random.SeedSequence(seed).spawn(4))
    sizes, is_prefill, request_id = _batches(r_batch, steps, decode, prefill, prompt_len, gen_len)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    gen = dict(decode=decode, prefill=float(prefill), prompt_len=list(prompt_len),
               gen_len=list(gen_len))

    # per-step expert logits (log-popularity up to a constant)
    logits = np.zeros((steps, E))
    if skew == "zipf":
        logits[:] = -skew_param * np.log(1 + r_skew.permutation(E))
    elif skew == "hot":
        boost, skew_param = _calibrate_hot(r_cal, sizes, E, k, hot, skew_param)
        gen.update(hot_experts=hot, hot_logit=round(boost, 6))
        t = 0
        while t < steps:
            dwell = int(r_skew.integers(HOT_DWELL[0], HOT_DWELL[1] + 1))
            logits[t:t + dwell, r_skew.choice(E, hot, replace=False)] = boost
            t += dwell
    else:
        skew_param = 0.0

    expert_ids = np.concatenate(
        [_topk(logits[i] + r_route.gumbel(size=(int(n), E)), k) for i, n in enumerate(sizes)]
    ).astype(np.int16)
    z = r_route.normal(size=(len(expert_ids), k))
    gate = np.exp(z - z.max(axis=1, keepdims=True))
    gate = -np.sort(-(gate / gate.sum(axis=1, keepdims=True)), axis=1)
    return Trace(SCHEMA_VERSION, preset, scale, skew, skew_param, int(seed), **shape,
                 step_offsets=offsets, expert_ids=expert_ids, gate=gate.astype(np.float32),
                 gate_q=quantize_gate(gate), is_prefill=is_prefill, request_id=request_id,
                 expert_scale=expert_scale, gen=gen)
