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


def check_profiles(res, kind):
    """The stall kind reached the bench: a profile of its own on each of the 7 streams."""
    got = str(res["stall_profiles"])
    for stream in tbm.IN_STREAMS + tbm.OUT_STREAMS:
        assert f"'{stream}': StallProfile." in got, got
    kinds = ("bursty", "starve", "uniform") if kind == "mixed" else (kind,)
    assert all(f"StallProfile.{k}(" in got for k in kinds), got
    if kind != "mixed":
        assert got.count(f"StallProfile.{kind}(") == 7, got


@pytest.mark.cocotb
def test_moe_layer_rtl(tmp_path):
    """Classic random stalls; the bad inputs (tb.moe.bad_inputs: every error class of
    the top, docs/moe.md) at the end."""
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


@pytest.mark.cocotb
@pytest.mark.parametrize("kind", ["bursty", "starve"])
def test_moe_layer_long_stalls(kind, tmp_path):
    """The short run of test_moe_layer_both_simulators with every one of the 7 streams
    under a profile of its own: long stall runs (bursty), or valid/ready low for hundreds
    of cycles (starve); bit-exact, and the stream rules on ``y`` and ``trace`` (the
    starving run caught the trace arbiter replacing a stalled Logic-PIM entry)."""
    layers = _layers(seed=11, steps=1)[2:4]
    res = tbm.run(MCFG, layers, tmp_path, "verilator", seed=11, stall_profile=kind)
    check_profiles(res, kind)
    assert [int(res[f"l{i}_steps"]) for i in range(2)] == [1, 1]


@pytest.mark.slow
@pytest.mark.cocotb
def test_moe_default_top(tmp_path):
    """The default top (the build `make sim` runs), no stalls: `make sim`'s own run (the
    default trace's busiest mixed step, seed 1, dynamic capacity, Duplex co-processing)
    bit-exact against golden.moe with every job at or above its unit's cycle model; then
    a decode step with SpTC-only dispatch, where every job runs with the Logic-PIM idle
    and its cycles must equal the model."""
    from sim import moe, traces
    mcfg = CONFIGS["default"]
    tr = traces.load_default()
    assert tr.hidden <= mcfg.max_hidden          # make sim runs it unscaled
    step = moe.pick_step(tr, mcfg, None)
    runs = [("make sim", step, "duplex_coprocess"),
            ("sptc only", next(i for i in range(tr.steps) if tr.step(i).tokens <= 8),
             "sptc_only")]
    for name, st, dispatch in runs:
        prep = moe.prepare(mcfg, tr, st, seed=1, capacity="dynamic", dispatch=dispatch,
                           mode="dense", alpha=2.0)
        res = moe.run(mcfg, "default", prep, tmp_path / dispatch, stalls=False, waves=False)
        an = moe.analyse(prep, res, stalls=False)
        assert an["cycles_ok"], (name, an["problems"])
        assert int(res["checked"]) == tr.step(st).tokens * tr.hidden     # every element
        assert an["bounded"] == len(prep["jobs"]) > 0, name
        if dispatch == "sptc_only":
            assert an["compared_equal"] == len(prep["jobs"]), name
        else:
            assert {j["unit"] for j in prep["jobs"]} == {"sptc", "pim"}
