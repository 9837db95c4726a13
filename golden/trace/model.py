"""The routing-trace model: model presets, scaled shapes, a trace and its steps.

Every engine in moe-rtl is driven by routing traces: which experts each token of
a serving step is sent to, with what gate weight. A :class:`Trace` records its
provenance (model preset, scale-down factor, skew model, seed) and flat per-token
arrays; :class:`TraceStep` is one serving step of it, with the per-expert views
the engines consume (the SpTC's SEL list, the gates of one expert).

Scaling: hidden and FFN sizes are divided by ``scale`` and rounded to a
multiple of 16 (at least 16), the granule of the RTL tiles. The routed expert
count stays unless ``expert_scale`` divides it (floor, at least top_k); shared
experts are never routed and are only recorded.

Traces are made by :mod:`golden.trace.generator`, stored by
:mod:`golden.trace.fileformat`, and handled on the command line by ``python -m
sim.traces``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from golden.errors import FormatError

SCHEMA_VERSION = 1
SKEWS = ("uniform", "zipf", "hot")


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


def preset_shape(preset: str, scale: int, expert_scale: int) -> dict:
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
