"""MoE routing traces: generation, ``.npz`` I/O with strict validation, and a CLI.

Every engine in moe-rtl is driven by routing traces: which experts each token of
a serving step is sent to, with what gate weight. A trace is generated from a
model preset (the shapes in DESIGN.md "MoE traces"), a scale-down factor for
RTL-sized dimensions, a load-skew model and a seed; the file records all of them
so a run can name exactly what produced its input.

Model
-----
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
* Scaling: hidden and FFN sizes are divided by ``scale`` and rounded to a
  multiple of 16 (at least 16), the granule of the RTL tiles. The routed expert
  count stays unless ``expert_scale`` divides it (floor, at least top_k); shared
  experts are never routed and are only recorded.

File format (schema_version 1): an ``.npz`` with a ``meta`` JSON string
(schema_version, preset, scale, expert_scale, skew, skew_param, seed,
num_experts, num_shared, top_k, hidden, ffn, steps, gen) and flat arrays
``step_offsets`` (steps+1, int64), ``expert_ids`` (tokens x k, int16),
``gate`` (float32), ``gate_q`` (int8), ``is_prefill`` (bool, tokens),
``request_id`` (int32, tokens). ``gen`` holds the batching and hot-set knobs and
the calibrated ``hot_logit`` so a trace can be regenerated. :func:`load` never
unpickles and raises :class:`FormatError` naming the field at the first defect; it
also refuses a trace without steps and ``gate_q`` rows that do not sum to 127 (steps
with no tokens are valid; the ``python -m sim run`` engines refuse to run one).

The shipped default trace ``sim/data/default_trace.npz`` was made with::

    python -m sim.traces gen --preset mixtral-8x7b --steps 64 --seed 0 --scale 64 \\
        --skew hot --imbalance 1.5 --decode 8 --prefill 1 --prompt-len 16 32 \\
        --gen-len 16 128 -o sim/data/default_trace.npz

Recorded traces: :mod:`sim.recorded` imports routing recorded from a model run
(``python -m sim.traces import DUMP --experts E --top-k K --hidden H --ffn F -o
OUT.npz``). Such a trace has ``preset = "recorded:<name>"``, ``skew = "recorded"``
(``skew_param`` 0, ``seed`` 0, ``expert_scale`` 1); its shapes come from the
command line instead of a preset, so ``gen`` records ``model`` (the full
``hidden`` and ``ffn``, which ``hidden``/``ffn`` must equal divided by ``scale``)
and ``source`` (``file``, ``sha256``, ``format``, ``layer``, ``tokens_in_file``),
which :func:`load` checks.

CLI: ``python -m sim.traces gen ...``, ``python -m sim.traces import ...`` and
``python -m sim.traces show FILE`` (``--help`` on each).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
import zipfile
import zlib
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.lib.npyio import NpzFile

from golden.errors import FormatError

SCHEMA_VERSION = 1
SKEWS = ("uniform", "zipf", "hot")
HOT_DWELL = (10, 100)          # inclusive range of steps a hot set stays hot
R1_FRACTION = 11 / 31          # DeepSeek-R1's measured imbalance over its maximum
_MAX_LOGIT = 30.0              # hot boost at which hot experts are always chosen
_CAL_TOKENS, _CAL_STEPS = 4096, 32
DEFAULT_PATH = Path(__file__).resolve().parent / "data" / "default_trace.npz"


@dataclass(frozen=True)
class ModelPreset:
    """Full-size MoE shapes of one model (routed experts exclude shared ones)."""
    name: str
    num_experts: int
    num_shared: int
    top_k: int
    hidden: int
    ffn: int
    note: str = ""

    def dims(self, scale: int = 1) -> tuple[int, int]:
        """(hidden, ffn) divided by ``scale``, rounded to a multiple of 16, >= 16."""
        return scaled_dim(self.hidden, scale), scaled_dim(self.ffn, scale)


PRESETS: dict[str, ModelPreset] = {
    "mixtral-8x7b": ModelPreset("Mixtral-8x7B", 8, 0, 2, 4096, 14336),
    "mixtral-8x22b": ModelPreset("Mixtral-8x22B", 8, 0, 2, 6144, 16384),
    "qwen2-moe": ModelPreset("Qwen1.5/2-MoE", 60, 4, 4, 2048, 1408,
                             "4 shared experts as in Qwen1.5-MoE-A2.7B (one 5632-wide "
                             "shared FFN = 4 x 1408)"),
    "deepseek-moe-16b": ModelPreset("DeepSeek-MoE-16B", 64, 2, 6, 2048, 1408),
    "deepseek-v3": ModelPreset("DeepSeek-V3", 256, 1, 8, 7168, 2048),
    "qwen3-30b-a3b": ModelPreset("Qwen3-30B-A3B", 128, 0, 8, 2048, 768),
    "openmoe-34b": ModelPreset("OpenMoE-34B", 32, 0, 2, 3072, 12288),
}


#: Batching of the papers' evaluation setups (DESIGN.md), for ``generate(**setup, ...)``.
#: ``duplex-serving``: continuous batching with decode batches of 32-128 (64) and prompts
#: of hundreds to thousands of tokens (256-2048); requests generate 128-512 tokens and
#: arrive at the steady-state rate decode / mean(gen_len) = 64 / 320 per step.
#: ``dynamoe-training``: a training-like, compute-bound step: no decode, Poisson(8)
#: sequences of 512 tokens (about 4096 tokens per step).
PAPER_SETUPS: dict[str, dict] = {
    "duplex-serving": dict(preset="mixtral-8x7b", decode=64, prefill=64 / 320,
                           prompt_len=(256, 2048), gen_len=(128, 512)),
    "dynamoe-training": dict(preset="mixtral-8x7b", decode=0, prefill=8.0,
                             prompt_len=(512, 512), gen_len=(1, 1)),
}


def scaled_dim(dim: int, scale: int) -> int:
    """``dim / scale`` rounded half-up to a multiple of 16, at least 16."""
    return max(16, int(dim / scale / 16 + 0.5) * 16)


def _shape(preset: str, scale: int, expert_scale: int) -> dict:
    """The dimensions a (preset, scale, expert_scale) triple implies."""
    p = PRESETS[preset]
    hidden, ffn = p.dims(scale)
    return dict(num_experts=max(p.top_k, p.num_experts // expert_scale),
                num_shared=p.num_shared, top_k=p.top_k, hidden=hidden, ffn=ffn)


@dataclass(frozen=True, eq=False)
class TraceStep:
    """One serving step: ``T`` tokens, each routed to ``top_k`` distinct experts."""
    index: int
    num_experts: int
    expert_ids: np.ndarray   # (T, k) int16, column 0 = top-1
    gate: np.ndarray         # (T, k) float32, rows sum to 1, descending
    gate_q: np.ndarray       # (T, k) int8 in 0..127, rows sum to 127
    is_prefill: np.ndarray   # (T,) bool
    request_id: np.ndarray   # (T,) int32

    @property
    def tokens(self) -> int:
        return len(self.expert_ids)

    @property
    def is_decode_only(self) -> bool:
        """No prefill token in the step (vacuously true for an empty step)."""
        return not bool(self.is_prefill.any())

    def tokens_per_expert(self) -> np.ndarray:
        """Length-E int64 counts of the tokens routed to each expert."""
        return np.bincount(self.expert_ids.ravel(), minlength=self.num_experts).astype(np.int64)

    def _check(self, expert: int) -> None:
        if not 0 <= expert < self.num_experts:
            raise FormatError(f"expert {expert} out of range 0..{self.num_experts - 1}")

    def sel(self, expert: int) -> np.ndarray:
        """Sorted token indices (int64) routed to ``expert``: the SEL array of the SpTC."""
        self._check(expert)
        return np.flatnonzero((self.expert_ids == expert).any(axis=1)).astype(np.int64)

    def gates_for(self, expert: int, quantized: bool = True) -> np.ndarray:
        """Gate weights of ``expert`` for the tokens of :meth:`sel`, in that order."""
        self._check(expert)
        rows, cols = np.nonzero(self.expert_ids == expert)   # row-major: rows ascend
        return (self.gate_q if quantized else self.gate)[rows, cols]

    def imbalance(self) -> float:
        """``(max - mean) / mean`` of :meth:`tokens_per_expert` (0 for an empty step)."""
        c = self.tokens_per_expert()
        m = c.mean()
        return float((c.max() - m) / m) if m > 0 else 0.0


@dataclass(eq=False)
class Trace:
    """A routing trace: provenance, scaled shapes, and flat per-token arrays.

    Tokens of step ``i`` are rows ``step_offsets[i]:step_offsets[i+1]``.
    ``==`` compares every field and array.
    """
    schema_version: int
    preset: str
    scale: int
    skew: str
    skew_param: float
    seed: int
    num_experts: int
    num_shared: int
    top_k: int
    hidden: int
    ffn: int
    step_offsets: np.ndarray
    expert_ids: np.ndarray
    gate: np.ndarray
    gate_q: np.ndarray
    is_prefill: np.ndarray
    request_id: np.ndarray
    expert_scale: int = 1
    gen: dict = field(default_factory=dict)

    ARRAYS = ("step_offsets", "expert_ids", "gate", "gate_q", "is_prefill", "request_id")

    @property
    def steps(self) -> int:
        return len(self.step_offsets) - 1

    @property
    def tokens(self) -> int:
        return len(self.expert_ids)

    def step(self, i: int) -> TraceStep:
        if not -self.steps <= i < self.steps:
            raise IndexError(f"step {i} out of range 0..{self.steps - 1}")
        i %= self.steps
        s = slice(int(self.step_offsets[i]), int(self.step_offsets[i + 1]))
        return TraceStep(i, self.num_experts, self.expert_ids[s], self.gate[s],
                         self.gate_q[s], self.is_prefill[s], self.request_id[s])

    def __iter__(self):
        return (self.step(i) for i in range(self.steps))

    def __len__(self):
        return self.steps

    def tokens_per_expert(self) -> np.ndarray:
        """Counts per routed expert summed over all steps."""
        return np.bincount(self.expert_ids.ravel(), minlength=self.num_experts).astype(np.int64)

    def imbalances(self) -> np.ndarray:
        """Per-step imbalance, float64, length ``steps``."""
        return np.array([s.imbalance() for s in self], dtype=np.float64)

    def meta(self) -> dict:
        return dict(schema_version=self.schema_version, preset=self.preset, scale=self.scale,
                    expert_scale=self.expert_scale, skew=self.skew, skew_param=self.skew_param,
                    seed=self.seed, num_experts=self.num_experts, num_shared=self.num_shared,
                    top_k=self.top_k, hidden=self.hidden, ffn=self.ffn, steps=self.steps,
                    gen=self.gen)

    def __eq__(self, other):
        if not isinstance(other, Trace):
            return NotImplemented
        return (json.dumps(self.meta(), sort_keys=True) == json.dumps(other.meta(), sort_keys=True)
                and all(np.array_equal(getattr(self, a), getattr(other, a)) for a in self.ARRAYS))


# --------------------------------------------------------------------------- generation

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


def _quantize_gate(gate: np.ndarray) -> np.ndarray:
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
    shape = _shape(preset, scale, expert_scale)
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
                 gate_q=_quantize_gate(gate), is_prefill=is_prefill, request_id=request_id,
                 expert_scale=expert_scale, gen=gen)


# --------------------------------------------------------------------------- I/O

def save(trace: Trace, path) -> None:
    """Write ``trace`` to exactly ``path`` (compressed ``.npz``, no pickles)."""
    arrays = {a: getattr(trace, a) for a in Trace.ARRAYS}
    with open(path, "wb") as f:
        np.savez_compressed(f, meta=np.array(json.dumps(trace.meta())), **arrays)


_META_INT = ("schema_version", "scale", "seed", "num_experts", "num_shared", "top_k",
             "hidden", "ffn", "steps")
_KINDS = dict(step_offsets="iu", expert_ids="iu", gate="f", gate_q="iu", is_prefill="b",
              request_id="iu")   # numpy dtype.kind accepted per array


def load(path) -> Trace:
    """Read and validate a trace; any defect raises FormatError naming the field."""
    path = Path(path)
    if not path.is_file():
        raise FormatError(f"{path}: no such trace file")
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, NpzFile):
            raise FormatError(f"{path}: not an .npz archive (a bare .npy array?)")
        with z:
            data = {name: z[name] for name in z.files}
    except (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError, KeyError) as e:
        if isinstance(e, FormatError):
            raise
        raise FormatError(f"{path}: cannot read as an .npz trace (truncated, corrupt or "
                          f"pickled): {e}") from None
    return _from_arrays(data, str(path))


def _from_arrays(data: dict, where: str) -> Trace:
    def bad(msg):
        return FormatError(f"{where}: {msg}")

    if "meta" not in data:
        raise bad("meta: missing")
    m = data["meta"]
    if m.shape != () or m.dtype.kind != "U":
        raise bad(f"meta: expected a JSON string, got {m.dtype} array of shape {m.shape}")
    try:
        meta = json.loads(str(m))
    except json.JSONDecodeError as e:
        raise bad(f"meta: not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise bad("meta: not a JSON object")
    for key in _META_INT + ("preset", "skew", "skew_param"):
        if key not in meta:
            raise bad(f"meta.{key}: missing")
    for key in _META_INT + ("expert_scale",):
        v = meta.get(key, 1)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise bad(f"meta.{key}: expected a non-negative integer, got {v!r}")
    if meta["schema_version"] != SCHEMA_VERSION:
        raise bad(f"meta.schema_version: {meta['schema_version']} unsupported "
                  f"(this reader knows {SCHEMA_VERSION})")
    recorded = isinstance(meta["preset"], str) and meta["preset"].startswith("recorded:")
    if meta["preset"] not in PRESETS and not recorded:
        raise bad(f"meta.preset: unknown {meta['preset']!r}")
    if meta["skew"] not in SKEWS and not recorded:
        raise bad(f"meta.skew: unknown {meta['skew']!r}")
    sp = meta["skew_param"]
    if not isinstance(sp, (int, float)) or isinstance(sp, bool) or not math.isfinite(sp) or sp < 0:
        raise bad(f"meta.skew_param: expected a finite number >= 0, got {sp!r}")
    if meta["steps"] < 1:
        raise bad(f"meta.steps: {meta['steps']}; a trace has at least one step")
    if meta["scale"] < 1 or meta.get("expert_scale", 1) < 1:
        raise bad(f"meta.scale: scales must be >= 1, got {meta['scale']}, "
                  f"{meta.get('expert_scale', 1)}")
    gen = meta.get("gen", {})
    if not isinstance(gen, dict):
        raise bad("meta.gen: not a JSON object")
    if recorded:                 # dimensions given at import (sim.recorded), not a preset
        from sim.recorded import check_meta
        check_meta(meta, bad)
    shape = {} if recorded else _shape(meta["preset"], meta["scale"], meta.get("expert_scale", 1))
    for key, want in shape.items():
        if meta[key] != want:
            raise bad(f"meta.{key}: {meta[key]} does not match preset {meta['preset']} at "
                      f"scale {meta['scale']} (expected {want})")

    for name in Trace.ARRAYS:
        if name not in data:
            raise bad(f"{name}: missing array")
        if data[name].dtype.kind not in _KINDS[name]:
            raise bad(f"{name}: wrong dtype {data[name].dtype}")
    steps, k = meta["steps"], meta["top_k"]
    off = data["step_offsets"]
    if off.shape != (steps + 1,):
        raise bad(f"step_offsets: shape {off.shape}, expected ({steps + 1},) for {steps} steps")
    n = len(data["expert_ids"])
    for name, want in (("expert_ids", (n, k)), ("gate", (n, k)), ("gate_q", (n, k)),
                       ("is_prefill", (n,)), ("request_id", (n,))):
        if data[name].shape != want:
            raise bad(f"{name}: shape {data[name].shape}, expected {want}")
    # Range checks on the arrays as stored (an unsigned value above the int64 range
    # must be reported as it is, not wrapped to a negative number by a cast).
    n_bad = np.flatnonzero((off < 0) | (off > n))
    if len(n_bad):
        i = int(n_bad[0])
        raise bad(f"step_offsets[{i}] = {int(off[i])} out of range 0..{n}")
    off = off.astype(np.int64)
    if off[0] != 0:
        raise bad(f"step_offsets[0] = {off[0]}, expected 0")
    dec = np.flatnonzero(np.diff(off) < 0)
    if len(dec):
        raise bad(f"step_offsets: not monotone at index {dec[0] + 1} "
                  f"({off[dec[0]]} -> {off[dec[0] + 1]})")
    if off[-1] != n:
        raise bad(f"step_offsets[-1] = {off[-1]} does not match the token count {n}")

    raw = data["expert_ids"]
    E = meta["num_experts"]
    oob = np.argwhere((raw < 0) | (raw >= E))
    if len(oob):
        t, j = oob[0]
        raise bad(f"expert_ids[{t}, {j}] = {int(raw[t, j])} out of range 0..{E - 1}")
    ids = raw.astype(np.int64)
    srt = np.sort(ids, axis=1)
    dup = np.flatnonzero((srt[:, 1:] == srt[:, :-1]).any(axis=1))
    if len(dup):
        raise bad(f"expert_ids[{dup[0]}]: duplicate expert in top-{k} {ids[dup[0]].tolist()}")
    gate = data["gate"].astype(np.float32)
    badg = np.argwhere(~(np.isfinite(gate) & (gate >= 0) & (gate <= 1)))
    if len(badg):
        t, j = badg[0]
        raise bad(f"gate[{t}, {j}] = {gate[t, j]} not in [0, 1]")
    raw = data["gate_q"]
    badq = np.argwhere((raw < 0) | (raw > 127))
    if len(badq):
        t, j = badq[0]
        raise bad(f"gate_q[{t}, {j}] = {int(raw[t, j])} out of range 0..127")
    gq = raw.astype(np.int64)
    sums = gq.sum(axis=1)
    bad_sum = np.flatnonzero(sums != 127)
    if len(bad_sum):
        t = int(bad_sum[0])
        raise bad(f"gate_q[{t}] = {gq[t].tolist()} sums to {int(sums[t])}; every token's "
                  f"int8 gates sum to exactly 127")
    raw = data["request_id"]
    i32 = int(np.iinfo(np.int32).max)
    bad_rid = np.flatnonzero((raw < 0) | (raw > i32))
    if len(bad_rid):
        i = int(bad_rid[0])
        raise bad(f"request_id[{i}] = {int(raw[i])} out of range 0..{i32}")
    rid = raw.astype(np.int64)

    return Trace(SCHEMA_VERSION, meta["preset"], meta["scale"], meta["skew"], float(sp),
                 meta["seed"], E, meta["num_shared"], k, meta["hidden"], meta["ffn"],
                 step_offsets=off, expert_ids=ids.astype(np.int16), gate=gate,
                 gate_q=gq.astype(np.int8), is_prefill=data["is_prefill"].astype(bool),
                 request_id=rid.astype(np.int32), expert_scale=meta.get("expert_scale", 1),
                 gen=gen)


def load_default() -> Trace:
    """The small trace shipped with the package (see the module docstring)."""
    return load(DEFAULT_PATH)


# --------------------------------------------------------------------------- CLI

def _show(trace: Trace, name: str, limit: int | None) -> str:
    if trace.preset in PRESETS:
        p = PRESETS[trace.preset]
        model, full = p.name, (p.hidden, p.ffn)
    else:                        # recorded: provenance and full sizes are in gen
        src, m = trace.gen["source"], trace.gen["model"]
        layer = "" if src.get("layer") is None else f", layer {src['layer']}"
        model = f"recorded from {src['file']}{layer}, sha256 {src['sha256'][:16]}..."
        full = (m["hidden"], m["ffn"])
    imb = trace.imbalances()
    npre = int(trace.is_prefill.sum())
    dec_only = sum(s.is_decode_only for s in trace)
    gen = " ".join(f"{k}={v}" for k, v in trace.gen.items())
    lines = [f"trace {name}",
             f"  schema_version  {trace.schema_version}",
             f"  preset          {trace.preset} ({model})",
             f"  scale           {trace.scale} (hidden {trace.hidden}, ffn {trace.ffn}; "
             f"full {full[0]}, {full[1]})",
             f"  experts         {trace.num_experts} routed + {trace.num_shared} shared, "
             f"top-{trace.top_k}" + (f", expert_scale {trace.expert_scale}"
                                     if trace.expert_scale != 1 else ""),
             f"  skew            {trace.skew} (param {trace.skew_param:.4g})",
             f"  seed            {trace.seed}",
             f"  steps           {trace.steps} ({dec_only} decode-only)",
             f"  tokens          {trace.tokens} ({npre} prefill, {trace.tokens - npre} decode)",
             f"  gen             {gen}", ""]
    load_ = trace.tokens_per_expert()
    total = max(int(load_.sum()), 1)
    peak = max(int(load_.max(initial=0)), 1)
    lines.append("per-expert load (tokens summed over steps)")
    lines.append(f"  {'expert':>6}  {'tokens':>8}  {'share':>6}")
    for e in range(trace.num_experts)[:limit]:
        bar = "#" * round(30 * load_[e] / peak)
        lines.append(f"  {e:>6}  {load_[e]:>8}  {100 * load_[e] / total:>5.1f}%  {bar}")
    if limit is not None and trace.num_experts > limit:
        lines.append(f"  ... {trace.num_experts - limit} more experts")
    lines += ["", "per-step load",
              f"  {'step':>6}  {'tokens':>6}  {'prefill':>7}  {'max':>5}  {'imbalance':>9}"]
    for s in list(trace)[:limit]:
        lines.append(f"  {s.index:>6}  {s.tokens:>6}  {int(s.is_prefill.sum()):>7}  "
                     f"{int(s.tokens_per_expert().max(initial=0)):>5}  {imb[s.index]:>9.3f}")
    if limit is not None and trace.steps > limit:
        lines.append(f"  ... {trace.steps - limit} more steps")
    lines.append("")
    lines.append(f"mean imbalance {imb.mean():.3f} (min {imb.min():.3f}, max {imb.max():.3f}; "
                 f"limit E/k-1 = {trace.num_experts / trace.top_k - 1:g})")
    return "\n".join(lines)


_EPILOG = """\
skew models: uniform (every expert equally likely); zipf (expert of rank r has
weight r**-s, s = --skew-param); hot (--hot-experts experts, redrawn every 10..100
steps, get a logit boost calibrated so the mean per-step imbalance
(max-mean)/mean of tokens per expert hits --imbalance; at most E/k-1, larger
targets are clamped with a warning).

