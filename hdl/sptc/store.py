"""The SpTC's accumulator store, its router and the drain bank.

Router: each PE row's flush lands on one store row, the identity or (Samoyeds)
``(r // N) * M + idx``; the crossbar holds only the connections some
``cfg.samoyeds_nm`` pair can use. Two route stages: each flush register is
copied once per part of the store (``fl2``), then each store lane registers
the OR of the copies that land on it (``route``), under one-hot selects decoded
per store column when the flush registers load. The routed value is zero
unless a flush lands, so the store adds it every cycle.

Store and drain bank (``store_rows x cols`` each): the controller's decisions
(``ctl[c][s]``: copy, shift; copied once more per nibble of a lane here) copy
the store into the drain bank (emptying the store) or shift the drain bank up
by ``drain_rows`` rows; the top ``drain_rows`` rows (``out``) feed the output
lanes, and ``lane_shift[p][c]`` is lane (p, c)'s copy of the shift decision.
"""
from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from golden.sptc import SpTCConfig

from ..common import or_all
from ..fpga import replicas

G, W = 8, 4                   # a store lane's nibbles: each has its own select and control copy


class AccStore(wiring.Component):
    def __init__(self, cfg: SpTCConfig):
        self.cfg = cfg
        R, C, S, P = cfg.rows, cfg.cols, cfg.store_rows, cfg.drain_rows
        super().__init__({
            "flush": In(signed(cfg.acc_bits)).array(R, C), "flush_valid": In(1),
            "idx": In(4).array(R), "job_sam": In(1), "job_nm": In(len(cfg.samoyeds_nm)),
            "ctl": In(2).array(C, S),
            "out": Out(signed(32)).array(P, C), "lane_shift": Out(1).array(P, C),
        })
        self.formal_state = None

    def elaborate(self, platform):
        cfg = self.cfg
        R, C, S, P = cfg.rows, cfg.cols, cfg.store_rows, cfg.drain_rows
        m = Module()
        DR = dict(reset_less=True)
        # the selects: decoded per store column from its own copies of the indices,
        # of "a block's last beat" and of the job's (N, M)
        s4_idx_c = [replicas(m, platform, self.idx[r], C, f"s4_idx{r}_c", **DR) for r in range(R)]
        s4_fl_c = replicas(m, platform, self.flush_valid, C, "s4_fl_c")
        jm_c = replicas(m, platform, Cat(self.job_sam, self.job_nm), C, "jobnm_c")

        def cond(r, c, t):            # column c's condition for a term
            if t is None:
                return ~jm_c[c][0]
            k, i = t
            return jm_c[c][1 + k] & (s4_idx_c[r][c] == i)
        route = {}
        for s_ in range(S):
            # (row, None) for the identity, (row, (k, i)) for Samoyeds' (N, M) k at index i
            terms = []
            if s_ < R:
                terms.append((s_, None))
            for k, (nn, mm) in enumerate(cfg.samoyeds_nm):
                b, i = divmod(s_, mm)
                if b * nn >= R:
                    continue
                for r in range(b * nn, b * nn + nn):
                    terms.append((r, (k, i)))
            # one select per PE row that can land here (the modes' conditions OR-ed),
            # a pulse in the cycle the flush registers load; a copy per nibble
            rows_here = sorted({r for r, _ in terms})
            by_row = [[t for rr, t in terms if rr == r] for r in rows_here]
            route[s_] = []
            for c in range(C):
                sels = Signal(len(rows_here), name=f"f_route{s_}_{c}")
                m.d.sync += sels.eq(Mux(s4_fl_c[c],
                                        Cat(or_all([cond(r, c, t) for t in ts])
                                            for r, ts in zip(rows_here, by_row)), 0))
                copies = replicas(m, platform, sels, G, f"froute{s_}_{c}_")
                route[s_].append([[(r, copies[k][j]) for j, r in enumerate(rows_here)]
                                  for k in range(G)])
        # the first route stage: each flush register copied once per quarter of the
        # store (per half with 2-3 store rows), sign-extended to 32 bits
        NH = 4 if S >= 4 else (2 if S >= 2 else 1)
        fl2 = [[replicas(m, platform, self.flush[r][c], NH, f"fl2_{r}_{c}", **DR)
                for c in range(C)] for r in range(R)]
        for r in range(R):
            for c in range(C):
                for h in range(NH):
                    x = Signal(signed(32), name=f"fl2x_{r}_{c}_{h}")
                    m.d.comb += x.eq(fl2[r][c][h].as_signed())
                    fl2[r][c][h] = x
        t3 = [[replicas(m, platform, self.ctl[c][s_], G, f"sctl3s{s_}c{c}") for c in range(C)]
              for s_ in range(S)]
        store = [[Signal(signed(32), name=f"store_{s_}_{c}") for c in range(C)] for s_ in range(S)]
        drain = [[Signal(signed(32), name=f"drain_{s_}_{c}", **DR) for c in range(C)]
                 for s_ in range(S)]
        for s_ in range(S):
            for c in range(C):
                # the second route stage, registered beside the store lane
                routed = Signal(signed(32), name=f"route_{s_}_{c}")
                for k in range(G):
                    b = slice(k * W, (k + 1) * W)
                    contrib = 0
                    for r, sel in route[s_][c][k]:
                        contrib = contrib | Mux(sel, fl2[r][c][s_ * NH // S][b], 0)
                    m.d.sync += routed[b].eq(contrib)
                # the store adds the routed value every cycle; a copy empties it
                kept = Signal(signed(32), name=f"kept_{s_}_{c}")
                below = drain[s_ + P][c] if s_ + P < S else Const(0, 32)
                for k in range(G):
                    l_copy, l_shift = t3[s_][c][k]
                    b = slice(k * W, (k + 1) * W)
                    st, dr = store[s_][c][b], drain[s_][c][b]
                    m.d.comb += kept[b].eq(Mux(l_copy, 0, st))
                    with m.If(l_copy):
                        m.d.sync += dr.eq(st)
                    with m.Elif(l_shift):
                        m.d.sync += dr.eq(below[b])
                m.d.sync += store[s_][c].eq(kept + routed)
        for p in range(P):
            for c in range(C):
                m.d.comb += [self.out[p][c].eq(drain[p][c]),
                             self.lane_shift[p][c].eq(t3[p][c][0][1])]
        self.formal_state = {"t3": t3}
        return m
