"""The MoE-layer top: a Sparse Tensor Core and a Logic-PIM unit behind a job dispatcher,
per-unit queues and controllers, an FFN glue per unit, completion tracking and a
gate-weighted combine unit. Every expert job runs a whole gated FFN on its unit.

Streams (``<name>__payload/__valid/__ready``):

* ``job``   in   descriptors (``golden.program.DESC_LAYOUT``: kind, unit, expert, slots, arg)
* ``tok``   in   token entries of EXPERT jobs, ``slots`` per job, in job order
               (``golden.program.TOK_LAYOUT``: {tok: 8, gate: 8, valid: 1})
* ``sptc_w``, ``sptc_act``  in   the SpTC's weight beats (per SpTC job: the gate, up
               and down GEMMs' beats, in that order) and the step's activation words
* ``pim_din``  in   the Logic-PIM unit's data words (WRITE operands, each PIM job's
               gathered token vectors)
* ``y``     out  the combined layer output after an END (:func:`y_layout`):
               ``lanes = MoEConfig.lanes`` elements per beat, {value: lanes x s8, token,
               row}, lane i holding row ``row + i``; token-major, ``ceil(hidden / lanes)``
               beats per token (lanes past the layer's hidden are don't-care).
* ``trace`` out  one entry {unit, expert, slots} per EXPERT job as its unit starts it

``layer`` (``golden.program.LAYER_LAYOUT``) holds the layer registers while jobs run.

Descriptor kinds: LOAD (SpTC queue: load T token activations, sets T), EXPERT (unit 0:
the SpTC runs gate and up (MATMUL, SEL = the job's tokens) into its glue, LOADs h
into its token slots ``h_base ..`` and runs down (SEL = those slots); unit 1: the
Logic-PIM gets SET_OUT / LOAD_TOKENS / GEMM for gate and up, whose outputs go into its
glue, then SET_OUT, LOAD_TOKENS of h from the glue, GEMM for down), RAW (Logic-PIM
queue: NOP, WRITE, SET_OUT or FENCE), END (wait until every queued job has completed
and the combine is empty, then drain ``slots`` tokens).

Only the down projections reach the combine unit: one accumulator bank per SpTC column
and one for the Logic-PIM; each cycle a whole SpTC result beat (column c -> bank c) and
one Logic-PIM element (bank ``cols``); ``bank[token][row] += gate * y`` (int32
read-modify-write, transparent read). The drain reads one word (``lanes`` rows of one token) per bank per
cycle, sums the banks per lane, requantizes (``hdl.outstage.OutputStage``) and clears it.

Errors (sticky until ``clear``; bad descriptors are dropped and consume no token
entries, so the top never hangs on them): ERR_DESC, ERR_TOKEN (entry token >= T
or gate > 127: not combined), ERR_SPTC, ERR_PIM (the units' own sticky errors). An
SpTC job whose GATE GEMM the unit ends early (a bad SEL) drops the rest of its token
entries and ends; otherwise a job runs all its phases.

(About 590 lines: the dispatcher, the two unit controllers and the combine share the
job lists ``list_s`` / ``list_p``, the phase registers and the trace handshake, read
in the same cycle; as separate components they would pass some forty signals through
ports. The pieces that stand alone are components of their own: the units, the glue
(``glue.py``), the output stage, the FIFOs.)
"""
from __future__ import annotations

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from golden.moe import MoEConfig
from golden.pim.isa import INSTR_LAYOUT, OPCODES
from golden.program import (DESC_BITS, DESC_LAYOUT, ERR_DESC, ERR_PIM, ERR_SPTC, ERR_TOKEN,
                            KIND_END, KIND_EXPERT, KIND_LOAD, KIND_RAW, LAYER_LAYOUT, RAW_OK,
                            TOK_BITS, TOK_LAYOUT)
from golden.sptc import OP_LOAD, OP_MATMUL

from ..common import bits_for, log2, or_all
from ..outstage import OutputStage
from ..pim.unit import PIMUnit
from ..sptc import SparseTensorCore, weight_layout
from .glue import FFNGlue, GlueConfig

#: Phases of an expert job on either unit (``sptc_phase`` / ``pim_phase`` status).
PH_GATE, PH_UP, PH_HLOAD, PH_DOWN = 0, 1, 2, 3


def y_layout(lanes: int = 1):
    """One ``y`` beat: ``lanes`` int8 outputs of one token, rows ``row .. row + lanes - 1``."""
    return data.StructLayout({"value": data.ArrayLayout(signed(8), lanes),
                              "token": unsigned(8), "row": unsigned(8)})


def trace_layout():
    return data.StructLayout({"unit": unsigned(1), "expert": unsigned(8), "slots": unsigned(8)})


