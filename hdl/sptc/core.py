"""Sparse Tensor Core: a PE array with dual-side structured sparsity (Samoyeds).

The top wires the components (docs/sptc.md lists them with their tests; the
dataflow and the cycle formula are in golden/sptc.py and docs/sptc.md):

  JobControl      job registers, CHECK, FSM, counters, issue stage, error bits
  OperandBuffers  activation copies (block RAM) and SEL banks (LUT RAM)
  PEArray         rows x cols PEs, 2 int8 MACs each per beat, flush registers
  AccStore        router, accumulator store and drain bank
  DrainControl    the store/drain decisions and the output metadata
  OutputStage     one output lane per drain row and column (hdl.outstage)
  OutFIFO         the output FIFO, its read register
  SkidBuffer      the ``res`` stream's skid buffer (hdl.stream)

One beat a cycle, nothing in the array stalls: the issue stage holds a tile's
first beat while two older tiles are in the unit.
"""
from __future__ import annotations

from amaranth import Assert, Cat, Fragment, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..fpga import replicas
from ..outstage import LANE_STAGES, OutputStage, requant_consts
from ..stream import SkidBuffer
from .buffers import OperandBuffers
from .config import SpTCConfig, result_layout, sel_layout, weight_layout
from .control import JobControl, control_ports
from .drain import DrainControl
from .outfifo import OutFIFO
from .pe import PEArray
from .store import AccStore

PE_STAGES, ROUTE_STAGES = 7, 2      # what PEArray and AccStore build


