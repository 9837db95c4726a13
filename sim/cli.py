"""``python -m sim run``: one MoE trace step through the RTL, with waveform and report.

Past 500 lines: the moe and sptc runners live here (pim and cim in sim/cli_units.py)
until one runner protocol per engine replaces them (open work).

What it does (``make sim`` calls it with the defaults, ``--engine moe``):

1. loads a routing trace (``--trace FILE``, or a preset generated on the fly with
   ``--preset``, or the shipped default trace: Mixtral-8x7B routing scaled 64x,
   hot-expert skew) and picks one step (``--step``; default: the busiest step
   that mixes prefill and decode and fits the engine);
2. runs it on the RTL (Verilator by default, FST waveform on) with every output
   checked bit-exactly against the golden model inside the cocotb bench:

   moe   the whole MoE layer (``hdl.moe``: SpTC + Logic-PIM behind a job
         dispatcher and a gate-weighted combine). The schedule compiler
         (``golden.schedule``: ``--capacity``, ``--dispatch``) turns the step into
         a program (a step larger than the top's token buffer runs as several);
         outputs are compared with ``golden.moe.moe_layer``, the executed schedule
         with the program, SpTC job cycles with ``golden.sptc`` (exactly when the
         Logic-PIM is idle, as a lower bound otherwise) and Logic-PIM job cycles
         with ``golden.pim`` (lower bound: the model assumes an idle DRAM);
   sptc  one job per routed expert on the Sparse Tensor Core: the expert's gate
         projection (FFN x hidden, pruned to ``--mode``) times the step's
         activations with SEL = its tokens; compared with ``golden.ssmm`` and
         the cycle model;
   pim   decode-only steps on the Logic-PIM unit (DRAM timing checker);
   cim   an expert projection in Monarch form on the CIM tile, three mappings;

3. writes ``build/sim/<run>/`` (or ``--run-dir``): the waveform (``<engine>.fst``;
   ``.vcd`` when Verilator lacks the lz4/zlib headers), a GTKWave save file
   (``<engine>.gtkw``, signals grouped), ``report.md``, ``report.json`` and PNG
   plots (moe, sptc: ``tokens_vs_cycles.png`` and ``timeline.png``).

Every option is checked before anything is built or written. Options of another
engine are refused. A run folder this tool made holds a ``.moe-rtl-run`` marker and
is emptied when reused; a non-empty folder without it (and a file, a missing parent,
the checkout, the home folder) is refused and left as it is. A step with no tokens is
refused; a run that compared no output value fails.

The first run of an engine compiles its RTL with Verilator (a minute or more on
2 cores); later runs reuse the build from ``build/sim_build/``.

Exit status: 0 when everything is bit-exact and the cycle checks pass, 1 on a
mismatch or simulation failure, 2 on bad options, a bad trace file or a run folder
that may not be used.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from golden.errors import FormatError
from golden.schedule import CAPACITY_POLICIES, DISPATCHES
from tb.common import STALL_KINDS

from . import runopts
from .cocotb_run import ROOT, SIMULATORS, SimulationError
from .rundir import prepare as prepare_run_dir

ENGINES = ("moe", "sptc", "pim", "cim")
MODES = ("dense", "2:4", "samoyeds")


class _Help(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The module docstring as is; defaults shown where an option has a fixed one."""

    def _get_help_string(self, action):
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sim", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run one MoE trace step through the RTL",
                       description=__doc__, formatter_class=_Help)
    r.add_argument("--engine", choices=ENGINES, default="moe",
                   help="which RTL to run: moe (the whole MoE layer: SpTC + Logic-PIM, "
                        "dispatcher, combine), sptc (Sparse Tensor Core alone), pim "
                        "(Logic-PIM, decode-only steps), cim (CIM tile, Monarch expert "
                        "projection)")
    r.add_argument("--preset", default=None,
                   help="generate a trace for this model preset (see `python -m sim.traces "
                        "gen --help`) instead of the shipped default trace, sized for the "
                        "engine's build: moe (hidden, expert count), sptc (K <= max_k, a "
                        "multiple of V), pim (the experts' weights fit the DRAM; decode-only "
                        "steps), cim (hidden a Monarch size n = b*b)")
    r.add_argument("--trace", type=Path, default=None, help="a trace .npz to load")
    r.add_argument("--step", type=int, default=None,
                   help="trace step to run (default: the busiest step that mixes prefill "
                        "and decode; for moe, the busiest that fits the top's token buffer; "
                        "for cim, the busiest; for pim, the first two decode-only steps). "
                        "A step without tokens is refused")
    r.add_argument("--mode", choices=MODES, default=None,
                   help="moe, sptc: SpTC weight mode (default: samoyeds for sptc, dense for "
                        "moe; the MoE top runs dense or 2:4)")
    r.add_argument("--nmv", default=None,
                   help="sptc: Samoyeds (N,M,V) for --mode samoyeds (default 1,2,32); (N,M) "
                        "must be one the build supports, V a multiple of 4 dividing K")
    r.add_argument("--out", default=None,
                   help="sptc: output mode int32, int8_sat or requant:MULT:SHIFT (default "
                        "int8_sat; the MoE layer always requantizes)")
    r.add_argument("--config", choices=("default", "small"), default=None,
                   help="moe, sptc: the build (default: default): for moe, default (hidden "
                        "<= 64, 32 tokens per program) or small (hidden <= 32, 16 tokens); "
                        "for sptc, default (8 x 8 PEs) or small (4 x 4)")
    r.add_argument("--capacity", choices=CAPACITY_POLICIES, default=None,
                   help="moe: expert capacity policy (default dynamic: DynaMoE's rule, "
                        "alpha grows to min(1.3 x observed, 4) after an overflowing step, "
                        "which drops its excess; static: C = ceil(alpha k / E T), drops and "
                        "pads; dropless: every routed token, no padding)")
    r.add_argument("--alpha", type=float, default=None,
                   help="moe: capacity factor of --capacity static (default 2)")
    r.add_argument("--dispatch", choices=DISPATCHES, default=None,
                   help="moe: which unit runs each expert (default duplex_coprocess: Duplex "
                        "expert co-processing splits the experts between SpTC and Logic-PIM "
                        "every step; duplex: decode-only steps on Logic-PIM; duplex_opb: "
                        "each expert to the unit its Op/B favours; sptc_only)")
    r.add_argument("--simulator", choices=SIMULATORS, default="verilator",
                   help="HDL simulator (Icarus Verilog is slower; both write FST, Verilator "
                        "VCD when the lz4/zlib headers are missing)")
    r.add_argument("--waves", action=argparse.BooleanOptionalAction, default=True,
                   help="write a waveform (FST, or VCD as above)")
    r.add_argument("--stalls", action=argparse.BooleanOptionalAction, default=False,
                   help="random valid/ready stalls on every stream (cycle counts then "
                        "exceed the no-stall models: moe checks them as lower bounds only, "
                        "sptc, pim and cim do not compare them)")
    r.add_argument("--stall-profile", choices=STALL_KINDS, default=None,
                   help="moe, sptc, with --stalls: uniform (a random rate per stream), "
                        "bursty (long stall runs), starve (valid/ready low for hundreds of "
                        "cycles) or mixed (a different kind per stream); default: the "
                        "classic random stalls")
    r.add_argument("--seed", type=int, default=1,
                   help="seed (>= 0) of the weights, activations, stalls and preset trace")
    r.add_argument("--max-experts", type=int, default=None,
                   help="sptc: run only the N (>= 1) busiest experts of the step")
    r.add_argument("--run-dir", type=Path, default=None,
                   help="output folder (default build/sim/<engine>-<preset>[-step<N>]): a "
                        "new or empty folder, or one an earlier run made (marked by a "
                        ".moe-rtl-run file), which is emptied first; anything else is "
                        "refused and left untouched")
    return p


