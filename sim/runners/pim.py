"""The Logic-PIM unit's runner (``hdl.pim``, bench ``tb/pim.py``).

``python -m sim run --engine pim``: decode-only trace steps on the unit, the experts'
weights resident in the banks, their routed tokens in the buffer; bit-exact
scoreboard, DRAM timing checker (and, without ``--stalls``, every job's cycles and
DRAM commands equal to the model). Jobs are ``dict(name, timed, program)`` (see
``tb.pim.write_job_file``): a job runs under random stalls when not ``timed``.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from golden.errors import FormatError

from .. import runopts
from .base import (NOTHING, Plan, Runner, RunResult, find_wave, load_trace, trace_info,
                   unit_summary)


class PIMRunner(Runner):
    engine = "pim"
    title = "Logic-PIM"

    def build(self, config="default", simulator="verilator", waves=False):
        from hdl.pim import CONFIGS
        from tb import pim as tbp
        return tbp.build_unit(CONFIGS[config], simulator, waves=waves)

    def simulate(self, config, jobs, workdir, *, simulator="verilator", seed=1, stalls=False,
                 waves=False, progress=None, stall_profile=None) -> dict:
        """``stalls`` and ``stall_profile`` are per job here (its ``timed`` flag and
        ``stall`` kind); ``progress`` is not reported."""
        from hdl.pim import CONFIGS
        from tb import pim as tbp
        return tbp.run_jobs(CONFIGS[config], jobs, workdir, simulator, seed=seed, waves=waves)

    def plan(self, args) -> Plan:
        from golden import pim as gp
        from hdl.pim import CONFIGS
        from tb import pim as tbp
        cfg = CONFIGS["small"]
        why = (f"the Logic-PIM build ({cfg.words} words of {cfg.elems} int8) must hold at "
               f"least one weight row per expert, hidden <= {cfg.max_k_words * cfg.elems}")
        trace = load_trace(args, runopts.pim_fits(cfg), why, prefill=0.0)
        hidden = min(trace.hidden, cfg.max_k_words * cfg.elems)
        rows = runopts.pim_rows(cfg, hidden, trace.num_experts, trace.ffn)
        if args.step is None and not any(s.is_decode_only and s.tokens for s in trace):
            raise FormatError("trace: no decode-only step with tokens; the Logic-PIM engine "
                              "runs decode-only steps (Duplex sends those to the Logic-PIM)")
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
        jobs = [dict(name="weights" if i == 0 else f"decode step {steps_run[i - 1]}",
                     timed=timed, program=p) for i, p in enumerate(progs)]
        return Plan(f"pim-{trace.preset}", dict(args=args, trace=trace, rows=rows,
                                                 steps=steps_run, jobs=jobs, checked=checked))

    def execute(self, plan, run_dir) -> RunResult:
        from tb.cocotb_run import SimulationError
        d = plan.data
        args, trace, jobs, checked = d["args"], d["trace"], d["jobs"], d["checked"]
        timed = not args.stalls
        (run_dir / "sim").mkdir()
        print(f"moe-rtl sim: Logic-PIM, {trace.preset} (hidden {trace.hidden}, "
              f"{trace.num_experts} experts x {d['rows']} weight rows) decode-only steps "
              f"{d['steps']}, {len(jobs)} programs, "
              f"{args.simulator}{' + waves' if args.waves else ''}"
              f"{' + random stalls' if args.stalls else ''} (first run compiles the RTL)")
        t0 = time.time()
        verdict, failure, res = True, None, {}
        try:
            res = self.simulate("small", jobs, run_dir / "sim", simulator=args.simulator,
                                seed=args.seed, waves=args.waves)
        except SimulationError as exc:
            verdict, failure = False, str(exc)
        if verdict and not checked:
            verdict, failure = False, NOTHING
        rows = [dict(job=j["name"], cycles=int(res["cycles_rtl"][i]),
                     model_cycles=int(res["cycles_model"][i]) if timed else None,
                     instructions=len(j["program"].words))
                for i, j in enumerate(jobs)] if res else []
        notes = [f"DRAM timing violations: {int(res['violations'])}" if res else "no result",
                 f"every output value ({checked}) is compared with the functional golden "
                 "(golden.pim) and every DRAM command with an independent timing checker "
                 "(tb/pim.py)" + ("" if timed else "; random stalls: cycles not compared")]
        info = dict(engine="pim", config="small", simulator=args.simulator, seed=args.seed,
                    stalls=args.stalls, steps=d["steps"], weight_rows=d["rows"],
                    checked_values=checked if verdict else 0,
                    wall_seconds=round(time.time() - t0, 1))
        return RunResult(
            bit_exact=verdict, failure=failure, checked=checked,
            cycles=sum(r["cycles"] for r in rows),
            model_cycles=sum(r["model_cycles"] for r in rows) if timed and rows else None,
            cycles_ok=True,
            report=dict(config=info, trace=trace_info(trace), jobs=rows, notes=notes),
            extra=dict(wave=find_wave(run_dir / "sim")))

    def write_report(self, run_dir: Path, result: RunResult) -> dict:
        from hdl.pim import MODULE_NAME

        from .. import report
        r = result.report
        return report.write_generic(run_dir, "pim", MODULE_NAME, r["config"], r["trace"],
                                    r["jobs"], ["job", "instructions", "cycles", "model_cycles"],
                                    result.bit_exact, result.failure, result.extra["wave"],
                                    r["notes"])

    def summary(self, result, files) -> None:
        unit_summary(self.title, result, files)


RUNNER = PIMRunner()
