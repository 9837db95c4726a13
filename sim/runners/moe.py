"""The MoE-layer top's runner (``hdl.moe``: SpTC + Logic-PIM behind a job dispatcher
and a gate-weighted combine; host side and bench ``sim.moe``).

``python -m sim run --engine moe`` (the default): the schedule compiler
(``golden.schedule``: ``--capacity``, ``--dispatch``) turns a trace step into a
program (a step larger than the top's token buffer runs as several); outputs are
compared with ``golden.moe.moe_layer``, the executed schedule with the program, SpTC
job cycles with ``golden.sptc`` (exactly when the Logic-PIM is idle, as a lower bound
otherwise) and Logic-PIM job cycles with ``golden.pim`` (lower bound: the model
assumes an idle DRAM). Jobs are a prepared step (``sim.moe.prepare``). The report
section is :mod:`sim.runners.moe_report`.
"""
from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from golden.errors import FormatError

from .. import runopts
from .base import (Plan, Progress, Runner, RunResult, config_dict, failure_reason, find_wave,
                   print_files, trace_info)


def _trace(args, mcfg):
    from golden import trace as traces

    from .. import moe
    if args.trace is not None:
        return traces.load(args.trace)
    if args.preset is not None:
        return moe.preset_trace(args.preset, mcfg, args.seed)
    tr = traces.load_default()
    if tr.hidden > mcfg.max_hidden:   # --config small: the same model, sized for the top
        return moe.preset_trace(tr.preset, mcfg, args.seed)
    return tr


