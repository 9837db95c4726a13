"""hdl.sptc.store.AccStore against a Python model: flushes land on their store row
(identity, or Samoyeds' (r // N) * M + idx for each (N, M) of the config) and add
up; a copy moves the store into the drain bank and empties it; a shift moves the
drain bank up by drain_rows rows, whose top rows are `out`."""
import numpy as np
from amaranth.sim import Simulator

from hdl.sptc import CONFIGS
from hdl.sptc.store import AccStore

CFG = CONFIGS["small"]
R, C, S, P = CFG.rows, CFG.cols, CFG.store_rows, CFG.drain_rows


def run(nm, flushes):
    """nm: None (identity) or the index k of cfg.samoyeds_nm; flushes: (values, idx).
    Returns the drain bank's rows as read out after one copy, P rows per shift,
    then the rows after a second copy (the store must be empty)."""
    dut = AccStore(CFG)
    rows = []

    async def ctl(ctx, copy, shift):
        for c in range(C):
            for s in range(S):
                ctx.set(dut.ctl[c][s], copy | shift << 1)
        await ctx.tick()
        for c in range(C):
            for s in range(S):
                ctx.set(dut.ctl[c][s], 0)
        await ctx.tick().repeat(2)

    async def read(ctx):
        got = []
        for q in range(S // P):
            got += [[ctx.get(dut.out[p][c]) for c in range(C)] for p in range(P)]
            await ctl(ctx, 0, 1)
        return got

    async def tb(ctx):
        ctx.set(dut.job_sam, nm is not None)
        ctx.set(dut.job_nm, 0 if nm is None else 1 << nm)
        await ctx.tick().repeat(2)
        for vals, idx in flushes:
            for r in range(R):
                ctx.set(dut.idx[r], idx[r])
                for c in range(C):
                    ctx.set(dut.flush[r][c], vals[r][c])
            ctx.set(dut.flush_valid, 1)
            await ctx.tick()
            ctx.set(dut.flush_valid, 0)
            await ctx.tick().repeat(6)
        await ctl(ctx, 1, 0)
        rows.extend(await read(ctx))
        await ctl(ctx, 1, 0)
        rows.extend(await read(ctx))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    return rows


def test_store_routes_adds_copies_and_shifts():
    rng = np.random.default_rng(5)
    lim = 1 << (CFG.acc_bits - 3)
    for nm in [None] + list(range(len(CFG.samoyeds_nm))):
        n, m = (1, 1) if nm is None else CFG.samoyeds_nm[nm]
        store = np.zeros((S, C), np.int64)
        flushes = []
        for _ in range(3):
            vals = rng.integers(-lim, lim, (R, C)).tolist()
            idx = [0] * R
            for b in range(R // n):     # strictly increasing indices within a block
                pick = sorted(rng.choice(m, n, replace=False)) if nm is not None else [0] * n
                for j in range(n):
                    idx[b * n + j] = int(pick[j])
            flushes.append((vals, idx))
            for r in range(R):
                dest = r if nm is None else (r // n) * m + idx[r]
                store[dest] += vals[r]
        got = run(nm, flushes)
        assert got[:S] == store.tolist(), nm
        assert got[S:] == np.zeros((S, C), np.int64).tolist(), nm
