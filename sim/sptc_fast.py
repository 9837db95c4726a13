"""Sparse Tensor Core jobs on the pyverilator fast lane (no cocotb).

The same job as the cocotb path, cycle for cycle: jobs are encoded by
:func:`sim.sptc.encode_jobs` (weight beats, activation words, SEL, golden
output, predicted cycles), and :func:`bench` is a line-by-line port of
``tb/sptc.py``'s ``sptc_jobs``: LOAD phase then MATMUL phase per job, the same
stream agents with the same random valid/ready stalls drawn from the same seed
in the same order, and the same scoreboard (every output element against the
golden, each written exactly once, the error status, and - with stalls off -
the cycle count against ``golden.sptc``'s prediction). So for a given seed the
fast lane and the cocotb bench see identical stimulus and must report
identical outputs and cycle counts (``tests/test_fastlane.py`` checks this).

:func:`bench` talks to the design only through ``io.set/get/tick``, so the
Amaranth-simulator driver (``sim.sptc_amaranth``) runs the very same code.

    >>> res = sim.sptc_fast.run_batch(cfg, [JobSpec("a", w, x, sel)], seed=3)
    >>> res["j0_out"], res["j0_cycles"]
"""
from __future__ import annotations

import numpy as np

import golden
from golden import sptc as gs
from golden.errors import FormatError
from tb.common import Scoreboard
from tb.sptc import pack_weights, unpack_result

from . import fastlane
from .cocotb_run import SimulationError
from .sptc import REG_NAMES, JobSpec, as_weight, encode_jobs

_builds: dict = {}


def build_design(cfg: gs.SpTCConfig) -> fastlane.FastBuild:
    """The fast-lane build of ``cfg`` (built once, cached on disk and in this process)."""
    if cfg not in _builds:
        from hdl import sptc
        from hdl.verilog import to_verilog
        v = to_verilog(sptc.build(cfg), sptc.MODULE_NAME, sptc.config_params(cfg))
        tag = f"sptc_r{cfg.rows}c{cfg.cols}k{cfg.max_k}t{cfg.max_tokens}"
        _builds[cfg] = fastlane.build(tag, v, sptc.MODULE_NAME)
    return _builds[cfg]


def stall_probs(rng, stalls: bool):
    """tb.common.stall_probs with the switch as an argument instead of MOE_NO_STALLS."""
    if not stalls:
        return 1.0, 1.0
    return float(rng.uniform(0.4, 0.9)), float(rng.uniform(0.4, 0.9))


