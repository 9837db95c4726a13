"""Amaranth-simulator unit tests of the CIM tile (no Verilator build: fast).

* the output/requantization stage against ``golden.numerics.apply_out`` bit for bit,
  on random and edge accumulators for every mode;
* the "small" configuration end to end: programs of every strategy from the golden
  encoder, results against the factored matmul and every instruction's cycle cost
  against the cycle model; a malformed program, then recovery after ``clear``.
"""
import dataclasses

import numpy as np
import pytest
from amaranth import Module, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from golden import apply_out
from golden.errors import FormatError
from golden import cim as gc
from golden import monarch as gm
from golden.cim.evaluate import monarch_steps
from hdl.cim import CONFIGS, build
from hdl.outstage import OutputStage
from tb.cim import job_program, malformed_jobs


class _OutStage(wiring.Component):
    acc: In(signed(32))
    kind: In(2)
    mult: In(16)
    shift: In(5)
    y: Out(signed(32))

    def elaborate(self, platform):
        m = Module()
        m.submodules.os = os_ = OutputStage(stages=0)
        m.d.comb += [os_.acc.eq(self.acc), os_.mode.eq(self.kind), os_.mult.eq(self.mult),
                     os_.shift.eq(self.shift), self.y.eq(os_.out)]
        return m


def test_out_stage_matches_numerics():
    rng = np.random.default_rng(0)
    edge = [0, 1, -1, 127, 128, -128, -129, 2**31 - 1, -2**31, 2**20, -2**20 - 1]
    accs = edge + [int(v) for v in rng.integers(-2**31, 2**31, size=60)]
    modes = [("int32",), ("int8_sat",), ("requant", 1, 1), ("requant", 65535, 31),
             ("requant", 0, 7), ("requant", 977, 13), ("requant", 65535, 1), ("requant", 3, 2)]
    dut = _OutStage()
    sim = Simulator(dut)
    checked = []

    async def tb(ctx):
        for mode in modes:
            kind = {"int32": 0, "int8_sat": 1, "requant": 2}[mode[0]]
            mult, shift = (mode[1], mode[2]) if kind == 2 else (0, 0)
            want = apply_out(np.array(accs, dtype=np.int64),
                             mode[0] if kind < 2 else ("requant", mult, shift))
            ctx.set(dut.kind, kind)
            ctx.set(dut.mult, mult)
            ctx.set(dut.shift, shift)
            for a, w in zip(accs, want):
                ctx.set(dut.acc, a)
                got = ctx.get(dut.y)
                assert got == int(w), (mode, a, got, int(w))
                checked.append(a)

    sim.add_testbench(tb)
    sim.run()
    assert len(checked) == len(accs) * len(modes)


def run_pysim(cfg, words, beats, *, clear_first=False, max_cycles=40000, adc=None):
    """Drive the tile with no stalls; returns (result beats, accept cycles, idle cycles, status).
    ``adc``: a list that receives ``(adc_rows, adc_bits)`` at every result beat."""
    dut = build(cfg)
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    out, accepts, idle, status = [], [], [], {}

    async def tb(ctx):
        wi = bi = cyc = 0
        ctx.set(dut.res.ready, 1)
        if clear_first:
            ctx.set(dut.clear, 1)
            await ctx.tick()
            ctx.set(dut.clear, 0)
        while cyc < max_cycles:
            ctx.set(dut.prog.valid, wi < len(words))
            if wi < len(words):
                ctx.set(dut.prog.payload, int(words[wi]))
            ctx.set(dut.act.valid, bi < len(beats))
            if bi < len(beats):
                ctx.set(dut.act.payload, int(beats[bi]))
            if ctx.get(dut.prog.ready) and wi < len(words):
                accepts.append(cyc)
                wi += 1
            if ctx.get(dut.act.ready) and bi < len(beats):
                bi += 1
            if ctx.get(dut.res.valid):
                out.append(ctx.get(dut.res.payload))
                if adc is not None:
                    adc.append((ctx.get(dut.adc_rows), ctx.get(dut.adc_bits)))
            if not ctx.get(dut.busy):
                idle.append(cyc)
            await ctx.tick()
            cyc += 1
            if wi == len(words) and bi == len(beats) and not ctx.get(dut.busy):
                idle.append(cyc)
                break
        status.update(error=ctx.get(dut.error), code=ctx.get(dut.error_code),
                      steps=ctx.get(dut.steps), cycles=cyc)

    sim.add_testbench(tb)
    sim.run()
    return out, accepts, idle, status


