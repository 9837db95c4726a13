"""Sparse Tensor Core jobs on the pyverilator fast lane (no cocotb).

The same job as the cocotb path, cycle for cycle: jobs are encoded by
:func:`sim.sptc.encode_jobs` (weight beats, activation words, SEL, golden
output, predicted cycles), and the bench is ``tb.sptc.bench`` itself, the one
the cocotb test runs: LOAD phase then MATMUL phase per job, the same
stream agents with the same random valid/ready stalls drawn from the same seed
in the same order, and the same scoreboard (every output element against the
golden, each written exactly once, the error status, and - with stalls off -
the cycle count against ``golden.sptc``'s prediction). So for a given seed the
fast lane and the cocotb bench see identical stimulus and must report
identical outputs and cycle counts (``tests/test_fastlane.py`` checks this).

The bench talks to the design only through ``io.set/get/settle/tick``, so the
Amaranth-simulator driver (``sim.sptc_amaranth``) runs the very same code.

    >>> res = sim.sptc_fast.run_batch(cfg, [JobSpec("a", w, x, sel)], seed=3)
    >>> res["j0_out"], res["j0_cycles"]
"""
from __future__ import annotations

import numpy as np

import golden
from golden import sptc as gs
from golden.errors import FormatError
from tb.cocotb_run import SimulationError
from tb.common import BenchTimeout, Scoreboard, StreamRuleError, check_stall_profile, run_sync
from tb.sptc import bench

from . import fastlane
from .sptc import JobSpec, as_weight, encode_jobs

_builds: dict = {}


def build_design(cfg: gs.SpTCConfig) -> fastlane.FastBuild:
    """The fast-lane build of ``cfg`` (built once, cached on disk and in this process)."""
    if cfg not in _builds:
        from hdl import sptc

        from .sptc import design_verilog
        v = design_verilog(cfg)
        tag = f"sptc_r{cfg.rows}c{cfg.cols}k{cfg.max_k}t{cfg.max_tokens}l{cfg.sel_lanes}d{cfg.drain_rows}"
        _builds[cfg] = fastlane.build(tag, v, sptc.MODULE_NAME)
    return _builds[cfg]


def check(sb: Scoreboard, what: str) -> None:
    """Scoreboard verdict -> SimulationError, like a failing cocotb run."""
    try:
        sb.assert_clean()
    except AssertionError as exc:
        raise SimulationError(f"{what}: {exc}") from None


RESET_CYCLES = 2  # as tb.common.Harness.start


def run_encoded(cfg: gs.SpTCConfig, job: dict, *, seed: int = 1, stalls: bool = True,
                progress=None, stall_profile: str | None = None) -> dict:
    """Run an already encoded batch on a fresh model of the cached build."""
    check_stall_profile(stall_profile)
    model = fastlane.Model(build_design(cfg))
    model.reset(RESET_CYCLES)
    try:
        res, sb, cycles = run_sync(bench(model, job, seed=seed, stalls=stalls,
                                         progress=progress, stall_kind=stall_profile))
    except (BenchTimeout, StreamRuleError) as exc:
        raise SimulationError(f"sptc fast lane: {exc}") from None
    check(sb, "sptc fast lane")
    res["harness_cycles"] = cycles
    return res


def run_batch(cfg: gs.SpTCConfig, specs: list[JobSpec], *, seed: int = 1,
              stalls: bool = True, progress=None, stall_profile: str | None = None) -> dict:
    """Several jobs on the fast lane; same jobs, results and checks as ``sim.sptc.run_batch``.

    Returns ``j<i>_out`` (int64 output of good jobs), ``j<i>_cycles`` (the DUT's
    cycle counter for the MATMUL phase), ``j<i>_error`` (its error status) and
    ``harness_cycles`` (clock cycles simulated after reset). A scoreboard
    mismatch or a hang raises ``SimulationError``. No waveforms here: the fast
    lane replays the cocotb bench's stimulus exactly, so rerun the same specs
    and seed with ``sim.sptc.run_batch(..., waves=True)`` to look at one.
    """
    return run_encoded(cfg, encode_jobs(cfg, specs), seed=seed, stalls=stalls,
                       progress=progress, stall_profile=stall_profile)


def run(weight, x, sel=None, mode: str | None = None, out="int32", *, nmv=None,
        config: gs.SpTCConfig | None = None, seed: int = 1, stalls: bool = False):
    """``sim.sptc.run`` on the fast lane: (output in the mode's dtype, cycle count)."""
    cfg = config or gs.SpTCConfig()
    w = as_weight(weight, mode, nmv)
    if not isinstance(x, np.ndarray) or x.dtype != np.int8 or x.ndim != 2:
        raise FormatError(f"x: expected a 2-D int8 array (k x tokens), got "
                          f"{getattr(x, 'dtype', type(x).__name__)} {getattr(x, 'shape', '')}")
    gs.plan(cfg, w, x.shape, sel, out)
    res = run_batch(cfg, [JobSpec("user", w, x, sel, out)], seed=seed, stalls=stalls)
    return res["j0_out"].astype(golden.parse_out(out).out_dtype), int(res["j0_cycles"])