def _parse_out(text: str):
    if text in ("int32", "int8_sat"):
        return text
    parts = text.split(":")
    if len(parts) == 3 and parts[0] == "requant":
        try:
            return ("requant", int(parts[1]), int(parts[2]))
        except ValueError:
            pass
    raise FormatError(f"out: {text!r} is not int32, int8_sat or requant:MULT:SHIFT")


def _load_trace(args, fits, why: str, **gen):
    """The trace (``--trace``, ``--preset`` sized by ``fits``, or the shipped default),
    refused with ``why`` when the engine's build does not hold it."""
    from . import traces
    if args.preset is not None:
        trace = runopts.preset_trace(args.preset, args.seed, fits, why, **gen)
    else:
        trace = traces.load(args.trace) if args.trace is not None else traces.load_default()
    if not fits(trace.hidden, trace.num_experts):
        raise FormatError(f"trace: hidden = {trace.hidden}, {trace.num_experts} experts: {why}")
    runopts.check_trace_tokens(trace)
    return trace


def _pick_step(trace, requested):
    """The requested step (it must have tokens), else the busiest step that mixes
    prefill and decode, else the busiest."""
    if requested is not None:
        if not 0 <= requested < trace.steps:
            raise FormatError(f"step: {requested} out of range 0..{trace.steps - 1}")
        runopts.check_step(trace, requested)
        return requested
    best, best_key = 0, None
    for i in range(trace.steps):
        st = trace.step(i)
        key = (bool(st.is_prefill.any() and (~st.is_prefill).any()), st.tokens)
        if st.tokens and (best_key is None or key > best_key):
            best, best_key = i, key
    runopts.check_step(trace, best)
    return best


