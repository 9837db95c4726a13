"""Amaranth-simulator tests of hdl.pim pieces (fast, no Verilator).

* the whole unit at a *stress* config (8 one-bank-group bundles, 2-word rows, a
  400-cycle refresh interval, tFAW stretched to 60) where tFAW and tRRD bind: every
  output, the error bits, the busy-cycle count and the full DRAM command trace
  equal the golden models, and the independent checker finds no violation.
"""
import numpy as np
import pytest
from amaranth.sim import Simulator

from golden import pim as gp
from hdl.pim import CONFIGS, build
from tb.dram_timing import TimingChecker
from tb.pim import random_program

STRESS = gp.PIMConfig(bank_groups=8, banks_per_group=1, banks_per_bundle=1, rows=8, cols=2,
                      bundle_bits=32, max_tokens=4, max_k_words=4,
                      timing=gp.HBM3Timing(tREFI=400, tRFC=40, tFAW=60))


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


# --------------------------------------------------------------------------- HBM3 rules in the RTL

#: tests/test_pim_timing.py's config where the two-cycle ACT (tRRD_S = 1) and the
#: RD->WR turnaround (tBL = 60: 75 cycles) bind.
TIGHT = gp.PIMConfig(bank_groups=8, banks_per_group=1, banks_per_bundle=1, rows=8, cols=2,
                     bundle_bits=32, max_tokens=4, max_k_words=4,
                     timing=gp.HBM3Timing(tREFI=400, tRFC=40, tFAW=60, tRRD_S=1, tBL=60))


def test_unit_two_cycle_act_and_rd_to_wr_cycle_for_cycle():
    """The controller holds ACT->ACT and ACT->PRE (other bundle) to 2 cycles and RD->WR
    to tCL + tBL + 2 - tCWL, exactly where the model does: same command trace."""
    cfg, T = TIGHT, TIGHT.timing
    rng = np.random.default_rng(5)
    prog = random_program(cfg, rng, n_instr=16, max_rows=16, first_gemm_unloaded=True)
    prog.load_tokens(np.ones((1, 4), np.int8)).gemm(0, 1).write(1, [7])   # RD, then WR: same row
    res = run_unit(cfg, prog.words, prog.din)
    _check_against_golden(cfg, prog, res)
    cmds = res["cmds"]
    acts = [c[0] for c in cmds if c[1] == gp.CMD_ACT]
    assert min(b - a for a, b in zip(acts, acts[1:])) == T.tACT == 2
    act_pre = [b[0] - a[0] for a, b in zip(cmds, cmds[1:])
               if a[1] == gp.CMD_ACT and b[1] == gp.CMD_PRE]
    assert min(act_pre) == 2
    rd = [c[0] for c in cmds if c[1] == gp.CMD_RD][-1]
    wr = [c[0] for c in cmds if c[1] == gp.CMD_WR][-1]
    assert wr - rd == T.rd_to_wr == 75


# --------------------------------------------------------------------------- error classes

