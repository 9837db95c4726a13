"""Golden MoE layer and schedule compiler: capacity policies, recompilation policy,
unit assignment, program encoding (property tests with hypothesis)."""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from golden import moe, schedule as S
from golden.errors import FormatError
from golden import trace as traces

MCFG = moe.MoEConfig()


def _model(hidden=32, ffn=112, mode="dense"):
    return S.TimeModel.for_config(MCFG, hidden, ffn, mode)


def _step(ids, gq=None, prefill=None, E=None):
    """A TraceStep from explicit routing."""
    ids = np.asarray(ids, np.int16).reshape(len(ids), -1)
    T, k = ids.shape
    if gq is None:
        gq = np.zeros((T, k), np.int8)
        gq[:, 0] = 127
    pre = np.zeros(T, bool) if prefill is None else np.asarray(prefill, bool)
    return traces.TraceStep(0, E or int(ids.max()) + 1, ids, np.zeros((T, k), np.float32),
                            np.asarray(gq, np.int8), pre, np.arange(T, dtype=np.int32))


@st.composite
def steps(draw, max_E=12, max_T=32):
    E = draw(st.integers(2, max_E))
    k = draw(st.integers(1, min(4, E)))
    T = draw(st.integers(1, max_T))
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    skew = rng.dirichlet(np.full(E, draw(st.sampled_from([0.2, 1.0, 10.0]))))
    ids = np.stack([rng.choice(E, k, replace=False, p=skew) if (skew > 0).sum() >= k
                    else rng.choice(E, k, replace=False) for _ in range(T)])
    g = rng.dirichlet(np.ones(k), size=T)
    gq = np.floor(g * 127).astype(np.int64)
    gq[:, 0] += 127 - gq.sum(axis=1)
    return _step(ids, gq.astype(np.int8), rng.random(T) < 0.3, E), E, k


SET = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --------------------------------------------------------------------------- capacity policies

@SET
@given(steps(), st.sampled_from(S.DISPATCHES), st.integers(0, 3))
def test_dropless_drops_nothing_and_pads_nothing(sk, dispatch, shared):
    step, E, k = sk
    sch = S.Scheduler(num_experts=E, num_shared=shared, top_k=k, policy=S.Policy("dropless"),
                      dispatch=dispatch, model=_model())
    for _ in range(3):
        r = sch.step(step)
        b = r.bound
        assert b.dropped == 0 and b.kept.all() and b.padded == 0 and not r.recompiled
        # every routed (token, expert) pair is a valid slot of exactly one job
        pairs = sorted((int(t), j.expert) for j in b.jobs if j.expert < E
                       for t, v in zip(j.sel, j.valid) if v)
        want = sorted((t, int(e)) for t in range(step.tokens) for e in step.expert_ids[t])
        assert pairs == want
        assert (b.slots[:E] == b.counts).all()


@SET
@given(steps(), st.floats(0.25, 4.0))
def test_static_capacity_formula_and_padding(sk, alpha):
    step, E, k = sk
    T = step.tokens
    pol = S.Policy("static", alpha=alpha)
    b = S.Scheduler(num_experts=E, num_shared=1, top_k=k, policy=pol, dispatch="sptc_only",
                    model=_model()).step(step).bound
    C = min(T, math.ceil(alpha * k / E * T - 1e-9))
    counts = step.tokens_per_expert()
    assert (b.plan.capacities(T) == C).all()
    kept_per_e = np.array([int(((step.expert_ids == e) & b.kept).sum()) for e in range(E)])
    assert (kept_per_e == np.minimum(counts, C)).all()
    assert b.dropped == int(np.maximum(counts - C, 0).sum())
    assert b.padded == int(sum(C - kept_per_e[e] for e in range(E) if counts[e] and C))
    # dropped tokens are the late ones: the first C tokens of each expert are kept
    for e in range(E):
        rows, cols = np.nonzero(step.expert_ids == e)
        assert b.kept[rows[:C], cols[:C]].all() and not b.kept[rows[C:], cols[C:]].any()
    # shared expert: one job (tiles) over all T tokens
    sh = [j for j in b.jobs if j.expert == E]
    assert sum(j.slots for j in sh) == T and all(j.valid.all() for j in sh)


