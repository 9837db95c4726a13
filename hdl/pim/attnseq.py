"""The Logic-PIM sequencer's decode-attention part (a helper of
:meth:`hdl.pim.unit.PIMUnit.elaborate`, built only when ``attn_heads > 0``).

* registers: the KV cache's ``base``, ``cap``, ``kw`` (SET_KV), with ``2 cap kw``
  and ``cap kw`` precomputed; the latched APPEND_KV / ATTN word;
* FETCH: SET_KV checks and sets the registers in its fetch cycle; APPEND_KV and
  ATTN are latched and go to ``KVCHK``;
* ``KVCHK`` (one cycle after the fetch): the address, head and field checks on the
  registers (docs/attention.md's error table); a rejected word sets its bits and
  the next fetch follows; APPEND_KV starts its K write job (``APPK``, then the V
  job in ``APPV``); ATTN waits until no earlier output is pending, then starts the
  K read job and the GEMM engine into the next score buffer (``A_SCORE``); when the
  score pass ends it hands the softmax job to the engine and leaves the rest of
  the ATTN, its *tail* (the V read job, the value pass, the output), pending;
* a pending tail runs (``T_WAIT`` until its probabilities are ready, then ``T_PV``
  until its last output has been taken) right after the next ATTN's score pass
  (so the next softmax and score pass overlap it), or, from FETCH, before any
  instruction other than LOAD_TOKENS, NOP and ATTN, or when the instruction queue
  is empty.

During ATTN the GEMM engine writes int32 results into the attention engine's
score buffer (its mode forced to int32, each result counted as taken as it is
written); the output FIFO carries only the attention engine's values.
"""
from __future__ import annotations

from amaranth import Cat, Mux, Signal
from amaranth.lib import data

from golden.pim.config import PIMConfig
from golden.pim.isa import ERR_ADDR, ERR_FIELD, ERR_TOKENS, INSTR_BITS, INSTR_LAYOUT, OPCODES
from golden.softmax import SHIFT_MAX

from .attn import AttnEngine


