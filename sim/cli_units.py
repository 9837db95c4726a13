"""``python -m sim run --engine pim|cim``: one unit alone on a trace (see :mod:`sim.cli`).

Both take ``--preset`` (sized for the build: :func:`sim.runopts.preset_trace`),
``--trace``, ``--step``, ``--stalls``, ``--seed``, ``--simulator``, ``--waves`` and
``--run-dir``; every check is made before the run folder is touched.
"""
from __future__ import annotations

import time

import numpy as np

from golden.errors import FormatError

from . import runopts
from .cocotb_run import ROOT, SimulationError
from .rundir import prepare as prepare_run_dir

NOTHING = "nothing was checked: the run compared no output value"


def _run_dir(args, engine, trace):
    run_dir = prepare_run_dir(args.run_dir or ROOT / "build" / "sim" / f"{engine}-{trace.preset}",
                              default=args.run_dir is None)
    (run_dir / "sim").mkdir()
    return run_dir


def run_pim(args) -> int:
    """Decode-only trace steps on the Logic-PIM unit: experts' weights resident in the
    banks, their routed tokens in the buffer; bit-exact scoreboard, DRAM timing checker
    (and, without --stalls, every job's cycles and DRAM commands equal to the model)."""
    from golden import pim as gp
    from hdl.pim import CONFIGS, MODULE_NAME
    from tb import pim as tbp

    from . import report
    from .cli import _find_wave, _load_trace, _trace_info
    cfg = CONFIGS["small"]
    why = (f"the Logic-PIM build ({cfg.words} words of {cfg.elems} int8) must hold at least "
           f"one weight row per expert, hidden <= {cfg.max_k_words * cfg.elems}")
    trace = _load_trace(args, runopts.pim_fits(cfg), why, prefill=0.0)
    hidden = min(trace.hidden, cfg.max_k_words * cfg.elems)
    rows = runopts.pim_rows(cfg, hidden, trace.num_experts, trace.ffn)
    if args.step is None and not any(s.is_decode_only and s.tokens for s in trace):
        raise FormatError("trace: no decode-only step with tokens; the Logic-PIM engine runs "
                          "decode-only steps (Duplex sends those to the Logic-PIM)")
    rng = np.random.default_rng(args.seed)
    progs = tbp.trace_programs(cfg, trace, rng, steps=2, rows=rows, step=args.step)
    if len(progs) < 2:
        raise FormatError(f"trace: no decode-only step with tokens to run: {NOTHING}")
    state, checked = gp.UnitState.reset(cfg), 0
    for p in progs:             # output values the bench will compare (host-side golden)
        checked += len(gp.execute(cfg, p.words, p.din, state=state).values)
    steps_run = ([args.step] if args.step is not None else
                 [s.index for s in trace if s.is_decode_only and s.tokens][:2])
    timed = not args.stalls
    jobs = [dict(name="weights" if i == 0 else f"decode step {steps_run[i - 1]}", timed=timed,
                 program=p) for i, p in enumerate(progs)]
    run_dir = _run_dir(args, "pim", trace)
    print(f"moe-rtl sim: Logic-PIM, {trace.preset} (hidden {trace.hidden}, {trace.num_experts} "
          f"experts x {rows} weight rows) decode-only steps {steps_run}, {len(jobs)} programs, "
          f"{args.simulator}{' + waves' if args.waves else ''}"
          f"{' + random stalls' if args.stalls else ''} (first run compiles the RTL)")
    t0 = time.time()
    verdict, failure, res = True, None, {}
    try:
        res = tbp.run_jobs(cfg, jobs, run_dir / "sim", args.simulator, seed=args.seed,
                           waves=args.waves)
    except SimulationError as exc:
        verdict, failure = False, str(exc)
    if verdict and not checked:
        verdict, failure = False, NOTHING
    rows_ = [dict(job=j["name"], cycles=int(res["cycles_rtl"][i]),
                  model_cycles=int(res["cycles_model"][i]) if timed else None,
                  instructions=len(j["program"].words))
             for i, j in enumerate(jobs)] if res else []
    notes = [f"DRAM timing violations: {int(res['violations'])}" if res else "no result",
             f"every output value ({checked}) is compared with the functional golden "
             "(golden.pim) and every DRAM command with an independent timing checker "
             "(tb/pim.py)" + ("" if timed else "; random stalls: cycles not compared")]
    info = dict(engine="pim", config="small", simulator=args.simulator, seed=args.seed,
                stalls=args.stalls, steps=steps_run, weight_rows=rows,
                checked_values=checked if verdict else 0,
                wall_seconds=round(time.time() - t0, 1))
    files = report.write_generic(run_dir, "pim", MODULE_NAME, info, _trace_info(trace), rows_,
                                 ["job", "instructions", "cycles", "model_cycles"], verdict,
                                 failure, _find_wave(run_dir / "sim"), notes)
    summary("Logic-PIM", rows_, verdict, failure, files, checked)
    return 0 if verdict else 1


