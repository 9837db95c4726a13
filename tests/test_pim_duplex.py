"""golden.duplex: Op/B, the stage rule and expert co-processing (property tests)."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from golden import duplex
from golden.errors import FormatError


# --------------------------------------------------------------------------- Op/B

def test_expert_ffn_op_per_byte_about_tokens():
    # paper (FP16 weights): Op/B ~ t; our int8 weights: ~ 2t
    for t in (1, 4, 16, 64):
        fp16 = duplex.op_per_byte("expert_ffn", tokens=t, weight_bytes=2, act_bytes=2)
        int8 = duplex.op_per_byte("expert_ffn", tokens=t)
        assert 0.97 * t < fp16 <= t and 0.97 * 2 * t < int8 <= 2 * t


def test_gqa_decode_op_per_byte_is_group_size():
    for g in (4, 8):
        assert math.isclose(duplex.op_per_byte("attention_decode", group=g, kv_bytes=2,
                                               act_bytes=2, seq_len=4096), g, rel_tol=0.01)
        assert math.isclose(duplex.op_per_byte("attention_decode", group=g, seq_len=4096),
                            2 * g, rel_tol=0.01)


def test_prefill_ops_are_high_op_per_byte():
    assert duplex.op_per_byte("attention_prefill", seq_len=1024, group=8) > 100
    assert duplex.op_per_byte("linear", m=4096, k=4096, tokens=512) > 100


@pytest.mark.parametrize("kw, field", [
    (dict(op="conv"), "op"), (dict(op="expert_ffn", tokens=0), "tokens"),
    (dict(op="linear"), "m/k"), (dict(op="attention_decode", group=1.5), "group"),
    (dict(op="expert_ffn", weight_bytes=0), "weight_bytes"),
])
def test_op_per_byte_rejects(kw, field):
    op = kw.pop("op")
    with pytest.raises(FormatError, match=field):
        duplex.op_per_byte(op, **kw)


def test_dispatch_stage_rule():
    assert duplex.dispatch_stage("expert_ffn", True) == "pim"
    assert duplex.dispatch_stage("expert_ffn", False) == "xpu"
    assert duplex.dispatch_stage("attention_decode", False) == "pim"
    assert duplex.dispatch_stage("attention_decode", True) == "pim"
    for op in ("attention_prefill", "linear"):
        assert duplex.dispatch_stage(op, True) == "xpu" == duplex.dispatch_stage(op, False)
    with pytest.raises(FormatError, match="op"):
        duplex.dispatch_stage("softmax", True)
    with pytest.raises(FormatError, match="decode_only"):
        duplex.dispatch_stage("expert_ffn", 1)


# --------------------------------------------------------------------------- co-processing

def test_coprocess_worked_example():
    # xPU: 100 per expert whatever the tokens; PIM: 30 per token
    a = duplex.coprocess([1, 8, 2, 0, 1], lambda n: 100, lambda n: 30 * n)
    # moving 1 (expert 0), 1 (4), 2 (2): pim 120, xpu 200 -> max 200; moving the 8 too: 360
    assert a.units == ("pim", "xpu", "pim", "xpu", "pim")
    assert (a.time_xpu, a.time_pim, a.makespan, a.moved) == (100.0, 120.0, 120.0, 3)
    assert a.all_xpu == 400 and a.all_pim == 360
    assert a.splits[0] == (0, 400.0, 0.0) and len(a.splits) == 5


def test_coprocess_tables_as_sequences_and_mappings():
    tx = [0, 10, 11, 12]
    tp = {1: 4, 2: 8, 3: 12}
    a = duplex.coprocess(np.array([3, 1, 2]), tx, tp)
    assert a.makespan == 12 and a.units == ("xpu", "pim", "pim")


@pytest.mark.parametrize("args, field", [
    (([1, -1], [0, 1, 2], [0, 1, 2]), "tokens_per_expert"),
    (([1.5], [0, 1, 2], [0, 1, 2]), "tokens_per_expert"),
    (([], [0], [0]), "tokens_per_expert"),
    (([5], [0, 1], [0, 1, 2, 3, 4, 5]), "t_xpu"),
    (([1], {2: 3}, [0, 1]), "t_xpu"),
    (([1], [0, 1], [0, -1]), "t_pim"),
    (([1], [0, 1], [0, float("nan")]), "t_pim"),
    (([1], 5, [0, 1]), "t_xpu"),
])
def test_coprocess_rejects(args, field):
    with pytest.raises(FormatError, match=field):
        duplex.coprocess(*args)


tables = st.lists(st.integers(1, 10_000), min_size=65, max_size=65).map(
    lambda v: [0] + sorted(v)[:64])        # monotone in tokens (as cycle tables are)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 64), min_size=1, max_size=40), tables, tables)
def test_coprocess_never_worse_than_either_unit_alone(tokens, tx, tp):
    a = duplex.coprocess(tokens, tx, tp)
    assert a.makespan <= a.all_xpu and a.makespan <= a.all_pim
    assert a.all_xpu == sum(tx[n] for n in tokens) and a.all_pim == sum(tp[n] for n in tokens)
    # the reported times are those of the reported split
    assert a.time_xpu == sum(tx[n] for n, u in zip(tokens, a.units) if u == "xpu")
    assert a.time_pim == sum(tp[n] for n, u in zip(tokens, a.units) if u == "pim")
    assert a.makespan == max(a.time_xpu, a.time_pim)
    # Logic-PIM gets a prefix of the experts sorted by token count
    on_pim = [n for n, u in zip(tokens, a.units) if u == "pim"]
    on_xpu = [n for n, u in zip(tokens, a.units) if u == "xpu" and n > 0]
    assert not on_pim or not on_xpu or max(on_pim) <= min(on_xpu)
    assert a.moved == len(on_pim)
    # and it is the best split of that family (brute force over every prefix)
    order = sorted((i for i, n in enumerate(tokens) if n > 0), key=lambda i: (tokens[i], i))
    best = min(max(sum(tx[tokens[i]] for i in order[k:]), sum(tp[tokens[i]] for i in order[:k]))
               for k in range(len(order) + 1))
    assert a.makespan == best


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 64), min_size=1, max_size=12), tables, tables)
def test_coprocess_bounded_by_the_optimal_split(tokens, tx, tp):
    """The greedy prefix split is never better than the best of all 2^E splits
    (sanity) and never worse than the all-on-one-unit choices."""
    import itertools
    opt = min(max(sum(tx[n] for n, s in zip(tokens, m) if not s),
                  sum(tp[n] for n, s in zip(tokens, m) if s))
              for m in itertools.product((0, 1), repeat=len(tokens)))
    a = duplex.coprocess(tokens, tx, tp)
    assert opt <= a.makespan <= min(a.all_xpu, a.all_pim)


def test_time_tables_from_the_cycle_models():
    tp = duplex.pim_time_table(64, 224, 8)
    tx = duplex.xpu_time_table(64, 224, 8)
    txb = duplex.xpu_time_table(64, 224, 8, bytes_per_cycle=4)
    assert tp[0] == tx[0] == 0 and all(v > 0 for v in tp[1:] + tx[1:])
    assert all(b >= a for a, b in zip(tx, txb))
    assert txb[1] >= 3 * 64 * 224 // 4
    assert all(b >= a for a, b in zip(tp[1:], tp[2:]))          # more tokens never faster
    a = duplex.coprocess([1, 2, 8, 3], tx, tp)
    assert a.makespan <= min(a.all_xpu, a.all_pim)
    assert duplex.crossover(txb, tp, 8) is None or duplex.crossover(txb, tp, 8) > 1
