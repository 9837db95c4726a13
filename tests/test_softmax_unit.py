# amaranth: UnusedElaboratable=no
"""hdl.attn.softmax.Softmax against golden.softmax.softmax, bit for bit, in the
Amaranth simulator: random and extreme rows under random valid/ready stalls on
both streams (a monitor checks the stream rules on ``o``), the cycle formula
without stalls, the sticky error of an over-long row, the build's refusals."""
import numpy as np
import pytest
from amaranth.sim import Simulator

from golden.softmax import MAX_ROW, scale_config, softmax, unit_schedule
from hdl.attn.softmax import Softmax
from tb.common import StallProfile, StreamRuleError

I32_MIN, I32_MAX = -(1 << 31), (1 << 31) - 1


class Monitor:
    """The stream rules on one output: once ``valid`` is up with ``ready`` low, the
    next cycle must show ``valid`` up and the same payload."""

    def __init__(self, name="o"):
        self.name, self.cycle, self._held = name, 0, None

    def sample(self, valid, ready, payload):
        if self._held is not None:
            if not valid:
                raise StreamRuleError(f"{self.name}: valid fell at cycle {self.cycle} "
                                      f"before {self._held!r} was taken")
            if payload != self._held:
                raise StreamRuleError(f"{self.name}: payload changed while stalled at cycle "
                                      f"{self.cycle}: {self._held!r} -> {payload!r}")
        self._held = payload if valid and not ready else None
        self.cycle += 1


def run_rows(dut, rows, mult, shift, p_in=None, p_out=None, seed=0, budget=None):
    """Drive ``rows`` (lists of ints) through ``dut``; returns (outputs as (prob, last)
    pairs, cycle of every input transfer, cycle of every output transfer, error)."""
    rng = np.random.default_rng(seed)
    p_in = p_in or StallProfile.always()
    p_out = p_out or StallProfile.always()
    beats = [(int(x), int(k == len(r) - 1)) for r in rows for k, x in enumerate(r)]
    total = len(beats)
    res = dict(out=[], t_in=[], t_out=[], error=None)
    budget = budget or 20 * (total + 10 * len(rows)) + 200

    async def tb(ctx):
        ctx.set(dut.mult, mult)
        ctx.set(dut.shift, shift)
        mon = Monitor()
        k, up = 0, False
        expect = sum(len(r) for r in rows if len(r) <= dut.max_len)
        for cycle in range(budget):
            if not up and k < total and p_in.go(rng):
                up = True
                ctx.set(dut.i.payload.score, beats[k][0])
                ctx.set(dut.i.payload.last, beats[k][1])
            ctx.set(dut.i.valid, int(up))
            r = int(p_out.go(rng))
            ctx.set(dut.o.ready, r)
            valid = ctx.get(dut.o.valid)
            payload = (ctx.get(dut.o.payload.prob), ctx.get(dut.o.payload.last))
            mon.sample(valid, r, payload if valid else None)
            if valid and r:
                res["out"].append(payload)
                res["t_out"].append(cycle)
            if up and ctx.get(dut.i.ready):
                res["t_in"].append(cycle)
                k, up = k + 1, False
            await ctx.tick()
            if k == total and len(res["out"]) == expect:
                break
        else:
            raise AssertionError(f"timeout: {k}/{total} in, {len(res['out'])}/{expect} out")
        for _ in range(3):
            await ctx.tick()
        res["error"] = ctx.get(dut.error)
        res["extra"] = ctx.get(dut.o.valid)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    return res


def expected(rows, mult, shift, max_len):
    out = []
    for r in rows:
        if len(r) > max_len:
            continue
        p = softmax(np.array(r, dtype=np.int64)[None], mult, shift)[0]
        out += [(int(x), int(k == len(r) - 1)) for k, x in enumerate(p)]
    return out


def random_rows(rng, count, max_len):
    rows = []
    for _ in range(count):
        n = int(rng.integers(1, max_len + 1))
        spread = int(rng.choice([10, 1000, 1 << 20, 1 << 31]))
        base = int(rng.integers(I32_MIN + spread, I32_MAX - spread + 1)) if spread < 1 << 31 else 0
        lo, hi = max(I32_MIN, base - spread), min(I32_MAX, base + spread)
        rows.append([int(x) for x in rng.integers(lo, hi + 1, n)])
    return rows


EXTREME = [
    [7] * 16,                                  # all equal
    [I32_MIN] * 9,                             # most negative, all equal
    [I32_MAX] + [I32_MIN] * 10,                # one huge
    [I32_MIN] * 5 + [I32_MAX] + [I32_MIN] * 5,
    [I32_MIN, I32_MAX] * 8,                    # alternating extremes
    [0],                                       # length 1
    [I32_MAX],
    list(range(-32, 32)),                      # max_len exactly
    [5, 5, 4, 4, 5],                           # ties for the maximum
]


