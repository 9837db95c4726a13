"""Stream parts shared by every engine (built on ``amaranth.lib.stream``)."""
from __future__ import annotations

from amaranth import Array, Assert, Cat, Module, Mux, Signal, Value
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .fpga import is_ecp5, replicas


class SkidBuffer(wiring.Component):
    """A registered stream stage with full throughput and no combinational ready path.

    ``i.ready`` and ``o.valid`` come from registers, so chaining stages never
    builds a long ready chain across the design (that chain is what limits Fmax
    on FPGAs). ``depth`` entries (2 by default), written and read in turn (a
    small FIFO); ``o.payload`` is the entry the read pointer selects.

    Why not an output register plus a skid register: their load enables are
    ``o.ready`` and a function of it, each reaching every payload bit; on the
    FPGA that one consumer net was the SpTC's critical path. Here an entry loads
    whenever it is free (its value matters only once it is occupied, and it
    loaded in that very cycle), so its enable is its own occupancy register, and
    ``o.ready`` only reaches the pointer and occupancy logic. Elaborated for the
    ECP5, a wide payload gets one copy of the occupancy and read-pointer
    registers per 32 bits (``hdl.fpga.replicas`` of their next-state values),
    each stepping itself from ``i.valid``, ``o.ready`` and its own occupancy.

    ``formal=True`` (off by default; the Verilog of a default build does not
    change) adds ``Assert``s of the state invariants (``valid`` / ``ready`` equal
    "an entry held" / "an entry free", the held entries are the ones from ``rp``
    on, ``wp`` follows them, every copy equals ``occ``/``rp``) and records the
    state in ``formal_state`` for a harness (``formal/``).
    """

    def __init__(self, shape, depth: int = 2, *, formal: bool = False):
        if not (isinstance(depth, int) and depth >= 2):
            raise ValueError(f"depth: {depth!r} must be an integer >= 2")
        self._shape = shape
        self.depth = depth
        self.formal = bool(formal)
        self.formal_state = None
        super().__init__({"i": In(stream.Signature(shape)), "o": Out(stream.Signature(shape))})

    def elaborate(self, platform):
        m = Module()
        N = self.depth
        e = [Signal(self._shape, name=f"entry{k}") for k in range(N)]
        occ = Signal(N)           # entry k holds a beat not yet read
        wp = Signal(range(N)); rp = Signal(range(N))
        occ_n = Signal(N); wp_n = Signal(range(N)); rp_n = Signal(range(N))
        ready_next = Signal()
        push = self.i.valid & self.i.ready
        pop = self.o.valid & self.o.ready
        step = lambda p: Mux(p == N - 1, 0, p + 1)
        m.d.comb += [
            wp_n.eq(Mux(push, step(wp), wp)), rp_n.eq(Mux(pop, step(rp), rp)),
            ready_next.eq(occ_n != (1 << N) - 1),
        ]
        m.d.comb += [occ_n[k].eq((occ[k] & ~(pop & (rp == k))) | (push & (wp == k)))
                     for k in range(N)]
        ready = Signal(init=1); valid = Signal()
        m.d.sync += [occ.eq(occ_n), wp.eq(wp_n), rp.eq(rp_n),
                     ready.eq(ready_next), valid.eq(occ_n != 0)]
        m.d.comb += [self.i.ready.eq(ready), self.o.valid.eq(valid)]
        raw = [Value.cast(x) for x in e]
        raw_in, raw_out = Value.cast(self.i.payload), Value.cast(self.o.payload)
        width = len(raw_in)
        n = -(-width // 32) if is_ecp5(platform) and width > 32 else 1
        parts = [slice(32 * k, min(32 * (k + 1), width)) for k in range(n)] if n > 1 \
            else [slice(0, width)]
        if n > 1:
            # each copy steps itself (its own occupancy and pointer, the shared
            # push and pop): equal to occ/rp in every cycle, and its next-state
            # logic can sit beside it and its payload muxes (copies of one shared
            # next state sat between that logic and the muxes, 5 ns from the
            # muxes on the SpTC's output, a failing path into the pin shell)
            # The copy's own push and pop: its occupancy gives valid (any entry
            # held) and ready (not all held), so the consumer's ready and the
            # producer's valid reach each copy's logic directly (a shared pop
            # LUT in front of the copies, then a route to each: a failing path)
            copies = []
            for k in range(n):
                nxt = Signal(N + len(rp), name=f"ctl{k}_n")
                q = replicas(m, platform, nxt, 1, f"ctl{k}")[0]
                c_occ, c_rp = q[:N], q[N:]
                c_pop = self.o.ready & c_occ.any()
                c_push = self.i.valid & ~c_occ.all()
                m.d.comb += nxt.eq(Cat(
                    Cat((c_occ[j] & ~(c_pop & (c_rp == j))) | (c_push & (wp == j))
                        for j in range(N)),
                    Mux(c_pop, step(c_rp), c_rp)))
                copies.append(q)
        else:
            copies = [Cat(occ, rp)]
        for q, b in zip(copies, parts):
            q_occ, q_rp = q[:N], q[N:]
            for k in range(N):
                with m.If(~q_occ[k]):
                    m.d.sync += raw[k][b].eq(raw_in[b])
            if N == 2:
                m.d.comb += raw_out[b].eq(Mux(q_rp[0], raw[1][b], raw[0][b]))
            else:
                # rp never passes N - 1; the indices past it select the last entry
                # (an Array reads 0 there: a decode of those indices onto every
                # payload bit, which the ECP5 flow mapped to the consumer
                # registers' synchronous resets)
                items = [x[b] for x in raw]
                items += [items[-1]] * ((1 << len(q_rp)) - N)
                m.d.comb += raw_out[b].eq(Array(items)[q_rp])
        if self.formal:
            self._assert_state(m, occ, wp, rp, copies, valid, ready)
            self.formal_state = {"entries": raw, "occ": occ, "rp": rp, "wp": wp}
        return m

    def _assert_state(self, m, occ, wp, rp, copies, valid, ready):
        """The invariants (formal builds only): k-induction proves them with a harness."""
        N = self.depth
        count = sum(occ[k] for k in range(N))
        m.d.comb += [Assert(valid == (occ != 0), "skid: valid != any entry held"),
                     Assert(ready == (occ != (1 << N) - 1), "skid: ready != an entry free"),
                     Assert(rp < N, "skid: rp out of range"), Assert(wp < N, "skid: wp out of range")]
        for r in range(N):
            with m.If(rp == r):
                m.d.comb += Assert(wp == Mux(count == N, r, (r + count) % N),
                                   "skid: wp != rp + entries held")
                for j in range(N):
                    m.d.comb += Assert(occ[(r + j) % N] == (count > j),
                                       "skid: held entries not contiguous from rp")
        for q in copies:
            m.d.comb += Assert(q == Cat(occ, rp), "skid: a control copy differs from occ/rp")