def _bad(cfg):
    """(name, instruction word, error bits) for every trigger of every error class, plus
    legal words at each boundary (error bits 0). docs/pim.md lists them."""
    W, E = cfg.words, gp.encode
    return [
        ("opcode 6", 6, gp.ERR_OPCODE), ("opcode 15 + fields", 15 | (0xABCDE << 8), gp.ERR_OPCODE),
        ("WRITE addr+count > words", E("WRITE", addr=W - 3, count=4), gp.ERR_ADDR),
        ("WRITE addr = words", E("WRITE", addr=W, count=1), gp.ERR_ADDR),
        ("WRITE addr+count past 2**32", E("WRITE", addr=(1 << 32) - 1, count=2), gp.ERR_ADDR),
        ("WRITE count 0", E("WRITE", addr=0, count=0), gp.ERR_FIELD),
        ("WRITE count 0 + addr", E("WRITE", addr=W + 1, count=0), gp.ERR_FIELD | gp.ERR_ADDR),
        ("GEMM addr+n*kw > words", E("GEMM", addr=W - 2, n=1), gp.ERR_ADDR),    # kw = 3
        ("GEMM addr+n*kw past 2**32", E("GEMM", addr=(1 << 32) - 1, n=1), gp.ERR_ADDR),
        ("GEMM n = 65535", E("GEMM", addr=0, n=(1 << 16) - 1), gp.ERR_ADDR),
        ("GEMM n 0", E("GEMM", addr=0, n=0), gp.ERR_FIELD),
        ("LOAD t 0", E("LOAD_TOKENS", t=0, kw=1), gp.ERR_TOKENS),
        ("LOAD t > max", E("LOAD_TOKENS", t=cfg.max_tokens + 1, kw=1), gp.ERR_TOKENS),
        ("LOAD kw 0", E("LOAD_TOKENS", t=1, kw=0), gp.ERR_TOKENS),
        ("LOAD kw > max", E("LOAD_TOKENS", t=1, kw=cfg.max_k_words + 1), gp.ERR_TOKENS),
        ("SET_OUT mode 3", E("SET_OUT", mode=3), gp.ERR_FIELD),
        ("SET_OUT requant shift 0", E("SET_OUT", mode=2, shift=0, mult=9), gp.ERR_FIELD),
        ("SET_OUT int32 mult", E("SET_OUT", mode=0, mult=1), gp.ERR_FIELD),
        ("SET_OUT int32 shift", E("SET_OUT", mode=0, shift=1), gp.ERR_FIELD),
        ("SET_OUT int8 mult", E("SET_OUT", mode=1, mult=3), gp.ERR_FIELD),
        ("SET_OUT int8 shift", E("SET_OUT", mode=1, shift=31), gp.ERR_FIELD),
        ("ok: WRITE ends on the last word", E("WRITE", addr=W - 2, count=2), 0),
        ("ok: GEMM ends on the last word", E("GEMM", addr=W - 3, n=1), 0),
        ("ok: FENCE", E("FENCE"), 0), ("ok: NOP with reserved bits", 0xFFFF_FFFF_FFFF_FFF0, 0),
        ("ok: SET_OUT requant shift 1", E("SET_OUT", mode=2, shift=1, mult=65535), 0),
        ("ok: SET_OUT int8", E("SET_OUT", mode=1), 0),
        ("ok: LOAD t = max, kw = max", E("LOAD_TOKENS", t=cfg.max_tokens, kw=cfg.max_k_words), 0),
    ]


def run_cases(cfg, cases, max_cycles=100_000):
    """One simulation, one case at a time: push its words and data, wait until the
    unit is idle, read ``err``, pulse ``clear``. Returns per case (err, outputs)."""
    dut = build(cfg)
    got = []

    async def tb(ctx):
        ctx.set(dut.out.ready, 1)
        cyc = 0
        for words, din in cases:
            w, d, outs, idle = list(words), list(din), [], 0
            while idle < 30:
                ctx.set(dut.instr.valid, 1 if w else 0)
                if w:
                    ctx.set(dut.instr.payload, w[0])
                ctx.set(dut.din.valid, 1 if d else 0)
                if d:
                    ctx.set(dut.din.payload, d[0])
                if w and ctx.get(dut.instr.ready):
                    w.pop(0)
                if d and ctx.get(dut.din.ready):
                    d.pop(0)
                if ctx.get(dut.out.valid):
                    p = ctx.get(dut.out.payload)
                    outs.append(p.value)
                await ctx.tick()
                cyc += 1
                assert cyc < max_cycles, "unit hung"
                idle = idle + 1 if (not w and not ctx.get(dut.busy)) else 0
            got.append((ctx.get(dut.err), outs, len(d), ctx.get(dut.dram_fault)))
            ctx.set(dut.clear, 1)
            await ctx.tick()
            ctx.set(dut.clear, 0)
            assert ctx.get(dut.err) == 0

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return got