@SET
@given(steps(), st.sampled_from(S.CAPACITY_POLICIES), st.sampled_from(S.DISPATCHES))
def test_jobs_fit_tiles_and_sel_is_valid(sk, cap, dispatch):
    step, E, k = sk
    m = _model()
    b = S.Scheduler(num_experts=E, num_shared=2, top_k=k, policy=S.Policy(cap),
                    dispatch=dispatch, model=m).step(step).bound
    for j in b.jobs:
        tile = m.sptc_tile if j.unit == "sptc" else m.pim_tile
        assert 1 <= j.slots <= tile
        assert (np.diff(j.sel) > 0).all() and j.sel.min() >= 0 and j.sel.max() < step.tokens
        assert (j.gates[~j.valid] == 0).all()
    if dispatch == "duplex":
        want = "pim" if step.is_decode_only else "sptc"
        assert all(j.unit == want for j in b.jobs)
    if dispatch == "sptc_only":
        assert all(j.unit == "sptc" for j in b.jobs)


# --------------------------------------------------------------------------- unit assignment

@SET
@given(steps(), st.sampled_from(S.CAPACITY_POLICIES), st.integers(0, 2))
def test_coprocess_never_worse_than_one_unit(sk, cap, shared):
    """Co-processing splits each step after gating, on that step's slots: the split is
    never slower than all-SpTC or all-PIM on the same slots (static capacity included)."""
    step, E, k = sk
    m = _model()
    b = S.Scheduler(num_experts=E, num_shared=shared, top_k=k, policy=S.Policy(cap),
                    dispatch="duplex_coprocess", model=m).step(step).bound
    slots = [int(n) for n in b.slots]
    t = {"sptc": 0, "pim": 0}
    for u, n in zip(b.units, slots):
        t[u] += m.unit(u, n)
    split = max(t.values())
    assert split <= sum(m.sptc(n) for n in slots)
    assert split <= sum(m.pim(n) for n in slots)
    assert {j.unit for j in b.jobs if j.expert == 0} <= {b.units[0]}


def test_static_never_recompiles():
    tr = traces.generate("mixtral-8x7b", steps=12, seed=3, scale=128, skew="hot")
    for cap in ("static", "dropless"):
        r = S.run_trace(tr, policy=S.Policy(cap), dispatch="duplex_coprocess", model=_model())
        assert r["recompiles"] == 0 and r["recompile_cycles"] == 0


def test_policy_validation():
    for kw in (dict(capacity="x"), dict(alpha=0), dict(gamma=1.0), dict(on=0.8, off=0.9),
               dict(min_gap=-1), dict(grow=0), dict(max_alpha=-1), dict(shrink=-0.1),
               dict(cache=1), dict(recompile_base=-5)):
        with pytest.raises(FormatError, match=next(iter(kw)).split("_")[0]):
            S.Policy(**kw)
    with pytest.raises(FormatError, match="dispatch"):
        S.compile_plan([1, 2], 3, num_shared=0, top_k=1, policy=S.Policy(), dispatch="gpu")
    with pytest.raises(FormatError, match="counts"):
        S.compile_plan([5, 5], 3, num_shared=0, top_k=1, policy=S.Policy(), dispatch="sptc_only")

# --------------------------------------------------------------------------- golden layer

@pytest.mark.parametrize("preset,es", [("mixtral-8x7b", 1), ("qwen2-moe", 4), ("deepseek-moe-16b", 8)])
@pytest.mark.parametrize("cap", S.CAPACITY_POLICIES)
@pytest.mark.parametrize("mode", ["dense", "samoyeds"])
def test_layer_jobwise_equals_golden(preset, es, cap, mode):
    """Combining job by job (what the RTL does, pads included) equals the golden layer."""
    p = traces.PRESETS[preset]
    tr = traces.generate(preset, steps=4, seed=2, scale=p.hidden // 32, expert_scale=es,
                         skew="zipf", decode=6, prefill=0.5, prompt_len=(4, 8))
    rng = np.random.default_rng(0)
    params = moe.random_params(rng, tr.hidden, tr.ffn, tr.num_experts, tr.num_shared,
                               mode=mode)
    sch = S.Scheduler(num_experts=tr.num_experts, num_shared=tr.num_shared, top_k=tr.top_k,
                      policy=S.Policy(cap, alpha=1.0), dispatch="duplex_coprocess",
                      model=_model(tr.hidden, tr.ffn, mode))
    for step in tr:
        b = sch.step(step).bound
        x = rng.integers(-128, 128, size=(tr.hidden, step.tokens)).astype(np.int8)
        want = moe.moe_layer(params, x, step.expert_ids, step.gate_q, b.kept)
        assert np.array_equal(S.combine_jobs(params, x, b), want)
        assert want.dtype == np.int8 and want.shape == (tr.hidden, step.tokens)