def _moe_trace(args, mcfg):
    from . import moe, traces
    if args.trace is not None:
        return traces.load(args.trace)
    if args.preset is not None:
        return moe.preset_trace(args.preset, mcfg, args.seed)
    tr = traces.load_default()
    if tr.hidden > mcfg.max_hidden:   # --config small: the same model, sized for the top
        return moe.preset_trace(tr.preset, mcfg, args.seed)
    return tr


def run_moe(args) -> int:
    """One trace step through the MoE-layer top: bit-exact layer output, executed
    schedule, per-job cycles against the unit cycle models, per-unit utilization."""
    from dataclasses import asdict

    from hdl.moe import CONFIGS, MODULE_NAME

    from . import moe, report
    args.config = args.config or "default"
    if args.alpha is not None and args.capacity != "static":
        raise FormatError("alpha: --alpha applies to --capacity static")
    mode = args.mode or "dense"
    if mode not in moe.MOE_MODES:
        raise FormatError(f"mode: the MoE top's SpTC runs {' or '.join(moe.MOE_MODES)}, "
                          f"not {mode!r}")
    capacity = args.capacity or "dynamic"
    dispatch = args.dispatch or "duplex_coprocess"
    alpha = 2.0 if args.alpha is None else args.alpha
    mcfg = CONFIGS[args.config]
    trace = _moe_trace(args, mcfg)
    moe.check_trace(trace, mcfg)
    runopts.check_trace_tokens(trace)
    step_i = moe.pick_step(trace, mcfg, args.step)
    runopts.check_step(trace, step_i)
    step = trace.step(step_i)
    prep = moe.prepare(mcfg, trace, step_i, seed=args.seed, capacity=capacity,
                       dispatch=dispatch, mode=mode, alpha=alpha)
    progs, jobs = prep["programs"], prep["jobs"]
    run_dir = prepare_run_dir(args.run_dir or ROOT / "build" / "sim" /
                              f"moe-{trace.preset}-step{step_i}", default=args.run_dir is None)
    n_s = sum(j["unit"] == "sptc" for j in jobs)
    print(f"moe-rtl sim: MoE layer ({args.config} top: SpTC {mcfg.sptc.rows}x{mcfg.sptc.cols} "
          f"+ Logic-PIM), {trace.preset} (scale {trace.scale}) step {step_i}: {step.tokens} "
          f"tokens ({int(step.is_prefill.sum())} prefill), {trace.num_experts} experts top-"
          f"{trace.top_k}" + (f" + {trace.num_shared} shared" if trace.num_shared else "")
          + f", hidden {trace.hidden}")
    print(f"  schedule: {capacity} capacity, {dispatch}: {len(progs)} program(s), {len(jobs)} "
          f"expert jobs ({n_s} SpTC, {len(jobs) - n_s} Logic-PIM); {mode} weights; "
          f"{args.simulator}{' + waves' if args.waves else ''}"
          f"{' + random stalls' if args.stalls else ''}")
    print("building the RTL (the first build takes a minute or more on 2 cores; later runs "
          "reuse it) ...", flush=True)
    t0 = time.time()
    try:
        b = moe.build(mcfg, args.config, args.simulator, args.waves)
    except SimulationError as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    t_build = time.time() - t0
    stamp = b.build_dir / ".built"
    fresh = stamp.exists() and stamp.stat().st_mtime >= t0
    print(f"  {f'built in {t_build:.0f} s' if fresh else 'reused the cached build'}: "
          f"{b.build_dir}", flush=True)
    bar = _progress(len(jobs))
    t0 = time.time()
    verdict, failure, res = True, None, {}
    try:
        res = moe.run(mcfg, args.config, prep, run_dir / "sim", simulator=args.simulator,
                      seed=args.seed, stalls=args.stalls, waves=args.waves,
                      progress=bar.update_to, stall_profile=args.stall_profile)
    except SimulationError as exc:
        verdict, failure = False, str(exc)
    bar.close()
    t_sim = time.time() - t0
    if not res and (run_dir / "sim" / "result.npz").exists():   # a scoreboard failure
        with np.load(run_dir / "sim" / "result.npz", allow_pickle=False) as f:
            res = {k: f[k] for k in f.files}
        wave = _find_wave(run_dir / "sim")
        res["wave"] = wave
    if verdict and not (res and int(res["checked"])):
        verdict, failure = False, "nothing was checked: the run compared no output element"
    if res:
        an = moe.analyse(prep, res, args.stalls)
        busy = {"sptc": res["busy_sptc"], "pim": res["busy_pim"]}
        for i, p in enumerate(progs):
            if i < len(res["start"]):
                p.update(start=int(res["start"][i]), end=int(res["end"][i]),
                         first_y=int(res["first_y"][i]), last_y=int(res["last_y"][i]),
                         cycles=int(res["end"][i] - res["start"][i]))
    else:
        an = dict(jobs=jobs, units={}, span=0, problems=["no simulation result"],
                  cycles_ok=False, compared_equal=0, bounded=0)
        busy = {"sptc": np.zeros(0), "pim": np.zeros(0)}
    params = prep["params"]
    sched = dict(dropped=sum(p["dropped"] for p in progs),
                 padded=sum(p["padded"] for p in progs), recompiles=prep["recompiles"])
    cy = dict(span=an["span"],
              drain=sum(p.get("last_y", 0) - p.get("first_y", 0) + 1 for p in progs
                        if "first_y" in p),
              model_sptc=sum(p["model_sptc"] for p in progs),
              model_pim=sum(p["model_pim"] for p in progs),
              model_makespan=sum(max(p["model_sptc"], p["model_pim"]) for p in progs),
              preamble=int(res["pre_cycles"]) if res else None)
    note = (f"Job cycles = from the job's trace beat to its job-counter update. A SpTC job "
            f"that runs while the Logic-PIM is idle must take exactly `golden.sptc` + "
            f"{moe.SPTC_JOB_OVERHEAD} (announce, START, counter register): "
            f"{an['compared_equal']} such job(s) here. Every job must take at least its "
            f"unit's model + the top's overhead (Logic-PIM: `golden.pim` + slots + 2 for the "
            f"announce, the slot list and the counter); more is expected when the two units "
            f"share the combine path, and for the Logic-PIM when a DRAM refresh (every tREFI "
            f"= {mcfg.pim.timing.tREFI} cycles, tRFC = {mcfg.pim.timing.tRFC}) falls in the "
            f"job: its model assumes an idle DRAM and no refresh.")
    if args.stalls:
        note = ("Random stalls: every job is checked against its unit's model as a lower "
                "bound only. " + note)
    cyc_ok = verdict and an["cycles_ok"]
    rep = {
        "config": dict(engine="moe", build=args.config, simulator=args.simulator,
                       seed=args.seed, stalls=args.stalls, capacity=capacity,
                       alpha=alpha if capacity == "static" else None, dispatch=dispatch,
                       mode=mode, hidden=params.hidden, experts=params.num_experts,
                       shared=params.num_shared, expert_rq=list(params.expert_rq),
                       combine_rq=list(params.combine_rq), shared_gate=int(params.shared_gate),
                       max_tokens=mcfg.max_tokens, max_hidden=mcfg.max_hidden,
                       sptc=gs_config_dict(mcfg.sptc),
                       pim=dict(bundle_bits=mcfg.pim.bundle_bits, words=mcfg.pim.words,
                                max_tokens=mcfg.pim.max_tokens,
                                timing=asdict(mcfg.pim.timing)),
                       build_seconds=round(t_build, 2), sim_seconds=round(t_sim, 2)),
        "trace": dict(_trace_info(trace, step_i), experts=trace.num_experts,
                      shared=trace.num_shared, top_k=trace.top_k,
                      prefill_tokens=int(step.is_prefill.sum()),
                      decode_tokens=int((~step.is_prefill).sum())),
        "schedule": sched,
        "programs": progs,
        "jobs": an["jobs"],
        "units": an["units"],
        "cycles": cy,
        "bit_exact": verdict,
        "checked_elements": int(res["checked"]) if res else 0,
        "cycles_match_model": cyc_ok,
        "cycle_checks": dict(equal=an["compared_equal"], checked=an["bounded"],
                             exact=sum(j.get("check") in ("equal", "= model")
                                       for j in an["jobs"]),
                             sptc_overhead=moe.SPTC_JOB_OVERHEAD,
                             pim_overhead="slots + 2"),
        "cycle_check_note": note,
        "cycle_problems": an["problems"],
        "failure": failure,
    }
    start_ps = float(res["origin_ps"]) if res else 0.0
    files = report.write_moe(run_dir, rep, res.get("wave") if res else None, busy, MODULE_NAME,
                             start_ps)
    _summary_moe(rep, files)
    return 0 if verdict and cyc_ok else 1