class AttnSequencer:
    def __init__(self, cfg: PIMConfig, m, ififo, ctrl, gemm, w, have, t_r, kw_r, new_err,
                 out_regs, ofifo, wfifo, taken):
        self.cfg, self.ififo, self.ctrl, self.gemm, self.w = cfg, ififo, ctrl, gemm, w
        self.new_err, self.ofifo, self.wfifo, self.taken = new_err, ofifo, wfifo, taken
        mode, mult, shift = self.out_regs = out_regs
        m.submodules.attn = eng = self.eng = AttnEngine(cfg)

        # ---- registers
        self.kv_set = Signal()
        self.kv_base, self.kv_cap, self.kv_kw = Signal(32), Signal(16), Signal(12)
        self.kv_stride, self.kv_half = Signal(29), Signal(28)
        self.iw = Signal(INSTR_BITS)
        self.sm_mult, self.sm_shift = Signal(16), Signal(6)
        # the ATTN in its score pass (cur) and the one whose tail is pending (pnd)
        self.cur = dict(v=Signal(32, name="cur_v"), nkw=Signal(28, name="cur_nkw"),
                        n=Signal(16, name="cur_n"), g=Signal(8, name="cur_g"),
                        bank=Signal(name="cur_bank"))
        self.pnd = {k: Signal.like(v, name=f"pnd_{k}") for k, v in self.cur.items()}
        self.pend, self.chain, self.nb = Signal(), Signal(), Signal()
        m.d.comb += [eng.kw.eq(self.kv_kw), eng.sm_mult.eq(self.sm_mult),
                     eng.sm_shift.eq(self.sm_shift), eng.mode.eq(mode), eng.mult.eq(mult),
                     eng.shift.eq(shift),
                     eng.w_data.eq(wfifo.r_data), eng.w_rdy.eq(wfifo.r_rdy)]

        # ---- SET_KV checks (fetch cycle, on the queue head)
        a = w.args.set_kv
        self.f_base, self.f_cap, self.f_kw = a.base, a.cap, a.kw
        prod = Signal(29)
        m.d.comb += prod.eq(a.cap * a.kw)
        self.f_prod = prod
        self.e_setkv = e = Signal(4)
        m.d.comb += e.eq(Mux((a.kw == 0) | (a.kw > cfg.attn_kw), ERR_TOKENS, 0)
                         | Mux(a.cap == 0, ERR_FIELD, 0)
                         | Mux((a.cap > cfg.attn_len) | (a.base + 2 * prod > cfg.words),
                               ERR_ADDR, 0))

        # ---- APPEND_KV / ATTN checks and addresses (KVCHK, on the latched word)
        iv = data.View(INSTR_LAYOUT, self.iw)
        slot, pos = iv.args.append_kv.slot, iv.args.append_kv.pos
        self.i_len = ln = iv.args.attn.len
        self.i_mult, self.i_shift = iv.args.attn.mult, iv.args.attn.shift
        self.is_app = iv.op == OPCODES["APPEND_KV"]
        slot_off, pos_off = Signal(45), Signal(28)
        m.d.comb += [slot_off.eq(slot * self.kv_stride), pos_off.eq(pos * self.kv_kw)]
        self.k_addr, self.v_addr = Signal(32), Signal(32)
        m.d.comb += [self.k_addr.eq(self.kv_base + slot_off + Mux(self.is_app, pos_off, 0)),
                     self.v_addr.eq(self.k_addr + self.kv_half)]
        self.nkw = Signal(28)
        m.d.comb += self.nkw.eq(ln * self.kv_kw)
        e_slot = Mux(self.kv_base + slot_off + self.kv_stride > cfg.words, ERR_ADDR, 0)
        e_app = e_slot | Mux(pos >= self.kv_cap, ERR_ADDR, 0)
        e_attn = (e_slot
                  | Mux((ln == 0) | (self.i_shift == 0) | (self.i_shift > SHIFT_MAX), ERR_FIELD, 0)
                  | Mux(ln > self.kv_cap, ERR_ADDR, 0)
                  | Mux(~have | (t_r > cfg.attn_heads) | (kw_r != self.kv_kw), ERR_TOKENS, 0))
        self.e_kv = Signal(4)
        m.d.comb += self.e_kv.eq(Mux(~self.kv_set, ERR_FIELD, Mux(self.is_app, e_app, e_attn)))
        self.t_r = t_r
        self.flush = Signal()
        op = w.op
        m.d.comb += self.flush.eq(self.pend & (~ififo.r_rdy | ~(
            (op == OPCODES["LOAD_TOKENS"]) | (op == OPCODES["NOP"]) | (op == OPCODES["ATTN"]))))

    def fetch_cases(self, m):
        """The FETCH cases of the three opcodes (inside the sequencer's Switch)."""
        with m.Case(OPCODES["SET_KV"]):
            with m.If(self.e_setkv != 0):
                m.d.comb += self.new_err.eq(self.e_setkv)
            with m.Else():
                m.d.sync += [self.kv_set.eq(1), self.kv_base.eq(self.f_base),
                             self.kv_cap.eq(self.f_cap), self.kv_kw.eq(self.f_kw),
                             self.kv_stride.eq(2 * self.f_prod), self.kv_half.eq(self.f_prod)]
        with m.Case(OPCODES["APPEND_KV"], OPCODES["ATTN"]):
            m.d.sync += self.iw.eq(self.ififo.r_data)
            m.next = "KVCHK"

    def states(self, m):
        ctrl, gemm, eng = self.ctrl, self.gemm, self.eng
        with m.State("KVCHK"):
            with m.If(self.e_kv != 0):
                m.d.comb += self.new_err.eq(self.e_kv)
                m.next = "FETCH"
            with m.Elif(self.is_app):
                m.d.comb += [ctrl.job_start.eq(1), ctrl.job_write.eq(1),
                             ctrl.job_count.eq(self.kv_kw)]
                m.next = "APPK"
            with m.Elif(~gemm.reserved_nz):
                cur = self.cur
                m.d.comb += [ctrl.job_start.eq(1), ctrl.job_write.eq(0),
                             ctrl.job_count.eq(self.nkw), gemm.start.eq(1), eng.s_begin.eq(1)]
                m.d.sync += [cur["v"].eq(self.v_addr), cur["nkw"].eq(self.nkw),
                             cur["n"].eq(self.i_len), cur["g"].eq(self.t_r),
                             cur["bank"].eq(self.nb), self.nb.eq(~self.nb),
                             self.sm_mult.eq(self.i_mult), self.sm_shift.eq(self.i_shift)]
                m.next = "A_SCORE"
        with m.State("APPK"):
            with m.If(~ctrl.job_busy):
                m.d.comb += [ctrl.job_start.eq(1), ctrl.job_write.eq(1),
                             ctrl.job_count.eq(self.kv_kw)]
                m.next = "APPV"
        with m.State("APPV"):
            with m.If(~ctrl.job_busy):
                m.next = "FETCH"
        with m.State("A_SCORE"):
            with m.If(gemm.done):
                m.d.comb += eng.sm_start.eq(1)
                with m.If(self.pend):
                    m.d.sync += self.chain.eq(1)
                    m.next = "T_WAIT"
                with m.Else():
                    m.d.sync += [self.pend.eq(1)] + [self.pnd[k].eq(v) for k, v in self.cur.items()]
                    m.next = "FETCH"
        with m.State("T_WAIT"):
            with m.If(self.eng.p_ready.bit_select(self.pnd["bank"], 1)):
                m.d.comb += [ctrl.job_start.eq(1), ctrl.job_write.eq(0),
                             ctrl.job_count.eq(self.pnd["nkw"]), eng.pv_start.eq(1)]
                m.next = "T_PV"
        with m.State("T_PV"):
            with m.If(eng.done):
                m.d.sync += self.chain.eq(0)
                with m.If(self.chain):
                    m.d.sync += [self.pnd[k].eq(v) for k, v in self.cur.items()]
                with m.Else():
                    m.d.sync += self.pend.eq(0)
                m.next = "FETCH"

    @staticmethod
    def go_flush(m):
        """FETCH with a pending tail and nothing that may run before it."""
        m.next = "T_WAIT"

    @staticmethod
    def writing(fsm):
        """The states whose write jobs take data words."""
        return fsm.ongoing("APPK") | fsm.ongoing("APPV")

    def route(self, m, fsm):
        """Address, GEMM and FIFO muxes between the GEMM instructions and ATTN."""
        ctrl, gemm, eng, w = self.ctrl, self.gemm, self.eng, self.w
        in_chk, in_tw = fsm.ongoing("KVCHK"), fsm.ongoing("T_WAIT")
        attn = fsm.ongoing("A_SCORE") | in_tw | fsm.ongoing("T_PV")
        job = {k: Mux(in_tw, self.pnd[k], self.cur[k]) for k in ("n", "g", "bank")}
        m.d.comb += [
            eng.job_n.eq(job["n"]), eng.job_g.eq(job["g"]),
            eng.job_bank.eq(Mux(in_chk, self.nb, job["bank"])),
            ctrl.job_addr.eq(Mux(in_chk, self.k_addr,
                                 Mux(fsm.ongoing("APPK"), self.v_addr,
                                     Mux(in_tw, self.pnd["v"], w.args.write.addr)))),
            gemm.n.eq(Mux(in_chk, self.i_len, w.args.gemm.n)),
            gemm.mode.eq(Mux(attn, 0, self.out_regs[0])),
            eng.s_we.eq(attn & gemm.out_we), eng.s_data.eq(gemm.out_value),
            self.ofifo.w_data.eq(Mux(attn, Cat(eng.out_value, eng.out_last),
                                     Cat(gemm.out_value, gemm.out_last))),
            self.ofifo.w_en.eq(Mux(attn, eng.out_we, gemm.out_we)),
            gemm.out_taken.eq(Mux(attn, gemm.out_we, self.taken)),
            eng.out_taken.eq(attn & self.taken),
            self.wfifo.r_en.eq(gemm.w_pop | eng.w_pop),
            ctrl.rd_pop.eq(gemm.w_pop | eng.w_pop),
        ]
