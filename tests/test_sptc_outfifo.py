"""hdl.sptc.outfifo.OutFIFO: beats come out in order with their metadata and every
lane's value, under a sink that stalls at random; the read register never offers
more beats than the skid buffer holds (out_skid_depth), and every beat read
returns one credit."""
import numpy as np
from amaranth.sim import Simulator

from hdl.sptc import CONFIGS
from hdl.sptc.outfifo import OutFIFO

CFG = CONFIGS["small"]
N = CFG.drain_rows * CFG.cols
FD, SK, NST = CFG.out_fifo_depth, CFG.out_skid_depth, CFG.out_stages


def run(n_beats, p_produce, p_ready, seed):
    rng = np.random.default_rng(seed)
    dut = OutFIFO(CFG)
    got, sent, stats = [], [], {"credits": 0, "max_skid": 0}

    async def tb(ctx):
        inflight = []            # (write cycle, meta, data) of beats decided
        skid, outstanding, cyc = [], 0, 0
        while len(got) < n_beats:
            assert cyc < 40 * n_beats, "stuck"
            # a drain beat is decided only with a credit (as the drain controller does)
            dec = len(sent) < n_beats and outstanding < FD and rng.random() < p_produce
            for i in range(N):
                ctx.set(dut.lane_shift[i], int(dec))
            if dec:
                beat = (int(rng.integers(0, 1 << 38)),
                        [int(x) for x in rng.integers(0, 1 << 32, N, dtype=np.uint64)])
                sent.append(beat)
                inflight.append((cyc + NST, beat))
                outstanding += 1
            w = inflight and inflight[0][0] == cyc
            ctx.set(dut.write, bool(w))
            if w:
                _, (meta, data) = inflight.pop(0)
                ctx.set(dut.wmeta, meta)
                for i in range(N):
                    ctx.set(dut.lane_data[i], data[i])
            # the skid buffer: takes every offered beat, gives one to a ready sink
            take = bool(skid) and rng.random() < p_ready
            ctx.set(dut.taken, take)
            if take:
                got.append(skid.pop(0))
            if ctx.get(dut.rd_valid):
                skid.append((ctx.get(dut.rd_meta), [ctx.get(dut.rd_data[i]) for i in range(N)]))
            stats["max_skid"] = max(stats["max_skid"], len(skid))
            if ctx.get(dut.credit):
                stats["credits"] += 1
                outstanding -= 1
            cyc += 1
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    return sent, got, stats


def test_order_and_values_under_random_stalls():
    for seed, (pp, pr) in enumerate([(1.0, 1.0), (0.9, 0.3), (0.3, 0.9), (1.0, 0.05)]):
        sent, got, stats = run(60, pp, pr, seed)
        assert got == sent[:len(got)] and len(got) == 60, seed
        assert stats["max_skid"] <= SK and stats["credits"] >= 60 - 1


def test_full_rate_when_nothing_stalls():
    """A beat decided every cycle and a sink always ready: one beat out per cycle."""
    dut = OutFIFO(CFG)
    reads = []

    async def tb(ctx):
        ctx.set(dut.taken, 0)
        for i in range(N):
            ctx.set(dut.lane_shift[i], 1)
        for cyc in range(60):
            ctx.set(dut.write, cyc >= NST)
            ctx.set(dut.wmeta, cyc)
            if ctx.get(dut.rd_valid):
                reads.append((cyc, ctx.get(dut.rd_meta)))
            ctx.set(dut.taken, len(reads) > 1)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    first = reads[0][0]
    assert reads[:20] == [(first + i, NST + i) for i in range(20)]