class MoETop(wiring.Component):
    def __init__(self, cfg: MoEConfig = MoEConfig()):
        self.cfg = cfg
        self.lanes = lanes = cfg.lanes      # output elements per y beat
        s, p = cfg.sptc, cfg.pim
        super().__init__({
            "job": In(stream.Signature(DESC_BITS)),
            "tok": In(stream.Signature(TOK_BITS)),
            "sptc_w": In(stream.Signature(weight_layout(s))),
            "sptc_act": In(stream.Signature(32)),
            "pim_din": In(stream.Signature(p.bundle_bits)),
            "y": Out(stream.Signature(y_layout(lanes))),
            "trace": Out(stream.Signature(trace_layout())),
            "layer": In(LAYER_LAYOUT),     # layer registers, held stable while jobs run
            "clear": In(1),
            # status
            "busy": Out(1), "err": Out(4), "sptc_err": Out(4), "pim_err": Out(4),
            "cycles": Out(32), "sptc_busy": Out(32), "pim_busy": Out(32),
            "sptc_jobs": Out(16), "pim_jobs": Out(16), "steps": Out(16),
            # the expert phase each unit is in: 0 none, 1 + PH_* (gate, up, h load, down)
            "sptc_phase": Out(3), "pim_phase": Out(3),
        })

    def elaborate(self, platform):
        cfg = self.cfg
        scfg, pcfg = cfg.sptc, cfg.pim
        C = scfg.cols
        lc = self.layer                # the layer registers (a View of LAYER_LAYOUT)
        m = Module()
        m.submodules.sptc = sptc = SparseTensorCore(scfg)
        m.submodules.pim = pim = PIMUnit(pcfg)
        m.submodules.glue_s = glue_s = FFNGlue(GlueConfig(
            banks=C, elems=4, max_slots=cfg.sptc_max_slots, max_rows=cfg.max_ffn))
        m.submodules.glue_p = glue_p = FFNGlue(GlueConfig(
            banks=1, elems=pcfg.elems, max_slots=cfg.pim_max_slots, max_rows=cfg.max_ffn))
        wiring.connect(m, wiring.flipped(self.sptc_w), sptc.w)
        m.d.comb += [sptc.clear.eq(self.clear), pim.clear.eq(self.clear),
                     self.sptc_err.eq(sptc.error), self.pim_err.eq(pim.err),
                     glue_s.prod_mult.eq(lc.prod_mult), glue_s.prod_shift.eq(lc.prod_shift),
                     glue_p.prod_mult.eq(lc.prod_mult), glue_p.prod_shift.eq(lc.prod_shift)]

        # ------------------------------------------------------------ per-unit queues
        jf = [fifo.SyncFIFOBuffered(width=DESC_BITS, depth=cfg.job_depth) for _ in range(2)]
        tf = [fifo.SyncFIFOBuffered(width=TOK_BITS, depth=cfg.tok_depth) for _ in range(2)]
        m.submodules.jf_sptc, m.submodules.jf_pim = jf
        m.submodules.tf_sptc, m.submodules.tf_pim = tf

        err_set = Signal(4)
        err = Signal(4)
        m.d.sync += err.eq(Mux(self.clear, 0, err | err_set))
        m.d.comb += self.err.eq(err)

        # ------------------------------------------------------------ dispatcher
        jw = self.job.payload
        jd = data.View(DESC_LAYOUT, jw)
        kind, unit, expert, slots, arg = jd.kind, jd.unit, jd.expert, jd.slots, jd.arg
        T = Signal(9)                 # tokens of the current step (last LOAD)
        d_unit = Signal()
        d_left = Signal(9)
        end_n = Signal(9)
        max_slots = Mux(unit, cfg.pim_max_slots, cfg.sptc_max_slots)
        cfg_ok = Signal()
        m.d.comb += cfg_ok.eq(
            (lc.hidden != 0) & (lc.hidden <= cfg.max_hidden)
            & (lc.ffn != 0) & (lc.ffn <= cfg.max_ffn) & (lc.mode != 3)
            & (lc.pim_kw_h != 0) & (lc.pim_kw_h <= pcfg.max_k_words)
            & (lc.pim_kw_f != 0) & (lc.pim_kw_f <= cfg.max_ffn // pcfg.elems)
            & (lc.dn_kw != 0) & (lc.dn_kw <= cfg.max_ffn // 4))
        # Logic-PIM words of one expert: gate and up (ffn x kw_h each), down (hidden x kw_f)
        up_off, dn_off = Signal(24), Signal(24)
        m.d.comb += [up_off.eq(lc.ffn * lc.pim_kw_h), dn_off.eq(up_off << 1)]
        pim_span = Signal(40)
        m.d.comb += pim_span.eq(arg[:32] + dn_off + lc.hidden * lc.pim_kw_f)
        raw_op = data.View(INSTR_LAYOUT, arg).op
        raw_ok = or_all(raw_op == op for op in RAW_OK)
        bad = Signal()
        m.d.comb += bad.eq(Mux(
            kind == KIND_EXPERT,
            (slots == 0) | (slots > max_slots) | (expert >= lc.experts) | ~cfg_ok
            | (unit & (pim_span > pcfg.words)),
            Mux(kind == KIND_RAW, ~unit | ~raw_ok,
                unit | (slots == 0) | (slots > cfg.max_tokens)         # LOAD / END
                | ((kind == KIND_END) & ~cfg_ok))))

        # quiet: everything dispatched so far has completed
        s_idle, p_idle, comb_idle = Signal(), Signal(), Signal()
        quiet = Signal()
        m.d.comb += quiet.eq(~jf[0].r_rdy & ~jf[1].r_rdy & s_idle & p_idle & comb_idle)

        # acc memory (combine buffer): token-major, max_hidden words per token
        L = self.lanes
        hb, tb, lb = bits_for(cfg.max_hidden), bits_for(cfg.max_tokens), log2(L)
        n_chunk = Signal(9)           # beats per token: ceil(hidden / lanes)
        m.d.comb += n_chunk.eq((lc.hidden + (L - 1)) >> lb)
        # one bank per SpTC column, so a whole result beat (cols distinct tokens, one row)
        # is combined in one cycle; an element's value is the sum over the banks. A word
        # holds ``lanes`` rows of one token (address: token, row // lanes).
        word = data.ArrayLayout(signed(32), L)
        wps, rps = [], []
        for b in range(C + 1):        # bank C: the Logic-PIM's elements
            mem = Memory(shape=word, depth=cfg.max_tokens * cfg.max_hidden // L, init=[])
            m.submodules[f"acc{b}"] = mem
            wps.append(mem.write_port(granularity=1))
            rps.append(mem.read_port(transparent_for=(wps[-1],)))
        dr_t, dr_r = Signal(9), Signal(9)     # dr_r: the beat's chunk (rows dr_r * lanes ..)
        dr_adv = Signal()

        tok_e = data.View(TOK_LAYOUT, self.tok.payload)
        e_tok, e_gate, e_valid = tok_e.tok, tok_e.gate, tok_e.valid
        e_bad = (e_tok >= T) | e_gate[7]

        with m.FSM(name="disp") as dfsm:
            with m.State("IDLE"):
                with m.If(self.job.valid):
                    with m.If(bad):
                        m.d.comb += [self.job.ready.eq(1), err_set[log2(ERR_DESC)].eq(1)]
                    with m.Elif(kind == KIND_END):
                        m.d.comb += self.job.ready.eq(1)
                        m.d.sync += end_n.eq(slots)
                        m.next = "WAIT"
                    with m.Else():
                        tgt = Mux(kind == KIND_EXPERT, unit, Mux(kind == KIND_RAW, 1, 0))
                        with m.If(tgt):
                            m.d.comb += [self.job.ready.eq(jf[1].w_rdy), jf[1].w_en.eq(1)]
                        with m.Else():
                            m.d.comb += [self.job.ready.eq(jf[0].w_rdy), jf[0].w_en.eq(1)]
                        with m.If(self.job.ready):
                            with m.If(kind == KIND_LOAD):
                                m.d.sync += T.eq(slots)
                            with m.If(kind == KIND_EXPERT):
                                m.d.sync += [d_unit.eq(unit), d_left.eq(slots)]
                                m.next = "TOK"
            with m.State("TOK"):
                w_rdy = Mux(d_unit, tf[1].w_rdy, tf[0].w_rdy)
                m.d.comb += [self.tok.ready.eq(w_rdy), tf[0].w_en.eq(self.tok.valid & ~d_unit),
                             tf[1].w_en.eq(self.tok.valid & d_unit)]
                with m.If(self.tok.valid & w_rdy):
                    m.d.comb += err_set[log2(ERR_TOKEN)].eq(e_bad)
                    m.d.sync += d_left.eq(d_left - 1)
                    with m.If(d_left == 1):
                        m.next = "IDLE"
            with m.State("WAIT"):
                with m.If(quiet):
                    m.d.sync += [dr_t.eq(0), dr_r.eq(0)]
                    m.next = "DRAIN_RD"
            with m.State("DRAIN_RD"):
                m.next = "DRAIN_OUT"
            with m.State("DRAIN_OUT"):
                # one beat (lanes rows of one token) per cycle: when y takes it the read
                # port is already addressed at the next word (dr_next), else it re-reads dr
                m.d.comb += self.y.valid.eq(1)
                with m.If(self.y.ready):
                    m.d.comb += dr_adv.eq(1)
                    with m.If(dr_r == n_chunk - 1):
                        m.d.sync += [dr_r.eq(0), dr_t.eq(dr_t + 1)]
                        with m.If(dr_t == end_n - 1):
                            m.d.sync += self.steps.eq(self.steps + 1)
                            m.next = "IDLE"
                    with m.Else():
                        m.d.sync += dr_r.eq(dr_r + 1)
        # token entries into the unit queue (an invalid entry is pushed as not valid)
        q_ent = Signal(TOK_LAYOUT)
        m.d.comb += [q_ent.tok.eq(e_tok), q_ent.gate.eq(e_gate), q_ent.valid.eq(e_valid & ~e_bad)]
        for q in tf:
            m.d.comb += q.w_data.eq(q_ent)
        for q in jf:
            m.d.comb += q.w_data.eq(jw)
        draining = dfsm.ongoing("DRAIN_RD") | dfsm.ongoing("DRAIN_OUT")

        # ------------------------------------------------------------ trace arbiter
        # The SpTC's announcement has priority, except over a Logic-PIM entry already
        # on offer and not yet taken (lock_p): a stalled payload never changes.
        s_ann, p_ann = Signal(), Signal()
        s_ann_ok, p_ann_ok = Signal(), Signal()
        s_exp, p_exp = Signal(8), Signal(8)
        s_slots, p_slots = Signal(9), Signal(9)
        lock_p, grant_s = Signal(), Signal()
        m.d.comb += [grant_s.eq(s_ann & ~lock_p),
                     self.trace.valid.eq(s_ann | p_ann),
                     self.trace.payload.unit.eq(~grant_s),
                     self.trace.payload.expert.eq(Mux(grant_s, s_exp, p_exp)),
                     self.trace.payload.slots.eq(Mux(grant_s, s_slots, p_slots)),
                     s_ann_ok.eq(grant_s & self.trace.ready),
                     p_ann_ok.eq(~grant_s & p_ann & self.trace.ready)]
        m.d.sync += lock_p.eq(p_ann & ~grant_s & ~self.trace.ready)

        # ------------------------------------------------------------ SpTC controller
        # An EXPERT job: GATE and UP (MATMUL, SEL = the job's tokens; results into
        # glue_s), HLOAD (LOAD of h from glue_s into token slots h_base ..), DOWN (MATMUL,
        # SEL = h_base + j; results into the combine).
        list_s = Array(Signal(TOK_BITS, name=f"list_s{i}") for i in range(cfg.sptc_max_slots))
        list_p = Array(Signal(TOK_BITS, name=f"list_p{i}") for i in range(cfg.pim_max_slots))
        sbits = bits_for(cfg.sptc_max_slots)
        p_done = Signal()
        s_load = Signal()             # the step's activation LOAD (not an expert job)
        s_ph = Signal(2)
        s_n = Signal(9)
        s_cnt = Signal(9)
        t_loaded = Signal(9)
        h_base = cfg.h_base
        # the control ports show phase ph_c: s_ph, or the next phase in the cycle a phase
        # ends and the next one starts at once (GATE -> UP, HLOAD -> DOWN)
        ph_c = Signal(2)
        m.d.comb += ph_c.eq(s_ph)
        c_load = s_load | (ph_c == PH_HLOAD)
        c_down = ph_c == PH_DOWN
        rq_mult = Mux(ph_c == PH_GATE, lc.gate_mult, Mux(ph_c == PH_UP, lc.up_mult, lc.down_mult))
        rq_shift = Mux(ph_c == PH_GATE, lc.gate_shift,
                       Mux(ph_c == PH_UP, lc.up_shift, lc.down_shift))
        m.d.comb += [
            sptc.op.eq(Mux(c_load, OP_LOAD, OP_MATMUL)),
            sptc.mode.eq(Mux(c_load, 0, lc.mode)),
            sptc.out_mode.eq(Mux(c_load, 0, 2)),
            sptc.mult.eq(Mux(c_load, 0, rq_mult)),
            sptc.shift.eq(Mux(c_load, 0, rq_shift)),
            sptc.k_words.eq(Mux(s_load | (ph_c < PH_HLOAD), lc.up_kw, lc.dn_kw)),
            sptc.v_steps.eq(Mux(c_load, 1, Mux(c_down, lc.dn_v, lc.up_v))),
            sptc.m_rows.eq(Mux(c_load, 1, Mux(c_down, lc.hidden, lc.ffn))),
            sptc.n_row_tiles.eq(Mux(c_load, 1, Mux(c_down, lc.dn_rt, lc.up_rt))),
            sptc.n_sel.eq(Mux(c_load, 0, s_n)),
            sptc.n_tokens.eq(Mux(c_load, s_n, Mux(c_down, h_base + s_n, t_loaded))),
            sptc.tok_base.eq(Mux(s_load, 0, h_base)),
            sptc.sam_n.eq(Mux(c_load, 1, lc.sam_n)), sptc.sam_m.eq(Mux(c_load, 1, lc.sam_m)),
        ]
        # the phase in progress (SEL feed, combine)
        is_load, is_down = s_load | (s_ph == PH_HLOAD), s_ph == PH_DOWN
        sd = data.View(DESC_LAYOUT, jf[0].r_data)
        # SEL: the token FIFO (GATE, stored into list_s), list_s again (UP), h slots (DOWN)
        m.d.comb += sptc.sel.payload.eq(Mux(
            s_ph == PH_GATE, data.View(TOK_LAYOUT, tf[0].r_data).tok,
            Mux(s_ph == PH_UP, data.View(TOK_LAYOUT, list_s[s_cnt[:sbits]]).tok,
                h_base + s_cnt)))
        # activations: the step's words from sptc_act, or h from glue_s during HLOAD
        h_feed = Signal()
        m.d.comb += [sptc.act.payload.eq(Mux(h_feed, glue_s.rd.payload, self.sptc_act.payload)),
                     sptc.act.valid.eq(Mux(h_feed, glue_s.rd.valid, self.sptc_act.valid)),
                     self.sptc_act.ready.eq(~h_feed & sptc.act.ready),
                     glue_s.rd.ready.eq(h_feed & sptc.act.ready),
                     glue_s.rd_n.eq(s_n), glue_s.rd_kw.eq(lc.dn_kw)]
        s_expert = Signal()           # in an expert job (GATE .. DOWN)
        with m.FSM(name="sctl") as sfsm:
            with m.State("IDLE"):
                with m.If(jf[0].r_rdy):
                    m.d.comb += jf[0].r_en.eq(1)
                    m.d.sync += [s_n.eq(sd.slots), s_exp.eq(sd.expert),
                                 s_slots.eq(sd.slots), s_cnt.eq(0), s_ph.eq(PH_GATE)]
                    with m.If(sd.kind == KIND_LOAD):
                        m.d.sync += [s_load.eq(1), t_loaded.eq(sd.slots)]
                        m.next = "START"
                    with m.Else():
                        m.d.sync += s_load.eq(0)
                        m.next = "ANN"
            with m.State("ANN"):
                m.d.comb += s_ann.eq(1)
                with m.If(s_ann_ok):            # GATE starts with the announcement
                    m.d.comb += sptc.start.eq(1)
                    m.next = "RUN"
            with m.State("START"):              # the step's activation LOAD
                m.d.comb += sptc.start.eq(1)
                m.next = "RUN"
            with m.State("RUN"):
                sel_src = Mux(s_ph == PH_GATE, tf[0].r_rdy, 1)
                m.d.comb += sptc.sel.valid.eq(~is_load & sel_src & (s_cnt < s_n))
                with m.If(sptc.sel.valid & sptc.sel.ready):
                    m.d.sync += s_cnt.eq(s_cnt + 1)
                    with m.If(s_ph == PH_GATE):
                        m.d.comb += tf[0].r_en.eq(1)
                        m.d.sync += list_s[s_cnt[:sbits]].eq(tf[0].r_data)
                with m.If(sptc.done):
                    m.d.sync += h_feed.eq(0)
                    with m.If(s_load):
                        m.next = "IDLE"
                    with m.Elif((s_ph == PH_GATE) & (s_cnt < s_n)):
                        m.next = "FLUSH"           # the SpTC ended early (bad job)
                    with m.Elif(s_ph == PH_DOWN):
                        m.d.sync += self.sptc_jobs.eq(self.sptc_jobs + 1)
                        m.next = "IDLE"
                    with m.Elif((s_ph == PH_UP) & glue_s.busy):
                        m.d.sync += s_ph.eq(PH_HLOAD)
                        m.next = "NEXT"
                    with m.Elif(s_ph == PH_UP):     # UP -> HLOAD at once: h is complete
                        m.d.comb += [ph_c.eq(PH_HLOAD), sptc.start.eq(1),
                                     glue_s.rd_start.eq(1)]
                        m.d.sync += [s_ph.eq(PH_HLOAD), s_cnt.eq(0), h_feed.eq(1)]
                    with m.Else():                 # GATE -> UP, HLOAD -> DOWN at once
                        m.d.comb += [ph_c.eq(s_ph + 1), sptc.start.eq(1)]
                        m.d.sync += [s_ph.eq(s_ph + 1), s_cnt.eq(0)]
            with m.State("NEXT"):
                # HLOAD starts once the last up element has left the glue's pipeline
                with m.If(~glue_s.busy):
                    m.d.comb += [sptc.start.eq(1), glue_s.rd_start.eq(1)]
                    m.d.sync += [h_feed.eq(1), s_cnt.eq(0)]
                    m.next = "RUN"
            with m.State("FLUSH"):   # drop the rest of the job's token entries
                with m.If(tf[0].r_rdy):
                    m.d.comb += tf[0].r_en.eq(1)
                    m.d.sync += s_cnt.eq(s_cnt + 1)
                    with m.If(s_cnt == s_n - 1):
                        m.d.sync += self.sptc_jobs.eq(self.sptc_jobs + 1)
                        m.next = "IDLE"
        m.d.comb += [s_idle.eq(sfsm.ongoing("IDLE")),
                     s_expert.eq(~s_load & ~sfsm.ongoing("IDLE") & ~sfsm.ongoing("ANN")),
                     self.sptc_phase.eq(Mux(s_expert, s_ph + 1, 0))]
        s_run = sfsm.ongoing("RUN") & s_expert
        s_to_glue = s_run & (s_ph <= PH_UP)
        s_in_job = s_run & is_down

        # ------------------------------------------------------------ PIM controller
        # An EXPERT job: the entries into list_p, then eight instructions (SET_OUT,
        # LOAD_TOKENS, GEMM for gate; SET_OUT, GEMM for up; SET_OUT, LOAD_TOKENS of h from
        # glue_p, GEMM for down). p_ph follows the outputs: each GEMM's ``last`` ends a phase.
        pd = data.View(DESC_LAYOUT, jf[1].r_data)
        p_arg = Signal(64)
        p_n = Signal(9)
        p_cnt = Signal(9)
        p_i, p_j = Signal(9), Signal(9)
        p_k = Signal(3)               # the next instruction of the job
        p_ph = Signal(2)              # the GEMM whose outputs arrive (0 gate, 1 up, 2 down)
        p_out = Signal()              # the job's outputs are expected
        h_pfeed = Signal()            # pim_din comes from glue_p (h for the down GEMM)
        p_hwait = Signal()            # the up GEMM is done: start the h feed when the glue is
        seq = [Signal(INSTR_LAYOUT, name=f"p_ins{i}") for i in range(8)]
        base = p_arg[:32]
        for i, (rq, load_kw, addr, n) in enumerate(
                [(("gate_mult", "gate_shift"), None, None, None),
                 (None, lc.pim_kw_h, None, None), (None, None, base, lc.ffn),
                 (("up_mult", "up_shift"), None, None, None), (None, None, base + up_off, lc.ffn),
                 (("down_mult", "down_shift"), None, None, None),
                 (None, lc.pim_kw_f, None, None), (None, None, base + dn_off, lc.hidden)]):
            w = seq[i]
            if rq is not None:
                m.d.comb += [w.op.eq(OPCODES["SET_OUT"]), w.args.set_out.mode.eq(2),
                             w.args.set_out.mult.eq(getattr(lc, rq[0])),
                             w.args.set_out.shift.eq(getattr(lc, rq[1]))]
            elif load_kw is not None:
                m.d.comb += [w.op.eq(OPCODES["LOAD_TOKENS"]), w.args.load_tokens.t.eq(p_n[:8]),
                             w.args.load_tokens.kw.eq(load_kw)]
            else:
                m.d.comb += [w.op.eq(OPCODES["GEMM"]), w.args.gemm.addr.eq(addr),
                             w.args.gemm.n.eq(n)]
        seq_a = Array(seq)
        with m.FSM(name="pctl") as pfsm:
            with m.State("IDLE"):
                with m.If(jf[1].r_rdy):
                    m.d.comb += jf[1].r_en.eq(1)
                    m.d.sync += [p_arg.eq(pd.arg), p_n.eq(pd.slots),
                                 p_exp.eq(pd.expert), p_slots.eq(pd.slots),
                                 p_cnt.eq(0), p_i.eq(0), p_j.eq(0), p_k.eq(0), p_ph.eq(0)]
                    with m.If(pd.kind == KIND_RAW):
                        m.next = "RAW"
                    with m.Else():
                        m.next = "ANN"
            with m.State("RAW"):
                m.d.comb += [pim.instr.valid.eq(1), pim.instr.payload.eq(p_arg)]
                with m.If(pim.instr.ready):
                    m.next = "IDLE"
            with m.State("ANN"):
                m.d.comb += p_ann.eq(1)
                with m.If(p_ann_ok):
                    m.next = "LIST"
            with m.State("LIST"):
                with m.If(tf[1].r_rdy):
                    m.d.comb += tf[1].r_en.eq(1)
                    m.d.sync += [list_p[p_cnt[:bits_for(cfg.pim_max_slots)]].eq(tf[1].r_data),
                                 p_cnt.eq(p_cnt + 1)]
                    with m.If(p_cnt == p_n - 1):
                        m.d.sync += p_out.eq(1)
                        m.next = "INSTR"
            with m.State("INSTR"):
                # the down LOAD_TOKENS (6) goes out once glue_p feeds pim.din: the unit
                # must not take the next job's words from pim_din as h
                go = (p_k != 6) | h_pfeed
                m.d.comb += [pim.instr.valid.eq(go), pim.instr.payload.eq(seq_a[p_k])]
                with m.If(go & pim.instr.ready):
                    m.d.sync += p_k.eq(p_k + 1)
                    with m.If(p_k == 7):
                        m.next = "OUT"
            with m.State("OUT"):
                with m.If(p_done):
                    m.next = "IDLE"
        m.d.comb += [p_idle.eq(pfsm.ongoing("IDLE")),
                     self.pim_phase.eq(Mux(p_out, Mux(h_pfeed, PH_HLOAD, Mux(p_ph == 2, PH_DOWN,
                                                                             p_ph)) + 1, 0))]
        # the Logic-PIM's data words: pim_din, or h from glue_p while it feeds the down LOAD
        m.d.comb += [pim.din.payload.eq(Mux(h_pfeed, glue_p.rd.payload, self.pim_din.payload)),
                     pim.din.valid.eq(Mux(h_pfeed, glue_p.rd.valid, self.pim_din.valid)),
                     self.pim_din.ready.eq(~h_pfeed & pim.din.ready),
                     glue_p.rd.ready.eq(h_pfeed & pim.din.ready),
                     glue_p.rd_n.eq(p_n), glue_p.rd_kw.eq(lc.pim_kw_f)]
        with m.If(p_hwait & ~glue_p.busy):
            m.d.comb += glue_p.rd_start.eq(1)
            m.d.sync += [p_hwait.eq(0), h_pfeed.eq(1)]
        with m.If(h_pfeed & ~glue_p.rd_busy & ~glue_p.rd_start):
            m.d.sync += h_pfeed.eq(0)

        # ------------------------------------------------------------ glue writes
        res = sptc.res.payload
        p_elem = pim.out.valid & p_out
        p_to_glue = p_elem & (p_ph != 2)
        m.d.comb += [glue_s.wr_up.eq(s_ph == PH_UP), glue_s.wr_row.eq(res.row),
                     glue_s.wr_tile.eq(res.tile),
                     glue_p.wr_up.eq(p_ph == 1), glue_p.wr_row.eq(p_i),
                     glue_p.wr_tile.eq(p_j), glue_p.wr_val[0].eq(pim.out.payload.value[:8]),
                     glue_p.wr_en.eq(p_to_glue)]
        for c in range(C):
            m.d.comb += [glue_s.wr_val[c].eq(res.data[0][c][:8]),
                         glue_s.wr_en[c].eq(s_to_glue & sptc.res.valid & res.mask[c])]

        # ------------------------------------------------------------ combine
        busy_terms = []
        s_valid = sptc.res.valid & s_in_job
        p_valid = p_elem & (p_ph == 2)
        # the SpTC's beats go to banks 0..C-1, the Logic-PIM's elements to bank C: both
        # are combined in the same cycle, neither unit waits for the other
        g_s, g_p = s_valid, p_valid
        m.d.comb += sptc.res.ready.eq(g_s | s_to_glue)
        with m.If(g_p | p_to_glue):
            m.d.comb += pim.out.ready.eq(1)
            with m.If(pim.out.payload.last):
                m.d.sync += [p_i.eq(0), p_j.eq(0), p_ph.eq(p_ph + 1)]
                with m.If(p_ph == 1):
                    m.d.sync += p_hwait.eq(1)
                with m.If(p_ph == 2):
                    m.d.comb += p_done.eq(1)
                    m.d.sync += [self.pim_jobs.eq(self.pim_jobs + 1), p_out.eq(0)]
            with m.Elif(p_j == p_n - 1):
                m.d.sync += [p_j.eq(0), p_i.eq(p_i + 1)]
            with m.Else():
                m.d.sync += p_j.eq(p_j + 1)
        ent_p = list_p[p_j[:bits_for(cfg.pim_max_slots)]]
        sb = bits_for(cfg.sptc_max_slots)
        cb = hb - lb                  # chunk-index bits of a word address
        dr_addr = Cat(dr_r[:cb], dr_t[:tb])
        last_r = dr_r == n_chunk - 1
        dr_next = Cat(Mux(last_r, 0, dr_r + 1)[:cb], Mux(last_r, dr_t + 1, dr_t)[:tb])
        sums = [0] * L
        for b in range(C + 1):
            # stage A: bank b < C takes column b of the SpTC beat, bank C the PIM element
            ent_w = Signal(TOK_BITS, name=f"ent{b}")
            ent = data.View(TOK_LAYOUT, ent_w)
            y = Signal(signed(8), name=f"a_y{b}")
            row = Signal(9, name=f"a_row{b}")
            en = Signal(name=f"a_en{b}")
            if b == C:
                m.d.comb += [ent_w.eq(ent_p), y.eq(pim.out.payload.value[:8].as_signed()),
                             row.eq(p_i), en.eq(g_p & ent.valid)]
            else:
                j = Signal(16, name=f"s_j{b}")
                m.d.comb += j.eq((res.tile << bits_for(C) if C > 1 else res.tile) | b)
                m.d.comb += [ent_w.eq(list_s[j[:sb]]), y.eq(res.data[0][b][:8].as_signed()),
                             row.eq(res.row), en.eq(g_s & res.mask[b] & ent.valid)]
            a_addr = Signal(cb + tb, name=f"a_addr{b}")
            m.d.comb += a_addr.eq(Cat(row[lb:hb], ent.tok[:tb]))
            # stage B: read-modify-write of one lane (transparent read: back-to-back
            # updates are exact)
            b_valid = Signal(name=f"b_valid{b}")
            b_addr = Signal(cb + tb, name=f"b_addr{b}")
            b_lane = Signal(max(lb, 1), name=f"b_lane{b}")
            b_prod = Signal(signed(17), name=f"b_prod{b}")
            m.d.sync += [b_valid.eq(en), b_addr.eq(a_addr), b_lane.eq(row[:lb] if lb else 0),
                         b_prod.eq(y * Cat(ent.gate, Const(0, 1)).as_signed())]
            busy_terms.append(b_valid)
            wp, rp = wps[b], rps[b]
            old = Signal(signed(32), name=f"b_old{b}")
            m.d.comb += old.eq(rp.data.as_value().word_select(b_lane, 32).as_signed()
                               if L > 1 else rp.data[0])
            with m.If(draining):
                m.d.comb += [rp.addr.eq(Mux(dr_adv, dr_next, dr_addr)), wp.addr.eq(dr_addr),
                             wp.en.eq(Mux(dr_adv, (1 << L) - 1, 0))]
            with m.Else():
                m.d.comb += [rp.addr.eq(a_addr), wp.addr.eq(b_addr),
                             wp.en.eq(Mux(b_valid, 1 << b_lane, 0) if L > 1 else b_valid)]
                for i in range(L):
                    m.d.comb += wp.data[i].eq(old + b_prod)
            for i in range(L):
                sums[i] = sums[i] + rp.data[i]
        m.d.comb += comb_idle.eq(~Cat(*busy_terms).any())
        for i in range(L):
            m.submodules[f"requant{i}"] = rq = OutputStage(stages=0)
            total = Signal(signed(32), name=f"total{i}")
            m.d.comb += [total.eq(sums[i]), rq.acc.eq(total), rq.mode.eq(2),
                         rq.mult.eq(lc.comb_mult), rq.shift.eq(lc.comb_shift),
                         self.y.payload.value[i].eq(rq.out[:8])]   # requant: int8
        m.d.comb += [self.y.payload.token.eq(dr_t[:8]),
                     self.y.payload.row.eq((dr_r << lb)[:8])]

        # ------------------------------------------------------------ status
        m.d.comb += err_set[log2(ERR_SPTC)].eq(sptc.error != 0)
        m.d.comb += err_set[log2(ERR_PIM)].eq(pim.err != 0)
        busy = Signal()
        m.d.comb += [busy.eq(~dfsm.ongoing("IDLE") | jf[0].r_rdy | jf[1].r_rdy | ~s_idle
                             | ~p_idle | ~comb_idle | pim.busy | sptc.busy | glue_s.busy
                             | glue_p.busy | h_pfeed | p_hwait), self.busy.eq(busy)]
        with m.If(self.clear):
            m.d.sync += [self.cycles.eq(0), self.sptc_busy.eq(0), self.pim_busy.eq(0),
                         self.sptc_jobs.eq(0), self.pim_jobs.eq(0), self.steps.eq(0)]
        with m.Else():
            m.d.sync += self.cycles.eq(self.cycles + 1)
            with m.If(~s_idle | sptc.busy):
                m.d.sync += self.sptc_busy.eq(self.sptc_busy + 1)
            with m.If(~p_idle | pim.busy):
                m.d.sync += self.pim_busy.eq(self.pim_busy + 1)
        return m