def _failure_reason(text: str) -> str | None:
    """The exception line of a cocotb failure (scoreboard mismatch, timeout, ...)."""
    import re
    hits = [ln.strip() for ln in text.splitlines()
            if re.match(r"\s*[\w.]*(Error|Timeout|Exception)\b:", ln)]
    return hits[-1][:300] if hits else None


def _summary_moe(rep, files):
    jobs = [j for j in rep["jobs"] if "cycles" in j]
    u, cy = rep["units"], rep["cycles"]
    print()
    print(f"  jobs          {len(jobs)} of {len(rep['jobs'])} "
          f"({sum(j['unit'] == 'sptc' for j in jobs)} SpTC, "
          f"{sum(j['unit'] == 'pim' for j in jobs)} Logic-PIM) in {len(rep['programs'])} "
          f"program(s)")
    if cy["span"]:
        print(f"  step cycles   {cy['span']}  (incl. {cy['drain']} output drain; unit models: "
              f"SpTC {cy['model_sptc']}, Logic-PIM {cy['model_pim']})")
    for k, name in (("sptc", "SpTC"), ("pim", "Logic-PIM")):
        v = u.get(k)
        if v and v["jobs"]:
            print(f"  {name:<13} busy {v['busy_cycles']} ({v['utilization']:.0%} of the step), "
                  f"ideal {v['ideal_cycles']:.0f}, efficiency {v['efficiency']:.1%}")
    s = rep["schedule"]
    print(f"  capacity      {s['dropped']} dropped, {s['padded']} padding slots")
    cc = rep["cycle_checks"]
    print(f"  cycle checks  {'pass' if rep['cycles_match_model'] else 'FAIL'}: "
          f"{cc['checked']} jobs >= unit model + top overhead, {cc['exact']} exactly on it; "
          f"SpTC jobs with the Logic-PIM idle (must be exact): {cc['equal']}")
    for p in rep["cycle_problems"][:5]:
        print("    " + p)
    print(f"  bit-exact     " + (f"yes: all {rep['checked_elements']} output elements equal "
                                 "golden.moe.moe_layer" if rep["bit_exact"] else "NO"))
    if rep["failure"]:
        print("  failure       " + rep["failure"].splitlines()[0])
        why = _failure_reason(rep["failure"])
        if why:
            print("                " + why)
    c = rep["config"]
    print(f"  wall time     build {c['build_seconds']} s, simulation {c['sim_seconds']} s")
    print("  files:")
    for name, path in files.items():
        print(f"    {name:<12} {path}")
    if "gtkwave" in files and "waveform" in files:
        print(f"  open the waveform: gtkwave {files['waveform']} {files['gtkwave']}")
        if "surfer" in files:
            print(f"                 or: surfer {files['waveform']} "
                  f"--command-file {files['surfer']}")


