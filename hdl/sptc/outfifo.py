"""The SpTC's output FIFO: a metadata column and one column per output lane.

Every column is a LUT RAM of ``out_fifo_depth`` entries written in the same
cycle: the metadata at ``write`` (the drain controller's), each lane's value
when its own copy of the shift decision (``lane_shift``), delayed by the lane's
``out_stages``, says the value leaves the lane; each lane column has its own
write pointer beside it. The FIFO is read into a free-running read register
(``rd_valid``, ``rd_meta``, ``rd_data``) that feeds the skid buffer, only while
fewer than ``out_skid_depth`` beats are in the read register and the skid
buffer (``taken``: a beat left it), so the skid buffer never refuses one.
The drain controller counts the entries as credits, so the FIFO never
overflows; a pop returns its credit (``credit``) a cycle later.

Why not ``amaranth.lib.fifo.SyncFIFO`` (measured): the same FIFO as one
``SyncFIFO`` of all columns (same cycles) built the SpTC small at 135.7 MHz at
the flow's seed, 62 endpoints failing 150 MHz (worst -0.70 ns): its write enable
(gated by ``w_rdy``, a compare of its level register) reaches every column's LUT
RAMs over 5 ns of routing, and its one read pointer every lane's read register.
Here the pointers, the empty flag and the pop have copies beside each group of
loads, and the credits make a ``w_rdy`` unnecessary (docs/timing.md).
"""
from __future__ import annotations

from amaranth import Assert, Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from golden.sptc import SpTCConfig

from ..common import bits_for
from ..fpga import replicas
from .drain import out_meta_width


