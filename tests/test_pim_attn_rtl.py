"""cocotb run of decode attention on the Logic-PIM unit (small config, Verilator): the
bench of tests/test_pim_rtl.py (tb/pim.py) on attention programs (SET_KV, APPEND_KV,
ATTN mixed with GEMM work and bad instructions). Timed jobs equal golden.pim.predict
cycle for cycle and command for command; stalled jobs (bursty, starving) are checked
on every value, ``last`` flag and error bit; zero DRAM timing violations."""
import numpy as np
import pytest

from hdl.pim import CONFIGS
from tb import pim as tbp
from test_pim_attn_amaranth import attention_program, chained_program

CFG = CONFIGS["small"]


@pytest.mark.cocotb
def test_pim_attention_verilator(tmp_path):
    rng = np.random.default_rng(31)
    # the stalled jobs start with 200 NOPs: the instruction stream's stalls are felt
    chained = [(8, 40), (1, 3), (4, 40), (2, 17)]
    jobs = [dict(name="attn0", timed=True, program=attention_program(CFG, rng)),
            dict(name="chain1", timed=False, stall="bursty",
                 program=chained_program(CFG, rng, chained, lead=200)),
            dict(name="attn2", timed=True, program=attention_program(CFG, rng, gemms=False)),
            dict(name="chain3", timed=True, program=chained_program(CFG, rng, chained[::-1])),
            dict(name="chain4", timed=False, stall="starve",
                 program=chained_program(CFG, rng, chained, lead=200))]
    res = tbp.run_jobs(CFG, jobs, tmp_path, "verilator", seed=5)
    assert int(res["violations"]) == 0
    timed = res["timed"].astype(bool)
    assert np.array_equal(res["cycles_rtl"][timed], res["cycles_model"][timed])
    assert (res["cycles_model"][timed] > 0).all()
    for k in ("instr", "din", "out"):
        assert res[f"stall_{k}"][~timed].max() >= 20, k
