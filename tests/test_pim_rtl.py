"""cocotb regression of the Logic-PIM unit (small config) on Verilator and Icarus.

One build per simulator; every run strings many jobs together (tb/pim.py):
random instruction streams with bad instructions mixed in, decode-stage MoE
from the default routing trace (every expert's weights resident in the banks,
its routed tokens in the buffer), and a long weight stream. Timed jobs (no
stalls) must match golden.pim.predict cycle for cycle and command for command;
stalled jobs (valid/ready stalls on all three streams: uniform, bursty, or
starving each stream for hundreds of cycles) are checked on data and error bits;
the StreamMonitor on ``out`` checks the stream rules every cycle. The independent
timing checker (HBM3 rules of golden.hbm3 included) must see zero violations.
"""
import json

import numpy as np
import pytest

from hdl.pim import CONFIGS
from golden import trace as traces
from tb import pim as tbp

CFG = CONFIGS["small"]


def _short_instrs(rng, n: int = 96) -> "tbp.gp.Program":
    """Mostly one-cycle instructions (a one-row GEMM every 16th): the unit takes an
    instruction nearly every cycle, so the instr stream's stalls are felt."""
    p = tbp.gp.Program(CFG).load_tokens(rng.integers(-128, 128, (2, CFG.elems), dtype=np.int8))
    for i in range(n):
        k = i % 16
        if k == 0:
            p.gemm(int(rng.integers(0, CFG.words)), 1)
        elif k % 3 == 1:
            p.set_out(["int32", "int8_sat", ("requant", 300, 9)][int(rng.integers(0, 3))])
        else:
            p.nop() if k % 3 == 2 else p.fence()
    return p


def _jobs(seed: int, full: bool, stall: str | None = None) -> list[dict]:
    """``stall``: the stall kind of every untimed job (None: MOE_STALL_PROFILE or uniform)."""
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
        jobs.append(dict(name="short_instrs", timed=False, program=_short_instrs(rng)))
    for j in jobs:
        if not j["timed"]:
            j["stall"] = stall
    return jobs


def _check(res, jobs):
    assert int(res["violations"]) == 0
    timed = res["timed"].astype(bool)
    assert timed.any() and (~timed).any()
    assert np.array_equal(res["cycles_rtl"][timed], res["cycles_model"][timed])


@pytest.mark.cocotb
@pytest.mark.parametrize("seed, stall, longest", [(1, "bursty", 20), (2, "starve", 150)])
def test_pim_regression_verilator(seed, stall, longest, tmp_path):
    """Seed 1 stalls the untimed jobs in bursts, seed 2 starves every stream for
    hundreds of cycles: the longest hold-up of each stream (instr / din valid low with
    data waiting, out ready low with a result waiting) is at least ``longest`` cycles."""
    jobs = _jobs(seed, full=True, stall=stall)
    res = tbp.run_jobs(CFG, jobs, tmp_path, "verilator", seed=seed)
    _check(res, jobs)
    untimed = ~res["timed"].astype(bool)
    for k in ("instr", "din", "out"):
        assert res[f"stall_{k}"][untimed].max() >= longest, (k, res[f"stall_{k}"])
        assert res[f"stall_{k}"][~untimed].max() == 0, k       # timed jobs: no stalls
    assert all(stall in s for s, t in zip(json.loads(str(res["stalls"])), ~untimed) if not t)
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
