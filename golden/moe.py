"""The MoE layer top: hardware configuration and the golden MoE layer.

:class:`MoEConfig` is the one frozen dataclass the golden model, the schedule
compiler (``golden.schedule``) and the Amaranth top (``hdl.moe``) all take.

The golden layer (:func:`moe_layer`), integer end to end:

* every expert ``e`` (routed ``0..E-1``, shared ``E..E+S-1``) is one int8
  projection ``W_e`` (hidden x hidden): ``y_e = requant(W_e @ x[:, kept_e],
  expert_rq)``, int8. (The RTL runs one GEMM per expert job on either unit; the
  cycle models used by the benchmark may describe a full gated FFN instead,
  see ``golden.schedule.ExpertShape``.)
* the combine: ``acc[:, t] = sum_{e kept for t} gate(t, e) * y_e[:, t]`` in int32
  (gate = the token's int8 ``gate_q`` for that expert, 0..127; shared experts
  use ``shared_gate`` for every token), then ``out = requant(acc, combine_rq)``
  int8. A token dropped by a static capacity contributes nothing for that expert
  (its other experts still count); a token none of whose experts kept it gets
  only the shared experts (or 0).

Products: ``|gate * y| <= 127 * 128``; at most ``top_k + S`` terms per element,
so ``acc`` stays far inside int32.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import FormatError
from .numerics import requant
from .pim import PIMConfig
from .sptc import SpTCConfig


def _pow2(v: int) -> bool:
    return v >= 1 and (v & (v - 1)) == 0


#: The MoE top's PIM: the Engine 2 small config with room for 32 experts of
#: hidden 32 (2 words of 128 bits per row -> 64 words each, 2048 words total).
PIM_SMALL = PIMConfig(bank_groups=4, banks_per_group=2, banks_per_bundle=4, rows=64, cols=16,
                      bundle_bits=128, max_tokens=8, max_k_words=16, instr_depth=8,
                      wfifo_depth=16, out_depth=16)
# The layer top feeds SEL from its token FIFO one entry per cycle and its
# combine path takes one result row per beat, so its SpTC is built with one SEL
# lane and one drain row (the standalone SpTC default uses cols and 2).
SPTC_SMALL = SpTCConfig(rows=4, cols=4, max_k=64, max_tokens=32, max_sel=32,
                        samoyeds_nm=((1, 2),), sel_lanes=1, drain_rows=1)


@dataclass(frozen=True)
class MoEConfig:
    """Parameters of one MoE-layer top build.

    sptc, pim
        The two units it holds (Engine 1 and Engine 2 configs).
    max_tokens
        Tokens per step the combine buffer holds (power of two, <= sptc.max_tokens).
    max_hidden
        Largest hidden size (power of two, <= sptc.max_k); the combine buffer is
        ``max_tokens x max_hidden`` int32.
    expert_bits
        Width of the descriptor's expert field (experts incl. shared < 2**bits).
    job_depth, tok_depth
        Per-unit descriptor queue and token-entry queue depths.
    y_lanes
        Output elements per beat of the top's ``y`` stream (a power of two <= max_hidden;
        0: max_hidden, a whole row of the combine buffer per beat). See :attr:`lanes`.
    """

    sptc: SpTCConfig = SPTC_SMALL
    pim: PIMConfig = PIM_SMALL
    max_tokens: int = 32
    max_hidden: int = 64
    expert_bits: int = 8
    job_depth: int = 4
    tok_depth: int = 32
    y_lanes: int = 0

    def __post_init__(self):
        if not isinstance(self.sptc, SpTCConfig) or not isinstance(self.pim, PIMConfig):
            raise FormatError("sptc/pim: expected SpTCConfig and PIMConfig")
        if self.sptc.sel_lanes != 1 or self.sptc.drain_rows != 1:
            raise FormatError(f"sptc: the layer top needs sel_lanes=1 and drain_rows=1, got "
                              f"{self.sptc.sel_lanes} and {self.sptc.drain_rows}")
        for name in ("max_tokens", "max_hidden"):
            if not _pow2(getattr(self, name)):
                raise FormatError(f"{name}: {getattr(self, name)} must be a power of two")
        if self.max_tokens > self.sptc.max_tokens or self.max_tokens > 256:
            raise FormatError(f"max_tokens: {self.max_tokens} exceeds the SpTC's "
                              f"max_tokens {self.sptc.max_tokens} (or 256)")
        if self.max_hidden > self.sptc.max_k or self.max_hidden > 256:
            raise FormatError(f"max_hidden: {self.max_hidden} exceeds the SpTC's max_k "
                              f"{self.sptc.max_k} (or 256)")
        if self.max_hidden > self.pim.max_k_words * self.pim.elems:
            raise FormatError(f"max_hidden: {self.max_hidden} exceeds the PIM's K capacity")
        if self.y_lanes and not (_pow2(self.y_lanes) and self.y_lanes <= self.max_hidden):
            raise FormatError(f"y_lanes: {self.y_lanes} must be 0 or a power of two "
                              f"<= max_hidden {self.max_hidden}")
        if not 1 <= self.expert_bits <= 8:
            raise FormatError(f"expert_bits: {self.expert_bits} out of range 1..8")
        if self.job_depth < 2 or self.tok_depth < max(self.sptc.cols, self.pim.max_tokens):
            raise FormatError(f"job_depth/tok_depth: {self.job_depth}/{self.tok_depth} too small")

    @property
    def lanes(self) -> int:
        """Output elements per ``y`` beat."""
        return self.y_lanes or self.max_hidden

    def drain_beats(self, hidden: int) -> int:
        """``y`` beats per token: ``ceil(hidden / lanes)``."""
        return -(-hidden // self.lanes)

    def drain_cycles(self, T: int, hidden: int) -> int:
        """The time model of the top's output drain: cycles from an END's first ``y``
        beat to its last when ``y`` never stalls (one beat per cycle)."""
        return T * self.drain_beats(hidden)

    @property
    def sptc_max_slots(self) -> int:
        return min(self.sptc.max_sel, self.max_tokens)

    @property
    def pim_max_slots(self) -> int:
        return min(self.pim.max_tokens, self.max_tokens)


@dataclass(frozen=True)
class LayerParams:
    """Numerical parameters of one MoE layer (what the golden and the RTL compute)."""

    weights: tuple                 # per expert (routed then shared): int8 (hidden, hidden)
    num_experts: int               # routed experts E
    expert_rq: tuple = (1, 7)      # (mult, shift): expert projection -> int8
    combine_rq: tuple = (1, 7)     # (mult, shift): combined int32 -> int8
    shared_gate: int = 127         # int8 gate of every shared expert
    mode: str = "dense"            # SpTC weight mode: "dense" or "2:4" (weights 2:4-pruned)

    def __post_init__(self):
        ws = tuple(self.weights)
        object.__setattr__(self, "weights", ws)
        if not ws:
            raise FormatError("weights: no experts")
        h = None
        for i, w in enumerate(ws):
            if not isinstance(w, np.ndarray) or w.dtype != np.int8 or w.ndim != 2 \
                    or w.shape[0] != w.shape[1]:
                raise FormatError(f"weights[{i}]: expected a square int8 array, got "
                                  f"{getattr(w, 'dtype', type(w).__name__)} {getattr(w, 'shape', '')}")
            if h is not None and w.shape != (h, h):
                raise FormatError(f"weights[{i}]: shape {w.shape}, expected {(h, h)}")
            h = w.shape[0]
        if not 1 <= self.num_experts <= len(ws):
            raise FormatError(f"num_experts: {self.num_experts} out of range 1..{len(ws)}")
        for name in ("expert_rq", "combine_rq"):
            rq = getattr(self, name)
            if not (isinstance(rq, tuple) and len(rq) == 2):
                raise FormatError(f"{name}: expected (mult, shift), got {rq!r}")
            requant(np.zeros(1, np.int64), *rq)  # validates the pair
        if isinstance(self.shared_gate, bool) or not isinstance(self.shared_gate, (int, np.integer)) \
                or not 0 <= self.shared_gate <= 127:
            raise FormatError(f"shared_gate: {self.shared_gate!r} out of range 0..127")
        if self.mode not in ("dense", "2:4"):
            raise FormatError(f"mode: {self.mode!r} (expected 'dense' or '2:4')")

    @property
    def hidden(self) -> int:
        return self.weights[0].shape[0]

    @property
    def num_shared(self) -> int:
        return len(self.weights) - self.num_experts


def random_params(rng, hidden: int, num_experts: int, num_shared: int, mode: str = "dense",
                  expert_rq=(3, 9), combine_rq=(1, 7), shared_gate: int = 64) -> LayerParams:
    """Random int8 weights (2:4-pruned for mode '2:4') with scales that keep values lively."""
    from .formats import prune_2to4
    ws = []
    for _ in range(num_experts + num_shared):
        w = rng.integers(-128, 128, size=(hidden, hidden)).astype(np.int8)
        if mode == "2:4":
            w = prune_2to4(w)
        ws.append(w)
    return LayerParams(tuple(ws), num_experts, expert_rq, combine_rq, shared_gate, mode)


def expert_out(params: LayerParams, e: int, x: np.ndarray, tokens) -> np.ndarray:
    """int8 (hidden, len(tokens)): expert ``e`` on the given token columns of x."""
    idx = np.asarray(tokens, np.int64)
    acc = params.weights[e].astype(np.int64) @ x[:, idx].astype(np.int64)
    return requant(acc, *params.expert_rq)


def moe_layer(params: LayerParams, x: np.ndarray, expert_ids: np.ndarray, gate_q: np.ndarray,
              kept: np.ndarray | None = None) -> np.ndarray:
    """The golden MoE layer: int8 (hidden, T).

    ``x`` int8 (hidden, T); ``expert_ids`` (T, k) routed expert per token and
    choice; ``gate_q`` (T, k) int8 gates 0..127; ``kept`` (T, k) bool: whether
    that choice survived the capacity policy (None: all kept).
    """
    h, T = params.hidden, x.shape[1] if isinstance(x, np.ndarray) else -1
    if not isinstance(x, np.ndarray) or x.dtype != np.int8 or x.shape != (h, T):
        raise FormatError(f"x: expected int8 ({h}, T), got {getattr(x, 'dtype', '')} "
                          f"{getattr(x, 'shape', '')}")
    ids, g = np.asarray(expert_ids), np.asarray(gate_q)
    if ids.ndim != 2 or ids.shape[0] != T or g.shape != ids.shape:
        raise FormatError(f"expert_ids/gate_q: shapes {ids.shape}/{g.shape}, expected (T={T}, k)")
    if ids.size and (ids.min() < 0 or ids.max() >= params.num_experts):
        raise FormatError(f"expert_ids: values outside 0..{params.num_experts - 1}")
    if g.size and (g.min() < 0 or g.max() > 127):
        raise FormatError("gate_q: values outside 0..127")
    kept = np.ones(ids.shape, bool) if kept is None else np.asarray(kept, bool)
    if kept.shape != ids.shape:
        raise FormatError(f"kept: shape {kept.shape}, expected {ids.shape}")
    acc = np.zeros((h, T), np.int64)
    for e in range(params.num_experts):
        rows, cols = np.nonzero((ids == e) & kept)
        if len(rows) == 0:
            continue
        y = expert_out(params, e, x, rows)            # rows ascend: tokens in order
        acc[:, rows] += y.astype(np.int64) * g[rows, cols].astype(np.int64)[None, :]
    for s in range(params.num_shared):
        if T:
            y = expert_out(params, params.num_experts + s, x, np.arange(T))
            acc += y.astype(np.int64) * int(params.shared_gate)
    return requant(acc, *params.combine_rq)