def test_layer_reference_small():
    """moe_layer against a hand-written per-token loop."""
    rng = np.random.default_rng(5)
    params = moe.random_params(rng, 16, 48, 4, 1)
    x = rng.integers(-128, 128, size=(16, 5)).astype(np.int8)
    ids = np.array([[0, 1], [2, 3], [1, 0], [3, 2], [0, 2]])
    gq = np.array([[100, 27], [64, 63], [127, 0], [90, 37], [1, 126]], np.int8)
    kept = np.ones_like(ids, bool)
    kept[4, 1] = False
    got = moe.moe_layer(params, x, ids, gq, kept)
    for t in range(5):
        acc = np.zeros(16, np.int64)
        for c in range(2):
            if kept[t, c]:
                y = moe.expert_out(params, ids[t, c], x, [t])[:, 0]
                acc += int(gq[t, c]) * y.astype(np.int64)
        acc += params.shared_gate * moe.expert_out(params, 4, x, [t])[:, 0].astype(np.int64)
        m, s = params.combine_rq
        want = np.clip((acc * m + (1 << (s - 1))) >> s, -128, 127)
        assert np.array_equal(got[:, t], want)


def test_layer_bad_inputs():
    rng = np.random.default_rng(1)
    params = moe.random_params(rng, 16, 32, 4, 0)
    x = np.zeros((16, 2), np.int8)
    with pytest.raises(FormatError, match="expert_ids"):
        moe.moe_layer(params, x, np.array([[0], [4]]), np.array([[127], [127]], np.int8))
    with pytest.raises(FormatError, match="gate_q"):
        moe.moe_layer(params, x, np.array([[0], [1]]), np.array([[-1], [127]], np.int8))
    with pytest.raises(FormatError, match="x"):
        moe.moe_layer(params, x.astype(np.int16), np.array([[0], [1]]), np.zeros((2, 1), np.int8))
    with pytest.raises(FormatError, match="shared_gate"):
        moe.LayerParams(params.experts, 4, shared_gate=200)
    with pytest.raises(FormatError, match="max_tokens"):
        moe.MoEConfig(max_tokens=64)


# --------------------------------------------------------------------------- encoding

@SET
@given(st.integers(0, 3), st.integers(0, 1), st.integers(0, 255), st.integers(0, 255),
       st.integers(0, 2**64 - 1))
def test_descriptor_roundtrip(kind, unit, expert, slots, arg):
    w = S.desc(kind, unit, expert, slots, arg)
    assert w < 1 << S.DESC_BITS
    assert S.decode_desc(w) == dict(kind=kind, unit=unit, expert=expert, slots=slots, arg=arg)


def test_encode_step_layout():
    tr = traces.generate("mixtral-8x7b", steps=2, seed=1, scale=128, decode=6, prefill=0.5,
                         prompt_len=(4, 6))
    m = _model()
    sch = S.Scheduler(num_experts=8, num_shared=0, top_k=2, policy=S.Policy("static"),
                      dispatch="duplex_coprocess", model=m)
    b = sch.step(tr.step(0)).bound
    descs, toks = S.encode_step(MCFG, b, 32, 112, shared_gate=64)
    d = [S.decode_desc(w) for w in descs]
    assert d[0]["kind"] == S.KIND_LOAD and d[0]["slots"] == b.T
    assert d[-1]["kind"] == S.KIND_END
    ex = d[1:-1]
    assert [(x["unit"], x["expert"], x["slots"]) for x in ex] == \
        [(S.UNIT_CODES[j.unit], j.expert, j.slots) for j in b.jobs]
    assert len(toks) == sum(j.slots for j in b.jobs)
    with pytest.raises(FormatError, match="tok"):
        S.tok_entry(300, 0, True)


