"""The Sparse Tensor Core's runner (``hdl.sptc``, bench ``tb/sptc.py``, host side
``sim.sptc``).

``python -m sim run --engine sptc``: one job per routed expert: the expert's gate
projection (FFN x hidden, pruned to ``--mode``) times the step's activations with
SEL = its tokens; outputs compared with ``golden.ssmm`` and, without stalls, every
job's cycles with the cycle model inside the bench. Jobs are ``sim.sptc.JobSpec``.
The report section: per-job cycles against the ideal, two plots (tokens vs cycles,
the unit's timeline) and the wave views (ports grouped as in :data:`GROUPS`).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from golden.errors import FormatError

from .. import report, runopts
from .base import (Plan, Progress, Runner, RunResult, config_dict, load_trace, pick_step,
                   print_files)

# Signal groups of the wave views: (group title, name suffixes in port order).
GROUPS = [
    ("Control", ["clk", "rst", "start", "clear", "busy", "done", "op", "mode", "out_mode",
                 "n_sel", "n_row_tiles", "k_words"]),
    ("Cycle counter", ["cycles"]),
    ("Errors (sticky: 1 config, 2 meta, 4 sel, 8 index)", ["error"]),
    ("Weight stream", ["w__valid", "w__ready", "w__payload"]),
    ("Activation stream", ["act__valid", "act__ready", "act__payload"]),
    ("SEL stream", ["sel__valid", "sel__ready", "sel__payload"]),
    ("Result stream", ["res__valid", "res__ready", "res__payload"]),
]


def parse_out(text: str):
    """``--out``: int32, int8_sat or requant:MULT:SHIFT."""
    if text in ("int32", "int8_sat"):
        return text
    parts = text.split(":")
    if len(parts) == 3 and parts[0] == "requant":
        try:
            return ("requant", int(parts[1]), int(parts[2]))
        except ValueError:
            pass
    raise FormatError(f"out: {text!r} is not int32, int8_sat or requant:MULT:SHIFT")


class SpTCRunner(Runner):
    engine = "sptc"
    title = "SpTC"

    def build(self, config="default", simulator="verilator", waves=False):
        from hdl.sptc import CONFIGS

        from .. import sptc
        return sptc.build_design(CONFIGS[config], simulator, waves)

    def simulate(self, config, jobs, workdir, *, simulator="verilator", seed=1, stalls=False,
                 waves=False, progress=None, stall_profile=None) -> dict:
        from hdl.sptc import CONFIGS

        from .. import sptc
        return sptc.run_batch(CONFIGS[config], jobs, simulator=simulator, seed=seed,
                              stalls=stalls, waves=waves, workdir=workdir, progress=progress,
                              stall_profile=stall_profile)

    def plan(self, args) -> Plan:
        import golden
        from golden import sptc as gs
        from hdl.sptc import CONFIGS

        from ..sptc import JobSpec
        args.config = args.config or "default"
        args.mode = args.mode or "samoyeds"
        if args.nmv is not None and args.mode != "samoyeds":
            raise FormatError(f"nmv: --nmv applies to --mode samoyeds, not {args.mode}")
        out = parse_out(args.out or "int8_sat")
        golden.parse_out(out)
        cfg = CONFIGS[args.config]
        nmv = runopts.parse_nmv(args.nmv or "1,2,32", cfg)
        why = (f"the SpTC build takes K = hidden <= max_k = {cfg.max_k}, a multiple of 4"
               + (f" and of V = {nmv[2]}" if args.mode == "samoyeds" else "")
               + "; generate the trace with another --scale")
        trace = load_trace(args, runopts.sptc_fits(cfg, args.mode, nmv[2]), why)
        step_i = pick_step(trace, args.step)
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
        # the build's limits, before anything is built or written; the cycle model's
        # prediction of each job
        predicted = [gs.predict_job_cycles(cfg, gs.plan(cfg, s.weight, s.x.shape, s.sel, s.out))
                     for s in specs]
        if not any(m["tokens"] for m in meta):
            raise FormatError(f"step: step {step_i} routes no token to any expert")
        return Plan(f"sptc-{trace.preset}-step{step_i}",
                    dict(args=args, cfg=cfg, trace=trace, step=step_i, experts=experts,
                         specs=specs, meta=meta, out=out, nmv=nmv, ffn=ffn,
                         predicted=predicted))

    def execute(self, plan, run_dir) -> RunResult:
        from tb.cocotb_run import SimulationError
        d = plan.data
        args, cfg, trace, step_i = d["args"], d["cfg"], d["trace"], d["step"]
        specs, meta, out, nmv = d["specs"], d["meta"], d["out"], d["nmv"]
        step = trace.step(step_i)
        print(f"moe-rtl sim: {trace.preset} (scale {trace.scale}) step {step_i}: {step.tokens} "
              f"tokens, {len(d['experts'])} experts, {len(specs)} SpTC jobs, mode {args.mode}, "
              f"{args.simulator}{' + waves' if args.waves else ''}")
        print("building the RTL (first run only; later runs reuse the build) ...", flush=True)
        t0 = time.time()
        self.build(args.config, args.simulator, args.waves)
        t_build = time.time() - t0
        bar = Progress(len(specs))
        t0 = time.time()
        verdict, failure = True, None
        try:
            res = self.simulate(args.config, specs, run_dir / "sim", simulator=args.simulator,
                                seed=args.seed, stalls=args.stalls, waves=args.waves,
                                progress=bar.update_to, stall_profile=args.stall_profile)
        except SimulationError as exc:
            verdict, failure, res = False, str(exc), {}
        bar.close()
        t_sim = time.time() - t0
        checked = sum(m["tokens"] for i, m in enumerate(meta) if f"j{i}_cycles" in res) * d["ffn"]
        if verdict and not checked:
            verdict, failure = False, "nothing was checked: the run compared no output element"
        for i, m in enumerate(meta):
            if f"j{i}_cycles" in res:
                m.update(cycles=int(res[f"j{i}_cycles"]), start=int(res[f"j{i}_start"]),
                         end=int(res[f"j{i}_end"]))
                m["efficiency"] = m["ideal_cycles"] / m["cycles"] if m["cycles"] else 0.0
        info = dict(engine="sptc", build=args.config, mode=args.mode,
                    nmv=list(nmv) if args.mode == "samoyeds" else None,
                    out=list(out) if isinstance(out, tuple) else out, simulator=args.simulator,
                    seed=args.seed, stalls=args.stalls, config=config_dict(cfg),
                    checked_elements=checked,
                    build_seconds=round(t_build, 2), sim_seconds=round(t_sim, 2))
        ran = [i for i, m in enumerate(meta) if "cycles" in m]
        return RunResult(
            bit_exact=verdict, failure=failure, checked=checked,
            cycles=sum(meta[i]["cycles"] for i in ran),
            model_cycles=None if args.stalls else sum(d["predicted"][i] for i in ran),
            cycles_ok=True, report=dict(config=info, jobs=meta),
            extra=dict(wave=res.get("wave") if res else None, trace=trace, step=step_i,
                       cfg=cfg))

    def write_report(self, run_dir: Path, result: RunResult) -> dict:
        x = result.extra
        return write(run_dir, result.report["config"], x["trace"], x["step"],
                     result.report["jobs"], result.bit_exact, result.failure, x["wave"], x["cfg"])

    def summary(self, result, files) -> None:
        info, meta = result.report["config"], result.report["jobs"]
        done = [m for m in meta if "cycles" in m]
        cyc = sum(m["cycles"] for m in done)
        ideal = sum(m["ideal_cycles"] for m in done)
        print()
        print(f"  jobs          {len(done)} of {len(meta)}")
        if done:
            print(f"  SpTC cycles   {cyc}  (ideal {ideal:.0f}, efficiency {ideal / cyc:.1%})")
        print(f"  bit-exact     " + (f"yes: all {info['checked_elements']} output elements "
                                     "equal golden.ssmm" if result.bit_exact else "NO"))
        if result.failure:
            print("  failure       " + result.failure.splitlines()[0])
        print(f"  wall time     build {info['build_seconds']} s, simulation "
              f"{info['sim_seconds']} s")
        print_files(files, 10)


RUNNER = SpTCRunner()


# --------------------------------------------------------------------------- report section

def gtkw(wave: Path, names: list[str], out: Path) -> dict:
    """Wave views (GTKWave + Surfer, see :func:`sim.report.write_views`) of an SpTC run:
    the DUT's ports grouped as in :data:`GROUPS`."""
    # The top-level ports of the DUT: the shortest path for each port name.
    # Verilator also lists the ports under a "$rootio" pseudo-scope; use the module's.
    ports = {}
    for n in names:
        if n.startswith("$"):
            continue
        leaf = n.rsplit(".", 1)[-1].split("[")[0]
        if leaf not in ports or n.count(".") < ports[leaf].count("."):
            ports[leaf] = n
    groups = []
    for title, leaves in GROUPS:
        sigs = [ports[lf] for lf in leaves if lf in ports]
        groups.append((title, [
            (sig, "hex" if sig.endswith(("payload", "cycles", "n_sel", "k_words", "n_row_tiles"))
             else "bin") for sig in sigs]))
    return report.write_views(wave, out, groups)


