"""Duplex in the cost model: weight bytes of the SpTC's formats, the shared HBM banks,
the per-expert Op/B dispatch from computed rooflines, the paper-ridge Logic-PIM variant,
and the benchmark's labels and CLI."""
import math

import numpy as np
import pytest

from golden import duplex, formats, pim, schedule as S, sptc
from golden.errors import FormatError
from golden import trace as traces

PC = pim.CONFIG_DEFAULT


def _ffn(mode="2:4", **kw):
    return S.TimeModel(S.ExpertShape.gated_ffn(64, 224), sptc.SpTCConfig(), PC, mode, **kw)


# --------------------------------------------------------------------------- bytes and floors

def test_weight_bytes_are_the_formats_real_sizes():
    rng = np.random.default_rng(0)
    m, k = 64, 128
    w = formats.prune_2to4(rng.integers(-128, 128, (m, k)).astype(np.int8))
    s24 = formats.Sparse24.from_dense(w)
    real24 = s24.values.nbytes + s24.meta.size * 4 // 8          # one 4-bit nibble per group
    assert S.weight_bytes("2:4", m, k) == real24 == m * k * 5 // 8
    for n, mm, v in formats.PAPER_CONFIGS[:4]:
        ws = formats.prune_samoyeds(rng.integers(-128, 128, (m, k)).astype(np.int8), n, mm, v)
        sw = formats.SamoyedsWeight.from_dense(ws, n, mm, v)
        bits = sw.meta.size * 4 + sw.indices.size * max(1, math.ceil(math.log2(mm)))
        assert S.weight_bytes("samoyeds", m, k, (n, mm, v)) == sw.data.nbytes + -(-bits // 8)
        assert S.weight_bytes("samoyeds", m, k, (n, mm, v)) < real24
    assert S.weight_bytes("dense", m, k) == m * k
    with pytest.raises(FormatError, match="mode"):
        S.weight_bytes("4:8", m, k)


def test_bandwidth_floor_uses_format_bytes():
    """With a slow weight stream every GEMM is floor-bound: the 2:4 and Samoyeds floors
    are their formats' bytes / bandwidth, not the dense m*k."""
    bw = 0.25
    for mode, nmv in (("dense", (1, 2, 32)), ("2:4", (1, 2, 32)), ("samoyeds", (1, 2, 32))):
        m = _ffn(mode, xpu_bytes_per_cycle=bw, nmv=nmv)
        want = sum(math.ceil(S.weight_bytes(mode, a, b, nmv) / bw) for a, b in m.shape.gemms)
        assert m.sptc(4) == want
    assert _ffn("2:4", xpu_bytes_per_cycle=bw).sptc(4) < _ffn("dense", xpu_bytes_per_cycle=bw).sptc(4)
    tab = duplex.xpu_time_table(64, 224, 4, mode="2:4", bytes_per_cycle=bw)
    assert tab[4] == sum(math.ceil(S.weight_bytes("2:4", a, b) / bw)
                         for a, b in ((224, 64), (224, 64), (64, 224)))


# --------------------------------------------------------------------------- shared banks

def test_shared_banks_bound_the_step():
    """Both units stream from the same banks: with the budget set, the step lasts at least
    (SpTC bytes + PIM bytes) / budget; without it the units are independent."""
    E, T = 4, 8
    ids = np.array([[0]] * 6 + [[1]] * 2, np.int16)
    step = traces.TraceStep(0, E, ids, np.zeros((T, 1), np.float32),
                            np.full((T, 1), 127, np.int8), np.zeros(T, bool),
                            np.arange(T, dtype=np.int32))
    for budget in (None, 2.0):
        m = _ffn(xpu_bytes_per_cycle=4, shared_bytes_per_cycle=budget)
        b = S.Scheduler(num_experts=E, num_shared=0, top_k=1, policy=S.Policy("dropless"),
                        dispatch="duplex_coprocess", model=m).step(step).bound
        c = S.step_cost(b, m)
        assert {j.unit for j in b.jobs} == {"sptc", "pim"}
        if budget is None:
            assert c["hbm"] == 0 and c["makespan"] == max(c["sptc"], c["pim"])
        else:
            nbytes = sum(m.bytes(b.units[e], int(b.slots[e])) for e in range(E) if b.slots[e])
            assert c["bytes"] == nbytes and c["hbm"] == math.ceil(nbytes / budget)
            assert c["makespan"] == c["hbm"] > max(c["sptc"], c["pim"])


# --------------------------------------------------------------------------- Op/B dispatch

def test_ridges_are_computed_from_the_configs():
    m = _ffn(xpu_bytes_per_cycle=4)
    assert m.ridge("pim") == 2 * PC.elems / PC.peak_bytes_per_cycle == 8.0    # 4 int8 tokens
    assert m.ridge("sptc") == 2 * sptc.SpTCConfig().peak_macs / 0.5 / 4
    paper = _ffn(xpu_bytes_per_cycle=4, pim_lanes=2)
    assert paper.ridge("pim") == 16.0                                          # 8 int8 tokens
    # two lanes: a job of n slots costs the one-lane unit's ceil(n/2) slots
    assert [paper.pim(n) for n in (1, 2, 7, 8)] == [m.pim(n) for n in (1, 1, 4, 4)]


def test_opb_dispatch_follows_the_rooflines():
    m = _ffn(xpu_bytes_per_cycle=4)
    for n in range(1, 65):
        att = {u: min(m.peak_ops(u), m.op_per_byte(u, n) * m.bandwidth(u)) for u in ("sptc", "pim")}
        assert m.opb_unit(n) == ("pim" if att["pim"] > att["sptc"] else "sptc")
    units = [m.opb_unit(n) for n in range(1, 65)]
    assert units[0] == "pim" and units[-1] == "sptc"
    assert units == sorted(units, key=lambda u: u == "sptc")    # one crossover
    # the Op/B uses each unit's bytes per weight: the SpTC's 2:4 reads 0.625 B
    assert m.op_per_byte("sptc", 8) > m.op_per_byte("pim", 8)
    # the Logic-PIM's rows are padded to whole 64-byte words (k 224 -> 256)
    wb = m.expert_bytes("pim") / (3 * 64 * 224)
    assert wb == (2 * 224 * 64 + 64 * 256) / (3 * 64 * 224)
    assert m.op_per_byte("pim", 8) == duplex.op_per_byte("expert_ffn", tokens=8, hidden=64,
                                                         ffn=224, weight_bytes=wb)


def test_duplex_opb_binds_each_expert_to_its_unit():
    tr = traces.generate("qwen2-moe", steps=3, seed=1, scale=32, skew="zipf", decode=12,
                         prefill=0.5, prompt_len=(8, 24))
    m = S.TimeModel(S.ExpertShape.gated_ffn(tr.hidden, tr.ffn), sptc.SpTCConfig(), PC, "2:4",
                    xpu_bytes_per_cycle=4)
    sch = S.Scheduler(num_experts=tr.num_experts, num_shared=tr.num_shared, top_k=tr.top_k,
                      policy=S.Policy("dropless"), dispatch="duplex_opb", model=m)
    seen = set()
    for st in tr:
        b = sch.step(st).bound
        for j in b.jobs:
            assert j.unit == m.opb_unit(int(b.slots[j.expert]))
            seen.add(j.unit)
    assert seen == {"sptc", "pim"}


# --------------------------------------------------------------------------- bench

def test_paper_figures_are_labelled():
    P = S.PAPER
    assert P["duplex_mean"]["value"] == 2.07 and "mean" in P["duplex_mean"]["figure"]
    assert P["duplex_max"]["value"] == 2.67 and "up to" in P["duplex_max"]["figure"]
    assert P["coprocess"]["value"] == 1.04 and "stage rule" in P["coprocess"]["baseline"]
    assert P["dynamoe_recompile"]["value"] == 1.7
    assert all({"figure", "definition", "baseline"} <= set(v) for v in P.values())


def test_paper_setups_follow_the_papers():
    d = traces.PAPER_SETUPS["duplex-serving"]
    assert 32 <= d["decode"] <= 128 and d["prompt_len"][0] >= 100 and d["prompt_len"][1] >= 1000
    assert d["prefill"] == pytest.approx(d["decode"] / (sum(d["gen_len"]) / 2))
    t = traces.PAPER_SETUPS["dynamoe-training"]
    assert t["decode"] == 0 and t["prefill"] * t["prompt_len"][0] >= 4096
    from sim.bench import moe as B
    tr = B.trace_for(dict(preset="duplex-serving", skew="uniform", seed=0, steps=4))
    m = B.model_for("duplex-serving", tr)
    assert m.pim_lanes == 2 and m.ridge("pim") == 16.0
    assert m.sptc_cfg.peak_macs == 8 * m.pim_cfg.elems * m.pim_lanes     # ~ H100 / stacks' PIM
    assert m.xbw == PC.peak_bytes_per_cycle / 4 and m.shared_bw == PC.peak_bytes_per_cycle


def test_bench_cli_flags(monkeypatch, capsys):
    from sim.bench import __main__ as cli, moe as B
    got = {}
    monkeypatch.setattr(B, "main", lambda **kw: got.update(kw) or [])
    assert cli.main(["moe", "--no-rtl", "--workers", "2", "--preset", "duplex-serving"]) == 0
    assert got == dict(quick=False, workers=2, rtl=False, presets=["duplex-serving"])
    for argv, msg in ((["moe", "--preset", "gpt"], "--preset: unknown gpt"),
                      (["sptc", "--no-rtl"], "apply to the moe benchmark only"),
                      (["moe", "--workers", "0"], "--workers: must be >= 1")):
        with pytest.raises(SystemExit) as exc:
            cli.main(argv)
        assert exc.value.code == 2 and msg in capsys.readouterr().err