def test_drain_model_and_lanes():
    """The top's output drain: one y beat of ``lanes`` elements per cycle, a whole row of
    the combine buffer per beat by default; ``y_lanes`` must be 0 or a power of two."""
    assert MCFG.lanes == MCFG.max_hidden == 64
    assert MCFG.drain_beats(64) == MCFG.drain_beats(33) == 1
    assert MCFG.drain_cycles(32, 64) == 32 and MCFG.drain_cycles(0, 64) == 0
    eight = moe.MoEConfig(y_lanes=8)
    assert eight.lanes == 8 and eight.drain_beats(64) == 8 and eight.drain_beats(20) == 3
    assert eight.drain_cycles(5, 20) == 15
    assert moe.MoEConfig(y_lanes=1).drain_cycles(32, 64) == 32 * 64   # one element per beat
    for bad in (3, 128, -1):
        with pytest.raises(FormatError, match="y_lanes"):
            moe.MoEConfig(y_lanes=bad)


# --------------------------------------------------------------------------- gated experts

def _sat8(a):
    return np.clip(a, -128, 127)


@pytest.mark.parametrize("mode", ["dense", "2:4", "samoyeds"])
def test_expert_is_a_gated_ffn(mode):
    """expert_out against the FFN written out here: two projections, the SiLU table,
    the product requant, the down projection (each requant as sat8((a*m + 2^(s-1)) >> s))."""
    from golden.ffn import silu_lut
    rng = np.random.default_rng(11)
    params = moe.random_params(rng, 32, 48, 3, 1, mode=mode)
    x = rng.integers(-128, 128, size=(32, 9)).astype(np.int8)
    tokens = [0, 2, 3, 8]
    lut = silu_lut()

    def rq(a, pair):
        m, s = pair
        return _sat8((a.astype(np.int64) * m + (1 << (s - 1))) >> s)

    for e in range(4):
        g, u, d = (w.astype(np.int64) for w in params.experts[e])
        xs = x[:, tokens].astype(np.int64)
        gg, uu = rq(g @ xs, params.gate_rq), rq(u @ xs, params.up_rq)
        a = lut[(gg.astype(np.int64) & 0xFF)].astype(np.int64)
        hh = rq(a * uu, params.prod_rq)
        want = rq(d @ hh, params.expert_rq)
        got = moe.expert_out(params, e, x, tokens)
        assert got.dtype == np.int8 and np.array_equal(got, want)
        assert len(np.unique(got)) > 20          # the calibrated scales keep values lively


@pytest.mark.parametrize("mode", ["2:4", "samoyeds"])
def test_sptc_format_holds_the_same_matrix(mode):
    """Each expert matrix in the SpTC's format (K zero-padded for Samoyeds' V) computes
    exactly the dense product; the pruning leaves the structure the format needs."""
    from golden.ssmm import ssmm
    rng = np.random.default_rng(4)
    params = moe.random_params(rng, 32, 112, 2, 0, mode=mode)   # ffn 112: pads to 128
    for mats in params.experts:
        for w in mats:
            k = w.shape[1]
            sw = params.sptc_weight(w)
            x = rng.integers(-128, 128, size=(k, 5)).astype(np.int8)
            xp = moe.pad_cols(x.T, params.k_pad(k)).T
            assert np.array_equal(ssmm(sw, np.ascontiguousarray(xp)),
                                  w.astype(np.int64) @ x.astype(np.int64))
            if mode == "2:4":
                assert (np.count_nonzero(w.reshape(w.shape[0], -1, 4), axis=2) <= 2).all()
    assert params.k_pad(112) == (128 if mode == "samoyeds" else 112)


def test_layer_params_refuse_unstructured_weights():
    rng = np.random.default_rng(2)
    dense = moe.random_params(rng, 32, 64, 2, 0)
    with pytest.raises(FormatError, match=r"experts\[0\]\.gate: not in 2:4 form"):
        moe.LayerParams(dense.experts, 2, mode="2:4")
    with pytest.raises(FormatError, match=r"experts\[0\]\.gate: not in samoyeds form"):
        moe.LayerParams(dense.experts, 2, mode="samoyeds")
    g, u, d = dense.experts[0]
    with pytest.raises(FormatError, match=r"experts\[1\]"):
        moe.LayerParams((dense.experts[0], (g, u, g)), 2)
    with pytest.raises(FormatError, match="prod_rq"):
        moe.LayerParams(dense.experts, 2, prod_rq=(1, 0))
    with pytest.raises(FormatError, match="mode"):
        moe.LayerParams(dense.experts, 2, mode="4:8")


