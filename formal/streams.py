"""Harnesses for the stream buffers: the skid buffer (hdl/stream.py) and the
library FIFOs the engines instantiate (``amaranth.lib.fifo.SyncFIFOBuffered``).

Each harness keeps a reference queue beside the buffer (the beats taken in and
not yet given out, in order) and asserts, in every cycle:

* the output is the head of the reference queue whenever ``valid`` is high
  (no loss, no duplication, order kept: a lost beat shows the next one early, a
  duplicate shows a beat the queue already gave out),
* ``valid`` is high exactly when the queue holds a beat, ``ready`` exactly when
  it has room (so no beat is ever taken without room),
* the output stream rules (valid held until ready, payload stable while stalled).

The input producer and the consumer's ready are free (any behaviour; the
producer may drop ``valid`` at will: a buffer must not rely on the input rules).
"""
from __future__ import annotations

from amaranth import Assert, Const, Fragment, Module, Mux, Signal
from amaranth.lib import fifo, wiring
from amaranth.lib.wiring import In

from hdl.fpga import ECP5
from hdl.stream import SkidBuffer

from .rules import no_reset, stream_rules


class _Model:
    """A reference queue of ``depth`` entries (head at 0) stepped by push/pop."""

    def __init__(self, m: Module, width: int, depth: int, push, pop, data):
        self.q = [Signal(width, name=f"model{j}") for j in range(depth)]
        self.count = Signal(range(depth + 1), name="model_count")
        after_pop = [self.q[j + 1] if j + 1 < depth else Const(0, width) for j in range(depth)]
        at = Mux(pop, self.count - 1, self.count)            # where a push lands
        for j in range(depth):
            base = Mux(pop, after_pop[j], self.q[j])
            m.d.sync += self.q[j].eq(Mux(push & (at == j), data, base))
        m.d.sync += self.count.eq(self.count + push - pop)
        m.d.comb += Assert(self.count <= depth, "model: more beats held than entries")


class _Tracked:
    """One beat, picked by a free input when it is pushed, tracked through the
    queue: ``pos`` beats are ahead of it. Any beat may be the one picked, so
    "the tracked beat leaves in its place with its value" covers every beat
    (the usual cheaper form of a reference queue for a bounded proof)."""

    def __init__(self, m: Module, width: int, depth: int, push, pop, data, pick):
        self.count = Signal(range(depth + 1), name="model_count")
        self.armed = Signal(name="track_armed")
        self.used = Signal(name="track_used")
        self.pos = Signal(range(depth), name="track_pos")
        self.value = Signal(width, name="track_value")
        self.at_head = self.armed & (self.pos == 0)
        m.d.sync += self.count.eq(self.count + push - pop)
        m.d.comb += Assert(self.count <= depth, "model: more beats held than entries")
        with m.If(self.armed & pop):
            with m.If(self.pos == 0):
                m.d.sync += self.armed.eq(0)
            with m.Else():
                m.d.sync += self.pos.eq(self.pos - 1)
        with m.If(push & pick & ~self.used):
            m.d.sync += [self.armed.eq(1), self.used.eq(1), self.value.eq(data),
                         self.pos.eq(self.count - pop)]
        m.d.comb += Assert(~self.armed | (self.pos < self.count), "model: tracked beat lost")


