"""The CIM tile's runner (``hdl.cim``, bench ``tb/cim.py``).

``python -m sim run --engine cim``: an expert projection in Monarch form on a trace
step's tokens, under each mapping (linear, SparseMap, DenseMap); outputs compared with
the golden program interpreter and the factored Monarch matmul, and (without
``--stalls``) every instruction's cycle cost with the cycle model. Jobs are
``tb.cim.Job``. The report (:mod:`.cim_report`) sets the jobs beside the evaluation
model: cycles and the exercised ADC range (RTL against model: a difference fails the
run), and per mapping arrays, utilization, footprint, FLOPs, ADC bits, cycles and energy
per token, with placement pictures.
"""
from __future__ import annotations

import time
from pathlib import Path

from golden.errors import FormatError

from .. import runopts
from .base import (NOTHING, Plan, Runner, RunResult, find_wave, load_trace, print_files,
                   trace_info)


class CIMRunner(Runner):
    engine = "cim"
    title = "CIM tile"

    def build(self, config="default", simulator="verilator", waves=False):
        from hdl.cim import MODULE_NAME
        from tb import cim as tbc

        from tb import cocotb_run
        return cocotb_run.build(f"cim_{config}", tbc.tile_verilog(config), MODULE_NAME,
                                simulator=simulator, waves=waves)

    def simulate(self, config, jobs, workdir, *, simulator="verilator", seed=1, stalls=False,
                 waves=False, progress=None, stall_profile=None) -> dict:
        """``progress`` is not reported."""
        from tb import cim as tbc
        return tbc.run_jobs(jobs, config_name=config, simulator=simulator, test_dir=workdir,
                            seed=seed, stalls=stalls, waves=waves, stall_profile=stall_profile)

    def plan(self, args) -> Plan:
        import dataclasses

        from hdl.cim import CONFIGS
        from tb import cim as tbc
        cfg = CONFIGS["default"]
        sizes = runopts.cim_sizes(cfg)
        why = f"the CIM tile runs Monarch sizes n = hidden = b*b in {sizes}"
        trace = load_trace(args, runopts.cim_fits(cfg), why)
        if args.step is not None:
            if not 0 <= args.step < trace.steps:
                raise FormatError(f"step: {args.step} out of range 0..{trace.steps - 1}")
            runopts.check_step(trace, args.step)
        base = tbc.trace_job(seed=args.seed, trace=trace, step=args.step)
        jobs = [dataclasses.replace(base, name=f"{s} map", strategy=s)
                for s in ("linear", "sparse", "dense")]
        checked = sum(len(j.xs) * trace.hidden for j in jobs)
        return Plan(f"cim-{trace.preset}", dict(args=args, trace=trace, base=base, jobs=jobs,
                                                 checked=checked))

    def execute(self, plan, run_dir) -> RunResult:
        from hdl.cim import CONFIGS
        from tb.cocotb_run import SimulationError

        from ..bench.cim_eval import PROJECTIONS
        from .cim_report import checks, job_figures
        d = plan.data
        args, trace, jobs, checked = d["args"], d["trace"], d["jobs"], d["checked"]
        (run_dir / "sim").mkdir()
        print(f"moe-rtl sim: CIM tile, {d['base'].name}, strategies linear / SparseMap / "
              f"DenseMap, {args.simulator}{' + waves' if args.waves else ''}"
              f"{' + random stalls' if args.stalls else ''} (first run compiles the RTL)")
        t0 = time.time()
        verdict, failure, res = True, None, {}
        try:
            res = self.simulate("default", jobs, run_dir / "sim", simulator=args.simulator,
                                seed=args.seed, stalls=args.stalls, waves=args.waves)
        except SimulationError as exc:
            verdict, failure = False, str(exc)
        if verdict and not checked:
            verdict, failure = False, NOTHING
        rows = job_figures(jobs, res, CONFIGS["default"], args.stalls)
        chk = checks(rows)
        notes = [f"outputs ({checked} values) compared with the golden program interpreter "
                 "(golden.cim.execute) and with the factored Monarch matmul; without --stalls "
                 "every instruction's cycle cost is compared with the cycle model",
                 "exercised ADC range (adc_rows/adc_bits) of every token compared with "
                 "golden.cim.program_activity by the bench; the report compares each job's "
                 "again and fails the run if they differ"]
        info = dict(engine="cim", config="default", simulator=args.simulator, seed=args.seed,
                    stalls=args.stalls, job=d["base"].name,
                    checked_values=checked if verdict else 0,
                    wall_seconds=round(time.time() - t0, 1))
        ran = [r for r in rows if "cycles" in r]
        return RunResult(
            bit_exact=verdict, failure=failure, checked=checked,
            cycles=sum(r["cycles"] for r in ran),
            model_cycles=sum(r["model_cycles"] for r in ran) if ran else None,
            cycles_ok=chk["adc_ok"] is not False and chk["cycles_ok"] is not False,
            report=dict(config=info, trace=trace_info(trace), jobs=ran, notes=notes,
                        checks=chk),
            extra=dict(wave=find_wave(run_dir / "sim"), jobs=jobs, rows=rows,
                       stalls=args.stalls,
                       layer=(trace.num_experts + trace.num_shared) * len(PROJECTIONS)))

    def write_report(self, run_dir: Path, result: RunResult) -> dict:
        from hdl.cim import CONFIGS, MODULE_NAME

        from .cim_report import write
        r, x = result.report, result.extra
        return write(run_dir, MODULE_NAME, r["config"], r["trace"], x["jobs"], x["rows"],
                     CONFIGS["default"], result.bit_exact, result.failure, x["wave"],
                     r["notes"], x["stalls"], x["layer"])

    def summary(self, result, files) -> None:
        rows, chk = result.report["jobs"], result.report["checks"]
        yes = lambda v: ("not compared (random stalls)" if v is None  # noqa: E731
                         else ("yes" if v else "NO"))
        print()
        print(f"  jobs          {len(rows)}")
        print(f"  {self.title} cycles {result.cycles}")
        print("  bit-exact     " + (f"yes: all {result.checked} output values equal the "
                                    "golden model" if result.bit_exact else "NO"))
        if rows:
            print("  ADC range     " + yes(chk["adc_ok"]) + ": RTL = model, rows/bits per job ("
                  + ", ".join(f"{r['strategy']} {r['adc_rows_rtl']}/{r['adc_bits_rtl']} vs "
                              f"{r['adc_rows_model']}/{r['adc_bits_model']}" for r in rows)
                  + ")")
            print("  cycles        " + yes(chk["cycles_ok"]) + ": RTL = cycle model, per token "
                  "(" + ", ".join(f"{r['strategy']} {r['cycles_per_token']:g} vs "
                                  f"{r['model_cycles_per_token']}" for r in rows) + ")")
        if result.failure:
            print("  failure       " + result.failure.splitlines()[0])
        print_files(files, 22)


RUNNER = CIMRunner()