class OutFIFO(wiring.Component):
    def __init__(self, cfg: SpTCConfig, *, formal: bool = False, formal_bug: str = ""):
        self.cfg = cfg
        self.formal, self.formal_bug = bool(formal), formal_bug
        n = cfg.drain_rows * cfg.cols
        extra = {"formal_pick": In(1)} if self.formal else {}
        super().__init__({**extra,
            "write": In(1), "wmeta": In(out_meta_width(cfg)),
            "lane_shift": In(1).array(n), "lane_data": In(32).array(n),
            "taken": In(1),
            "rd_valid": Out(1), "rd_meta": Out(out_meta_width(cfg)), "rd_data": Out(32).array(n),
            "credit": Out(1), "rd_valid_c": Out(1), "empty": Out(1),
        })
        self.formal_state = None

    def elaborate(self, platform):
        cfg = self.cfg
        n = cfg.drain_rows * cfg.cols
        FD, SK, NST = cfg.out_fifo_depth, cfg.out_skid_depth, cfg.out_stages
        OW = out_meta_width(cfg)
        fb = bits_for(FD)
        m = Module()
        DR = dict(reset_less=True)
        write = self.write
        rd_v = Signal()               # a beat in the read register
        pop = Signal()                # a beat leaves the FIFO (for the pointers, the read register)
        pop_b = Signal()              # the same from its own flag copies (occupancy, fin)
        # rd_v's copies for the WAIT -> IDLE decode and the credit count
        rd_v_pe, rd_v_crd = replicas(m, platform, pop, 2, "rd_v_c")
        m.d.comb += [self.credit.eq(rd_v_crd), self.rd_valid_c.eq(rd_v_pe)]
        wp = Signal(fb + 1); rp = Signal(fb + 1)
        wp_n = Signal(fb + 1)
        # wp + 1 and rp + 1 as registers stepped with their pointers
        wp_inc = Signal(fb + 1, init=1)
        m.d.comb += wp_n.eq(Mux(write, wp_inc, wp))
        m.d.sync += wp_inc.eq(Mux(write, wp_inc + 1, wp_inc))
        m.d.sync += wp.eq(wp_n)
        fin = Signal(range(SK + 1))   # beats in the read register and the skid buffer
        fin_n = fin + pop_b - self.taken
        fin_ok = replicas(m, platform, fin_n < SK, 2, "fin_ok", init=1)
        empty = Signal(); empty_b = Signal()
        m.d.sync += [fin.eq(fin_n), rd_v.eq(pop)]
        m.d.comb += [pop.eq(~empty & fin_ok[0]), pop_b.eq(~empty_b & fin_ok[1]),
                     self.rd_valid.eq(rd_v)]
        rp_n = Signal(fb + 1)
        rp_inc = Signal(fb + 1, init=1)
        m.d.comb += rp_n.eq(Mux(pop, rp_inc, rp))
        m.d.sync += rp_inc.eq(Mux(pop, rp_inc + 1, rp_inc))
        # the occupancy as a thermometer code (occ[i]: more than i entries); the
        # empty flag's copies from its next value equal wp == rp in every cycle
        occ = Signal(FD, name="ofifo_occ")
        occ_n = Signal(FD)
        m.d.comb += occ_n.eq(Mux(write & ~pop_b, Cat(1, occ[:-1]),
                                 Mux(pop_b & ~write, Cat(occ[1:], 0), occ)))
        m.d.sync += [rp.eq(rp_n), occ.eq(occ_n)]
        ofe = replicas(m, platform, ~occ_n[0], 3, "ofifo_empty", init=1)
        m.d.comb += [empty.eq(ofe[0]), empty_b.eq(ofe[1]), self.empty.eq(ofe[2])]
        # the read pointer: a copy per lane column and one for the metadata
        rp_q = replicas(m, platform, rp_n, n + 1, "orp")
        mfifo = m.submodules.ofifo_meta = Memory(shape=OW, depth=FD, init=[])
        mwp, mrp = mfifo.write_port(), mfifo.read_port(domain="comb")
        m.d.comb += [mwp.addr.eq(wp[:fb]), mwp.data.eq(self.wmeta), mwp.en.eq(write),
                     mrp.addr.eq(rp_q[n][:fb])]
        rd_meta = Signal(OW, **DR)
        m.d.sync += rd_meta.eq(mrp.data)
        m.d.comb += self.rd_meta.eq(rd_meta)
        lanes = []
        for i in range(n):
            # the lane's valid bits (its copy of the shift decision, delayed as
            # its value), its column written at its own pointer, its read register
            lv = Signal(NST, name=f"ov_{i}")
            lwp = Signal(fb, name=f"owp_{i}")
            m.d.sync += lv.eq(Cat(self.lane_shift[i], lv[:-1]))
            with m.If(lv[-1]):
                m.d.sync += lwp.eq(lwp + 1)
            lf = m.submodules[f"ofifo_{i}"] = Memory(shape=32, depth=FD, init=[])
            lfw, lfr = lf.write_port(), lf.read_port(domain="comb")
            m.d.comb += [lfw.addr.eq(lwp), lfw.data.eq(self.lane_data[i]), lfw.en.eq(lv[-1]),
                         lfr.addr.eq(rp_q[i][:fb])]
            rd_q = Signal(32, name=f"ord_{i}", **DR)
            m.d.sync += rd_q.eq(lfr.data)
            m.d.comb += self.rd_data[i].eq(rd_q)
            lanes.append((lf, lv, lwp, self.lane_data[i], rd_q))
        if self.formal:
            def A(test, msg):
                m.d.comb += Assert(test, f"sptc: {msg}")
            A(wp_inc == (wp + 1)[:len(wp)], "wp_inc != wp + 1")
            A(rp_inc == (rp + 1)[:len(rp)], "rp_inc != rp + 1")
            for k, q in enumerate(rp_q):
                A(q == rp, f"read pointer copy {k} != rp")
            for k, q in enumerate(ofe):
                A(q == (wp == rp), f"output FIFO empty flag {k} != (wp == rp)")
            A(occ[0] == (wp != rp), "output FIFO occupancy != (wp != rp)")
            held = sum(occ[i] for i in range(FD))
            for i in range(FD - 1):
                A(occ[i] | ~occ[i + 1], "output FIFO occupancy not a thermometer code")
            A(held == (wp - rp)[:len(wp)], "output FIFO occupancy != wp - rp")
            A((rd_v_pe == rd_v) & (rd_v_crd == rd_v), "rd_v copies != rd_v")
            for k, q in enumerate(fin_ok):
                A(q == (fin < SK), f"fin_ok copy {k} != (fin < OUT_SKID_DEPTH)")
            for i, (_, lv, lwp, _, _) in enumerate(lanes):
                A(lwp == wp[:fb], f"lane {i} write pointer != wp")
            self.formal_state = {"held": held, "fin": fin, "rd_v": rd_v, "lanes": lanes}
            _formal_data(m, A, self, FD=FD, fb=fb, write=write, mfifo=mfifo, mwp=mwp, wp=wp,
                         rp=rp, pop=pop, held=held, rd_v=rd_v, rd_meta=rd_meta, lanes=lanes)
        return m