# the small tile with the FPGA's pipeline (every tree level and the DSP requantizers
# registered), and with a shorter one (no tree register, 2-stage requantizers)
# (lanes 4: the pipelined tile's accumulator banks take a MID's g = m / b elements at once)
PIPED = {"small_piped": dataclasses.replace(CONFIGS["small"], lanes=4, step_stages=10,
                                            out_stages=7),
         "small_piped2": dataclasses.replace(CONFIGS["small"], lanes=4, step_stages=6,
                                             out_stages=2)}


def config(name):
    return PIPED[name] if name in PIPED else CONFIGS[name]


# (4, dense, 1|3): partly filled arrays, where DenseMap fires several blocks per step;
# the "fpga" tile (32 x 32, the synthesis-sized config, pipelined) once, as it is not
# simulated in cocotb
@pytest.mark.parametrize("name,b,strategy,K", [
    ("small", 4, "dense", 1), ("small", 4, "dense", 3), ("small", 4, "sparse", 2),
    ("small", 4, "linear", 1), ("small", 8, "dense", 1), ("small", 8, "sparse", 1),
    ("small_piped", 4, "dense", 3), ("small_piped", 8, "sparse", 1),
    ("small_piped", 4, "linear", 1), ("small_piped2", 4, "dense", 3),
    ("small_piped2", 8, "dense", 1), ("fpga", 8, "dense", 2)])
def test_small_tile_runs_programs_bit_exact(name, b, strategy, K):
    cfg = config(name)
    rng = np.random.default_rng(b + K)
    mons = [gm.random_monarch(b, rng, mid=("requant", 400, 14),
                              out=["int32", "int8_sat", ("requant", 50, 11)][i % 3])
            for i in range(K)]
    xs = [rng.integers(-128, 128, size=b * b).astype(np.int8) for _ in range(2)]
    mp = gc.map_monarch(b * b, b, cfg.m, strategy, matrices=K)
    if strategy == "dense" and b == 4:
        assert any(bin(s.row_mask).count("1") > 1 for s in mp.steps)
    prog = gc.encode_program(mp, mons, 2, cfg)
    beats = gc.pack_inputs(xs * K, b, cfg)
    exp = gc.execute(prog.words, cfg, beats)
    out, acc, idle, st = run_pysim(cfg, prog.words, beats)
    assert st["error"] == 0 and st["steps"] == exp.steps
    z = gc.unpack_outputs(out, b * b, cfg)
    want = [mo.matmul(x).astype(np.int64) for mo in mons for x in xs]
    assert len(z) == len(want)
    for zz, w, e in zip(z, want, exp.outputs):
        assert np.array_equal(zz, e)
        assert np.array_equal(gm.unfold_output(zz, b), w)
    heads = [i for i, _, _ in exp.cycles]
    costs = [acc[heads[k + 1]] - acc[heads[k]] for k in range(len(heads) - 1)]
    costs.append(next(c for c in idle if c > acc[heads[-1]]) - acc[heads[-1]])
    assert costs == [c for _, _, c in exp.cycles]


