"""The Logic-PIM DRAM controller: issues only legal HBM3 command sequences.

One *job* at a time streams ``count`` consecutive words from word address
``addr`` (reads into the weight FIFO, or writes from the data stream). Each
timing constraint is a down-counter per bundle (or global): a command at cycle
T that requires distance d before command X loads X's counter with d - 1 (or
keeps a larger value); X is legal when its counter is 0. See golden.pim.timing._Ctrl
for the same scheduler as an event model and docs/pim.md for the policy:

  1. refresh due (every tREFI): PRE the open bundles (lowest first, each when
     legal), then REF when all are closed and tRP/tRC allow; nothing else.
  2. RD/WR of the current word when its bundle is open at its row, the
     counters allow and (RD) a weight-FIFO credit is free / (WR) data is valid.
  3. ACT of the current segment's bundle if closed, else of the next segment's
     bundle if closed (prefetch: the next DRAM row opens while this one streams).
  4. PRE of the lowest open bundle that neither segment needs.

HBM3 rules beyond the per-command distances (golden.hbm3): the two-cycle ACT
(no ACT, PRE or REF in the cycle after an ACT) and the read-to-write
turnaround tCL + tBL + 2 - tCWL.
"""
from __future__ import annotations

from amaranth import Array, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from golden.pim import CMD_ACT, CMD_PRE, CMD_RD, CMD_REF, CMD_WR, PIMConfig

from ..common import bits_for, log2


