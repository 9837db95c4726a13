"""The MoE-layer top: a Sparse Tensor Core and a Logic-PIM unit behind a job dispatcher,
per-unit queues, completion tracking and a gate-weighted combine unit.

Streams (``<name>__payload/__valid/__ready``):

* ``job``   in   descriptors (``golden.program.DESC_LAYOUT``: kind, unit, expert, slots, arg)
* ``tok``   in   token entries of EXPERT jobs, ``slots`` per job, in job order
               (``golden.program.TOK_LAYOUT``: {tok: 8, gate: 8, valid: 1})
* ``sptc_w``, ``sptc_act``  in   the SpTC's weight beats and activation words
               (data movement stays with the host: passed straight to the SpTC)
* ``pim_din``  in   the Logic-PIM unit's data words (WRITE operands, token vectors)
* ``y``     out  the combined layer output after an END (:func:`y_layout`):
               ``lanes = MoEConfig.lanes`` elements per beat, {value: lanes x s8, token,
               row}, lane i holding row ``row + i``; token-major (token 0's beats, rows
               0.., then token 1, ...), ``ceil(hidden / lanes)`` beats per token (lanes
               past ``cfg_hidden`` are don't-care). The default ``lanes = max_hidden``
               drains a whole row of the combine buffer (one token) per beat.
* ``trace`` out  one entry {unit, expert, slots} per EXPERT job as its unit starts it:
               the executed schedule

Descriptor kinds: LOAD (SpTC queue: load T token activations, sets T), EXPERT
(unit 0 -> SpTC MATMUL with SEL from the job's token entries; unit 1 -> Logic-PIM
LOAD_TOKENS(slots) + GEMM(arg, hidden)), RAW (Logic-PIM queue: one PIM
instruction in ``arg``: NOP, WRITE, SET_OUT or FENCE), END (wait until every
queued job has completed and the combine is empty, then drain ``slots`` tokens).

The combine unit has one accumulator bank per SpTC column. Each cycle it takes
either a whole SpTC result beat (column c -> bank c: one row, distinct tokens) or
one Logic-PIM output element (bank 0), round robin; it looks each element's slot
up in that unit's current job list (token, gate, valid) and adds ``gate * y``
into ``bank[token][row]`` (int32 read-modify-write with a transparent read port,
so back-to-back updates of one element are exact). Each bank's words are ``lanes``
elements wide (rows ``row // lanes * lanes ..`` of one token; a lane-granular write
port updates one element). The drain reads one word per bank per cycle, sums the
banks per lane, requantizes each lane (``hdl.outstage.OutputStage``, i.e.
golden.numerics.requant) and clears the word: one beat per cycle, so an END of T
tokens drains in ``MoEConfig.drain_cycles`` cycles when ``y`` does not stall.

Errors (sticky until ``clear``; bad descriptors are dropped and consume no token
entries, so the top never hangs on them): ERR_DESC, ERR_TOKEN (entry token >= T
or gate > 127: not combined), ERR_SPTC, ERR_PIM (the units' own sticky errors).
"""
from __future__ import annotations

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from golden.moe import MoEConfig
from golden.pim.isa import INSTR_LAYOUT, OPCODES
from golden.program import (DESC_BITS, DESC_LAYOUT, ERR_DESC, ERR_PIM, ERR_SPTC, ERR_TOKEN,
                            KIND_END, KIND_EXPERT, KIND_LOAD, KIND_RAW, RAW_OK, TOK_BITS,
                            TOK_LAYOUT)
from golden.sptc import OP_LOAD, OP_MATMUL

