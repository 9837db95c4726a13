"""hdl.sptc.selcheck.SelCheck against a Python model of the SEL rules: every entry
below n_tokens, entries strictly increasing across lanes and beats (the job's first
beat has no predecessor), only lanes carrying an entry count, `bad` three cycles
after the beat, `clear` drops the beats in flight."""
import numpy as np
from amaranth.sim import Simulator

from hdl.sptc.selcheck import SelCheck

L, N_TOK = 4, 40


def model(beats):
    """beats: (take, payload, lanes_ok, later, clear) per cycle -> expected bad per cycle."""
    out, last = [], 0
    for take, pay, ok, later, _clear in beats:
        bad = 0
        if take:
            for l in range(L):
                if not (ok >> l) & 1:
                    continue
                if pay[l] >= N_TOK:
                    bad |= 1 << (2 * l)
                ref = pay[l - 1] if l else last
                if (l or later) and pay[l] <= ref:
                    bad |= 1 << (2 * l + 1)
            last = pay[L - 1]
        out.append(bad)
    return out


def run(beats):
    dut = SelCheck(L)
    got = []

    async def tb(ctx):
        for l in range(L):
            ctx.set(dut.n_tok[l], N_TOK)
        for take, pay, ok, later, clear in beats + [(0, [0] * L, 0, 0, 0)] * 3:
            ctx.set(dut.take, take)
            ctx.set(dut.lanes_ok, ok)
            ctx.set(dut.later, later)
            ctx.set(dut.clear, clear)
            for l in range(L):
                ctx.set(dut.payload[l], pay[l])
            got.append(ctx.get(dut.bad))
            await ctx.tick()
        got.append(ctx.get(dut.bad))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    return got[3:3 + len(beats)]


def test_random_sel_streams():
    rng = np.random.default_rng(3)
    for trial in range(6):
        beats, later, v = [], 0, 0
        for i in range(24):
            take = int(rng.random() < 0.7)
            step = rng.integers(-1, 4, L) if trial % 2 else rng.integers(1, 3, L)
            pay = [int(x) for x in np.clip(v + np.cumsum(step), 0, 60)]
            ok = int(rng.integers(1, 16)) if rng.random() < 0.3 else 0b1111
            beats.append((take, pay, ok, later, 0))
            if take:
                later, v = 1, pay[-1]
        exp = model(beats)
        assert run(beats) == exp, trial


def test_a_clean_stream_and_clear():
    good = [(1, [0, 1, 2, 3], 0b1111, 0, 0), (1, [4, 5, 6, 39], 0b1111, 1, 0)]
    assert run(good) == [0, 0]
    # an out-of-range entry (lane 2) and a repeat across beats (lane 0)
    bad = [(1, [0, 1, 40, 41], 0b0111, 0, 0), (1, [1, 5, 6, 7], 0b1111, 1, 0)]
    assert run(bad) == [1 << 4, 1 << 1]
    # clear in the cycle after the bad beat: its flags never rise
    assert run([(1, [0, 1, 40, 3], 0b1111, 0, 0), (0, [0] * L, 0, 0, 1)]) == [0, 0]
