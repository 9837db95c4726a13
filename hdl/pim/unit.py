"""The Logic-PIM unit: instruction queue, sequencer, token buffer, DRAM controller,
pseudo-channel model, weight FIFO, GEMM engine, output FIFO and status.

Ports (Verilog names follow Amaranth: ``instr__payload/__valid/__ready`` ...):

* ``instr``  in  stream, 64-bit instruction words (``golden.pim.isa.INSTR_LAYOUT``)
* ``din``    in  stream, ``bundle_bits`` data words (LOAD_TOKENS, WRITE operands)
* ``out``    out stream, {value: signed 32, last: 1}; int8 modes sign-extend
* ``clear``  in  clears the sticky error bits and the busy-cycle counter
* ``busy``, ``err`` (sticky bit mask, golden.pim ERR_*), ``perf_cycles``
  (cycles with busy high since the last clear), ``ref_phase`` (refresh timer),
  ``dram_fault`` (the pseudo-channel saw a command illegal for its bank state)
* ``cmd_valid/kind/bundle/row/col``: the DRAM command bus, for timing checkers.

Instructions execute one after another. A bad instruction (illegal opcode,
address out of range, bad token count/K, bad field) sets its error bits and is
dropped without consuming data words; the unit keeps going.

With ``attn_heads > 0`` the unit also runs decode attention (docs/attention.md):
SET_KV sets the KV-cache registers; APPEND_KV and ATTN are latched and checked in
the cycle after their fetch (state KVCHK); APPEND_KV is two write jobs (K row, V
row); ATTN waits until earlier outputs have left, runs the score pass on the GEMM
engine (results into the attention engine's score buffer, int32) and leaves the
softmax, the value pass and the output on :class:`hdl.pim.attn.AttnEngine` pending
until the next ATTN's score pass has run or another instruction needs the unit
(``hdl.pim.attnseq``).
"""
from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.pim.config import PIMConfig
from golden.pim.isa import (ERR_ADDR, ERR_FIELD, ERR_OPCODE, ERR_TOKENS, INSTR_BITS,
                            INSTR_LAYOUT, OPCODES)

from ..common import bits_for, log2
from .attnseq import AttnSequencer
from .ctrl import DRAMController
from .dram import PseudoChannel
from .gemm import GEMMEngine, kw_stride

OUT_LAYOUT = data.StructLayout({"value": signed(32), "last": 1})


