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
The default top's test runs `make sim`'s step through the same bench, recording.
"""
from types import SimpleNamespace

import numpy as np
import pytest

from hdl.moe import CONFIGS
from tb import moe as tbm
from tb.moe_bench import recorded

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



def test_job_file_layout():
    """The job file the bench reads: every layer's cycle budgets (the defaults or the
    layer's own), the malformed inputs only when asked for, recording of one layer."""
    layers = _layers(seed=5, steps=1)[:2]
    a = tbm.make_run(MCFG, layers)
    assert (int(a["n_layers"]), int(a["record"])) == (2, 0)
    assert int(a["n_bad"]) > 0 and all(f"b{i}_err" in a for i in range(int(a["n_bad"])))
    assert int(a["l0_pre_budget"]) == tbm.PRE_BUDGET and int(a["l1_s0_budget"]) == tbm.STEP_BUDGET
    own = dict(layers[0], pre_budget=7, steps=[dict(s, budget=9) for s in layers[0]["steps"]])
    b = tbm.make_run(MCFG, [own], bad=False, record=True)
    assert (int(b["n_layers"]), int(b["record"]), int(b["n_bad"])) == (1, 1, 0)
    assert (int(b["l0_pre_budget"]), int(b["l0_s0_budget"])) == (7, 9) and "b0_err" not in b
    with pytest.raises(ValueError, match="record: the bench records one layer"):
        tbm.make_run(MCFG, layers, record=True)


def test_recorded_records():
    """The bench's per-cycle records: busy bits from busy counters that advanced, job
    ends where the job counters advance, job starts from the trace beats' cycles."""
    rows = [(0, 0, 0, 0, 1, 0), (1, 0, 0, 0, 1, 0), (2, 1, 0, 0, 2, 4), (3, 1, 1, 0, 4, 4),
            (3, 2, 1, 1, 0, 0)]
    words = [0 | 3 << 1 | 2 << 9, 1 | 5 << 1 | 1 << 9]        # (unit, expert, slots)
    r = recorded(SimpleNamespace(rows=rows), SimpleNamespace(cycles=[101, 102], received=words),
                 origin=100)
    assert r["busy_sptc"].tolist() == [1, 1, 1, 0] and r["busy_pim"].tolist() == [0, 1, 0, 1]
    assert r["phase_sptc"].tolist() == [1, 1, 2, 4] and r["phase_pim"].tolist() == [0, 0, 4, 4]
    assert r["done"].tolist() == [[3, 0], [4, 1]]
    assert r["ann"].tolist() == [[1, 0, 3, 2], [2, 1, 5, 1]]

def test_drain_check_can_fail():
    """`make sim`'s analysis checks each program's output drain (first to last y beat)
    against MoEConfig.drain_cycles when y does not stall; a longer drain is a problem."""
    from sim.moe import analyse
    prep = {"jobs": [], "programs": [{"model_drain": 4}]}

    def res(last_y):
        return dict(ann=np.zeros((0, 4), np.int64), done=np.zeros((0, 2), np.int64),
                    busy_sptc=np.zeros(12), busy_pim=np.zeros(12), first_y=np.array([5]),
                    last_y=np.array([last_y]), end=np.array([last_y + 1]))
    ok = analyse(prep, res(8), stalls=False)
    assert ok["cycles_ok"] and ok["drains"] == [4]
    bad = analyse(prep, res(9), stalls=False)
    assert not bad["cycles_ok"] and "output drain 5 cycles, model 4" in bad["problems"][0]
    assert analyse(prep, res(9), stalls=True)["cycles_ok"]     # stalls: no exact check


@pytest.mark.slow
@pytest.mark.cocotb
def test_moe_layer_rtl(tmp_path):
    """Classic random stalls; the bad inputs (tb.moe.bad_inputs: every error class of
    the top, docs/moe.md) at the end."""
    layers = _layers(seed=3, steps=2)
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
    """The default top (the build `make sim` runs: whole-row drain, Samoyeds weights),
    no stalls: a decode step of the default trace's preset (Mixtral, sized to hidden 32,
    ffn 112, so the preamble writes 5,376 weight words, not make sim's 21,504) with
    SpTC-only dispatch, bit-exact against golden.moe; every job runs with the Logic-PIM
    idle, so its cycles must equal the SpTC model of its four parts plus the top's
    overhead, and the drain its model. (Co-processing on this top is `make sim`'s
    default run; the regression covers it on the small top.)"""
    from golden import trace as traces
    from sim import moe
    mcfg = CONFIGS["default"]
    tr = traces.load_default()
    assert tr.hidden <= mcfg.max_hidden and tr.ffn <= mcfg.max_ffn   # make sim runs it unscaled
    # the same preset sized for the small top (hidden 32, ffn 112): a quarter of the
    # preamble, still one y beat per token on this top
    tr = moe.preset_trace(tr.preset, CONFIGS["small"], 1)
    st = next(i for i in range(tr.steps) if tr.step(i).tokens <= 8)
    prep = moe.prepare(mcfg, tr, st, seed=1, capacity="dynamic", dispatch="sptc_only",
                       mode="samoyeds", alpha=2.0)
    res = moe.run(mcfg, "default", prep, tmp_path / "sptc_only", stalls=False, waves=False)
    an = moe.analyse(prep, res, stalls=False)
    assert an["cycles_ok"], an["problems"]
    assert an["drains"] == [p["model_drain"] for p in prep["programs"]]
    assert int(res["checked"]) == tr.step(st).tokens * tr.hidden     # every element
    assert an["bounded"] == an["compared_equal"] == len(prep["jobs"]) > 0
    for j in an["jobs"]:          # each part of the job as its model, + 1 for its start
        assert [p - m for p, m in zip(j["phases"], j["model_phases"])] == [1, 1, 2, 1], j
