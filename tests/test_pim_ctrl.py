"""hdl.pim.ctrl.DRAMController on its own in the Amaranth simulator (no pseudo-channel,
no GEMM): jobs are started on its ports, the weight-FIFO consumer is modelled by the
bench, and the command trace it issues is compared cycle for cycle with the
scheduler of golden.pim.timing and checked by tb.dram_timing.TimingChecker.

Covered: refresh (PRE of the open bundles, then REF; tRFC before the next ACT), a
row miss (PRE, tRP, ACT, tRCD, RD), bank-group turnaround (tCCD_L/S, tWTR_L/S, the
RD->WR turnaround), tFAW and tRRD_S binding, the weight-FIFO credit, write data
arriving with holes.
"""
import pytest
from amaranth.sim import Simulator

from golden import pim as gp
from golden.pim.timing import _Ctrl, _run_job
from hdl.pim.ctrl import DRAMController
from tb.dram_timing import TimingChecker

#: 8 one-bank-group bundles of 2-word rows, a 400-cycle refresh interval, tFAW
#: stretched to 60: tFAW and tRRD_S bind on a long stream.
STRESS = gp.PIMConfig(bank_groups=8, banks_per_group=1, banks_per_bundle=1, rows=8, cols=2,
                      bundle_bits=32, max_tokens=4, max_k_words=4,
                      timing=gp.HBM3Timing(tREFI=400, tRFC=40, tFAW=60))
#: 2 bundles (one bank group each) and a 1-cycle bundle bus: tCCD_S (2) < tCCD_L (4)
#: and tWTR_S < tWTR_L are visible instead of being hidden by tBUS; tWR 60 keeps a
#: written row open until a read of it can follow a write to the other bank group.
TURN = gp.PIMConfig(bank_groups=2, banks_per_group=1, banks_per_bundle=1, rows=8, cols=2,
                    bundle_bits=32, max_tokens=4, max_k_words=4,
                    timing=gp.HBM3Timing(tREFI=400, tRFC=40, tBUS=1, tWR=60))

ACT, PRE, RD, WR, REF = gp.CMD_ACT, gp.CMD_PRE, gp.CMD_RD, gp.CMD_WR, gp.CMD_REF
FIFO_LAT = 2     # the unit's weight FIFO (lib.fifo.SyncFIFOBuffered): written at c, read at c + 2


def run_ctrl(cfg, jobs, mac_t=1, tail=60, wvalid=None, drain=True, max_cycles=20_000):
    """Run ``jobs`` = [(write, addr, count), ...] one after another: each starts the
    cycle the previous one has ended (``job_busy`` low and, with ``drain``, every
    read word popped). The consumer pops each RD's word the way the GEMM does:
    readable tCL + FIFO_LAT cycles after the RD, used for ``mac_t`` cycles, popped
    in the last. ``wvalid(cycle)``: write data valid (default always). Returns the
    command trace ``cmds`` [(cycle, kind, bundle, row, col)], the job_start cycles,
    ref_phase at cycle 0, the end cycle and the pop cycles; asserts ``wr_take`` is
    exactly the WR commands."""
    T = cfg.timing
    dut = DRAMController(cfg)
    res = dict(cmds=[], starts=[])

    async def tb(ctx):
        cyc, todo, pops, s_prev, left = 0, list(jobs), set(), None, tail
        res["phase"] = ctx.get(dut.ref_phase)
        started = False
        while cyc < max_cycles:
            busy = ctx.get(dut.job_busy)
            if started and not busy and not (drain and any(p >= cyc for p in pops)):
                started = False
            start = bool(todo) and not started
            if start:
                w, a, n = todo.pop(0)
                ctx.set(dut.job_write, w)
                ctx.set(dut.job_addr, a)
                ctx.set(dut.job_count, n)
                res["starts"].append(cyc)
                started, s_prev = True, None
            ctx.set(dut.job_start, start)
            ctx.set(dut.rd_pop, cyc in pops)
            ctx.set(dut.wdata_valid, 1 if wvalid is None else wvalid(cyc))
            if ctx.get(dut.cmd_valid):
                c = (cyc, ctx.get(dut.cmd_kind), ctx.get(dut.cmd_bundle), ctx.get(dut.cmd_row),
                     ctx.get(dut.cmd_col))
                res["cmds"].append(c)
                if c[1] == RD:
                    s = cyc + T.tCL + FIFO_LAT
                    s = s if s_prev is None else max(s, s_prev + mac_t)
                    s_prev = s
                    pops.add(s + mac_t - 1)
            assert ctx.get(dut.wr_take) == (ctx.get(dut.cmd_valid) and
                                            ctx.get(dut.cmd_kind) == WR)
            await ctx.tick()
            cyc += 1
            if not todo and not started:
                if left == 0:
                    break
                left -= 1
        assert not todo and not started, "controller hung"
        res["end"], res["pops"] = cyc, sorted(pops)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return res