PROFILES = {
    "uniform": lambda rng: StallProfile.uniform(float(rng.uniform(0.3, 0.8))),
    "bursty": lambda rng: StallProfile.bursty(0.6, 6),
    "starve": lambda rng: StallProfile.starve(40, 50),
}


@pytest.mark.parametrize("seed,kind_in,kind_out,max_len", [
    (1, "uniform", "uniform", 64), (2, "bursty", "bursty", 64), (3, "uniform", "starve", 48),
    (4, "starve", "uniform", 64), (5, "bursty", "uniform", 1)])
def test_random_rows_under_stalls(seed, kind_in, kind_out, max_len):
    rng = np.random.default_rng(seed)
    dut = Softmax(max_len=max_len)
    rows = random_rows(rng, 14, max_len) + [[int(x)] for x in rng.integers(-9, 9, 6)]
    mult, shift = scale_config(float(rng.choice([1e-3, 1e-6, 0.2])))
    res = run_rows(dut, rows, mult, shift, PROFILES[kind_in](rng), PROFILES[kind_out](rng),
                   seed=seed)
    assert res["out"] == expected(rows, mult, shift, max_len)
    assert res["error"] == 0 and res["extra"] == 0


@pytest.mark.parametrize("mult,shift", [(37819, 11), (65535, 1), (0, 47), (1, 47), (40000, 20)])
def test_extreme_rows(mult, shift):
    dut = Softmax(max_len=64)
    res = run_rows(dut, EXTREME, mult, shift, StallProfile.uniform(0.7),
                   StallProfile.uniform(0.5), seed=mult)
    assert res["out"] == expected(EXTREME, mult, shift, 64)
    assert res["error"] == 0


def test_cycle_formula_without_stalls():
    dut = Softmax(max_len=64)
    rows = [[3 * k - 40 for k in range(n)] for n in (1, 2, 5, 64, 17, 1, 30, 30, 30, 3, 64)]
    mult, shift = scale_config(0.01)
    res = run_rows(dut, rows, mult, shift)
    assert res["out"] == expected(rows, mult, shift, 64)
    got, a = [], 0
    for r in rows:
        got.append((res["t_in"][a] - res["t_in"][0], res["t_out"][a + len(r) - 1] - res["t_in"][0]))
        a += len(r)
    assert got == unit_schedule([len(r) for r in rows])
    assert unit_schedule([5]) == [(0, 3 * 5 + 8)]
    sched = unit_schedule([64] * 4)
    assert [y[0] - x[0] for x, y in zip(sched, sched[1:])] == [64 + 1, 64 + 6, 64 + 6]
    # within a row the scores are taken and the probabilities leave one a cycle
    a = 0
    for r in rows:
        for t in (res["t_in"][a:a + len(r)], res["t_out"][a:a + len(r)]):
            assert t == list(range(t[0], t[0] + len(r))), len(r)
        a += len(r)


@pytest.mark.parametrize("p_in,p_out", [(1.0, 1.0), (0.6, 0.6), (1.0, 0.3)])
def test_overlong_row_sets_sticky_error_and_is_dropped(p_in, p_out):
    dut = Softmax(max_len=4)
    rows = [[1, 2, 3], [9, 8, 7, 6, 5], [4, 4, 4, 4], [1, 2, 3, 4, 5, 6, 7, 8, 9], [0],
            [-7, 100, 3], [1] * 5]
    mult, shift = scale_config(0.3)
    res = run_rows(dut, rows, mult, shift, StallProfile.uniform(p_in),
                   StallProfile.uniform(p_out), seed=5)
    assert res["out"] == expected(rows, mult, shift, 4)
    assert res["error"] == 1
    ok = run_rows(Softmax(max_len=4), [[1, 2, 3, 4]], mult, shift)
    assert ok["error"] == 0


@pytest.mark.parametrize("bad", [0, -1, MAX_ROW + 1, 3.0, True, None])
def test_build_refuses_bad_max_len(bad):
    with pytest.raises(ValueError, match="max_len"):
        Softmax(max_len=bad)


def test_monitor_catches_rule_breaks():
    m = Monitor()
    m.sample(1, 0, (5, 0))
    with pytest.raises(StreamRuleError, match="payload changed"):
        m.sample(1, 0, (6, 0))
    m = Monitor()
    m.sample(1, 0, (5, 0))
    with pytest.raises(StreamRuleError, match="valid fell"):
        m.sample(0, 0, None)
    m = Monitor()
    m.sample(1, 1, (5, 0))
    m.sample(0, 0, None)          # taken: valid may fall


def test_converts_to_verilog():
    from hdl.verilog import to_verilog
    text = to_verilog(Softmax(max_len=16), "moe_softmax", {"max_len": 16})
    assert "module moe_softmax" in text and "i__payload" in text and "o__ready" in text
