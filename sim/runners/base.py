"""The runner protocol: what every engine's host-side runner provides.

A runner drives one engine's RTL from the host. The benches (:mod:`sim.bench`) use
its two simulation entry points; ``python -m sim run`` (:mod:`sim.cli`) the other four,
in this order::

    runner = sim.runners.get("pim")
    plan = runner.plan(args)                 # every check; FormatError, nothing written
    run_dir = rundir.prepare(...)            # the run folder (named by plan.run_name)
    result = runner.execute(plan, run_dir)   # simulate -> RunResult (None: no build)
    files = runner.write_report(run_dir, result)  # report.json/md, plots, wave views
    runner.summary(result, files)            # the console lines

Adding an engine means adding one module under ``sim/runners/`` that defines a
:class:`Runner` subclass and names an instance ``RUNNER``, and its name in
:data:`sim.runners.ENGINES`. The helpers below are what several runners share: the
trace and step choice of the CLI, the trace summary of a report, the progress bar.
"""
from __future__ import annotations

import re
import sys
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path

from golden.errors import FormatError

from .. import runopts

NOTHING = "nothing was checked: the run compared no output value"


@dataclass
class Plan:
    """A checked run: ``run_name`` names the default folder under ``build/sim/``;
    ``data`` is the runner's own (trace, jobs, config, ...)."""
    run_name: str
    data: dict = field(default_factory=dict)


@dataclass
class RunResult:
    """What one run on the RTL showed.

    ``bit_exact``: every output compared equal the golden model (inside the cocotb
    bench); ``checked``: how many output values were compared; ``cycles``: the RTL's
    cycles (job cycles summed, or the step's span), ``model_cycles`` the cycle model's
    prediction for the same work (None where the run does not compare cycles);
    ``cycles_ok``: the engine's cycle checks pass (True where it has none beyond the
    bench's); ``report``: the engine's report section (what report.json holds);
    ``extra``: what writing the report needs beyond it (waveform path, busy bits, ...).
    """
    bit_exact: bool
    failure: str | None
    checked: int
    cycles: int
    model_cycles: int | None
    cycles_ok: bool
    report: dict
    extra: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """The run's verdict: exit status 0 of ``python -m sim run``."""
        return self.bit_exact and self.cycles_ok


class Runner(ABC):
    """One engine's host-side runner (see the module docstring)."""

    #: ``--engine`` name and the name in tables and messages
    engine: str = ""
    title: str = ""

    # ----------------------------------------------------------- the benches' entry points
    @abstractmethod
    def build(self, config: str = "default", simulator: str = "verilator",
              waves: bool = False):
        """Compile the engine's build ``config`` (a key of its ``hdl`` package's
        ``CONFIGS``) for ``simulator``; cached, so a later run reuses it."""

    @abstractmethod
    def simulate(self, config: str, jobs, workdir: Path, *, simulator: str = "verilator",
                 seed: int = 1, stalls: bool = False, waves: bool = False,
                 progress=None, stall_profile: str | None = None) -> dict:
        """Run ``jobs`` (the engine's job type) in one simulation of build ``config``;
        every output is checked bit-exactly inside the cocotb bench (a mismatch raises
        ``SimulationError``). ``progress(done_jobs)`` is called while it runs (where the
        bench reports progress); ``stall_profile`` (with ``stalls``) a kind of
        ``tb.common.STALL_KINDS``. Returns the bench's result arrays."""

    # ----------------------------------------------------------- python -m sim run
    @abstractmethod
    def plan(self, args) -> Plan:
        """Check the options, the trace and the step against the build and prepare the
        jobs; raise FormatError at the first problem. Writes nothing."""

    @abstractmethod
    def execute(self, plan: Plan, run_dir: Path) -> RunResult | None:
        """Print the run's header, build and simulate; None when the RTL did not build
        (the error is printed, no report is written)."""

    @abstractmethod
    def write_report(self, run_dir: Path, result: RunResult) -> dict:
        """Write report.json, report.md, plots and the wave views; return
        ``{name: path}`` of the files written."""

    @abstractmethod
    def summary(self, result: RunResult, files: dict) -> None:
        """Print the run's summary and files."""


# --------------------------------------------------------------------------- shared helpers

def load_trace(args, fits, why: str, **gen):
    """The trace (``--trace``, ``--preset`` sized by ``fits``, or the shipped default),
    refused with ``why`` when the engine's build does not hold it."""
    from golden import trace as traces
    if args.preset is not None:
        trace = runopts.preset_trace(args.preset, args.seed, fits, why, **gen)
    else:
        trace = traces.load(args.trace) if args.trace is not None else traces.load_default()
    if not fits(trace.hidden, trace.num_experts):
        raise FormatError(f"trace: hidden = {trace.hidden}, {trace.num_experts} experts: {why}")
    runopts.check_trace_tokens(trace)
    return trace


def pick_step(trace, requested):
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


def trace_info(trace, step_i=None) -> dict:
    """The trace (and step) as a report's ``trace`` section."""
    info = {"preset": trace.preset, "scale": trace.scale, "seed": trace.seed,
            "skew": trace.skew, "steps": trace.steps, "hidden": trace.hidden, "ffn": trace.ffn}
    if step_i is not None:
        st = trace.step(step_i)
        info.update(step=step_i, tokens=int(st.tokens),
                    tokens_per_expert=[int(c) for c in st.tokens_per_expert()],
                    imbalance=round(float(st.imbalance()), 3))
    return info


def find_wave(folder: Path):
    """The waveform a simulation left in ``folder`` (FST first), or None."""
    waves = sorted(folder.glob("*.fst")) + sorted(folder.glob("*.vcd"))
    return waves[0] if waves else None


def config_dict(cfg) -> dict:
    """A SpTC build config as JSON-ready fields (``samoyeds_nm`` as lists)."""
    return {k: (list(map(list, v)) if k == "samoyeds_nm" else v) for k, v in asdict(cfg).items()}


def failure_reason(text: str) -> str | None:
    """The exception line of a cocotb failure (scoreboard mismatch, timeout, ...)."""
    hits = [ln.strip() for ln in text.splitlines()
            if re.match(r"\s*[\w.]*(Error|Timeout|Exception)\b:", ln)]
    return hits[-1][:300] if hits else None


def print_files(files: dict, width: int) -> None:
    print("  files:")
    for name, path in files.items():
        print(f"    {name:<{width}} {path}")


def unit_summary(unit: str, result: RunResult, files: dict) -> None:
    """The console summary of a run with one table of jobs (pim, cim)."""
    rows = result.report["jobs"]
    print()
    print(f"  jobs          {len(rows)}")
    print(f"  {unit} cycles {sum(r['cycles'] for r in rows)}")
    print(f"  bit-exact     " + (f"yes: all {result.checked} output values equal the golden "
                                 "model" if result.bit_exact else "NO"))
    if result.failure:
        print("  failure       " + result.failure.splitlines()[0])
    print_files(files, 10)


class Progress:
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
