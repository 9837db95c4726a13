"""DynaMoE in the schedule compiler: the capacity rule and the expert-assignment cache as
two separate mechanisms (FlexFlow's ``moe_alter`` / ``moe_score``), the recompile cost,
and the drop accounting the benchmark reports beside every static/dynamic ratio."""
import math

import numpy as np
import pytest

from golden import duplex, moe, schedule as S
from golden import trace as traces

MCFG = moe.MoEConfig()


def _model():
    return S.TimeModel.for_config(MCFG, 32, 112)


def _step(ids, rid=None, E=None):
    ids = np.asarray(ids, np.int16).reshape(len(ids), -1)
    T, k = ids.shape
    gq = np.zeros((T, k), np.int8)
    gq[:, 0] = 127
    rid = np.arange(T, dtype=np.int32) if rid is None else np.asarray(rid, np.int32)
    return traces.TraceStep(0, E or int(ids.max()) + 1, ids, np.zeros((T, k), np.float32), gq,
                            np.zeros(T, bool), rid)


def test_capacity_rule_grows_alpha_after_an_overflow_and_drops_until_then():
    """E 4, k 1, T 16: alpha 1 gives C = 4. A step with 10 tokens on expert 0 (observed
    alpha 2.5) drops 6 and triggers a capacity recompile to min(1.3 * 2.5, 4) = 3.25;
    the next such step holds every token (C = 13) and does not recompile."""
    pol = S.Policy("dynamic", alpha=1.0)
    sch = S.Scheduler(num_experts=4, num_shared=0, top_k=1, policy=pol, dispatch="sptc_only",
                      model=_model())
    uni = _step(np.arange(16) % 4, E=4)
    hot = _step([0] * 10 + [1, 2, 3, 1, 2, 3], E=4)
    r0 = sch.step(uni)
    assert not r0.recompiled and r0.bound.dropped == 0 and r0.alpha == 1.0
    r1 = sch.step(hot)
    assert r1.alpha == 1.0 and r1.bound.dropped == 6 and r1.observed == 2.5
    assert r1.recompiled and r1.forced and r1.reason == "capacity"
    assert sch.alpha == pytest.approx(3.25)
    assert r1.recompile_cycles == pol.recompile_cycles(4) == 4   # 1 table word per expert
    r2 = sch.step(hot)
    assert r2.bound.dropped == 0 and not r2.recompiled
    assert r2.bound.plan.capacities(16)[0] == math.ceil(3.25 * 16 / 4)
    # capped at max_alpha: all 16 on one expert needs alpha 4 = max_alpha
    r3 = sch.step(_step([0] * 16, E=4))
    assert r3.recompiled and sch.alpha == 4.0
    r4 = sch.step(_step([0] * 16, E=4))
    assert not r4.recompiled and r4.bound.dropped == 0 and sch.recompiles == 2


def test_static_keeps_alpha_and_never_recompiles():
    sch = S.Scheduler(num_experts=4, num_shared=0, top_k=1, policy=S.Policy("static", alpha=1.0),
                      dispatch="sptc_only", model=_model())
    rs = [sch.step(_step([0] * 10 + [1, 2, 3, 1, 2, 3], E=4)) for _ in range(3)]
    assert all(r.bound.dropped == 6 and not r.recompiled for r in rs)


def test_shrink_branch_is_off_by_default_and_optional():
    """FlexFlow keeps the shrink branch commented out; Policy(shrink=0.6) enables it."""
    bal = _step(np.arange(16) % 4, E=4)              # observed alpha 1.0
    off = S.Scheduler(num_experts=4, num_shared=0, top_k=1, policy=S.Policy("dynamic", alpha=3.0),
                      dispatch="sptc_only", model=_model())
    assert not any(off.step(bal).recompiled for _ in range(3)) and off.alpha == 3.0
    on = S.Scheduler(num_experts=4, num_shared=0, top_k=1,
                     policy=S.Policy("dynamic", alpha=3.0, shrink=0.6),
                     dispatch="sptc_only", model=_model())
    assert on.step(bal).reason == "capacity" and on.alpha == pytest.approx(1.25)


def _requests(E, k, R, sets):
    """One decode step of R requests; request r routes to sets[r] (k experts)."""
    return _step(np.array([sets[r] for r in range(R)]), rid=np.arange(R), E=E)


