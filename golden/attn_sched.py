"""Attention co-processing (Duplex): per layer step, decode attention on the Logic-PIM
and prefill attention on the SpTC side, concurrently; or all of it on one unit.

Contexts (:func:`step_requests`): a trace's tokens carry their request id and
whether they are prefill. Walking the steps in order, each request's *context* is
the number of its tokens seen so far: a step with ``T`` tokens of a request whose
context was ``s`` before attends ``L = s + T`` positions (its queries sit at
positions ``s .. L - 1``; query ``i`` attends ``0 .. s + i``, causally). A prompt
(all its tokens in one step) gives ``s = 0, T = L = prompt length``; each later
decode step adds one token (the first decode token is the one the prefill
produced, at position ``prompt``). A request first seen decoding was prefilled
before the trace window: its context before the window is ``prior`` (default: the
midpoint of the trace's ``gen["prompt_len"]`` range, tokens it generated before the
window not counted). A request is *prefill* in a step when any of its tokens there
is, else *decode*.

Units and costs, one transformer layer, cycles of one common clock:

* Logic-PIM (:func:`pim_cycles`): ``golden.pim.predict_cycles`` of the program the
  compiler emits for the requests: ``SET_KV`` (one slot per (request, KV head),
  ``capacity`` positions each), ``APPEND_KV`` of each new position, then one
  ``LOAD_TOKENS + ATTN`` per (query position, KV head) group of ``G`` query heads
  over its causal context, back to back, then ``FENCE``. Exact for the RTL (the
  tests of docs/attention.md).
* SpTC (:func:`sptc_cycles`): per (request, KV head), ``Q K^T`` then ``P V`` as
  dense SpTC jobs (``golden.sptc.predict_cycles``, plus each job's activation
  LOAD), the K (V) cache as the weight operand, ``G T`` query vectors in tiles of
  ``max_tokens``; ``P V`` in tiles of ``max_k`` positions, twice (the 15-bit
  probabilities as two 8-bit digits on the int8 array). Causal prefill computes
  the full ``L x T`` rectangle. With ``xpu_bytes_per_cycle`` no job is faster than
  streaming its K or V operand at that rate. The softmax rows (``G`` per query,
  each over its causal context) go through one softmax component
  (``golden.softmax.unit_schedule``, its first score to its last probability).
  The array and the softmax overlap: the array runs ``QK_0, QK_1, PV_0, QK_2,
  PV_1, ...`` in order, each ``P V`` waiting for its softmax, each softmax for
  its ``Q K^T`` and the previous softmax.
* Step time (:func:`step_time`): the two units share nothing (the Logic-PIM reads
  its banks through its own TSVs, the SpTC through the ordinary interface) and
  start together, so a step takes the longer of the two; ``duplex`` dispatch
  sends decode requests to the Logic-PIM and prefill requests to the SpTC,
  ``sptc`` / ``pim`` send everything to one unit, ``split`` picks per request
  (:func:`step_time`). Gain = one-unit time / co-processed time.

Bad input is a FormatError naming the field: a context longer than the cache
(``capacity``), a group or head dim the build cannot hold, an unknown dispatch, a
missing or negative ``prior``, a preset without a GQA shape.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from . import pim as gp
from . import sptc as gs
from .errors import FormatError
from .pim.kv import KVLayout, head_words, max_capacity
from .softmax import unit_schedule

DISPATCHES = ("duplex", "split", "sptc", "pim")

#: Attention shapes of the kit presets (query heads, KV heads, head dim), from the
#: models' published configurations; None: not grouped-query attention.
ATTN_SHAPES: dict[str, tuple[int, int, int] | None] = {
    "mixtral-8x7b": (32, 8, 128),
    "mixtral-8x22b": (48, 8, 128),
    "qwen2-moe": (16, 16, 128),
    "deepseek-moe-16b": (16, 16, 128),
    "deepseek-v3": None,             # multi-head latent attention, not GQA
    "qwen3-30b-a3b": (32, 4, 128),
    "openmoe-34b": (24, 24, 128),
}


@dataclass(frozen=True)
class AttnShape:
    """``q_heads`` query heads in groups of ``group`` sharing one of ``kv_heads``."""
    q_heads: int
    kv_heads: int
    head_dim: int

    def __post_init__(self):
        for name in ("q_heads", "kv_heads", "head_dim"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise FormatError(f"{name}: expected an integer >= 1, got {v!r}")
        if self.q_heads % self.kv_heads:
            raise FormatError(f"q_heads: {self.q_heads} is not a multiple of kv_heads = "
                              f"{self.kv_heads}")

    @property
    def group(self) -> int:
        return self.q_heads // self.kv_heads


def preset_shape(preset: str) -> AttnShape:
    if preset not in ATTN_SHAPES:
        raise FormatError(f"preset: {preset!r} has no attention shape (known: "
                          f"{', '.join(ATTN_SHAPES)})")
    s = ATTN_SHAPES[preset]
    if s is None:
        raise FormatError(f"preset: {preset} does not use grouped-query attention")
    return AttnShape(*s)


@dataclass(frozen=True)
class Request:
    """One request's attention in a step: ``tokens`` queries ending at context ``context``."""
    request: int
    prefill: bool
    tokens: int
    context: int


