"""The softmax unit: rows of int32 scores in, Q0.15 probabilities out, bit-exact
with :func:`golden.softmax.softmax` (docs/attention.md has the contract).

Streams (``amaranth.lib.stream``): ``i`` carries ``{score: signed(32), last: 1}``,
one score a beat, ``last`` on a row's final beat; ``o`` carries ``{prob:
unsigned(16), last: 1}``, one probability per score in the same order, ``last``
on the row's final one. ``mult`` (16 bits) and ``shift`` (6 bits, 1..47) are the
score scale of :func:`golden.softmax.scale_config`; they must hold while rows are
in the unit.

Three stages, each on its own row and its own buffer of ``max_len`` words (the
buffers rotate: a row stays in one buffer from its first score to its last
probability), each pipelined at one element a cycle:

* ``IN``: store the scores, track the maximum; a complete row waits (``i.ready``
  low) until ``EXP`` is free;
* ``EXP``: read each score, ``t`` = scaled distance to the maximum (stage 1), the
  exp table read (stage 2), ``e`` rounded-shifted, written back over the score and
  summed (stage 3); then 2 cycles for the reciprocal (the leading one of the sum,
  the table read); the result waits until ``OUT`` is free;
* ``OUT``: read each ``e``, ``p = (e * R + 2**k) >> (k + 1)``, into a 4-entry FIFO
  that drives ``o``; reads wait while the FIFO has no room for them.

A stage hands its row on in the cycle the next stage finishes its own, so with
``i.valid`` and ``o.ready`` held high the cycles are those of
:func:`golden.softmax.unit_schedule` (one row alone: ``3 n + 8`` from its first
score taken to its last probability taken; rows of ``n`` back to back: one every
``n + 6`` cycles once the pipe is full).

A row longer than ``max_len`` is consumed to its ``last`` beat and dropped (no
output) and the sticky ``error`` output goes high until reset; later rows run
normally. ``max_len`` outside 1..MAX_ROW is a ValueError at build.
"""
from __future__ import annotations

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.softmax import (E_FRAC, EXP_TABLE, MAX_ROW, P_FRAC, RECIP_BITS, RECIP_TABLE,
                            T_CUT, T_FRAC)

from ..common import round_const

IN_LAYOUT = data.StructLayout({"score": signed(32), "last": 1})
OUT_LAYOUT = data.StructLayout({"prob": unsigned(P_FRAC + 1), "last": 1})
FIFO_DEPTH = 4
BUFFERS = 3


