"""CIM tile RTL regression (cocotb): bit-exact vs the golden factored matmul, cycles, errors.

One Verilator build of the "default" configuration (64 x 64 arrays, 8 columns per cycle,
64 arrays, n up to 1024) serves every test; each test is one simulator launch running a
batch of jobs (see tb/cim.py):

* every strategy (linear, SparseMap, DenseMap) at n = 64 (b = 8: one line, a partly filled
  DenseMap array that fires several blocks per step) and n = 256 (b = 16), SparseMap and
  DenseMap at n = 1024 (b = 32, 16 and 32 full arrays: one block per step), several
  Monarch matrices sharing DenseMap arrays (one expert's gate/up/down at n = 256, two
  matrices at n = 64), an expert projection in Monarch form fed with the tokens a MoE
  trace routes to its hottest expert, and extreme operands;
* random valid/ready stalls on all three streams (data checked element by element against
  the program interpreter and ``Monarch.matmul``), and a run without stalls where every
  instruction's cycle cost must equal the golden cycle model;
* one malformed program per error class: the sticky error code must match the golden
  interpreter's, the rest of the stream is discarded, and after ``clear`` the next job
  must run bit-exact.

Icarus (the second simulator) runs a smaller batch on the same Verilog.
"""
import numpy as np
import pytest

from golden import monarch as gm
from hdl.cim import CONFIGS
from tb.cim import Job, malformed_jobs, rand_monarch, run_jobs, trace_job

CFG = CONFIGS["default"]


def tokens(rng, b, t):
    return rng.integers(-128, 128, size=(t, b * b)).astype(np.int8)


def heavy_jobs(rng):
    """The jobs whose weight load dominates (16-32 arrays of 512 program words each)."""
    return [Job(f"{s} n=1024", strategy=s, monarchs=[rand_monarch(32, rng)],
                xs=tokens(rng, 32, 1)) for s in ("dense", "sparse")] + [
        Job("linear n=256", strategy="linear", monarchs=[rand_monarch(16, rng)],
            xs=tokens(rng, 16, 2))]


def good_jobs(seed, small=False, heavy=None):
    """Jobs of every kind. ``heavy``: which of :func:`heavy_jobs` to include (all if None)."""
    rng = np.random.default_rng(seed)
    jobs = [Job(f"{s} n=64", strategy=s, monarchs=[rand_monarch(8, rng)], xs=tokens(rng, 8, 3))
            for s in ("dense", "sparse", "linear")]
    if small:
        return jobs[:2] + [Job("dense n=256", strategy="dense",
                               monarchs=[rand_monarch(16, rng)], xs=tokens(rng, 16, 1))]
    jobs += [Job(f"{s} n=256", strategy=s, monarchs=[rand_monarch(16, rng)],
                 xs=tokens(rng, 16, 2)) for s in ("dense", "sparse")]
    hv = heavy_jobs(rng)
    jobs += [hv[i] for i in (range(len(hv)) if heavy is None else heavy)]
    jobs.append(Job("dense n=256, one expert's gate/up/down sharing arrays", strategy="dense",
                    monarchs=[rand_monarch(16, rng) for _ in range(3)], xs=tokens(rng, 16, 1)))
    jobs.append(Job("dense n=64, two matrices", strategy="dense",
                    monarchs=[rand_monarch(8, rng, "int32"), rand_monarch(8, rng, "int8_sat")],
                    xs=tokens(rng, 8, 2)))
    jobs.append(trace_job(seed))
    # extremes: all -128 (largest sums; saturating requant, saturating mid)
    full = np.full((8, 8, 8), -128, np.int8)
    jobs.append(Job("extremes n=64", strategy="sparse",
                    monarchs=[gm.Monarch(full, full, ("requant", 65535, 31), "int32")],
                    xs=np.full((1, 64), -128, np.int8)))
    full = np.full((16, 16, 16), -128, np.int8)
    jobs.append(Job("extremes n=256", strategy="dense",
                    monarchs=[gm.Monarch(full, full, "int8_sat", "int32")],
                    xs=np.full((1, 256), -128, np.int8)))
    return jobs


# under stalls each seed runs a share of the heavy jobs; the cycle test runs them all
HEAVY_SHARE = {1: (0, 2), 2: (1,)}
# Verilator's stall kind per seed (a profile of its own per stream: long stall runs, and
# streams starved for hundreds of cycles); Icarus runs the classic uniform stalls
STALL_KIND = {1: "bursty", 2: "starve"}


def check_profiles(meta, kind):
    """The stall kind reached the bench, one profile per stream."""
    prof = meta["profiles"]
    assert sorted(prof) == ["act", "prog", "res"]
    if kind == "mixed":
        assert len({p.split("(")[0] for p in prof.values()}) == 3, prof
    else:
        assert all(p.startswith(f"StallProfile.{kind}(") for p in prof.values()), prof


@pytest.mark.cocotb
@pytest.mark.parametrize("seed", [1, 2])
def test_cim_regression_with_stalls(simulator, seed, tmp_path):
    jobs = good_jobs(seed, small=simulator == "icarus", heavy=HEAVY_SHARE[seed])
    if simulator == "icarus":
        jobs += malformed_jobs(CFG, seed)[:2] + good_jobs(seed + 10, small=True)[:1]
    kind = STALL_KIND[seed] if simulator == "verilator" else None
    r = run_jobs(jobs, simulator=simulator, test_dir=tmp_path, seed=seed, stalls=True,
                 stall_profile=kind)
    assert not r["meta"]["no_stalls"]
    if kind:
        check_profiles(r["meta"], kind)
    else:
        assert r["meta"]["p_valid"] < 1.0
    assert len(r["total"]) == len(jobs)


@pytest.mark.cocotb
def test_cim_cycles_match_model(tmp_path):
    jobs = good_jobs(3)
    r = run_jobs(jobs, test_dir=tmp_path, seed=3, stalls=False)
    assert r["meta"]["no_stalls"]
    assert len(r["costs"]) > 100 and (r["costs"] > 0).all()


@pytest.mark.cocotb
def test_cim_malformed_programs_and_recovery(tmp_path):
    """Every branch of the tile's program checks (tb.cim.malformed_jobs; docs/cim.md's
    error table): the golden's error code, the rest of the stream discarded, no result
    after the error, and after ``clear`` an exact job; a different stall kind per stream."""
    rng = np.random.default_rng(4)
    jobs = []
    bads = malformed_jobs(CFG, 4)
    for i, bad in enumerate(bads):
        jobs.append(bad)
        # an exact job after every other malformed one and after the last (each malformed
        # job starts with a clear; the recovery's weight load dominates the run time)
        if i % 2 or i == len(bads) - 1:
            jobs.append(Job(f"recovery after {bad.name}", strategy="dense",
                            monarchs=[rand_monarch(8, rng)], xs=tokens(rng, 8, 1)))
    r = run_jobs(jobs, test_dir=tmp_path, seed=4, stalls=True, stall_profile="mixed")
    check_profiles(r["meta"], "mixed")
    assert len(r["total"]) == len(jobs)
