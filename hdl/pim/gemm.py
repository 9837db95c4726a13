"""The GEMM module on the logic die: int8 MAC array, int32 accumulators, output stage.

Each cycle it multiplies one weight word (``elems`` int8 lanes, from the weight
FIFO fed by the bank bundles) by the matching word of one buffered token and
adds the lane sum into that token's int32 accumulator. A weight word is used
for ``t`` consecutive cycles (token 0..t-1), then popped; after the ``kw``-th
word of a weight row the ``t`` accumulators are final and leave, in token
order, through the output stage (int32 / int8 saturate / requantize, the
golden.numerics contract). Pipeline, from the issue cycle c (stage S0):

  S0 c    : pick (word, token j, col); token-buffer read; pop the word after token t-1
  S1 c+1  : elems int8 x int8 products (registered)
  S2 c+2  : lane sum (registered)
  S3 c+3  : acc[j] = (first col ? 0 : acc[j]) + sum
  S4 c+4  : output mode -> output FIFO write; ``done`` with the last result

Output back-pressure: ``reserved`` counts results issued but not yet taken by
the output stream; a final beat issues only while it is below ``out_depth``,
so the output FIFO can never overflow and a stalled consumer stalls the array.
"""
from __future__ import annotations

from amaranth import Array, Cat, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from golden.pim import PIMConfig

from ..common import log2, tree_sum
from ..outstage import OutputStage


def kw_stride(cfg: PIMConfig) -> int:
    return 1 << log2(cfg.max_k_words)


class GEMMEngine(wiring.Component):
    def __init__(self, cfg: PIMConfig):
        self.cfg = cfg
        W = cfg.elems
        super().__init__({
            "start": In(1), "n": In(16), "kw": In(12), "t": In(8),
            "w_data": In(cfg.bundle_bits), "w_rdy": In(1), "w_pop": Out(1),
            "buf_addr": Out(range(cfg.max_tokens * kw_stride(cfg))), "buf_data": In(cfg.bundle_bits),
            "mode": In(2), "mult": In(16), "shift": In(5),
            "out_value": Out(signed(32)), "out_last": Out(1), "out_we": Out(1),
            "out_taken": In(1),
            "reserved_nz": Out(1), "active": Out(1), "done": Out(1),
        })
        self._W = W

    def elaborate(self, platform):
        cfg, W = self.cfg, self._W
        m = Module()
        lk = log2(cfg.max_k_words)

        active = Signal()
        j = Signal(8)
        c = Signal(12)
        r = Signal(16)
        n_r, kw_r, t_r = Signal(16), Signal(12), Signal(8)
        reserved = Signal(range(cfg.out_depth + 1))
        m.d.comb += [self.reserved_nz.eq(reserved != 0), self.active.eq(active)]

        with m.If(self.start):
            m.d.sync += [active.eq(1), j.eq(0), c.eq(0), r.eq(0),
                         n_r.eq(self.n), kw_r.eq(self.kw), t_r.eq(self.t)]

        final = c == kw_r - 1
        last_tok = j == t_r - 1
        go = Signal()
        m.d.comb += go.eq(active & self.w_rdy & (~final | (reserved < cfg.out_depth)))
        m.d.comb += [self.buf_addr.eq(Cat(c[:lk], j) if lk else j),
                     self.w_pop.eq(go & last_tok)]
        with m.If(go):
            with m.If(last_tok):
                m.d.sync += j.eq(0)
                with m.If(final):
                    m.d.sync += [c.eq(0), r.eq(r + 1)]
                    with m.If(r == n_r - 1):
                        m.d.sync += active.eq(0)
                with m.Else():
                    m.d.sync += c.eq(c + 1)
            with m.Else():
                m.d.sync += j.eq(j + 1)
        m.d.sync += reserved.eq(reserved + (go & final) - self.out_taken)

        # S1
        s1_v, s1_first, s1_final, s1_last = Signal(), Signal(), Signal(), Signal()
        s1_j = Signal(8)
        s1_w = Signal(cfg.bundle_bits)
        m.d.sync += [s1_v.eq(go), s1_first.eq(c == 0), s1_final.eq(final),
                     s1_last.eq(final & last_tok & (r == n_r - 1)), s1_j.eq(j), s1_w.eq(self.w_data)]
        # S2: products
        s2_v, s2_first, s2_final, s2_last = Signal(), Signal(), Signal(), Signal()
        s2_j = Signal(8)
        prods = [Signal(signed(16), name=f"p{e}") for e in range(W)]
        m.d.sync += [s2_v.eq(s1_v), s2_first.eq(s1_first), s2_final.eq(s1_final),
                     s2_last.eq(s1_last), s2_j.eq(s1_j)]
        for e in range(W):
            wv = s1_w[8 * e:8 * e + 8].as_signed()
            xv = self.buf_data[8 * e:8 * e + 8].as_signed()
            m.d.sync += prods[e].eq(wv * xv)
        # S3: lane sum (balanced tree)
        s3_v, s3_first, s3_final, s3_last = Signal(), Signal(), Signal(), Signal()
        s3_j = Signal(8)
        s3_sum = Signal(signed(32))
        m.d.sync += [s3_v.eq(s2_v), s3_first.eq(s2_first), s3_final.eq(s2_final),
                     s3_last.eq(s2_last), s3_j.eq(s2_j), s3_sum.eq(tree_sum(prods))]
        # S3 -> accumulate
        acc = Array(Signal(signed(32), name=f"acc{i}") for i in range(cfg.max_tokens))
        acc_new = Signal(signed(32))
        m.d.comb += acc_new.eq(Mux(s3_first, 0, acc[s3_j]) + s3_sum)
        s4_v, s4_last = Signal(), Signal()
        s4_acc = Signal(signed(32))
        m.d.sync += [s4_v.eq(s3_v & s3_final), s4_last.eq(s3_last & s3_final)]
        with m.If(s3_v):
            m.d.sync += acc[s3_j].eq(acc_new)
            m.d.sync += s4_acc.eq(acc_new)
        # S4 -> output mode, FIFO write
        m.submodules.outstage = os_ = OutputStage(stages=0)
        m.d.comb += [os_.acc.eq(s4_acc), os_.mode.eq(self.mode), os_.mult.eq(self.mult),
                     os_.shift.eq(self.shift),
                     self.out_value.eq(os_.out), self.out_last.eq(s4_last), self.out_we.eq(s4_v),
                     self.done.eq(s4_v & s4_last)]
        return m
