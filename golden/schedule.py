"""Host-side schedule compiler of the MoE layer (issue 6): DynaMoE-style dynamic
recompilation on top of Duplex dispatch / co-processing.

Pipeline for one serving step (a :class:`sim.traces.TraceStep`):

1. **compile** (:func:`compile_plan`, only when the policy says so): from the
   per-expert token counts the program was compiled for, decide the buffer
   allocation (per-expert capacity) and the unit of every expert (SpTC or
   Logic-PIM via ``golden.duplex.coprocess`` with per-unit time tables from the
   two cycle models). The result, a :class:`Plan`, is cached.
2. **bind** (:func:`bind`, every step, what the gating hardware does anyway):
   apply the cached plan to the step's routing: fill each expert's SEL list,
   drop tokens past a static capacity, pad slots below the capacity, split an
   expert's slots into jobs of at most the unit's tile (SpTC ``max_sel``,
   Logic-PIM ``max_tokens``) and order the jobs. The result, :class:`Bound`,
   is the program; :func:`encode_step` turns it into descriptor words for the
   hardware top (``hdl.moe``).
3. **cost** (:func:`step_cost`): cycles of the program on the two units from the
   cycle models (the two units run in parallel; jobs on one unit run one after
   another).

Capacity policies
-----------------
* ``static``: capacity ``C = min(T, ceil(alpha * k / E * T))`` for every routed
  expert. An expert's tokens beyond C (in token order: the first C tokens routed
  to it are kept) are dropped; ``C - kept`` slots of every expert that has any
  token are padding (experts with no token run no job). Shared experts always
  take all T tokens. The plan depends only on T: no routing-driven recompiles.
* ``dynamic``: capacities come from the counts the plan was compiled for, as
  shares of the step size: ``cap_e(T) = min(T, ceil((1 + headroom) * c_e / T_c * T))``
  (``headroom`` default 0.25). Nothing is ever dropped: a step in which some
  expert has more tokens than its capacity forces a recompile (a *forced*
  recompile, which ignores the minimum gap). Padding = capacity - count.

Recompilation policy (dynamic capacity; DESIGN.md "Dynamic scheduling")
-------------------------------------------------------------------------
Per step the policy measures the *fit* of the cached plan,
``fit = cycles(fresh plan) / cycles(cached plan)`` on this step's routing, in
(0, 1] (1: the cached plan is as good as recompiling). It keeps a running
average ``avg = g * avg + (1 - g) * fit`` with ``g = gamma ** T`` (gamma 0.99
*per routed token*: a step of T tokens weighs ``1 - 0.99**T``; a per-step 0.99
would need about 35 steps to react to any drift, longer than a hot set lives
in our traces). Hysteresis is a Schmitt trigger on that average: the cached
plan loses trust when ``avg`` falls below ``off`` = 0.85 and regains it only
above ``on`` = 0.95. While it is untrusted the policy recompiles at the first
step at least ``min_gap`` (default 4) steps after the previous compile; a
recompile resets ``avg`` to 1 and trust. A recompile costs
``recompile_base + recompile_per_expert * (E + S)`` cycles (defaults 2000 +
50 per expert: re-planning the buffers and re-sending the descriptors),
charged to the step it happens in. ``recompiles`` counts every compile after
the initial one (which happens before serving and is not charged).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import lru_cache

import numpy as np

from . import duplex, pim as gp, sptc as gs
from .errors import FormatError

CAPACITY_POLICIES = ("static", "dynamic")
DISPATCHES = ("sptc_only", "duplex", "duplex_coprocess")
SPTC, PIM = "sptc", "pim"
UNIT_CODES = {SPTC: 0, PIM: 1}

# Paper figures the benchmark prints beside ours.
PAPER = {"dynamoe_recompile": 1.7, "duplex_mean": 2.07, "duplex_max": 2.67,
         "coprocess": 1.04}


# --------------------------------------------------------------------------- policy config

@dataclass(frozen=True)
class Policy:
    """Capacity and recompilation policy (defaults from DESIGN.md where it gives them)."""

    capacity: str = "dynamic"
    alpha: float = 2.0              # static capacity factor
    headroom: float = 0.25          # dynamic: capacity slack over the compiled share
    granule: int = 4                # dynamic: capacities rounded up to this many slots
    gamma: float = 0.99             # running-average decay per routed token
    on: float = 0.95                # trust regained above this average fit
    off: float = 0.85               # trust lost below this average fit
    min_gap: int = 4                # steps between two policy recompiles
    recompile_base: int = 2000      # cycles per recompile
    recompile_per_expert: int = 50  # + cycles per expert (routed + shared)

    def __post_init__(self):
        if self.capacity not in CAPACITY_POLICIES:
            raise FormatError(f"capacity: {self.capacity!r} (expected one of {CAPACITY_POLICIES})")
        for name in ("alpha", "headroom", "gamma", "on", "off"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise FormatError(f"{name}: expected a number, got {v!r}")
        if self.alpha <= 0:
            raise FormatError(f"alpha: must be > 0, got {self.alpha}")
        if self.headroom < 0:
            raise FormatError(f"headroom: must be >= 0, got {self.headroom}")
        if not 0 < self.gamma < 1:
            raise FormatError(f"gamma: must be in (0, 1), got {self.gamma}")
        if not 0 < self.off <= self.on <= 1:
            raise FormatError(f"off/on: need 0 < off <= on <= 1, got {self.off}/{self.on}")
        if isinstance(self.granule, bool) or not isinstance(self.granule, (int, np.integer)) \
                or self.granule < 1:
            raise FormatError(f"granule: expected an integer >= 1, got {self.granule!r}")
        for name in ("min_gap", "recompile_base", "recompile_per_expert"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                raise FormatError(f"{name}: expected an integer >= 0, got {v!r}")

    def recompile_cycles(self, experts: int) -> int:
        return self.recompile_base + self.recompile_per_expert * experts


def static_capacity(alpha: float, k: int, E: int, T: int) -> int:
    """``min(T, ceil(alpha * k / E * T))`` (exact for rational inputs up to float rounding)."""
    if T <= 0:
        return 0
    return min(T, math.ceil(alpha * k * T / E - 1e-9))


# --------------------------------------------------------------------------- cycle model

@dataclass(frozen=True)
class ExpertShape:
    """The GEMMs of one expert, in order: (m, k) each; the RTL uses one projection."""

    gemms: tuple

    @classmethod
    def projection(cls, hidden: int) -> "ExpertShape":
        return cls(((hidden, hidden),))

    @classmethod
    def gated_ffn(cls, hidden: int, ffn: int) -> "ExpertShape":
        return cls(((ffn, hidden), (ffn, hidden), (hidden, ffn)))

    @property
    def hidden(self) -> int:
        return self.gemms[0][1]


class TimeModel:
    """Per-unit cycles of one expert with n token slots, from the two cycle models.

    SpTC: ``golden.sptc.predict_cycles`` per GEMM and per job of at most
    ``sptc_tile`` slots; with ``xpu_bytes_per_cycle`` set, no GEMM is faster than
    streaming its int8 weights at that rate (the SpTC reads HBM through the
    ordinary interface). Logic-PIM: ``golden.pim.predict_cycles`` of the job's
    instruction stream (LOAD_TOKENS, GEMM per input, per job of at most
    ``pim_tile`` slots). A step's SpTC time also includes the activation LOAD.
    """

    def __init__(self, shape: ExpertShape, sptc_cfg: gs.SpTCConfig, pim_cfg: gp.PIMConfig,
                 sptc_mode: str = "dense", xpu_bytes_per_cycle: float | None = None,
                 sptc_tile: int | None = None, pim_tile: int | None = None):
        if sptc_mode not in ("dense", "2:4"):
            raise FormatError(f"sptc_mode: {sptc_mode!r} (expected 'dense' or '2:4')")
        self.shape, self.sptc_cfg, self.pim_cfg = shape, sptc_cfg, pim_cfg
        self.sptc_mode, self.xbw = sptc_mode, xpu_bytes_per_cycle
        self.sptc_tile = sptc_tile or sptc_cfg.max_sel
        self.pim_tile = pim_tile or pim_cfg.max_tokens
        self._sptc = lru_cache(maxsize=None)(self._sptc_job)
        self._pim = lru_cache(maxsize=None)(self._pim_job)

    @classmethod
    def for_config(cls, mcfg, hidden: int, sptc_mode: str = "dense") -> "TimeModel":
        """The model of the RTL top (``golden.moe.MoEConfig``): one projection per expert."""
        return cls(ExpertShape.projection(hidden), mcfg.sptc, mcfg.pim, sptc_mode,
                   sptc_tile=mcfg.sptc_max_slots, pim_tile=mcfg.pim_max_slots)

    def _sptc_job(self, n: int) -> int:
        c = 0
        for m, k in self.shape.gemms:
            g = gs.predict_cycles(self.sptc_cfg, self.sptc_mode, m, k, n)
            if self.xbw:
                g = max(g, math.ceil(m * k / self.xbw))
            c += g
        return c

    def _pim_job(self, n: int) -> int:
        words, prev_k, addr = [], None, 0
        for m, k in self.shape.gemms:
            kw = -(-k // self.pim_cfg.elems)
            if k != prev_k:
                words.append(gp.encode("LOAD_TOKENS", t=n, kw=kw))
                prev_k = k
            words.append(gp.encode("GEMM", addr=addr, n=m))
            addr += m * kw
        return gp.predict_cycles(self.pim_cfg, words)

    @staticmethod
    def chunks(n: int, tile: int) -> list[int]:
        return [tile] * (n // tile) + ([n % tile] if n % tile else [])

    def sptc(self, n: int) -> int:
        """SpTC cycles of an expert with n slots (0 for n = 0)."""
        return sum(self._sptc(c) for c in self.chunks(int(n), self.sptc_tile))

    def pim(self, n: int) -> int:
        return sum(self._pim(c) for c in self.chunks(int(n), self.pim_tile))

    def unit(self, unit: str, n: int) -> int:
        return self.sptc(n) if unit == SPTC else self.pim(n)

    def load(self, T: int) -> int:
        return gs.predict_load_cycles((self.shape.hidden, T)) if T else 0


# --------------------------------------------------------------------------- plans and programs

@dataclass(frozen=True)
class Plan:
    """A compiled (cached) program: capacities and units, independent of token ids."""

    capacity: str
    dispatch: str
    num_experts: int
    num_shared: int
    top_k: int
    compiled_T: int
    counts: tuple           # routed counts the plan was compiled for
    units: tuple            # per expert (routed, then shared): "sptc" | "pim"
    alpha: float = 2.0
    headroom: float = 0.25
    granule: int = 4

    def capacities(self, T: int) -> np.ndarray:
        """Slots per routed expert for a step of T tokens."""
        E = self.num_experts
        if self.capacity == "static":
            return np.full(E, static_capacity(self.alpha, self.top_k, E, T), np.int64)
        if self.compiled_T == 0 or T == 0:
            return np.zeros(E, np.int64)
        share = np.maximum(np.asarray(self.counts, np.float64), 1) / self.compiled_T
        cap = np.ceil((1 + self.headroom) * share * T - 1e-9).astype(np.int64)
        g = self.granule
        return np.minimum(-(-cap // g) * g, T)


@dataclass(frozen=True)
class Job:
    """One job of a bound program: one expert (or a tile of it) on one unit."""

    unit: str
    expert: int
    sel: np.ndarray         # slot tokens, strictly increasing (pads included)
    valid: np.ndarray       # bool per slot: a routed, kept token (pads: False)
    gates: np.ndarray       # int8 per slot (0 for pads)

    @property
    def slots(self) -> int:
        return len(self.sel)

    @property
    def real(self) -> int:
        return int(self.valid.sum())


@dataclass
class Bound:
    """A plan bound to one step: the program the hardware runs."""

    plan: Plan
    T: int
    decode_only: bool
    jobs: list
    kept: np.ndarray        # (T, k) bool
    counts: np.ndarray      # routed tokens per expert
    slots: np.ndarray       # slots per expert (routed, then shared); 0 = no job
    dropped: int
    padded: int

    def unit_jobs(self, unit: str) -> list:
        return [j for j in self.jobs if j.unit == unit]


def _units(dispatch: str, slots, model: TimeModel | None) -> tuple:
    if dispatch in ("sptc_only", "duplex"):
        return tuple(SPTC for _ in slots)        # duplex decides per step in bind()
    if model is None:
        raise FormatError("model: duplex_coprocess needs a TimeModel for its time tables")
    a = duplex.coprocess([int(s) for s in slots], model.sptc, model.pim)
    return tuple(PIM if u == duplex.PIM else SPTC for u in a.units)


def compile_plan(counts, T: int, *, num_shared: int, top_k: int, policy: Policy,
                 dispatch: str, model: TimeModel | None = None) -> Plan:
    """Compile a plan for routed ``counts`` (length E) observed in a step of T tokens."""
    if dispatch not in DISPATCHES:
        raise FormatError(f"dispatch: {dispatch!r} (expected one of {DISPATCHES})")
    c = np.asarray(counts)
    if c.ndim != 1 or c.size == 0 or c.dtype.kind not in "iu" or (c < 0).any():
        raise FormatError(f"counts: expected a 1-D array of token counts >= 0, got {counts!r}")
    if isinstance(T, bool) or not isinstance(T, (int, np.integer)) or T < 0:
        raise FormatError(f"T: expected an integer >= 0, got {T!r}")
    if c.sum() > T * top_k:
        raise FormatError(f"counts: {int(c.sum())} routed tokens exceed T * top_k = {T * top_k}")
    plan = Plan(policy.capacity, dispatch, len(c), int(num_shared), int(top_k), int(T),
                tuple(int(v) for v in c), (), policy.alpha, policy.headroom, policy.granule)
    # static: every routed expert gets C slots (the plan ignores the counts)
    slots = list(plan.capacities(T)) + [T] * num_shared
    return replace(plan, units=_units(dispatch, slots, model))


def _slot_list(real: np.ndarray, slots: int, T: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted slot tokens: the real ones plus the smallest other tokens as padding."""
    pad_n = slots - len(real)
    if pad_n:
        others = np.setdiff1d(np.arange(T), real)[:pad_n]
        sel = np.sort(np.concatenate([real, others]))
    else:
        sel = real
    return sel.astype(np.int64), np.isin(sel, real)


