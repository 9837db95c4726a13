"""Host-side schedule compiler of the MoE layer: DynaMoE's capacity rule and
expert-assignment cache on top of Duplex dispatch / co-processing.

This module stays at about 500 lines (the dispatch, capacity and cache policies
read together); it is split in three modules, re-exported here so every
``golden.schedule.X`` name keeps working: :mod:`golden.costmodel` (what a job costs:
``TimeModel``, ``ExpertShape``, ``weight_bytes``, rooflines), :mod:`golden.program`
(the descriptor / token-entry words for ``hdl.moe``), and this module (which jobs a
step runs and when to recompile).

Pipeline for one serving step (a :class:`golden.trace.TraceStep`):

1. **plan** (:func:`compile_plan`): the capacity factor alpha and, for a cached
   expert assignment, every expert's unit.
2. **bind** (:func:`bind`, every step, after gating): fill each expert's SEL list,
   drop its tokens past the capacity ``C = min(T, ceil(alpha * k / E * T))`` (in
   token order), pad its slots up to C, decide each expert's unit *on this step's
   slots* (below), split slots into jobs of at most the unit's tile and order them
   (shared experts first, then routed by index). :func:`golden.program.encode_step`
   turns the result into words for the hardware.
3. **cost** (:func:`step_cost`): the two units run in parallel, jobs on one unit in
   sequence; with a shared-HBM budget the step also waits for the banks.

Dispatch (per step, after gating, as Duplex does):

* ``sptc_only``: every job on the SpTC (the xPU alone).
* ``duplex``: the stage rule, MoE of decode-only steps to the Logic-PIM, else SpTC.
* ``duplex_opb``: each expert to the unit its Op/B favours (``TimeModel.opb_unit``:
  the higher roofline ``min(peak, Op/B * bandwidth)`` of the two units).
* ``duplex_coprocess``: Duplex expert co-processing (``golden.duplex.coprocess``) on
  the step's slot vector, or the cached assignment while the cache is on.

Capacity policies
-----------------
* ``static``: alpha fixed (DynaMoE without recompilation). Never recompiles.
* ``dropless``: every expert gets exactly its step's tokens: no drop, no padding (the
  serving systems Duplex compares against batch this way). Never recompiles.
* ``dynamic``: DynaMoE's FlexFlow rule (``moe_alter`` in its MoE examples): after a
  step whose busiest expert needed ``observed = max_e count_e * E / (k T)`` above
  ``thresh * alpha`` (1.0: an overflow), and while ``alpha < max_alpha``, recompile
  with ``alpha = min(grow * observed, max_alpha)`` (1.3, 4.0). The overflowing step
  drops its tokens past capacity (the recompile takes effect from the next step).
  ``shrink`` > 0 enables the branch FlexFlow keeps commented out: after a step with
  ``observed < shrink * alpha``, recompile with ``alpha = shrink_to * observed``
  (FlexFlow's values 0.6 and 1.25); off by default, as in DynaMoE's code.

Expert-assignment cache (dynamic only, ``Policy.cache``)
--------------------------------------------------------
DynaMoE's second, separate mechanism (``moe_score`` / ``moe_alter``): a score, the
running average over steps ``score = gamma * score + (1 - gamma) * frac`` (gamma
0.99 *per iteration*, score starting at 0), where ``frac`` is the fraction of the
step's tokens whose expert set equals the cached set for the same sample. A sample
here is a request: the cached set is the set its previous token was routed to (a
token of a request not seen before does not match). The cache turns on when
``score > on`` (0.95) and more than ``min_gap`` steps passed since the last recompile
(FlexFlow: 2000 iterations), and off when ``score < off`` (0.85). What is cached on
this hardware is the expert -> unit assignment: while on, ``duplex_coprocess`` and
``duplex_opb`` reuse the assignment computed at the switch instead of deciding each
step (``sptc_only`` and the stage rule have none to cache). Each switch is a recompile.

Recompile cost: ``recompile_base + recompile_per_expert * (E + S)`` cycles, charged
to the step after which it happens. On this hardware a recompile rewrites the host's
per-expert table (capacity, unit: one word per expert at one word per cycle,
``recompile_per_expert`` = 1); it moves no weights (every expert's weights stay
resident in the Logic-PIM banks, and the SpTC streams from the same stack), and the
program is re-sent every step anyway. ``recompile_base`` is the host's re-planning
latency, not a property of the hardware: 0 by default, swept by the benchmark.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from . import duplex
from .costmodel import (PIM, SPTC, SPTC_MODES, ExpertShape, TimeModel,  # noqa: F401
                        weight_bytes)
from .errors import FormatError
from .program import (DESC_BITS, DESC_LAYOUT, ERR_DESC, ERR_PIM, ERR_SPTC,  # noqa: F401
                      ERR_TOKEN, ERROR_NAMES, KIND_END, KIND_EXPERT, KIND_LOAD, KIND_NAMES,
                      KIND_RAW, LAYER_BITS, LAYER_LAYOUT, RAW_OK, TOK_BITS, TOK_LAYOUT,
                      UNIT_CODES, combine_jobs, decode_desc, desc, dispatch_order, encode_step,
                      expert_words,
                      layer_cfg, pack_layer, pim_addr, preamble, tok_entry)

CAPACITY_POLICIES = ("static", "dynamic", "dropless")
DISPATCHES = ("sptc_only", "duplex", "duplex_opb", "duplex_coprocess")

#: The papers' figures the benchmark prints beside ours, with what each one measures.
PAPER = {
    "dynamoe_recompile": dict(
        value=1.7, figure="DynaMoE: further 1.7x from recompilation-enabled optimizations",
        definition="end-to-end training throughput on GPUs, DynaMoE with recompilation",
        baseline="DynaMoE without recompilation (fixed capacity factor)"),
    "duplex_mean": dict(
        value=2.07, figure="Duplex: 2.07x mean throughput vs H100",
        definition="end-to-end serving throughput (attention + MoE + other layers), mean over "
                   "models and batch settings, with expert and attention co-processing",
        baseline="H100 GPU (xPU-like device alone)"),
    "duplex_max": dict(
        value=2.67, figure="Duplex: up to 2.67x throughput vs H100",
        definition="as duplex_mean, the maximum over settings", baseline="H100 GPU"),
    "coprocess": dict(
        value=1.04, figure="Duplex: expert co-processing adds about 1.04x",
        definition="end-to-end serving throughput, Duplex with vs without co-processing",
        baseline="Duplex's stage rule (decode-only MoE on Logic-PIM)"),
}


# --------------------------------------------------------------------------- policy config

@dataclass(frozen=True)
class Policy:
    """Capacity, expert-assignment cache and recompile-cost parameters (defaults:
    DynaMoE's FlexFlow code where it gives them)."""

    capacity: str = "dynamic"
    alpha: float = 2.0              # (initial) capacity factor; FlexFlow examples 2.0-3.0
    thresh: float = 1.0             # overflow: observed > thresh * alpha
    grow: float = 1.3               # new alpha = min(grow * observed, max_alpha)
    max_alpha: float = 4.0
    shrink: float = 0.0             # 0: never shrink (FlexFlow's live code)
    shrink_to: float = 1.25
    cache: bool = True              # expert-assignment cache (dynamic only)
    gamma: float = 0.99             # score decay per step (iteration)
    on: float = 0.95                # cache on above this score ...
    off: float = 0.85               # ... off below this one
    min_gap: int = 2000             # steps since the last recompile before the cache turns on
    recompile_base: int = 0         # host re-planning latency (cycles), swept by the bench
    recompile_per_expert: int = 1   # table words per expert (routed + shared)

    def __post_init__(self):
        if self.capacity not in CAPACITY_POLICIES:
            raise FormatError(f"capacity: {self.capacity!r} (expected one of {CAPACITY_POLICIES})")
        for name in ("alpha", "thresh", "grow", "max_alpha", "shrink", "shrink_to", "gamma",
                     "on", "off"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise FormatError(f"{name}: expected a number, got {v!r}")
        for name in ("alpha", "thresh", "grow", "max_alpha"):
            if getattr(self, name) <= 0:
                raise FormatError(f"{name}: must be > 0, got {getattr(self, name)}")
        if self.shrink < 0 or self.shrink_to <= 0:
            raise FormatError(f"shrink/shrink_to: need shrink >= 0 and shrink_to > 0, got "
                              f"{self.shrink}/{self.shrink_to}")
        if not 0 < self.gamma < 1:
            raise FormatError(f"gamma: must be in (0, 1), got {self.gamma}")
        if not 0 < self.off <= self.on <= 1:
            raise FormatError(f"off/on: need 0 < off <= on <= 1, got {self.off}/{self.on}")
        if not isinstance(self.cache, bool):
            raise FormatError(f"cache: expected a bool, got {self.cache!r}")
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


def observed_alpha(counts, k: int, T: int) -> float:
    """The capacity factor the step needed: ``max_e count_e * E / (k T)`` (0 if T = 0)."""
    c = np.asarray(counts)
    return float(c.max()) * len(c) / (k * T) if T and c.size else 0.0


def dropfree_alpha(trace) -> float:
    """The smallest static alpha at which no step of ``trace`` drops a token."""
    return max((observed_alpha(s.tokens_per_expert(), trace.top_k, s.tokens) for s in trace
                if s.tokens), default=1.0)


# --------------------------------------------------------------------------- plans and programs

@dataclass(frozen=True)
class Plan:
    """A compiled plan: the capacity factor, and the cached expert -> unit assignment
    (``units``, routed then shared; empty unless the cache is on)."""

    capacity: str
    dispatch: str
    num_experts: int
    num_shared: int
    top_k: int
    compiled_T: int
    counts: tuple           # routed counts the plan was compiled for
    units: tuple            # per expert (routed, then shared): "sptc" | "pim", or ()
    alpha: float = 2.0

    def capacities(self, T: int) -> np.ndarray:
        """Slots per routed expert for a step of T tokens."""
        E = self.num_experts
        if self.capacity == "dropless":
            return np.asarray(self.counts, np.int64)
        return np.full(E, static_capacity(self.alpha, self.top_k, E, T), np.int64)


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
    units: tuple = ()       # per expert (routed, then shared): the unit of its jobs

    def unit_jobs(self, unit: str) -> list:
        return [j for j in self.jobs if j.unit == unit]


def step_units(dispatch: str, slots, decode_only: bool, model: TimeModel | None) -> tuple:
    """Each expert's unit for a step with per-expert ``slots`` (routed, then shared)."""
    if dispatch == "sptc_only":
        return tuple(SPTC for _ in slots)
    if dispatch == "duplex":
        return tuple((PIM if decode_only else SPTC) for _ in slots)
    if model is None:
        raise FormatError(f"model: dispatch {dispatch} needs a TimeModel")
    if dispatch == "duplex_opb":
        return tuple(model.opb_unit(int(n)) for n in slots)
    a = duplex.coprocess([int(s) for s in slots], model.sptc, model.pim)
    return tuple(PIM if u == duplex.PIM else SPTC for u in a.units)


def compile_plan(counts, T: int, *, num_shared: int, top_k: int, policy: Policy,
                 dispatch: str, model: TimeModel | None = None, alpha: float | None = None,
                 cache_units: bool = False) -> Plan:
    """A plan for routed ``counts`` (length E) observed in a step of T tokens, with
    capacity factor ``alpha`` (default ``policy.alpha``). ``cache_units``: fix the
    expert -> unit assignment from these counts (the expert-assignment cache)."""
    if dispatch not in DISPATCHES:
        raise FormatError(f"dispatch: {dispatch!r} (expected one of {DISPATCHES})")
    c = np.asarray(counts)
    if c.ndim != 1 or c.size == 0 or c.dtype.kind not in "iu" or (c < 0).any():
        raise FormatError(f"counts: expected a 1-D array of token counts >= 0, got {counts!r}")
    if isinstance(T, bool) or not isinstance(T, (int, np.integer)) or T < 0:
        raise FormatError(f"T: expected an integer >= 0, got {T!r}")
    if c.sum() > T * top_k:
        raise FormatError(f"counts: {int(c.sum())} routed tokens exceed T * top_k = {T * top_k}")
    a = policy.alpha if alpha is None else float(alpha)
    plan = Plan(policy.capacity, dispatch, len(c), int(num_shared), int(top_k), int(T),
                tuple(int(v) for v in c), (), a)
    if not cache_units:
        return plan
    cap = plan.capacities(T)
    slots = [int(cap[e]) if c[e] else 0 for e in range(len(c))] + [T] * num_shared
    return replace(plan, units=step_units(dispatch, slots, False, model))


def _slot_list(real: np.ndarray, slots: int, T: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted slot tokens: the real ones plus the smallest other tokens as padding."""
    if slots == len(real):
        return real.astype(np.int64), np.ones(len(real), bool)
    is_real = np.zeros(T, bool)
    is_real[real] = True
    mask = is_real.copy()
    mask[np.flatnonzero(~is_real)[:slots - len(real)]] = True
    sel = np.flatnonzero(mask).astype(np.int64)
    return sel, is_real[sel]


def bind(plan: Plan, step, model: TimeModel | None = None, *, sptc_tile: int | None = None,
         pim_tile: int | None = None) -> Bound:
    """Apply ``plan`` to a step (``golden.trace.TraceStep``): SEL lists, drops, pads, units,
    jobs. Units: the plan's cached assignment if it has one, else decided on this step's
    slots by the plan's dispatch (:func:`step_units`)."""
    T, E, S = step.tokens, plan.num_experts, plan.num_shared
    if step.num_experts != E:
        raise FormatError(f"step: {step.num_experts} experts, plan compiled for {E}")
    ids, gq = np.asarray(step.expert_ids), np.asarray(step.gate_q)
    counts = step.tokens_per_expert()
    caps = counts if plan.capacity == "dropless" else plan.capacities(T)
    st = sptc_tile or (model.sptc_tile if model else 1 << 30)
    pt = pim_tile or (model.pim_tile if model else 1 << 30)
    decode_only = bool(step.is_decode_only)
    kept = np.zeros(ids.shape, bool)
    slots = np.zeros(E + S, np.int64)
    lists = {}
    k = ids.shape[1] if ids.ndim == 2 else 1
    order = np.argsort(ids.ravel(), kind="stable")       # by expert, then token order
    bounds = np.searchsorted(ids.ravel()[order], np.arange(E + 1))
    for e in range(E + S):
        if e >= E:
            real, g, n_slots = np.arange(T, dtype=np.int64), np.zeros(T, np.int64), T
        else:
            flat = order[bounds[e]:bounds[e + 1]]
            rows, cols = flat // k, flat % k              # rows ascend (token order)
            keep = min(len(rows), int(caps[e]))
            kept[rows[:keep], cols[:keep]] = True
            real, g = rows[:keep].astype(np.int64), gq[rows[:keep], cols[:keep]]
            n_slots = int(caps[e]) if keep else 0
        if n_slots:
            slots[e] = n_slots
            lists[e] = (real, g)
    units = plan.units or step_units(plan.dispatch, slots.tolist(), decode_only, model)
    jobs = []
    for e in list(range(E, E + S)) + list(range(E)):
        if not slots[e]:
            continue
        real, g = lists[e]
        sel, valid = _slot_list(real, int(slots[e]), T)
        gates = np.zeros(len(sel), np.int8)
        gates[valid] = g if e < E else 0
        unit = units[e]
        tile = st if unit == SPTC else pt
        for a in range(0, len(sel), tile):
            jobs.append(Job(unit, e, sel[a:a + tile], valid[a:a + tile], gates[a:a + tile]))
    dropped = int(ids.size - kept.sum()) if ids.size else 0
    padded = int(sum(j.slots - j.real for j in jobs if j.expert < E))
    return Bound(plan, T, decode_only, jobs, kept, counts, slots, dropped, padded, tuple(units))


def step_cost(bound: Bound, model: TimeModel) -> dict:
    """Cycles of a bound program: both units in parallel, jobs in sequence on each;
    with ``model.shared_bw`` set, also the shared banks' time for both units' weight
    bytes (``hbm``). The SpTC time includes the activation LOAD when it runs any job."""
    t = {SPTC: 0, PIM: 0}
    nbytes = 0
    per_expert: dict = {}
    for j in bound.jobs:
        per_expert[(j.unit, j.expert)] = per_expert.get((j.unit, j.expert), 0) + j.slots
    for (u, _e), n in per_expert.items():
        t[u] += model.unit(u, n)
        if model.shared_bw:
            nbytes += model.bytes(u, n)
    if t[SPTC]:
        t[SPTC] += model.load(bound.T)
    hbm = math.ceil(nbytes / model.shared_bw) if model.shared_bw else 0
    return {"sptc": t[SPTC], "pim": t[PIM], "hbm": hbm, "bytes": nbytes,
            "makespan": max(t[SPTC], t[PIM], hbm)}


# --------------------------------------------------------------------------- the policy loop

@dataclass
class StepResult:
    index: int
    bound: Bound
    recompiled: bool
    forced: bool            # a capacity (overflow) recompile
    reason: str             # "" | "capacity" | "cache_on" | "cache_off" (joined by "+")
    alpha: float            # capacity factor this step ran with
    observed: float         # capacity factor this step needed
    score: float            # expert-assignment cache score after this step
    cached: bool            # this step ran with the cached assignment
    cycles_sptc: int
    cycles_pim: int
    recompile_cycles: int
    cycles_hbm: int = 0

    @property
    def cycles(self) -> int:
        return max(self.cycles_sptc, self.cycles_pim, self.cycles_hbm) + self.recompile_cycles


class Scheduler:
    """Runs the capacity rule and the expert-assignment cache over a sequence of steps.

    ``scheduler.step(trace_step)`` returns a :class:`StepResult` whose ``bound`` is the
    program to execute. Counters: ``recompiles`` (all), ``forced`` (capacity),
    ``cache_switches``.
    """

    def __init__(self, *, num_experts: int, num_shared: int, top_k: int, policy: Policy,
                 dispatch: str, model: TimeModel):
        if dispatch not in DISPATCHES:
            raise FormatError(f"dispatch: {dispatch!r} (expected one of {DISPATCHES})")
        self.E, self.S, self.k = num_experts, num_shared, top_k
        self.policy, self.dispatch, self.model = policy, dispatch, model
        self.alpha = policy.alpha
        self.score, self.cache_on, self.cached_units = 0.0, False, ()
        self.last = 0
        self.recompiles = self.forced = self.cache_switches = 0
        self.i = 0
        self._keys = np.full(1024, -1, np.int64)

    def _match_fraction(self, step) -> float:
        """Fraction of the step's tokens whose expert set equals their request's cached
        set (the set of the request's previous token); then the cache takes this step's
        sets."""
        ids = np.sort(np.asarray(step.expert_ids, np.int64), axis=1)
        T = len(ids)
        if not T:
            return 0.0
        key = ids @ (np.int64(self.E + 1) ** np.arange(ids.shape[1], dtype=np.int64))
        rid = np.asarray(step.request_id, np.int64)
        if rid.max() >= len(self._keys):
            grown = np.full(max(2 * len(self._keys), int(rid.max()) + 1), -1, np.int64)
            grown[:len(self._keys)] = self._keys
            self._keys = grown
        prev = self._keys[rid]
        same = np.zeros(T, bool)
        same[1:] = rid[1:] == rid[:-1]                    # earlier token of the request
        prev[1:][same[1:]] = key[:-1][same[1:]]
        _, first_rev = np.unique(rid[::-1], return_index=True)
        last = T - 1 - first_rev                          # each request's last token
        self._keys[rid[last]] = key[last]
        return float((prev == key).sum()) / T

    def step(self, step) -> StepResult:
        i, T = self.i, step.tokens
        self.i += 1
        pol, counts = self.policy, step.tokens_per_expert()
        cached = self.cache_on
        plan = Plan(pol.capacity, self.dispatch, self.E, self.S, self.k, T,
                    tuple(int(v) for v in counts), self.cached_units if cached else (),
                    self.alpha)
        bound = bind(plan, step, self.model)
        c = step_cost(bound, self.model)
        alpha_run = self.alpha
        obs = observed_alpha(counts, self.k, T)
        reasons = []
        if pol.capacity == "dynamic":
            # capacity rule (after the step, as FlexFlow's recompile_on_condition)
            if obs > pol.thresh * self.alpha and self.alpha < pol.max_alpha:
                self.alpha = min(pol.grow * obs, pol.max_alpha)
                reasons.append("capacity")
            elif pol.shrink and T and obs < pol.shrink * self.alpha:
                self.alpha = pol.shrink_to * obs
                reasons.append("capacity")
            if pol.cache and T:
                frac = self._match_fraction(step)
                self.score = pol.gamma * self.score + (1 - pol.gamma) * frac
                if not self.cache_on and self.score > pol.on and i - self.last > pol.min_gap:
                    self.cache_on = True
                    if self.dispatch in ("duplex_opb", "duplex_coprocess"):
                        self.cached_units = compile_plan(
                            counts, T, num_shared=self.S, top_k=self.k, policy=pol,
                            dispatch=self.dispatch, model=self.model, alpha=self.alpha,
                            cache_units=True).units
                    reasons.append("cache_on")
                elif self.cache_on and self.score < pol.off:
                    self.cache_on, self.cached_units = False, ()
                    reasons.append("cache_off")
        recompiled = bool(reasons)
        if recompiled:
            self.recompiles += 1
            self.forced += "capacity" in reasons
            self.cache_switches += any(r.startswith("cache") for r in reasons)
            self.last = i
        rc = pol.recompile_cycles(self.E + self.S) if recompiled else 0
        return StepResult(i, bound, recompiled, "capacity" in reasons, "+".join(reasons),
                          alpha_run, obs, self.score, cached, c["sptc"], c["pim"], rc,
                          c["hbm"])


def run_trace(trace, *, policy: Policy, dispatch: str, model: TimeModel, steps=None) -> dict:
    """Run the policy over a trace; totals for the benchmark."""
    sch = Scheduler(num_experts=trace.num_experts, num_shared=trace.num_shared,
                    top_k=trace.top_k, policy=policy, dispatch=dispatch, model=model)
    tot = dict(cycles=0, cycles_sptc=0, cycles_pim=0, cycles_hbm=0, dropped_tokens=0,
               padded_slots=0, routed=0, recompile_cycles=0, cached_steps=0)
    n = trace.steps if steps is None else min(steps, trace.steps)
    for i in range(n):
        r = sch.step(trace.step(i))
        tot["cycles"] += r.cycles
        tot["cycles_sptc"] += r.cycles_sptc
        tot["cycles_pim"] += r.cycles_pim
        tot["cycles_hbm"] += r.cycles_hbm
        tot["dropped_tokens"] += r.bound.dropped
        tot["padded_slots"] += r.bound.padded
        tot["routed"] += int(r.bound.counts.sum())
        tot["recompile_cycles"] += r.recompile_cycles
        tot["cached_steps"] += int(r.cached)
    cyc = tot["cycles"]
    kept = tot["routed"] - tot["dropped_tokens"]
    tot.update(recompiles=sch.recompiles, forced_recompiles=sch.forced,
               cache_recompiles=sch.cache_switches, steps=n, final_alpha=sch.alpha,
               kept=kept, dropped_fraction=tot["dropped_tokens"] / tot["routed"]
               if tot["routed"] else 0.0,
               cycles_per_kept=cyc / kept if kept else math.inf,
               util_sptc=tot["cycles_sptc"] / cyc if cyc else 0.0,
               util_pim=tot["cycles_pim"] / cyc if cyc else 0.0)
    return tot
