# amaranth: UnusedElaboratable=no
"""hdl.moe.glue.FFNGlue in the Amaranth simulator against golden.ffn: gate and up
elements written in random orders (SpTC-like beats of one row x B slots with random
bank masks, Logic-PIM-like single elements, random idle cycles and junk on disabled
lanes; all gates then all ups, or interleaved with ups right after their gates), then
H read back under random, bursty and starving ``rd.ready`` stalls with the
stream rules checked; every word equals golden.pim.program.pack_rows (and
golden.sptc.act_words for E = 4) of requant(lut[g] * u). Cycle checks: busy falls
BUSY_FALL cycles after the last write; unstalled, a read's words leave in consecutive
cycles from READ_LATENCY cycles after rd_start. Sticky errors and config refusals."""
import numpy as np
import pytest
from amaranth.sim import Simulator

from golden.errors import FormatError
from golden.ffn import apply_lut, silu_lut
from golden.numerics import requant
from golden.pim.config import PIMConfig
from golden.pim.program import pack_rows
from golden.sptc import act_words
from hdl.moe.glue import FFNGlue, GlueConfig
from sim.sptc_amaranth import AmaranthIO
from tb.common import StallProfile, StreamMonitor

BUSY_FALL = 2       # last up write at cycle t: busy high at t + 1, low at t + 2
READ_LATENCY = 3    # rd_start at cycle c: with ready high, words taken at c + 3, c + 4, ...


def expected_words(lut, g, u, mult, shift, elems):
    """g, u: (ffn, slots) int8 -> the read words (ints), from the golden functions."""
    a = apply_lut(lut, g)
    h = requant(a.astype(np.int32) * u.astype(np.int32), mult, shift)
    words = [int(x) for x in pack_rows(PIMConfig(bundle_bits=8 * elems), h.T)]
    if elems == 4:
        assert words == [int(x) for x in act_words(h)]
    return words