def bind(plan: Plan, step, model: TimeModel | None = None, *, sptc_tile: int | None = None,
         pim_tile: int | None = None) -> Bound:
    """Apply ``plan`` to a step (``sim.traces.TraceStep``): SEL lists, drops, pads, jobs.

    Jobs are ordered shared experts first, then routed experts by index; an
    expert's slots are split into jobs of at most the tile of its unit (from
    ``model`` unless given). Raises FormatError if a dynamic plan cannot hold the
    step (the scheduler recompiles before that can happen).
    """
    T, E, S = step.tokens, plan.num_experts, plan.num_shared
    if step.num_experts != E:
        raise FormatError(f"step: {step.num_experts} experts, plan compiled for {E}")
    ids, gq = np.asarray(step.expert_ids), np.asarray(step.gate_q)
    counts = step.tokens_per_expert()
    caps = plan.capacities(T)
    if plan.capacity == "dynamic" and (counts > caps).any():
        e = int(np.argmax(counts > caps))
        raise FormatError(f"step: expert {e} has {int(counts[e])} tokens, the plan's capacity "
                          f"is {int(caps[e])} (recompile first)")
    st = sptc_tile or (model.sptc_tile if model else 1 << 30)
    pt = pim_tile or (model.pim_tile if model else 1 << 30)
    decode_only = bool(step.is_decode_only)
    kept = np.zeros(ids.shape, bool)
    jobs, slots = [], np.zeros(E + S, np.int64)
    order = list(range(E, E + S)) + list(range(E))
    for e in order:
        if e >= E:
            real, g = np.arange(T, dtype=np.int64), np.full(T, 0, np.int64)
            n_slots = T
        else:
            rows, cols = np.nonzero(ids == e)              # rows ascend (token order)
            keep = min(len(rows), int(caps[e]))
            kept[rows[:keep], cols[:keep]] = True
            real, g = rows[:keep].astype(np.int64), gq[rows[:keep], cols[:keep]]
            n_slots = int(caps[e]) if keep else 0
        if n_slots == 0:
            continue
        slots[e] = n_slots
        sel, valid = _slot_list(real, n_slots, T)
        gates = np.zeros(n_slots, np.int8)
        gates[valid] = g if e < E else 0
        if plan.dispatch == "duplex":
            unit = PIM if decode_only else SPTC
        else:
            unit = plan.units[e]
        tile = st if unit == SPTC else pt
        for a in range(0, n_slots, tile):
            jobs.append(Job(unit, e, sel[a:a + tile], valid[a:a + tile], gates[a:a + tile]))
    dropped = int(len(ids) * ids.shape[1] - kept.sum()) if ids.size else 0
    padded = int(sum(j.slots - j.real for j in jobs if j.expert < E))
    return Bound(plan, T, decode_only, jobs, kept, counts, slots, dropped, padded)