def model_trace(cfg, jobs, res, mac_t=1):
    """The golden scheduler's trace of the same jobs (each starts the cycle after
    its job_start pulse, as the RTL's job registers load)."""
    ctl = _Ctrl(cfg, due_at=cfg.timing.tREFI - res["phase"], trace=True)
    for (w, a, n), s in zip(jobs, res["starts"]):
        _run_job(ctl, s + 1, w, a, n, mac_t=mac_t)
    ctl.advance(res["end"])
    return [tuple(c) for c in ctl.cmds]


def checked(cfg, jobs, mac_t=1, **kw):
    """Run, then: same trace as the golden scheduler, no checker violation, every
    job's words addressed in order. Returns what :func:`run_ctrl` returns."""
    res = run_ctrl(cfg, jobs, mac_t=mac_t, **kw)
    cmds = res["cmds"]
    if kw.get("wvalid") is None:
        assert cmds == model_trace(cfg, jobs, res, mac_t), "trace differs from golden.pim.timing"
    chk = TimingChecker(cfg)
    for c in cmds:
        chk.command(*c)
    chk.finish(res["end"])
    assert not chk.violations, chk.violations[:5]
    col = [c for c in cmds if c[1] in (RD, WR)]
    want = [WR if w else RD for w, _, n in jobs for _ in range(n)]
    assert [c[1] for c in col] == want
    addrs = [a + i for _, a, n in jobs for i in range(n)]
    assert [cfg.word_addr(b, r, cl) for _, _, b, r, cl in col] == addrs
    return res


def kinds(cmds, kind):
    return [c for c in cmds if c[1] == kind]


def test_refresh_closes_bundles_then_refreshes():
    """A 4-tREFI read stream: each refresh precharges every open bundle, REF comes
    tRP after the last PRE (tRC after the last ACT), the next ACT tRFC after the REF;
    the first is due tREFI after reset (the checker bounds the later ones)."""
    cfg, T = STRESS, STRESS.timing
    res = checked(cfg, [(0, 0, 120)], mac_t=14)
    cmds = res["cmds"]
    refs = [c[0] for c in kinds(cmds, REF)]
    assert len(refs) >= 4
    for r in refs:
        before = [c for c in cmds if c[0] < r]
        last_pre = max(c[0] for c in before if c[1] == PRE)
        assert r - last_pre >= T.tRP
        after = [c[0] for c in cmds if c[0] > r and c[1] == ACT]
        if after:
            assert after[0] - r >= T.tRFC
    # at least one refresh waits exactly tRP after its PRE and holds the next ACT exactly tRFC
    assert T.tRP in [r - max(c[0] for c in cmds if c[0] < r and c[1] == PRE) for r in refs]
    assert T.tRFC in [min(c[0] for c in cmds if c[0] > r and c[1] == ACT) - r
                      for r in refs[:-1]]
    assert res["phase"] == 0 and T.tREFI <= refs[0] <= T.tREFI + T.ref_slack


def test_row_miss_precharges_then_activates():
    """Bundle 0 is still open at row 0 when a job for its row 3 starts: PRE (once
    tRAS/tRTP allow), ACT tRP later, RD tRCD after the ACT."""
    cfg, T = TURN, TURN.timing
    jobs = [(0, cfg.word_addr(0, 0, 0), 1), (0, cfg.word_addr(0, 3, 1), 1)]
    res = checked(cfg, jobs, tail=80)
    cmds = res["cmds"]
    k = [c[1:4] for c in cmds]
    assert k[:5] == [(ACT, 0, 0), (RD, 0, 0), (PRE, 0, 0), (ACT, 0, 3), (RD, 0, 3)]
    t = [c[0] for c in cmds]
    assert t[1] - t[0] == T.tRCD
    assert t[2] - t[0] == T.tRAS            # ACT->PRE binds (tRAS > tRCD + tRTP)
    assert res["starts"][1] < t[2]          # the second job was waiting for it
    assert t[3] - t[2] == T.tRP
    assert t[4] - t[3] == T.tRCD
    assert k[5:] == [(PRE, 0, 0)]          # closed again once no job needs it