def beats(rng, f, n, banks):
    """Every (row, slot) once: beats (mask, row, tile) of one row and up to B slots of a
    tile, each tile's slots split into random masks; shuffled."""
    out = []
    for row in range(f):
        for tile in range(-(-n // banks)):
            present = [b for b in range(banks) if tile * banks + b < n]
            k = int(rng.integers(1, len(present) + 1))
            groups = rng.integers(0, k, len(present))
            for grp in range(k):
                mask = sum(1 << b for b, x in zip(present, groups) if x == grp)
                if mask:
                    out.append((mask, row, tile))
    rng.shuffle(out)
    return out


def schedule(rng, f, n, banks, order):
    """The write beats (up, mask, row, tile). "phased": every gate element in a random
    order, then every up element in another. "mixed": each up beat after its gate beat,
    often right after it (the G read is transparent to the G write of its cycle)."""
    if order == "phased":
        return [(0, *b) for b in beats(rng, f, n, banks)] + \
            [(1, *b) for b in beats(rng, f, n, banks)]
    todo, pending, out = beats(rng, f, n, banks), [], []
    while todo or pending:
        if todo and (not pending or rng.random() < 0.5):
            pending.append(todo.pop())
            out.append((0, *pending[-1]))
        else:
            k = len(pending) - 1 if rng.random() < 0.7 else int(rng.integers(len(pending)))
            out.append((1, *pending.pop(k)))
    return out


class Bench:
    """Drives one FFNGlue: writes with a busy check every cycle, reads with a monitor."""

    def __init__(self, ctx, dut, rng):
        self.ctx, self.dut, self.rng = ctx, dut, rng
        self.io = AmaranthIO(ctx, dut)
        self.wr_hist = []          # per cycle: an element was written

    def check_busy(self):
        c = len(self.wr_hist)
        want = c >= BUSY_FALL - 1 and self.wr_hist[c - (BUSY_FALL - 1)]
        assert self.ctx.get(self.dut.busy) == int(want), f"busy at write cycle {c}"

    async def cycle(self, mask=0, up=0, row=None, tile=None, vals=None, ok=True):
        ctx, dut, rng, cfg = self.ctx, self.dut, self.rng, self.dut.cfg
        ctx.set(dut.wr_en, mask)
        ctx.set(dut.wr_up, up if mask else int(rng.integers(2)))
        ctx.set(dut.wr_row, int(rng.integers(cfg.max_rows)) if row is None else row)
        ctx.set(dut.wr_tile, int(rng.integers(cfg.tiles)) if tile is None else tile)
        for b in range(cfg.banks):
            v = vals[b] if vals is not None and mask >> b & 1 else int(rng.integers(-128, 128))
            ctx.set(dut.wr_val[b], v)
        self.check_busy()
        self.wr_hist.append(bool(mask and ok))
        await ctx.tick()

    async def write(self, g, u, order, p_idle):
        B = self.dut.cfg.banks
        for up, mask, row, tile in schedule(self.rng, g.shape[0], g.shape[1], B, order):
            while self.rng.random() < p_idle:
                await self.cycle()
            mat = u if up else g
            vals = [int(mat[row, tile * B + b]) if mask >> b & 1 else 0 for b in range(B)]
            await self.cycle(mask, up, row, tile, vals)

    async def drain_writes(self):
        waited = 0
        while self.ctx.get(self.dut.busy):
            await self.cycle()
            waited += 1
        last = max(i for i, x in enumerate(self.wr_hist) if x)
        assert len(self.wr_hist) - last == BUSY_FALL and waited == BUSY_FALL - 1

    async def read(self, n, kw, profile):
        """One read; returns (words, cycles after rd_start at which each was taken)."""
        ctx, dut = self.ctx, self.dut
        mon = StreamMonitor(self.io, "rd", self.rng, profile)
        total, taken = n * kw, []
        assert ctx.get(dut.rd_busy) == 0
        ctx.set(dut.rd_n, n)
        ctx.set(dut.rd_kw, kw)
        ctx.set(dut.rd_start, 1)
        c, tail = 0, 0
        while tail < 6:
            mon.drive()
            got = len(mon.received)
            mon.sample()
            if len(mon.received) > got:
                taken.append(c)
            assert ctx.get(dut.rd_busy) == int(c > 0 and got < total), f"rd_busy at {c}"
            await ctx.tick()
            ctx.set(dut.rd_start, 0)
            c += 1
            tail += len(mon.received) == total
            assert c < 40 * total + 100, f"read stuck at {len(mon.received)}/{total} words"
        return mon.received, taken


def run(cfg, lut, g, u, mult, shift, seed, body):
    dut = FFNGlue(cfg, lut)
    res = {}

    async def tb(ctx):
        ctx.set(dut.prod_mult, mult)
        ctx.set(dut.prod_shift, shift)
        await body(Bench(ctx, dut, np.random.default_rng([seed, 1])), res)
        res["error"] = ctx.get(dut.error)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    return res


def random_rq(rng, prod, kind):
    """(mult, shift): "cal" maps the spread of ``prod`` to a random 20..90 int8 units (as
    golden.moe calibrates, most values in range, a few saturated); "wild" is uniform."""
    if kind == "wild":
        return int(rng.integers(1, 1 << 16)), int(rng.integers(1, 32))
    target, shift = float(rng.uniform(20, 90)), int(rng.integers(8, 24))
    std = float(np.std(prod.astype(np.float64))) or 1.0
    while shift > 1 and target * (1 << shift) / std >= 1 << 16:
        shift -= 1
    return int(max(1, min((1 << 16) - 1, round(target * (1 << shift) / std)))), shift


CASES = [  # f, n, banks, elems, max_slots, max_rows, lut, prod_rq, write order, seed
    (37, 13, 4, 4, 16, 40, "silu", "cal", "phased", 1),    # SpTC-like, ffn not a multiple of E
    (64, 32, 4, 4, 32, 64, "random", "cal", "phased", 2),  # full SpTC-like build
    (45, 8, 1, 16, 8, 48, "silu", "cal", "phased", 3),     # Logic-PIM-like
    (100, 5, 1, 16, 8, 128, "random", "cal", "phased", 4),
    (24, 6, 2, 8, 8, 32, "random", "cal", "phased", 5),
    (30, 7, 4, 4, 8, 32, "silu", "wild", "phased", 7),
    (1, 1, 4, 4, 4, 4, "silu", "cal", "phased", 6),
    (29, 11, 4, 4, 12, 32, "random", "cal", "mixed", 8),
    (40, 6, 1, 16, 8, 48, "random", "cal", "mixed", 9),
]


@pytest.mark.parametrize("f,n,banks,elems,max_slots,max_rows,lut_kind,rq_kind,order,seed", CASES)
def test_glue_matches_golden(f, n, banks, elems, max_slots, max_rows, lut_kind, rq_kind, order,
                             seed):
    rng = np.random.default_rng(seed)
    cfg = GlueConfig(banks=banks, elems=elems, max_slots=max_slots, max_rows=max_rows)
    lut = silu_lut() if lut_kind == "silu" else rng.integers(-128, 128, 256).astype(np.int8)
    g = rng.integers(-128, 128, (f, n)).astype(np.int8)
    u = rng.integers(-128, 128, (f, n)).astype(np.int8)
    mult, shift = random_rq(rng, apply_lut(lut, g).astype(np.int32) * u, rq_kind)
    words = expected_words(lut, g, u, mult, shift, elems)
    kw = -(-f // elems)
    n2 = int(rng.integers(1, n + 1))
    kw2 = int(rng.integers(1, kw + 1))
    p_idle = float(rng.choice([0.0, 0.3]))

    async def body(bn, res):
        await bn.write(g, u, order, p_idle)
        await bn.drain_writes()
        res["fast"] = await bn.read(n, kw, StallProfile.always())
        res["uniform"] = await bn.read(n, kw, StallProfile.uniform(float(rng.uniform(0.3, 0.8))))
        res["bursty"] = await bn.read(n, kw, StallProfile.bursty(0.5, 5))
        res["starve"] = await bn.read(n, kw, StallProfile.starve(8, 12))
        res["part"] = await bn.read(n2, kw2, StallProfile.uniform(0.6))

    res = run(cfg, lut, g, u, mult, shift, seed, body)
    for name in ("fast", "uniform", "bursty", "starve"):
        assert res[name][0] == words, name
    assert res["part"][0] == [words[j * kw + w] for j in range(n2) for w in range(kw2)]
    t = res["fast"][1]
    assert t == list(range(READ_LATENCY, READ_LATENCY + n * kw))
    assert res["error"] == 0


def _small():
    return GlueConfig(banks=4, elems=4, max_slots=12, max_rows=40)


def _bad_write_body(kind):
    async def body(bn, res):
        g = np.full((3, 4), 5, np.int8)
        await bn.write(g, g, "phased", 0.0)
        await bn.drain_writes()
        res["before"] = bn.ctx.get(bn.dut.error)
        # rows >= 40 / tiles >= 3; kept, they would land in slot 4..7 row 5 / slot 0..3 row 1
        row, tile = (45, 0) if kind == "row" else (9, 3)
        await bn.cycle(0xF, 0, row, tile, [7, 7, 7, 7], ok=False)
        await bn.cycle(0xF, 1, row, tile, [1, 2, 3, 4], ok=False)
        for _ in range(3):
            await bn.cycle()
        res["after"] = bn.ctx.get(bn.dut.error)
        res["read"] = await bn.read(12, 10, StallProfile.uniform(0.7))
    return body


@pytest.mark.parametrize("kind", ["row", "tile"])
def test_out_of_range_write_sets_sticky_error_and_is_dropped(kind):
    lut = silu_lut()
    res = run(_small(), lut, None, None, 300, 7, 11, _bad_write_body(kind))
    g = np.zeros((40, 12), np.int8)
    g[:3, :4] = 5
    assert res["before"] == 0 and res["after"] == 1 and res["error"] == 1
    assert res["read"][0] == expected_words(lut, g, g, 300, 7, 4)


@pytest.mark.parametrize("kind", ["n", "kw", "busy"])
def test_bad_read_sets_sticky_error_and_is_ignored(kind):
    cfg = _small()

    async def body(bn, res):
        ctx, dut = bn.ctx, bn.dut
        if kind == "busy":       # a second rd_start while reading: ignored
            ctx.set(dut.rd_n, 12)
            ctx.set(dut.rd_kw, 10)
            ctx.set(dut.rd_start, 1)
            await ctx.tick()
            res["before"] = ctx.get(dut.error)
            ctx.set(dut.rd_n, 1)
            ctx.set(dut.rd_kw, 1)
            await ctx.tick()
            ctx.set(dut.rd_start, 0)
            ctx.set(dut.rd.ready, 1)
            count = 0
            while ctx.get(dut.rd_busy):
                count += ctx.get(dut.rd.valid)
                await ctx.tick()
            res["count"] = count
        else:
            n, kw = (13, 1) if kind == "n" else (1, 11)
            ctx.set(dut.rd_n, n)
            ctx.set(dut.rd_kw, kw)
            ctx.set(dut.rd_start, 1)
            res["before"] = ctx.get(dut.error)
            await ctx.tick()
            ctx.set(dut.rd_start, 0)
            res["count"] = 0
            for _ in range(6):
                assert ctx.get(dut.rd_busy) == 0 and ctx.get(dut.rd.valid) == 0
                await ctx.tick()

    res = run(cfg, silu_lut(), None, None, 1, 1, 12, body)
    assert res["before"] == 0 and res["error"] == 1
    assert res["count"] == (120 if kind == "busy" else 0)


@pytest.mark.parametrize("field,value", [
    ("banks", 0), ("banks", 3), ("banks", True), ("banks", 2.0), ("elems", 6), ("elems", -4),
    ("max_slots", 6), ("max_slots", 0), ("max_rows", 10), ("max_rows", None)])
def test_config_refuses_bad_fields(field, value):
    kw = dict(banks=4, elems=4, max_slots=8, max_rows=16)
    kw[field] = value
    with pytest.raises(FormatError, match=rf"{field}: .*{value!r}"):
        GlueConfig(**kw)


@pytest.mark.parametrize("lut", [np.zeros(255, np.int8), np.zeros(256, np.int16), [0] * 256])
def test_glue_refuses_bad_lut(lut):
    with pytest.raises(FormatError, match="lut: expected a"):
        FFNGlue(GlueConfig(), lut)
