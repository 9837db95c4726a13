"""The SpTC's store/drain controller.

The store, the drain bank and the output lanes only execute: this controller
decides each cycle whether the store's finished tile is copied into the free
drain bank (``copy``) and whether the drain bank shifts ``drain_rows`` rows out
(``shift``: only with a credit, an output FIFO entry free). It takes each tile's
last flush at s3 (``tile_end_s2`` registered), ``ctrl_lag`` cycles before the
sums reach the store, and its decisions reach the lanes through ``ctrl_lag``
register levels: the decision register, a copy per store column (``ctl1``), a
copy per store lane (``ctl[c][s]``, 2 bits: copy, shift), and the store's copy
per nibble. It follows each drain beat through the output pipeline (``ov``) with
its metadata (row, token tile, column mask, row mask), which it writes into the
output FIFO's metadata column (``write``, ``meta``) in the cycle the lanes write
theirs. A popped FIFO entry returns its credit (``credit``) a cycle later.
"""
from __future__ import annotations

from amaranth import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from golden.sptc import SpTCConfig

from ..common import bits_for
from ..fpga import replicas
from .pe import rows_width

LAG_LEVELS = 4      # the decision tree: decision, per column, per lane (here), per nibble (store)


def out_meta_width(cfg: SpTCConfig) -> int:
    """Output metadata: row (16), token tile (16), column mask, row mask."""
    return 32 + cfg.cols + cfg.drain_rows


class DrainControl(wiring.Component):
    def __init__(self, cfg: SpTCConfig, *, formal: bool = False):
        if cfg.ctrl_lag != LAG_LEVELS:
            raise ValueError(f"ctrl_lag: the decision tree has {LAG_LEVELS} levels, "
                             f"not {cfg.ctrl_lag}")
        self.cfg = cfg
        self.formal = bool(formal)
        C, S = cfg.cols, cfg.store_rows
        super().__init__({
            "tile_end_s2": In(1), "meta": In(32 + C + rows_width(cfg)), "credit": In(1),
            "ctl": Out(2).array(C, S),
            "write": Out(1), "wmeta": Out(out_meta_width(cfg)),
            "store_full": Out(1), "drain_busy": Out(1), "out_busy": Out(1),
            "drain_done": Out(1),
        })
        self.formal_state = None

    def elaborate(self, platform):
        cfg = self.cfg
        C, S, P = cfg.cols, cfg.store_rows, cfg.drain_rows
        NB = rows_width(cfg)
        LAG, NST, FD = cfg.ctrl_lag, cfg.out_stages, cfg.out_fifo_depth
        OW = out_meta_width(cfg)
        m = Module()
        tile_end = replicas(m, platform, self.tile_end_s2, 1, "s3_tend")[0]
        a_tt, a_base, a_mask, a_n = (self.meta[:16], self.meta[16:32], self.meta[32:32 + C],
                                     self.meta[32 + C:])
        st_tt = Signal(16); st_base = Signal(16); st_mask = Signal(C); st_n = Signal(NB)
        dr_tt = Signal(16); dr_mask = Signal(C); dr_base = Signal(16)
        pb = bits_for(P) if P > 1 else 0
        dr_q = Signal(NB); dr_lastq = Signal(NB); dr_n = Signal(NB)
        crd = Signal(range(FD + 1))   # drain beats decided and not yet out of the FIFO
        crd_ok = Signal(init=1)       # crd < FD: a beat may leave the drain bank
        store_full, drain_busy, out_busy = Signal(), Signal(), Signal()
        m.d.comb += [self.store_full.eq(store_full), self.drain_busy.eq(drain_busy),
                     self.out_busy.eq(out_busy)]
        copy = store_full & ~drain_busy
        d_shift = drain_busy & crd_ok
        dr_at_last = Signal()         # equals dr_q == dr_lastq while draining
        drain_done = d_shift & dr_at_last
        m.d.comb += self.drain_done.eq(drain_done)
        m.d.sync += [store_full.eq(tile_end | (store_full & ~copy)),
                     drain_busy.eq(copy | (drain_busy & ~drain_done))]
        crd_n = crd + d_shift - self.credit
        m.d.sync += [crd.eq(crd_n), crd_ok.eq(crd_n < FD)]
        with m.If(tile_end):
            m.d.sync += [st_tt.eq(a_tt), st_base.eq(a_base), st_mask.eq(a_mask), st_n.eq(a_n)]
        st_lastq = (st_n - 1) >> pb     # the drain's last beat index
        with m.If(copy):
            m.d.sync += [dr_tt.eq(st_tt), dr_mask.eq(st_mask), dr_q.eq(0),
                         dr_base.eq(st_base), dr_n.eq(st_n), dr_lastq.eq(st_lastq),
                         dr_at_last.eq(st_lastq == 0)]
        with m.Elif(d_shift):
            m.d.sync += [dr_q.eq(dr_q + 1), dr_at_last.eq(dr_q + 1 == dr_lastq)]
        # the decision register and its first two levels of copies
        ops = Signal(2)
        m.d.sync += ops.eq(Cat(copy, d_shift))
        t1 = replicas(m, platform, ops, C, "sctl1")
        t2 = [replicas(m, platform, t1[c], S, f"sctl2c{c}") for c in range(C)]
        for c in range(C):
            m.d.comb += [self.ctl[c][s_].eq(t2[c][s_]) for s_ in range(S)]
        # the drain beats in flight (ov) and their metadata, LAG + NST cycles
        ov = Signal(LAG + NST)
        o_meta = [Signal(OW, name=f"om{k}_meta", reset_less=True) for k in range(LAG + NST)]
        m.d.sync += out_busy.eq(d_shift | (ov[:-1] != 0))     # equals ov != 0
        rmask = Signal(P)
        m.d.comb += [rmask[p].eq(((dr_q << pb) | p) < dr_n) for p in range(P)]
        m.d.sync += [ov.eq(Cat(d_shift, ov[:-1])),
                     o_meta[0].eq(Cat((dr_base + (dr_q << pb))[:16], dr_tt, dr_mask, rmask))]
        m.d.sync += [o_meta[k + 1].eq(o_meta[k]) for k in range(LAG + NST - 1)]
        m.d.comb += [self.write.eq(ov[-1]), self.wmeta.eq(o_meta[-1])]
        if self.formal:
            self.formal_state = {"ov": ov, "crd": crd, "crd_ok": crd_ok, "ops": ops,
                                 "t1": t1, "t2": t2, "dr_at_last": dr_at_last, "dr_q": dr_q,
                                 "dr_lastq": dr_lastq}
        return m
