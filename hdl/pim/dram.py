"""HBM3 pseudo-channel model: bank bundles with open-row state and word storage.

The Logic-PIM unit talks to it through its command bus (the TSV interface): one
command per cycle, ``cmd_kind`` in ACT/PRE/RD/WR/REF (codes in golden.pim).
Storage is one ``lib.memory.Memory`` of ``cfg.words`` words of ``bundle_bits``;
word address = ``(row * bundles + bundle) * cols + col`` (golden.pim address map),
i.e. ``Cat(col, bundle, row)`` because bundles and cols are powers of two.

Reads: the array is read in the RD cycle and the word comes out ``tCL`` cycles
later (``rvalid``), so a later WR to the same address cannot change it. Writes
land in the WR cycle (the write data is on ``wdata`` with the command).

The model does not enforce timing (the controller must, and the bench's
independent checker verifies it); it does check bank *state*: ACT to an open
bundle, PRE/RD/WR to a closed one or REF with any bundle open raises the sticky
``fault`` output.
"""
from __future__ import annotations

from amaranth import Cat, Const, Module, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from golden.pim import CMD_ACT, CMD_PRE, CMD_RD, CMD_REF, CMD_WR, PIMConfig

from ..common import bits_for, log2


class PseudoChannel(wiring.Component):
    def __init__(self, cfg: PIMConfig):
        self.cfg = cfg
        super().__init__({
            "cmd_valid": In(1), "cmd_kind": In(3), "cmd_bundle": In(bits_for(cfg.bundles)),
            "cmd_row": In(bits_for(cfg.rows)), "cmd_col": In(bits_for(cfg.cols)),
            "wdata": In(cfg.bundle_bits),
            "rdata": Out(cfg.bundle_bits), "rvalid": Out(1), "fault": Out(1),
        })

    def elaborate(self, platform):
        cfg = self.cfg
        m = Module()
        B = cfg.bundles
        mem = m.submodules.array = memory.Memory(shape=cfg.bundle_bits, depth=cfg.words, init=[])
        wp = mem.write_port()
        rp = mem.read_port()

        is_open = Signal(B)
        orow = [Signal(bits_for(cfg.rows), name=f"open_row{b}") for b in range(B)]
        b = self.cmd_bundle if B > 1 else Const(0, 1)
        cur_open = is_open.bit_select(b, 1) if B > 1 else is_open[0]
        cur_row = Signal(bits_for(cfg.rows))
        with m.Switch(b):
            for i in range(B):
                with m.Case(i):
                    m.d.comb += cur_row.eq(orow[i])
        addr = Signal(range(cfg.words))
        m.d.comb += addr.eq(Cat(self.cmd_col[:log2(cfg.cols)], b[:log2(B)], cur_row))

        v, k = self.cmd_valid, self.cmd_kind
        act, pre = v & (k == CMD_ACT), v & (k == CMD_PRE)
        rd, wr, ref = v & (k == CMD_RD), v & (k == CMD_WR), v & (k == CMD_REF)

        with m.If(act):
            for i in range(B):
                with m.If(b == i):
                    m.d.sync += [is_open[i].eq(1), orow[i].eq(self.cmd_row)]
        with m.If(pre):
            for i in range(B):
                with m.If(b == i):
                    m.d.sync += is_open[i].eq(0)

        bad = ((act & cur_open) | (act & (self.cmd_row >= cfg.rows)) | (pre & ~cur_open)
               | ((rd | wr) & ~cur_open) | (ref & (is_open != 0)))
        with m.If(bad):
            m.d.sync += self.fault.eq(1)

        m.d.comb += [wp.addr.eq(addr), wp.data.eq(self.wdata), wp.en.eq(wr & cur_open),
                     rp.addr.eq(addr), rp.en.eq(rd)]
        # data leaves the array the cycle after RD; tCL - 1 more register stages
        data, valid = rp.data, Signal()
        m.d.sync += valid.eq(rd)
        for i in range(cfg.timing.tCL - 1):
            d2, v2 = Signal(cfg.bundle_bits, name=f"rd_data{i}"), Signal(name=f"rd_valid{i}")
            m.d.sync += [d2.eq(data), v2.eq(valid)]
            data, valid = d2, v2
        m.d.comb += [self.rdata.eq(data), self.rvalid.eq(valid)]
        return m