def test_column_turnaround_same_and_other_bank_group():
    """tCCD_L within a bundle, tCCD_S across (one bank group per bundle), then WR->RD
    (tWTR_L / tWTR_S by bank group) and RD->WR (tCL + tBL + 2 - tCWL)."""
    cfg, T = TURN, TURN.timing
    assert T.tCCD_S < T.tCCD_L and T.wr_to_rd_s < T.wr_to_rd_l
    # a 4-word read: b0c0 b0c1 b1c0 b1c1
    cmds = checked(cfg, [(0, 0, 4)])["cmds"]
    rd = kinds(cmds, RD)
    gaps = [(b[0] - a[0], a[2] == b[2]) for a, b in zip(rd, rd[1:])]
    assert gaps == [(T.tCCD_L, True), (T.tCCD_S, False), (T.tCCD_L, True)]
    # WR then RD of the other word of the same bundle row: tWTR_L
    cmds = checked(cfg, [(1, 0, 1), (0, 1, 1)])["cmds"]
    (w,), (r,) = kinds(cmds, WR), kinds(cmds, RD)
    assert r[0] - w[0] == T.wr_to_rd_l
    # WR b0c0, WR b1c0, then RD b0c1: the last WR is in the other bank group
    cmds = checked(cfg, [(1, 0, 1), (1, 2, 1), (0, 1, 1)])["cmds"]
    w, (r,) = kinds(cmds, WR), kinds(cmds, RD)
    assert [c[2] for c in w] == [0, 1] and r[2] == 0
    assert r[0] - w[1][0] == T.wr_to_rd_s and r[0] - w[0][0] > T.wr_to_rd_l
    # RD then WR of the next word: the read-to-write turnaround
    cmds = checked(cfg, [(0, 0, 1), (1, 1, 1)], drain=False)["cmds"]
    (r,), (w,) = kinds(cmds, RD), kinds(cmds, WR)
    assert w[0] - r[0] == T.rd_to_wr


def test_tfaw_and_trrd_bind_on_a_long_stream():
    """8 bundles of 2-word rows: the prefetching scheduler opens a bundle every 2 words,
    so ACTs are tRRD_S apart in bursts and any 5 ACTs span at least tFAW, exactly."""
    cfg, T = STRESS, STRESS.timing
    cmds = checked(cfg, [(0, 0, 64)])["cmds"]
    acts = [c[0] for c in kinds(cmds, ACT)]
    assert min(b - a for a, b in zip(acts, acts[4:])) == T.tFAW
    assert min(b - a for a, b in zip(acts, acts[1:])) == T.tRRD_S


def test_weight_fifo_credit():
    """At most wfifo_depth words are read ahead of the consumer's pops: with a slow
    consumer (8 cycles a word, long rows read every tCCD_L = 4) RD i waits for pop
    i - wfifo_depth, issuing the cycle after it whenever nothing else holds it."""
    cfg = gp.PIMConfig(bank_groups=2, banks_per_group=1, banks_per_bundle=1, rows=8, cols=32,
                       bundle_bits=32, max_tokens=4, max_k_words=4, wfifo_depth=4,
                       timing=TURN.timing)
    D, jobs = cfg.wfifo_depth, [(0, 3, 60)]
    res = checked(cfg, jobs, mac_t=8)
    rd, pops = [c[0] for c in kinds(res["cmds"], RD)], res["pops"]
    assert all(rd[i] > pops[i - D] for i in range(D, len(rd)))
    assert sum(rd[i] == pops[i - D] + 1 for i in range(D, len(rd))) >= len(rd) // 2


def test_write_waits_for_data():
    """WR only with valid write data (wr_take marks it; checked in the bench); holes
    in the data stream only delay the writes, all words land in order."""
    cfg = TURN
    valid = lambda c: (c // 3) % 2          # noqa: E731
    cmds = checked(cfg, [(1, 2, 9), (0, 2, 9)], wvalid=valid, tail=100)["cmds"]
    assert all(valid(c[0]) for c in kinds(cmds, WR))


def test_back_to_back_jobs_against_golden():
    """Mixed reads and writes across bundles, rows and a refresh, no gaps: the trace
    equals the golden scheduler's cycle for cycle."""
    cfg = STRESS
    jobs = [(1, 5, 7), (0, 0, 12), (0, 30, 9), (1, 31, 1), (0, 7, 20), (1, 60, 4)]
    assert kinds(checked(cfg, jobs, mac_t=2)["cmds"], REF)