def default_prior(trace) -> int:
    pl = (trace.gen or {}).get("prompt_len")
    if not pl or len(pl) != 2:
        raise FormatError("prior: the trace records no gen['prompt_len']; give prior")
    return (int(pl[0]) + int(pl[1])) // 2


def step_requests(trace, prior: int | None = None) -> list[list[Request]]:
    """Per step, the requests in order of first appearance (module docstring)."""
    prior = default_prior(trace) if prior is None else prior
    if isinstance(prior, bool) or not isinstance(prior, (int, np.integer)) or prior < 0:
        raise FormatError(f"prior: expected an integer >= 0, got {prior!r}")
    seen: dict[int, int] = {}
    out = []
    for st in trace:
        ids, first = np.unique(st.request_id, return_index=True)
        reqs = []
        for r in ids[np.argsort(first)]:
            mine = st.request_id == r
            t, pre = int(mine.sum()), bool(st.is_prefill[mine].any())
            r = int(r)
            if r not in seen:
                seen[r] = 0 if pre else int(prior)
            seen[r] += t
            reqs.append(Request(r, pre, t, seen[r]))
        out.append(reqs)
    return out


# --------------------------------------------------------------------------- Logic-PIM

def pim_program(cfg: gp.PIMConfig, shape: AttnShape, reqs, capacity: int | None = None,
                sm=(1000, 16)) -> tuple[gp.Program, KVLayout]:
    """The Logic-PIM program of ``reqs`` (module docstring); data words are zeros."""
    head_words(cfg, shape.head_dim)
    if shape.group > cfg.attn_heads:
        raise FormatError(f"group: {shape.group} query heads per KV head, the build holds "
                          f"1..{cfg.attn_heads} (attn_heads)")
    slots = len(reqs) * shape.kv_heads
    cap = max_capacity(cfg, shape.head_dim, slots) if capacity is None else capacity
    for q in reqs:
        if q.context > cap:
            raise FormatError(f"capacity: request {q.request} has context {q.context}, "
                              f"longer than the cache's {cap} positions")
    lay = KVLayout(cfg, shape.head_dim, shape.kv_heads, len(reqs), cap)
    p = gp.Program(cfg).set_kv(lay)
    zero = np.zeros(shape.head_dim, np.int8)
    for i, q in enumerate(reqs):
        for h in range(shape.kv_heads):
            for pos in range(q.context - q.tokens, q.context):
                p.append_kv(lay, i, h, pos, zero, zero)
    qg = np.zeros((shape.group, shape.head_dim), np.int8)
    for i, q in enumerate(reqs):
        for t in range(q.tokens):
            for h in range(shape.kv_heads):
                p.attention(lay, i, h, qg, q.context - q.tokens + t + 1, *sm)
    return p.fence(), lay


def pim_cycles(cfg: gp.PIMConfig, shape: AttnShape, reqs, capacity: int | None = None) -> int:
    """Logic-PIM cycles of ``reqs`` (0 for none)."""
    if not reqs:
        return 0
    return gp.predict_cycles(cfg, pim_program(cfg, shape, reqs, capacity)[0].words)


# --------------------------------------------------------------------------- SpTC

@lru_cache(maxsize=4096)
def _job(cfg: gs.SpTCConfig, m: int, k: int, tokens: int, xbw: float | None) -> int:
    """One dense job: LOAD of ``tokens`` activations of ``k``, the matmul, and no faster
    than streaming the (m x k) weight operand at ``xbw`` bytes a cycle."""
    c = gs.predict_load_cycles((k, tokens)) + gs.predict_cycles(cfg, "dense", m, k, tokens)
    return max(c, math.ceil(m * k / xbw)) if xbw else c


