# amaranth: UnusedElaboratable=no
"""hdl.fpga's primitives in their generic flavour (platform=None) against their
docstrings, in the Amaranth simulator: RegMul's products and latency for every
register choice, signed and unsigned operands at the extremes, the clock enable;
RegReadRAM's two-cycle read, read-after-write and output register; replicas.
(The ECP5 flavour's instances are checked in tests/test_examples.py and simulated
inside the SpTC in tests/test_sptc_rtl.py.)"""
import numpy as np
import pytest
from amaranth import ClockDomain, Module, Signal, signed, unsigned
from amaranth.sim import Simulator

from hdl.fpga import RegMul, RegReadRAM, replicas


def _sim(dut, bench):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def _range(shape):
    w = shape.width
    return (-(1 << w - 1), (1 << w - 1) - 1) if shape.signed else (0, (1 << w) - 1)


def _operands(sa, sb, n, rng):
    """Every pair of edge values (both extremes, 0, +-1, next to the extremes) of the
    two shapes, then ``n`` random pairs."""
    def edge(shape):
        lo, hi = _range(shape)
        return sorted({lo, hi, 0, 1, lo + 1, hi - 1} | ({-1} if shape.signed else set()))
    pairs = [(a, b) for a in edge(sa) for b in edge(sb)]
    (la, ha), (lb, hb) = _range(sa), _range(sb)
    return pairs + [(int(rng.integers(la, ha + 1)), int(rng.integers(lb, hb + 1)))
                    for _ in range(n)]


REGS = [(True, True), (True, False), (False, True)]
SHAPES = [(signed(8), signed(8)), (signed(18), signed(18)), (unsigned(17), unsigned(16)),
          (unsigned(18), unsigned(18)), (signed(11), signed(17))]


@pytest.mark.parametrize("in_reg, out_reg", REGS)
@pytest.mark.parametrize("sa, sb", SHAPES, ids=lambda s: f"{'s' if s.signed else 'u'}{s.width}")
def test_regmul_products_and_latency(sa, sb, in_reg, out_reg):
    """A new operand pair every cycle; p = a x b exactly ``latency`` cycles later,
    full width (a.width + b.width bits, the operands' signedness)."""
    dut = RegMul(sa, sb, in_reg=in_reg, out_reg=out_reg)
    assert dut.latency == in_reg + out_reg
    assert dut.p.shape() == (signed if sa.signed else unsigned)(sa.width + sb.width)
    rng = np.random.default_rng(sa.width * 100 + sb.width)
    pairs = _operands(sa, sb, 40, rng)
    lat = dut.latency
    got = []

    async def bench(ctx):
        for i in range(len(pairs) + lat):
            a, b = pairs[min(i, len(pairs) - 1)]
            ctx.set(dut.a, a)
            ctx.set(dut.b, b)
            got.append(ctx.get(dut.p))
            await ctx.tick()

    _sim(dut, bench)
    assert got[lat:lat + len(pairs)] == [a * b for a, b in pairs]


@pytest.mark.parametrize("in_reg, out_reg", REGS)
def test_regmul_enable_gates_every_register(in_reg, out_reg):
    """``en`` low freezes the whole pipeline (the DSP's CE): p = a x b of the pair
    presented ``latency`` *enabled* cycles earlier."""
    dut = RegMul(signed(8), signed(8), in_reg=in_reg, out_reg=out_reg, enable=True)
    rng = np.random.default_rng(1)
    seq = [(int(rng.integers(-128, 128)), int(rng.integers(-128, 128)), int(rng.random() < 0.6))
           for _ in range(80)]
    got = []

    async def bench(ctx):
        for a, b, en in seq:
            ctx.set(dut.a, a)
            ctx.set(dut.b, b)
            ctx.set(dut.en, en)
            got.append(ctx.get(dut.p))
            await ctx.tick()

    _sim(dut, bench)
    # reference: in_reg holds (a, b) loaded on en; out_reg holds the product loaded on en
    aq = bq = pq = 0
    want = []
    for a, b, en in seq:
        x, y = (aq, bq) if in_reg else (a, b)
        want.append(pq if out_reg else x * y)
        if en:
            pq = x * y
            aq, bq = a, b
    assert got == want


def test_regmul_enable_defaults_high_and_refuses_bad_shapes():
    assert RegMul(8, 8, enable=True).en.init == 1
    with pytest.raises(ValueError, match="at most 18"):
        RegMul(signed(19), signed(8))
    with pytest.raises(ValueError, match="signedness"):
        RegMul(signed(8), unsigned(8))
    with pytest.raises(ValueError, match="no register"):
        RegMul(8, 8, in_reg=False, out_reg=False)