def step_cost(bound: Bound, model: TimeModel) -> dict:
    """Cycles of a bound program: both units in parallel, jobs in sequence on each.

    Job times come from the tables per expert (an expert's tiles together), the
    SpTC time includes the activation LOAD when it runs any job.
    """
    E = bound.plan.num_experts
    t = {SPTC: 0, PIM: 0}
    per_expert: dict = {}
    for j in bound.jobs:
        per_expert.setdefault((j.unit, j.expert), 0)
        per_expert[(j.unit, j.expert)] += j.slots
    for (u, _e), n in per_expert.items():
        t[u] += model.unit(u, n)
    if t[SPTC]:
        t[SPTC] += model.load(bound.T)
    return {"sptc": t[SPTC], "pim": t[PIM], "makespan": max(t[SPTC], t[PIM])}


# --------------------------------------------------------------------------- the policy loop

@dataclass
class StepResult:
    index: int
    bound: Bound
    recompiled: bool
    forced: bool
    fit: float
    avg: float
    trusted: bool
    cycles_sptc: int
    cycles_pim: int
    recompile_cycles: int

    @property
    def cycles(self) -> int:
        return max(self.cycles_sptc, self.cycles_pim) + self.recompile_cycles


class Scheduler:
    """Runs the capacity + recompilation policy over a sequence of steps.

    ``scheduler.step(trace_step)`` returns a :class:`StepResult` whose ``bound``
    is the program to execute. Counters: ``recompiles``, ``forced``.
    """

    def __init__(self, *, num_experts: int, num_shared: int, top_k: int, policy: Policy,
                 dispatch: str, model: TimeModel):
        if dispatch not in DISPATCHES:
            raise FormatError(f"dispatch: {dispatch!r} (expected one of {DISPATCHES})")
        self.E, self.S, self.k = num_experts, num_shared, top_k
        self.policy, self.dispatch, self.model = policy, dispatch, model
        self.plan: Plan | None = None
        self.avg, self.trusted, self.last = 1.0, True, 0
        self.recompiles = self.forced = self.compiles = 0
        self.i = 0
        self._static: dict = {}

    def _compile(self, counts, T) -> Plan:
        self.compiles += 1
        return compile_plan(counts, T, num_shared=self.S, top_k=self.k, policy=self.policy,
                            dispatch=self.dispatch, model=self.model)

    def _fresh(self, counts, T) -> Plan:
        return compile_plan(counts, T, num_shared=self.S, top_k=self.k, policy=self.policy,
                            dispatch=self.dispatch, model=self.model)

    def step(self, step) -> StepResult:
        i, T = self.i, step.tokens
        self.i += 1
        counts = step.tokens_per_expert()
        pol = self.policy
        recompiled = forced = False
        fit = 1.0
        if pol.capacity == "static":
            # The plan depends only on T (compiled ahead of time, no routing input).
            if T not in self._static:
                self._static[T] = self._fresh(np.zeros(self.E, np.int64), T)
            plan = self._static[T]
        else:
            if self.plan is None:
                self.plan = self._compile(counts, T)
                self.avg, self.trusted, self.last = 1.0, True, i
            else:
                caps = self.plan.capacities(T)
                if (counts > caps).any():
                    forced = True
                else:
                    cached = step_cost(bind(self.plan, step, self.model), self.model)["makespan"]
                    ideal = step_cost(bind(self._fresh(counts, T), step, self.model),
                                      self.model)["makespan"]
                    fit = min(1.0, ideal / cached) if cached else 1.0
                    g = pol.gamma ** max(T, 1)
                    self.avg = g * self.avg + (1 - g) * fit
                    if self.trusted and self.avg < pol.off:
                        self.trusted = False
                    elif not self.trusted and self.avg > pol.on:
                        self.trusted = True
                if forced or (not self.trusted and i - self.last >= pol.min_gap):
                    self.plan = self._compile(counts, T)
                    self.recompiles += 1
                    self.forced += int(forced)
                    recompiled = True
                    self.avg, self.trusted, self.last = 1.0, True, i
            plan = self.plan
        bound = bind(plan, step, self.model)
        c = step_cost(bound, self.model)
        rc = pol.recompile_cycles(self.E + self.S) if recompiled else 0
        return StepResult(i, bound, recompiled, forced, fit, self.avg, self.trusted,
                          c["sptc"], c["pim"], rc)