def _plots(run_dir: Path, meta: list[dict]) -> dict:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [m for m in meta if "cycles" in m]
    files = {}
    if not done:
        return files
    fig, ax = plt.subplots(figsize=(6, 4))
    tok = np.array([m["tokens"] for m in done])
    cyc = np.array([m["cycles"] for m in done])
    ideal = np.array([m["ideal_cycles"] for m in done])
    ax.scatter(tok, cyc, label="RTL cycles")
    ax.scatter(tok, ideal, marker="x", label="ideal (useful MACs / peak)")
    for m in done:
        ax.annotate(str(m["expert"]), (m["tokens"], m["cycles"]), fontsize=7,
                    xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("tokens routed to the expert (SEL length)")
    ax.set_ylabel("cycles")
    ax.set_title("Per-expert tokens vs SpTC cycles")
    ax.legend()
    files["plot_tokens"] = report.save_plot(fig, run_dir / "tokens_vs_cycles.png")

    fig, ax = plt.subplots(figsize=(8, 2.6))
    for m in done:
        ax.barh(0, m["end"] - m["start"], left=m["start"], height=0.6)
        ax.text(m["start"] + (m["end"] - m["start"]) / 2, 0, str(m["expert"]), ha="center",
                va="center", fontsize=7)
    total = max(m["end"] for m in done) - min(m["start"] for m in done)
    busy = sum(m["cycles"] for m in done)
    ax.set_yticks([0], ["SpTC"])
    ax.set_xlabel("testbench cycle (bars: matmul jobs, labelled by expert; gaps: loads)")
    ax.set_title(f"Unit utilization timeline: SpTC busy on jobs {busy / total:.0%} of the span")
    files["plot_timeline"] = report.save_plot(fig, run_dir / "timeline.png")
    return files


def write(run_dir: Path, info: dict, trace, step_i: int, meta: list[dict], verdict: bool,
          failure: str | None, wave: Path | None, cfg) -> dict:
    """Waveform + wave views, plots, report.json and report.md of an SpTC run."""
    files = {}
    step = trace.step(step_i)
    counts = step.tokens_per_expert()
    dest = report.place_wave(wave, run_dir, "sptc")
    if dest is not None:
        files["waveform"] = dest
        names = report.wave_signals(dest)
        files.update(gtkw(dest, names, run_dir / "sptc.gtkw"))
        info["wave_signals"] = len(names)
    files.update(_plots(run_dir, meta))
    done = [m for m in meta if "cycles" in m]
    cyc = sum(m["cycles"] for m in done)
    ideal = sum(m["ideal_cycles"] for m in done)
    rep = {
        "config": info,
        "trace": {"preset": trace.preset, "scale": trace.scale, "seed": trace.seed,
                  "skew": trace.skew, "step": step_i, "tokens": int(step.tokens),
                  "decode_tokens": int((~step.is_prefill).sum()),
                  "prefill_tokens": int(step.is_prefill.sum()),
                  "tokens_per_expert": [int(c) for c in counts],
                  "imbalance": float(step.imbalance()), "hidden": trace.hidden, "ffn": trace.ffn},
        "jobs": meta,
        "units": {"sptc": {"cycles": cyc, "ideal_cycles": ideal,
                           "efficiency": ideal / cyc if cyc else None, "jobs": len(done)}},
        "bit_exact": verdict,
        "cycles_match_model": verdict and not info["stalls"],
        "failure": failure,
    }
    return report.write_files(run_dir, rep, files, lambda r: _markdown(r, cfg))


def _markdown(rep: dict, cfg) -> str:
    c, t, u = rep["config"], rep["trace"], rep["units"]["sptc"]
    out = [f"# moe-rtl sim report: {t['preset']} step {t['step']}", ""]
    out += [f"**Bit-exact:** {'yes — every output element equals `golden.ssmm`' if rep['bit_exact'] else 'NO'}",
            ""]
    if rep["failure"]:
        out += ["```", rep["failure"][:4000], "```", ""]
    out += ["## Configuration", "",
            f"- engine: Sparse Tensor Core, {cfg.rows} x {cfg.cols} PEs, max_k {cfg.max_k}, "
            f"max_tokens {cfg.max_tokens}",
            f"- mode: {c['mode']}" + (f" (N, M, V) = {tuple(c['nmv'])}" if c["nmv"] else ""),
            f"- output: {c['out']}; simulator: {c['simulator']}; seed {c['seed']}; "
            f"stalls: {'random' if c['stalls'] else 'none (cycles compared with the model)'}",
            "", "## Trace", "",
            f"- preset {t['preset']} at scale {t['scale']} (hidden {t['hidden']}, FFN {t['ffn']}), "
            f"skew {t['skew']}, trace seed {t['seed']}",
            f"- step {t['step']}: {t['tokens']} tokens ({t['prefill_tokens']} prefill, "
            f"{t['decode_tokens']} decode), imbalance (max-mean)/mean = {t['imbalance']:.2f}",
            "", "| expert | tokens |", "|---:|---:|"]
    out += [f"| {e} | {n} |" for e, n in enumerate(t["tokens_per_expert"])]
    out += ["", "## Jobs", "",
            "| expert | token chunk | SEL | cycles | ideal | efficiency |",
            "|---:|---:|---:|---:|---:|---:|"]
    for m in rep["jobs"]:
        if "cycles" in m:
            out.append(f"| {m['expert']} | {m['chunk']} | {m['tokens']} | {m['cycles']} | "
                       f"{m['ideal_cycles']:.0f} | {m['efficiency']:.1%} |")
    if u["cycles"]:
        out += ["", f"SpTC total: {u['cycles']} cycles for {u['jobs']} jobs; ideal "
                    f"{u['ideal_cycles']:.0f}; efficiency {u['efficiency']:.1%}."]
    out += ["", "Ideal = useful MACs / (2 x rows x cols) per cycle; efficiency = ideal / RTL "
                "cycles. Short jobs pay the SEL load, the pipeline fill and the last drain.",
            "", "## Files", ""]
    out += [f"- {k}: `{v}`" for k, v in rep["files"].items()]
    out += ["", report.open_waves(rep["files"])
            + " Signals grouped: control, cycle counter, errors, one group per stream."]
    return "\n".join(out) + "\n"
