"""hdl.outstage.OutputStage (the output stage every engine shares) against
golden.numerics.apply_out, bit for bit, at every pipeline depth it offers, and
hdl.common's small helpers against plain Python."""
import numpy as np
import pytest
from amaranth import Module, Signal, signed, unsigned
from amaranth.sim import Simulator

from golden.numerics import apply_out
from hdl.common import bits_for, is_pow2, le_const, log2, or_all, round_const, sat8, tree_sum
from hdl.outstage import OutputStage

ACC = np.concatenate([np.random.default_rng(0).integers(-(1 << 31), 1 << 31, 120),
                      [0, 1, -1, 127, 128, -128, -129, (1 << 31) - 1, -(1 << 31)]])
MODES = [("int32", 0, 0, 0), ("int8_sat", 1, 0, 0)] + [
    (("requant", mult, shift), 2, mult, shift)
    for mult, shift in [(1, 1), (65535, 31), (0, 5), (40000, 16), (12345, 7), (3, 2)]]


@pytest.mark.parametrize("stages", [0, 1, 2, 3])
def test_output_stage_matches_numerics(stages):
    dut = OutputStage(stages=stages)
    got = {}

    async def tb(ctx):
        for out, code, mult, shift in MODES:
            ctx.set(dut.mode, code)
            ctx.set(dut.mult, mult)
            ctx.set(dut.shift, shift)
            vals = []
            # a new accumulator every cycle; the result of cycle i appears `stages` later
            for i in range(len(ACC) + stages):
                ctx.set(dut.acc, int(ACC[min(i, len(ACC) - 1)]))
                if i >= stages:
                    vals.append(ctx.get(dut.out))
                if stages:
                    await ctx.tick()
            got[str(out)] = vals

    sim = Simulator(dut)
    if stages:
        sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    for out, _, _, _ in MODES:
        exp = apply_out(ACC.astype(np.int64), out).astype(np.int64).tolist()
        assert got[str(out)] == exp, (stages, out)


def test_output_stage_refuses_bad_depth():
    with pytest.raises(ValueError, match="stages"):
        OutputStage(stages=4)


def test_helpers_match_python():
    assert [bits_for(n) for n in (1, 2, 3, 4, 5, 256, 257)] == [1, 1, 2, 2, 3, 8, 9]
    assert [log2(n) for n in (1, 2, 4, 8, 1024)] == [0, 1, 2, 3, 10]
    assert [is_pow2(n) for n in (0, 1, 2, 3, 64, 96)] == [False, True, True, False, True, False]
    x = Signal(unsigned(5))
    v = Signal(signed(12))
    terms = [Signal(unsigned(6), name=f"t{i}") for i in range(5)]
    sh = Signal(unsigned(5))
    m = Module()
    outs = {k: Signal(1, name=f"le{k}") for k in (-1, 0, 3, 17, 31)}
    m.d.comb += [outs[k].eq(le_const(x, k)) for k in outs]
    s8, tot, any_, rc = Signal(signed(8)), Signal(unsigned(9)), Signal(6), Signal(32)
    m.d.comb += [s8.eq(sat8(v)), tot.eq(tree_sum(terms)), any_.eq(or_all(terms)),
                 rc.eq(round_const(sh))]
    rng = np.random.default_rng(1)

    async def tb(ctx):
        for _ in range(200):
            xv, vv, shv = int(rng.integers(32)), int(rng.integers(-2048, 2048)), int(rng.integers(32))
            tv = [int(t) for t in rng.integers(64, size=5)]
            ctx.set(x, xv)
            ctx.set(v, vv)
            ctx.set(sh, shv)
            for t, val in zip(terms, tv):
                ctx.set(t, val)
            for k, o in outs.items():
                assert ctx.get(o) == int(xv <= k), (xv, k)
            assert ctx.get(s8) == max(-128, min(127, vv))
            assert ctx.get(tot) == sum(tv)
            acc = 0
            for t in tv:
                acc |= t
            assert ctx.get(any_) == acc
            assert ctx.get(rc) == ((1 << shv) >> 1)

    sim = Simulator(m)
    sim.add_testbench(tb)
    sim.run()


@pytest.mark.parametrize("acc_bits,hi_dsp", [(22, True), (22, False), (24, False), (24, True)])
def test_lane_schedule_matches_numerics(acc_bits, hi_dsp):
    """The SpTC lane schedule (stages=7, both forms of the high multiply): a new
    accumulator every cycle, each result 7 cycles later, as apply_out computes it."""
    from hdl.outstage import LANE_STAGES, lane_t_width
    lo, hi = -(1 << (acc_bits - 1)), (1 << (acc_bits - 1)) - 1
    acc = np.concatenate([np.random.default_rng(acc_bits).integers(lo, hi + 1, 60),
                          [0, 1, -1, 127, 128, -128, -129, lo, hi, 1 << 16, (1 << 17) - 1]])
    dut = OutputStage(stages=LANE_STAGES, acc_bits=acc_bits, hi_dsp=hi_dsp)
    tw = lane_t_width(acc_bits)
    got = {}

    async def tb(ctx):
        for out, code, mult, shift in MODES:
            ctx.set(dut.mode, code)
            ctx.set(dut.mult, mult)
            ctx.set(dut.shift, shift)
            # the per-job constants, computed here from their definition
            ctx.set(dut.rnd, (1 << (shift - 1)) if shift else 0)
            ctx.set(dut.sat_mask, sum(1 << j for j in range(tw - 7) if j >= shift))
            for _ in range(3):                  # the lane's copies of the job constants
                await ctx.tick()
            vals = []
            for i in range(len(acc) + LANE_STAGES):
                ctx.set(dut.acc, int(acc[min(i, len(acc) - 1)]))
                if i >= LANE_STAGES:
                    vals.append(ctx.get(dut.out))
                await ctx.tick()
            got[str(out)] = vals

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    for out, _, _, _ in MODES:
        exp = apply_out(acc.astype(np.int64), out).astype(np.int64).tolist()
        assert got[str(out)] == exp, (acc_bits, hi_dsp, out)


def test_lane_schedule_refuses_other_widths():
    with pytest.raises(ValueError, match="lane schedule"):
        OutputStage(stages=7, acc_width=24)
    with pytest.raises(ValueError, match="stages"):
        OutputStage(stages=6)