class DRAMController(wiring.Component):
    def __init__(self, cfg: PIMConfig):
        self.cfg = cfg
        super().__init__({
            "job_start": In(1), "job_write": In(1), "job_addr": In(32), "job_count": In(28),
            "job_busy": Out(1),
            "rd_pop": In(1),
            "wdata_valid": In(1), "wr_take": Out(1),
            "cmd_valid": Out(1), "cmd_kind": Out(3), "cmd_bundle": Out(bits_for(cfg.bundles)),
            "cmd_row": Out(bits_for(cfg.rows)), "cmd_col": Out(bits_for(cfg.cols)),
            "ref_phase": Out(16),
        })

    def elaborate(self, platform):
        cfg, T = self.cfg, self.cfg.timing
        m = Module()
        B, C = cfg.bundles, cfg.cols
        lb, lc = log2(B), log2(C)
        RB = bits_for(cfg.rows + 1)

        def counter(name, maxv):
            return Signal(range(max(2, maxv)), name=name)

        # ---- state
        is_open = Signal(B)
        orow = Array(Signal(RB, name=f"row{b}") for b in range(B))
        act_c = [counter(f"act_c{b}", max(T.tRC, T.tRRD_L, T.tRP, T.tRFC, T.tACT))
                 for b in range(B)]
        rd_c = [counter(f"rd_c{b}", max(T.tRCD, T.tCCD_L, T.tBUS, T.wr_to_rd_l)) for b in range(B)]
        wr_c = [counter(f"wr_c{b}", max(T.tRCD, T.tCCD_L, T.tBUS, T.rd_to_wr)) for b in range(B)]
        pre_c = [counter(f"pre_c{b}", max(T.tRAS, T.tRTP, T.wr_to_pre, T.tACT)) for b in range(B)]
        ref_c = counter("ref_c", max(T.tRC, T.tRP, T.tACT))
        faw_c = [counter(f"faw_c{i}", T.tFAW) for i in range(4)]
        faw_p = Signal(2)
        timer = Signal(range(T.tREFI))
        due = Signal()
        inflight = Signal(range(cfg.wfifo_depth + 1))

        rem = Signal(28)
        write = Signal()
        cb = Signal(max(1, lb))
        cr = Signal(RB)
        cc = Signal(max(1, lc))

        m.d.comb += [self.job_busy.eq(rem != 0), self.ref_phase.eq(timer)]

        # ---- refresh timer
        with m.If(timer == T.tREFI - 1):
            m.d.sync += [timer.eq(0), due.eq(1)]
        with m.Else():
            m.d.sync += timer.eq(timer + 1)

        # ---- decision (combinational)
        active = rem != 0
        open_a = Array(is_open[b] for b in range(B))
        zero = lambda sigs, idx: Array(s == 0 for s in sigs)[idx]   # noqa: E731
        hit = active & open_a[cb] & (orow[cb] == cr)
        has_nxt = rem > (C - cc)
        nb = Signal.like(cb)
        nr = Signal(RB)
        if B > 1:
            m.d.comb += [nb.eq(cb + 1), nr.eq(cr + (cb == B - 1))]
        else:
            m.d.comb += [nb.eq(0), nr.eq(cr + 1)]
        credit = inflight < cfg.wfifo_depth

        do_rd = Signal()
        do_wr = Signal()
        m.d.comb += [do_rd.eq(~due & hit & ~write & zero(rd_c, cb) & credit),
                     do_wr.eq(~due & hit & write & zero(wr_c, cb) & self.wdata_valid)]
        rdwr = do_rd | do_wr

        sel_cur = active & ~hit & ~open_a[cb]
        sel_nxt = active & hit & has_nxt & ~open_a[nb]
        tgt = Signal.like(cb)
        trow = Signal(RB)
        m.d.comb += [tgt.eq(Mux(sel_cur, cb, nb)), trow.eq(Mux(sel_cur, cr, nr))]
        faw_ok = Array(c == 0 for c in faw_c)[faw_p]
        do_act = Signal()
        m.d.comb += do_act.eq(~due & ~rdwr & (sel_cur | sel_nxt) & zero(act_c, tgt) & faw_ok)

        # PRE candidates
        need_n = active & has_nxt & open_a[nb] & (orow[nb] == nr)
        pre_cand = Signal(B)
        for b in range(B):
            needed = (hit & (cb == b)) | (need_n & (nb == b))
            m.d.comb += pre_cand[b].eq(is_open[b] & (pre_c[b] == 0) & (due | ~needed))
        do_pre = Signal()
        pre_b = Signal.like(cb)
        m.d.comb += do_pre.eq((pre_cand != 0) & ~rdwr & ~do_act)
        for b in reversed(range(B)):            # lowest index wins
            with m.If(pre_cand[b]):
                m.d.comb += pre_b.eq(b)
        do_ref = Signal()
        m.d.comb += do_ref.eq(due & (is_open == 0) & (ref_c == 0))

        # ---- command bus
        m.d.comb += self.cmd_valid.eq(rdwr | do_act | do_pre | do_ref)
        with m.If(do_rd):
            m.d.comb += [self.cmd_kind.eq(CMD_RD), self.cmd_bundle.eq(cb), self.cmd_row.eq(cr),
                         self.cmd_col.eq(cc)]
        with m.Elif(do_wr):
            m.d.comb += [self.cmd_kind.eq(CMD_WR), self.cmd_bundle.eq(cb), self.cmd_row.eq(cr),
                         self.cmd_col.eq(cc)]
        with m.Elif(do_act):
            m.d.comb += [self.cmd_kind.eq(CMD_ACT), self.cmd_bundle.eq(tgt),
                         self.cmd_row.eq(trow)]
        with m.Elif(do_pre):
            m.d.comb += [self.cmd_kind.eq(CMD_PRE), self.cmd_bundle.eq(pre_b)]
        with m.Elif(do_ref):
            m.d.comb += self.cmd_kind.eq(CMD_REF)
        m.d.comb += self.wr_take.eq(do_wr)

        # ---- counters: next = max(counter - 1, load)
        def update(sig, load):
            dec = Mux(sig != 0, sig - 1, 0)
            m.d.sync += sig.eq(Mux(load > dec, load, dec))

        def pick(*pairs, default=0):
            """Mux chain over (condition, distance) -> distance - 1."""
            v = Const(default, 16)
            for cond, d in reversed(pairs):
                v = Mux(cond, max(d - 1, 0), v)
            return v

        ccd_same, ccd_other = max(T.tCCD_L, T.tBUS), max(T.tCCD_S, T.tBUS)
        for b in range(B):
            here_act, here_rdwr, here_pre = tgt == b, cb == b, pre_b == b
            # tACT: the two-cycle ACT holds off the next ACT/PRE/REF on the channel
            update(act_c[b], pick((do_ref, T.tRFC),
                                  (do_act & here_act, max(T.tRC, T.tRRD_L, T.tACT)),
                                  (do_act, max(T.tRRD_S, T.tACT)),
                                  (do_pre & here_pre, T.tRP)))
            update(rd_c[b], pick((do_act & here_act, T.tRCD),
                                 (do_rd & here_rdwr, ccd_same), (do_rd, ccd_other),
                                 (do_wr & here_rdwr, T.wr_to_rd_l), (do_wr, T.wr_to_rd_s)))
            update(wr_c[b], pick((do_act & here_act, T.tRCD),
                                 (do_wr & here_rdwr, ccd_same), (do_wr, ccd_other),
                                 (do_rd, T.rd_to_wr)))
            update(pre_c[b], pick((do_act & here_act, max(T.tRAS, T.tACT)),
                                  (do_act, T.tACT),
                                  (do_rd & here_rdwr, T.tRTP),
                                  (do_wr & here_rdwr, T.wr_to_pre)))
        update(ref_c, pick((do_act, max(T.tRC, T.tACT)), (do_pre, T.tRP)))
        for i in range(4):
            update(faw_c[i], pick((do_act & (faw_p == i), T.tFAW)))
        with m.If(do_act):
            m.d.sync += faw_p.eq(faw_p + 1)

        # ---- bank state
        for b in range(B):
            with m.If(do_act & (tgt == b)):
                m.d.sync += [is_open[b].eq(1), orow[b].eq(trow)]
            with m.If(do_pre & (pre_b == b)):
                m.d.sync += is_open[b].eq(0)
        with m.If(do_ref):
            m.d.sync += due.eq(0)

        # ---- job / cursor
        m.d.sync += inflight.eq(inflight + do_rd - self.rd_pop)
        with m.If(self.job_start):
            a = self.job_addr
            m.d.sync += [rem.eq(self.job_count), write.eq(self.job_write),
                         cc.eq(a[:lc] if lc else 0), cb.eq(a[lc:lc + lb] if lb else 0),
                         cr.eq(a[lc + lb:])]
        with m.Elif(rdwr):
            m.d.sync += rem.eq(rem - 1)
            last_col = cc == C - 1 if lc else Const(1)
            with m.If(last_col):
                m.d.sync += cc.eq(0)
                if B > 1:
                    m.d.sync += cb.eq(cb + 1)
                    with m.If(cb == B - 1):
                        m.d.sync += cr.eq(cr + 1)
                else:
                    m.d.sync += cr.eq(cr + 1)
            with m.Else():
                m.d.sync += cc.eq(cc + 1)
        return m
