"""hdl.sptc.control.JobControl on its own: a LOAD job's write addresses (at token
base 0 and at other bases) and cycle count, a bad job's CHECK (a LOAD past the
buffer's last token included), a MATMUL job's SEL writes and issue stage (flags,
metadata, activation word per beat) against a Python model of the tiling, the
issue gate (at most two tiles in the unit), and the sticky error bits."""
import numpy as np
import pytest
from amaranth.sim import Simulator

from golden import sptc as gs
from hdl.sptc import CONFIGS
from hdl.sptc.control import JobControl

CFG = CONFIGS["small"]
C, L, R = CFG.cols, CFG.sel_lanes, CFG.rows
KW_BITS = (CFG.max_kw - 1).bit_length()
REGS = dict(op=gs.OP_MATMUL, mode=1, out_mode=0, mult=0, shift=0, k_words=3, v_steps=3,
            m_rows=6, n_row_tiles=2, n_sel=6, n_tokens=8, sam_n=1, sam_m=1, tok_base=0)


def sim(body):
    dut = JobControl(CFG)
    out = {}

    async def tb(ctx):
        await body(ctx, dut, out)

    s = Simulator(dut)
    s.add_clock(1e-6)
    s.add_testbench(tb)
    s.run()
    return out


async def start(ctx, dut, regs):
    for k, v in regs.items():
        ctx.set(getattr(dut, k), v)
    ctx.set(dut.start, 1)
    await ctx.tick()
    ctx.set(dut.start, 0)


def run_load(regs, valid=lambda cyc: True, cycles=200):
    """A LOAD job with ``act_valid`` from ``valid(cycle)``: the write addresses, the
    cycles the stream was ready, cycles, error, done."""
    async def body(ctx, dut, out):
        ctx.set(dut.tail_idle, 1)
        await start(ctx, dut, regs)
        addrs, ready = [], 0
        for cyc in range(cycles):
            ctx.set(dut.act_valid, valid(cyc))
            ready += ctx.get(dut.act_ready)
            if ctx.get(dut.act_wr_en):
                addrs.append(ctx.get(dut.act_wr_addr))
            if ctx.get(dut.done):
                break
            await ctx.tick()
        out.update(addrs=addrs, ready=ready, cycles=ctx.get(dut.cycles),
                   error=ctx.get(dut.error), done=ctx.get(dut.done))
    return sim(body)


def test_load_job_writes_every_word_and_counts_its_cycles():
    k_words, n_tok = 3, 5
    out = run_load(gs.load_regs((4 * k_words, n_tok)))
    assert out["addrs"] == [t << KW_BITS | k for t in range(n_tok) for k in range(k_words)]
    assert out["cycles"] == gs.predict_load_cycles((4 * k_words, n_tok))
    assert out["error"] == 0


@pytest.mark.parametrize("k_words, n_tok, base", [(3, 5, 7), (1, 1, 9), (2, 1, 0),
                                                   (5, 4, CFG.max_tokens - 4),
                                                   (CFG.max_kw, 2, CFG.max_tokens - 2)])
def test_load_at_a_token_base_writes_its_tokens_there(k_words, n_tok, base):
    """tok_base + t is token t's buffer index, the last one up to max_tokens - 1;
    the cycle count is the model's (unstalled) and every word is written once
    under a stalled stream."""
    regs = gs.load_regs((4 * k_words, n_tok), base)
    want = [(base + t) << KW_BITS | k for t in range(n_tok) for k in range(k_words)]
    out = run_load(regs)
    assert (out["addrs"], out["error"], out["done"]) == (want, 0, 1)
    assert out["cycles"] == gs.predict_load_cycles((4 * k_words, n_tok))
    rng = np.random.default_rng(base)
    stalls = rng.random(400) < 0.4
    out = run_load(regs, lambda cyc: int(not stalls[cyc]), cycles=400)
    assert (out["addrs"], out["error"], out["done"]) == (want, 0, 1)


@pytest.mark.parametrize("n_tok, base", [(5, CFG.max_tokens - 4), (2, CFG.max_tokens - 1),
                                         (CFG.max_tokens, 1), (CFG.max_tokens - 6, 7)])
def test_load_past_the_last_token_is_refused(n_tok, base):
    """tok_base + n_tokens > max_tokens: ERR_CONFIG in CHECK, no word taken."""
    out = run_load(gs.load_regs((8, n_tok), base), cycles=20)
    assert (out["addrs"], out["ready"], out["error"], out["done"]) == ([], 0, gs.ERR_CONFIG, 1)


@pytest.mark.parametrize("bad", [dict(mode=3), dict(k_words=0), dict(out_mode=2, shift=0),
                                 dict(n_sel=CFG.max_sel + 1), dict(mode=2, sam_n=2, sam_m=2)])
