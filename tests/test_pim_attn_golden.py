"""Decode attention on the Logic-PIM, golden side: the KV-cache layout (golden.pim.kv),
the SET_KV / APPEND_KV / ATTN instructions in the functional model against
golden.attention, their error bits, and the cycle model's DRAM traces against the
independent checker."""
import numpy as np
import pytest

from golden import pim as gp
from golden.attention import decode_attention
from golden.errors import FormatError
from golden.pim.kv import KVLayout, head_words, max_capacity
from golden.softmax import scale_config, unit_schedule
from tb.dram_timing import TimingChecker

SMALL = gp.CONFIG_SMALL


def _cache(rng, lay, L):
    shape = (lay.requests, lay.kv_heads, L, lay.head_dim)
    return (rng.integers(-128, 128, shape, dtype=np.int8),
            rng.integers(-128, 128, shape, dtype=np.int8))


# --------------------------------------------------------------------------- layout

@pytest.mark.parametrize("cfg", [SMALL, gp.CONFIG_DEFAULT], ids=["small", "default"])
def test_layout_addresses_are_disjoint_and_in_the_slice(cfg):
    lay = KVLayout(cfg, head_dim=cfg.elems + 3, kv_heads=3, requests=2, capacity=20, base=7)
    seen = {}
    for r in range(lay.requests):
        for h in range(lay.kv_heads):
            s = r * lay.kv_heads + h
            assert lay.slot(r, h) == s
            for pos in range(lay.capacity):
                for which in "KV":
                    a = (lay.k_addr if which == "K" else lay.v_addr)(r, h, pos)
                    exp = lay.base + (s * 2 * lay.capacity + (lay.capacity if which == "V" else 0)
                                      + pos) * lay.kw
                    assert a == exp
                    locs = lay.locate(r, pos, h, which)
                    assert locs == [cfg.split_addr(a + w) for w in range(lay.kw)]
                    for w, (b, row, col) in enumerate(locs):
                        assert cfg.word_addr(b, row, col) == a + w < cfg.words
                        assert (a + w) not in seen
                        seen[a + w] = (r, h, pos, which)
    assert min(seen) == lay.base and max(seen) == lay.end - 1 == len(seen) + lay.base - 1


