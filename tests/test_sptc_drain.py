"""hdl.sptc.drain.DrainControl: each finished tile is copied into the drain bank
once it is free and drained in ceil(rows / drain_rows) beats, each beat's
metadata (row, token tile, column mask, row mask) written ctrl_lag + out_stages
cycles after its decision; a beat leaves the drain bank only with a credit (at
most out_fifo_depth beats not yet returned)."""
from amaranth.sim import Simulator

from hdl.sptc import CONFIGS
from hdl.sptc.drain import DrainControl

CFG = CONFIGS["small"]
C, S, P = CFG.cols, CFG.store_rows, CFG.drain_rows
FD, LAG, NST = CFG.out_fifo_depth, CFG.ctrl_lag, CFG.out_stages


def meta(tt, base, mask, n):
    return tt | base << 16 | mask << 32 | n << (32 + C)


def run(tiles, credit_delay, cycles=200, hold_credits_until=0):
    """tiles: (cycle, tt, base, mask, rows). Credits return `credit_delay` cycles
    after a write (none before `hold_credits_until`). Returns the log."""
    dut = DrainControl(CFG)
    log = {"write": [], "shift": [], "copy": [], "done": [], "max_out": 0}

    async def tb(ctx):
        pending, out = [], 0
        starts = {t[0]: t for t in tiles}
        for cyc in range(cycles):
            t = starts.get(cyc)
            ctx.set(dut.tile_end_s2, t is not None)
            t = starts.get(cyc - 1)       # the tile's metadata is at s3, a cycle later
            if t is not None:
                ctx.set(dut.meta, meta(*t[1:]))
            due = [x for x in pending if x <= cyc and cyc >= hold_credits_until]
            ctx.set(dut.credit, bool(due))
            if due:
                pending.remove(due[0])
                out -= 1
            if ctx.get(dut.write):
                log["write"].append((cyc, ctx.get(dut.wmeta)))
                pending.append(cyc + credit_delay)
            sh = [ctx.get(dut.ctl[c][s]) for c in range(C) for s in range(S)]
            assert len(set(sh)) == 1, "every store lane gets the same decision"
            if sh[0] & 2:
                log["shift"].append(cyc)
                out += 1
            if sh[0] & 1:
                log["copy"].append(cyc)
            if ctx.get(dut.drain_done):
                log["done"].append(cyc)
            log["max_out"] = max(log["max_out"], out)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    return log


def expected_meta(tiles):
    out = []
    for _, tt, base, mask, n in tiles:
        for q in range(-(-n // P)):
            rmask = sum(1 << p for p in range(P) if q * P + p < n)
            out.append(base + q * P | tt << 16 | mask << 32 | rmask << (32 + C))
    return out


def test_tiles_drain_in_order_with_their_metadata():
    tiles = [(3, 0, 0, 0b1111, 4), (5, 0, 4, 0b1111, 3), (30, 1, 0, 0b0011, 8),
             (31, 1, 8, 0b0011, 1)]
    log = run(tiles, credit_delay=2)
    assert [m for _, m in log["write"]] == expected_meta(tiles)
    assert len(log["copy"]) == len(tiles) and len(log["done"]) == len(tiles)
    # each write follows its decision (seen on ctl) by the rest of the lag and the lanes
    assert [c for c, _ in log["write"]] == [s + LAG + NST - 3 for s in log["shift"]]


def test_no_beat_leaves_without_a_credit():
    # six tiles of S rows (S / P beats each), a tile's end only while the store is
    # free (as the issue gate guarantees): the fifth stalls in the drain bank
    tiles = [(3 + 10 * i, i, 0, 0b1111, S) for i in range(6)]
    log = run(tiles, credit_delay=2, cycles=300, hold_credits_until=120)
    early = [c for c in log["shift"] if c < 120]
    assert len(early) == FD and log["max_out"] == FD
    assert [m for _, m in log["write"]] == expected_meta(tiles)