class PIMUnit(wiring.Component):
    def __init__(self, cfg: PIMConfig):
        self.cfg = cfg
        super().__init__({
            "instr": In(stream.Signature(INSTR_BITS)),
            "din": In(stream.Signature(cfg.bundle_bits)),
            "out": Out(stream.Signature(OUT_LAYOUT)),
            "clear": In(1),
            "busy": Out(1), "err": Out(4), "perf_cycles": Out(32), "ref_phase": Out(16),
            "dram_fault": Out(1),
            "cmd_valid": Out(1), "cmd_kind": Out(3), "cmd_bundle": Out(bits_for(cfg.bundles)),
            "cmd_row": Out(bits_for(cfg.rows)), "cmd_col": Out(bits_for(cfg.cols)),
        })

    def elaborate(self, platform):
        cfg = self.cfg
        m = Module()
        m.submodules.ififo = ififo = fifo.SyncFIFOBuffered(width=INSTR_BITS, depth=cfg.instr_depth)
        m.submodules.ctrl = ctrl = DRAMController(cfg)
        m.submodules.dram = dram = PseudoChannel(cfg)
        m.submodules.wfifo = wfifo = fifo.SyncFIFOBuffered(width=cfg.bundle_bits,
                                                           depth=cfg.wfifo_depth)
        m.submodules.gemm = gemm = GEMMEngine(cfg)
        m.submodules.ofifo = ofifo = fifo.SyncFIFOBuffered(width=33, depth=cfg.out_depth)
        stride = kw_stride(cfg)
        buf = m.submodules.tokbuf = memory.Memory(shape=cfg.bundle_bits,
                                                  depth=cfg.max_tokens * stride, init=[])
        bw = buf.write_port()
        br = buf.read_port()

        # ---- instruction queue
        m.d.comb += [ififo.w_data.eq(self.instr.payload), ififo.w_en.eq(self.instr.valid),
                     self.instr.ready.eq(ififo.w_rdy)]

        # ---- command bus between controller and pseudo-channel (and out to the checker)
        for name in ("cmd_valid", "cmd_kind", "cmd_bundle", "cmd_row", "cmd_col"):
            m.d.comb += [getattr(dram, name).eq(getattr(ctrl, name)),
                         getattr(self, name).eq(getattr(ctrl, name))]
        m.d.comb += [dram.wdata.eq(self.din.payload), self.dram_fault.eq(dram.fault),
                     self.ref_phase.eq(ctrl.ref_phase)]

        # ---- weight path: pseudo-channel -> FIFO -> GEMM
        m.d.comb += [wfifo.w_data.eq(dram.rdata), wfifo.w_en.eq(dram.rvalid),
                     gemm.w_data.eq(wfifo.r_data), gemm.w_rdy.eq(wfifo.r_rdy),
                     br.addr.eq(gemm.buf_addr), gemm.buf_data.eq(br.data)]
        if not cfg.attn_heads:
            m.d.comb += [wfifo.r_en.eq(gemm.w_pop), ctrl.rd_pop.eq(gemm.w_pop)]

        # ---- output path
        taken = self.out.valid & self.out.ready
        m.d.comb += [self.out.payload.eq(ofifo.r_data), self.out.valid.eq(ofifo.r_rdy),
                     ofifo.r_en.eq(self.out.ready)]
        if not cfg.attn_heads:
            m.d.comb += [ofifo.w_data.eq(Cat(gemm.out_value, gemm.out_last)),
                         ofifo.w_en.eq(gemm.out_we), gemm.out_taken.eq(taken)]

        # ---- registers of the sequencer
        have = Signal()
        t_r = Signal(8)
        kw_r = Signal(12)
        mode, mult, shift = Signal(2), Signal(16), Signal(5)
        m.d.comb += [gemm.mult.eq(mult), gemm.shift.eq(shift)]
        err = Signal(4)
        new_err = Signal(4)
        m.d.sync += err.eq(Mux(self.clear, 0, err) | new_err)
        m.d.comb += self.err.eq(err)
        lj = Signal(8)
        lc = Signal(12)

        # ---- decode (combinational on the head of the queue)
        w = data.View(INSTR_LAYOUT, ififo.r_data)
        op = w.op
        f_t, f_kw = w.args.load_tokens.t, w.args.load_tokens.kw
        f_addr, f_count, f_n = w.args.write.addr, w.args.write.count, w.args.gemm.n
        f_mode, f_shift, f_mult = w.args.set_out.mode, w.args.set_out.shift, w.args.set_out.mult
        nkw = Signal(28)
        m.d.comb += nkw.eq(f_n * kw_r)
        e_load = Signal(4)
        e_write = Signal(4)
        e_gemm = Signal(4)
        e_set = Signal(4)
        m.d.comb += [
            e_load.eq(Mux((f_t == 0) | (f_t > cfg.max_tokens) | (f_kw == 0)
                           | (f_kw > cfg.max_k_words), ERR_TOKENS, 0)),
            e_write.eq(Mux(f_count == 0, ERR_FIELD, 0)
                       | Mux(f_addr + f_count > cfg.words, ERR_ADDR, 0)),
            e_gemm.eq(Mux(f_n == 0, ERR_FIELD, 0) | Mux(~have, ERR_TOKENS, 0)
                      | Mux(f_addr + nkw > cfg.words, ERR_ADDR, 0)),
            e_set.eq(Mux((f_mode == 3) | ((f_mode == 2) & (f_shift == 0))
                          | ((f_mode < 2) & ((f_shift != 0) | (f_mult != 0))), ERR_FIELD, 0)),
        ]

        m.d.comb += [gemm.kw.eq(kw_r), gemm.t.eq(t_r)]
        attn = AttnSequencer(cfg, m, ififo, ctrl, gemm, w, have, t_r, kw_r, new_err,
                             (mode, mult, shift), ofifo, wfifo, taken) if cfg.attn_heads else None
        if attn is None:
            m.d.comb += [ctrl.job_addr.eq(f_addr), gemm.n.eq(f_n), gemm.mode.eq(mode)]

        with m.FSM(name="seq") as fsm:
            with m.State("FETCH"):
                fetch_ok = ififo.r_rdy
                if attn is not None:          # a pending ATTN tail runs first
                    with m.If(attn.flush):
                        attn.go_flush(m)
                    fetch_ok = ififo.r_rdy & ~attn.flush
                with m.If(fetch_ok):
                    m.d.comb += ififo.r_en.eq(1)
                    with m.Switch(op):
                        with m.Case(OPCODES["NOP"]):
                            pass
                        with m.Case(OPCODES["SET_OUT"]):
                            with m.If(e_set != 0):
                                m.d.comb += new_err.eq(e_set)
                            with m.Else():
                                m.d.sync += [mode.eq(f_mode), shift.eq(f_shift), mult.eq(f_mult)]
                        with m.Case(OPCODES["FENCE"]):
                            m.next = "FENCE"
                        with m.Case(OPCODES["LOAD_TOKENS"]):
                            with m.If(e_load != 0):
                                m.d.comb += new_err.eq(e_load)
                            with m.Else():
                                m.d.sync += [have.eq(1), t_r.eq(f_t), kw_r.eq(f_kw),
                                             lj.eq(0), lc.eq(0)]
                                m.next = "LOAD"
                        with m.Case(OPCODES["WRITE"]):
                            with m.If(e_write != 0):
                                m.d.comb += new_err.eq(e_write)
                            with m.Else():
                                m.d.comb += [ctrl.job_start.eq(1), ctrl.job_write.eq(1),
                                             ctrl.job_count.eq(f_count)]
                                m.next = "WRITE"
                        with m.Case(OPCODES["GEMM"]):
                            with m.If(e_gemm != 0):
                                m.d.comb += new_err.eq(e_gemm)
                            with m.Else():
                                m.d.comb += [ctrl.job_start.eq(1), ctrl.job_write.eq(0),
                                             ctrl.job_count.eq(nkw), gemm.start.eq(1)]
                                m.next = "GEMM"
                        if attn is not None:
                            attn.fetch_cases(m)
                        with m.Default():
                            m.d.comb += new_err.eq(ERR_OPCODE)
            with m.State("LOAD"):
                with m.If(self.din.valid):
                    with m.If(lc == kw_r - 1):
                        m.d.sync += [lc.eq(0), lj.eq(lj + 1)]
                        with m.If(lj == t_r - 1):
                            m.next = "FETCH"
                    with m.Else():
                        m.d.sync += lc.eq(lc + 1)
            with m.State("WRITE"):
                with m.If(~ctrl.job_busy):
                    m.next = "FETCH"
            with m.State("GEMM"):
                with m.If(gemm.done):
                    m.next = "FETCH"
            with m.State("FENCE"):
                with m.If(~gemm.reserved_nz):
                    m.next = "FETCH"
            if attn is not None:
                attn.states(m)

        # Data-stream routing as plain expressions, not FSM-scoped comb statements:
        # Icarus never runs an ``always @*`` block whose inputs keep their initial
        # values, which left ``din__ready`` X while the sequencer idled in FETCH.
        in_load, in_write = fsm.ongoing("LOAD"), fsm.ongoing("WRITE")
        lk = log2(cfg.max_k_words)
        if attn is not None:
            in_write = in_write | attn.writing(fsm)
            attn.route(m, fsm)
        m.d.comb += [self.din.ready.eq(in_load | (in_write & ctrl.wr_take)),
                     ctrl.wdata_valid.eq(in_write & self.din.valid),
                     bw.addr.eq(Cat(lc[:lk], lj) if lk else lj),
                     bw.data.eq(self.din.payload), bw.en.eq(in_load & self.din.valid)]

        busy = Signal()
        busy_any = ~fsm.ongoing("FETCH") | (ififo.level != 0) | gemm.reserved_nz
        if attn is not None:
            busy_any = busy_any | attn.pend
        m.d.comb += [busy.eq(busy_any), self.busy.eq(busy)]
        with m.If(self.clear):
            m.d.sync += self.perf_cycles.eq(0)
        with m.Elif(busy):
            m.d.sync += self.perf_cycles.eq(self.perf_cycles + 1)
        return m

