"""The SpTC's LOAD token base, end to end on Amaranth's simulator (tb.sptc.bench, the
cocotb bench's code): x LOADed at token 0, a second matrix h (another K) at token
T = x's tokens, then a MATMUL whose SEL indexes the buffer: over h's tokens (K of h)
or over x's (K of x: h's LOAD left them alone). Bit-exact against golden.ssmm on h
or x themselves (and the bench's golden.sptc.ActBuffer), under random stalls on
every stream; unstalled, both LOADs take golden.sptc.predict_load_cycles."""
import numpy as np
import pytest

import golden
from golden import sptc as gs
from hdl.sptc import CONFIGS
from sptc_operands import rand, to_mode
from sim.sptc import JobSpec
from sim.sptc_amaranth import run_batch

CFG = CONFIGS["small"]


def jobs(seed):
    """(spec, the matrix SEL reads, its first token's buffer index) per job."""
    rng = np.random.default_rng(seed)
    out = []
    # (K of x, T, K of h, n, h's base (None: T), mode, SEL reads h?, out)
    for kx, T, kh, n, base, mode, on_h, res in [
            (20, 6, 36, 7, None, "2:4", True, "int32"),
            (12, 5, 32, 5, None, "samoyeds", True, ("requant", 77, 9)),
            (20, 6, 40, 6, None, "dense", False, "int8_sat"),
            (12, 3, 28, 4, CFG.max_tokens - 4, "2:4", True, "int32")]:
        base = T if base is None else base
        x, h = rand(rng, (kx, T)), rand(rng, (kh, n))
        src, first = (h, base) if on_h else (x, 0)
        k = src.shape[0]
        pick = np.sort(rng.choice(src.shape[1], int(rng.integers(3, src.shape[1] + 1)),
                                  replace=False))
        w = to_mode(rand(rng, (8, k)), mode, (1, 2, 16))
        spec = JobSpec(f"{mode} on {'h' if on_h else 'x'}, h at {base}", w, x, pick + first,
                       res, loads=((h, base),))
        out.append((spec, src, first))
    return out


@pytest.mark.parametrize("seed", [1, 2])
def test_sel_over_a_second_load_at_a_token_base(seed):
    """Random valid/ready stalls on w, act, sel and res (the bench's monitor checks
    the stream rules); every element against the golden of the matrix SEL reads."""
    specs = jobs(seed)
    res = run_batch(CFG, [s for s, _, _ in specs], seed=seed, stalls=True)
    for i, (s, src, first) in enumerate(specs):
        want = golden.ssmm(s.weight, src, s.sel - first, s.out).astype(np.int64)
        assert np.array_equal(res[f"j{i}_out"], want), s.name
        assert int(res[f"j{i}_error"]) == 0


def test_load_cycles_at_a_token_base():
    """No stalls: both LOADs and the MATMUL take the cycle models' counts."""
    specs = jobs(3)
    res = run_batch(CFG, [s for s, _, _ in specs], seed=3, stalls=False)
    for i, (s, src, first) in enumerate(specs):
        h, _ = s.loads[0]
        assert int(res[f"j{i}_load_cycles"]) == gs.predict_load_cycles(s.x.shape), s.name
        assert int(res[f"j{i}_load_cycles1"]) == gs.predict_load_cycles(h.shape), s.name
        job = gs.plan(CFG, s.weight, (src.shape[0], first + src.shape[1]), s.sel, s.out)
        assert int(res[f"j{i}_cycles"]) == gs.predict_job_cycles(CFG, job), s.name
        want = golden.ssmm(s.weight, src, s.sel - first, s.out).astype(np.int64)
        assert np.array_equal(res[f"j{i}_out"], want), s.name


def test_a_load_past_the_buffer_is_refused_and_the_next_job_runs():
    """tok_base + n_tokens > max_tokens on a LOAD: exactly ERR_CONFIG, no activation
    word taken, no result beat; after clear the next job is exact."""
    rng = np.random.default_rng(4)
    x = rand(rng, (16, 6))
    w = to_mode(rand(rng, (8, 16)), "2:4")
    bad = JobSpec("LOAD past the buffer", w, x, [0, 2], load_err=gs.ERR_CONFIG,
                  load_mutate=lambda regs: regs.update(tok_base=CFG.max_tokens - 5))
    good = JobSpec("after it", w, x, [1, 3, 5])
    res = run_batch(CFG, [bad, good], seed=4, stalls=True)
    assert int(res["j0_error"]) == gs.ERR_CONFIG
    assert np.array_equal(res["j1_out"], golden.ssmm(w, x, [1, 3, 5]).astype(np.int64))


def test_act_buffer_model():
    """golden.sptc.ActBuffer: a LOAD at a base lands there, leaves other tokens alone,
    and a read of words no LOAD wrote or a LOAD past the buffer is refused."""
    rng = np.random.default_rng(5)
    x, h = rand(rng, (22, 5)), rand(rng, (37, 6))
    buf = gs.ActBuffer(CFG)
    buf.load(x)
    buf.load(h, 5)
    op = buf.operand(37, 11, [5, 7, 10])
    assert np.array_equal(op[:, [5, 7, 10]], h[:, [0, 2, 5]])
    assert np.array_equal(buf.operand(22, 11, [0, 3, 4])[:, [0, 3, 4]], x[:, [0, 3, 4]])
    with pytest.raises(golden.FormatError, match="sel: token 4 was not loaded"):
        buf.operand(37, 11, [4, 5])
    with pytest.raises(golden.FormatError, match="tok_base: 60 \\+ 6 tokens"):
        buf.load(h, 60)
    with pytest.raises(golden.FormatError, match="tok_base: -1"):
        gs.load_regs((4, 1), -1)
