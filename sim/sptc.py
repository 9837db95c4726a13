"""Run the Sparse Tensor Core RTL on user data (cocotb + Verilator or Icarus).

    >>> y, cycles = sim.sptc.run(w, x, sel=[0, 3], mode="2:4", out="int32")

``run`` validates its inputs like the golden does (``FormatError`` naming the
field), tiles the job with ``golden.sptc.plan``, simulates it, and returns the
RTL's output, already checked element by element against ``golden.ssmm``
inside the bench (a mismatch raises ``SimulationError``).
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

import golden
from golden import sptc as gs
from golden.errors import FormatError

from tb import cocotb_run
from tb.toolchain import BUILD
from tb.common import check_stall_profile, stall_env

REG_NAMES = gs.REG_NAMES


ECP5_MODELS = Path(__file__).parent / "models" / "ecp5_prims.v"


@lru_cache(maxsize=8)
def design_verilog(cfg: gs.SpTCConfig, target: str | None = None) -> str:
    """The SpTC's Verilog for ``cfg`` (elaborated once per process: the 8 x 8 default
    takes ~25 s, the small build ~5 s, and a test often runs one build twice)."""
    from hdl import sptc
    from hdl.verilog import to_verilog
    v = to_verilog(sptc.build(cfg), sptc.MODULE_NAME, sptc.config_params(cfg), target)
    if target == "ecp5":
        v += "\n" + ECP5_MODELS.read_text()
    return v


def build_design(cfg: gs.SpTCConfig, simulator: str = "verilator", waves: bool = False,
                 target: str | None = None):
    """Build the SpTC for a simulator. ``target="ecp5"`` simulates the FPGA flow's
    flavour (hdl.fpga primitives) against the behavioural primitive models in
    ``sim/models/ecp5_prims.v``."""
    from hdl import sptc
    v = design_verilog(cfg, target)
    tag = (f"sptc_r{cfg.rows}c{cfg.cols}k{cfg.max_k}t{cfg.max_tokens}"
           f"l{cfg.sel_lanes}d{cfg.drain_rows}{'_' + target if target else ''}")
    # The ECP5 flavour is thousands of primitive instances (a TRELLIS_FF per
    # replicated bit). At -Os its C++ compile took 5 min of its test's 6.4 (the
    # run ~45 s), so it builds at the default level like the rest.
    return cocotb_run.build(tag, v, sptc.MODULE_NAME, simulator=simulator, waves=waves)


def as_weight(weight, mode: str | None, nmv=None):
    """Bring a user weight into the format of ``mode`` (which must already conform)."""
    if mode is None:
        return weight
    if mode not in gs.MODES:
        raise FormatError(f"mode: unknown mode {mode!r} (expected one of {gs.MODES})")
    if mode == "dense":
        if isinstance(weight, (golden.Sparse24, golden.SamoyedsWeight)):
            return weight.to_dense()
        return weight
    if mode == "2:4":
        if isinstance(weight, golden.Sparse24):
            return weight
        if isinstance(weight, golden.SamoyedsWeight):
            weight = weight.to_dense()
        return golden.Sparse24.from_dense(weight)
    if isinstance(weight, golden.SamoyedsWeight):
        return weight
    if nmv is None:
        raise FormatError("nmv: mode 'samoyeds' with a dense weight needs nmv=(N, M, V)")
    return golden.SamoyedsWeight.from_dense(weight, *nmv)


@dataclass
class JobSpec:
    """One job for a batch run; ``expect_err`` != 0 marks a bad-input job."""
    name: str
    weight: object
    x: np.ndarray
    sel: object = None
    out: object = "int32"
    expect_err: int = 0
    mutate: object = None   # callable(Job) -> None: corrupts beats/regs for bad-input tests
    reset_at: int = 0       # > 0: reset the unit this many cycles into the job (cocotb and
                            # fast lane only); the job is abandoned, the next must be exact
    rejected: bool = False  # the job's registers fail the CHECK-cycle validation: the unit
                            # must take no input beat and emit no result beat
    load_mutate: object = None  # callable(dict) -> None: corrupts the LOAD phase's registers
    load_err: int = 0       # != 0: the LOAD must be refused with exactly these error bits
                            # (no activation word taken); the MATMUL phase is skipped
    loads: tuple = ()       # (matrix, tok_base) LOADs after x's (x loads at tok_base 0);
                            # the MATMUL then reads the buffer they leave
                            # (golden.sptc.ActBuffer): K from the weight, n_tokens the
                            # highest token loaded + 1, SEL indices into the buffer


def encode_jobs(cfg: gs.SpTCConfig, specs: list[JobSpec]) -> dict:
    arrays = {"n_jobs": np.int64(len(specs)), "cols": np.int64(cfg.cols),
              "sel_lanes": np.int64(cfg.sel_lanes), "drain_rows": np.int64(cfg.drain_rows)}
    for i, s in enumerate(specs):
        x = s.x
        if s.loads:
            buf = gs.ActBuffer(cfg)
            for mat, base in ((s.x, 0), *s.loads):
                buf.load(mat, base)
            n_tok = max(base + mat.shape[1] for mat, base in ((s.x, 0), *s.loads))
            x = buf.operand(s.weight.shape[1], n_tok, s.sel if s.sel is not None
                            else np.arange(n_tok))
        job = gs.plan(cfg, s.weight, x.shape, s.sel, s.out)
        if s.expect_err or s.reset_at or s.load_err:  # bad input or reset: no output, no cycles
            expected, pred = np.zeros((0, 0), np.int64), -1
        else:
            expected, pred = golden.ssmm(s.weight, x, job.sel, s.out), \
                gs.predict_job_cycles(cfg, job)
        if s.mutate is not None:
            s.mutate(job)
        lregs = gs.load_regs(s.x.shape)
        if s.load_mutate is not None:
            s.load_mutate(lregs)
        p = f"j{i}_"
        arrays.update({
            p + "name": np.array(s.name), p + "regs": np.array([job.regs[k] for k in REG_NAMES]),
            p + "load_regs": np.array([lregs[k] for k in REG_NAMES]),
            p + "act": gs.act_words(s.x).astype(np.int64), p + "sel": job.sel.astype(np.int64),
            p + "v0": job.v0, p + "v1": job.v1, p + "nib": job.nib, p + "idx": job.idx,
            p + "expected": expected, p + "expect_err": np.int64(s.expect_err),
            p + "reset_at": np.int64(s.reset_at),
            p + "rejected": np.int64(bool(s.rejected)), p + "load_err": np.int64(s.load_err),
            p + "out_rows": np.int64(job.m * max(1, -(-len(job.sel) // cfg.cols))),
            p + "load_cycles": np.int64(gs.predict_load_cycles(s.x.shape)),
            p + "pred_cycles": np.int64(pred), p + "n_loads": np.int64(len(s.loads)),
        })
        for n, (mat, base) in enumerate(s.loads, 1):
            regs = gs.load_regs(mat.shape, base)
            arrays.update({p + f"act{n}": gs.act_words(mat).astype(np.int64),
                           p + f"load_regs{n}": np.array([regs[k] for k in REG_NAMES]),
                           p + f"load_cycles{n}": np.int64(gs.predict_load_cycles(mat.shape))})
    return arrays


def run_batch(cfg: gs.SpTCConfig, specs: list[JobSpec], *, simulator: str = "verilator",
              seed: int = 1, stalls: bool = True, waves: bool = False,
              workdir: Path | None = None, progress=None, target: str | None = None,
              stall_profile: str | None = None) -> dict:
    """Run several jobs in one simulation (one build, one simulator launch).

    ``progress(done_jobs)`` is called from this thread while the simulator runs;
    ``target`` as in :func:`build_design`; ``stall_profile`` (with ``stalls``): None
    for the classic random stalls, or "uniform", "bursty", "starve", "mixed"
    (``tb.common.stall_profiles``: a profile of its own per stream).
    """
    check_stall_profile(stall_profile)
    b = build_design(cfg, simulator, waves, target)
    BUILD.mkdir(parents=True, exist_ok=True)
    workdir = Path(workdir or tempfile.mkdtemp(prefix="sptc_", dir=BUILD)).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    np.savez(workdir / "job.npz", **encode_jobs(cfg, specs))
    env = {"MOE_JOB": str(workdir / "job.npz"), "MOE_RESULT": str(workdir / "result.npz"),
           "MOE_SEED": str(seed), **stall_env(stalls, stall_profile)}
    if progress is None:
        wave = cocotb_run.run(b, "tb.sptc", test_dir=workdir, env=env)
    else:
        env["MOE_PROGRESS"] = str(workdir / "progress.txt")
        wave = cocotb_run.run_polling(b, "tb.sptc", workdir, env, progress)
    with np.load(workdir / "result.npz", allow_pickle=False) as r:
        res = {k: r[k] for k in r.files}
    res["wave"] = wave
    return res


def run(weight, x, sel=None, mode: str | None = None, out="int32", simulator: str = "verilator",
        *, nmv=None, config: gs.SpTCConfig | None = None, seed: int = 1, stalls: bool = False,
        waves: bool = False, workdir: Path | None = None):
    """Run one job on the RTL; return (output array in the mode's dtype, cycle count)."""
    cfg = config or gs.SpTCConfig()
    w = as_weight(weight, mode, nmv)
    if not isinstance(x, np.ndarray) or x.dtype != np.int8 or x.ndim != 2:
        raise FormatError(f"x: expected a 2-D int8 array (k x tokens), got "
                          f"{getattr(x, 'dtype', type(x).__name__)} {getattr(x, 'shape', '')}")
    gs.plan(cfg, w, x.shape, sel, out)  # validate before paying for a build
    res = run_batch(cfg, [JobSpec("user", w, x, sel, out)], simulator=simulator, seed=seed,
                    stalls=stalls, waves=waves, workdir=workdir)
    outmode = golden.parse_out(out)
    return res["j0_out"].astype(outmode.out_dtype), int(res["j0_cycles"])