def _formal_data(m, A, fifo, *, FD, fb, write, mfifo, mwp, wp, rp, pop, held, rd_v, rd_meta,
                 lanes):
    """Formal only: the FIFO's data (no loss, no duplication, order kept).

    A free input (``formal_pick``) picks one write; its beat (metadata and every
    lane's value) is recorded, and ``pos`` counts the beats ahead of it (the
    writes before it not yet popped): the pop that finds it at ``pos == 0`` must
    put exactly that beat into the read register. Any write may be the one
    picked, so the n-th beat read is the n-th beat written, with its value.
    What makes it inductive: the lanes' write enables and pointers equal the
    metadata column's (asserted by the SpTC top and above), and the entry at
    ``rp + pos`` of every column holds the tracked beat (read through a
    formal-only read port). ``formal_bug="drop"`` plants a bug: the metadata
    column loses every write into entry 0."""
    if fifo.formal_bug == "drop":
        m.d.comb += mwp.en.eq(write & (wp[:fb] != 0))
    cnt = Signal(range(FD + 1), name="fchk_count")    # writes - pops, counted here
    armed = Signal(name="fchk_armed")    # the tracked beat is in the FIFO
    used = Signal(name="fchk_used")      # a beat was picked
    out = Signal(name="fchk_out")        # it was popped last cycle
    pos = Signal(fb, name="fchk_pos")    # beats ahead of it in the FIFO
    v_meta = Signal(len(fifo.wmeta), name="fchk_meta")
    v_lane = [Signal(32, name=f"fchk_lane{i}") for i in range(len(lanes))]
    m.d.sync += [cnt.eq(cnt + write - pop), out.eq(armed & pop & (pos == 0))]
    with m.If(armed & pop):
        with m.If(pos == 0):
            m.d.sync += armed.eq(0)
        with m.Else():
            m.d.sync += pos.eq(pos - 1)
    with m.If(write & fifo.formal_pick & ~used):
        m.d.sync += [armed.eq(1), used.eq(1), pos.eq(cnt - pop), v_meta.eq(fifo.wmeta)]
        m.d.sync += [v.eq(ln[3]) for v, ln in zip(v_lane, lanes)]
    A(cnt == held, "output FIFO: beats written - read != occupancy")
    A(~(armed | out) | used, "output FIFO: tracked beat never picked")
    A(~(armed & out), "output FIFO: tracked beat both held and read")
    A(~armed | (pos < cnt), "output FIFO: tracked beat lost")
    at = (rp + pos)[:fb]
    rds = [mfifo.read_port(domain="comb")] + [ln[0].read_port(domain="comb") for ln in lanes]
    m.d.comb += [r.addr.eq(at) for r in rds]
    A(~armed | (rds[0].data == v_meta), "output FIFO: tracked entry's metadata changed")
    for i, (r, v) in enumerate(zip(rds[1:], v_lane)):
        A(~armed | (r.data == v), f"output FIFO: tracked entry's lane {i} changed")
    A(~out | rd_v, "output FIFO: tracked beat popped, read register empty")
    A(~out | (rd_meta == v_meta), "output FIFO: read metadata != tracked beat's")
    for i, (ln, v) in enumerate(zip(lanes, v_lane)):
        A(~out | (ln[4] == v), f"output FIFO: read lane {i} != tracked beat's")
    A(~out | fifo.rd_valid, "output FIFO: tracked beat not offered to the skid buffer")