class SkidHarness(wiring.Component):
    """The skid buffer with its state invariants (``formal=True``) and a reference
    queue; the entries the buffer holds are asserted equal to the queue's, which
    makes the properties inductive (``mode prove``)."""

    def __init__(self, width: int = 8, depth: int = 2, ecp5: bool = False, bug: str = ""):
        self.width, self.depth, self.ecp5, self.bug = width, depth, ecp5, bug
        super().__init__({"i_valid": In(1), "i_payload": In(width), "o_ready": In(1),
                          "glitch": In(1)})

    def elaborate(self, platform):
        m = Module()
        no_reset(m)
        W, N = self.width, self.depth
        dut = SkidBuffer(W, N, formal=True)
        # elaborated here so the harness can read the state it records
        m.submodules.dut = Fragment.get(dut, ECP5 if self.ecp5 else None)
        st = dut.formal_state
        # planted bugs (each must make the proof fail): the buffer pops a beat the
        # consumer did not take (loss), keeps one it took (duplication), or drops
        # valid while stalled (stream rule)
        dut_ready = {"loss": self.o_ready | self.glitch,
                     "dup": self.o_ready & ~self.glitch}.get(self.bug, self.o_ready)
        m.d.comb += [dut.i.valid.eq(self.i_valid), dut.i.payload.eq(self.i_payload),
                     dut.o.ready.eq(dut_ready)]
        o_valid, o_payload = dut.o.valid, dut.o.payload
        if self.bug == "valid":
            o_valid = o_valid & ~self.glitch
        push = dut.i.valid & dut.i.ready
        pop = o_valid & self.o_ready
        model = _Model(m, W, N, push, pop, dut.i.payload)
        m.d.comb += [
            Assert(dut.o.valid == (model.count != 0), "skid: valid != a beat held"),
            Assert(dut.i.ready == (model.count != N), "skid: ready != room"),
            Assert(~o_valid | (o_payload == model.q[0]), "skid: output != oldest beat"),
        ]
        # the buffer holds as many beats as the queue, and the held entries, from
        # rp on, are the queue's (the inductive strengthening)
        occ = st["occ"]
        m.d.comb += Assert(sum(occ[k] for k in range(N)) == model.count,
                           "skid: entries held != beats held")
        for r in range(N):
            with m.If(st["rp"] == r):
                for j in range(N):
                    m.d.comb += Assert((model.count <= j) |
                                       (st["entries"][(r + j) % N] == model.q[j]),
                                       "skid: a held entry != the reference queue")
        stream_rules(m, o_valid, self.o_ready, o_payload, "skid.o")
        return m


class FifoHarness(wiring.Component):
    """``SyncFIFOBuffered(width, depth)`` against a reference queue (bounded: its
    storage is a memory the harness cannot see, so no inductive strengthening).
    Its data path is the same for every bit, so a narrow ``width`` stands for the
    instance's (data independence)."""

    def __init__(self, width: int, depth: int, bug: str = ""):
        self.width, self.depth, self.bug = width, depth, bug
        super().__init__({"w_en": In(1), "w_data": In(width), "r_en": In(1), "pick": In(1)})

    def elaborate(self, platform):
        m = Module()
        no_reset(m)
        W, N = self.width, self.depth
        m.submodules.dut = dut = fifo.SyncFIFOBuffered(width=W, depth=N)
        m.d.comb += [dut.w_en.eq(self.w_en), dut.w_data.eq(self.w_data), dut.r_en.eq(self.r_en)]
        r_rdy, r_data = dut.r_rdy, dut.r_data
        if self.bug == "drop":         # planted: a write into the last free entry is lost
            m.d.comb += dut.w_en.eq(self.w_en & (dut.level != N - 1))
        push = self.w_en & dut.w_rdy
        pop = r_rdy & self.r_en
        model = _Tracked(m, W, N, push, pop, self.w_data, self.pick)
        # a beat held at the end of a cycle is offered from the next cycle on (the
        # read latency of the buffered FIFO), and room for one more beat is there
        # whenever at most depth - 2 are held (at depth - 1 it may lag a cycle)
        kept = Signal()
        m.d.sync += kept.eq(model.count - pop != 0)
        m.d.comb += [
            Assert(~r_rdy | (model.count != 0), "fifo: r_rdy without a beat held"),
            Assert(r_rdy | ~kept, "fifo: a held beat not offered"),
            Assert(~dut.w_rdy | (model.count != N), "fifo: w_rdy when full"),
            Assert(dut.w_rdy | (model.count >= N - 1), "fifo: no w_rdy with room"),
            Assert(dut.level == model.count, "fifo: level != beats held"),
            Assert(~(r_rdy & model.at_head) | (r_data == model.value),
                   "fifo: the tracked beat out of place or changed"),
        ]
        stream_rules(m, r_rdy, self.r_en, r_data, "fifo.r")
        return m