class MoERunner(Runner):
    engine = "moe"
    title = "MoE layer"

    def build(self, config="default", simulator="verilator", waves=False):
        from hdl.moe import CONFIGS

        from .. import moe
        return moe.build(CONFIGS[config], config, simulator, waves)

    def simulate(self, config, jobs, workdir, *, simulator="verilator", seed=1, stalls=False,
                 waves=False, progress=None, stall_profile=None) -> dict:
        """``jobs``: a step prepared by ``sim.moe.prepare``; the one call of the bench."""
        from hdl.moe import CONFIGS

        from .. import moe
        kw = dict(simulator=simulator, seed=seed, stalls=stalls, waves=waves,
                  progress=progress, stall_profile=stall_profile)
        return moe.run(CONFIGS[config], config, jobs, workdir, **kw)

    def plan(self, args) -> Plan:
        from hdl.moe import CONFIGS

        from .. import moe
        args.config = args.config or "default"
        if args.alpha is not None and args.capacity != "static":
            raise FormatError("alpha: --alpha applies to --capacity static")
        mode = args.mode or "samoyeds"
        if mode not in moe.MOE_MODES:
            raise FormatError(f"mode: the MoE top's SpTC runs {' or '.join(moe.MOE_MODES)}, "
                              f"not {mode!r}")
        capacity = args.capacity or "dynamic"
        dispatch = args.dispatch or "duplex_coprocess"
        alpha = 2.0 if args.alpha is None else args.alpha
        mcfg = CONFIGS[args.config]
        trace = _trace(args, mcfg)
        moe.check_trace(trace, mcfg)
        runopts.check_trace_tokens(trace)
        step_i = moe.pick_step(trace, mcfg, args.step)
        runopts.check_step(trace, step_i)
        prep = moe.prepare(mcfg, trace, step_i, seed=args.seed, capacity=capacity,
                           dispatch=dispatch, mode=mode, alpha=alpha)
        return Plan(f"moe-{trace.preset}-step{step_i}",
                    dict(args=args, mcfg=mcfg, trace=trace, step=step_i, prep=prep, mode=mode,
                         capacity=capacity, dispatch=dispatch, alpha=alpha))

    def execute(self, plan, run_dir) -> RunResult | None:
        import sys

        from .. import moe
        from tb.cocotb_run import SimulationError
        d = plan.data
        args, mcfg, trace, step_i, prep = d["args"], d["mcfg"], d["trace"], d["step"], d["prep"]
        capacity, dispatch, mode = d["capacity"], d["dispatch"], d["mode"]
        step = trace.step(step_i)
        progs, jobs = prep["programs"], prep["jobs"]
        n_s = sum(j["unit"] == "sptc" for j in jobs)
        print(f"moe-rtl sim: MoE layer ({args.config} top: SpTC {mcfg.sptc.rows}x"
              f"{mcfg.sptc.cols} + Logic-PIM), {trace.preset} (scale {trace.scale}) step "
              f"{step_i}: {step.tokens} tokens ({int(step.is_prefill.sum())} prefill), "
              f"{trace.num_experts} experts top-{trace.top_k}"
              + (f" + {trace.num_shared} shared" if trace.num_shared else "")
              + f", hidden {trace.hidden}")
        print(f"  schedule: {capacity} capacity, {dispatch}: {len(progs)} program(s), "
              f"{len(jobs)} expert jobs ({n_s} SpTC, {len(jobs) - n_s} Logic-PIM); {mode} "
              f"weights; {args.simulator}{' + waves' if args.waves else ''}"
              f"{' + random stalls' if args.stalls else ''}")
        print("building the RTL (the first build takes a minute or more on 2 cores; later "
              "runs reuse it) ...", flush=True)
        t0 = time.time()
        try:
            b = self.build(args.config, args.simulator, args.waves)
        except SimulationError as exc:
            print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
            return None
        t_build = time.time() - t0
        stamp = b.build_dir / ".built"
        fresh = stamp.exists() and stamp.stat().st_mtime >= t0
        print(f"  {f'built in {t_build:.0f} s' if fresh else 'reused the cached build'}: "
              f"{b.build_dir}", flush=True)
        bar = Progress(len(jobs))
        t0 = time.time()
        verdict, failure, res = True, None, {}
        try:
            res = self.simulate(args.config, prep, run_dir / "sim", simulator=args.simulator,
                                seed=args.seed, stalls=args.stalls, waves=args.waves,
                                progress=bar.update_to, stall_profile=args.stall_profile)
        except SimulationError as exc:
            verdict, failure = False, str(exc)
        bar.close()
        t_sim = time.time() - t0
        if not res and (run_dir / "sim" / "result.npz").exists():   # a scoreboard failure
            with np.load(run_dir / "sim" / "result.npz", allow_pickle=False) as f:
                res = {k: f[k] for k in f.files}
            res["wave"] = find_wave(run_dir / "sim")
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
        rep = _report(d, an, res, progs, verdict, failure, t_build, t_sim)
        return RunResult(
            bit_exact=verdict, failure=failure, checked=rep["checked_elements"],
            cycles=rep["cycles"]["span"], model_cycles=rep["cycles"]["model_makespan"],
            cycles_ok=rep["cycles_match_model"], report=rep,
            extra=dict(wave=res.get("wave") if res else None, busy=busy,
                       start_ps=float(res["origin_ps"]) if res else 0.0))

    def write_report(self, run_dir: Path, result: RunResult) -> dict:
        from hdl.moe import MODULE_NAME

        from .moe_report import write_moe
        x = result.extra
        return write_moe(run_dir, result.report, x["wave"], x["busy"], MODULE_NAME,
                         x["start_ps"])

    def summary(self, result, files) -> None:
        rep = result.report
        jobs = [j for j in rep["jobs"] if "cycles" in j]
        u, cy = rep["units"], rep["cycles"]
        print()
        print(f"  jobs          {len(jobs)} of {len(rep['jobs'])} "
              f"({sum(j['unit'] == 'sptc' for j in jobs)} SpTC, "
              f"{sum(j['unit'] == 'pim' for j in jobs)} Logic-PIM) in {len(rep['programs'])} "
              f"program(s)")
        if cy["span"]:
            print(f"  step cycles   {cy['span']}  (unit models: SpTC {cy['model_sptc']}, "
                  f"Logic-PIM {cy['model_pim']}; {cy['span_over_makespan']}x the makespan "
                  f"{cy['model_makespan']})")
            print(f"  output drain  {cy['drain']} cycles ({cy['drain_share']:.1%} of the step; "
                  f"model {cy['model_drain']}: {rep['config']['y_lanes']} elements per beat)")
        for k, name in (("sptc", "SpTC"), ("pim", "Logic-PIM")):
            v = u.get(k)
            if v and v["jobs"]:
                print(f"  {name:<13} busy {v['busy_cycles']} ({v['utilization']:.0%} of the "
                      f"step), ideal {v['ideal_cycles']:.0f}, efficiency "
                      f"{v['efficiency']:.1%}")
        s = rep["schedule"]
        print(f"  capacity      {s['dropped']} dropped, {s['padded']} padding slots")
        cc = rep["cycle_checks"]
        print(f"  cycle checks  {'pass' if rep['cycles_match_model'] else 'FAIL'}: "
              f"{cc['checked']} jobs >= unit model + top overhead, {cc['exact']} exactly on "
              f"it; SpTC jobs with the Logic-PIM idle (must be exact): {cc['equal']}")
        for p in rep["cycle_problems"][:5]:
            print("    " + p)
        print(f"  bit-exact     " + (f"yes: all {rep['checked_elements']} output elements "
                                     "equal golden.moe.moe_layer" if rep["bit_exact"]
                                     else "NO"))
        if rep["failure"]:
            print("  failure       " + rep["failure"].splitlines()[0])
            why = failure_reason(rep["failure"])
            if why:
                print("                " + why)
        c = rep["config"]
        print(f"  wall time     build {c['build_seconds']} s, simulation {c['sim_seconds']} s")
        print_files(files, 12)
        if "gtkwave" in files and "waveform" in files:
            print(f"  open the waveform: gtkwave {files['waveform']} {files['gtkwave']}")
            if "surfer" in files:
                print(f"                 or: surfer {files['waveform']} "
                      f"--command-file {files['surfer']}")