@pytest.mark.parametrize("name", ["small", "small_piped"])
def test_small_tile_malformed_then_recovers(name):
    cfg = config(name)
    bad = malformed_jobs(cfg, seed=5)
    job = next(j for j in bad if j.expect == "BAD_MASK")
    words, beats, _ = job_program(job, cfg)
    exp = gc.execute(words, cfg, beats)
    rng = np.random.default_rng(9)
    mon = gm.random_monarch(4, rng, mid="int8_sat")
    x = rng.integers(-128, 128, size=16).astype(np.int8)
    good = gc.encode_program(gc.map_monarch(16, 4, cfg.m, "dense"), mon, 1, cfg)
    # the bad program, a clear pulse, then a good program in one simulation
    dut = build(cfg)
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    seen = {}

    async def tb(ctx):
        ctx.set(dut.res.ready, 1)
        wi = bi = 0
        for _ in range(4 * (len(words) + len(beats))):   # both streams keep flowing
            ctx.set(dut.prog.valid, wi < len(words))
            if wi < len(words):
                ctx.set(dut.prog.payload, int(words[wi]))
            ctx.set(dut.act.valid, bi < len(beats))
            if bi < len(beats):
                ctx.set(dut.act.payload, int(beats[bi]))
            wi += bool(ctx.get(dut.prog.ready) and wi < len(words))
            bi += bool(ctx.get(dut.act.ready) and bi < len(beats))
            await ctx.tick()
            if wi == len(words) and bi == len(beats):
                break
        seen["consumed"] = (wi, bi)
        ctx.set(dut.prog.valid, 0)
        ctx.set(dut.act.valid, 0)
        await ctx.tick().repeat(5)
        seen["error"], seen["code"] = ctx.get(dut.error), ctx.get(dut.error_code)
        seen["valid_in_error"] = ctx.get(dut.res.valid)
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        seen["cleared"] = ctx.get(dut.error)
        gbeats = gc.pack_inputs([x], 4, cfg)
        out = []
        wi = bi = 0
        for _ in range(5000):
            ctx.set(dut.prog.valid, wi < len(good.words))
            if wi < len(good.words):
                ctx.set(dut.prog.payload, int(good.words[wi]))
            ctx.set(dut.act.valid, bi < len(gbeats))
            if bi < len(gbeats):
                ctx.set(dut.act.payload, int(gbeats[bi]))
            wi += bool(ctx.get(dut.prog.ready) and wi < len(good.words))
            bi += bool(ctx.get(dut.act.ready) and bi < len(gbeats))
            if ctx.get(dut.res.valid):
                out.append(ctx.get(dut.res.payload))
            await ctx.tick()
            if len(out) == 16 // cfg.lanes:
                break
        seen["out"] = out

    sim.add_testbench(tb)
    sim.run()
    assert seen["consumed"] == (len(words), len(beats))    # discarded, never stuck
    assert seen["error"] == 1 and seen["code"] == exp.error_code == gc.ERROR_CODES["BAD_MASK"]
    assert seen["valid_in_error"] == 0 and seen["cleared"] == 0
    z = gc.unpack_outputs(seen["out"], 16, cfg)[0]
    assert np.array_equal(gm.unfold_output(z, 4), mon.matmul(x).astype(np.int64))


def _per_token(adc, beats_per_token):
    """(adc_rows, adc_bits) sampled at every result beat -> one pair per token (the
    status must hold still over a token's OUTPUT)."""
    toks = [adc[i:i + beats_per_token] for i in range(0, len(adc), beats_per_token)]
    assert all(len(set(t)) == 1 for t in toks), toks
    return [t[0] for t in toks]


def _ones_weights(words, cfg):
    """``words`` with every LOADW data byte replaced by 1: every cell nonzero."""
    out, i = [int(w) for w in words], 0
    for ins in gc.decode_program(out, cfg):
        if ins.op == "LOADW":
            for k in range(ins.index + 1, ins.index + 1 + ins.fields["ncols"] * cfg.words_per_column):
                out[k] = int.from_bytes(b"\x01" * 8, "little")
    return np.array(out, dtype=np.uint64)


