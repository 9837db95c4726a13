"""``python -m sim run``: one MoE trace step through the RTL, with waveform and report.

What it does (``make sim`` calls it with the defaults):

1. loads a routing trace (``--trace FILE``, or a preset generated on the fly with
   ``--preset``, or the shipped default trace) and picks one step;
2. builds one job per routed expert: the expert's gate projection
   (FFN x hidden, pruned to ``--mode``) times the step's activations, with SEL =
   the tokens routed to that expert (dual-side sparsity); a batch larger than the
   activation buffer is split into chunks;
3. runs the jobs on the RTL (Verilator by default, waves on), every output
   compared with ``golden.ssmm`` and every cycle count with the cycle model;
4. writes ``build/sim/<run>/``: the waveform, a GTKWave save file, report.md,
   report.json and two plots.

Exit status: 0 when everything is bit-exact and on the predicted cycle count,
1 on a mismatch or simulation failure, 2 on bad options or a bad trace file.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from golden.errors import FormatError

from .cocotb_run import ROOT, SIMULATORS, SimulationError

ENGINES = ("sptc", "pim", "cim", "moe")
MODES = ("dense", "2:4", "samoyeds")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sim", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run one MoE trace step through the RTL",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    r.add_argument("--engine", choices=ENGINES, default="sptc",
                   help="which engine to run: sptc (Sparse Tensor Core), pim (Logic-PIM, "
                        "decode-only steps), cim (CIM tile, Monarch expert projection)")
    r.add_argument("--preset", default=None,
                   help="generate a trace for this model preset (see `python -m sim.traces "
                        "gen --help`) instead of the shipped default trace")
    r.add_argument("--trace", type=Path, default=None, help="a trace .npz to load")
    r.add_argument("--step", type=int, default=None,
                   help="trace step to run (default: the busiest step that mixes prefill "
                        "and decode)")
    r.add_argument("--mode", choices=MODES, default="samoyeds", help="SpTC weight mode")
    r.add_argument("--nmv", default="1,2,32",
                   help="Samoyeds (N,M,V) for --mode samoyeds")
    r.add_argument("--out", default="int8_sat",
                   help="output mode: int32, int8_sat or requant:MULT:SHIFT")
    r.add_argument("--config", choices=("default", "small"), default="default",
                   help="SpTC build: default (8 x 8 PEs) or small (4 x 4, faster to compile)")
    r.add_argument("--simulator", choices=SIMULATORS, default="verilator")
    r.add_argument("--waves", action=argparse.BooleanOptionalAction, default=True,
                   help="write a waveform (FST)")
    r.add_argument("--stalls", action=argparse.BooleanOptionalAction, default=False,
                   help="random valid/ready stalls on every stream (cycle counts then "
                        "exceed the no-stall model and are not compared)")
    r.add_argument("--seed", type=int, default=1, help="seed of weights, activations, stalls")
    r.add_argument("--max-experts", type=int, default=None,
                   help="run only the N busiest experts of the step")
    r.add_argument("--run-dir", type=Path, default=None,
                   help="output folder (default build/sim/<engine>-<preset>-step<N>)")
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


def _parse_nmv(text: str):
    try:
        n, m, v = (int(t) for t in text.split(","))
    except ValueError:
        raise FormatError(f"nmv: {text!r} is not N,M,V (three integers)") from None
    return n, m, v


def _load_trace(args):
    from . import traces
    if args.trace is not None and args.preset is not None:
        raise FormatError("trace/preset: give --trace or --preset, not both")
    if args.trace is not None:
        return traces.load(args.trace)
    if args.preset is not None:
        if args.preset not in traces.PRESETS:
            raise FormatError(f"preset: unknown preset {args.preset!r} "
                              f"(known: {', '.join(sorted(traces.PRESETS))})")
        return traces.generate(args.preset, steps=8, seed=args.seed, skew="hot")
    return traces.load_default()


def _pick_step(trace, requested):
    if requested is not None:
        if not 0 <= requested < trace.steps:
            raise FormatError(f"step: {requested} out of range 0..{trace.steps - 1}")
        return requested
    best, best_tokens = 0, -1
    for i in range(trace.steps):
        st = trace.step(i)
        mixed = st.is_prefill.any() and (~st.is_prefill).any()
        if mixed and st.tokens > best_tokens:
            best, best_tokens = i, st.tokens
    return best


def run_sptc(args) -> int:
    import golden
    from golden import sptc as gs
    from hdl.sptc import CONFIGS

    from . import report
    from .sptc import JobSpec, run_batch

    out = _parse_out(args.out)
    golden.parse_out(out)
    nmv = _parse_nmv(args.nmv)
    trace = _load_trace(args)
    step_i = _pick_step(trace, args.step)
    step = trace.step(step_i)
    cfg = CONFIGS[args.config]
    if trace.hidden > cfg.max_k:
        raise FormatError(f"trace: hidden = {trace.hidden} exceeds the SpTC build's max_k = "
                          f"{cfg.max_k}; use a larger --scale when generating the trace")
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
    run_dir = (args.run_dir
               or ROOT / "build" / "sim" / f"{args.engine}-{trace.preset}-step{step_i}").resolve()
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
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
                        waves=args.waves, workdir=run_dir / "sim", progress=bar.update_to)
    except SimulationError as exc:
        verdict, failure, res = False, str(exc), {}
    bar.close()
    t_sim = time.time() - t0
    for i, m in enumerate(meta):
        if f"j{i}_cycles" in res:
            m.update(cycles=int(res[f"j{i}_cycles"]), start=int(res[f"j{i}_start"]),
                     end=int(res[f"j{i}_end"]))
            m["efficiency"] = m["ideal_cycles"] / m["cycles"] if m["cycles"] else 0.0
    info = dict(engine="sptc", build=args.config, mode=args.mode, nmv=list(nmv) if args.mode == "samoyeds" else None,
                out=list(out) if isinstance(out, tuple) else out, simulator=args.simulator,
                seed=args.seed, stalls=args.stalls, config=gs_config_dict(cfg),
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
    print(f"  bit-exact     {'yes: every element equals golden.ssmm' if verdict else 'NO'}")
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


def _run_dir(args, engine, trace):
    run_dir = (args.run_dir or ROOT / "build" / "sim" / f"{engine}-{trace.preset}").resolve()
    if run_dir.exists():
        shutil.rmtree(run_dir)
    (run_dir / "sim").mkdir(parents=True)
    return run_dir


def _find_wave(folder: Path):
    waves = sorted(folder.glob("*.fst")) + sorted(folder.glob("*.vcd"))
    return waves[0] if waves else None


def run_pim(args) -> int:
    """Decode-only trace steps on the Logic-PIM unit: experts' weights resident in the
    banks, their routed tokens in the buffer; bit-exact scoreboard, DRAM timing checker."""
    from hdl.pim import CONFIGS, MODULE_NAME
    from tb import pim as tbp

    from . import report
    trace = _load_trace(args)
    cfg = CONFIGS["small"]
    rng = np.random.default_rng(args.seed)
    progs = tbp.trace_programs(cfg, trace, rng, steps=2, rows=28)
    jobs = [dict(name="weights" if i == 0 else f"decode step {i}", timed=True, program=p)
            for i, p in enumerate(progs)]
    run_dir = _run_dir(args, "pim", trace)
    print(f"moe-rtl sim: Logic-PIM, {trace.preset} decode-only steps, {len(jobs)} programs, "
          f"{args.simulator}{' + waves' if args.waves else ''} (first run compiles the RTL)")
    t0 = time.time()
    verdict, failure, res = True, None, {}
    try:
        res = tbp.run_jobs(cfg, jobs, run_dir / "sim", args.simulator, seed=args.seed,
                           waves=args.waves)
    except SimulationError as exc:
        verdict, failure = False, str(exc)
    rows = [dict(job=j["name"], cycles=int(res["cycles_rtl"][i]),
                 model_cycles=int(res["cycles_model"][i]),
                 instructions=len(j["program"].words))
            for i, j in enumerate(jobs)] if res else []
    notes = [f"DRAM timing violations: {int(res['violations'])}" if res else "no result",
             "every output element is compared with the functional golden (golden.pim) and "
             "every DRAM command with an independent timing checker (tb/pim.py)"]
    info = dict(engine="pim", config="small", simulator=args.simulator, seed=args.seed,
                wall_seconds=round(time.time() - t0, 1))
    files = report.write_generic(run_dir, "pim", MODULE_NAME, info, _trace_info(trace), rows,
                                 ["job", "instructions", "cycles", "model_cycles"], verdict,
                                 failure, _find_wave(run_dir / "sim"), notes)
    _summary_generic("Logic-PIM", rows, verdict, failure, files)
    return 0 if verdict else 1


def run_cim(args) -> int:
    """An expert projection in Monarch form on a trace step's tokens, under each mapping."""
    import dataclasses

    from hdl.cim import MODULE_NAME
    from tb import cim as tbc

    from . import report
    trace = _load_trace(args)
    base = tbc.trace_job(seed=args.seed, trace=trace)
    jobs = [dataclasses.replace(base, name=f"{s} map", strategy=s)
            for s in ("linear", "sparse", "dense")]
    run_dir = _run_dir(args, "cim", trace)
    print(f"moe-rtl sim: CIM tile, {base.name}, strategies linear / SparseMap / DenseMap, "
          f"{args.simulator}{' + waves' if args.waves else ''} (first run compiles the RTL)")
    t0 = time.time()
    verdict, failure, res = True, None, {}
    try:
        res = tbc.run_jobs(jobs, simulator=args.simulator, test_dir=run_dir / "sim",
                           seed=args.seed, stalls=args.stalls, waves=args.waves)
    except SimulationError as exc:
        verdict, failure = False, str(exc)
    rows = [dict(job=j.name, cycles=int(res["total"][i]), steps=int(res["steps"][i]))
            for i, j in enumerate(jobs)] if res else []
    notes = ["outputs compared with the golden program interpreter (golden.cim.execute) and "
             "with the factored Monarch matmul; without --stalls every instruction's cycle "
             "cost is compared with the cycle model"]
    info = dict(engine="cim", config="default", simulator=args.simulator, seed=args.seed,
                stalls=args.stalls, wall_seconds=round(time.time() - t0, 1))
    files = report.write_generic(run_dir, "cim", MODULE_NAME, info, _trace_info(trace), rows,
                                 ["job", "steps", "cycles"], verdict, failure,
                                 _find_wave(run_dir / "sim"), notes)
    _summary_generic("CIM tile", rows, verdict, failure, files)
    return 0 if verdict else 1


def _summary_generic(unit, rows, verdict, failure, files):
    print()
    print(f"  jobs          {len(rows)}")
    print(f"  {unit} cycles {sum(r['cycles'] for r in rows)}")
    print(f"  bit-exact     {'yes' if verdict else 'NO'}")
    if failure:
        print("  failure       " + failure.splitlines()[0])
    print("  files:")
    for name, path in files.items():
        print(f"    {name:<10} {path}")


def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.cmd == "run":
            runner = {"sptc": run_sptc, "pim": run_pim, "cim": run_cim}.get(args.engine)
            if runner is None:
                raise FormatError(f"engine: {args.engine!r} has no `make sim` flow yet "
                                  "(available: sptc, pim, cim); see README")
            return runner(args)
    except FormatError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 2