def run_trace(trace, *, policy: Policy, dispatch: str, model: TimeModel, steps=None) -> dict:
    """Run the policy over a trace; totals for the benchmark."""
    sch = Scheduler(num_experts=trace.num_experts, num_shared=trace.num_shared,
                    top_k=trace.top_k, policy=policy, dispatch=dispatch, model=model)
    tot = dict(cycles=0, cycles_sptc=0, cycles_pim=0, dropped_tokens=0, padded_slots=0,
               routed=0, recompile_cycles=0)
    n = trace.steps if steps is None else min(steps, trace.steps)
    for i in range(n):
        r = sch.step(trace.step(i))
        tot["cycles"] += r.cycles
        tot["cycles_sptc"] += r.cycles_sptc
        tot["cycles_pim"] += r.cycles_pim
        tot["dropped_tokens"] += r.bound.dropped
        tot["padded_slots"] += r.bound.padded
        tot["routed"] += int(r.bound.counts.sum())
        tot["recompile_cycles"] += r.recompile_cycles
    tot.update(recompiles=sch.recompiles, forced_recompiles=sch.forced, steps=n,
               util_sptc=tot["cycles_sptc"] / tot["cycles"] if tot["cycles"] else 0.0,
               util_pim=tot["cycles_pim"] / tot["cycles"] if tot["cycles"] else 0.0)
    return tot