class Softmax(wiring.Component):
    def __init__(self, max_len: int):
        if isinstance(max_len, bool) or not isinstance(max_len, int) \
                or not 1 <= max_len <= MAX_ROW:
            raise ValueError(f"max_len: {max_len!r} must be an integer in 1..{MAX_ROW} "
                             "(the sum of a longer row could overflow int32)")
        self.max_len = max_len
        super().__init__({
            "i": In(stream.Signature(IN_LAYOUT)),
            "o": Out(stream.Signature(OUT_LAYOUT)),
            "mult": In(16), "shift": In(6),
            "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        N = self.max_len
        nxt = lambda b: Mux(b == BUFFERS - 1, 0, b + 1)
        bufs = [memory.Memory(shape=32, depth=N, init=[]) for _ in range(BUFFERS)]
        for k, b in enumerate(bufs):
            m.submodules[f"buf{k}"] = b
        wps = [b.write_port() for b in bufs]
        rps = [b.read_port() for b in bufs]
        etab = m.submodules.exp_table = memory.Memory(
            shape=E_FRAC + 1, depth=1 << T_FRAC, init=[int(x) for x in EXP_TABLE])
        rtab = m.submodules.recip_table = memory.Memory(
            shape=16, depth=1 << RECIP_BITS, init=[int(x) for x in RECIP_TABLE])
        erp, rrp = etab.read_port(), rtab.read_port()
        q = m.submodules.fifo = fifo.SyncFIFO(width=OUT_LAYOUT.size, depth=FIFO_DEPTH)
        m.d.comb += [self.o.valid.eq(q.r_rdy), self.o.payload.as_value().eq(q.r_data),
                     q.r_en.eq(self.o.ready)]
        s_w = (N << E_FRAC).bit_length()

        # ---- IN: the scores of one row into buffer b_in ------------------------------
        b_in = Signal(range(BUFFERS))
        cnt = Signal(range(N + 1))         # scores stored
        ovf = Signal()                     # this row is longer than N
        in_full = Signal()                 # a complete row waits for EXP
        n_in = Signal(range(N + 1))
        mx_in = Signal(signed(32))
        in_we = Signal()
        m.d.comb += self.i.ready.eq(~in_full)
        with m.If(self.i.valid & ~in_full):
            sc = self.i.payload.score
            m.d.comb += in_we.eq(cnt != N)
            with m.If((cnt == 0) | (sc > mx_in)):
                m.d.sync += mx_in.eq(sc)
            with m.If(cnt == N):
                m.d.sync += ovf.eq(1)
            with m.Else():
                m.d.sync += cnt.eq(cnt + 1)
            with m.If(self.i.payload.last):
                m.d.sync += [cnt.eq(0), ovf.eq(0)]
                with m.If(ovf | (cnt == N)):
                    m.d.sync += self.error.eq(1)
                with m.Else():
                    m.d.sync += [n_in.eq(cnt + 1), in_full.eq(1)]

        # ---- EXP: e over buffer b_e, the sum, the reciprocal ------------------------
        e_busy = Signal()
        e_full = Signal()                  # R ready, waits for OUT
        b_e = Signal(range(BUFFERS))
        n_e = Signal(range(N + 1))
        mx_e = Signal(signed(32))
        j_e = Signal(range(N + 1))
        S = Signal(s_w)
        R = Signal(16)
        rnd_k = Signal(s_w)                # 1 << k
        sh_k = Signal(range(s_w + 1))      # k + 1
        phase = Signal(2)                  # 0 run, 1 leading one, 2 table read, 3 hold
        v1, v2, v3 = Signal(), Signal(), Signal()
        j1, j2, j3 = (Signal(range(N), name=f"j{k}") for k in (1, 2, 3))
        l1, l2, l3 = Signal(), Signal(), Signal()
        t2 = Signal(range(T_CUT + 1))
        i3 = Signal(4)
        z3 = Signal()
        e_rdata = Signal(32)
        m.d.comb += e_rdata.eq(Array(rp.data for rp in rps)[b_e])
        issue_e = e_busy & (phase == 0) & (j_e != n_e)
        m.d.sync += [v1.eq(issue_e), j1.eq(j_e), l1.eq(j_e == n_e - 1)]
        with m.If(issue_e):
            m.d.sync += j_e.eq(j_e + 1)
        # stage 1: the read score -> t
        d = Signal(32)
        prod = Signal(49)
        t = Signal(49)
        m.d.comb += [d.eq((mx_e - e_rdata.as_signed())[:32]),
                     prod.eq(d * self.mult + round_const(self.shift, 48)),
                     t.eq(prod >> self.shift)]
        m.d.sync += [v2.eq(v1), j2.eq(j1), l2.eq(l1), t2.eq(Mux(t >= T_CUT, T_CUT, t))]
        # stage 2: the exp table read
        m.d.comb += erp.addr.eq(t2[:T_FRAC])
        m.d.sync += [v3.eq(v2), j3.eq(j2), l3.eq(l2),
                     i3.eq(t2[T_FRAC:T_FRAC + 4]), z3.eq(t2 == T_CUT)]
        # stage 3: e, written back over the score, summed
        e = Signal(E_FRAC + 1)
        half = (Const(1, 17) << i3) >> 1
        m.d.comb += e.eq(Mux(z3, 0, (erp.data + half) >> i3))
        with m.If(v3):
            m.d.sync += S.eq(S + e)
            with m.If(l3):
                m.d.sync += phase.eq(1)
        # the reciprocal: S >= 2**15 (the maximum's e); k = its leading one
        sh_idx = Signal(range(s_w))
        m.d.comb += sh_idx.eq(E_FRAC - RECIP_BITS)
        with m.If(phase == 1):
            m.d.sync += [rnd_k.eq(1 << E_FRAC), sh_k.eq(E_FRAC + 1), phase.eq(2)]
            for b in range(E_FRAC + 1, s_w):
                with m.If(S[b]):
                    m.d.comb += sh_idx.eq(b - RECIP_BITS)
                    m.d.sync += [rnd_k.eq(1 << b), sh_k.eq(b + 1)]
        m.d.comb += rrp.addr.eq((S >> sh_idx)[:RECIP_BITS])
        with m.If(phase == 2):
            m.d.sync += [R.eq(rrp.data), phase.eq(3), e_full.eq(1)]

        # ---- OUT: probabilities from buffer b_o into the FIFO -----------------------
        o_busy = Signal()
        b_o = Signal(range(BUFFERS))
        n_o = Signal(range(N + 1))
        j_o = Signal(range(N + 1))
        R_o = Signal(16)
        rnd_o = Signal(s_w)
        sh_o = Signal(range(s_w + 1))
        vo, lo = Signal(), Signal()
        o_rdata = Signal(32)
        m.d.comb += o_rdata.eq(Array(rp.data for rp in rps)[b_o])
        issue_o = o_busy & (j_o != n_o) & (q.level + vo < FIFO_DEPTH)
        m.d.sync += [vo.eq(issue_o), lo.eq(j_o == n_o - 1)]
        with m.If(issue_o):
            m.d.sync += j_o.eq(j_o + 1)
        p = Signal(P_FRAC + 1)
        m.d.comb += [p.eq((o_rdata[:E_FRAC + 1] * R_o + rnd_o) >> sh_o),
                     q.w_data.eq(Cat(p, lo)), q.w_en.eq(vo)]
        o_fin = vo & lo

        # ---- hand-offs: EXP -> OUT, then IN -> EXP (later statements win) -----------
        with m.If(o_fin):
            m.d.sync += o_busy.eq(0)
        eo_go = e_full & (~o_busy | o_fin)
        with m.If(eo_go):
            m.d.sync += [o_busy.eq(1), b_o.eq(b_e), n_o.eq(n_e), j_o.eq(0), R_o.eq(R),
                         rnd_o.eq(rnd_k), sh_o.eq(sh_k), e_busy.eq(0), e_full.eq(0)]
        ie_go = in_full & (~e_busy | eo_go)
        with m.If(ie_go):
            m.d.sync += [e_busy.eq(1), phase.eq(0), b_e.eq(b_in), n_e.eq(n_in),
                         mx_e.eq(mx_in), j_e.eq(0), S.eq(0), in_full.eq(0),
                         b_in.eq(nxt(b_in))]

        # ---- buffer ports: EXP owns b_e while busy, IN writes b_in, OUT reads b_o ---
        for k in range(BUFFERS):
            e_owns = e_busy & (b_e == k)
            m.d.comb += [
                wps[k].addr.eq(Mux(e_owns, j3, cnt)),
                wps[k].data.eq(Mux(e_owns, e, self.i.payload.score.as_unsigned())),
                wps[k].en.eq(Mux(e_owns, v3, in_we & (b_in == k))),
                rps[k].addr.eq(Mux(e_owns, j_e, j_o)),
            ]
        return m