# Exercised ADC range (adc_rows / adc_bits) against golden.cim.program_activity, per token.
# Hand check (small tile, m = 16, b = 4): every read column of a Monarch step holds one
# b x b block, so 4 fired rows carry a nonzero weight -> adc_rows 4, adc_bits
# ceil(log2(4 + 1)) = 3; a zeroed block row leaves 3 rows (2 bits: log2(3 + 1) = 2);
# linear with all-ones tiles fires all 16 rows onto nonzero cells -> 16 rows, 5 bits.
@pytest.mark.parametrize("name", ["small", "small_piped"])
@pytest.mark.parametrize("case", ["dense", "dense3", "sparse", "linear", "zeros", "linear_ones"])
def test_small_tile_reports_exercised_adc_range(case, name):
    cfg = config(name)
    rng = np.random.default_rng(11)
    b, K, strategy = 4, 1, {"dense3": "dense", "zeros": "dense",
                            "linear_ones": "linear"}.get(case, case)
    if case == "dense3":
        K = 3
    mons = [gm.random_monarch(b, rng, mid=("requant", 400, 14)) for _ in range(K)]
    if case == "zeros":
        # every R block loses its input 1 and every L block its inputs 0 and 3 (blocks are
        # [out, in] and stored transposed: an input is a row), so each column of a stage-R
        # step fires 3 nonzero rows and of a stage-L step 2: token max 3 -> 2 bits
        R, L = mons[0].R.copy(), mons[0].L.copy()
        R[:, :, 1] = 0
        L[:, :, 0] = L[:, :, 3] = 0
        mons = [gm.Monarch(L, R, mons[0].mid_mode, mons[0].out_mode)]
    xs = [rng.integers(-128, 128, size=b * b).astype(np.int8) for _ in range(2)]
    mp = gc.map_monarch(b * b, b, cfg.m, strategy, matrices=K)
    words = gc.encode_program(mp, mons, 2, cfg).words
    if case == "linear_ones":
        words = _ones_weights(words, cfg)
    beats = gc.pack_inputs(xs * K, b, cfg)
    want = gc.program_activity(words, cfg, beats)
    adc = []
    out, _, _, st = run_pysim(cfg, words, beats, adc=adc)
    assert st["error"] == 0
    got = _per_token(adc, b * b // cfg.lanes)
    assert [r for r, _ in got] == list(want.tokens)
    assert [bb for _, bb in got] == list(want.bits)
    expect = {"linear_ones": 16, "zeros": 3}.get(case, 4)
    assert max(want.tokens) == expect
    assert gc.rows_bits(expect) == {16: 5, 4: 3, 3: 2}[expect]
    # the design figure (fired rows holding a stored cell) bounds what is exercised, and
    # equals it when no stored weight is zero
    design = gc.evaluate(b * b, b, cfg.m, strategy, matrices=K, config=cfg)
    assert max(want.tokens) <= max(s.rows_per_col for s in monarch_steps(mp, cfg))
    if case == "zeros":
        assert sorted(set(want.steps)) == [2, 3] and design.adc_bits == 3
    elif case == "linear":
        assert design.adc_bits == 5       # a naive tile stores all 16 rows of a column
    else:
        assert design.adc_bits == gc.rows_bits(max(want.tokens))


def _stalled_run(cfg, words, beats, n_beats, *, seed, kind, clear_at=None, max_cycles=60000):
    """The tile under ``kind`` stalls on prog, act and res (tb.common agents, res checked by
    the StreamMonitor's stream rules) until ``n_beats`` results arrived and it is idle.
    ``clear_at``: (beats received, program) pulses ``clear`` once that many result beats
    arrived, then runs ``program`` (words, beats) instead. Returns the result beats (after
    the clear) and the error bit."""
    from sim.sptc_amaranth import AmaranthIO
    from tb.common import Harness, StreamDriver, StreamMonitor, stall_profiles

    dut = build(cfg)
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    got = {}

    async def tb(ctx):
        io = AmaranthIO(ctx, dut)
        rng = np.random.default_rng(seed)
        prof = stall_profiles(rng, ["prog", "act", "res"], kind)
        prog = StreamDriver(io, "prog", rng, prof["prog"])
        act = StreamDriver(io, "act", rng, prof["act"])
        res = StreamMonitor(io, "res", rng, prof["res"])
        h = Harness(io, [prog, act, res])
        prog.push(words)
        act.push(beats)
        io.set("clear", 0)
        if clear_at is not None:
            n, (words2, beats2) = clear_at
            await h.run_until(lambda: len(res.received) >= n, max_cycles, "the first job")
            prog.flush()
            act.flush()
            io.set("clear", 1)
            await h.step()
            io.set("clear", 0)
            res.reset()
            got["stale"] = list(res.received)
            res.received.clear()
            prog.push(words2)
            act.push(beats2)
        await h.run_until(lambda: prog.idle and act.idle and len(res.received) >= n_beats
                          and not io.get("busy"), max_cycles)
        for _ in range(40):              # nothing may follow the last beat
            await h.step()
        got["out"] = list(res.received)
        got["error"] = io.get("error")

    sim.add_testbench(tb)
    sim.run()
    return got


def _job(cfg, b, strategy, K, seed):
    rng = np.random.default_rng(seed)
    mons = [gm.random_monarch(b, rng, mid=("requant", 400, 14),
                              out=["int32", ("requant", 50, 11), "int8_sat"][i % 3])
            for i in range(K)]
    xs = [rng.integers(-128, 128, size=b * b).astype(np.int8) for _ in range(2)]
    prog = gc.encode_program(gc.map_monarch(b * b, b, cfg.m, strategy, matrices=K), mons, 2, cfg)
    beats = gc.pack_inputs(xs * K, b, cfg)
    return prog.words, beats, gc.execute(prog.words, cfg, beats)


# the pipelined tile's result FIFO and its credits under back-pressure on res (b = 8: an
# OUTPUT of 32 beats, more than the FIFO holds), and starved inputs: every element
# against the program interpreter, the stream rules on res
@pytest.mark.parametrize("name,b,kind,seed", [("small_piped", 8, "bursty", 1),
                                              ("small_piped", 4, "starve", 2),
                                              ("small_piped2", 8, "uniform", 3),
                                              ("small", 8, "bursty", 4)])
def test_tile_under_stalls(name, b, kind, seed):
    cfg = config(name)
    words, beats, exp = _job(cfg, b, "dense", 2 if b == 4 else 1, seed)
    n = b * b
    assert n // cfg.lanes > cfg.out_fifo_depth or b == 4
    got = _stalled_run(cfg, words, beats, n // cfg.lanes * len(exp.outputs), seed=seed,
                       kind=kind)
    assert got["error"] == 0
    z = gc.unpack_outputs(got["out"], n, cfg)
    assert len(z) == len(exp.outputs)
    for zz, e in zip(z, exp.outputs):
        assert np.array_equal(zz, e)


# clear while an OUTPUT has beats in flight (res stalled): no stale beat after the clear,
# the credits restored, the next job exact
@pytest.mark.parametrize("name", ["small_piped", "small"])
def test_tile_clear_during_output(name):
    cfg = config(name)
    words, beats, _ = _job(cfg, 4, "dense", 1, 7)
    words2, beats2, exp2 = _job(cfg, 4, "sparse", 2, 8)
    got = _stalled_run(cfg, words, beats, 16 // cfg.lanes * len(exp2.outputs), seed=5,
                       kind="bursty", clear_at=(1, (words2, beats2)))
    assert got["error"] == 0 and len(got["stale"]) >= 1
    z = gc.unpack_outputs(got["out"], 16, cfg)
    assert len(z) == len(exp2.outputs)
    for zz, e in zip(z, exp2.outputs):
        assert np.array_equal(zz, e)


@pytest.mark.parametrize("field,value", [("step_stages", 5), ("step_stages", 11),
                                         ("out_stages", 5), ("step_stages", True)])
def test_pipeline_fields_checked(field, value):
    with pytest.raises(FormatError, match=field):                   # m = 16: 6..10 allowed
        dataclasses.replace(CONFIGS["small"], lanes=4, **{field: value})


def test_pipelined_tile_needs_banks_for_mid():
    with pytest.raises(FormatError, match="lanes"):                 # g = 4 > lanes = 2
        dataclasses.replace(CONFIGS["small"], step_stages=6)
    with pytest.raises(FormatError, match="out_stages"):
        dataclasses.replace(CONFIGS["small"], out_stages=2)


# every malformed job of tb.cim.malformed_jobs (each check of hdl.cim.check.InstrCheck):
# the golden interpreter's error code and step count, in both tiles
@pytest.mark.parametrize("name", ["small", "small_piped"])
def test_tile_error_codes_match_golden(name):
    cfg = config(name)
    jobs = malformed_jobs(cfg, seed=2)
    assert len({j.expect for j in jobs}) >= 8
    for job in jobs:
        words, beats, _ = job_program(job, cfg)
        exp = gc.execute(words, cfg, beats)
        assert exp.error == job.expect
        _, _, _, st = run_pysim(cfg, words, beats, max_cycles=20000)
        assert (st["error"], st["code"], st["steps"]) == (1, exp.error_code, exp.steps), job.name


# back-to-back STEPs that accumulate into the same column group (one-group steps: b =
# lanes), the pipelined tile's accumulator read-after-write at the least STEP distance
@pytest.mark.parametrize("name", ["small_piped", "small_piped2", "small"])
def test_tile_back_to_back_accumulation(name):
    from golden.cim.isa import OP_INPUT, OP_MID, OP_OUTPUT, column_words, enc_cfg, enc_loadw, \
        enc_step
    from golden.cim.mapper import Step
    from golden.numerics import parse_out
    cfg = config(name)
    m, b = cfg.m, 4
    rng = np.random.default_rng(21)
    words = [enc_cfg(2, parse_out(("requant", 300, 12)), parse_out("int32"))]
    for a in range(4):
        words.append(enc_loadw(a, 0, m))
        for c in range(m):
            words += column_words(rng.integers(-128, 128, size=m))

    def steps(stage):
        out, seen = [], set()
        for k in range(24):
            slot = [0, 0, 0, 1, 1, 2, 3, 3][k % 8] if k < 16 else int(rng.integers(0, 4))
            out.append(enc_step(Step(0, stage, int(rng.integers(0, 4)), 0, 0,
                                     int(rng.integers(1, 16)), 1 << slot, slot in seen)))
            seen.add(slot)
        return out

    words += [OP_INPUT, *steps(0), OP_MID, *steps(1), OP_OUTPUT]
    beats = gc.pack_inputs([rng.integers(-128, 128, size=b * b).astype(np.int8)], b, cfg)
    exp = gc.execute(words, cfg, beats)
    assert exp.error == "OK"
    out, acc, idle, st = run_pysim(cfg, words, beats)
    assert st["error"] == 0
    assert np.array_equal(gc.unpack_outputs(out, b * b, cfg)[0], exp.outputs[0])