@pytest.mark.parametrize("width, depth", [(18, 1024), (32, 24), (1, 5), (9, 2048)])
def test_regreadram_two_cycle_read_and_read_after_write(width, depth):
    """Random writes and reads (never the same address in one cycle): ``rd_data`` at
    cycle c is mem[rd_addr(c - 2)] with every write up to cycle c - 3 applied, i.e.
    a write at w is seen by a read address presented at w + 1 or later."""
    dut = RegReadRAM(width, depth)
    rng = np.random.default_rng(width + depth)
    n = 300
    ops = []
    for _ in range(n):
        ra = int(rng.integers(depth))
        wa = int(rng.integers(depth))
        we = int(rng.random() < 0.5) if wa != ra else 0
        ops.append((we, wa, int(rng.integers(1 << width)), ra))
    got = []

    async def bench(ctx):
        for we, wa, wd, ra in ops:
            ctx.set(dut.wr_en, we)
            ctx.set(dut.wr_addr, wa)
            ctx.set(dut.wr_data, wd)
            ctx.set(dut.rd_addr, ra)
            got.append(ctx.get(dut.rd_data))
            await ctx.tick()

    _sim(dut, bench)
    mem, snap = [0] * depth, []
    for we, wa, wd, _ in ops:
        snap.append(list(mem))              # contents before cycle c's write
        if we:
            mem[wa] = wd
    assert got[2:] == [snap[c - 2][ops[c - 2][3]] for c in range(2, n)]


def test_regreadram_output_register_holds_two_cycles():
    """The read data changes two cycles after the address, not one; written data
    reaches a read of its address issued the next cycle."""
    dut = RegReadRAM(8, 16)
    seen = []

    async def bench(ctx):
        for a, v in enumerate([11, 22, 33]):
            ctx.set(dut.wr_en, 1)
            ctx.set(dut.wr_addr, a)
            ctx.set(dut.wr_data, v)
            await ctx.tick()
        ctx.set(dut.wr_en, 0)
        ctx.set(dut.rd_addr, 0)
        await ctx.tick().repeat(3)
        ctx.set(dut.rd_addr, 2)
        for _ in range(3):
            seen.append(ctx.get(dut.rd_data))
            await ctx.tick()
        ctx.set(dut.wr_en, 1)           # write address 5, read it from the next cycle on
        ctx.set(dut.wr_addr, 5)
        ctx.set(dut.wr_data, 99)
        ctx.set(dut.rd_addr, 1)
        await ctx.tick()
        ctx.set(dut.wr_en, 0)
        ctx.set(dut.rd_addr, 5)
        for _ in range(4):
            seen.append(ctx.get(dut.rd_data))
            await ctx.tick()

    _sim(dut, bench)
    assert seen == [11, 11, 33, 33, 22, 99, 99]


def test_regreadram_slices_and_bad_sizes():
    assert [RegReadRAM(8, d).slice_width for d in (1, 1024, 1025, 4096, 8192, 16384)] == \
        [18, 18, 9, 4, 2, 1]
    with pytest.raises(ValueError, match="exceeds"):
        RegReadRAM(1, 16385).slice_width
    with pytest.raises(ValueError, match="width"):
        RegReadRAM(0, 4)
    with pytest.raises(ValueError, match="depth"):
        RegReadRAM(4, 0)


@pytest.mark.parametrize("reset_less", [False, True])
def test_replicas_generic_are_plain_registers(reset_less):
    """Each copy equals ``value`` one cycle later; init value at power-up (and after
    reset unless ``reset_less``)."""
    m = Module()
    m.domains.sync = cd = ClockDomain()
    v = Signal(6)
    reps = replicas(m, None, v, 3, "cp", init=0b101010, reset_less=reset_less)
    rng = np.random.default_rng(2)
    vals = [int(x) for x in rng.integers(64, size=20)] + [7]    # last one != init
    got = []

    async def bench(ctx):
        got.append([ctx.get(r) for r in reps])
        for x in vals:
            ctx.set(v, x)
            await ctx.tick()
            got.append([ctx.get(r) for r in reps])
        ctx.set(cd.rst, 1)
        await ctx.tick()
        got.append([ctx.get(r) for r in reps])

    _sim(m, bench)
    assert got[0] == [0b101010] * 3
    assert [g[0] for g in got[1:-1]] == vals and all(len(set(g)) == 1 for g in got)
    assert got[-1] == [vals[-1] if reset_less else 0b101010] * 3
