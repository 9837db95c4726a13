"""hdl.pim.gemm.GEMMEngine on its own in the Amaranth simulator: the bench plays the
weight FIFO (w_data/w_rdy/w_pop), the token buffer (a synchronous read of buf_addr,
as the unit's lib.memory read port) and the output FIFO (out_we in, out_taken out).

Every output value and its ``last`` flag equal golden.pim.execute; the pipeline
latency is the docstring's (issue at c, output FIFO write at c + 4; a GEMM of n rows,
kw words, t tokens takes n x kw x t issue cycles); weight and output stalls only
delay results (never dropped, duplicated or reordered; the output FIFO never holds
more than out_depth); ``reserved_nz`` is exactly "results issued and not yet taken";
``done`` pulses once, with the last result.
"""
import numpy as np
import pytest
from amaranth.sim import Simulator

from golden import pim as gp
from hdl.pim.gemm import GEMMEngine, kw_stride

#: 4 int8 lanes a word, up to 4 tokens of 4 words, an 8-entry output FIFO.
TINY = gp.PIMConfig(bank_groups=8, banks_per_group=1, banks_per_bundle=1, rows=8, cols=4,
                    bundle_bits=32, max_tokens=4, max_k_words=4, out_depth=8)
#: max_k_words 3: the token buffer's word stride (4) is wider than a token.
ODD = gp.PIMConfig(bank_groups=8, banks_per_group=1, banks_per_bundle=1, rows=8, cols=4,
                   bundle_bits=32, max_tokens=3, max_k_words=3, out_depth=8)
LAT = 4          # issue (S0) at c -> output FIFO write (S4) at c + 4
MODES = {"int32": (0, 0, 0), "int8_sat": (1, 0, 0)}


def make_gemm(cfg, rng, n, kw, t, out="int32", extreme=False):
    """One GEMM job: int8 weights (n, K) and tokens (t, K), K = kw words; golden
    outputs from golden.pim.execute of the equivalent instruction stream."""
    K = kw * cfg.elems
    if extreme:                 # every product -128 x -128: the largest accumulators
        w, x = np.full((n, K), -128, np.int8), np.full((t, K), -128, np.int8)
    else:
        w = rng.integers(-128, 128, (n, K), dtype=np.int8)
        x = rng.integers(-128, 128, (t, K), dtype=np.int8)
    prog = gp.Program(cfg).write_matrix(0, w).load_tokens(x).set_out(out).gemm(0, n)
    gold = gp.execute(cfg, prog.words, prog.din)
    code, mult, shift = MODES.get(out) or (2, out[1], out[2])
    return dict(n=n, kw=kw, t=t, w=gp.pack_rows(cfg, w), x=gp.pack_rows(cfg, x),
                mode=(code, mult, shift), values=[int(v) for v in gold.values],
                last=[bool(v) for v in gold.last])