RUNNER = MoERunner()


def _report(d: dict, an: dict, res: dict, progs: list, verdict: bool, failure, t_build: float,
            t_sim: float) -> dict:
    """The MoE run's report.json content (before the files are added)."""
    from .. import moe
    args, mcfg, trace, step_i, prep = d["args"], d["mcfg"], d["trace"], d["step"], d["prep"]
    capacity, alpha = d["capacity"], d["alpha"]
    step = trace.step(step_i)
    params = prep["params"]
    sched = dict(dropped=sum(p["dropped"] for p in progs),
                 padded=sum(p["padded"] for p in progs), recompiles=prep["recompiles"])
    cy = dict(span=an["span"],
              drain=sum(p.get("last_y", 0) - p.get("first_y", 0) + 1 for p in progs
                        if "first_y" in p),
              model_drain=sum(p["model_drain"] for p in progs),
              model_sptc=sum(p["model_sptc"] for p in progs),
              model_pim=sum(p["model_pim"] for p in progs),
              model_makespan=sum(max(p["model_sptc"], p["model_pim"]) for p in progs),
              preamble=int(res["pre_cycles"]) if res else None)
    cy["drain_share"] = round(cy["drain"] / cy["span"], 4) if cy["span"] else None
    cy["span_over_makespan"] = (round(cy["span"] / cy["model_makespan"], 4)
                                if cy["span"] and cy["model_makespan"] else None)
    note = (f"Job cycles = from the job's trace beat to its job-counter update. A SpTC job "
            f"that runs while the Logic-PIM is idle must take exactly `golden.sptc` + "
            f"{moe.SPTC_JOB_OVERHEAD} (announce, phase changes, the h hand-over, counter register): "
            f"{an['compared_equal']} such job(s) here. Every job must take at least its "
            f"unit's model + the top's overhead (Logic-PIM: `golden.pim` + slots + 2 for the "
            f"announce, the slot list and the counter); more is expected when the two units "
            f"share the combine path, and for the Logic-PIM when a DRAM refresh (every tREFI "
            f"= {mcfg.pim.timing.tREFI} cycles, tRFC = {mcfg.pim.timing.tRFC}) falls in the "
            f"job: its model assumes an idle DRAM and no refresh.")
    if args.stalls:
        note = ("Random stalls: every job is checked against its unit's model as a lower "
                "bound only. " + note)
    return {
        "config": dict(engine="moe", build=args.config, simulator=args.simulator,
                       seed=args.seed, stalls=args.stalls, capacity=capacity,
                       alpha=alpha if capacity == "static" else None, dispatch=d["dispatch"],
                       mode=d["mode"], nmv=list(params.nmv), hidden=params.hidden,
                       ffn=params.ffn, experts=params.num_experts,
                       shared=params.num_shared, gate_rq=list(params.gate_rq),
                       up_rq=list(params.up_rq), prod_rq=list(params.prod_rq),
                       expert_rq=list(params.expert_rq),
                       combine_rq=list(params.combine_rq), shared_gate=int(params.shared_gate),
                       max_tokens=mcfg.max_tokens, max_hidden=mcfg.max_hidden,
                       max_ffn=mcfg.max_ffn, y_lanes=mcfg.lanes,
                       sptc=config_dict(mcfg.sptc),
                       pim=dict(bundle_bits=mcfg.pim.bundle_bits, words=mcfg.pim.words,
                                max_tokens=mcfg.pim.max_tokens,
                                timing=asdict(mcfg.pim.timing)),
                       build_seconds=round(t_build, 2), sim_seconds=round(t_sim, 2)),
        "trace": dict(trace_info(trace, step_i), experts=trace.num_experts,
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
        "cycles_match_model": verdict and an["cycles_ok"],
        "cycle_checks": dict(equal=an["compared_equal"], checked=an["bounded"],
                             exact=sum(j.get("check") in ("equal", "= model")
                                       for j in an["jobs"]),
                             sptc_overhead=moe.SPTC_JOB_OVERHEAD,
                             pim_overhead="slots + 2"),
        "cycle_check_note": note,
        "cycle_problems": an["problems"],
        "failure": failure,
    }
