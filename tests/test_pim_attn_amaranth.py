# amaranth: UnusedElaboratable=no
"""Decode attention on the Logic-PIM RTL (hdl.pim with attention), Amaranth simulator.

* programs of SET_KV / APPEND_KV / ATTN mixed with WRITE / LOAD_TOKENS / GEMM and
  bad instructions: every output value and ``last`` flag, the error bits, the
  busy cycles and the full DRAM command trace equal golden.pim's functional and
  cycle models (no stalls), and the independent checker finds no violation;
* the same programs under uniform, bursty and starving valid/ready stalls on the
  instruction, data and output streams: values, flags and errors equal the golden,
  a monitor checks the stream rules on ``out``;
* every error trigger of the attention instructions on its own (sticky bit, no data
  taken, no output, the unit carries on);
* a context at the build's capacity (``attn_len`` positions, ``attn_heads`` heads,
  the widest head) filling the whole bank slice.
"""
import numpy as np
import pytest
from amaranth.sim import Simulator

from golden import pim as gp
from golden.attention import decode_attention
from golden.pim.kv import KVLayout, max_capacity
from golden.softmax import scale_config
from hdl.pim import build
from tb.common import StallProfile, StreamRuleError
from tb.dram_timing import TimingChecker

SMALL = gp.CONFIG_SMALL


class _Monitor:
    """``out``: once valid is up with ready low, the next cycle shows valid and the
    same payload."""

    def __init__(self):
        self.cycle, self.held = 0, None

    def sample(self, valid, ready, payload):
        if self.held is not None:
            if not valid or payload != self.held:
                raise StreamRuleError(f"out: cycle {self.cycle}: {self.held!r} not held "
                                      f"(valid {valid}, payload {payload!r})")
        self.held = payload if valid and not ready else None
        self.cycle += 1


def run_unit(cfg, words, din, stalls=None, seed=0, max_cycles=400_000, dram=None):
    """Drive the unit; ``stalls``: {"instr", "din", "out": StallProfile} (None: none)."""
    dut = build(cfg)
    rng = np.random.default_rng(seed)
    prof = {k: StallProfile.always() for k in ("instr", "din", "out")}
    prof.update(stalls or {})
    res = dict(out=[], cmds=[])

    async def tb(ctx):
        w, d = list(words), list(din)
        cyc, a0, idle = 0, None, 0
        up_i = up_d = False
        mon = _Monitor()
        while cyc < max_cycles:
            up_i = bool(w) and (up_i or prof["instr"].go(rng))
            up_d = bool(d) and (up_d or prof["din"].go(rng))
            rdy = int(prof["out"].go(rng))
            ctx.set(dut.instr.valid, int(up_i))
            if w:
                ctx.set(dut.instr.payload, w[0])
            ctx.set(dut.din.valid, int(up_d))
            if d:
                ctx.set(dut.din.payload, d[0])
            ctx.set(dut.out.ready, rdy)
            if ctx.get(dut.cmd_valid):
                res["cmds"].append((cyc, ctx.get(dut.cmd_kind), ctx.get(dut.cmd_bundle),
                                    ctx.get(dut.cmd_row), ctx.get(dut.cmd_col)))
            if up_i and ctx.get(dut.instr.ready):
                if a0 is None:
                    a0, res["phase"] = cyc, ctx.get(dut.ref_phase)
                w.pop(0)
                up_i = False
            if up_d and ctx.get(dut.din.ready):
                d.pop(0)
                up_d = False
            v = ctx.get(dut.out.valid)
            p = ctx.get(dut.out.payload)
            mon.sample(v, rdy, (p.value, p.last) if v else None)
            if v and rdy:
                res["out"].append((p.value, p.last))
            await ctx.tick()
            cyc += 1
            idle = idle + 1 if (not w and not d and not ctx.get(dut.busy)) else 0
            if idle > 50:
                break
        res.update(perf=ctx.get(dut.perf_cycles), err=ctx.get(dut.err),
                   fault=ctx.get(dut.dram_fault), a0=a0, end=cyc)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    assert res["end"] < max_cycles, "the unit hung"
    return res