def test_capacity_of_the_slice():
    cfg = SMALL
    kw = head_words(cfg, 64)
    assert kw == 4
    cap = max_capacity(cfg, 64, slots=3, base=100)
    assert cap == min(cfg.attn_len, (cfg.words - 100) // (2 * kw * 3))
    KVLayout(cfg, 64, 3, 1, cap, base=100)                  # fits exactly
    with pytest.raises(FormatError, match="capacity"):
        KVLayout(cfg, 64, 3, 1, cap + 1, base=100)
    with pytest.raises(FormatError, match="capacity.*attn_len"):
        KVLayout(cfg, 16, 1, 1, cfg.attn_len + 1)


@pytest.mark.parametrize("kw, field", [
    (dict(head_dim=SMALL.attn_kw * SMALL.elems + 1), "head_dim"), (dict(head_dim=0), "head_dim"),
    (dict(kv_heads=0), "kv_heads"), (dict(requests=0), "requests"), (dict(capacity=0), "capacity"),
    (dict(base=SMALL.words), "base"), (dict(base=-1), "base"), (dict(head_dim=2.5), "head_dim"),
])
def test_layout_rejects(kw, field):
    args = dict(cfg=SMALL, head_dim=32, kv_heads=2, requests=2, capacity=16, base=0)
    args.update(kw)
    with pytest.raises(FormatError, match=field):
        KVLayout(**args)


def test_layout_rejects_out_of_range_addresses():
    lay = KVLayout(SMALL, 32, 2, 3, 16)
    for call, field in [(lambda: lay.k_addr(3, 0, 0), "request"),
                        (lambda: lay.k_addr(0, 2, 0), "head"),
                        (lambda: lay.v_addr(0, 0, 16), "pos"),
                        (lambda: lay.k_addr(0, 0, -1), "pos"),
                        (lambda: lay.locate(0, 0, 0, "Q"), "which"),
                        (lambda: lay.check_length(17), "length"),
                        (lambda: lay.check_length(0), "length")]:
        with pytest.raises(FormatError, match=field):
            call()


def test_no_attention_hardware():
    cfg = gp.PIMConfig(**{**gp.config_to_dict(SMALL), "timing": SMALL.timing, "attn_heads": 0})
    with pytest.raises(FormatError, match="attn_heads"):
        KVLayout(cfg, 16, 1, 1, 4)
    for w in (gp.encode("SET_KV", base=0, cap=4, kw=1), gp.encode("APPEND_KV"), gp.encode("ATTN")):
        r = gp.execute(cfg, [w])
        assert r.err == gp.ERR_OPCODE
        assert gp.predict(cfg, [w]).cycles == gp.predict(cfg, [gp.encode("NOP")]).cycles


@pytest.mark.parametrize("kw, field", [(dict(attn_heads=9), "attn_heads"),
                                       (dict(attn_len=70000), "attn_len"),
                                       (dict(attn_kw=17), "attn_kw"),
                                       (dict(attn_heads=-1), "attn_heads")])
def test_config_rejects_attention_fields(kw, field):
    d = {**gp.config_to_dict(SMALL), "timing": SMALL.timing, **kw}
    with pytest.raises(FormatError, match=field):
        gp.PIMConfig(**d)


# --------------------------------------------------------------------------- functional model

def _attention_program(cfg, lay, rng, k, v, q, lens, G, sm, out=("requant", 1, 15),
                       via_append=True):
    p = gp.Program(cfg).set_kv(lay).set_out(out)
    dram = None
    if via_append:
        for r in range(lay.requests):
            for h in range(lay.kv_heads):
                for pos in range(k.shape[2]):
                    p.append_kv(lay, r, h, pos, k[r, h, pos], v[r, h, pos])
    else:
        dram = [0] * cfg.words
        for a, w in lay.image(k, v).items():
            dram[a] = w
    for r in range(lay.requests):
        for h in range(lay.kv_heads):
            p.attention(lay, r, h, q[r, h * G:(h + 1) * G], int(lens[r]), *sm)
    return p, dram


@pytest.mark.parametrize("seed", range(6))
def test_attention_bit_exact_vs_golden_attention(seed):
    cfg = SMALL
    rng = np.random.default_rng(seed)
    G = int(rng.integers(1, cfg.attn_heads + 1))
    D = int(rng.integers(1, cfg.attn_kw * cfg.elems + 1))
    B, Hkv = int(rng.integers(1, 3)), int(rng.integers(1, 3))
    kw = head_words(cfg, D)
    cap = min(max_capacity(cfg, D, B * Hkv), 40)
    L = int(rng.integers(1, cap + 1))
    lay = KVLayout(cfg, D, Hkv, B, cap)
    k, v = _cache(rng, lay, L)
    q = rng.integers(-128, 128, (B, Hkv * G, D), dtype=np.int8)
    lens = rng.integers(1, L + 1, B)
    sm = scale_config(float(rng.choice([0.001, 0.01, 0.05])))
    out = [("requant", 1, 15), "int32", "int8_sat",
           ("requant", int(rng.integers(1, 1 << 16)), 20)][seed % 4]
    p, _ = _attention_program(cfg, lay, rng, k, v, q, lens, G, sm, out, via_append=seed % 2 == 0)
    _, dram = _attention_program(cfg, lay, rng, k, v, q, lens, G, sm, out, via_append=False)
    r = gp.execute(cfg, p.words, p.din, dram=None if seed % 2 == 0 else dram)
    assert r.err == 0 and r.din_used == len(p.din)
    ref = decode_attention(q, k, v, lens, *sm, 1, 15, steps=True)
    got = r.values.reshape(B, Hkv, G, kw * cfg.elems)
    assert (got[..., D:] == 0).all()              # the padded lanes
    acc = np.stack([a["acc"] for a in r.attns]).reshape(B, Hkv * G, kw * cfg.elems)
    assert (acc[..., :D] == ref["acc"]).all()
    for i, a in enumerate(r.attns):
        b, h = divmod(i, Hkv)
        n = lens[b]
        assert (a["p"] == ref["p"][b, h * G:(h + 1) * G, :n]).all()
        assert (a["scores"] == ref["scores"][b, h * G:(h + 1) * G, :n]).all()
    from golden.numerics import apply_out, parse_out
    assert (got[..., :D].reshape(B, Hkv * G, D) == apply_out(ref["acc"], parse_out(out))).all()
    assert r.last.sum() == B * Hkv and r.last[-1]


def _kv_state_program(cfg):
    lay = KVLayout(cfg, 2 * cfg.elems, 1, 2, 8, base=16)
    p = gp.Program(cfg).set_kv(lay)
    return lay, p


def _attn_bad(cfg):
    """(name, instruction words after SET_KV(base 16, cap 8, kw 2) + LOAD_TOKENS(3 x kw 2),
    error bits); legal words at each boundary get 0."""
    E, W = gp.encode, cfg.words
    slots = (W - 16) // 32
    return [
        ("SET_KV kw 0", E("SET_KV", base=0, cap=1, kw=0), gp.ERR_TOKENS),
        ("SET_KV kw > attn_kw", E("SET_KV", base=0, cap=1, kw=cfg.attn_kw + 1), gp.ERR_TOKENS),
        ("SET_KV kw = attn_kw", E("SET_KV", base=0, cap=1, kw=cfg.attn_kw), 0),
        ("SET_KV cap 0", E("SET_KV", base=0, cap=0, kw=1), gp.ERR_FIELD),
        ("SET_KV cap > attn_len", E("SET_KV", base=0, cap=cfg.attn_len + 1, kw=1), gp.ERR_ADDR),
        ("SET_KV cap = attn_len", E("SET_KV", base=0, cap=cfg.attn_len, kw=1), 0),
        ("SET_KV one slot past the slice", E("SET_KV", base=W - 3, cap=1, kw=2), gp.ERR_ADDR),
        ("SET_KV one slot at the top", E("SET_KV", base=W - 4, cap=1, kw=2), 0),
        ("SET_KV base past 2**32", E("SET_KV", base=(1 << 32) - 1, cap=1, kw=1), gp.ERR_ADDR),
        ("APPEND slot past the slice", E("APPEND_KV", slot=slots, pos=0), gp.ERR_ADDR),
        ("APPEND last slot", E("APPEND_KV", slot=slots - 1, pos=7), 0),
        ("APPEND pos = cap", E("APPEND_KV", slot=0, pos=8), gp.ERR_ADDR),
        ("APPEND slot 65535", E("APPEND_KV", slot=65535, pos=0), gp.ERR_ADDR),
        ("ATTN len 0", E("ATTN", slot=0, len=0, mult=1, shift=1), gp.ERR_FIELD),
        ("ATTN len > cap", E("ATTN", slot=0, len=9, mult=1, shift=1), gp.ERR_ADDR),
        ("ATTN len = cap", E("ATTN", slot=0, len=8, mult=1, shift=1), 0),
        ("ATTN shift 0", E("ATTN", slot=0, len=1, mult=1, shift=0), gp.ERR_FIELD),
        ("ATTN shift 48", E("ATTN", slot=0, len=1, mult=1, shift=48), gp.ERR_FIELD),
        ("ATTN shift 47", E("ATTN", slot=0, len=1, mult=1, shift=47), 0),
        ("ATTN slot past the slice", E("ATTN", slot=slots, len=1, mult=1, shift=1), gp.ERR_ADDR),
        ("ATTN slot + len", E("ATTN", slot=slots, len=9, mult=1, shift=0),
         gp.ERR_ADDR | gp.ERR_FIELD),
    ]


@pytest.mark.parametrize("name, word, err", _attn_bad(SMALL), ids=[b[0] for b in _attn_bad(SMALL)])
def test_attention_error_triggers(name, word, err):
    cfg = SMALL
    lay, p = _kv_state_program(cfg)
    p.load_tokens(np.ones((3, 2 * cfg.elems), np.int8))
    nd = len(p.din)
    dname = gp.decode(word)["name"]
    p.raw(word, [1] * (2 * (2 if dname == "APPEND_KV" else 0) if not err else 0))
    p.nop()
    r = gp.execute(cfg, p.words, p.din)
    assert r.err == err, name
    assert r.din_used == len(p.din) and (err == 0 or r.din_used == nd)
    if err:             # rejected: no output, no state change (then the unit carries on)
        assert len(r.values) == 0


def test_attention_token_and_state_errors():
    cfg = SMALL
    E = gp.encode
    attn = E("ATTN", slot=0, len=1, mult=1, shift=1)
    # no SET_KV since reset
    for w in (attn, E("APPEND_KV", slot=0, pos=0)):
        assert gp.execute(cfg, [w]).err == gp.ERR_FIELD
    lay, p = _kv_state_program(cfg)
    assert gp.execute(cfg, p.words + [attn], p.din).err == gp.ERR_TOKENS        # no queries
    for t, k, err in [(cfg.attn_heads, 2, 0), (3, 1, gp.ERR_TOKENS), (3, 3, gp.ERR_TOKENS)]:
        q = gp.Program(cfg).load_tokens(np.ones((t, k * cfg.elems), np.int8))
        r = gp.execute(cfg, p.words + q.words + [attn], p.din + q.din)
        assert r.err == err, (t, k)
    small_heads = gp.PIMConfig(**{**gp.config_to_dict(cfg), "timing": cfg.timing,
                                  "attn_heads": 4})
    lay2, p2 = _kv_state_program(small_heads)
    q = gp.Program(small_heads).load_tokens(np.ones((5, 2 * cfg.elems), np.int8))
    assert gp.execute(small_heads, p2.words + q.words + [attn], q.din).err == gp.ERR_TOKENS
    with pytest.raises(FormatError, match="query heads"):
        gp.Program(small_heads).attention(lay2, 0, 0, np.ones((5, lay2.head_dim), np.int8), 1, 1, 1)
    with pytest.raises(FormatError, match="length"):
        gp.Program(cfg).attention(lay, 0, 0, np.ones((2, lay.head_dim), np.int8), 9, 1, 1)
    with pytest.raises(FormatError, match="shift"):
        gp.Program(cfg).attention(lay, 0, 0, np.ones((2, lay.head_dim), np.int8), 2, 1, 0)
    with pytest.raises(FormatError, match="k_row"):
        gp.Program(cfg).append_kv(lay, 0, 0, 0, np.ones(3, np.int8), np.ones(lay.head_dim, np.int8))
    with pytest.raises(FormatError, match="pos"):
        gp.Program(cfg).append_kv(lay, 0, 0, 8, *[np.ones(lay.head_dim, np.int8)] * 2)


# --------------------------------------------------------------------------- cycle model

@pytest.mark.parametrize("seed", range(4))
def test_attention_model_traces_obey_the_independent_checker(seed):
    cfg = SMALL
    rng = np.random.default_rng(100 + seed)
    G = [1, 4, 8, 3][seed]
    lay = KVLayout(cfg, cfg.elems * 2, 1, 2, 100, base=int(rng.integers(0, 40)))
    k, v = _cache(rng, lay, 100)
    q = rng.integers(-128, 128, (2, G, lay.head_dim), dtype=np.int8)
    p, _ = _attention_program(cfg, lay, rng, k, v, q, [100, 37], G, scale_config(0.01))
    p.load_tokens(np.ones((2, 16), np.int8)).gemm(0, 5).fence()
    tm = gp.predict(cfg, p.words, ref_phase=int(rng.integers(0, cfg.timing.tREFI)))
    chk = TimingChecker(cfg)
    for c in tm.commands:
        chk.command(*c)
    chk.finish(tm.cycles)
    assert chk.violations == []
    assert chk.counts["WR"] == 2 * 2 * 100 * lay.kw and chk.counts["REF"] >= 1
    for sp, n in zip(tm.attn_spans, [100, 37]):
        assert sp["softmax_done"] - sp["softmax_first"] == unit_schedule([n] * G)[-1][1]
        assert sp["v_first_cmd"] > sp["softmax_done"] > sp["k_last_issue"]
        assert sp["out_last"] - sp["out_first"] == G * lay.kw * cfg.elems - 1
    # RDs of the two ATTNs, each pass in address order: the second's score pass runs
    # before the first's value pass (the tail of an ATTN waits for the next score pass)
    rds = [cfg.word_addr(b, r, c) for _, kind, b, r, c in tm.commands if kind == gp.CMD_RD]
    exp = []
    for a, n in [(lay.k_addr(0, 0), 100), (lay.k_addr(1, 0), 37), (lay.v_addr(0, 0), 100),
                 (lay.v_addr(1, 0), 37)]:
        exp += list(range(a, a + n * lay.kw))
    assert rds[:len(exp)] == exp
    sp = tm.attn_spans
    assert sp[1]["k_last_issue"] < sp[0]["v_first_cmd"] < sp[1]["v_first_cmd"]


def test_attention_cycles_closed_form_without_refresh():
    """Score pass and value pass each stream L*kw words at one per max(tCCD_L, G)
    cycles: with no refresh in the window the phases add up as documented."""
    cfg = SMALL
    T = cfg.timing
    for G, n in [(1, 40), (4, 60), (8, 25)]:
        lay = KVLayout(cfg, cfg.elems * 2, 1, 1, 64)
        p = gp.Program(cfg).set_kv(lay)
        p.attention(lay, 0, 0, np.ones((G, lay.head_dim), np.int8), n, 100, 10)
        p.fence()                                      # runs the ATTN's tail
        tm = gp.predict(cfg, p.words, ref_phase=0)
        assert tm.refs == 0
        w = n * lay.kw
        sp = tm.attn_spans[0]
        pass_cycles = max(T.tCCD_L * (w - 1) + G, w * G)
        assert sp["k_last_issue"] - sp["start"] == pass_cycles + T.tRCD + T.tCL + 2
        assert sp["v_last_issue"] - sp["softmax_done"] == pass_cycles + T.tRCD + T.tCL + 3
        # the whole ATTN alone, its fetch to the next fetch (docs/attention.md)
        S = unit_schedule([n] * G)[-1][1]
        N = G * lay.kw * cfg.elems
        assert tm.instr_start[-1] - tm.instr_start[-2] == \
            2 * (pass_cycles + T.tRCD + T.tCL + 2) + S + N + 16


def test_attention_bench_rows():
    """sim.bench.attn (quick): the figures the docs quote hold: bandwidth-bound groups at
    contexts >= 1k use >= 87 % of the bundles' raw peak and >= 95 % of the attainable,
    G = 8 is compute bound (at most half), MAC/B = G, Op/B about 2 G."""
    from sim.bench.attn import rows
    rs = rows(quick=True)
    assert {(r["group"], r["context"]) for r in rs} == {(g, n) for g in (1, 4, 8)
                                                         for n in (128, 1024)}
    for r in rs:
        assert 0 < r["bw_fraction"] < r["fraction_of_attainable"] <= 1
        assert r["mac_per_byte"] == r["group"]
        assert abs(r["op_per_byte"] - 2 * r["group"]) < 0.25 * r["group"]
        assert r["cycles_per_group"] < r["cycles_alone"]         # the overlap pays
        if r["context"] >= 1024:
            if r["group"] <= SMALL.timing.tCCD_L:
                assert r["bw_fraction"] >= 0.87 and r["fraction_of_attainable"] >= 0.95
            else:
                assert r["bound"] == "compute" and r["bw_fraction"] <= 0.5
