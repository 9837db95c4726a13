"""Attention co-processing (golden/attn_sched.py): contexts from a hand-made trace, the
Logic-PIM program and cycles, the SpTC side's parts and pipeline by hand, the step
time and gains, bad input."""
import dataclasses

import numpy as np
import pytest

from golden import FormatError, attn_sched as A, pim as gp, sptc as gs
from golden.pim.kv import KVLayout
from golden.softmax import unit_schedule
from golden.trace import Trace

PIM = gp.CONFIG_SMALL
SPTC = gs.SpTCConfig()
SHAPE = A.AttnShape(4, 2, 16)           # G = 2, one word per row on the small build


def _trace(steps, prompt_len=(8, 12)):
    """steps: per step, a list of (request id, is_prefill) tokens."""
    rid = np.array([r for s in steps for r, _ in s], np.int32)
    pre = np.array([p for s in steps for _, p in s], bool)
    n = len(rid)
    offs = np.cumsum([0] + [len(s) for s in steps]).astype(np.int64)
    return Trace(1, "mixtral-8x7b", 64, "uniform", 0.0, 0, 8, 0, 2, 64, 224, offs,
                 np.zeros((n, 2), np.int16) + np.array([0, 1], np.int16),
                 np.full((n, 2), 0.5, np.float32), np.full((n, 2), 63, np.int8), pre, rid,
                 gen=dict(prompt_len=list(prompt_len)))


def test_contexts_from_a_hand_made_trace():
    tr = _trace([[(0, False), (5, True), (5, True), (5, True)],
                 [(0, False), (5, False)],
                 [(5, False), (7, True), (7, True), (3, False)]])
    R = A.Request
    want = [[R(0, False, 1, 11), R(5, True, 3, 3)],
            [R(0, False, 1, 12), R(5, False, 1, 4)],
            [R(5, False, 1, 5), R(7, True, 2, 2), R(3, False, 1, 11)]]
    assert A.step_requests(tr) == want                     # prior = (8 + 12) // 2 = 10
    got = A.step_requests(tr, prior=0)
    assert got[0][0].context == 1 and got[2][2].context == 1 and got[2][0].context == 5
    with pytest.raises(FormatError, match="prior"):
        A.step_requests(tr, prior=-1)
    tr.gen = {}
    with pytest.raises(FormatError, match="prior"):
        A.step_requests(tr)


def test_pim_program_is_the_compilers_program():
    reqs = [A.Request(0, False, 1, 6), A.Request(4, True, 3, 5)]
    p, lay = A.pim_program(PIM, SHAPE, reqs, capacity=8)
    ops = [gp.decode(w) for w in p.words]
    names = [o["name"] for o in ops]
    assert names[0] == "SET_KV" and names[-1] == "FENCE"
    # new positions: request 0 position 5, request 4 positions 2, 3, 4; per KV head
    app = [(o["slot"], o["pos"]) for o in ops if o["name"] == "APPEND_KV"]
    assert app == [(0, 5), (1, 5), (2, 2), (2, 3), (2, 4), (3, 2), (3, 3), (3, 4)]
    att = [(o["slot"], o["len"]) for o in ops if o["name"] == "ATTN"]
    assert att == [(0, 6), (1, 6), (2, 3), (3, 3), (2, 4), (3, 4), (2, 5), (3, 5)]
    assert names.count("LOAD_TOKENS") == len(att)
    assert gp.decode(p.words[1 + len(app)])["name"] == "LOAD_TOKENS"
    # the same program by hand: its exact cycles
    lay2 = KVLayout(PIM, 16, 2, 2, 8)
    h = gp.Program(PIM).set_kv(lay2)
    z, q = np.zeros(16, np.int8), np.zeros((2, 16), np.int8)
    for r, hd, pos in [(0, 0, 5), (0, 1, 5)] + [(1, hd, pos) for hd in (0, 1) for pos in (2, 3, 4)]:
        h.append_kv(lay2, r, hd, pos, z, z)
    for r, n in [(0, 6), (1, 3), (1, 4), (1, 5)]:
        for hd in (0, 1):
            h.attention(lay2, r, hd, q, n, 1000, 16)
    h.fence()
    assert h.words == p.words
    assert A.pim_cycles(PIM, SHAPE, reqs, capacity=8) == gp.predict_cycles(PIM, h.words) > 0
    assert A.pim_cycles(PIM, SHAPE, []) == 0


