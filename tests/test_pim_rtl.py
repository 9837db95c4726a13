"""cocotb regression of the Logic-PIM unit (small config) on Verilator and Icarus.

One build per simulator; every run strings many jobs together (tb/pim.py):
random instruction streams with bad instructions mixed in, decode-stage MoE
from the default routing trace (every expert's weights resident in the banks,
its routed tokens in the buffer), and a long weight stream. Timed jobs (no
stalls) must match golden.pim.predict cycle for cycle and command for command;
stalled jobs (random valid/ready on all three streams) are checked on data and
error bits. The independent timing checker must see zero violations.
"""
import numpy as np
import pytest

from hdl.pim import CONFIGS
from sim import traces
from tb import pim as tbp

CFG = CONFIGS["small"]


def _jobs(seed: int, full: bool) -> list[dict]:
    rng = np.random.default_rng(seed)
    jobs = [dict(name="random0", timed=True,
                 program=tbp.random_program(CFG, rng, first_gemm_unloaded=True))]
    for i in range(5 if full else 1):
        jobs.append(dict(name=f"random{i + 1}", timed=bool(i % 2), program=tbp.random_program(CFG, rng)))
    if full:
        progs = tbp.trace_programs(CFG, traces.load_default(), rng, steps=3, rows=28)
        for i, p in enumerate(progs):
            jobs.append(dict(name=f"trace{i}", timed=(i % 2 == 0), program=p))
        jobs.append(dict(name="stream", timed=True, program=tbp.stream_program(CFG, 2048, 1)))
    return jobs


def _check(res, jobs):
    assert int(res["violations"]) == 0
    timed = res["timed"].astype(bool)
    assert timed.any() and (~timed).any()
    assert np.array_equal(res["cycles_rtl"][timed], res["cycles_model"][timed])


@pytest.mark.cocotb
@pytest.mark.parametrize("seed", [1, 2])
def test_pim_regression_verilator(seed, tmp_path):
    jobs = _jobs(seed, full=True)
    res = tbp.run_jobs(CFG, jobs, tmp_path, "verilator", seed=seed)
    _check(res, jobs)
    # the long weight stream, measured on the RTL: every refresh in the window
    # costs tRFC; the rest of the time the bundles deliver >= 90 % of peak
    i = [j["name"] for j in jobs].index("stream")
    st = tbp.stream_stats(CFG, res[f"cmds{i}"])
    assert st["words"] == 2048 and st["refs"] >= 1
    assert st["fraction_of_attainable"] >= 0.95 and st["fraction"] >= 0.85, st


@pytest.mark.cocotb
def test_pim_regression_icarus_and_verilator(simulator, tmp_path):
    """The same (shorter) bench on both simulators."""
    jobs = _jobs(7, full=False)
    res = tbp.run_jobs(CFG, jobs, tmp_path, simulator, seed=7)
    _check(res, jobs)
