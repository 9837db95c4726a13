"""cocotb regression of the MoE-layer top (hdl.moe, small config, Verilator).

One build, one simulation: multi-step traces of three presets (Mixtral-8x7B,
Qwen2-MoE with 4 shared experts, DeepSeek-MoE-16B with 2 shared), scaled to
hidden 32 and at most 16 tokens per step, each under the static (alpha 1: drops
and padding) and the dynamic capacity policy, with Duplex co-processing (both
units busy) or Duplex dispatch (decode-only steps on Logic-PIM), 2:4 weights on
one layer. Random valid/ready stalls on all seven streams. The bench checks
every output element against golden.moe.moe_layer, the executed schedule
(unit, expert, slots, order per unit) against the compiler's program, the error
status, and malformed descriptors / token entries (sticky error bits, no hang).
"""
import numpy as np
import pytest

from hdl.moe import CONFIGS
from tb import moe as tbm

MCFG = CONFIGS["small"]


def _layers(seed: int, steps: int):
    return tbm.make_layers(MCFG, seed, steps)


@pytest.mark.cocotb
def test_moe_layer_rtl(tmp_path):
    layers = _layers(seed=3, steps=3)
    # the run covers what it claims: drops and padding (static), both units, shared experts
    steps = [s for L in layers for s in L["steps"]]
    assert sum(s["dropped"] for s in steps) > 0 and sum(s["padded"] for s in steps) > 0
    units = np.concatenate([s["trace"][:, 0] for s in steps])
    assert (units == 0).any() and (units == 1).any()
    res = tbm.run(MCFG, layers, tmp_path, "verilator", seed=3)
    for li, L in enumerate(layers):
        n = len(L["steps"])
        assert int(res[f"l{li}_steps"]) == n
        jobs = [s["trace"] for s in L["steps"]]
        assert int(res[f"l{li}_sptc_jobs"]) == sum(int((j[:, 0] == 0).sum()) for j in jobs)
        assert int(res[f"l{li}_pim_jobs"]) == sum(int((j[:, 0] == 1).sum()) for j in jobs)


@pytest.mark.cocotb
def test_moe_layer_both_simulators(simulator, tmp_path):
    """A shorter run (Qwen2-MoE with shared experts, both policies, one step) on
    Verilator and Icarus."""
    layers = _layers(seed=11, steps=1)[2:4]
    res = tbm.run(MCFG, layers, tmp_path, simulator, seed=11)
    assert [int(res[f"l{i}_steps"]) for i in range(2)] == [1, 1]
