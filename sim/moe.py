"""``python -m sim run --engine moe``: one trace step through the MoE-layer top (hdl.moe).

Host side of the run (:func:`prepare`, :func:`run`, :func:`analyse`):

* the trace step is split into *micro-batches* of at most the top's
  ``max_tokens`` tokens (one program each: LOAD, the EXPERT jobs, END; a step
  that fits runs as one program); the schedule compiler
  (``golden.schedule.Scheduler``: capacity policy, Duplex dispatch /
  co-processing) binds each micro-batch, and ``tb.moe.encode_layer`` encodes the
  layer preamble (every expert's weights into the Logic-PIM) and every program's
  streams together with the golden output (``golden.moe.moe_layer``);
* one cocotb simulation of the top's bench (:mod:`tb.moe_bench`, the one the
  regression runs, here recording) runs the preamble and the programs, checks
  every output element and the executed schedule, and records per cycle which
  unit is busy (from the top's ``sptc_busy`` / ``pim_busy`` counters: a counter
  that advanced between two cycles means that unit was busy) and per job its
  start (the ``trace`` stream beat the unit's controller sends as it starts the
  job) and its end (the cycle the top's ``sptc_jobs`` / ``pim_jobs`` counter
  advances); everything is read from the top's ports, so the records are exact
  and do not depend on internal signal names.

Cycle checks (see :func:`analyse`): a SpTC job whose span contains no Logic-PIM
activity cannot be slowed by the shared combine path, so its span must equal
``golden.sptc.predict_cycles`` plus the top's fixed controller overhead
(:data:`SPTC_JOB_OVERHEAD`). Every job must take at least its unit's model plus
the top's overhead (Logic-PIM: ``golden.pim.predict_cycles``, which assumes an
idle DRAM and no refresh, + :func:`pim_job_overhead`): sharing the combine path
with the other unit, a DRAM refresh or stream stalls can only add cycles.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from golden.errors import FormatError

MOE_MODES = ("dense", "2:4", "samoyeds")

#: Cycles the top adds to a SpTC job beyond the SpTC's own times of its four parts
#: (``TimeModel.sptc_phases``: gate, up, the LOAD of h, down), counted from the cycle
#: its trace beat is taken to the cycle the ``sptc_jobs`` counter shows the job done:
#: the announce cycle (GATE starts with it), one cycle per phase change (each next
#: phase starts in the cycle the SpTC shows the previous one done), the two cycles the
#: first h word takes from the glue to the SpTC's LOAD (``hdl.moe.glue``: a read
#: delivers its first word 3 cycles after it starts, the LOAD wants it after 2), and
#: the counter register (hdl/moe/top.py ``sctl`` FSM).
SPTC_JOB_OVERHEAD = 6


def pim_job_overhead(slots: int) -> int:
    """Cycles the top adds at least to a Logic-PIM job beyond the unit's own time
    (``golden.pim.predict_cycles`` of its instruction stream, which counts from the
    first instruction accepted): the announce cycle, one cycle per token entry
    copied into the job's slot list (LIST state), and the counter register. (The h
    hand-over from the glue to the down LOAD_TOKENS adds a few more cycles; the check
    is a lower bound.)"""
    return 1 + slots + 1


# --------------------------------------------------------------------------- traces

def _fit_experts(preset, mcfg, hidden: int):
    """(expert_scale, routed experts): the smallest expert_scale whose experts (routed +
    shared, gated FFNs of the preset's ffn scaled like hidden) fit the top's Logic-PIM
    DRAM and descriptor field at ``hidden``, or None."""
    from golden import trace as traces
    from golden.program import expert_words
    p = traces.PRESETS[preset]
    ffn = p.dims(max(1, p.hidden // hidden))[1]
    if ffn > mcfg.max_ffn:
        return None
    per = expert_words(mcfg, hidden, ffn)
    cap = min(mcfg.pim.words // per, (1 << mcfg.expert_bits) - 1)
    for es in range(1, p.num_experts + 1):
        e = max(p.top_k, p.num_experts // es)
        if e + p.num_shared <= cap:
            return es, e
        if e == p.top_k:
            break
    return None


def preset_trace(preset: str, mcfg, seed: int, steps: int = 8):
    """A trace of ``preset`` sized for the top: the largest hidden (<= max_hidden, at
    least 16; ffn scaled alike, <= max_ffn) at which at least min(E, 3 top_k) routed
    experts (plus the shared ones) fit the Logic-PIM's DRAM, the routed count divided
    as little as possible;
    hot-expert skew, continuous batching with a few short prompts."""
    from golden import trace as traces
    if preset not in traces.PRESETS:
        raise FormatError(f"preset: unknown preset {preset!r} "
                          f"(known: {', '.join(sorted(traces.PRESETS))})")
    p = traces.PRESETS[preset]
    want = min(p.num_experts, 3 * p.top_k)
    h, pick = mcfg.max_hidden, None
    while h >= 16:
        fit = _fit_experts(preset, mcfg, h)
        if fit is not None and (fit[1] >= want or pick is None):
            pick = (h, fit[0])
            if fit[1] >= want:
                break
        h //= 2
    if pick is None:
        raise FormatError(f"preset: {preset} does not fit the MoE top's Logic-PIM at any "
                          f"hidden size >= 16")
    h, es = pick
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return traces.generate(preset, steps=steps, seed=seed, scale=max(1, p.hidden // h),
                               expert_scale=es, skew="hot", decode=4, prefill=0.7,
                               prompt_len=(4, 12), gen_len=(2, 8))


def check_trace(trace, mcfg) -> None:
    """The trace's shapes against the top (clear errors instead of failed simulations)."""
    if trace.hidden > mcfg.max_hidden:
        raise FormatError(f"trace: hidden = {trace.hidden} exceeds the MoE top's max_hidden = "
                          f"{mcfg.max_hidden}; generate the trace with a larger --scale "
                          f"(or use --preset, which sizes it for the top)")
    if trace.hidden % 4:
        raise FormatError(f"trace: hidden = {trace.hidden} is not a multiple of 4")
    if trace.ffn > mcfg.max_ffn:
        raise FormatError(f"trace: ffn = {trace.ffn} exceeds the MoE top's max_ffn = "
                          f"{mcfg.max_ffn}; generate the trace with a larger --scale")
    n = trace.num_experts + trace.num_shared
    if n >= 1 << mcfg.expert_bits:
        raise FormatError(f"trace: {n} experts (routed + shared) exceed the top's "
                          f"{mcfg.expert_bits}-bit expert field")
    from golden.program import expert_words
    need = n * expert_words(mcfg, trace.hidden, trace.ffn)
    if need > mcfg.pim.words:
        raise FormatError(f"trace: {n} experts of hidden {trace.hidden}, ffn {trace.ffn} need "
                          f"{need} Logic-PIM words, the top's unit holds {mcfg.pim.words}; use "
                          f"a trace with fewer experts (--expert-scale) or a smaller size")


def pick_step(trace, mcfg, requested):
    """The requested step, or the busiest step that mixes prefill and decode and
    fits the top's token buffer in one program (else the busiest that fits)."""
    if requested is not None:
        if not 0 <= requested < trace.steps:
            raise FormatError(f"step: {requested} out of range 0..{trace.steps - 1}")
        return requested
    best = None
    for i in range(trace.steps):
        st = trace.step(i)
        if not 1 <= st.tokens <= mcfg.max_tokens:
            continue
        mixed = bool(st.is_prefill.any() and (~st.is_prefill).any())
        key = (mixed, st.tokens)
        if best is None or key > best[0]:
            best = (key, i)
    if best is None:
        return max(range(trace.steps), key=lambda i: trace.step(i).tokens)
    return best[1]


def micro_batches(step, max_tokens: int) -> list:
    """The step's tokens in consecutive chunks of at most ``max_tokens`` tokens."""
    from golden.trace import TraceStep
    out = []
    for a in range(0, step.tokens, max_tokens):
        s = slice(a, a + max_tokens)
        out.append(TraceStep(step.index, step.num_experts, step.expert_ids[s], step.gate[s],
                             step.gate_q[s], step.is_prefill[s], step.request_id[s]))
    return out


@dataclass
class _Batches:
    """What ``tb.moe.encode_layer`` iterates: the micro-batches as a layer's steps."""
    num_experts: int
    num_shared: int
    top_k: int
    steps: list = field(default_factory=list)

    def __iter__(self):
        return iter(self.steps)


# --------------------------------------------------------------------------- host side

def prepare(mcfg, trace, step_i: int, *, seed: int, capacity: str, dispatch: str, mode: str,
            alpha: float) -> dict:
    """Encode the step for the top; per job: unit, expert, slots, routed tokens, model
    cycles (unit cycle models), ideal cycles."""
    from golden import moe as gm, schedule as S, sptc as gs
    from tb import moe as tbm

    if mode not in MOE_MODES:
        raise FormatError(f"mode: the MoE top's SpTC runs {' or '.join(MOE_MODES)}, not {mode!r}")
    check_trace(trace, mcfg)
    step = trace.step(step_i)
    if step.tokens == 0:
        raise FormatError(f"step: step {step_i} has no tokens")
    mbs = micro_batches(step, mcfg.max_tokens)
    rng = np.random.default_rng(seed)
    params = gm.random_params(rng, trace.hidden, trace.ffn, trace.num_experts, trace.num_shared,
                              mode=mode)
    policy = S.Policy(capacity, alpha=alpha)
    layer = tbm.encode_layer(mcfg, _Batches(trace.num_experts, trace.num_shared, trace.top_k,
                                            mbs), params, policy, dispatch, rng,
                             f"{trace.preset}/{capacity}/{dispatch}/{mode}")
    # The same compiler run again for the per-job detail (routed tokens per job).
    model = S.TimeModel.for_config(mcfg, params.hidden, params.ffn, mode, params.nmv)
    sch = S.Scheduler(num_experts=trace.num_experts, num_shared=trace.num_shared,
                      top_k=trace.top_k, policy=policy, dispatch=dispatch, model=model)
    jobs, programs = [], []
    h, f, E = params.hidden, params.ffn, trace.num_experts
    gemms = ((f, h), (f, h), (h, f))
    for mi, (mb, enc) in enumerate(zip(mbs, layer["steps"])):
        r = sch.step(mb)
        got = [(S.UNIT_CODES[j.unit], j.expert, j.slots) for j in r.bound.jobs]
        if got != [tuple(t) for t in enc["trace"].tolist()]:
            raise RuntimeError("the schedule compiler gave two different programs for one step")
        for j in r.bound.jobs:
            sptc = j.unit == S.SPTC
            model_c = model.sptc(j.slots) if sptc else model.pim(j.slots)
            phases = model.sptc_phases(j.slots) if sptc else pim_phases(mcfg, model, j.slots)
            if sptc:
                ideal = sum(gs.ideal_cycles(mcfg.sptc, mode, mm, k, j.real, params.nmv)
                            for mm, k in gemms)
            else:   # weight-streaming bound: every weight byte once at the bundle rate
                ideal = sum(mm * k for mm, k in gemms) / mcfg.pim.peak_bytes_per_cycle \
                    if j.real else 0.0
            jobs.append(dict(batch=mi, unit=j.unit, expert=int(j.expert),
                             shared=bool(j.expert >= E), slots=int(j.slots), tokens=int(j.real),
                             model_cycles=int(model_c), model_phases=[int(c) for c in phases],
                             ideal_cycles=round(float(ideal), 1)))
        programs.append(dict(batch=mi, tokens=int(mb.tokens), jobs=len(r.bound.jobs),
                             decode_only=bool(r.bound.decode_only), dropped=int(enc["dropped"]),
                             padded=int(enc["padded"]), recompiled=bool(enc["recompiled"]),
                             model_sptc=int(enc["model_sptc"]), model_pim=int(enc["model_pim"]),
                             model_load=int(model.load(mb.tokens)),
                             model_drain=int(mcfg.drain_cycles(mb.tokens, h))))
    return dict(layer=layer, params=params, jobs=jobs, programs=programs, hidden=h, ffn=f,
                policy=policy, recompiles=int(layer["recompiles"]))


def pim_phases(mcfg, model, slots: int) -> list[int]:
    """Logic-PIM cycles of each GEMM of one job (gate, up, down with its SET_OUT and
    LOAD_TOKENS): differences of ``golden.pim.predict_cycles`` over the program's prefixes."""
    from golden import pim as gp
    words = model.pim_program(slots)
    ends = [i + 1 for i, w in enumerate(words) if gp.decode(w)["name"] == "GEMM"]
    cum = [gp.predict_cycles(mcfg.pim, words[:e]) for e in ends]
    return [b - a for a, b in zip([0] + cum[:-1], cum)]


def bench_layer(prep: dict) -> dict:
    """The prepared layer with the bench's cycle budgets: the preamble's, and per
    micro-batch 50 times its unit models plus the output drain and a margin."""
    L = dict(prep["layer"], pre_budget=400_000)
    L["steps"] = [dict(st, budget=50 * (p["model_sptc"] + p["model_pim"]) + 4 * st["y"].size
                       + 20_000) for st, p in zip(L["steps"], prep["programs"])]
    return L


def build(mcfg, config_name: str, simulator: str = "verilator", waves: bool = False):
    """The top's build (cached by ``tb.cocotb_run``: same Verilog, same directory)."""
    from tb.moe import build_top
    return build_top(mcfg, simulator, f"moe_{config_name}", waves)


def run(mcfg, config_name: str, prep: dict, workdir: Path, *, simulator: str = "verilator",
        seed: int = 1, stalls: bool = False, waves: bool = True, progress=None,
        stall_profile: str | None = None) -> dict:
    """Simulate the prepared step; returns the bench's records (raises SimulationError).

    ``stall_profile`` (with ``stalls``): None for the classic random stalls, or a kind of
    ``tb.common.STALL_KINDS`` (a profile of its own per stream)."""
    from tb import moe as tbm
    from tb.common import check_stall_profile
    check_stall_profile(stall_profile)
    workdir = Path(workdir).resolve()
    b = build(mcfg, config_name, simulator, waves)
    t_start = time.time()
    res = tbm.run(mcfg, [bench_layer(prep)], workdir, simulator, seed=seed, stalls=stalls,
                  stall_profile=stall_profile, bad=False, record=True, build=b,
                  progress=progress)
    wave = res["wave"]
    if waves and (wave is None or not Path(wave).exists()):
        # cocotb's Icarus dump module writes <toplevel>.fst into the build directory
        alt = Path(b.build_dir) / f"{b.toplevel}.fst"
        if alt.exists() and alt.stat().st_mtime >= t_start:
            wave = workdir / alt.name
            alt.replace(wave)
    res["wave"] = wave
    if progress is not None:
        progress(len(prep["jobs"]))
    return res


def busy_runs(bits: np.ndarray) -> list[tuple[int, int]]:
    """(start, length) of each run of 1s."""
    b = np.concatenate([[0], np.asarray(bits, np.int8), [0]])
    d = np.diff(b)
    starts, ends = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
    return [(int(s), int(e - s)) for s, e in zip(starts, ends)]


def analyse(prep: dict, res: dict, stalls: bool) -> dict:
    """Per-job spans from the bench's records, the cycle checks, per-unit totals."""
    jobs = [dict(j) for j in prep["jobs"]]
    ann, done = res["ann"], res["done"]          # (cycle, unit, expert, slots), (cycle, unit)
    busy = {"sptc": res["busy_sptc"].astype(bool), "pim": res["busy_pim"].astype(bool)}
    problems = []
    for u, code in (("sptc", 0), ("pim", 1)):
        mine = [j for j in jobs if j["unit"] == u]
        a = ann[ann[:, 1] == code]
        d = done[done[:, 1] == code]
        if len(a) != len(mine) or len(d) != len(mine):
            problems.append(f"{u}: {len(mine)} jobs in the program, {len(a)} started and "
                            f"{len(d)} completed in the RTL")
            continue
        for j, (c0, _, e, s), (c1, _) in zip(mine, a.tolist(), d.tolist()):
            if (e, s) != (j["expert"], j["slots"]):
                problems.append(f"{u}: started expert {e} ({s} slots), program says expert "
                                f"{j['expert']} ({j['slots']} slots)")
            j.update(start=int(c0), end=int(c1), cycles=int(c1 - c0))
    other = {"sptc": busy["pim"], "pim": busy["sptc"]}
    phase = {u: res.get(f"phase_{u}") for u in ("sptc", "pim")}
    for j in jobs:
        if "cycles" not in j:
            continue
        ph = phase[j["unit"]]
        if ph is not None and len(ph):
            # cycles the unit spent in each expert phase (gate, up, h load, down) in the job
            win = np.asarray(ph[j["start"]:j["end"]])
            j["phases"] = [int((win == k).sum()) for k in range(1, 5)]
        j["efficiency"] = round(j["ideal_cycles"] / j["cycles"], 4) if j["cycles"] else 0.0
        alone = not other[j["unit"]][j["start"]:j["end"]].any()
        j["other_unit_idle"] = bool(alone)
        sptc = j["unit"] == "sptc"
        want = j["model_cycles"] + (SPTC_JOB_OVERHEAD if sptc else pim_job_overhead(j["slots"]))
        j["model_span"] = want
        name = f"{'SpTC' if sptc else 'Logic-PIM'} job expert {j['expert']} ({j['slots']} slots)"
        if j["cycles"] < want:
            j["check"] = "BELOW MODEL"
            problems.append(f"{name}: {j['cycles']} cycles, below the model's {want}")
        elif sptc and alone and not stalls:
            j["check"] = "equal" if j["cycles"] == want else "DIFFERS"
            if j["cycles"] != want:
                problems.append(f"{name}: {j['cycles']} cycles with the Logic-PIM idle, model "
                                f"{j['model_cycles']} + {SPTC_JOB_OVERHEAD} = {want}")
        else:
            j["check"] = "= model" if j["cycles"] == want else f"model +{j['cycles'] - want}"
    # the output drain: one y beat per cycle when y never stalls (MoEConfig.drain_cycles)
    drains = []
    for i, p in enumerate(prep["programs"]):
        if i >= len(res["first_y"]):
            break
        got = int(res["last_y"][i] - res["first_y"][i] + 1)
        drains.append(got)
        if not stalls and got != p["model_drain"]:
            problems.append(f"program {i}: output drain {got} cycles, model "
                            f"{p['model_drain']}")
    span = int(res["end"][-1]) if len(res["end"]) else 0
    units = {}
    for u in ("sptc", "pim"):
        mine = [j for j in jobs if j["unit"] == u and "cycles" in j]
        b = int(busy[u].sum())
        ideal = sum(j["ideal_cycles"] for j in mine)
        units[u] = dict(jobs=len(mine), busy_cycles=b, job_cycles=sum(j["cycles"] for j in mine),
                        model_cycles=sum(j["model_cycles"] for j in mine),
                        ideal_cycles=round(ideal, 1),
                        efficiency=round(ideal / b, 4) if b else None,
                        utilization=round(b / span, 4) if span else None,
                        busy_intervals=len(busy_runs(busy[u])),
                        slots=sum(j["slots"] for j in mine),
                        tokens=sum(j["tokens"] for j in mine))
    return dict(jobs=jobs, units=units, span=span, problems=problems, cycles_ok=not problems,
                compared_equal=sum(j.get("check") == "equal" for j in jobs),
                drains=drains,
                bounded=sum("check" in j for j in jobs))
