"""Stream parts shared by every engine (built on ``amaranth.lib.stream``)."""
from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, Value
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .fpga import is_ecp5, replicas


class SkidBuffer(wiring.Component):
    """A registered stream stage with full throughput and no combinational ready path.

    ``i.ready`` and ``o.valid`` come from registers, so chaining stages never
    builds a long ready chain across the design (that chain is what limits Fmax
    on FPGAs). Two entries, written alternately and read alternately (a
    two-entry FIFO); ``o.payload`` is the entry the read pointer selects.

    ``ready_next`` is the value ``i.ready`` takes in the next cycle: a producer
    whose ready fans out widely registers its own copies of it
    (``hdl.fpga.replicas(..., init=1)``), each equal to ``i.ready`` every cycle.

    Why not an output register plus a skid register: their load enables are
    ``o.ready`` and a function of it, each reaching every payload bit; on the
    FPGA that one consumer net was the SpTC's critical path. Here an entry loads
    whenever it is free (its value matters only once it is occupied, and it
    loaded in that very cycle), so its enable is its own occupancy register, and
    ``o.ready`` only reaches the pointer and occupancy logic. Elaborated for the
    ECP5, a wide payload gets one copy of the occupancy and read-pointer
    registers per 32 bits (``hdl.fpga.replicas`` of their next-state values).
    """

    def __init__(self, shape):
        self._shape = shape
        super().__init__({"i": In(stream.Signature(shape)), "o": Out(stream.Signature(shape)),
                          "ready_next": Out(1)})

    def elaborate(self, platform):
        m = Module()
        e = [Signal(self._shape, name=f"entry{k}") for k in range(2)]
        occ = Signal(2)           # entry k holds a beat not yet read
        wp = Signal(); rp = Signal()
        occ_n = Signal(2); wp_n = Signal(); rp_n = Signal()
        push = self.i.valid & self.i.ready
        pop = self.o.valid & self.o.ready
        m.d.comb += [
            wp_n.eq(wp ^ push), rp_n.eq(rp ^ pop),
            occ_n[0].eq((occ[0] & ~(pop & ~rp)) | (push & ~wp)),
            occ_n[1].eq((occ[1] & ~(pop & rp)) | (push & wp)),
            self.ready_next.eq(occ_n != 0b11),
        ]
        ready = Signal(init=1); valid = Signal()
        m.d.sync += [occ.eq(occ_n), wp.eq(wp_n), rp.eq(rp_n),
                     ready.eq(self.ready_next), valid.eq(occ_n != 0)]
        m.d.comb += [self.i.ready.eq(ready), self.o.valid.eq(valid)]
        raw = [Value.cast(x) for x in e]
        raw_in, raw_out = Value.cast(self.i.payload), Value.cast(self.o.payload)
        width = len(raw_in)
        n = -(-width // 32) if is_ecp5(platform) and width > 32 else 1
        parts = [slice(32 * k, min(32 * (k + 1), width)) for k in range(n)] if n > 1 \
            else [slice(0, width)]
        if n > 1:
            copies = replicas(m, platform, Cat(occ_n, rp_n), n, "ctl")
        else:
            copies = [Cat(occ, rp)]
        for q, b in zip(copies, parts):
            for k in range(2):
                with m.If(~q[k]):
                    m.d.sync += raw[k][b].eq(raw_in[b])
            m.d.comb += raw_out[b].eq(Mux(q[2], raw[1][b], raw[0][b]))
        return m
