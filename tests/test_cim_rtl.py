"""CIM tile RTL regression (cocotb): bit-exact vs the golden factored matmul, cycles, errors.

One Verilator build of the "default" configuration (32 x 32 arrays, 4 columns per cycle,
n up to 256) serves every test; each test is one simulator launch running a batch of
jobs (see tb/cim.py):

* every strategy (linear, SparseMap, DenseMap) at n = 64 and SparseMap/DenseMap at
  n = 256, two Monarch matrices sharing DenseMap arrays, and an expert projection in
  Monarch form fed with the tokens a MoE trace routes to its hottest expert;
* random valid/ready stalls on all three streams (data checked), and a run without
  stalls where every instruction's cycle cost must equal the golden cycle model;
* one malformed program per error class: the sticky error code must match the golden
  interpreter's, the rest of the stream is discarded, and after ``clear`` the next job
  must run bit-exact.
"""
import numpy as np
import pytest

from golden import monarch as gm
from hdl.cim import CONFIGS
from tb.cim import Job, malformed_jobs, rand_monarch, run_jobs, trace_job

CFG = CONFIGS["default"]


def tokens(rng, b, t):
    return rng.integers(-128, 128, size=(t, b * b)).astype(np.int8)


def good_jobs(seed, small=False):
    rng = np.random.default_rng(seed)
    jobs = [Job(f"{s} n=64", strategy=s, monarchs=[rand_monarch(8, rng)], xs=tokens(rng, 8, 3))
            for s in ("dense", "sparse", "linear")]
    if small:
        return jobs[:2]
    jobs += [Job(f"{s} n=256", strategy=s, monarchs=[rand_monarch(16, rng)],
                 xs=tokens(rng, 16, 2)) for s in ("dense", "sparse")]
    jobs.append(Job("dense n=64, two matrices", strategy="dense",
                    monarchs=[rand_monarch(8, rng, "int32"), rand_monarch(8, rng, "int8_sat")],
                    xs=tokens(rng, 8, 2)))
    jobs.append(trace_job(seed))
    # extremes: all -128 (largest sums, saturating requant)
    full = np.full((8, 8, 8), -128, np.int8)
    jobs.append(Job("extremes", strategy="sparse",
                    monarchs=[gm.Monarch(full, full, ("requant", 65535, 31), "int32")],
                    xs=np.full((1, 64), -128, np.int8)))
    return jobs


@pytest.mark.cocotb
@pytest.mark.parametrize("seed", [1, 2])
def test_cim_regression_with_stalls(simulator, seed, tmp_path):
    jobs = good_jobs(seed, small=simulator == "icarus")
    if simulator == "icarus":
        jobs += malformed_jobs(CFG, seed)[:2] + good_jobs(seed + 10, small=True)[:1]
    r = run_jobs(jobs, simulator=simulator, test_dir=tmp_path, seed=seed, stalls=True)
    assert not r["meta"]["no_stalls"] and r["meta"]["p_valid"] < 1.0
    assert len(r["total"]) == len(jobs)


@pytest.mark.cocotb
def test_cim_cycles_match_model(tmp_path):
    jobs = good_jobs(3)
    r = run_jobs(jobs, test_dir=tmp_path, seed=3, stalls=False)
    assert r["meta"]["no_stalls"]
    assert len(r["costs"]) > 100 and (r["costs"] > 0).all()


@pytest.mark.cocotb
def test_cim_malformed_programs_and_recovery(tmp_path):
    rng = np.random.default_rng(4)
    jobs = []
    for bad in malformed_jobs(CFG, 4):
        jobs.append(bad)
        jobs.append(Job(f"recovery after {bad.name}", strategy="dense",
                        monarchs=[rand_monarch(8, rng)], xs=tokens(rng, 8, 1)))
    r = run_jobs(jobs, test_dir=tmp_path, seed=4, stalls=True)
    assert len(r["total"]) == len(jobs)
