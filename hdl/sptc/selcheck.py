"""The SEL stream's checks: every entry below ``n_tokens``, entries strictly increasing.

Pipelined behind the SEL port: stage 1 registers each beat's entries, which lanes
carry an entry (``lanes``) and whether it is the job's first beat; stage 2 a copy
of each entry per compare it feeds (range, own order, the next lane's order) and
the previous beat's last entry; stage 3 registers each compare raw and whether it
counts beside it. ``bad`` (one bit per compare, range and order per lane) rises
three cycles after the beat; ``clear`` drops the beats in flight.
``n_tok`` is one register per lane (each compare reads its own copy).
"""
from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..fpga import replicas


class SelCheck(wiring.Component):
    def __init__(self, lanes: int):
        self.lanes = L = lanes
        super().__init__({
            "take": In(1), "payload": In(16).array(L), "lanes_ok": In(L), "later": In(1),
            "n_tok": In(16).array(L), "clear": In(1),
            "bad": Out(2 * L),
        })

    def elaborate(self, platform):
        L = self.lanes
        m = Module()
        DR = dict(reset_less=True)
        v1, v = Signal(L, name="sc_v1"), Signal(L, name="sc_v")    # lanes carrying an entry
        p1 = [Signal(16, name=f"sc1_p{l}", **DR) for l in range(L)]
        t1 = Signal(name="sc_t1")                                 # a beat was taken
        last, prev = (Signal(16, name=f"sc_{k}", **DR) for k in ("last", "prev"))
        nz1, nz = Signal(name="sc1_nz", **DR), Signal(name="sc2_nz", **DR)   # not the first beat
        m.d.sync += [v1.eq(Mux(self.take & ~self.clear, self.lanes_ok, 0)),
                     v.eq(Mux(self.clear, 0, v1)),
                     t1.eq(self.take), nz1.eq(self.later), nz.eq(nz1)]
        with m.If(t1):
            m.d.sync += [last.eq(p1[L - 1]), prev.eq(last)]
        m.d.sync += [p1[l].eq(self.payload[l]) for l in range(L)]
        p = [replicas(m, platform, p1[l], 3 if l < L - 1 else 2, f"sc2_p{l}", **DR)
             for l in range(L)]
        cmp, qual = [], []
        for l in range(L):
            v_rng, v_ord = p[l][0], p[l][1]
            cmp += [v_rng >= self.n_tok[l], (v_ord <= p[l - 1][2]) if l else (v_ord <= prev)]
            qual += [v[l], v[l] & nz if l == 0 else v[l]]
        raw = Signal(2 * L, name="sel_raw", **DR)
        ok = Signal(2 * L, name="sel_ok")
        m.d.sync += [raw.eq(Cat(cmp)), ok.eq(Mux(self.clear, 0, Cat(qual)))]
        m.d.comb += self.bad.eq(raw & ok)
        return m