def test_sptc_parts_by_hand():
    q = A.Request(0, False, 1, 5)
    qk, sm, pv = A.sptc_parts(SPTC, SHAPE, q)
    assert qk == gs.predict_load_cycles((16, 2)) + gs.predict_cycles(SPTC, "dense", 5, 16, 2)
    assert pv == 2 * (gs.predict_load_cycles((5, 2)) + gs.predict_cycles(SPTC, "dense", 16, 5, 2))
    # two rows of 5: first 0..23 (h 5, g 16), second from 6 (h 16, g 27) to 34
    assert sm == 35 == unit_schedule([5, 5])[-1][1] + 1
    slow = A.sptc_parts(SPTC, SHAPE, q, xpu_bytes_per_cycle=0.01)
    assert slow[0] == 5 * 16 / 0.01 and slow[2] == 2 * 16 * 5 / 0.01 and slow[1] == sm
    # a causal chunk: G rows per query, query i over L - T + i + 1 positions
    pre = A.Request(1, True, 3, 4)
    _, sm3, _ = A.sptc_parts(SPTC, SHAPE, pre)
    assert sm3 == unit_schedule([2, 2, 3, 3, 4, 4])[-1][1] + 1
    # token tiles of max_tokens, position tiles of max_k
    big = A.Request(2, True, 40, 300)
    qk, _, pv = A.sptc_parts(SPTC, SHAPE, big)
    c = lambda m, k, t: gs.predict_load_cycles((k, t)) + gs.predict_cycles(SPTC, "dense", m, k, t)
    assert qk == c(300, 16, 64) + c(300, 16, 16)
    assert pv == 2 * (c(16, 256, 64) + c(16, 44, 64) + c(16, 256, 16) + c(16, 44, 16))


def test_sptc_pipeline_by_hand(monkeypatch):
    parts = iter([(10, 100, 5), (10, 3, 7)])
    monkeypatch.setattr(A, "sptc_parts", lambda *a, **k: next(parts))
    one = A.AttnShape(1, 1, 16)
    # QK0 0..10; SM0 10..110; QK1 10..20; SM1 110..113; PV0 110..115; PV1 115..122
    assert A.sptc_cycles(SPTC, one, [A.Request(0, False, 1, 1)] * 2) == 122
    assert A.sptc_cycles(SPTC, one, []) == 0


def test_step_time_and_gains():
    m = A.Machine(PIM, SPTC, 4.0, capacity=32)
    reqs = [A.Request(0, False, 1, 20), A.Request(1, False, 1, 9), A.Request(2, True, 6, 6)]
    dec, pre = reqs[:2], reqs[2:]
    co = A.step_time(m, SHAPE, reqs)
    assert co.pim == A.pim_cycles(PIM, SHAPE, dec, 32)
    assert co.sptc == A.sptc_cycles(SPTC, SHAPE, pre, 4.0)
    assert co.cycles == max(co.pim, co.sptc)
    allp, alls = A.step_time(m, SHAPE, reqs, "pim"), A.step_time(m, SHAPE, reqs, "sptc")
    assert allp.sptc == 0 and allp.pim == A.pim_cycles(PIM, SHAPE, reqs, 32)
    assert alls.pim == 0 and alls.sptc == A.sptc_cycles(SPTC, SHAPE, reqs, 4.0)
    g = A.gains(m, SHAPE, [reqs, dec])
    co2 = A.step_time(m, SHAPE, dec)
    assert g["cycles"]["duplex"] == co.cycles + co2.cycles
    assert g["gain_vs_pim"] == (allp.cycles + co2.cycles) / g["cycles"]["duplex"]
    assert g["gain_vs_sptc"] == (alls.cycles + A.step_time(m, SHAPE, dec, "sptc").cycles) \
        / g["cycles"]["duplex"]
    assert A.gains(m, SHAPE, [])["gain_vs_pim"] is None