def check(cfg, prog, res, timed=True):
    gold = gp.execute(cfg, prog.words, prog.din)
    vals = np.array([v for v, _ in res["out"]], np.int64)
    lasts = np.array([bool(x) for _, x in res["out"]], bool)
    assert len(vals) == len(gold.values)
    assert np.array_equal(vals, gold.values) and np.array_equal(lasts, gold.last)
    assert res["err"] == gold.err and res["fault"] == 0
    chk = TimingChecker(cfg)
    for c in res["cmds"]:
        chk.command(*c)
    chk.finish(res["end"])
    assert not chk.violations, chk.violations[:5]
    if timed:
        tm = gp.predict(cfg, prog.words, ref_phase=res["phase"])
        assert res["perf"] == tm.cycles
        rtl = [(c[0] - res["a0"],) + c[1:] for c in res["cmds"] if c[0] - res["a0"] <= tm.cycles]
        assert rtl == tm.commands
    return gold


def attention_program(cfg, rng, n_attn=3, gemms=True, bad=True):
    """A random decode-attention program: a KV layout (random head dim, slots, base),
    every slot filled by APPEND_KV to a random length, ATTN of random query groups and
    lengths, with GEMM work and bad instructions in between."""
    D = int(rng.integers(1, cfg.attn_kw * cfg.elems + 1))
    Hkv, B = int(rng.integers(1, 3)), int(rng.integers(1, 3))
    base = int(rng.integers(0, 64))
    cap = min(max_capacity(cfg, D, B * Hkv, base), int(rng.integers(4, 24)))
    lay = KVLayout(cfg, D, Hkv, B, cap, base)
    p = gp.Program(cfg)
    if gemms:
        p.write_matrix(0, rng.integers(-128, 128, (4, 20), dtype=np.int8))
        p.load_tokens(rng.integers(-128, 128, (2, 20), dtype=np.int8)).gemm(0, 4)
    p.set_kv(lay)
    fill = {}
    for r in range(B):
        for h in range(Hkv):
            fill[r, h] = int(rng.integers(1, cap + 1))
            for pos in range(fill[r, h]):
                p.append_kv(lay, r, h, pos, *rng.integers(-128, 128, (2, D), dtype=np.int8))
    outs = [("requant", 1, 15), "int32", "int8_sat", ("requant", 3000, 18)]
    for i in range(n_attn):
        r, h = int(rng.integers(0, B)), int(rng.integers(0, Hkv))
        G = int(rng.integers(1, cfg.attn_heads + 1))
        if i == 0 or rng.random() < 0.3:          # otherwise the ATTNs chain
            p.set_out(outs[int(rng.integers(0, 4))])
        n = int(rng.integers(1, fill[r, h] + 1))
        sc = float(rng.choice([0.002, 0.01, 0.05]))
        p.attention(lay, r, h, rng.integers(-128, 128, (G, D), dtype=np.int8), n, *scale_config(sc))
        if bad and rng.random() < 0.5:
            past = (cfg.words - lay.base) // lay.slot_words     # the first slot past the slice
            p.raw(gp.encode("ATTN", slot=past, len=1, mult=1, shift=1))           # ERR_ADDR
            p.raw(gp.encode("APPEND_KV", slot=0, pos=cap))                          # ERR_ADDR
        if gemms and rng.random() < 0.5:
            p.load_tokens(rng.integers(-128, 128, (3, 20), dtype=np.int8)).gemm(0, 4)
            if rng.random() < 0.5:
                p.fence()
    return p


def chained_program(cfg, rng, shapes, D=None, lead=0):
    """Back-to-back ATTNs (LOAD_TOKENS + ATTN each, nothing else between): each one's
    score pass and softmax overlap the previous one's value pass. ``shapes``: (G, L);
    ``lead`` NOPs first (to move the refresh)."""
    D = D or cfg.attn_kw * cfg.elems - 3
    L = max(n for _, n in shapes)
    lay = KVLayout(cfg, D, 1, 2, L)
    p = gp.Program(cfg)
    for _ in range(lead):
        p.nop()
    p.set_kv(lay).set_out(("requant", 1, 14))
    for pos in range(L):
        for r in range(2):
            p.append_kv(lay, r, 0, pos, *rng.integers(-128, 128, (2, D), dtype=np.int8))
    for i, (G, n) in enumerate(shapes):
        p.attention(lay, i % 2, 0, rng.integers(-128, 128, (G, D), dtype=np.int8), n,
                    *scale_config(0.004))
    return p


