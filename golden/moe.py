"""The MoE layer top: hardware configuration and the golden MoE layer.

:class:`MoEConfig` is the one frozen dataclass the golden model, the schedule
compiler (``golden.schedule``) and the Amaranth top (``hdl.moe``) all take.

The golden layer (:func:`moe_layer`), integer end to end:

* every expert ``e`` (routed ``0..E-1``, shared ``E..E+S-1``) is a gated FFN
  (``golden.ffn.expert_ffn``): ``g = requant(gate_e @ x, gate_rq)``,
  ``u = requant(up_e @ x, up_rq)``, ``h = requant(lut[g] * u, prod_rq)``,
  ``y_e = requant(down_e @ h, expert_rq)``, all int8, on the expert's kept tokens.
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
from .ffn import FFNParams, apply_lut, expert_ffn, silu_lut
from .formats import SamoyedsWeight, Sparse24, _check_nmv, prune_2to4, prune_samoyeds
from .numerics import requant
from .pim import PIMConfig
from .sptc import SpTCConfig


def _pow2(v: int) -> bool:
    return v >= 1 and (v & (v - 1)) == 0


#: The MoE top's PIM: 128-bit bundles, 8 token slots, K up to 256, and 32,768 words
#: (512 KiB) of banks: every expert of the default ``make sim`` layer (Mixtral scaled
#: to hidden 64, ffn 224: 2,688 words per expert) stays resident.
PIM_SMALL = PIMConfig(bank_groups=4, banks_per_group=2, banks_per_bundle=4, rows=1024, cols=16,
                      bundle_bits=128, max_tokens=8, max_k_words=16, instr_depth=8,
                      wfifo_depth=16, out_depth=16)
# The layer top feeds SEL one entry per cycle and its combine path takes one result
# row per beat, so its SpTC is built with one SEL lane and one drain row (the
# standalone SpTC default uses cols and 2). K up to 256 holds the down projection's
# ffn; 64 token slots hold the step's activations (tokens 0..31) and one job's h
# (tokens 32..63, :attr:`MoEConfig.h_base`).
SPTC_SMALL = SpTCConfig(rows=4, cols=4, max_k=256, max_tokens=64, max_sel=32,
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
    max_ffn
        Largest expert FFN width (a multiple of 16 and of the PIM's ``elems``, <= the
        SpTC's max_k and the PIM's K capacity): the size of each unit's g/h buffers
        (``hdl.moe.glue``).
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
    max_ffn: int = 256
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
        if not (16 <= self.max_ffn <= 256 and self.max_ffn % 16 == 0
                and self.max_ffn % self.pim.elems == 0):
            raise FormatError(f"max_ffn: {self.max_ffn} must be a multiple of 16 and of the "
                              f"PIM's elems {self.pim.elems}, at most 256")
        if self.max_ffn > self.sptc.max_k or self.max_ffn > self.pim.max_k_words * self.pim.elems:
            raise FormatError(f"max_ffn: {self.max_ffn} exceeds the SpTC's max_k "
                              f"{self.sptc.max_k} or the PIM's K capacity")
        if self.max_tokens + self.sptc_max_slots > self.sptc.max_tokens:
            raise FormatError(f"sptc.max_tokens: {self.sptc.max_tokens} cannot hold the step's "
                              f"{self.max_tokens} tokens and a job's {self.sptc_max_slots} h "
                              f"slots")
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
    def h_base(self) -> int:
        """The SpTC token index of a job's first h column (after the step's tokens)."""
        return self.max_tokens

    @property
    def sptc_max_slots(self) -> int:
        return min(self.sptc.max_sel, self.max_tokens)

    @property
    def pim_max_slots(self) -> int:
        return min(self.pim.max_tokens, self.max_tokens)


SPTC_MODES = ("dense", "2:4", "samoyeds")


def _rq_pair(rq, name: str) -> tuple:
    if not (isinstance(rq, tuple) and len(rq) == 2):
        raise FormatError(f"{name}: expected (mult, shift), got {rq!r}")
    try:
        requant(np.zeros(1, np.int64), *rq)  # validates the pair
    except FormatError as e:
        raise FormatError(f"{name}: {e}") from None
    return rq


def pad_cols(w: np.ndarray, k: int) -> np.ndarray:
    """``w`` with zero columns appended up to ``k`` columns."""
    if w.shape[1] == k:
        return w
    out = np.zeros((w.shape[0], k), w.dtype)
    out[:, :w.shape[1]] = w
    return out


@dataclass(frozen=True)
class LayerParams:
    """Numerical parameters of one MoE layer (what the golden and the RTL compute).

    ``experts``: per expert (routed ``0..num_experts-1``, then shared) a gated FFN
    ``(gate, up, down)`` of int8 arrays, gate and up (ffn, hidden), down (hidden, ffn),
    already pruned for ``mode``: ``"dense"``; ``"2:4"`` (each matrix 2:4 along K);
    ``"samoyeds"`` (each matrix Samoyeds ``nmv`` = (N, M, V) after zero-padding K to a
    multiple of V, see :meth:`k_pad`). The SpTC runs the matrices in that format, the
    Logic-PIM the same matrices dense: same numbers. Requant pairs are (mult, shift):
    ``gate_rq``, ``up_rq`` (the projections -> int8), ``prod_rq`` (SiLU(g) * u -> int8),
    ``expert_rq`` (the down projection -> int8, the expert's output), ``combine_rq``
    (the gate-weighted sum -> int8). ``lut``: the SiLU table (``golden.ffn.silu_lut``).
    """

    experts: tuple
    num_experts: int
    gate_rq: tuple = (1, 9)
    up_rq: tuple = (1, 9)
    prod_rq: tuple = (1, 7)
    expert_rq: tuple = (1, 9)
    combine_rq: tuple = (1, 7)
    shared_gate: int = 127
    mode: str = "dense"
    nmv: tuple = (1, 2, 32)
    lut: np.ndarray = field(default_factory=silu_lut, repr=False)

    def __post_init__(self):
        xs = tuple(tuple(e) if isinstance(e, (tuple, list)) else e for e in self.experts)
        object.__setattr__(self, "experts", xs)
        if not xs:
            raise FormatError("experts: no experts")
        shape = None
        for i, e in enumerate(xs):
            if not (isinstance(e, tuple) and len(e) == 3):
                raise FormatError(f"experts[{i}]: expected (gate, up, down), got "
                                  f"{type(e).__name__}")
            for name, w in zip(("gate", "up", "down"), e):
                if not isinstance(w, np.ndarray) or w.dtype != np.int8 or w.ndim != 2:
                    raise FormatError(f"experts[{i}].{name}: expected a 2-D int8 array, got "
                                      f"{getattr(w, 'dtype', type(w).__name__)} "
                                      f"{getattr(w, 'shape', '')}")
            f, h = e[0].shape
            if e[1].shape != (f, h) or e[2].shape != (h, f):
                raise FormatError(f"experts[{i}]: shapes {[w.shape for w in e]}, expected "
                                  f"gate/up (ffn, hidden) and down (hidden, ffn)")
            if shape is not None and (f, h) != shape:
                raise FormatError(f"experts[{i}]: (ffn, hidden) = {(f, h)}, expected {shape}")
            shape = (f, h)
        if not 1 <= self.num_experts <= len(xs):
            raise FormatError(f"num_experts: {self.num_experts} out of range 1..{len(xs)}")
        for name in ("gate_rq", "up_rq", "prod_rq", "expert_rq", "combine_rq"):
            _rq_pair(getattr(self, name), name)
        if isinstance(self.shared_gate, bool) or not isinstance(self.shared_gate, (int, np.integer)) \
                or not 0 <= self.shared_gate <= 127:
            raise FormatError(f"shared_gate: {self.shared_gate!r} out of range 0..127")
        if self.mode not in SPTC_MODES:
            raise FormatError(f"mode: {self.mode!r} (expected one of {SPTC_MODES})")
        lut = self.lut
        if not isinstance(lut, np.ndarray) or lut.dtype != np.int8 or lut.shape != (256,):
            raise FormatError(f"lut: expected a (256,) int8 array, got "
                              f"{getattr(lut, 'dtype', type(lut).__name__)} {getattr(lut, 'shape', '')}")
        if self.mode == "samoyeds":
            _check_nmv(*self.nmv)
        for i, e in enumerate(xs):        # the SpTC format must hold every matrix
            for name, w in zip(("gate", "up", "down"), e):
                try:
                    self.sptc_weight(w)
                except FormatError as err:
                    raise FormatError(f"experts[{i}].{name}: not in {self.mode} form: {err}") \
                        from None
        ffn = tuple(FFNParams(g, u, d, self.gate_rq, self.up_rq, self.prod_rq,
                              ("requant", *self.expert_rq), self.lut) for g, u, d in xs)
        object.__setattr__(self, "_ffn", ffn)

    @property
    def hidden(self) -> int:
        return self.experts[0][0].shape[1]

    @property
    def ffn(self) -> int:
        return self.experts[0][0].shape[0]

    @property
    def num_shared(self) -> int:
        return len(self.experts) - self.num_experts

    def k_pad(self, k: int) -> int:
        """K as the SpTC runs it: a multiple of 4, and of V in Samoyeds mode (zero columns)."""
        q = self.nmv[2] if self.mode == "samoyeds" else 4
        return -(-k // q) * q

    def sptc_weight(self, w: np.ndarray):
        """One matrix in the SpTC's format (K zero-padded to :meth:`k_pad`)."""
        if self.mode == "dense":
            return w
        if self.mode == "2:4":
            return Sparse24.from_dense(pad_cols(w, self.k_pad(w.shape[1])))
        return SamoyedsWeight.from_dense(pad_cols(w, self.k_pad(w.shape[1])), *self.nmv)

    def ffn_params(self, e: int) -> FFNParams:
        return self._ffn[e]


def _calibrate(acc: np.ndarray, target: float = 40.0, shift: int = 16) -> tuple:
    """A (mult, shift) that maps the accumulator's spread to about ``target`` int8 units."""
    std = float(np.std(acc.astype(np.float64))) or 1.0
    while shift > 1 and target * (1 << shift) / std >= 1 << 16:
        shift -= 1
    return int(max(1, min((1 << 16) - 1, round(target * (1 << shift) / std)))), shift


def prune(w: np.ndarray, mode: str, nmv: tuple = (1, 2, 32)) -> np.ndarray:
    """``w`` pruned to ``mode``'s structure (Samoyeds: along K zero-padded to V)."""
    if mode == "dense":
        return w
    k = w.shape[1]
    q = nmv[2] if mode == "samoyeds" else 4
    wp = pad_cols(w, -(-k // q) * q)
    wp = prune_2to4(wp) if mode == "2:4" else prune_samoyeds(wp, *nmv)
    return np.ascontiguousarray(wp[:, :k])


def random_params(rng, hidden: int, ffn: int, num_experts: int, num_shared: int,
                  mode: str = "dense", nmv: tuple = (1, 2, 32), shared_gate: int = 64,
                  combine_rq=(1, 7)) -> LayerParams:
    """Random int8 experts pruned for ``mode``, with requant scales calibrated on a random
    activation batch so every stage's int8 values stay lively (about 40 units of spread)."""
    xs = []
    for _ in range(num_experts + num_shared):
        g, u = (prune(rng.integers(-128, 128, size=(ffn, hidden)).astype(np.int8), mode, nmv)
                for _ in range(2))
        d = prune(rng.integers(-128, 128, size=(hidden, ffn)).astype(np.int8), mode, nmv)
        xs.append((g, u, d))
    x = rng.integers(-128, 128, size=(hidden, 16)).astype(np.int8)
    g0, u0, d0 = xs[0]
    gate_rq = _calibrate(g0.astype(np.int64) @ x)
    up_rq = _calibrate(u0.astype(np.int64) @ x)
    a = apply_lut(silu_lut(), requant(g0.astype(np.int64) @ x, *gate_rq))
    prod = a.astype(np.int64) * requant(u0.astype(np.int64) @ x, *up_rq)
    prod_rq = _calibrate(prod)
    hh = requant(prod, *prod_rq)
    expert_rq = _calibrate(d0.astype(np.int64) @ hh)
    return LayerParams(tuple(xs), num_experts, gate_rq, up_rq, prod_rq, expert_rq, combine_rq,
                       shared_gate, mode, nmv)


def expert_out(params: LayerParams, e: int, x: np.ndarray, tokens) -> np.ndarray:
    """int8 (hidden, len(tokens)): expert ``e``'s gated FFN on the given token columns of x."""
    return expert_ffn(params.ffn_params(e), x, np.asarray(tokens, np.int64))


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