def test_bad_input():
    m = A.Machine(PIM, SPTC, capacity=16)
    with pytest.raises(FormatError, match="capacity: request 3 has context 17"):
        A.step_time(m, SHAPE, [A.Request(3, False, 1, 17)])
    with pytest.raises(FormatError, match="capacity"):       # more than the slice holds
        A.pim_cycles(PIM, SHAPE, [A.Request(0, False, 1, 5)] * 4, capacity=256)
    with pytest.raises(FormatError, match="group: 16"):
        A.pim_cycles(PIM, A.AttnShape(16, 1, 16), [A.Request(0, False, 1, 5)])
    with pytest.raises(FormatError, match="head_dim"):
        A.pim_cycles(PIM, A.AttnShape(2, 1, 65), [A.Request(0, False, 1, 5)])
    with pytest.raises(FormatError, match="head_dim: 512"):
        A.sptc_cycles(SPTC, A.AttnShape(2, 1, 512), [A.Request(0, False, 1, 5)])
    with pytest.raises(FormatError, match="attn_heads"):
        A.pim_cycles(gp.CONFIG_FPGA, SHAPE, [A.Request(0, False, 1, 5)])
    with pytest.raises(FormatError, match="dispatch"):
        A.step_time(m, SHAPE, [], "gpu")
    with pytest.raises(FormatError, match="q_heads"):
        A.AttnShape(6, 4, 16)
    with pytest.raises(FormatError, match="kv_heads"):
        A.AttnShape(4, 0, 16)
    with pytest.raises(FormatError, match="grouped-query"):
        A.preset_shape("deepseek-v3")
    with pytest.raises(FormatError, match="preset"):
        A.preset_shape("llama")
    assert A.preset_shape("mixtral-8x7b").group == 4


def test_machine_capacity_default_is_the_slice():
    reqs = [A.Request(0, False, 1, 30)] * 2
    cap = gp.max_capacity(PIM, 16, 4)
    m = A.Machine(dataclasses.replace(PIM), SPTC)
    assert A.step_time(m, SHAPE, reqs).pim == A.pim_cycles(PIM, SHAPE, reqs, cap)


def test_bench_coprocess_rows():
    """sim.bench.attn's co-processing rows (quick): each gain is that unit alone over the
    co-processed cycles, and a co-processed step is no shorter than either unit's share."""
    from sim.bench.attn import coprocess_rows
    rs = coprocess_rows(quick=True)
    assert [r["preset"] for r in rs] == ["mixtral-8x7b", "qwen3-30b-a3b"]
    for r in rs:
        assert r["group"] == A.preset_shape(r["preset"]).group
        co = r["cycles_duplex"]
        assert co >= max(r["duplex_pim_busy"], r["duplex_sptc_busy"]) > 0
        assert r["gain_vs_sptc"] == round(r["cycles_sptc"] / co, 3)
        assert r["gain_vs_pim"] == round(r["cycles_pim"] / co, 3)


@pytest.mark.parametrize("seed", range(4))
def test_split_never_worse_than_one_unit_or_duplex(seed):
    rng = np.random.default_rng(seed)
    m = A.Machine(PIM, SPTC, float(rng.choice([2.0, 4.0, 16.0])), capacity=40)
    reqs = [A.Request(i, bool(rng.random() < 0.3), 1, int(rng.integers(1, 40)))
            for i in range(int(rng.integers(1, 5)))]
    reqs = [dataclasses.replace(q, tokens=int(rng.integers(1, q.context + 1)))
            if q.prefill else q for q in reqs]
    sp = A.step_time(m, SHAPE, reqs, "split")
    for d in ("duplex", "sptc", "pim"):
        assert sp.cycles <= A.step_time(m, SHAPE, reqs, d).cycles, d
    # by hand: the best of the prefixes of the move order (fewest tokens first)
    order = A.move_order(reqs)
    assert [reqs[i].tokens for i in order] == sorted(q.tokens for q in reqs)
    best = min(max(A.pim_cycles(PIM, SHAPE, [reqs[i] for i in sorted(order[:k])], 40),
                   A.sptc_cycles(SPTC, SHAPE, [reqs[i] for i in sorted(order[k:])],
                                 m.xpu_bytes_per_cycle))
               for k in range(len(reqs) + 1))
    assert sp.cycles == best
