"""The attention engine of the Logic-PIM: score buffers, softmax feed, value pass, output.

``ATTN`` runs in three phases (docs/attention.md, "ATTN on the Logic-PIM"); the GEMM
engine does the score pass, this component the rest. Two score buffers: an ATTN's
scores go to one while the previous ATTN's value pass reads the other, so the
softmax and the score pass of consecutive ATTNs overlap. Each phase takes its
parameters (``job_bank``, ``job_g``, ``job_n``) at its start pulse.

* score pass (``s_begin`` with the bank; clears its ``p_ready`` bit): the GEMM
  engine's int32 results (one per K row and query head, in (position, head)
  order) arrive on ``s_we``/``s_data`` and fill the buffer at consecutive
  addresses: score (head h, position l) at ``l * G + h``;
* softmax (``sm_start``; held in a one-entry queue while the previous softmax job
  runs, started in the cycle its last probability is written): the buffer is
  read row by row (head h: addresses h, h + G, ...) into the softmax unit
  (:class:`hdl.attn.softmax.Softmax`, its input fed from the buffer's read
  register, one score a cycle while it is ready, the first 2 cycles after the
  start); each probability overwrites its score; the bank's ``p_ready`` bit
  rises after the last one;
* value pass (``pv_start``): V words from the weight FIFO, each used for ``G``
  cycles (head j = 0..G-1), then popped (``w_pop``). Pipeline from the issue cycle x:
  x reads p[l][j]; x+1 multiplies p by the ``elems`` int8 lanes and reads the
  accumulator word (j, c) (transparent for the write below); x+2 adds (0 for
  position 0) and writes it back;
* output: 3 cycles after the last value-pass issue, each (head, word, lane) in order:
  x reads the accumulator word, x+1 selects the lane, x+2 the output stage
  (``hdl.outstage.OutputStage``, the unit's SET_OUT mode) -> ``out_we``. ``reserved``
  counts values issued and not yet taken (``out_taken``); a value issues only while
  it is below ``out_depth``, so the output FIFO never overflows. ``done`` = every
  value issued and taken.

The softmax's input comes from a RAM read register and its output goes straight
into the buffer's write port; the products and the lane select are registered.
"""
from __future__ import annotations

from amaranth import Array, Cat, Module, Mux, Signal, signed
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from golden.pim import PIMConfig

from ..attn.softmax import Softmax
from ..common import log2
from ..outstage import OutputStage


