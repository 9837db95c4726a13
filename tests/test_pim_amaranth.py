"""Amaranth-simulator tests of hdl.pim pieces (fast, no Verilator).

* the output stage against golden.numerics.apply_out, bit for bit;
* the whole unit at a *stress* config (8 one-bank-group bundles, 2-word rows, a
  400-cycle refresh interval, tFAW stretched to 60) where tFAW and tRRD bind: every
  output, the error bits, the busy-cycle count and the full DRAM command trace
  equal the golden models, and the independent checker finds no violation.
"""
import numpy as np
import pytest
from amaranth.sim import Simulator

from golden import pim as gp
from golden.numerics import apply_out
from hdl.pim import CONFIGS, build
from hdl.pim.gemm import OutputStage
from tb.pim import TimingChecker, random_program

STRESS = gp.PIMConfig(bank_groups=8, banks_per_group=1, banks_per_bundle=1, rows=8, cols=2,
                      bundle_bits=32, max_tokens=4, max_k_words=4,
                      timing=gp.HBM3Timing(tREFI=400, tRFC=40, tFAW=60))


def test_output_stage_matches_numerics():
    rng = np.random.default_rng(0)
    acc = np.concatenate([rng.integers(-(1 << 31), 1 << 31, 300),
                          [0, 1, -1, 127, 128, -128, -129, (1 << 31) - 1, -(1 << 31)]])
    modes = [("int32", 0, 0, 0), ("int8_sat", 1, 0, 0)]
    for mult, shift in [(1, 1), (65535, 31), (0, 5), (40000, 16), (12345, 7), (3, 2)]:
        modes.append((("requant", mult, shift), 2, mult, shift))
    dut = OutputStage()
    got = {}

    async def tb(ctx):
        for out, code, mult, shift in modes:
            ctx.set(dut.mode, code)
            ctx.set(dut.mult, mult)
            ctx.set(dut.shift, shift)
            vals = []
            for a in acc:
                ctx.set(dut.acc, int(a))
                vals.append(ctx.get(dut.out))
            got[str(out)] = vals

    sim = Simulator(dut)
    sim.add_testbench(tb)
    sim.run()
    for out, *_ in modes:
        exp = apply_out(acc.astype(np.int64), out).astype(np.int64)
        assert np.array_equal(np.array(got[str(out)], np.int64), exp), out


def run_unit(cfg, words, din, max_cycles=200_000):
    """Drive the unit in the Amaranth simulator with no stalls; return what it did."""
    dut = build(cfg)
    res = dict(out=[], cmds=[], perf=None, err=None, fault=None, phase=None)

    async def tb(ctx):
        w, d = list(words), list(din)
        cyc, a0, idle = 0, None, 0
        ctx.set(dut.out.ready, 1)
        while cyc < max_cycles:
            ctx.set(dut.instr.valid, 1 if w else 0)
            if w:
                ctx.set(dut.instr.payload, w[0])
            ctx.set(dut.din.valid, 1 if d else 0)
            if d:
                ctx.set(dut.din.payload, d[0])
            if ctx.get(dut.cmd_valid):
                res["cmds"].append((cyc, ctx.get(dut.cmd_kind), ctx.get(dut.cmd_bundle),
                                    ctx.get(dut.cmd_row), ctx.get(dut.cmd_col)))
            if w and ctx.get(dut.instr.ready):
                if a0 is None:
                    a0, res["phase"] = cyc, ctx.get(dut.ref_phase)
                w.pop(0)
            if d and ctx.get(dut.din.ready):
                d.pop(0)
            if ctx.get(dut.out.valid):
                p = ctx.get(dut.out.payload)
                res["out"].append((p.value, p.last))
            await ctx.tick()
            cyc += 1
            idle = idle + 1 if (not w and not d and not ctx.get(dut.busy)) else 0
            if idle > 50:
                break
        res.update(perf=ctx.get(dut.perf_cycles), err=ctx.get(dut.err),
                   fault=ctx.get(dut.dram_fault), a0=a0, end=cyc)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return res