class SparseTensorCore(wiring.Component):
    """The Engine 1 top: streams ``w``, ``act``, ``sel`` in, ``res`` out, plus control/status.

    Control ports are sampled on the cycle ``start`` is high in idle; ``done``
    stays high until the next ``start`` or ``clear``; ``error`` bits are sticky
    until ``clear`` (or reset). ``cycles`` counts the cycles of the last job.
    ``cfg``: an :class:`hdl.sptc.config.SpTCConfig` (a ``golden.sptc.SpTCConfig``
    gets the default ``requant_hi_dsp``).

    ``formal=True`` (off by default: a default build's Verilog does not change)
    adds ``Assert``s of the invariants (register copies and flags against what
    they stand for), the output FIFO's data (a free input ``formal_pick`` picks
    the beat it tracks) and the skid buffer's own; ``formal/`` proves them.
    ``formal_bug="drop"`` plants a bug for the FIFO's data proof.
    """

    def __init__(self, cfg: SpTCConfig | None = None, *, formal: bool = False,
                 formal_bug: str = ""):
        cfg = SpTCConfig.of(cfg if cfg is not None else SpTCConfig())
        built = (PE_STAGES, ROUTE_STAGES, LANE_STAGES)
        if (cfg.pe_stages, cfg.route_stages, cfg.out_stages) != built:
            raise ValueError(f"pe_stages, route_stages, out_stages: the RTL builds {built}")
        self.cfg = cfg
        self.formal = bool(formal)
        if formal_bug not in ("", "drop") or (formal_bug and not self.formal):
            raise ValueError(f"formal_bug: {formal_bug!r} is not '' or 'drop' with formal=True")
        self.formal_bug = formal_bug
        extra = {"formal_pick": In(1)} if self.formal else {}
        super().__init__({**extra,
            "w": In(stream.Signature(weight_layout(cfg))),
            "act": In(stream.Signature(32)),
            "sel": In(stream.Signature(sel_layout(cfg))),
            "res": Out(stream.Signature(result_layout(cfg))),
            **control_ports(cfg),
        })

    def elaborate(self, platform):
        cfg, F = self.cfg, self.formal
        C, P, L = cfg.cols, cfg.drain_rows, cfg.sel_lanes
        m = Module()
        ctl, buf, pe = JobControl(cfg, formal=F), OperandBuffers(cfg), PEArray(cfg)
        drn, st = DrainControl(cfg, formal=F), AccStore(cfg)
        fifo = OutFIFO(cfg, formal=F, formal_bug=self.formal_bug)
        skid = SkidBuffer(result_layout(cfg), depth=cfg.out_skid_depth, formal=F)
        for name, c in [("ctl", ctl), ("buf", buf), ("pe", pe), ("drain", drn), ("store", st),
                        ("ofifo", fifo), ("skid", skid)]:
            # (formal: elaborated here, so the checks below can read their state)
            m.submodules[name] = Fragment.get(c, platform) if F else c
        for name, member in control_ports(cfg).items():
            if member.flow == In:
                m.d.comb += getattr(ctl, name).eq(getattr(self, name))
            else:
                m.d.comb += getattr(self, name).eq(getattr(ctl, name))
        wiring.connect(m, wiring.flipped(self.w), ctl.w)
        wiring.connect(m, wiring.flipped(self.sel), ctl.sel)
        m.d.comb += [ctl.act_valid.eq(self.act.valid), self.act.ready.eq(ctl.act_ready),
                     buf.act_wr_data.eq(self.act.payload)]
        m.d.comb += [buf.sel_wr_data[l].eq(self.sel.payload[l]) for l in range(L)]
        for name in ("act_wr_addr", "act_wr_en", "sel_wr_addr", "sel_wr_en", "tok_first",
                     "tok_load", "tt"):
            m.d.comb += getattr(buf, name).eq(getattr(ctl, name))
        m.d.comb += [buf.gw[c].eq(ctl.gw[c]) for c in range(C)]
        for name in ("s1_valid", "s1_first", "s1_blast", "s1_tlast", "s1_half", "s1_lanes",
                     "s1_meta", "s1_rows", "spr", "job_dense"):
            m.d.comb += getattr(pe, name).eq(getattr(ctl, name))
        m.d.comb += [pe.act[c].eq(buf.act[c]) for c in range(C)]
        m.d.comb += [ctl.pe_inflight.eq(pe.inflight), ctl.drain_done.eq(drn.drain_done),
                     ctl.tail_idle.eq(~drn.store_full & ~drn.drain_busy & ~drn.out_busy
                                      & fifo.empty & ~fifo.rd_valid_c & ~skid.o.valid)]
        m.d.comb += [drn.tile_end_s2.eq(pe.tile_end_s2), drn.meta.eq(pe.meta),
                     drn.credit.eq(fifo.credit)]
        m.d.comb += [st.flush_valid.eq(pe.valid & pe.flags[1]), st.job_sam.eq(ctl.job_sam),
                     st.job_nm.eq(ctl.job_nm)]
        for r in range(cfg.rows):
            m.d.comb += [st.idx[r].eq(pe.idx[r])] + [st.flush[r][c].eq(pe.flush[r][c])
                                                     for c in range(C)]
        for c in range(C):
            m.d.comb += [st.ctl[c][s_].eq(drn.ctl[c][s_]) for s_ in range(cfg.store_rows)]
        # the output lanes' job constants: a copy per lane (each lane copies its
        # own once more); the requant constants derived once from a copy of shift
        cfg_l1 = replicas(m, platform, Cat(ctl.job_shift, ctl.job_out_mode, ctl.job_mult), P * C,
                          "ocfg1", reset_less=True)
        shift_c = replicas(m, platform, ctl.job_shift, 1, "oshift", reset_less=True)[0]
        rnd, sat_mask = requant_consts(shift_c, cfg.acc_bits)
        rnd_c, sat_mk_c = Signal(len(rnd), name="rnd_c"), Signal(len(sat_mask), name="sat_mk_c")
        m.d.sync += [rnd_c.eq(rnd), sat_mk_c.eq(sat_mask)]
        req_l1 = replicas(m, platform, Cat(rnd_c, sat_mk_c), P, "oreq1", reset_less=True)
        for p in range(P):
            for c in range(C):
                i = p * C + c
                lane = m.submodules[f"lane{p}_{c}"] = OutputStage(
                    stages=LANE_STAGES, acc_bits=cfg.acc_bits, hi_dsp=cfg.requant_hi_dsp)
                m.d.comb += [lane.acc.eq(st.out[p][c]), lane.shift.eq(cfg_l1[i][:5]),
                             lane.mode.eq(cfg_l1[i][5:7]), lane.mult.eq(cfg_l1[i][7:23]),
                             lane.rnd.eq(req_l1[p][:31]), lane.sat_mask.eq(req_l1[p][31:]),
                             fifo.lane_shift[i].eq(st.lane_shift[p][c]),
                             fifo.lane_data[i].eq(lane.out),
                             skid.i.payload.data[p][c].eq(fifo.rd_data[i])]
        m.d.comb += [fifo.write.eq(drn.write), fifo.wmeta.eq(drn.wmeta),
                     fifo.taken.eq(skid.o.valid & skid.o.ready), skid.i.valid.eq(fifo.rd_valid),
                     Cat(skid.i.payload.row, skid.i.payload.tile, skid.i.payload.mask,
                         skid.i.payload.rmask).eq(fifo.rd_meta)]
        wiring.connect(m, wiring.flipped(self.res), skid.o)
        if F:
            m.d.comb += fifo.formal_pick.eq(self.formal_pick)
            self._formal(m, ctl, pe, drn, st, fifo, skid)
        return m

    def _formal(self, m, ctl, pe, drn, st, fifo, skid):
        """The invariants that span components."""
        def A(test, msg):
            m.d.comb += Assert(test, f"sptc: {msg}")
        cfg = self.cfg
        d, f = drn.formal_state, fifo.formal_state
        ov, LAG, FD, SK = d["ov"], cfg.ctrl_lag, cfg.out_fifo_depth, cfg.out_skid_depth
        A(ctl.formal_state["pe_busy"] == (ctl.s1_valid | pe.inflight | pe.valid),
          "pe_busy != a beat in s1 .. s3")
        A(~drn.drain_busy | (d["dr_at_last"] == (d["dr_q"] == d["dr_lastq"])),
          "dr_at_last != (dr_q == dr_lastq) while draining")
        A(~drn.drain_busy | (d["dr_q"] <= d["dr_lastq"]), "drain beat past the tile's last")
        A(drn.out_busy == (ov != 0), "out_busy != (ov != 0)")
        A(d["crd"] == sum(ov[i] for i in range(len(ov))) + f["held"] + f["rd_v"],
          "credits != beats in the output pipeline, the FIFO and its read register")
        A((d["crd"] <= FD) & (d["crd_ok"] == (d["crd"] < FD)),
          "credits out of range or crd_ok wrong")
        sk = skid.formal_state["occ"]
        A(f["fin"] == f["rd_v"] + sum(sk[i] for i in range(SK)),
          "fin != beats in the read register and the skid buffer")
        A(~f["rd_v"] | skid.i.ready, "the skid buffer refuses a beat")
        # the lanes' write enables: the decision tree, then each lane's valid bits
        A(d["ops"][1] == ov[0], "decision register != ov[0]")
        for c in range(cfg.cols):
            A(d["t1"][c][1] == ov[1], f"decision copy t1[{c}] != ov[1]")
            for s_, q2 in enumerate(d["t2"][c]):
                A(q2[1] == ov[2], f"decision copy t2[{c}][{s_}] != ov[2]")
        for p in range(cfg.drain_rows):
            for c in range(cfg.cols):
                A(st.formal_state["t3"][p][c][0][1] == ov[3],
                  f"decision copy t3[{p}][{c}] != ov[3]")
        for i, (_, lv, _, _, _) in enumerate(f["lanes"]):
            A(lv == ov[LAG:], f"lane {i} valid bits != ov's")

