"""hdl.sptc.pe.PEArray against a Python model of the PEs: each beat every PE
selects two of its column's four activations with its row's nibble (dense: the
beat half's fixed pair) and accumulates both products; a flush block's last beat
puts the sum into the flush register `pe_stages` cycles after its issue register.
The flags, metadata and indices reach s3 five cycles after s1."""
import numpy as np
from amaranth.sim import Simulator

from golden.sptc import DENSE_NIBBLES
from hdl.sptc import CONFIGS
from hdl.sptc.pe import PEArray

CFG = CONFIGS["small"]
R, C = CFG.rows, CFG.cols


def run(dense, beats, gaps):
    """beats: list of (first, blast, tlast, w[R][2], nib[R], idx[R], act[C][4], meta)."""
    dut = PEArray(CFG)
    flushes, s3 = [], []

    async def tb(ctx):
        ctx.set(dut.job_dense, dense)
        ctx.set(dut.spr, R)
        await ctx.tick().repeat(2)
        seq = []
        for b, gap in zip(beats, gaps):
            seq += [b] + [None] * gap
        seq += [None] * 10
        prev = None
        for i, b in enumerate(seq):
            ctx.set(dut.s1_valid, b is not None)
            if b is not None:
                first, blast, tlast, w, nib, idx, act, meta = b
                ctx.set(dut.s1_first, first)
                ctx.set(dut.s1_blast, blast)
                ctx.set(dut.s1_tlast, tlast)
                ctx.set(dut.s1_half, i & 1)
                ctx.set(dut.s1_meta, meta)
                ctx.set(dut.s1_rows, 3)
                ctx.set(dut.s1_lanes, [{"v0": w[r][0], "v1": w[r][1], "nib": nib[r],
                                        "idx": idx[r]} for r in range(R)])
            # the activation words arrive at s1b: the previous cycle's beat's
            if prev is not None:
                for c in range(C):
                    word = sum((x & 0xFF) << (8 * k) for k, x in enumerate(prev[6][c]))
                    ctx.set(dut.act[c], word)
            prev = b
            if ctx.get(dut.valid):
                s3.append((i, ctx.get(dut.flags), ctx.get(dut.meta),
                           [ctx.get(dut.idx[r]) for r in range(R)]))
            flushes.append([[ctx.get(dut.flush[r][c]) for c in range(C)] for r in range(R)])
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    return seq_index(beats, gaps), flushes, s3


def seq_index(beats, gaps):
    out, i = [], 0
    for _, g in zip(beats, gaps):
        out.append(i)
        i += 1 + g
    return out


def test_pe_array_against_model():
    rng = np.random.default_rng(11)
    for dense in (0, 1):
        beats, acc, expect = [], np.zeros((R, C), np.int64), []
        n = 12
        for j in range(n):
            first, blast = j % 4 == 0, j % 4 == 3
            w = rng.integers(-128, 128, (R, 2)).tolist()
            nib = [int(rng.choice([0b0100, 0b1000, 0b1100, 0b1001, 0b1101, 0b1110]))
                   for _ in range(R)]
            idx = [int(x) for x in rng.integers(0, 16, R)]
            act = rng.integers(-128, 128, (C, 4)).tolist()
            meta = int(rng.integers(0, 1 << 36))
            beats.append((first, blast, j == n - 1, w, nib, idx, act, meta))
        gaps = [int(g) for g in rng.integers(0, 3, n)]
        at = seq_index(beats, gaps)
        for j, (first, blast, _, w, nib, _, act, _) in enumerate(beats):
            if first:
                acc[:] = 0
            for r in range(R):
                nb = DENSE_NIBBLES[at[j] & 1] if dense else nib[r]
                lo, hi = nb & 3, nb >> 2
                for c in range(C):
                    acc[r, c] += int(w[r][0]) * int(act[c][lo]) + int(w[r][1]) * int(act[c][hi])
            if blast:
                expect.append((at[j], acc.copy()))
        _, flushes, s3 = run(dense, beats, gaps)
        for i, exp in expect:
            assert flushes[i + CFG.pe_stages] == exp.tolist(), (dense, i)
            assert flushes[i + CFG.pe_stages - 1] != exp.tolist() or i == expect[0][0]
        assert [x[0] for x in s3] == [i + 5 for i in at]
        for (i, flags, meta, idx), b in zip(s3, beats):
            assert flags == b[0] | b[1] << 1 | b[2] << 2
            assert meta == b[7] | min(3, R) << 36
            assert idx == b[5]