def test_every_error_trigger_alone_in_rtl():
    """Each trigger of each error class on its own (err cleared in between): exactly its
    bits, no data word taken, and the unit runs the next instruction (a GEMM) right."""
    cfg = CONFIGS["small"]
    rng = np.random.default_rng(9)
    st = gp.UnitState.reset(cfg)
    w = rng.integers(-128, 128, (4, 3 * cfg.elems), dtype=np.int8)
    setup = gp.Program(cfg).write_matrix(0, w).write_matrix(cfg.words - 3, w[:1])
    first = gp.Program(cfg).raw(gp.encode("GEMM", addr=0, n=1))          # nothing loaded yet
    x = rng.integers(-128, 128, (2, 3 * cfg.elems), dtype=np.int8)
    after = gp.Program(cfg).load_tokens(x).gemm(0, 4)
    cases, expect = [(setup.words, setup.din)], [("setup", 0)]
    cases.append((first.words + after.words, first.din + after.din))
    expect.append(("GEMM before any LOAD_TOKENS", gp.ERR_TOKENS))
    for name, word, bits in _bad(cfg):
        p = gp.Program(cfg).raw(word)
        if name.startswith("ok: LOAD"):
            p.din.extend(int(v) for v in rng.integers(0, 1 << 32, cfg.max_tokens * cfg.max_k_words))
            p.load_tokens(x)                     # back to kw = 3 for the GEMMs
        if name.startswith("ok: WRITE"):
            p.din.extend([int(cfg.words), 3])    # its two data words
        p.words += [gp.encode("SET_OUT", mode=0)] + after.words
        p.din += after.din
        cases.append((p.words, p.din))
        expect.append((name, bits))
    got = run_cases(cfg, cases)
    for (name, bits), (words, din), (err, outs, left, fault) in zip(expect, cases, got):
        gold = gp.execute(cfg, words, din, state=st)
        assert gold.err == bits, (name, gold.err)           # the case is what its name says
        assert err == bits, f"{name}: rtl err {err:#x}, expected {bits:#x}"
        assert outs == [int(v) for v in gold.values], name
        assert left == 0 and gold.din_used == len(din) and fault == 0, name


#: 6 rows: a 3-bit row field can name rows 6 and 7, beyond the bundle.
CH = gp.PIMConfig(bank_groups=8, banks_per_group=1, banks_per_bundle=1, rows=6, cols=2,
                  bundle_bits=32, max_tokens=4, max_k_words=4)


def _channel_fault(cfg, cmds):
    """Drive the pseudo-channel model alone with (kind, bundle, row) commands, one per
    cycle; return its sticky ``fault`` after each command."""
    from hdl.pim.dram import PseudoChannel
    dut = PseudoChannel(cfg)
    seen = []

    async def tb(ctx):
        for kind, b, r in cmds:
            ctx.set(dut.cmd_valid, 1)
            ctx.set(dut.cmd_kind, kind)
            ctx.set(dut.cmd_bundle, b)
            ctx.set(dut.cmd_row, r)
            await ctx.tick()
            ctx.set(dut.cmd_valid, 0)
            seen.append(ctx.get(dut.fault))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return seen


@pytest.mark.parametrize("name, cmds", [
    ("ACT to an open bundle", [(gp.CMD_ACT, 0, 1), (gp.CMD_ACT, 0, 2)]),
    ("ACT row out of range", [(gp.CMD_ACT, 1, CH.rows)]),
    ("PRE to a closed bundle", [(gp.CMD_ACT, 0, 1), (gp.CMD_PRE, 1, 0)]),
    ("RD to a closed bundle", [(gp.CMD_RD, 2, 0)]),
    ("WR to a closed bundle", [(gp.CMD_ACT, 0, 1), (gp.CMD_PRE, 0, 0), (gp.CMD_WR, 0, 0)]),
    ("REF with a bundle open", [(gp.CMD_ACT, 3, 1), (gp.CMD_REF, 0, 0)]),
])
def test_dram_fault_each_illegal_command(name, cmds):
    """``dram_fault``: the pseudo-channel flags a command illegal for its bank state
    (sticky), and not the legal commands before it."""
    seen = _channel_fault(CH, cmds)
    assert seen[:-1] == [0] * (len(cmds) - 1) and seen[-1] == 1, (name, seen)


def test_dram_fault_quiet_on_legal_commands():
    seen = _channel_fault(CH, [(gp.CMD_ACT, 0, 1), (gp.CMD_ACT, 1, CH.rows - 1), (gp.CMD_RD, 0, 0),
                                   (gp.CMD_WR, 1, 0), (gp.CMD_PRE, 0, 0), (gp.CMD_PRE, 1, 0),
                                   (gp.CMD_REF, 0, 0)])
    assert seen == [0] * 7