async def bench(io, job: dict, *, seed: int = 1, stalls: bool = True, progress=None):
    """Drive the encoded jobs through the DUT behind ``io``; return (results, scoreboard, cycles).

    ``job`` is :func:`sim.sptc.encode_jobs`' dict. ``io`` must be out of reset.
    Results use the cocotb bench's keys: ``j<i>_out``, ``j<i>_cycles``, ``j<i>_error``,
    ``j<i>_start``/``j<i>_end`` (harness cycle around the MATMUL phase).
    ``progress(done_jobs)`` is called after each good job, as the cocotb bench does.
    """
    rng = np.random.default_rng(seed)
    p_valid, p_ready = stall_probs(rng, stalls)
    cols = int(job["cols"])
    w_drv = fastlane.StreamDriver(io, "w", rng, p_valid)
    a_drv = fastlane.StreamDriver(io, "act", rng, p_valid)
    s_drv = fastlane.StreamDriver(io, "sel", rng, p_valid)
    mon = fastlane.StreamMonitor(io, "res", rng, p_ready)
    h = fastlane.Harness(io, [w_drv, a_drv, s_drv, mon])
    io.set("start", 0)
    io.set("clear", 0)
    sb = Scoreboard("sptc (fast lane)")
    results = {}

    async def pulse(name):
        io.set(name, 1)
        await h.step()
        io.set(name, 0)

    async def run_phase(regs, timeout):
        for name, v in zip(REG_NAMES, regs):
            io.set(name, int(v))
        await pulse("start")
        await h.run_until(lambda: io.get("done") == 1, timeout)
        return io.get("cycles"), io.get("error")

    for i in range(int(job["n_jobs"])):
        j = lambda k: job[f"j{i}_{k}"]  # noqa: E731 - mirrors tb/sptc.py
        tag = f"job {i} ({str(j('name'))})"
        # ---- LOAD the activation buffer
        words = j("act")
        a_drv.push(words.tolist())
        cyc, err = await run_phase(j("load_regs").tolist(), timeout=40 * len(words) + 100)
        sb.check(tag, err == 0, f"LOAD raised error 0x{err:x}")
        sb.check(tag, a_drv.idle, "LOAD left activation words unconsumed")
        if not stalls:
            sb.check(tag, cyc == int(j("load_cycles")),
                     f"LOAD took {cyc} cycles, model says {int(j('load_cycles'))}")
        # ---- MATMUL
        beats = pack_weights(j("v0"), j("v1"), j("nib"), j("idx"))
        s_drv.push(j("sel").tolist())
        w_drv.push(beats)
        mon.received.clear()
        timeout = 40 * (len(beats) + len(j("sel")) + int(j("out_rows"))) + 200
        results[f"j{i}_start"] = h.cycle
        cyc, err = await run_phase(j("regs").tolist(), timeout)
        results[f"j{i}_end"] = h.cycle
        expect_err = int(j("expect_err"))
        results[f"j{i}_cycles"] = cyc
        results[f"j{i}_error"] = err
        if expect_err:
            sb.check(tag, err & expect_err == expect_err and err & ~expect_err == 0,
                     f"error status 0x{err:x}, expected 0x{expect_err:x}")
            w_drv.flush()
            s_drv.flush()
            await pulse("clear")
            after = await h.step(lambda: (io.get("error"), io.get("busy")))
            sb.check(tag, after == (0, 0), f"after clear: error/busy = {after}, expected (0, 0)")
            continue
        sb.check(tag, err == 0, f"unexpected error status 0x{err:x}")
        sb.check(tag, w_drv.idle and s_drv.idle, "job finished with input beats unconsumed")
        expected = j("expected")
        m_rows, n_sel = expected.shape
        got = np.zeros((m_rows, n_sel), np.int64)
        seen = np.zeros((m_rows, n_sel), np.int64)
        for word in mon.received:
            data, row, tile, mask = unpack_result(word, cols)
            for c in range(cols):
                if mask >> c & 1:
                    col = tile * cols + c
                    if row < m_rows and col < n_sel:
                        got[row, col] = data[c]
                        seen[row, col] += 1
                    else:
                        sb.check(tag, False, f"result for row {row} column {col} out of range")
        sb.check(tag, (seen == 1).all(),
                 f"{int((seen == 0).sum())} output elements never written, "
                 f"{int((seen > 1).sum())} written twice")
        sb.compare(tag, got, expected.astype(np.int64))
        results[f"j{i}_out"] = got
        if not stalls:
            sb.check(tag, cyc == int(j("pred_cycles")),
                     f"MATMUL took {cyc} cycles, model says {int(j('pred_cycles'))}")
        if progress is not None:
            progress(i + 1)
    return results, sb, h.cycle


def check(sb: Scoreboard, what: str) -> None:
    """Scoreboard verdict -> SimulationError, like a failing cocotb run."""
    try:
        sb.assert_clean()
    except AssertionError as exc:
        raise SimulationError(f"{what}: {exc}") from None


RESET_CYCLES = 2  # as tb.common.Harness.start


def run_encoded(cfg: gs.SpTCConfig, job: dict, *, seed: int = 1, stalls: bool = True,
                progress=None) -> dict:
    """Run an already encoded batch on a fresh model of the cached build."""
    model = fastlane.Model(build_design(cfg))
    model.reset(RESET_CYCLES)
    try:
        res, sb, cycles = fastlane.run_sync(bench(model, job, seed=seed, stalls=stalls,
                                                  progress=progress))
    except TimeoutError as exc:
        raise SimulationError(f"sptc fast lane: {exc}") from None
    check(sb, "sptc fast lane")
    res["harness_cycles"] = cycles
    return res


def run_batch(cfg: gs.SpTCConfig, specs: list[JobSpec], *, seed: int = 1,
              stalls: bool = True, progress=None) -> dict:
    """Several jobs on the fast lane; same jobs, results and checks as ``sim.sptc.run_batch``.

    Returns ``j<i>_out`` (int64 output of good jobs), ``j<i>_cycles`` (the DUT's
    cycle counter for the MATMUL phase), ``j<i>_error`` (its error status) and
    ``harness_cycles`` (clock cycles simulated after reset). A scoreboard
    mismatch or a hang raises ``SimulationError``. No waveforms here: the fast
    lane replays the cocotb bench's stimulus exactly, so rerun the same specs
    and seed with ``sim.sptc.run_batch(..., waves=True)`` to look at one.
    """
    return run_encoded(cfg, encode_jobs(cfg, specs), seed=seed, stalls=stalls,
                       progress=progress)


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