def _check_against_golden(cfg, prog, res):
    gold = gp.execute(cfg, prog.words, prog.din)
    vals = np.array([v for v, _ in res["out"]], np.int64)
    lasts = np.array([bool(x) for _, x in res["out"]], bool)
    assert np.array_equal(vals, gold.values) and np.array_equal(lasts, gold.last)
    assert res["err"] == gold.err and res["fault"] == 0
    tm = gp.predict(cfg, prog.words, ref_phase=res["phase"])
    assert res["perf"] == tm.cycles
    rtl = [(c[0] - res["a0"],) + c[1:] for c in res["cmds"] if c[0] - res["a0"] <= tm.cycles]
    assert rtl == tm.commands
    chk = TimingChecker(cfg)
    for c in res["cmds"]:
        chk.command(*c)
    chk.finish(res["end"])
    assert not chk.violations, chk.violations[:5]
    return gold, tm


def test_unit_stress_config_tfaw_trrd_refresh():
    cfg = STRESS
    rng = np.random.default_rng(7)
    prog = gp.Program(cfg)
    w = rng.integers(-128, 128, (30, 16), dtype=np.int8)      # 30 rows x 1 word: 15 DRAM rows
    prog.write_matrix(2, w)
    prog.load_tokens(rng.integers(-128, 128, (1, 16), dtype=np.int8))
    prog.gemm(2, 30)
    prog.load_tokens(rng.integers(-128, 128, (4, 16), dtype=np.int8))
    prog.set_out(("requant", 777, 10))
    prog.gemm(2, 30)
    res = run_unit(cfg, prog.words, prog.din)
    _, tm = _check_against_golden(cfg, prog, res)
    acts = [c[0] for c in res["cmds"] if c[1] == gp.CMD_ACT]
    gaps4 = [b - a for a, b in zip(acts, acts[4:])]
    assert min(gaps4) == cfg.timing.tFAW          # the scheduler runs right at the tFAW limit
    assert min(b - a for a, b in zip(acts, acts[1:])) == cfg.timing.tRRD_S
    assert sum(c[1] == gp.CMD_REF for c in res["cmds"]) >= 3


@pytest.mark.parametrize("seed", [11, 12])
def test_unit_stress_config_random_programs(seed):
    cfg = STRESS
    rng = np.random.default_rng(seed)
    prog = random_program(cfg, rng, n_instr=14, max_rows=16, first_gemm_unloaded=True)
    res = run_unit(cfg, prog.words, prog.din)
    _check_against_golden(cfg, prog, res)


def test_unit_fpga_config_full_width_and_top_of_banks():
    """The ECP5 build (``CONFIGS["fpga"]``: 512-bit bundles, a 4096-word bank slice, 16
    tokens) is not in the cocotb regression, so it runs here once: a full token buffer,
    the highest addresses of both bundles, every output mode, bad instructions mixed in."""
    cfg = CONFIGS["fpga"]
    rng = np.random.default_rng(23)
    prog = gp.Program(cfg)
    kw, n = 2, 3
    top = cfg.words - n * kw                                  # ends on the last word
    prog.write_matrix(top, rng.integers(-128, 128, (n, kw * cfg.elems), dtype=np.int8))
    prog.write_matrix(0, rng.integers(-128, 128, (n, kw * cfg.elems - 5), dtype=np.int8))
    prog.load_tokens(rng.integers(-128, 128, (cfg.max_tokens, kw * cfg.elems), dtype=np.int8))
    prog.raw(gp.encode("GEMM", addr=cfg.words - 1, n=2))    # runs past the banks -> ERR_ADDR
    prog.gemm(top, n)
    prog.set_out("int8_sat")
    prog.gemm(0, n)
    prog.raw(gp.encode("LOAD_TOKENS", t=cfg.max_tokens + 1, kw=1))   # -> ERR_TOKENS
    prog.load_tokens(rng.integers(-128, 128, (3, kw * cfg.elems - 7), dtype=np.int8))
    prog.set_out(("requant", 40000, 16))
    prog.gemm(top, n)
    res = run_unit(cfg, prog.words, prog.din)
    gold, _ = _check_against_golden(cfg, prog, res)
    assert len(gold.values) == (cfg.max_tokens + cfg.max_tokens + 3) * n
    assert gold.err == gp.ERR_ADDR | gp.ERR_TOKENS