def run_cim(args) -> int:
    """An expert projection in Monarch form on a trace step's tokens, under each mapping."""
    import dataclasses

    from hdl.cim import CONFIGS, MODULE_NAME
    from tb import cim as tbc

    from . import report
    from .cli import _find_wave, _load_trace, _trace_info
    cfg = CONFIGS["default"]
    sizes = runopts.cim_sizes(cfg)
    why = f"the CIM tile runs Monarch sizes n = hidden = b*b in {sizes}"
    trace = _load_trace(args, runopts.cim_fits(cfg), why)
    if args.step is not None:
        if not 0 <= args.step < trace.steps:
            raise FormatError(f"step: {args.step} out of range 0..{trace.steps - 1}")
        runopts.check_step(trace, args.step)
    base = tbc.trace_job(seed=args.seed, trace=trace, step=args.step)
    jobs = [dataclasses.replace(base, name=f"{s} map", strategy=s)
            for s in ("linear", "sparse", "dense")]
    checked = sum(len(j.xs) * trace.hidden for j in jobs)
    run_dir = _run_dir(args, "cim", trace)
    print(f"moe-rtl sim: CIM tile, {base.name}, strategies linear / SparseMap / DenseMap, "
          f"{args.simulator}{' + waves' if args.waves else ''}"
          f"{' + random stalls' if args.stalls else ''} (first run compiles the RTL)")
    t0 = time.time()
    verdict, failure, res = True, None, {}
    try:
        res = tbc.run_jobs(jobs, simulator=args.simulator, test_dir=run_dir / "sim",
                           seed=args.seed, stalls=args.stalls, waves=args.waves)
    except SimulationError as exc:
        verdict, failure = False, str(exc)
    if verdict and not checked:
        verdict, failure = False, NOTHING
    rows = [dict(job=j.name, cycles=int(res["total"][i]), steps=int(res["steps"][i]))
            for i, j in enumerate(jobs)] if res else []
    notes = [f"outputs ({checked} values) compared with the golden program interpreter "
             "(golden.cim.execute) and with the factored Monarch matmul; without --stalls "
             "every instruction's cycle cost is compared with the cycle model"]
    info = dict(engine="cim", config="default", simulator=args.simulator, seed=args.seed,
                stalls=args.stalls, job=base.name, checked_values=checked if verdict else 0,
                wall_seconds=round(time.time() - t0, 1))
    files = report.write_generic(run_dir, "cim", MODULE_NAME, info, _trace_info(trace), rows,
                                 ["job", "steps", "cycles"], verdict, failure,
                                 _find_wave(run_dir / "sim"), notes)
    summary("CIM tile", rows, verdict, failure, files, checked)
    return 0 if verdict else 1


def summary(unit, rows, verdict, failure, files, checked):
    print()
    print(f"  jobs          {len(rows)}")
    print(f"  {unit} cycles {sum(r['cycles'] for r in rows)}")
    print(f"  bit-exact     " + (f"yes: all {checked} output values equal the golden model"
                                 if verdict else "NO"))
    if failure:
        print("  failure       " + failure.splitlines()[0])
    print("  files:")
    for name, path in files.items():
        print(f"    {name:<10} {path}")
