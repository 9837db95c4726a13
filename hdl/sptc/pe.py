"""The SpTC's PE array: ``rows x cols`` PEs, each 2 int8 MACs per beat.

PE (r, c) takes weight row r's lane of the beat (two int8 values and a 2:4
nibble) and column c's activation word (four int8), selects two of the four
activations with the nibble (dense: the fixed pair of the beat's half) and adds
both products into its accumulator; on a flush block's last beat the sum also
goes to its flush register. Register stages (``pe_stages`` = 7 with the issue
register s1): s1b (the activation words, from the buffers' output register),
s1c (each PE's copy of its operands), s1d (the selected activations), s2 (the
DSPs' input registers), s3 (the products), s4 (their sum); then the
accumulator. Nothing stalls: a stage without a valid beat adds zero.

The flags (first beat of a block, last beat of a block, last beat of a tile),
the tile metadata and the Samoyeds indices travel beside the data to s3, where
the store's router and the drain controller read them.
"""
from __future__ import annotations

from amaranth import Array, Cat, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from golden.sptc import DENSE_NIBBLES, SpTCConfig

from ..common import bits_for
from ..fpga import RegMul, replicas
from .config import weight_layout
from .control import meta_width


def rows_width(cfg: SpTCConfig) -> int:
    """Width of a tile's output-row count in the metadata."""
    return bits_for(cfg.store_rows + 1) + 1


