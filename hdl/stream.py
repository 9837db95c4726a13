"""Stream parts shared by every engine (built on ``amaranth.lib.stream``)."""
from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out


class SkidBuffer(wiring.Component):
    """A registered stream stage with full throughput and no combinational ready path.

    ``i.ready`` comes from a register, so chaining stages never builds a long
    ready chain across the design (that chain is what limits Fmax on FPGAs).
    Two entries: the output register and a skid register that catches the one
    beat accepted in the cycle the output stalls.

    ``ready_next`` is the value ``i.ready`` takes in the next cycle: a producer
    whose ready fans out widely registers its own copies of it
    (``hdl.fpga.replicas(..., init=1)``), each equal to ``i.ready`` every cycle.
    """

    def __init__(self, shape):
        self._shape = shape
        super().__init__({"i": In(stream.Signature(shape)), "o": Out(stream.Signature(shape)),
                          "ready_next": Out(1)})

    def elaborate(self, platform):
        m = Module()
        skid = Signal(self._shape)
        skid_valid = Signal()
        sv_next = Signal()
        m.d.comb += [self.i.ready.eq(~skid_valid), self.ready_next.eq(~sv_next)]
        m.d.comb += sv_next.eq(skid_valid)
        m.d.sync += skid_valid.eq(sv_next)
        with m.If(self.o.ready | ~self.o.valid):
            m.d.comb += sv_next.eq(0)
            with m.If(skid_valid):
                m.d.sync += [self.o.payload.eq(skid), self.o.valid.eq(1)]
            with m.Else():
                m.d.sync += [self.o.payload.eq(self.i.payload), self.o.valid.eq(self.i.valid)]
        with m.Elif(self.i.valid & self.i.ready):
            m.d.comb += sv_next.eq(1)
            m.d.sync += skid.eq(self.i.payload)
        return m