# --------------------------------------------------------------------------- program encoding

KIND_EXPERT, KIND_LOAD, KIND_RAW, KIND_END = 0, 1, 2, 3
KIND_NAMES = {KIND_EXPERT: "EXPERT", KIND_LOAD: "LOAD", KIND_RAW: "RAW", KIND_END: "END"}
F_KIND, F_UNIT, F_EXPERT, F_SLOTS, F_ARG = (0, 2), (2, 1), (3, 8), (11, 8), (19, 64)
DESC_BITS = 83
F_TOK, F_GATE, F_VALID = (0, 8), (8, 8), (16, 1)
TOK_BITS = 17
#: PIM opcodes a RAW descriptor may carry (LOAD_TOKENS / GEMM belong to EXPERT jobs).
RAW_OK = (gp.OPCODES["NOP"], gp.OPCODES["WRITE"], gp.OPCODES["SET_OUT"], gp.OPCODES["FENCE"])
# Sticky error bits of the top's status.
ERR_DESC = 1 << 0    # malformed descriptor (dropped, consumed no token entries)
ERR_TOKEN = 1 << 1   # token entry with token >= T or gate > 127 (not combined)
ERR_SPTC = 1 << 2    # the SpTC raised an error
ERR_PIM = 1 << 3     # the Logic-PIM unit raised an error
ERROR_NAMES = {ERR_DESC: "desc", ERR_TOKEN: "token", ERR_SPTC: "sptc", ERR_PIM: "pim"}