class PEArray(wiring.Component):
    """In: the issue stage (``s1_*``), the activation words at s1b (``act``), job
    constants. Out: the flush registers (``flush[r][c]``, ``acc_bits`` signed), and
    at s3 ``valid``, ``flags`` (first, block's last, tile's last), ``meta`` (token
    tile, base row, mask, rows), ``idx`` (each row's Samoyeds index);
    ``inflight``: a beat in s1b .. s2; ``tile_end_s2``: a tile's last flush at s2."""

    def __init__(self, cfg: SpTCConfig):
        self.cfg = cfg
        R, C = cfg.rows, cfg.cols
        mw = meta_width(cfg) + rows_width(cfg)
        super().__init__({
            "s1_valid": In(1), "s1_first": In(1), "s1_blast": In(1), "s1_tlast": In(1),
            "s1_half": In(1), "s1_lanes": In(weight_layout(cfg)),
            "s1_meta": In(meta_width(cfg)), "s1_rows": In(17),
            "spr": In(bits_for(cfg.store_rows + 1) + 1), "job_dense": In(1),
            "act": In(32).array(C),
            "flush": Out(signed(cfg.acc_bits)).array(R, C),
            "valid": Out(1), "flags": Out(3), "meta": Out(mw), "idx": Out(4).array(R),
            "inflight": Out(1), "tile_end_s2": Out(1),
        })

    def elaborate(self, platform):
        cfg = self.cfg
        R, C, AB = cfg.rows, cfg.cols, cfg.acc_bits
        NB = rows_width(cfg)
        MW = meta_width(cfg) + NB
        DR = dict(reset_less=True)
        m = Module()
        stages = ("s1b", "s1c", "s1d", "s2", "s3")
        s1b_valid, s1c_valid, s1d_valid, s2_valid, s3_valid = (
            Signal(name=f"{n}_valid") for n in stages)
        s1b_flags, s1c_flags, s1d_flags, s2_flags, s3_flags = (
            Signal(3, name=f"{n}_flags", **DR) for n in stages)
        s1b_meta, s1c_meta, s1d_meta, s2_meta, s3_meta = (
            Signal(MW, name=f"{n}_meta", **DR) for n in stages)
        s1b_lanes = Signal(weight_layout(cfg), **DR)
        s1c_idx, s1d_idx, s2_idx, s3_idx = (
            [Signal(4, name=f"{n}_idx{r}", **DR) for r in range(R)] for n in stages[1:])
        s1_rows, spr = self.s1_rows, self.spr
        m.d.sync += [s1b_valid.eq(self.s1_valid), s1c_valid.eq(s1b_valid),
                     s1d_valid.eq(s1c_valid), s2_valid.eq(s1d_valid), s3_valid.eq(s2_valid),
                     s1b_flags.eq(Cat(self.s1_first, self.s1_blast, self.s1_tlast)),
                     s1c_flags.eq(s1b_flags), s1d_flags.eq(s1c_flags), s2_flags.eq(s1d_flags),
                     s3_flags.eq(s2_flags),
                     s1b_meta.eq(Cat(self.s1_meta, Mux(s1_rows < spr, s1_rows, spr)[:NB])),
                     s1c_meta.eq(s1b_meta), s1d_meta.eq(s1c_meta), s2_meta.eq(s1d_meta),
                     s3_meta.eq(s2_meta),
                     s1b_lanes.eq(self.s1_lanes)]
        for a, b in zip((s1c_idx, s1d_idx, s2_idx, s3_idx), ([s1b_lanes[r].idx for r in range(R)],
                                                               s1c_idx, s1d_idx, s2_idx)):
            m.d.sync += [a[r].eq(b[r]) for r in range(R)]
        m.d.comb += [self.valid.eq(s3_valid), self.flags.eq(s3_flags), self.meta.eq(s3_meta),
                     self.inflight.eq(s1b_valid | s1c_valid | s1d_valid | s2_valid),
                     self.tile_end_s2.eq(s2_valid & s2_flags[1] & s2_flags[2])]
        m.d.comb += [self.idx[r].eq(s3_idx[r]) for r in range(R)]
        # s1c: the column's activation word, one copy per PE of the column
        act_pe = [replicas(m, platform, self.act[c], R, f"s1c_act{c}", **DR) for c in range(C)]
        acc = [[Signal(signed(AB), name=f"acc_{r}_{c}", **DR) for c in range(C)] for r in range(R)]
        flush = [[Signal(signed(AB), name=f"flush_{r}_{c}", **DR) for c in range(C)]
                 for r in range(R)]
        # the select nibble per row at s1b (dense: the beat's half), per PE at s1c
        row_dense = replicas(m, platform, self.job_dense, R, "dense")
        # valid, first & valid, blast & valid: a copy per row at s3, per PE at s4.
        # The accumulator has no enable: the sum register is zero without a valid beat.
        row_s3 = replicas(m, platform, Cat(s2_valid, s2_valid & s2_flags[0],
                                           s2_valid & s2_flags[1]), R, "s3f")
        for r in range(R):
            nib_b = Signal(4, name=f"s1b_nib{r}", **DR)
            m.d.sync += nib_b.eq(Mux(row_dense[r],
                                     Mux(self.s1_half, DENSE_NIBBLES[1], DENSE_NIBBLES[0]),
                                     self.s1_lanes[r].nib))
            nibs = replicas(m, platform, nib_b, C, f"s1c_nib{r}", **DR)
            # the weights: per row at s1c, per PE at s1d
            w_row = Signal(16, name=f"s1c_w{r}", **DR)
            m.d.sync += w_row.eq(Cat(s1b_lanes[r].v0, s1b_lanes[r].v1))
            w_pe = replicas(m, platform, w_row, C, f"s1d_w{r}", **DR)
            pe_s4 = replicas(m, platform, row_s3[r][1:], C, f"s4c{r}")   # first, blast
            for c in range(C):
                lo, hi = nibs[c][:2], nibs[c][2:]
                a_w = act_pe[c][r]
                xs = Array(a_w[8 * i: 8 * i + 8].as_signed() for i in range(4))
                xa = Signal(signed(8), name=f"s1d_xa_{r}_{c}", **DR)
                xb = Signal(signed(8), name=f"s1d_xb_{r}_{c}", **DR)
                # s2 = the DSPs' input registers, s3 = their output registers
                mul0 = m.submodules[f"pe{r}_{c}_mul0"] = RegMul(signed(8), signed(8))
                mul1 = m.submodules[f"pe{r}_{c}_mul1"] = RegMul(signed(8), signed(8))
                ps = Signal(signed(17), name=f"s4_sum_{r}_{c}", **DR)
                nxt = Signal(signed(AB), name=f"accn_{r}_{c}")
                m.d.sync += [xa.eq(xs[lo]), xb.eq(xs[hi])]
                m.d.comb += [mul0.a.eq(w_pe[c][:8].as_signed()), mul0.b.eq(xa),
                             mul1.a.eq(w_pe[c][8:16].as_signed()), mul1.b.eq(xb),
                             nxt.eq(Mux(pe_s4[c][0], 0, acc[r][c]) + ps)]
                with m.If(row_s3[r][0]):
                    m.d.sync += ps.eq(mul0.p + mul1.p)
                with m.Else():
                    m.d.sync += ps.eq(0)
                m.d.sync += acc[r][c].eq(nxt)
                with m.If(pe_s4[c][1]):
                    m.d.sync += flush[r][c].eq(nxt)
                m.d.comb += self.flush[r][c].eq(flush[r][c])
        return m