def run_sptc(args) -> int:
    import golden
    from golden import sptc as gs
    from hdl.sptc import CONFIGS

    from . import report
    from .sptc import JobSpec, run_batch

    args.config = args.config or "default"
    args.mode = args.mode or "samoyeds"
    if args.nmv is not None and args.mode != "samoyeds":
        raise FormatError(f"nmv: --nmv applies to --mode samoyeds, not {args.mode}")
    out = _parse_out(args.out or "int8_sat")
    golden.parse_out(out)
    cfg = CONFIGS[args.config]
    nmv = runopts.parse_nmv(args.nmv or "1,2,32", cfg)
    why = (f"the SpTC build takes K = hidden <= max_k = {cfg.max_k}, a multiple of 4"
           + (f" and of V = {nmv[2]}" if args.mode == "samoyeds" else "")
           + "; generate the trace with another --scale")
    trace = _load_trace(args, runopts.sptc_fits(cfg, args.mode, nmv[2]), why)
    step_i = _pick_step(trace, args.step)
    step = trace.step(step_i)
    rng = np.random.default_rng(args.seed)
    x_all = rng.integers(-128, 128, size=(trace.hidden, step.tokens), dtype=np.int8)
    counts = step.tokens_per_expert()
    experts = [int(e) for e in np.argsort(-counts, kind="stable") if counts[e] > 0]
    if args.max_experts:
        experts = experts[: args.max_experts]
    # Expert weights: the gate projection (ffn x hidden), pruned to the mode's format.
    ffn = trace.ffn
    if args.mode == "samoyeds":
        ffn = nmv[1] * -(-ffn // nmv[1])
    specs, meta = [], []
    chunks = range(0, step.tokens, cfg.max_tokens)
    for e in experts:
        w = rng.integers(-128, 128, size=(ffn, trace.hidden), dtype=np.int8)
        if args.mode == "2:4":
            w = golden.Sparse24.from_dense(golden.prune_2to4(w))
        elif args.mode == "samoyeds":
            w = golden.SamoyedsWeight.from_dense(golden.prune_samoyeds(w, *nmv), *nmv)
        sel = step.sel(e)
        for c0 in chunks:
            x = x_all[:, c0:c0 + cfg.max_tokens]
            local = sel[(sel >= c0) & (sel < c0 + x.shape[1])] - c0
            specs.append(JobSpec(f"expert {e} tokens {c0}+", w, x, local, out))
            meta.append(dict(expert=e, chunk=c0, tokens=int(len(local)),
                             ideal_cycles=gs.ideal_cycles(cfg, args.mode, ffn, trace.hidden,
                                                          len(local), nmv)))
    for s in specs:       # the build's limits, before anything is built or written
        gs.plan(cfg, s.weight, s.x.shape, s.sel, s.out)
    if not any(m["tokens"] for m in meta):
        raise FormatError(f"step: step {step_i} routes no token to any expert")
    run_dir = prepare_run_dir(args.run_dir or ROOT / "build" / "sim" /
                              f"sptc-{trace.preset}-step{step_i}", default=args.run_dir is None)
    print(f"moe-rtl sim: {trace.preset} (scale {trace.scale}) step {step_i}: {step.tokens} tokens, "
          f"{len(experts)} experts, {len(specs)} SpTC jobs, mode {args.mode}, "
          f"{args.simulator}{' + waves' if args.waves else ''}")
    print("building the RTL (first run only; later runs reuse the build) ...", flush=True)
    from .sptc import build_design
    t0 = time.time()
    build_design(cfg, args.simulator, args.waves)
    t_build = time.time() - t0
    bar = _progress(len(specs))
    t0 = time.time()
    verdict, failure = True, None
    try:
        res = run_batch(cfg, specs, simulator=args.simulator, seed=args.seed, stalls=args.stalls,
                        waves=args.waves, workdir=run_dir / "sim", progress=bar.update_to,
                        stall_profile=args.stall_profile)
    except SimulationError as exc:
        verdict, failure, res = False, str(exc), {}
    bar.close()
    t_sim = time.time() - t0
    checked = sum(m["tokens"] for i, m in enumerate(meta) if f"j{i}_cycles" in res) * ffn
    if verdict and not checked:
        verdict, failure = False, "nothing was checked: the run compared no output element"
    for i, m in enumerate(meta):
        if f"j{i}_cycles" in res:
            m.update(cycles=int(res[f"j{i}_cycles"]), start=int(res[f"j{i}_start"]),
                     end=int(res[f"j{i}_end"]))
            m["efficiency"] = m["ideal_cycles"] / m["cycles"] if m["cycles"] else 0.0
    info = dict(engine="sptc", build=args.config, mode=args.mode, nmv=list(nmv) if args.mode == "samoyeds" else None,
                out=list(out) if isinstance(out, tuple) else out, simulator=args.simulator,
                seed=args.seed, stalls=args.stalls, config=gs_config_dict(cfg),
                checked_elements=checked,
                build_seconds=round(t_build, 2), sim_seconds=round(t_sim, 2))
    files = report.write(run_dir, info, trace, step_i, meta, verdict, failure,
                         res.get("wave") if res else None, cfg)
    _summary(info, meta, verdict, failure, files)
    return 0 if verdict else 1


def gs_config_dict(cfg):
    from dataclasses import asdict
    return {k: (list(map(list, v)) if k == "samoyeds_nm" else v) for k, v in asdict(cfg).items()}


class _progress:
    """A tqdm bar when tqdm is installed, a quiet counter otherwise."""

    def __init__(self, total):
        try:
            from tqdm import tqdm
            self.bar = tqdm(total=total, unit="job", desc="simulating", file=sys.stdout)
        except ImportError:
            self.bar = None
        self.n = 0

    def update_to(self, n):
        if self.bar is not None:
            self.bar.update(n - self.n)
        self.n = n

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _summary(info, meta, verdict, failure, files):
    done = [m for m in meta if "cycles" in m]
    cyc = sum(m["cycles"] for m in done)
    ideal = sum(m["ideal_cycles"] for m in done)
    print()
    print(f"  jobs          {len(done)} of {len(meta)}")
    if done:
        print(f"  SpTC cycles   {cyc}  (ideal {ideal:.0f}, efficiency {ideal / cyc:.1%})")
    print(f"  bit-exact     " + (f"yes: all {info['checked_elements']} output elements equal "
                                 "golden.ssmm" if verdict else "NO"))
    if failure:
        print("  failure       " + failure.splitlines()[0])
    print(f"  wall time     build {info['build_seconds']} s, simulation {info['sim_seconds']} s")
    print("  files:")
    for name, path in files.items():
        print(f"    {name:<10} {path}")


def _trace_info(trace, step_i=None) -> dict:
    info = {"preset": trace.preset, "scale": trace.scale, "seed": trace.seed,
            "skew": trace.skew, "steps": trace.steps, "hidden": trace.hidden, "ffn": trace.ffn}
    if step_i is not None:
        st = trace.step(step_i)
        info.update(step=step_i, tokens=int(st.tokens),
                    tokens_per_expert=[int(c) for c in st.tokens_per_expert()],
                    imbalance=round(float(st.imbalance()), 3))
    return info


def _find_wave(folder: Path):
    waves = sorted(folder.glob("*.fst")) + sorted(folder.glob("*.vcd"))
    return waves[0] if waves else None


def run_pim(args) -> int:
    from .cli_units import run_pim as run
    return run(args)


def run_cim(args) -> int:
    from .cli_units import run_cim as run
    return run(args)


def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.cmd == "run":
            runopts.check_common(args)
            runner = {"moe": run_moe, "sptc": run_sptc, "pim": run_pim,
                      "cim": run_cim}[args.engine]
            return runner(args)
    except FormatError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 2