def test_cache_hysteresis_recompiles_are_not_overflows():
    """Requests keep their expert set: the score (gamma per step) climbs; past `on` and
    after min_gap steps the cache turns on (a recompile, no overflow involved). Routing
    then changes every step: the score falls below `off` and the cache turns off. While
    on, co-processing reuses the assignment of the switch step."""
    E, k, R = 8, 2, 16
    rng = np.random.default_rng(0)
    stable = [tuple(rng.choice(E, k, replace=False)) for _ in range(R)]
    pol = S.Policy("dynamic", alpha=4.0, gamma=0.5, min_gap=3)
    sch = S.Scheduler(num_experts=E, num_shared=0, top_k=k, policy=pol,
                      dispatch="duplex_coprocess", model=_model())
    rs = [sch.step(_requests(E, k, R, stable)) for _ in range(8)]
    # first step: nothing cached, score 0; then frac 1: score 0.5, 0.75, 0.875, 0.9375, 0.96875
    assert [r.score for r in rs[:6]] == [0.0, 0.5, 0.75, 0.875, 0.9375, 0.96875]
    on = [r.index for r in rs if r.reason == "cache_on"]
    assert on == [5] and sch.forced == 0                 # score > 0.95 at step 5, gap 5 > 3
    assert not rs[5].cached and all(r.cached for r in rs[6:])
    cached_units = sch.cached_units
    assert len(cached_units) == E and all(r.bound.units == cached_units for r in rs[6:])
    # routing now changes every step: nobody matches their request's previous set
    shifted = [[tuple((e + 1 + i) % E for e in s) for s in stable] for i in range(1, 6)]
    rs2 = [sch.step(_requests(E, k, R, sh)) for sh in shifted]
    off = [r.index for r in rs2 if r.reason == "cache_off"]
    assert off == [8]                                    # 0.97 / 2 = 0.48 < 0.85 at once
    assert sch.recompiles == 2 and sch.cache_switches == 2 and sch.forced == 0
    assert not any(r.cached for r in rs2[1:])
    # the stage rule has no assignment to cache: the switch happens, the rule still decides
    sch = S.Scheduler(num_experts=E, num_shared=0, top_k=k, policy=pol, dispatch="duplex",
                      model=_model())
    rs = [sch.step(_requests(E, k, R, stable)) for _ in range(8)]
    assert [r.index for r in rs if r.reason == "cache_on"] == [5] and sch.cached_units == ()
    assert all(j.unit == "pim" for r in rs[6:] for j in r.bound.jobs)   # decode-only steps


def test_cache_band_keeps_state_and_min_gap_blocks_switch_on():
    """A score between off and on keeps the state; the switch-on waits for min_gap."""
    E, k, R = 8, 2, 8
    sets = [(r % E, (r + 1) % E) for r in range(R)]
    pol = S.Policy("dynamic", alpha=4.0, gamma=0.5, min_gap=100)
    sch = S.Scheduler(num_experts=E, num_shared=0, top_k=k, policy=pol, dispatch="sptc_only",
                      model=_model())
    rs = [sch.step(_requests(E, k, R, sets)) for _ in range(12)]
    assert rs[-1].score > pol.on and sch.recompiles == 0 and not sch.cache_on
    sch.cache_on, sch.score = True, 0.9                  # in the band, on: stays on
    half = [sets[r] if r % 8 < 7 else ((r + 3) % E, (r + 5) % E) for r in range(R)]
    r = sch.step(_requests(E, k, R, half))               # frac 7/8: 0.45 + 0.4375 = 0.8875
    assert pol.off < r.score < pol.on and sch.cache_on and not r.recompiled


def test_recompile_cost_is_charged_and_swept():
    hot = _step([0] * 10 + [1, 2, 3, 1, 2, 3], E=4)
    for base in (0, 1000, 10_000):
        pol = S.Policy("dynamic", alpha=1.0, recompile_base=base)
        sch = S.Scheduler(num_experts=4, num_shared=2, top_k=1, policy=pol,
                          dispatch="sptc_only", model=_model())
        r = sch.step(hot)
        assert r.recompile_cycles == base + 6
        assert r.cycles == max(r.cycles_sptc, r.cycles_pim, r.cycles_hbm) + base + 6


def test_dropfree_alpha_and_drop_accounting():
    tr = traces.generate("mixtral-8x7b", steps=10, seed=4, scale=128, skew="hot", decode=8,
                         prefill=0.5, prompt_len=(4, 12))
    a = S.dropfree_alpha(tr)
    assert a == max(S.observed_alpha(s.tokens_per_expert(), tr.top_k, s.tokens) for s in tr)
    free = S.run_trace(tr, policy=S.Policy("static", alpha=a), dispatch="sptc_only",
                       model=_model())
    tight = S.run_trace(tr, policy=S.Policy("static", alpha=a * 0.8), dispatch="sptc_only",
                        model=_model())
    assert free["dropped_tokens"] == 0 and tight["dropped_tokens"] > 0
    assert tight["dropped_fraction"] == tight["dropped_tokens"] / tight["routed"]
    assert tight["kept"] == tight["routed"] - tight["dropped_tokens"]
    assert tight["cycles_per_kept"] == tight["cycles"] / tight["kept"]


def test_coprocess_split_is_decided_per_step_under_static_capacity():
    """Static capacity fixes the slots, not the split: two steps with different routing
    (different experts with tokens) get each their own co-processing split, equal to
    golden.duplex.coprocess on that step's slot vector."""
    from golden import pim, sptc
    m = S.TimeModel(S.ExpertShape.gated_ffn(64, 224), sptc.SpTCConfig(), pim.CONFIG_DEFAULT,
                    "2:4", xpu_bytes_per_cycle=4)
    sch = S.Scheduler(num_experts=8, num_shared=0, top_k=1, policy=S.Policy("static", alpha=8),
                      dispatch="duplex_coprocess", model=m)
    a = sch.step(_step([0] * 12 + [1] * 3 + [2], E=8)).bound
    b = sch.step(_step([5] * 12 + [6] * 3 + [7], E=8)).bound
    for bound in (a, b):
        want = duplex.coprocess([int(n) for n in bound.slots], m.sptc, m.pim).units
        assert bound.units == tuple("pim" if u == "pim" else "sptc" for u in want)
    assert a.units != b.units
    assert {j.expert for j in a.jobs} == {0, 1, 2} and {j.expert for j in b.jobs} == {5, 6, 7}
    assert {j.unit for j in a.jobs} == {"sptc", "pim"}