def test_a_bad_job_ends_in_check(bad):
    async def body(ctx, dut, out):
        ctx.set(dut.tail_idle, 1)
        await start(ctx, dut, {**REGS, **bad})
        await ctx.tick()
        out.update(done=ctx.get(dut.done), busy=ctx.get(dut.busy), error=ctx.get(dut.error))

    assert sim(body) == {"done": 1, "busy": 0, "error": gs.ERR_CONFIG}


def tiling(regs):
    """The issue stage's beats in order: (first, blast, tlast, tt, base, mask, rows, word)."""
    ks, vs = regs["k_words"], regs["v_steps"]
    n_tt = -(-regs["n_sel"] // C)
    beats = []
    for tt in range(n_tt):
        mask = sum(1 << c for c in range(C) if regs["n_sel"] - tt * C > c)
        for rt in range(regs["n_row_tiles"]):
            for b in range(ks):
                beats.append((int(b % vs == 0), int(b % vs == vs - 1 or b == ks - 1),
                              int(b == ks - 1), tt, rt * R, mask, regs["m_rows"] - rt * R, b))
    return beats


@pytest.mark.parametrize("drain_lat, tok_base", [(3, 0), (25, 0), (3, CFG.max_tokens - 1)])
def test_matmul_job_sel_issue_and_gate(drain_lat, tok_base):
    """(A MATMUL ignores tok_base: the same tiling at a base a LOAD of n_tokens
    would be refused at.)"""
    regs = dict(REGS, tok_base=tok_base)
    sel = [1, 2, 4, 5, 6, 7]
    rng = np.random.default_rng(drain_lat)

    async def body(ctx, dut, out):
        ctx.set(dut.tail_idle, 1)
        await start(ctx, dut, regs)
        sel_writes, beats, pend, max_pend, drains = [], [], 0, 0, []
        tok_loads = 0
        for cyc in range(400):
            ctx.set(dut.sel.valid, 1)
            k = len(sel_writes)
            for l in range(L):
                ctx.set(dut.sel.payload[l], sel[k * L + l] if k * L + l < len(sel) else 0)
            valid = rng.random() < 0.8
            ctx.set(dut.w.valid, valid)
            ctx.set(dut.w.payload, [{"v0": 0, "v1": 0, "nib": 0b1110, "idx": 0}] * R)
            ctx.set(dut.drain_done, cyc in drains)
            if cyc in drains:
                pend -= 1
            if ctx.get(dut.sel.ready):
                sel_writes.append((ctx.get(dut.sel_wr_addr), ctx.get(dut.sel_wr_en),
                                   ctx.get(dut.tok_first)))
            if valid and ctx.get(dut.w.ready):
                gw = [ctx.get(dut.gw[c]) for c in range(C)]
                assert len(set(gw)) == 1
                beats.append(gw[0])
            if ctx.get(dut.s1_valid):
                m = ctx.get(dut.s1_meta)
                i = len(out.setdefault("s1", []))
                out["s1"].append((ctx.get(dut.s1_first), ctx.get(dut.s1_blast),
                                  ctx.get(dut.s1_tlast), m & 0xFFFF, m >> 16 & 0xFFFF, m >> 32,
                                  ctx.get(dut.s1_rows), beats[i]))
                if ctx.get(dut.s1_first) and out["s1"][-1][-1] == 0:
                    pend += 1
                if ctx.get(dut.s1_tlast):
                    drains.append(cyc + drain_lat)
                max_pend = max(max_pend, pend)
            tok_loads += bin(ctx.get(dut.tok_load)).count("1")
            if ctx.get(dut.done):
                break
            await ctx.tick()
        out.update(sel_writes=sel_writes, max_pend=max_pend, tok_loads=tok_loads,
                   error=ctx.get(dut.error), done=ctx.get(dut.done))

    out = sim(body)
    assert out["done"] and out["error"] == 0
    assert out["sel_writes"] == [(0, 0b1111, 0b1111), (1, 0b0011, 0)]
    assert out["s1"] == tiling(regs)
    assert out["max_pend"] <= 2
    assert out["tok_loads"] == C * -(-regs["n_sel"] // C)


def test_bad_metadata_sets_its_sticky_bit_and_clear_drops_it():
    async def body(ctx, dut, out):
        ctx.set(dut.tail_idle, 1)
        await start(ctx, dut, dict(REGS, n_row_tiles=1, n_sel=4))
        ctx.set(dut.sel.valid, 1)
        ctx.set(dut.sel.payload, [0, 1, 2, 3])
        ctx.set(dut.w.valid, 1)
        ctx.set(dut.w.payload, [{"v0": 0, "v1": 0, "nib": 0b0101, "idx": 0}] * R)  # hi <= lo
        for _ in range(30):
            if ctx.get(dut.error):
                break
            await ctx.tick()
        out["error"] = ctx.get(dut.error)
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        await ctx.tick()
        out["cleared"] = ctx.get(dut.error)

    assert sim(body) == {"error": gs.ERR_META, "cleared": 0}
