"""``python -m sim run``: one MoE trace step through the RTL, with waveform and report.

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
2 cores); later runs reuse the build from ``build/sim_build/`` (under the working directory or
``$MOE_RTL_BUILD``).

Exit status: 0 when everything is bit-exact and the cycle checks pass, 1 on a
mismatch or simulation failure, 2 on bad options, a bad trace file or a run folder
that may not be used.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from golden.errors import FormatError
from golden.schedule import CAPACITY_POLICIES, DISPATCHES
from tb.common import STALL_KINDS

from . import runners, runopts
from tb.cocotb_run import SIMULATORS
from .rundir import DEFAULT_PARENT
from .rundir import prepare as prepare_run_dir
from .runners import ENGINES

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
                        "dispatcher, glue, combine; gated-FFN experts), sptc (Sparse Tensor "
                        "Core alone), pim (Logic-PIM, decode-only steps), attn (decode "
                        "attention on the Logic-PIM: KV cache, ATTN), cim (CIM tile, Monarch "
                        "expert projection)")
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
                   help="moe, sptc: SpTC weight mode (default: samoyeds (1,2,32))")
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


def run(args) -> int:
    """``python -m sim run``: the engine's runner (:mod:`sim.runners`) checks, runs and
    reports; the run folder is prepared between its checks and the run."""
    runner = runners.get(args.engine)
    plan = runner.plan(args)
    run_dir = prepare_run_dir(args.run_dir or DEFAULT_PARENT / plan.run_name,
                              default=args.run_dir is None)
    result = runner.execute(plan, run_dir)
    if result is None:
        return 1
    files = runner.write_report(run_dir, result)
    runner.summary(result, files)
    return 0 if result.ok else 1


def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.cmd == "run":
            runopts.check_common(args)
            return run(args)
    except FormatError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 2