def _put(word: int, f, v: int, name: str) -> int:
    lo, w = f
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 0 <= v < 1 << w:
        raise FormatError(f"{name}: {v!r} does not fit the {w}-bit field")
    return word | (int(v) << lo)


def _get(word: int, f) -> int:
    lo, w = f
    return (int(word) >> lo) & ((1 << w) - 1)


def desc(kind: int, unit: int = 0, expert: int = 0, slots: int = 0, arg: int = 0) -> int:
    """One descriptor word (fields unchecked against a config so tests can build bad ones)."""
    w = _put(0, F_KIND, kind, "kind")
    w = _put(w, F_UNIT, unit, "unit")
    w = _put(w, F_EXPERT, expert, "expert")
    w = _put(w, F_SLOTS, slots, "slots")
    return _put(w, F_ARG, arg, "arg")


def decode_desc(word: int) -> dict:
    return dict(kind=_get(word, F_KIND), unit=_get(word, F_UNIT), expert=_get(word, F_EXPERT),
                slots=_get(word, F_SLOTS), arg=_get(word, F_ARG))


def tok_entry(tok: int, gate: int, valid: bool) -> int:
    return _put(_put(_put(0, F_TOK, tok, "tok"), F_GATE, gate & 0xFF, "gate"), F_VALID,
                int(valid), "valid")


