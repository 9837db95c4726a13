"""hdl.sptc.buffers.OperandBuffers: activation words read at (SEL token, K group)
two cycles after the address; the token registers loaded from the SEL beat being
written (the first tile) or from the banks one tile ahead (the next tile)."""
from amaranth.sim import Simulator

from hdl.sptc import CONFIGS
from hdl.sptc.buffers import OperandBuffers

CFG = CONFIGS["small"]          # 4 x 4, max_k 64 (16 words), 64 tokens, SEL lanes = cols


def word(t, k):
    return (t * 0x01000193 + k * 0x9E3779B1) & 0xFFFFFFFF


def test_act_read_at_sel_token_and_k_group():
    dut = OperandBuffers(CFG)
    C, KW = CFG.cols, CFG.max_kw
    sel = [[5, 2, 7, 1], [3, 0, 6, 4], [9, 8, 11, 10], [12, 13, 14, 15]]      # tiles 0..3
    seen = []

    async def check(ctx, tok):
        for gw in (0, 3, KW - 1):
            for c in range(C):
                ctx.set(dut.gw[c], (gw + c) % KW)
            await ctx.tick().repeat(2)         # RegReadRAM: two cycles
            got = [ctx.get(dut.act[c]) for c in range(C)]
            assert got == [word(tok[c], (gw + c) % KW) for c in range(C)], (tok, gw)
            seen.append(tuple(tok))

    async def tb(ctx):
        ctx.set(dut.act_wr_en, 1)
        for t in range(16):
            for k in range(KW):
                ctx.set(dut.act_wr_addr, t * KW + k)
                ctx.set(dut.act_wr_data, word(t, k))
                await ctx.tick()
        ctx.set(dut.act_wr_en, 0)
        # SEL: tile a into address a of every bank; the first beat also loads `tok`
        for a, entries in enumerate(sel):
            ctx.set(dut.sel_wr_addr, a)
            ctx.set(dut.sel_wr_en, 0b1111)
            ctx.set(dut.tok_first, 0b1111 if a == 0 else 0)
            for c in range(C):
                ctx.set(dut.sel_wr_data[c], entries[c])
            await ctx.tick()
        ctx.set(dut.sel_wr_en, 0)
        ctx.set(dut.tok_first, 0)
        await check(ctx, sel[0])
        # a tile's last beat issues at tt: tok takes the next tile's entries
        for tt in (0, 1):
            ctx.set(dut.tt, tt)
            await ctx.tick()
            ctx.set(dut.tok_load, 0b1111)
            await ctx.tick()
            ctx.set(dut.tok_load, 0)
            ctx.set(dut.tt, tt + 1)
            await check(ctx, sel[tt + 1])
        # a bank whose tok_load is low keeps its token
        ctx.set(dut.tt, 2)
        await ctx.tick()
        ctx.set(dut.tok_load, 0b0101)
        await ctx.tick()
        ctx.set(dut.tok_load, 0)
        await check(ctx, [sel[3][0], sel[2][1], sel[3][2], sel[2][3]])
        # one-beat tiles: a last beat every cycle, tt stepping with each
        ctx.set(dut.tok_first, 0b1111)          # reload tile 0 from a SEL write
        for c in range(C):
            ctx.set(dut.sel_wr_data[c], sel[0][c])
        ctx.set(dut.sel_wr_addr, 0)
        ctx.set(dut.sel_wr_en, 0b1111)
        ctx.set(dut.tt, 0)
        await ctx.tick()
        ctx.set(dut.tok_first, 0)
        ctx.set(dut.sel_wr_en, 0)
        await ctx.tick()
        for tt in range(3):
            ctx.set(dut.tt, tt)
            ctx.set(dut.tok_load, 0b1111)
            await ctx.tick()
        ctx.set(dut.tok_load, 0)
        await check(ctx, sel[3])

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    assert len(seen) == 15