batching: every step has --decode decode tokens (one per running request) and a
Poisson(--prefill) number of new prompts of --prompt-len tokens each.

examples:
  python -m sim.traces gen --preset mixtral-8x7b --steps 16 --seed 1 -o trace.npz
  python -m sim.traces gen --preset deepseek-v3 --imbalance 11 --decode 512 --prefill 0 -o r1.npz
  python -m sim.traces show trace.npz --limit 20
  python -m sim.traces import router.npz --experts 8 --top-k 2 --hidden 4096 --ffn 14336 -o r.npz

exit status: 0 ok, 1 unreadable or invalid trace file, 2 bad options."""


_IMPORT_EPILOG = """\
examples:
  python -m sim.traces import sim/data/recorded_sample.csv --layer 0 --experts 8 \\
      --top-k 2 --hidden 4096 --ffn 14336 --name sample -o recorded.npz
  python -m sim.traces import router.npz --experts 60 --top-k 4 --shared 4 \\
      --hidden 2048 --ffn 1408 -o qwen.npz

exit status: 0 ok, 2 bad options or a bad recorded file (the message names the
field and the value)."""


def _import(args) -> int:
    from sim import recorded
    out = Path(args.output)
    if out.exists():
        print(f"error: {out} exists; not overwritten", file=sys.stderr)
        return 2
    try:
        trace = recorded.import_routing(
            args.file, fmt=args.fmt, name=args.name, num_experts=args.experts,
            top_k=args.top_k, hidden=args.hidden, ffn=args.ffn, num_shared=args.shared,
            scale=args.scale, layer=args.layer, tokens_per_step=args.tokens_per_step,
            phase=args.phase)
    except FormatError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        save(trace, out)
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    src = trace.gen["source"]
    print(f"wrote {out}: {trace.preset} from {src['file']} (sha256 {src['sha256'][:12]}...), "
          f"{trace.steps} steps, {trace.tokens} tokens, {trace.num_experts} experts top-"
          f"{trace.top_k}, scale {trace.scale} (hidden {trace.hidden}, ffn {trace.ffn}), "
          f"mean imbalance {trace.imbalances().mean():.3f}")
    return 0


def _parser() -> argparse.ArgumentParser:
    raw = argparse.RawDescriptionHelpFormatter
    ap = argparse.ArgumentParser(
        prog="python -m sim.traces", formatter_class=raw, epilog=_EPILOG,
        description="Generate and inspect MoE routing traces (.npz, schema 1).")
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gen", help="generate a trace file", formatter_class=raw, epilog=_EPILOG,
                       description="Generate a deterministic routing trace and write it as .npz.")
    g.add_argument("--preset", required=True, choices=list(PRESETS), help="model shapes")
    g.add_argument("--steps", type=int, default=16, help="serving steps (default %(default)s)")
    g.add_argument("--seed", type=int, default=0, help="numpy default_rng seed (default %(default)s)")
    g.add_argument("-o", "--output", required=True, help="output .npz path (written as given)")
    g.add_argument("--scale", type=int, default=64,
                   help="divide hidden/ffn by this, rounded to a multiple of 16, >= 16 "
                        "(default %(default)s)")
    g.add_argument("--expert-scale", type=int, default=1,
                   help="divide the routed expert count by this, floor, >= top_k "
                        "(default %(default)s)")
    g.add_argument("--skew", choices=SKEWS, default=None,
                   help="load-skew model (default uniform, or hot if --imbalance is given)")
    g.add_argument("--skew-param", type=float, default=None,
                   help="zipf: exponent (default 1); hot: target imbalance "
                        "(default 11/31 of E/k-1, DeepSeek-R1's share of its maximum); "
                        "refused for uniform")
    g.add_argument("--imbalance", type=float, default=None,
                   help="target mean imbalance for --skew hot (same as --skew hot --skew-param)")
    g.add_argument("--hot-experts", type=int, default=None,
                   help="--skew hot only: size of the hot set, 1..top_k (default top_k//2, "
                        "at least 1)")
    g.add_argument("--decode", type=int, default=8,
                   help="decode requests (1 token each) per step (default %(default)s)")
    g.add_argument("--prefill", type=float, default=1.0,
                   help="mean (Poisson) number of new prefill requests per step "
                        "(default %(default)s)")
    g.add_argument("--prompt-len", type=int, nargs=2, default=(16, 32), metavar=("LO", "HI"),
                   help="prompt length range in tokens (default 16 32)")
    g.add_argument("--gen-len", type=int, nargs=2, default=(16, 128), metavar=("LO", "HI"),
                   help="decode steps of a request before it leaves (default 16 128)")
    i = sub.add_parser("import", help="import routing recorded from a model run",
                       formatter_class=raw, epilog=_IMPORT_EPILOG,
                       description="Convert a recorded router dump (.npz, .safetensors, .csv, "
                                   ".json; layouts in sim/recorded.py) into a trace .npz with "
                                   "preset recorded:NAME.")
    i.add_argument("file", help="the recorded dump")
    i.add_argument("-o", "--output", required=True, help="output trace .npz (not overwritten)")
    i.add_argument("--experts", type=int, required=True, help="routed experts of the model")
    i.add_argument("--top-k", type=int, required=True, help="experts per token")
    i.add_argument("--hidden", type=int, required=True, help="the model's hidden size")
    i.add_argument("--ffn", type=int, required=True, help="the model's expert FFN size")
    i.add_argument("--shared", type=int, default=0, help="shared experts (default 0)")
    i.add_argument("--scale", type=int, default=64,
                   help="divide hidden/ffn by this as for gen (default %(default)s)")
    i.add_argument("--name", default=None, help="preset becomes recorded:NAME (default: the "
                                                "file's stem)")
    i.add_argument("--format", dest="fmt", default=None,
                   choices=("npz", "safetensors", "csv", "json"),
                   help="the dump's format (default: from the file suffix)")
    i.add_argument("--layer", type=int, default=None,
                   help="the MoE layer to import when the dump holds several")
    i.add_argument("--tokens-per-step", type=int, default=None,
                   help="without a step column: tokens per serving step (default: all in one)")
    i.add_argument("--phase", choices=("auto", "prefill", "decode"), default="auto",
                   help="without an is_prefill column: what the tokens are (default auto: "
                        "several tokens of one request in a step are prefill)")
    s = sub.add_parser("show", help="print a trace's header and load tables",
                       description="Print metadata, tokens per expert summed over steps, "
                                   "per-step load and imbalance, and the mean imbalance.")
    s.add_argument("file", help="trace .npz")
    s.add_argument("--limit", type=int, default=None, help="print at most this many table rows")
    return ap


def main(argv=None) -> int:
    ap = _parser()
    args = ap.parse_args(argv)
    if args.cmd == "show" and args.limit is not None and args.limit < 0:
        ap.error("--limit must be >= 0")
    if args.cmd == "import":
        return _import(args)
    try:
        if args.cmd == "show":
            print(_show(load(args.file), args.file, args.limit))
            return 0
        skew, param = args.skew, args.skew_param
        if args.imbalance is not None:
            if skew not in (None, "hot") or param is not None:
                ap.error("--imbalance goes with --skew hot and without --skew-param")
            skew, param = "hot", args.imbalance
        if param is not None and skew in (None, "uniform"):
            ap.error(f"--skew-param applies to --skew zipf or hot; the {skew or 'uniform'} "
                     f"skew takes no parameter")
        if args.hot_experts is not None and skew != "hot":
            ap.error(f"--hot-experts applies to --skew hot (or --imbalance), not "
                     f"{skew or 'uniform'}")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trace = generate(args.preset, args.steps, args.seed, scale=args.scale,
                             expert_scale=args.expert_scale, skew=skew or "uniform",
                             skew_param=param, decode=args.decode, prefill=args.prefill,
                             prompt_len=tuple(args.prompt_len), gen_len=tuple(args.gen_len),
                             hot_experts=args.hot_experts)
        for w in caught:
            print(f"warning: {w.message}", file=sys.stderr)
        save(trace, args.output)
        print(f"wrote {args.output}: {trace.preset} scale {trace.scale}, {trace.steps} steps, "
              f"{trace.tokens} tokens, {trace.skew} {trace.skew_param:.4g}, "
              f"mean imbalance {trace.imbalances().mean():.3f}")
        return 0
    except FormatError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except ValueError as e:
        ap.error(str(e))
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