class AttnEngine(wiring.Component):
    def __init__(self, cfg: PIMConfig):
        if cfg.attn_heads == 0:
            raise ValueError("attn_heads: 0, the build has no attention engine")
        self.cfg = cfg
        super().__init__({
            "job_bank": In(1), "job_g": In(8), "job_n": In(16), "kw": In(12),
            "sm_mult": In(16), "sm_shift": In(6),
            "mode": In(2), "mult": In(16), "shift": In(5),
            "s_begin": In(1), "s_we": In(1), "s_data": In(signed(32)),
            "sm_start": In(1), "p_ready": Out(2),
            "pv_start": In(1),
            "w_data": In(cfg.bundle_bits), "w_rdy": In(1), "w_pop": Out(1),
            "out_value": Out(signed(32)), "out_last": Out(1), "out_we": Out(1),
            "out_taken": In(1), "reserved_nz": Out(1), "done": Out(1),
        })

    def elaborate(self, platform):
        cfg = self.cfg
        m = Module()
        E = cfg.elems
        depth = cfg.attn_heads * cfg.attn_len
        AW = max(1, (depth - 1).bit_length())
        lkw, lh = log2(cfg.attn_kw), log2(cfg.attn_heads)

        bufs = [memory.Memory(shape=32, depth=depth, init=[]) for _ in range(2)]
        m.submodules.sbuf0, m.submodules.sbuf1 = bufs
        bws = [b.write_port() for b in bufs]
        brs = [b.read_port() for b in bufs]
        m.submodules.softmax = sm = Softmax(cfg.attn_len)
        m.d.comb += [sm.mult.eq(self.sm_mult), sm.shift.eq(self.sm_shift)]
        acc = m.submodules.acc = memory.Memory(shape=32 * E, depth=cfg.attn_heads << lkw, init=[])
        aw = acc.write_port()
        ar = acc.read_port(transparent_for=(aw,))
        # ---- score pass: results in arrival order into bank s_bank
        sa = Signal(AW)
        s_bank = Signal()
        p_ready = Signal(2)
        m.d.comb += self.p_ready.eq(p_ready)
        with m.If(self.s_begin):
            m.d.sync += [sa.eq(0), s_bank.eq(self.job_bank)]
        with m.Elif(self.s_we):
            m.d.sync += sa.eq(sa + 1)

        # ---- softmax job: (bank, G, n) from the start pulse or the queue
        sm_active, q_valid = Signal(), Signal()
        sm_bank, q_bank = Signal(), Signal()
        sm_g, sm_n, q_g, q_n = Signal(8), Signal(16), Signal(8), Signal(16)
        sm_done = Signal()
        go_sm = Signal()
        m.d.comb += go_sm.eq((self.sm_start | q_valid) & (~sm_active | sm_done))
        g1 = sm_g - 1
        with m.If(self.sm_start & ~go_sm):
            m.d.sync += [q_valid.eq(1), q_bank.eq(self.job_bank), q_g.eq(self.job_g),
                         q_n.eq(self.job_n)]
        with m.If(sm_done):
            m.d.sync += sm_active.eq(0)
        with m.If(go_sm):
            m.d.sync += [sm_active.eq(1), q_valid.eq(0),
                         sm_bank.eq(Mux(q_valid, q_bank, self.job_bank)),
                         sm_g.eq(Mux(q_valid, q_g, self.job_g)),
                         sm_n.eq(Mux(q_valid, q_n, self.job_n))]
        for k in range(2):
            with m.If(self.s_begin & (self.job_bank == k)):
                m.d.sync += p_ready[k].eq(0)
            with m.Elif(sm_done & (sm_bank == k)):
                m.d.sync += p_ready[k].eq(1)

        # ---- softmax feed: load element (fh, fl) at address fa into the read register
        feeding, more, fvalid, flast = Signal(), Signal(), Signal(), Signal()
        fh, fl, fa = Signal(8), Signal(16), Signal(AW)
        take = fvalid & sm.i.ready
        load = feeding & more & (~fvalid | take)
        f_data = Array(br.data for br in brs)[sm_bank]
        m.d.comb += [sm.i.valid.eq(fvalid), sm.i.payload.score.eq(f_data.as_signed()),
                     sm.i.payload.last.eq(flast)]
        with m.If(go_sm):
            m.d.sync += [feeding.eq(1), more.eq(1), fvalid.eq(0), fh.eq(0), fl.eq(0), fa.eq(0)]
        with m.Elif(load):
            m.d.sync += [fvalid.eq(1), flast.eq(fl == sm_n - 1)]
            with m.If(fl == sm_n - 1):
                m.d.sync += [fl.eq(0), fh.eq(fh + 1), fa.eq(fh + 1)]
                with m.If(fh == g1):
                    m.d.sync += [more.eq(0), feeding.eq(0)]
            with m.Else():
                m.d.sync += [fl.eq(fl + 1), fa.eq(fa + sm_g)]
        with m.Elif(take):
            m.d.sync += fvalid.eq(0)

        # ---- probabilities over their scores
        ph, pa = Signal(8), Signal(AW)
        p_we = sm.o.valid
        m.d.comb += [sm.o.ready.eq(1),
                     sm_done.eq(p_we & sm.o.payload.last & (ph == g1))]
        with m.If(go_sm):
            m.d.sync += [ph.eq(0), pa.eq(0)]
        with m.Elif(p_we):
            with m.If(sm.o.payload.last):
                m.d.sync += [ph.eq(ph + 1), pa.eq(ph + 1)]
            with m.Else():
                m.d.sync += pa.eq(pa + sm_g)
        for k, bw in enumerate(bws):
            s_k = self.s_we & (s_bank == k)
            m.d.comb += [bw.en.eq(s_k | (p_we & (sm_bank == k))),
                         bw.addr.eq(Mux(s_k, sa, pa)),
                         bw.data.eq(Mux(s_k, self.s_data.as_unsigned(), sm.o.payload.prob))]

        # ---- value pass issue (the GEMM engine's loop: head j, word c, position r)
        active = Signal()
        j, c, r = Signal(8), Signal(12), Signal(16)
        pbase = Signal(AW)
        pv_bank, pv_g, pv_n = Signal(), Signal(8), Signal(16)
        with m.If(self.pv_start):
            m.d.sync += [active.eq(1), j.eq(0), c.eq(0), r.eq(0), pbase.eq(0),
                         pv_bank.eq(self.job_bank), pv_g.eq(self.job_g), pv_n.eq(self.job_n)]
        pg1 = pv_g - 1
        last_tok = j == pg1
        final = c == self.kw - 1
        go = Signal()
        m.d.comb += [go.eq(active & self.w_rdy), self.w_pop.eq(go & last_tok)]
        with m.If(go):
            with m.If(last_tok):
                m.d.sync += j.eq(0)
                with m.If(final):
                    m.d.sync += [c.eq(0), r.eq(r + 1), pbase.eq(pbase + pv_g)]
                    with m.If(r == pv_n - 1):
                        m.d.sync += active.eq(0)
                with m.Else():
                    m.d.sync += c.eq(c + 1)
            with m.Else():
                m.d.sync += j.eq(j + 1)
        for k, br in enumerate(brs):
            pv_k = active & (pv_bank == k)
            m.d.comb += [br.addr.eq(Mux(pv_k, pbase + j, fa)),
                         br.en.eq(Mux(pv_k, go, load & (sm_bank == k)))]
        # S1: products, accumulator read
        s1_v, s1_first = Signal(), Signal()
        s1_a = Signal(lh + lkw if lh + lkw else 1)
        s1_w = Signal(cfg.bundle_bits)
        m.d.sync += [s1_v.eq(go), s1_first.eq(r == 0), s1_w.eq(self.w_data),
                     s1_a.eq(Cat(c[:lkw], j[:lh]) if lh + lkw else 0)]
        s2_v, s2_first = Signal(), Signal()
        s2_a = Signal.like(s1_a)
        prods = [Signal(signed(25), name=f"pv{e}") for e in range(E)]
        pval = Array(br.data for br in brs)[pv_bank][:16]
        m.d.sync += [s2_v.eq(s1_v), s2_first.eq(s1_first), s2_a.eq(s1_a)]
        for e in range(E):
            m.d.sync += prods[e].eq(pval * s1_w[8 * e:8 * e + 8].as_signed())
        # S2: accumulate
        new = Signal(32 * E)
        for e in range(E):
            old = ar.data[32 * e:32 * e + 32].as_signed()
            m.d.comb += new[32 * e:32 * e + 32].eq(Mux(s2_first, 0, old) + prods[e])
        m.d.comb += [aw.addr.eq(s2_a), aw.data.eq(new), aw.en.eq(s2_v)]

        # ---- output: every (head, word, lane), after the value pass's pipe has drained
        draining = Signal()
        dh, dc, de = Signal(8), Signal(12), Signal(range(E))
        reserved = Signal(range(cfg.out_depth + 1))
        with m.If(go & last_tok & final & (r == pv_n - 1)):
            m.d.sync += [draining.eq(1), dh.eq(0), dc.eq(0), de.eq(0)]
        d_go = Signal()
        d_last = (de == E - 1) & (dc == self.kw - 1) & (dh == pg1)
        m.d.comb += d_go.eq(draining & ~s1_v & ~s2_v & (reserved < cfg.out_depth))
        with m.If(d_go):
            with m.If(de == E - 1):
                m.d.sync += de.eq(0)
                with m.If(dc == self.kw - 1):
                    m.d.sync += [dc.eq(0), dh.eq(dh + 1)]
                    with m.If(dh == pg1):
                        m.d.sync += draining.eq(0)
                with m.Else():
                    m.d.sync += dc.eq(dc + 1)
            with m.Else():
                m.d.sync += de.eq(de + 1)
        m.d.comb += ar.addr.eq(Mux(s1_v, s1_a, Cat(dc[:lkw], dh[:lh]) if lh + lkw else 0))
        m.d.sync += reserved.eq(reserved + d_go - self.out_taken)
        d1_v, d1_last = Signal(), Signal()
        d1_e = Signal.like(de)
        m.d.sync += [d1_v.eq(d_go), d1_last.eq(d_last), d1_e.eq(de)]
        d2_v, d2_last = Signal(), Signal()
        d2_val = Signal(signed(32))
        lanes = Array(ar.data[32 * e:32 * e + 32].as_signed() for e in range(E))
        m.d.sync += [d2_v.eq(d1_v), d2_last.eq(d1_last), d2_val.eq(lanes[d1_e])]
        m.submodules.outstage = os_ = OutputStage(stages=0)
        m.d.comb += [os_.acc.eq(d2_val), os_.mode.eq(self.mode), os_.mult.eq(self.mult),
                     os_.shift.eq(self.shift),
                     self.out_value.eq(os_.out), self.out_last.eq(d2_last), self.out_we.eq(d2_v),
                     self.reserved_nz.eq(reserved != 0),
                     self.done.eq(~active & ~draining & ~s1_v & ~s2_v & ~d1_v & ~d2_v
                                  & (reserved == 0))]
        return m