def pim_addr(mcfg, hidden: int, expert: int) -> int:
    """Word address of expert ``expert``'s weights in the top's Logic-PIM."""
    kw = -(-hidden // mcfg.pim.elems)
    return expert * hidden * kw


def preamble(mcfg, params) -> tuple[list[int], list[int]]:
    """RAW descriptors + PIM data words: every expert's weights into the PIM, SET_OUT."""
    descs, din = [], []
    h = params.hidden
    need = len(params.weights) * h * -(-h // mcfg.pim.elems)
    if need > mcfg.pim.words:
        raise FormatError(f"weights: {len(params.weights)} experts need {need} PIM words, "
                          f"the unit holds {mcfg.pim.words}")
    for e, w in enumerate(params.weights):
        words = gp.pack_rows(mcfg.pim, w)
        for a in range(0, len(words), (1 << 24) - 1):
            part = words[a:a + (1 << 24) - 1]
            descs.append(desc(KIND_RAW, 1, arg=gp.encode("WRITE", addr=pim_addr(mcfg, h, e) + a,
                                                          count=len(part))))
            din += part
    mult, shift = params.expert_rq
    descs.append(desc(KIND_RAW, 1, arg=gp.encode("SET_OUT", mode=2, shift=shift, mult=mult)))
    return descs, din


def encode_step(mcfg, bound: Bound, hidden: int, shared_gate: int) -> tuple[list[int], list[int]]:
    """Descriptors and token entries of one bound step: LOAD(T), the jobs, END(T).

    A job's token entries are its slots in order: (token, gate, valid); shared
    experts' entries carry ``shared_gate``, padding slots valid = 0 and gate 0."""
    E = bound.plan.num_experts
    T = bound.T
    if not 1 <= T <= mcfg.max_tokens:
        raise FormatError(f"T: {T} tokens outside 1..{mcfg.max_tokens} (the top's buffer)")
    descs = [desc(KIND_LOAD, 0, slots=T)]
    toks = []
    for j in bound.jobs:
        u = UNIT_CODES[j.unit]
        lim = mcfg.sptc_max_slots if u == 0 else mcfg.pim_max_slots
        if j.slots > lim:
            raise FormatError(f"job: expert {j.expert} has {j.slots} slots, the {j.unit} "
                              f"tile is {lim}")
        descs.append(desc(KIND_EXPERT, u, j.expert, j.slots,
                          pim_addr(mcfg, hidden, j.expert) if u else 0))
        gates = np.where(j.valid, shared_gate, 0) if j.expert >= E else j.gates
        toks += [tok_entry(int(t), int(g), bool(v)) for t, g, v in zip(j.sel, gates, j.valid)]
    descs.append(desc(KIND_END, 0, slots=T))
    return descs, toks


def combine_jobs(params, x: np.ndarray, bound: Bound) -> np.ndarray:
    """The layer output computed job by job, as the hardware does (cross-check of
    :func:`golden.moe.moe_layer`; pads and invalid slots contribute nothing)."""
    from .moe import expert_out
    from .numerics import requant
    h, T = x.shape
    acc = np.zeros((h, T), np.int64)
    E = params.num_experts
    for j in bound.jobs:
        y = expert_out(params, j.expert, x, j.sel).astype(np.int64)
        g = (np.full(j.slots, params.shared_gate) if j.expert >= E else j.gates).astype(np.int64)
        for s in range(j.slots):
            if j.valid[s]:
                acc[:, j.sel[s]] += g[s] * y[:, s]
    return requant(acc, *params.combine_rq)