def run_gemm(cfg, jobs, w_ok=lambda c: True, out_ok=lambda c: True, seed=0, max_cycles=20_000):
    """Run ``jobs`` back to back (each starts the cycle after the previous ``done``,
    as the unit's sequencer does). ``w_ok(c)``: weight FIFO may present a word in
    cycle c; ``out_ok(c)``: the consumer takes a result in cycle c. Returns the
    per-cycle record and the start cycles."""
    dut = GEMMEngine(cfg)
    rng = np.random.default_rng(seed)
    stride = kw_stride(cfg)
    junk = lambda: int.from_bytes(rng.bytes(cfg.bundle_bits // 8), "little")   # noqa: E731
    rec = dict(starts=[], out=[], we=[], taken=[], pops=[], done=[], rnz=[], active=[],
               occ=[])

    async def tb(ctx):
        todo, wf, of, buf = list(jobs), [], [], {}
        cyc, read, busy, tail = 0, 0, False, 0
        while cyc < max_cycles and tail < 30:
            # token buffer: synchronous read of last cycle's address (garbage off the tokens)
            ctx.set(dut.buf_data, buf.get(read, junk()))
            start = not busy and bool(todo) and cyc > 0
            if start:
                j = todo.pop(0)
                wf = list(j["w"])
                buf = {tt * stride + c: j["x"][tt * j["kw"] + c]
                       for tt in range(j["t"]) for c in range(j["kw"])}
                for p, v in zip((dut.n, dut.kw, dut.t), (j["n"], j["kw"], j["t"])):
                    ctx.set(p, v)
                for p, v in zip((dut.mode, dut.mult, dut.shift), j["mode"]):
                    ctx.set(p, v)
                rec["starts"].append(cyc)
                busy = True
            ctx.set(dut.start, start)
            rdy = bool(wf) and bool(w_ok(cyc))
            ctx.set(dut.w_rdy, rdy)
            ctx.set(dut.w_data, wf[0] if rdy else junk())
            take = bool(of) and bool(out_ok(cyc))
            ctx.set(dut.out_taken, take)
            if take:
                of.pop(0)
            rec["taken"].append(take)
            read = ctx.get(dut.buf_addr)
            pop = ctx.get(dut.w_pop)
            assert rdy or not pop, f"cycle {cyc}: w_pop without w_rdy"
            if pop:
                wf.pop(0)
            rec["pops"].append(pop)
            we = ctx.get(dut.out_we)
            rec["we"].append(we)
            if we:
                v = (ctx.get(dut.out_value), bool(ctx.get(dut.out_last)))
                rec["out"].append((cyc, v))
                of.append(v)
            rec["occ"].append(len(of))
            done = ctx.get(dut.done)
            rec["done"].append(done)
            rec["rnz"].append(ctx.get(dut.reserved_nz))
            rec["active"].append(ctx.get(dut.active))
            if done:
                busy = False
            await ctx.tick()
            cyc += 1
            tail = tail + 1 if not todo and not busy and not of else 0
        assert not todo and not busy, "engine hung"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return rec


def check(cfg, jobs, rec):
    """Results, flags and bookkeeping that hold whatever the stalls."""
    values = [v for _, (v, _) in rec["out"]]
    lasts = [last for _, (_, last) in rec["out"]]
    assert values == [v for j in jobs for v in j["values"]]
    assert lasts == [x for j in jobs for x in j["last"]]
    done = [c for c, d in enumerate(rec["done"]) if d]
    assert done == [c for c, (_, last) in rec["out"] if last]         # with the last result
    assert sum(rec["pops"]) == sum(j["n"] * j["kw"] for j in jobs)
    assert max(rec["occ"]) <= cfg.out_depth
    we, tk = np.cumsum([0] + rec["we"]), np.cumsum([0] + rec["taken"])
    for c in range(len(rec["rnz"]) - LAT):     # issued (written LAT later) minus taken
        assert rec["rnz"][c] == int(we[c + LAT] - tk[c] != 0), f"reserved_nz at cycle {c}"
    assert rec["rnz"][-1] == 0 and rec["active"][-1] == 0
    return done


@pytest.mark.parametrize("n, kw, t", [(1, 1, 1), (3, 2, 4), (5, 4, 1), (2, 1, 3), (2, 4, 4)])
def test_results_and_latency_without_stalls(n, kw, t):
    """No stalls: one issue a cycle from start + 1; the result of row r, token j is
    written LAT cycles after its last word's issue; done = start + n kw t + LAT."""
    cfg = TINY
    job = make_gemm(cfg, np.random.default_rng(n * 100 + kw * 10 + t), n, kw, t)
    rec = run_gemm(cfg, [job])
    (done,) = check(cfg, [job], rec)
    s = rec["starts"][0]
    assert done - s == n * kw * t + LAT
    want = [s + 1 + (r * kw + kw - 1) * t + j + LAT for r in range(n) for j in range(t)]
    assert [c for c, _ in rec["out"]] == want
    assert [c for c, p in enumerate(rec["pops"]) if p] == \
        [s + 1 + i * t + t - 1 for i in range(n * kw)]        # a word used t cycles, then popped
    act = [c for c, a in enumerate(rec["active"]) if a]
    assert act == list(range(s + 1, s + 1 + n * kw * t))


@pytest.mark.parametrize("out", ["int32", "int8_sat", ("requant", 40000, 16), ("requant", 3, 1)])
def test_output_modes_and_extreme_accumulators(out):
    """Each output mode on random and on all -128 x -128 data (the largest sums)."""
    cfg = TINY
    rng = np.random.default_rng(3)
    jobs = [make_gemm(cfg, rng, 3, 4, 4, out), make_gemm(cfg, rng, 2, 4, 2, out, extreme=True)]
    top = 4 * cfg.elems * 128 * 128                        # K = 16 products of 2**14
    assert jobs[1]["values"] == [top if out == "int32" else 127] * 4
    check(cfg, jobs, run_gemm(cfg, jobs))


def test_back_to_back_jobs_reset_the_accumulators():
    """Jobs of other shapes start the cycle after done: accumulators restart at the
    first word (no carry-over), token order and row order hold."""
    cfg = TINY
    rng = np.random.default_rng(4)
    jobs = [make_gemm(cfg, rng, 3, 3, 4), make_gemm(cfg, rng, 4, 1, 2),
            make_gemm(cfg, rng, 2, 4, 1), make_gemm(cfg, rng, 1, 2, 4)]
    check(cfg, jobs, run_gemm(cfg, jobs))


def test_token_buffer_stride_wider_than_a_token():
    cfg = ODD
    rng = np.random.default_rng(5)
    jobs = [make_gemm(cfg, rng, 3, 3, 3), make_gemm(cfg, rng, 2, 2, 2)]
    check(cfg, jobs, run_gemm(cfg, jobs))


@pytest.mark.parametrize("seed", [1, 2])
def test_weight_and_output_stalls(seed):
    """Random weight gaps and a consumer that stops for long stretches (longer than
    the output FIFO): the engine stalls, every result arrives once and in order."""
    cfg = TINY
    rng = np.random.default_rng(seed)
    jobs = [make_gemm(cfg, rng, 6, 2, 4, "int8_sat"), make_gemm(cfg, rng, 5, 1, 3),
            make_gemm(cfg, rng, 4, 3, 1, ("requant", 777, 10))]
    wmask = rng.random(20_000) < 0.7
    omask = (np.arange(20_000) // 23) % 3 == 0          # ready 23 cycles in every 69
    rec = run_gemm(cfg, jobs, w_ok=lambda c: wmask[c], out_ok=lambda c: omask[c], seed=seed)
    check(cfg, jobs, rec)
    assert max(rec["occ"]) == cfg.out_depth             # the FIFO did fill: back-pressure bit


def test_stalled_consumer_holds_the_array():
    """With nobody taking results, exactly out_depth final issues happen, then the
    engine waits; once the consumer takes them everything completes."""
    cfg = TINY
    job = make_gemm(cfg, np.random.default_rng(6), 4, 2, 4)     # 16 results > out_depth
    rec = run_gemm(cfg, [job], out_ok=lambda c: c > 200)
    check(cfg, [job], rec)
    assert sum(rec["we"][:200]) == cfg.out_depth
    assert rec["rnz"][150] == 1 and rec["active"][150] == 1


def test_wide_word_small_config():
    """CONFIG_SMALL: 16 lanes (the lane-sum tree at 16), 8 tokens, 16-word rows."""
    cfg = gp.CONFIG_SMALL
    rng = np.random.default_rng(8)
    jobs = [make_gemm(cfg, rng, 3, 16, 8, ("requant", 12345, 14)), make_gemm(cfg, rng, 2, 5, 8)]
    check(cfg, jobs, run_gemm(cfg, jobs))