@pytest.mark.parametrize("shapes, D", [
    ([(8, 60), (1, 2), (3, 1), (8, 60), (2, 30)], None),  # short score passes: the softmax queues
    ([(1, 5), (8, 60), (4, 60), (1, 60)], None),          # long score passes: the softmax hides
    ([(8, 70), (5, 120), (1, 1)], 16),                    # a queued softmax outlasts the tail
], ids=["softmax_queues", "softmax_hidden", "queued_softmax_binds"])
def test_attention_chained_bit_and_cycle_exact(shapes, D):
    cfg = SMALL
    prog = chained_program(cfg, np.random.default_rng(len(shapes)), shapes, D,
                           lead=1500 if D else 0)
    res = run_unit(cfg, prog.words, prog.din)
    gold = check(cfg, prog, res)
    assert len(gold.attns) == len(shapes)
    tm = gp.predict(cfg, prog.words, ref_phase=res["phase"])
    sp = tm.attn_spans
    for a, b in zip(sp, sp[1:]):          # b's score pass ran before a's value pass
        assert b["k_last_issue"] < a["v_first_cmd"]
    if shapes[1] == (1, 2):                # b's softmax waited for a's
        assert sp[1]["softmax_first"] > sp[1]["k_last_issue"] + 6
        assert sp[0]["v_first_cmd"] > sp[1]["k_last_issue"] + 30      # a's tail waited for p
    if D == 16:                            # the second softmax queued, and its tail waited for it
        assert sp[1]["softmax_first"] == sp[0]["softmax_done"] + 2 > sp[1]["k_last_issue"] + 6
        assert sp[1]["softmax_done"] > sp[2]["k_last_issue"] + 5
        assert tm.refs == sum(1 for c in tm.commands if c[1] == gp.CMD_REF)


@pytest.mark.parametrize("kind", ["bursty", "starve"])
def test_attention_chained_under_stalls(kind):
    cfg = SMALL
    prog = chained_program(cfg, np.random.default_rng(8), [(8, 40), (1, 2), (5, 40), (2, 9)])
    res = run_unit(cfg, prog.words, prog.din, stalls=STALLS[kind](), seed=11)
    check(cfg, prog, res, timed=False)


@pytest.mark.parametrize("seed", range(4))
def test_attention_bit_and_cycle_exact_no_stalls(seed):
    cfg = SMALL
    rng = np.random.default_rng(seed)
    prog = attention_program(cfg, rng)
    res = run_unit(cfg, prog.words, prog.din)
    gold = check(cfg, prog, res)
    assert len(gold.attns) == 3


STALLS = {
    "uniform": lambda: {k: StallProfile.uniform(0.6) for k in ("instr", "din", "out")},
    "bursty": lambda: {k: StallProfile.bursty(0.7, 12) for k in ("instr", "din", "out")},
    "starve": lambda: {k: StallProfile.starve(150, 120) for k in ("instr", "din", "out")},
}


@pytest.mark.parametrize("kind", sorted(STALLS))
def test_attention_under_stalls(kind):
    cfg = SMALL
    rng = np.random.default_rng({"uniform": 5, "bursty": 6, "starve": 7}[kind])
    prog = attention_program(cfg, rng)
    res = run_unit(cfg, prog.words, prog.din, stalls=STALLS[kind](), seed=3)
    check(cfg, prog, res, timed=False)


def _bad_cases(cfg):
    """(name, words, error bits) after SET_KV(base 16, cap 8, kw 2) and LOAD_TOKENS
    (3 heads x 2 words); the golden test's list (tests/test_pim_attn_golden.py) plus
    the state and head-count triggers."""
    from test_pim_attn_golden import _attn_bad
    E = gp.encode
    cases = [(n, [w], e) for n, w, e in _attn_bad(cfg)]
    attn = E("ATTN", slot=0, len=2, mult=300, shift=12)
    cases += [
        ("ATTN token kw != kv kw", [E("LOAD_TOKENS", t=2, kw=1), attn], gp.ERR_TOKENS),
    ]
    return cases