from ..common import bits_for, log2, or_all
from ..outstage import OutputStage
from ..pim.unit import PIMUnit
from ..sptc import SparseTensorCore, weight_layout


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
        kwb = bits_for(s.max_kw + 1)
        super().__init__({
            "job": In(stream.Signature(DESC_BITS)),
            "tok": In(stream.Signature(TOK_BITS)),
            "sptc_w": In(stream.Signature(weight_layout(s))),
            "sptc_act": In(stream.Signature(32)),
            "pim_din": In(stream.Signature(p.bundle_bits)),
            "y": Out(stream.Signature(y_layout(lanes))),
            "trace": Out(stream.Signature(trace_layout())),
            # layer configuration (held stable while jobs run)
            "cfg_hidden": In(9), "cfg_experts": In(9), "cfg_k_words": In(kwb + 1),
            "cfg_row_tiles": In(16), "cfg_mode": In(2), "cfg_mult": In(16), "cfg_shift": In(5),
            "cfg_pim_kw": In(12), "cfg_comb_mult": In(16), "cfg_comb_shift": In(5),
            "clear": In(1),
            # status
            "busy": Out(1), "err": Out(4), "sptc_err": Out(4), "pim_err": Out(4),
            "cycles": Out(32), "sptc_busy": Out(32), "pim_busy": Out(32),
            "sptc_jobs": Out(16), "pim_jobs": Out(16), "steps": Out(16),
        })

    def elaborate(self, platform):
        cfg = self.cfg
        scfg, pcfg = cfg.sptc, cfg.pim
        C = scfg.cols
        m = Module()
        m.submodules.sptc = sptc = SparseTensorCore(scfg)
        m.submodules.pim = pim = PIMUnit(pcfg)
        wiring.connect(m, wiring.flipped(self.sptc_w), sptc.w)
        wiring.connect(m, wiring.flipped(self.sptc_act), sptc.act)
        wiring.connect(m, wiring.flipped(self.pim_din), pim.din)
        m.d.comb += [sptc.clear.eq(self.clear), pim.clear.eq(self.clear),
                     self.sptc_err.eq(sptc.error), self.pim_err.eq(pim.err)]

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
        m.d.comb += cfg_ok.eq((self.cfg_hidden != 0) & (self.cfg_hidden <= cfg.max_hidden)
                              & (self.cfg_pim_kw != 0) & (self.cfg_pim_kw <= pcfg.max_k_words))
        pim_span = Signal(40)
        m.d.comb += pim_span.eq(arg[:32] + self.cfg_hidden * self.cfg_pim_kw)
        raw_op = data.View(INSTR_LAYOUT, arg).op
        raw_ok = or_all(raw_op == op for op in RAW_OK)
        bad = Signal()
        m.d.comb += bad.eq(Mux(
            kind == KIND_EXPERT,
            (slots == 0) | (slots > max_slots) | (expert >= self.cfg_experts) | ~cfg_ok
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
        n_chunk = Signal(9)           # beats per token: ceil(cfg_hidden / lanes)
        m.d.comb += n_chunk.eq((self.cfg_hidden + (L - 1)) >> lb)
        # one bank per SpTC column, so a whole result beat (cols distinct tokens, one row)
        # is combined in one cycle; an element's value is the sum over the banks. A word
        # holds ``lanes`` rows of one token (address: token, row // lanes).
        word = data.ArrayLayout(signed(32), L)
        wps, rps = [], []
        for b in range(C):
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
        list_s = Array(Signal(TOK_BITS, name=f"list_s{i}") for i in range(cfg.sptc_max_slots))
        list_p = Array(Signal(TOK_BITS, name=f"list_p{i}") for i in range(cfg.pim_max_slots))
        p_done = Signal()
        s_op, s_n = Signal(), Signal(9)
        s_cnt = Signal(9)
        t_loaded = Signal(9)
        m.d.comb += [sptc.op.eq(s_op), sptc.mode.eq(self.cfg_mode),
                     sptc.out_mode.eq(Mux(s_op == OP_LOAD, 0, 2)),
                     sptc.mult.eq(Mux(s_op == OP_LOAD, 0, self.cfg_mult)),
                     sptc.shift.eq(Mux(s_op == OP_LOAD, 0, self.cfg_shift)),
                     sptc.k_words.eq(self.cfg_k_words), sptc.v_steps.eq(self.cfg_k_words),
                     sptc.m_rows.eq(Mux(s_op == OP_LOAD, 1, self.cfg_hidden)),
                     sptc.n_row_tiles.eq(Mux(s_op == OP_LOAD, 1, self.cfg_row_tiles)),
                     sptc.n_sel.eq(Mux(s_op == OP_LOAD, 0, s_n)),
                     sptc.n_tokens.eq(Mux(s_op == OP_LOAD, s_n, t_loaded)),
                     sptc.sam_n.eq(1), sptc.sam_m.eq(1)]
        sd = data.View(DESC_LAYOUT, jf[0].r_data)
        m.d.comb += [sptc.sel.payload.eq(data.View(TOK_LAYOUT, tf[0].r_data).tok)]
        with m.FSM(name="sctl") as sfsm:
            with m.State("IDLE"):
                with m.If(jf[0].r_rdy):
                    m.d.comb += jf[0].r_en.eq(1)
                    m.d.sync += [s_n.eq(sd.slots), s_exp.eq(sd.expert),
                                 s_slots.eq(sd.slots), s_cnt.eq(0)]
                    with m.If(sd.kind == KIND_LOAD):
                        m.d.sync += [s_op.eq(OP_LOAD), t_loaded.eq(sd.slots)]
                        m.next = "START"
                    with m.Else():
                        m.d.sync += s_op.eq(OP_MATMUL)
                        m.next = "ANN"
            with m.State("ANN"):
                m.d.comb += s_ann.eq(1)
                with m.If(s_ann_ok):
                    m.next = "START"
            with m.State("START"):
                m.d.comb += sptc.start.eq(1)
                m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += sptc.sel.valid.eq((s_op == OP_MATMUL) & tf[0].r_rdy & (s_cnt < s_n))
                with m.If(sptc.sel.valid & sptc.sel.ready):
                    m.d.comb += tf[0].r_en.eq(1)
                    m.d.sync += [list_s[s_cnt[:bits_for(cfg.sptc_max_slots)]].eq(tf[0].r_data),
                                 s_cnt.eq(s_cnt + 1)]
                with m.If(sptc.done):
                    with m.If((s_op == OP_MATMUL) & (s_cnt < s_n)):
                        m.next = "FLUSH"
                    with m.Else():
                        with m.If(s_op == OP_MATMUL):
                            m.d.sync += self.sptc_jobs.eq(self.sptc_jobs + 1)
                        m.next = "IDLE"
            with m.State("FLUSH"):   # the SpTC ended early (bad job): drop the rest of the list
                with m.If(tf[0].r_rdy):
                    m.d.comb += tf[0].r_en.eq(1)
                    m.d.sync += s_cnt.eq(s_cnt + 1)
                    with m.If(s_cnt == s_n - 1):
                        m.d.sync += self.sptc_jobs.eq(self.sptc_jobs + 1)
                        m.next = "IDLE"
        m.d.comb += s_idle.eq(sfsm.ongoing("IDLE"))
        s_in_job = sfsm.ongoing("RUN") & (s_op == OP_MATMUL)

        # ------------------------------------------------------------ PIM controller
        pd = data.View(DESC_LAYOUT, jf[1].r_data)
        p_arg = Signal(64)
        p_n = Signal(9)
        p_cnt = Signal(9)
        p_i, p_j = Signal(9), Signal(9)
        load_w = Signal(INSTR_LAYOUT)
        gemm_w = Signal(INSTR_LAYOUT)
        m.d.comb += [
            load_w.op.eq(OPCODES["LOAD_TOKENS"]), load_w.args.load_tokens.t.eq(p_n[:8]),
            load_w.args.load_tokens.kw.eq(self.cfg_pim_kw),
            gemm_w.op.eq(OPCODES["GEMM"]), gemm_w.args.gemm.addr.eq(p_arg[:32]),
            gemm_w.args.gemm.n.eq(self.cfg_hidden),
        ]
        with m.FSM(name="pctl") as pfsm:
            with m.State("IDLE"):
                with m.If(jf[1].r_rdy):
                    m.d.comb += jf[1].r_en.eq(1)
                    m.d.sync += [p_arg.eq(pd.arg), p_n.eq(pd.slots),
                                 p_exp.eq(pd.expert), p_slots.eq(pd.slots),
                                 p_cnt.eq(0), p_i.eq(0), p_j.eq(0)]
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
                        m.next = "I_LOAD"
            with m.State("I_LOAD"):
                m.d.comb += [pim.instr.valid.eq(1), pim.instr.payload.eq(load_w)]
                with m.If(pim.instr.ready):
                    m.next = "I_GEMM"
            with m.State("I_GEMM"):
                m.d.comb += [pim.instr.valid.eq(1), pim.instr.payload.eq(gemm_w)]
                with m.If(pim.instr.ready):
                    m.next = "OUT"
            with m.State("OUT"):
                with m.If(p_done):
                    m.next = "IDLE"
        m.d.comb += p_idle.eq(pfsm.ongoing("IDLE"))
        p_out_phase = pfsm.ongoing("OUT")

        # ------------------------------------------------------------ combine
        busy_terms = []
        res = sptc.res.payload
        s_valid = sptc.res.valid & s_in_job
        p_valid = pim.out.valid & p_out_phase
        prio = Signal()
        g_s, g_p = Signal(), Signal()
        m.d.comb += [g_p.eq(p_valid & (~s_valid | prio)), g_s.eq(s_valid & ~g_p)]
        with m.If(g_s | g_p):
            m.d.sync += prio.eq(g_s)
        m.d.comb += sptc.res.ready.eq(g_s)
        with m.If(g_p):
            m.d.comb += pim.out.ready.eq(1)
            with m.If(p_j == p_n - 1):
                m.d.sync += [p_j.eq(0), p_i.eq(p_i + 1)]
            with m.Else():
                m.d.sync += p_j.eq(p_j + 1)
            with m.If(pim.out.payload.last):
                m.d.comb += p_done.eq(1)
                m.d.sync += self.pim_jobs.eq(self.pim_jobs + 1)
        ent_p = list_p[p_j[:bits_for(cfg.pim_max_slots)]]
        sb = bits_for(cfg.sptc_max_slots)
        cb = hb - lb                  # chunk-index bits of a word address
        dr_addr = Cat(dr_r[:cb], dr_t[:tb])
        last_r = dr_r == n_chunk - 1
        dr_next = Cat(Mux(last_r, 0, dr_r + 1)[:cb], Mux(last_r, dr_t + 1, dr_t)[:tb])
        sums = [0] * L
        for b in range(C):
            # stage A: bank b takes column b of the SpTC beat, or (bank 0) the PIM element
            j = Signal(16, name=f"s_j{b}")
            m.d.comb += j.eq((res.tile << bits_for(C) if C > 1 else res.tile) | b)
            ent_s = list_s[j[:sb]]
            ent_w = Signal(TOK_BITS, name=f"ent{b}")
            ent = data.View(TOK_LAYOUT, ent_w)
            y = Signal(signed(8), name=f"a_y{b}")
            row = Signal(9, name=f"a_row{b}")
            en = Signal(name=f"a_en{b}")
            if b == 0:
                m.d.comb += [ent_w.eq(Mux(g_p, ent_p, ent_s)),
                             y.eq(Mux(g_p, pim.out.payload.value[:8].as_signed(),
                                      res.data[0][b][:8].as_signed())),
                             row.eq(Mux(g_p, p_i, res.row)),
                             en.eq((g_p | (g_s & res.mask[b])) & ent.valid)]
            else:
                m.d.comb += [ent_w.eq(ent_s), y.eq(res.data[0][b][:8].as_signed()),
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
                         rq.mult.eq(self.cfg_comb_mult), rq.shift.eq(self.cfg_comb_shift),
                         self.y.payload.value[i].eq(rq.out[:8])]   # requant: int8
        m.d.comb += [self.y.payload.token.eq(dr_t[:8]),
                     self.y.payload.row.eq((dr_r << lb)[:8])]

        # ------------------------------------------------------------ status
        m.d.comb += err_set[log2(ERR_SPTC)].eq(sptc.error != 0)
        m.d.comb += err_set[log2(ERR_PIM)].eq(pim.err != 0)
        busy = Signal()
        m.d.comb += [busy.eq(~dfsm.ongoing("IDLE") | jf[0].r_rdy | jf[1].r_rdy | ~s_idle
                             | ~p_idle | ~comb_idle | pim.busy | sptc.busy), self.busy.eq(busy)]
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