def test_layer_registers_and_preamble_refuse_what_the_top_cannot_hold():
    rng = np.random.default_rng(3)
    small = moe.MoEConfig(max_tokens=16, max_hidden=32, max_ffn=128, tok_depth=16)
    ok = moe.random_params(rng, 32, 112, 2, 0, mode="samoyeds")
    f = S.layer_cfg(small, ok)
    assert (f["ffn"], f["dn_kw"], f["up_kw"], f["sam_n"], f["sam_m"]) == (112, 32, 8, 1, 2)
    assert S.pack_layer(f) < 1 << S.LAYER_BITS
    wide = moe.random_params(rng, 32, 144, 2, 0)
    with pytest.raises(FormatError, match="ffn: 144"):
        S.layer_cfg(small, wide)
    many = moe.random_params(rng, 32, 112, 40, 0)
    with pytest.raises(FormatError, match=f"experts: 80 experts need {80 * S.expert_words(MCFG, 32, 112)} PIM"):
        S.preamble(MCFG, moe.LayerParams(many.experts * 2, 40))
    with pytest.raises(FormatError, match="max_ffn"):
        moe.MoEConfig(max_ffn=24)


def test_layer_doc_table_matches_layout():
    """docs/moe.md's layer-register table: every field of LAYER_LAYOUT at its bits."""
    import re
    from pathlib import Path
    from golden.fields import leaves
    text = (Path(__file__).resolve().parent.parent / "docs" / "moe.md").read_text()
    part = text.split("Layer registers (", 1)[1]
    assert int(re.match(r"(\d+) bits", part).group(1)) == S.LAYER_BITS
    lines = part.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("| bits | field |"))
    doc = {}
    for ln in lines[start + 2:]:
        if not ln.startswith("|"):
            break
        bits, name, _ = (c.strip() for c in ln.strip("|").split("|"))
        hi, lo = re.fullmatch(r"\[(\d+)(?::(\d+))?\]", bits).groups()
        lo = hi if lo is None else lo
        doc[name] = (int(lo), int(hi) - int(lo) + 1)
    assert doc == {p: (o, w) for p, o, w in leaves(S.LAYER_LAYOUT)}


def test_dispatch_order_interleaves_by_modelled_start():
    """With a model the descriptor stream interleaves the units' jobs by their modelled
    start on their unit; each unit still runs its jobs in the compiler's order."""
    tr = traces.generate("qwen2-moe", steps=2, seed=3, scale=64, expert_scale=4, decode=6,
                         prefill=0.5, prompt_len=(4, 6))
    m = _model(32, 16, "samoyeds")
    sch = S.Scheduler(num_experts=tr.num_experts, num_shared=tr.num_shared, top_k=tr.top_k,
                      policy=S.Policy("dropless"), dispatch="duplex_coprocess", model=m)
    b = sch.step(tr.step(1)).bound
    order = S.dispatch_order(b, m)
    assert S.dispatch_order(b) == list(b.jobs) and sorted(map(id, order)) == sorted(map(id, b.jobs))
    for u in ("sptc", "pim"):
        assert [j for j in order if j.unit == u] == [j for j in b.jobs if j.unit == u]
    start, t = [], {"sptc": m.load(b.T), "pim": 0}
    for j in b.jobs:
        start.append((id(j), t[j.unit]))
        t[j.unit] += m.unit(j.unit, j.slots)
    when = dict(start)
    assert [when[id(j)] for j in order] == sorted(when[id(j)] for j in order)
    assert {j.unit for j in b.jobs} == {"sptc", "pim"} and order != list(b.jobs)
    descs, _ = S.encode_step(MCFG, b, 32, 16, 64, m)
    d = [S.decode_desc(w) for w in descs[1:-1]]
    assert [(x["unit"], x["expert"]) for x in d] == \
        [(S.UNIT_CODES[j.unit], j.expert) for j in order]