@pytest.mark.parametrize("case", range(len(_bad_cases(SMALL))),
                         ids=[c[0] for c in _bad_cases(SMALL)])
def test_attention_error_trigger_rtl(case):
    cfg = SMALL
    name, words, err = _bad_cases(cfg)[case]
    rng = np.random.default_rng(case)
    lay = KVLayout(cfg, 2 * cfg.elems, 1, 2, 8, base=16)
    p = gp.Program(cfg)
    p.raw(gp.encode("APPEND_KV", slot=0, pos=0))          # before any SET_KV: ERR_FIELD
    p.set_kv(lay)
    for pos in range(3):
        p.append_kv(lay, 1, 0, pos, *rng.integers(-128, 128, (2, lay.head_dim), dtype=np.int8))
    p.load_tokens(rng.integers(-128, 128, (3, lay.head_dim), dtype=np.int8))
    for w in words:
        dn = gp.decode(w)["name"]
        dw = {"APPEND_KV": 0 if err else 4, "LOAD_TOKENS": gp.decode(w)["t"] * gp.decode(w)["kw"]}
        p.raw(w, list(range(7, 7 + dw.get(dn, 0))))
    p.set_kv(lay).set_out(("requant", 1, 12))
    p.attention(lay, 1, 0, rng.integers(-128, 128, (2, lay.head_dim), dtype=np.int8), 3, 300, 12)
    res = run_unit(cfg, p.words, p.din)
    gold = check(cfg, p, res)
    assert gold.err == err | gp.ERR_FIELD, name
    assert len(gold.attns) == 1 + (gp.decode(words[-1])["name"] == "ATTN" and not err)


def test_attention_at_the_builds_capacity():
    """attn_len positions, attn_heads query heads, attn_kw words per row: the score
    buffer full and the whole bank slice one slot (no stalls: cycle exact)."""
    cfg = SMALL
    rng = np.random.default_rng(99)
    D = cfg.attn_kw * cfg.elems
    lay = KVLayout(cfg, D, 1, 1, max_capacity(cfg, D, 1))
    assert lay.capacity == cfg.attn_len and lay.end == cfg.words
    L = lay.capacity
    k, v = (rng.integers(-128, 128, (1, 1, L, D), dtype=np.int8) for _ in range(2))
    img = lay.image(k, v)
    p = gp.Program(cfg).write(0, [img[a] for a in range(cfg.words)]).set_kv(lay)
    p.set_out(("requant", 1, 15))
    p.attention(lay, 0, 0, rng.integers(-128, 128, (cfg.attn_heads, D), dtype=np.int8), L,
                *scale_config(0.003))
    res = run_unit(cfg, p.words, p.din)
    gold = check(cfg, p, res)
    ref = decode_attention(gold.state.buf[None], k, v, [L], *scale_config(0.003), 1, 15)
    assert np.array_equal(gold.values.reshape(1, cfg.attn_heads, D), ref)


def test_attention_head_count_the_build_cannot_hold():
    """A build with attn_heads = 4 < max_tokens: ATTN over 5 loaded heads is refused
    (ERR_TOKENS, no output), over 4 it runs."""
    cfg = gp.PIMConfig(**{**gp.config_to_dict(SMALL), "timing": SMALL.timing, "attn_heads": 4})
    rng = np.random.default_rng(4)
    lay = KVLayout(cfg, 20, 1, 1, 6)
    p = gp.Program(cfg).set_kv(lay)
    for pos in range(6):
        p.append_kv(lay, 0, 0, pos, *rng.integers(-128, 128, (2, 20), dtype=np.int8))
    p.load_tokens(rng.integers(-128, 128, (5, 20), dtype=np.int8))
    p.raw(gp.encode("ATTN", slot=0, len=6, mult=500, shift=14))
    p.attention(lay, 0, 0, rng.integers(-128, 128, (4, 20), dtype=np.int8), 6, 500, 14)
    res = run_unit(cfg, p.words, p.din)
    gold = check(cfg, p, res)
    assert gold.err == gp.ERR_TOKENS and len(gold.attns) == 1
