"""The SpTC's operand buffers: the activation copies and the SEL banks.

Activation buffer: one copy per PE column (every column reads a different,
SEL-gathered token in the same cycle); a LOAD writes all copies at once. Each
copy is a :class:`hdl.fpga.RegReadRAM`: ``act[c]`` is the word at ``gw[c]`` (the
K group) of token ``tok[c]`` two cycles after the address (the s1b stage).

SEL banks: entry j lives in bank j % cols at address j // cols, so one read at
the token-tile index yields the tile's ``cols`` tokens. A SEL beat (``sel_lanes``
entries) writes ``sel_lanes`` consecutive banks at one address. ``tok[c]`` holds
the current token tile's entry of bank c in a register: it loads the bank's
transparent read at ``tt + 2`` when ``tok_load[c]`` (a tile's last beat issues:
the read runs one tile ahead, so the next tile's tokens are there the cycle
after), or the SEL beat's entry being written when ``tok_first[c]`` (the first
tile's tokens, written at address 0).
"""
from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from golden.sptc import SpTCConfig

from ..common import bits_for
from ..fpga import RegReadRAM


def tt_width(cfg: SpTCConfig) -> int:
    """Width of the token / token-tile counter ``tt`` (LOAD: tokens, RUN: token tiles)."""
    return max(bits_for(cfg.max_tokens + 1), bits_for(-(-cfg.max_sel // cfg.cols) + 2)) + 1


class OperandBuffers(wiring.Component):
    def __init__(self, cfg: SpTCConfig):
        self.cfg = cfg
        C, L = cfg.cols, cfg.sel_lanes
        kw_bits, tok_bits = bits_for(cfg.max_kw), bits_for(cfg.max_tokens)
        super().__init__({
            "act_wr_addr": In(kw_bits + tok_bits), "act_wr_data": In(32), "act_wr_en": In(1),
            "sel_wr_addr": In(bits_for(cfg.max_sel // C)), "sel_wr_data": In(16).array(L),
            "sel_wr_en": In(C), "tok_first": In(C), "tok_load": In(C),
            "tt": In(tt_width(cfg)), "gw": In(kw_bits).array(C),
            "act": Out(32).array(C),
        })

    def elaborate(self, platform):
        cfg = self.cfg
        C, L = cfg.cols, cfg.sel_lanes
        tok_bits = bits_for(cfg.max_tokens)
        m = Module()
        for c in range(C):
            tt_rd = Signal(len(self.tt) + 1, name=f"tt_rd{c}")
            m.d.comb += tt_rd.eq(Mux(self.tok_load[c], self.tt + 2, self.tt + 1))
            mem = m.submodules[f"sel_buf{c}"] = Memory(shape=16, depth=cfg.max_sel // C, init=[])
            wp = mem.write_port()
            rp = mem.read_port(transparent_for=(wp,))
            m.d.comb += [wp.addr.eq(self.sel_wr_addr), wp.data.eq(self.sel_wr_data[c % L]),
                         wp.en.eq(self.sel_wr_en[c]), rp.addr.eq(tt_rd)]
            tok = Signal(16, name=f"tok{c}")
            with m.If(self.tok_load[c]):
                m.d.sync += tok.eq(rp.data)
            with m.Elif(self.tok_first[c]):
                m.d.sync += tok.eq(wp.data)
            ram = m.submodules[f"act_buf{c}"] = RegReadRAM(32, cfg.max_tokens * cfg.max_kw)
            m.d.comb += [ram.wr_addr.eq(self.act_wr_addr), ram.wr_data.eq(self.act_wr_data),
                         ram.wr_en.eq(self.act_wr_en),
                         ram.rd_addr.eq(Cat(self.gw[c], tok[:tok_bits])),
                         self.act[c].eq(ram.rd_data)]
        return m