def _tiles(n: int, size: int) -> list[int]:
    return [size] * (n // size) + ([n % size] if n % size else [])


def sptc_parts(cfg: gs.SpTCConfig, shape: AttnShape, q: Request,
               xpu_bytes_per_cycle: float | None = None) -> tuple[float, int, float]:
    """(Q K^T cycles, softmax cycles, P V cycles) of one KV head of request ``q``."""
    d, G, L, T = shape.head_dim, shape.group, q.context, q.tokens
    if d > cfg.max_k:
        raise FormatError(f"head_dim: {d} above the SpTC build's max_k = {cfg.max_k}")
    xbw = xpu_bytes_per_cycle
    toks = _tiles(G * T, cfg.max_tokens)
    qk = sum(_job(cfg, L, d, n, xbw) for n in toks)
    pv = 2 * sum(_job(cfg, d, kc, n, xbw) for n in toks for kc in _tiles(L, cfg.max_k))
    rows = [L - T + i + 1 for i in range(T) for _ in range(G)]
    sm = unit_schedule(rows)[-1][1] + 1
    return qk, sm, pv


def sptc_cycles(cfg: gs.SpTCConfig, shape: AttnShape, reqs,
                xpu_bytes_per_cycle: float | None = None) -> float:
    """SpTC-side cycles of ``reqs``: the array and the softmax pipelined (module
    docstring)."""
    jobs = [sptc_parts(cfg, shape, q, xpu_bytes_per_cycle)
            for q in reqs for _ in range(shape.kv_heads)]
    arr = sm_free = 0.0
    sm_end = []
    for j, (qk, sm, _) in enumerate(jobs):
        arr += qk                                   # QK_j
        sm_free = max(arr, sm_free) + sm
        sm_end.append(sm_free)
        if j >= 1:                                  # PV_{j-1}
            arr = max(arr, sm_end[j - 1]) + jobs[j - 1][2]
    if jobs:
        arr = max(arr, sm_end[-1]) + jobs[-1][2]
    return arr


# --------------------------------------------------------------------------- the step

@dataclass(frozen=True)
class StepTime:
    """One layer step under one dispatch: each unit's cycles and the step's."""
    dispatch: str
    pim: float
    sptc: float

    @property
    def cycles(self) -> float:
        return max(self.pim, self.sptc)


@dataclass(frozen=True)
class Machine:
    """The two units: a Logic-PIM build (its KV cache ``capacity`` positions per slot,
    None: the most the slice holds) and a SpTC build reading K/V at
    ``xpu_bytes_per_cycle`` (None: compute only)."""
    pim: gp.PIMConfig
    sptc: gs.SpTCConfig
    xpu_bytes_per_cycle: float | None = None
    capacity: int | None = None


def _split(m: Machine, shape: AttnShape, reqs, on_pim, dispatch: str) -> StepTime:
    to_pim = [q for q, p in zip(reqs, on_pim) if p]
    to_sptc = [q for q, p in zip(reqs, on_pim) if not p]
    return StepTime(dispatch, pim_cycles(m.pim, shape, to_pim, m.capacity),
                    sptc_cycles(m.sptc, shape, to_sptc, m.xpu_bytes_per_cycle))


def move_order(reqs) -> list[int]:
    """The order ``split`` moves requests to the Logic-PIM: fewest query tokens (lowest
    Op/B) first, so decode requests before any prompt; ties in trace order."""
    return sorted(range(len(reqs)), key=lambda i: (reqs[i].tokens, i))


def step_time(m: Machine, shape: AttnShape, reqs, dispatch: str = "duplex") -> StepTime:
    """One layer step under ``dispatch``: ``duplex`` (decode on the Logic-PIM, prefill
    on the SpTC), ``pim`` / ``sptc`` (all on one unit), or ``split``: Duplex's
    co-processing rule applied to requests, every request on the SpTC first, then
    moved to the Logic-PIM one at a time in :func:`move_order`, keeping the split
    with the shortest step (the first such); it includes the ``sptc`` and ``pim``
    dispatches and, as decode requests move first, the ``duplex`` one."""
    if dispatch not in DISPATCHES:
        raise FormatError(f"dispatch: {dispatch!r} not one of {', '.join(DISPATCHES)}")
    if dispatch != "split":
        return _split(m, shape, reqs, [dispatch == "pim" or (dispatch == "duplex"
                                                             and not q.prefill)
                                       for q in reqs], dispatch)
    on_pim = [False] * len(reqs)
    best = _split(m, shape, reqs, on_pim, "split")
    for i in move_order(reqs):
        on_pim[i] = True
        t = _split(m, shape, reqs, on_pim, "split")
        if t.cycles < best.cycles:
            best = t
    return best


def gains(m: Machine, shape: AttnShape, steps) -> dict:
    """Summed over ``steps`` (lists of :class:`Request`): each dispatch's cycles and
    the gain of co-processing over each unit alone."""
    tot = {d: 0.0 for d in DISPATCHES}
    per = []
    for reqs in steps:
        ts = {d: step_time(m, shape, reqs, d) for d in DISPATCHES}
        per.append(ts)
        for d in DISPATCHES:
            tot[d] += ts[d].cycles
    co, sp = tot["duplex"], tot["split"]
    return dict(cycles=tot, steps=per,
                gain_vs_sptc=tot["sptc"] / co if co else None,
                gain_vs_pim=tot["pim"] / co if co else None,
                split_vs_sptc=tot["sptc"] / sp if sp else None,
                split_vs_pim=tot["pim"] / sp if sp else None)
