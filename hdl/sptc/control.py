"""The SpTC's job control (about 530 lines: its parts share the job registers): job
registers, CHECK cycle, FSM, counters, SEL/LOAD control, issue stage, error bits.

A job starts with one CHECK cycle: the control ports are registered every cycle
(``*_sh``) and at start (the CHECK-only registers and the job checks, each a
registered compare of the ports), CHECK ORs the checks and derives the
counters' end values from those registers (a LOAD's token counter starts at
``tok_base`` and ends at ``tok_base + n_tokens - 1``). FSM: IDLE -> CHECK -> LOAD -> IDLE
(activation words into the buffers), or CHECK -> SEL -> RUN -> WAIT -> IDLE
(SEL entries into the banks, the weight beats issued, the unit drained);
CHECK -> IDLE with ``ERR_CONFIG`` on a bad job (a LOAD past the buffer's last
token: CHECK -> LOAD -> IDLE taking no word, ``ERR_CONFIG`` rising with ``done``).

The datapath steps under registers equal to the FSM's state (``load_q``,
``sel_q``, ``run_q``) and under copies of the counters' "at the last value"
flags (:func:`hdl.fpga.replicas`); copies of a state register are loaded from its
next-state value, so they equal it in every cycle. The issue gate lets a tile
start only while at most one older tile is in the unit (``pend``): the array
never stalls. The issue stage (``s1_*``) registers each beat taken, with the
token tile, row tile and flush flags the PE array and the store need; the beat's
metadata and Samoyeds indices are checked there (sticky error bits, the job runs
on). docs/timing.md explains the copies and flags.
"""
from __future__ import annotations

from amaranth import Assert, Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from golden.sptc import ERR_CONFIG, ERR_INDEX, ERR_META, ERR_SEL, MODE_CODES, OP_LOAD, SpTCConfig

from ..common import bits_for, le_const, or_all
from ..fpga import replicas
from .buffers import tt_width
from .config import sel_layout, weight_layout
from .selcheck import SelCheck

DENSE, SAMOYEDS = MODE_CODES["dense"], MODE_CODES["samoyeds"]


def meta_width(cfg: SpTCConfig) -> int:
    """The issue stage's tile metadata: token tile (16), base row (16), column mask."""
    return 32 + cfg.cols


def control_ports(cfg: SpTCConfig) -> dict:
    """The SpTC's control and status ports (shared with the top)."""
    kwb = bits_for(cfg.max_kw + 1)
    return {"start": In(1), "clear": In(1),
            "op": In(1), "mode": In(2), "out_mode": In(2), "mult": In(16), "shift": In(5),
            "k_words": In(kwb + 1), "v_steps": In(kwb + 1), "m_rows": In(16),
            "n_row_tiles": In(16), "n_sel": In(16), "n_tokens": In(16),
            "sam_n": In(5), "sam_m": In(5), "tok_base": In(bits_for(cfg.max_tokens)),
            "busy": Out(1), "done": Out(1), "error": Out(4), "cycles": Out(32)}


class JobControl(wiring.Component):
    """Ports: the SpTC's control ports, the three input streams (``act`` and ``sel``
    only their handshake side: the data goes to :class:`OperandBuffers`), the
    buffers' write and read control, the issue stage, the job constants the
    datapath reads, and the unit's status (``pe_inflight``: a beat in s1b .. s2;
    ``tail_idle``: nothing in the store, drain, output pipeline and FIFO;
    ``drain_done``: a tile left the drain bank)."""

    def __init__(self, cfg: SpTCConfig, *, formal: bool = False):
        self.cfg = cfg
        self.formal = bool(formal)
        C, L = cfg.cols, cfg.sel_lanes
        kw_bits, tok_bits = bits_for(cfg.max_kw), bits_for(cfg.max_tokens)
        super().__init__({
            **control_ports(cfg),
            "w": In(stream.Signature(weight_layout(cfg))),
            "act_valid": In(1), "act_ready": Out(1),
            "sel": In(stream.Signature(sel_layout(cfg))),
            "act_wr_addr": Out(kw_bits + tok_bits), "act_wr_en": Out(1),
            "sel_wr_addr": Out(bits_for(cfg.max_sel // C)), "sel_wr_en": Out(C),
            "tok_first": Out(C), "tok_load": Out(C), "tt": Out(tt_width(cfg)),
            "gw": Out(kw_bits).array(C),
            "s1_valid": Out(1), "s1_first": Out(1), "s1_blast": Out(1), "s1_tlast": Out(1),
            "s1_half": Out(1), "s1_lanes": Out(weight_layout(cfg)),
            "s1_meta": Out(meta_width(cfg)), "s1_rows": Out(17),
            "spr": Out(bits_for(cfg.store_rows + 1) + 1), "job_dense": Out(1),
            "job_sam": Out(1), "job_nm": Out(len(cfg.samoyeds_nm)),
            "job_mult": Out(16), "job_shift": Out(5), "job_out_mode": Out(2),
            "pe_inflight": In(1), "tail_idle": In(1), "drain_done": In(1),
        })
        # formal only: state the top's invariants read (set in elaborate)
        self.formal_state = None

    def elaborate(self, platform):
        cfg = self.cfg
        C, L = cfg.cols, cfg.sel_lanes
        kw_bits, tok_bits = bits_for(cfg.max_kw), bits_for(cfg.max_tokens)
        m = Module()
        DR = dict(reset_less=True)

        # ------------------------------------------------------------ job registers
        op = Signal(1); mode = Signal(2); out_mode = Signal(2); mult = Signal(16)
        shift = Signal(5); m_rows = Signal(16)
        n_sel = Signal(16); n_tok = Signal(16); sam_n = Signal(5); sam_m = Signal(5)
        k_words = Signal.like(self.k_words)
        n_rt = Signal(16)
        m.d.comb += [self.job_mult.eq(mult), self.job_shift.eq(shift),
                     self.job_out_mode.eq(out_mode)]
        # counters' "at the last value" flags, set from compares with (last - 1)
        kw_bits_ = self.k_words.shape().width + 1
        k_last1 = Signal(kw_bits_); v_last1 = Signal(kw_bits_)   # last value - 1
        rt_last2 = Signal(16); tt_last1 = Signal(16)
        rt_pen = Signal(); rt_two = Signal()      # rt == n_row_tiles - 2; n_row_tiles == 2
        k_one = Signal(); v_one = Signal(); rt_one = Signal()    # the count is 1
        beat_last = Signal(); vb_last = Signal(); rt_at_last = Signal(); tt_at_last = Signal()
        beat_zero = Signal()
        ld_more = Signal()            # LOAD: tokens left to load
        kw_last1 = Signal.like(self.k_words)
        ntok_last1 = Signal(16)       # LOAD: the last token's buffer index - 1
        ld_bl = Signal(); ld_tl = Signal()        # LOAD: last beat of a token / last token
        sel_end = Signal()            # SEL: the next beat is the last
        sel_left = Signal(17)         # SEL: entries not yet loaded
        lane_ok = Signal(L)           # SEL lanes carrying an entry
        spr = Signal(len(self.spr))   # store rows per tile: rows, or rows * M / N (Samoyeds)
        spr_in = Mux(self.mode == SAMOYEDS, (cfg.rows * self.sam_m) >> Mux(
            self.sam_n == 1, 0, Mux(self.sam_n == 2, 1, Mux(self.sam_n == 4, 2,
                                                           Mux(self.sam_n == 8, 3, 4)))),
            cfg.rows)
        m.d.comb += self.spr.eq(spr)
        rt_base = Signal(16)          # first output row of the current row tile
        rows_left = Signal(17)        # m_rows - rt_base
        pend = Signal(2)              # tiles started and not yet drained (the issue gate)
        job_sam = Signal()
        job_nm = Signal(len(cfg.samoyeds_nm))  # one-hot: which (N, M) the job uses
        m.d.comb += [self.job_sam.eq(job_sam), self.job_nm.eq(job_nm)]
        error = Signal(4)
        m.d.comb += self.error.eq(error)
        err_terms = {ERR_CONFIG: [], ERR_META: [], ERR_SEL: [], ERR_INDEX: []}
        err_now = Signal()            # the job check in CHECK (done rises with it)

        # the job checks, each registered at start; CHECK ORs four registers
        nm_ok = Signal()
        m.d.comb += nm_ok.eq(0)
        for (nn, mm) in cfg.samoyeds_nm:
            with m.If((self.sam_n == nn) & (self.sam_m == mm)):
                m.d.comb += nm_ok.eq(1)
        chk_any_in = Cat(self.mode == 3, self.out_mode == 3,
                         (self.out_mode == 2) & (self.shift == 0),
                         self.n_tokens > cfg.max_tokens, self.k_words == 0,
                         self.k_words > cfg.max_kw)
        not_load = self.op != OP_LOAD          # the checks a LOAD ignores
        chk_mm_in = not_load & Cat(self.n_sel > cfg.max_sel, self.n_row_tiles == 0).any()
        chk_mm2_in = not_load & Cat(self.m_rows == 0, (self.mode == SAMOYEDS) & ~nm_ok,
                                    (self.mode == SAMOYEDS) & (self.v_steps == 0)).any()
        chk_vk_in = not_load & (self.mode == SAMOYEDS) & (self.v_steps > self.k_words)
        chk_any = Signal(); chk_mm = Signal(); chk_mm2 = Signal(); chk_vk = Signal()
        cfg_bad = Signal()
        m.d.comb += cfg_bad.eq(chk_any | chk_mm | chk_mm2 | chk_vk)
        # LOAD: tok_base + n_tokens, one past its last buffer token, registered every
        # cycle (CHECK derives the token counter's end from it); n_tokens' low bits
        # only: a larger n_tokens is refused by chk_any. Past max_tokens (ld_over) the
        # LOAD is refused outside CHECK's decision: its LOAD state has no token to
        # take (ntok_nz) and ends at once, ERR_CONFIG rises with done.
        nt_bits = bits_for(cfg.max_tokens + 1)
        ld_end = Signal(nt_bits + 1)
        m.d.comb += ld_end.eq(self.tok_base + self.n_tokens[:nt_bits])
        ld_over = ~le_const(ld_end, cfg.max_tokens)
        ks_port = Mux(self.mode == DENSE, self.k_words << 1, self.k_words)
        vs_port = Mux(self.mode == SAMOYEDS, self.v_steps, ks_port)
        ks_in = Signal.like(ks_port, name="ks_q")       # weight beats per tile
        v_in = Signal(max(len(ks_port), len(self.v_steps)), name="vs_q")  # beats per flush block
        job_dense = Signal()
        m.d.comb += self.job_dense.eq(job_dense)
        # read in CHECK only: registers loading the ports (or their decode) every cycle
        job_check_only = [(op, self.op), (mode, self.mode), (k_words, self.k_words),
                          (n_sel, self.n_sel), (n_rt, self.n_row_tiles),
                          (chk_any, chk_any_in.any()), (chk_mm, chk_mm_in),
                          (chk_mm2, chk_mm2_in), (chk_vk, chk_vk_in),
                          (ks_in, ks_port),
                          (v_in, vs_port)]
        # read after CHECK: the job register, its every-cycle `_sh` copy of the port
        job_sh = [(reg, Signal.like(reg, name=f"{name}_sh", reset_less=True), port)
                  for name, reg, port in [
                      ("mult", mult, self.mult), ("m_rows", m_rows, self.m_rows),
                      ("n_tok", n_tok, self.n_tokens), ("out_mode", out_mode, self.out_mode),
                      ("shift", shift, self.shift), ("sam_n", sam_n, self.sam_n),
                      ("sam_m", sam_m, self.sam_m), ("spr", spr, spr_in),
                      ("job_dense", job_dense, self.mode == DENSE)]]
        (mult_sh, m_rows_sh, n_tok_sh, out_mode_sh, shift_sh, sam_n_sh, sam_m_sh, spr_sh,
         job_dense_sh) = (sh for _, sh, _ in job_sh)
        # decodes of the ports, registered every cycle like the CHECK-only registers
        n_tt_in = Signal(17, name="ntt_sh", **DR)             # token tiles
        ntt_one = Signal(name="ntt_one_sh", **DR)             # n_sel <= cols
        m.d.sync += [n_tt_in.eq((self.n_sel + C - 1) >> bits_for(C) if C > 1 else self.n_sel),
                     ntt_one.eq(self.n_sel <= C)]
        ks_one, vs_one, nrt_one, kw_one_in, ntok_one_in = (
            Signal(name=f"{x}_one_sh", **DR) for x in ("ks", "vs", "nrt", "kw", "ntok"))
        nrt_two = Signal(name="nrt_two_sh", **DR)
        nsel_zero = Signal(name="nsel_zero_sh", **DR)         # no SEL entries
        ntok_nz = Signal(name="ntok_nz_sh", **DR)             # LOAD has tokens to write
        ld_bad = Signal(name="ld_bad_sh", **DR)               # a LOAD past max_tokens
        ld_end_sh = Signal.like(ld_end, name="ld_end_sh", **DR)  # LOAD: tok_base + n_tokens
        tt0_sh = Signal(len(self.tok_base), name="tt0_sh", **DR)  # tt's first value
        m.d.sync += [ld_end_sh.eq(ld_end), tt0_sh.eq(Mux(not_load, 0, self.tok_base))]
        nsel_gt = Signal(L, name="nsel_gt_sh", **DR)          # n_sel > lane
        nsel_le = Signal(name="nsel_le_sh", **DR)             # n_sel <= lanes
        m.d.sync += [nsel_zero.eq(self.n_sel == 0),
                     ntok_nz.eq((self.n_tokens != 0) & ~ld_over), ld_bad.eq(~not_load & ld_over),
                     nsel_gt.eq(Cat(self.n_sel > l for l in range(L))), nsel_le.eq(self.n_sel <= L)]
        kw_one = Signal()     # the job's k_words is 1 (LOAD's beat flag after a token)
        m.d.sync += [kw_one_in.eq(self.k_words == 1), ntok_one_in.eq(self.n_tokens == 1),
                     ks_one.eq(ks_port == 1),
                     vs_one.eq(vs_port == 1),
                     nrt_one.eq(self.n_row_tiles == 1), nrt_two.eq(self.n_row_tiles == 2)]

        # ------------------------------------------------------------ counters / FSM
        tt = Signal(len(self.tt))     # tokens (LOAD) or token tiles (RUN)
        m.d.comb += self.tt.eq(tt)
        tok_load = self.tok_load      # a token tile's last beat issues (per SEL bank)
        t0q = Signal(C)               # the next SEL beat writes bank c's address 0
        sel_q = Signal()              # in SEL
        beat = Signal(kw_bits_)       # beat within the tile
        vb = Signal(kw_bits_)         # beat within the flush block
        rt = Signal(16)               # row tile
        cnt = Signal(16)              # SEL beat counter
        first = Signal(32)            # SEL entry index of the beat's lane 0
        m.d.comb += [first.eq(cnt * L),
                     self.sel_wr_addr.eq(first >> bits_for(C) if C > 1 else first)]

        def sel_grp(k):     # the bank group SEL beat k writes
            return (k % (C // L)) if C > L else 0

        def writes_addr0(k, c, lane_has_entry):    # SEL beat k writes bank c's address 0
            addr = (k * L) >> bits_for(C) if C > 1 else k * L
            return (sel_grp(k) == c // L) & (addr == 0) & lane_has_entry
        # `cycles`: restarts in CHECK (cyc_chk), counts while not IDLE (cyc_run)
        cycles = Signal(32)
        cyc_chk = Signal(); cyc_run = Signal()

        s1_valid = Signal()
        s1_first = Signal(**DR); s1_blast = Signal(**DR); s1_tlast = Signal(**DR)
        s1_lanes = Signal(weight_layout(cfg), **DR)
        s1_half = Signal(**DR)        # dense: which half of the activation word
        s1_meta = Signal(meta_width(cfg), **DR)  # token tile, base row, mask
        s1_rows = Signal(17, **DR)    # rows left in the job at this row tile
        m.d.comb += [self.s1_valid.eq(s1_valid), self.s1_first.eq(s1_first),
                     self.s1_blast.eq(s1_blast), self.s1_tlast.eq(s1_tlast),
                     self.s1_lanes.eq(s1_lanes), self.s1_half.eq(s1_half),
                     self.s1_meta.eq(s1_meta), self.s1_rows.eq(s1_rows)]
        pipe_empty = Signal()
        # pe_busy equals "a beat in s1 .. s3" in every cycle (from the valid bits' next states)
        pe_busy = Signal(); issue = Signal()
        m.d.sync += pe_busy.eq(issue | s1_valid | self.pe_inflight)
        m.d.comb += pipe_empty.eq(~pe_busy & self.tail_idle)
        # the issue gate: a tile starts only while at most one older tile is in the unit
        gate = Signal()
        m.d.comb += gate.eq(~beat_zero | (pend <= 1))

        last_beat, last_vb = beat_last, vb_last
        mask_now = Signal(C)
        rem = Signal(bits_for(cfg.max_sel + 1) + 2)  # SEL entries from token tile tt on
        for c in range(C):
            m.d.comb += mask_now[c].eq(rem > c)

        with m.If(self.clear):
            m.d.sync += self.done.eq(0)

        enter_idle = Signal(); leave_idle = Signal()
        enter_load = Signal(); leave_load = Signal(); load_q = Signal()
        enter_sel = Signal()
        enter_run = Signal(); leave_run = Signal(); run_q = Signal(); run_n = Signal()
        with m.FSM(name="ctrl") as fsm:
            with m.State("IDLE"):
                with m.If(self.start & ~self.clear):
                    m.d.comb += leave_idle.eq(1)
                    m.d.sync += self.done.eq(0)
                    m.next = "CHECK"
            with m.State("CHECK"):
                m.d.comb += err_now.eq(cfg_bad)
                with m.If(cfg_bad):
                    m.d.sync += self.done.eq(1)
                    m.d.comb += enter_idle.eq(1)
                    m.next = "IDLE"
                with m.Elif(op == OP_LOAD):
                    m.d.comb += enter_load.eq(1)
                    m.next = "LOAD"
                with m.Elif(nsel_zero):
                    m.next = "WAIT"
                with m.Else():
                    m.d.comb += enter_sel.eq(1)
                    m.next = "SEL"
            with m.State("LOAD"):
                with m.If(leave_load):
                    m.next = "IDLE"
            with m.State("SEL"):
                with m.If(enter_run):
                    m.next = "RUN"
            with m.State("RUN"):
                with m.If(leave_run):
                    m.next = "WAIT"
            with m.State("WAIT"):
                with m.If(pipe_empty):
                    m.d.sync += self.done.eq(1)
                    m.d.comb += enter_idle.eq(1)
                    m.next = "IDLE"
        # load_q / sel_q / run_q: registers equal to "in LOAD / SEL / RUN"
        m.d.comb += run_n.eq(Mux(run_q, ~leave_run, enter_run))
        m.d.sync += [load_q.eq(Mux(load_q, ~leave_load, enter_load)),
                     sel_q.eq(Mux(sel_q, ~enter_run, enter_sel)),
                     run_q.eq(run_n)]
        # LOAD: tt is the token's buffer index (from tok_base; the write address
        # is the counters themselves); "loading" and "load finished" have one copy per
        # group of loads (the stream's ready and the write enable, the counters, the FSM)
        ld_n = Signal(); load_n = Signal()
        m.d.comb += [ld_n.eq(ld_more),
                     load_n.eq(Mux(load_q, ~leave_load, cyc_chk & ~cfg_bad & (op == OP_LOAD)))]
        with m.If(cyc_chk):
            m.d.comb += ld_n.eq(ntok_nz)
        with m.Elif(load_q & self.act_valid & ld_more & ld_bl):
            m.d.comb += ld_n.eq(~ld_tl)
        m.d.sync += ld_more.eq(ld_n)
        ldg = replicas(m, platform, Cat(load_n & ld_n, load_n & ld_n, load_n & ~ld_n), 1, "ld")[0]
        m.d.comb += [self.act_ready.eq(ldg[0]), self.act_wr_en.eq(self.act_valid & ldg[0]),
                     self.act_wr_addr.eq(Cat(beat[:kw_bits], tt[:tok_bits]))]
        with m.If(self.act_valid & ldg[1]):
            with m.If(ld_bl):
                m.d.sync += [beat.eq(0), tt.eq(tt + 1), ld_bl.eq(kw_one),
                             ld_tl.eq(tt == ntok_last1)]
            with m.Else():
                m.d.sync += [beat.eq(beat + 1), ld_bl.eq(beat == kw_last1)]
        with m.If(ldg[2]):
            m.d.sync += [self.done.eq(1), tt.eq(0)]
            m.d.comb += [enter_idle.eq(1), leave_load.eq(1)]
        # SEL: the move to RUN from the "this beat is the last" flag
        with m.If(sel_q):
            m.d.comb += self.sel.ready.eq(1)
            with m.If(self.sel.valid):
                m.d.sync += [sel_left.eq(sel_left - L),
                             lane_ok.eq(Cat(sel_left > l + L for l in range(L))),
                             sel_end.eq(sel_left <= 2 * L)]
                for c in range(C):
                    m.d.comb += self.sel_wr_en[c].eq((sel_grp(cnt) == c // L) & lane_ok[c % L])
                m.d.sync += [cnt.eq(cnt + 1),
                             t0q.eq(Cat(writes_addr0(cnt + 1, c, sel_left > c % L + L)
                                        for c in range(C)))]
                with m.If(sel_end):
                    m.d.comb += enter_run.eq(1)
        m.d.comb += self.tok_first.eq(Mux(sel_q & self.sel.valid, t0q, 0))
        # the SEL checks, three cycles behind the beat
        selchk = m.submodules.sel_check = SelCheck(L)
        n_tok_rc = [Signal(16, name=f"n_tok_rc{l}") for l in range(L)]
        m.d.comb += [selchk.take.eq(sel_q & self.sel.valid), selchk.lanes_ok.eq(lane_ok),
                     selchk.later.eq(cnt != 0), selchk.clear.eq(self.clear)]
        m.d.comb += [selchk.payload[l].eq(self.sel.payload[l]) for l in range(L)]
        m.d.comb += [selchk.n_tok[l].eq(n_tok_rc[l]) for l in range(L)]
        err_terms[ERR_SEL] = [selchk.bad.any()]
        with m.If(run_q):
            m.d.comb += [self.w.ready.eq(gate), issue.eq(self.w.valid & gate)]
        # The issue decision: each counter group from its own copies of the flags
        # (replicas of their next-state values) and `w.valid`.
        bz_n, bl_n, vbl_n, ral_n = (Signal(name=f"{x}_n") for x in ("bz", "bl", "vbl", "ral"))
        pend_n = Signal(2)
        m.d.comb += [bz_n.eq(beat_zero), bl_n.eq(beat_last), vbl_n.eq(vb_last),
                     ral_n.eq(rt_at_last)]
        with m.If(cyc_chk):
            m.d.comb += [bz_n.eq(1), bl_n.eq(ks_one), vbl_n.eq(vs_one), ral_n.eq(nrt_one)]
        with m.If(issue):
            m.d.comb += bz_n.eq(beat_last)
            with m.If(last_beat):
                m.d.comb += [bl_n.eq(k_one), vbl_n.eq(v_one),
                             ral_n.eq(Mux(rt_at_last, rt_one, rt_pen))]
            with m.Else():
                m.d.comb += [bl_n.eq(beat == k_last1),
                             vbl_n.eq(Mux(last_vb, v_one, vb == v_last1))]
        m.d.sync += [beat_zero.eq(bz_n), beat_last.eq(bl_n), vb_last.eq(vbl_n),
                     rt_at_last.eq(ral_n)]
        # groups: 0 beat/vb, 1 rt/rt_base/rows_left, 2 tt/rem, 3 + c SEL bank c, 3 + C the FSM
        flag_q = replicas(m, platform, Cat(run_n, bz_n, pend_n[1], bl_n, vbl_n, ral_n),
                          4 + C, "iss")

        def local_issue(k):
            run_k, bz_k, p1_k, bl_k, vbl_k, ral_k = (flag_q[k][i] for i in range(6))
            return self.w.valid & run_k & (~bz_k | ~p1_k), bl_k, vbl_k, ral_k

        iss, bl, vbl, _ = local_issue(0)
        with m.If(iss):
            with m.If(bl):
                m.d.sync += [beat.eq(0), vb.eq(0)]
            with m.Else():
                m.d.sync += [beat.eq(beat + 1), vb.eq(Mux(vbl, 0, vb + 1))]
        iss, bl, _, ral = local_issue(1)
        with m.If(iss & bl):
            with m.If(ral):
                m.d.sync += [rt.eq(0), rt_base.eq(0), rows_left.eq(m_rows), rt_pen.eq(rt_two)]
            with m.Else():
                m.d.sync += [rt.eq(rt + 1), rt_base.eq(rt_base + spr),
                             rows_left.eq(rows_left - spr), rt_pen.eq(rt == rt_last2)]
        iss, bl, _, ral = local_issue(2)
        with m.If(iss & bl & ral):
            m.d.sync += [tt.eq(tt + 1), rem.eq(rem - C), tt_at_last.eq(tt == tt_last1)]
        for c in range(C):
            iss, bl, _, ral = local_issue(3 + c)
            m.d.comb += tok_load[c].eq(iss & bl & ral)
        iss, bl, _, ral = local_issue(3 + C)
        m.d.comb += leave_run.eq(iss & bl & ral & tt_at_last)
        m.d.comb += self.busy.eq(~fsm.ongoing("IDLE"))
        idle_n = Signal()
        m.d.comb += idle_n.eq(Mux(fsm.ongoing("IDLE"), ~leave_idle, enter_idle))
        # "in IDLE" as registers, one per group of CHECK-flag copies
        go = self.start & ~self.clear
        idle_c = replicas(m, platform, idle_n, 4, "idle", init=1)
        leave_idle_c = [q & go for q in idle_c]
        m.d.sync += [cyc_chk.eq(leave_idle_c[0]), cyc_run.eq(~idle_n)]
        # `cycles`: a CHECK-flag copy per byte for the restart and the port's mux
        cyc_q = replicas(m, platform, leave_idle_c[0], 4, "cyc")
        inc = cycles + 1
        for k in range(4):
            b = slice(8 * k, 8 * k + 8)
            m.d.comb += self.cycles[b].eq(Mux(cyc_q[k], 0, cycles[b]))
            with m.If(cyc_q[k]):
                m.d.sync += cycles[b].eq(1 if k == 0 else 0)
            with m.Elif(cyc_run):
                m.d.sync += cycles[b].eq(inc[b])
        # the counters restart in CHECK and CHECK derives their ends, under a copy
        # of the CHECK flag per counter group
        chk_q = replicas(m, platform, leave_idle_c[1], 4, "chk")
        with m.If(chk_q[0]):
            m.d.sync += [cnt.eq(0), sel_end.eq(nsel_le), sel_left.eq(n_sel),
                         t0q.eq(Cat(writes_addr0(0, c, nsel_gt[c % L]) for c in range(C))),
                         lane_ok.eq(nsel_gt)]
        with m.If(chk_q[1]):
            m.d.sync += [beat.eq(0), vb.eq(0),
                         kw_last1.eq(k_words - 2), ntok_last1.eq(ld_end_sh - 2),
                         ld_bl.eq(kw_one_in), ld_tl.eq(ntok_one_in), kw_one.eq(kw_one_in),
                         k_last1.eq(ks_in - 2), v_last1.eq(v_in - 2),
                         k_one.eq(ks_one), v_one.eq(vs_one)]
        with m.If(chk_q[2]):
            m.d.sync += [rt.eq(0), rt_base.eq(0), rt_last2.eq(n_rt - 3), rt_one.eq(nrt_one),
                         rt_pen.eq(nrt_two), rt_two.eq(nrt_two),
                         rows_left.eq(m_rows_sh)]
        with m.If(chk_q[3]):
            m.d.sync += [tt.eq(tt0_sh), tt_last1.eq(n_tt_in - 2), tt_at_last.eq(ntt_one),
                         rem.eq(n_sel)]
        with m.If(cyc_chk):
            m.d.sync += [job_sam.eq(mode == SAMOYEDS),
                         job_nm.eq(Cat((mode == SAMOYEDS) & (sam_n_sh == nn) & (sam_m_sh == mm)
                                       for nn, mm in cfg.samoyeds_nm))]
        # the job registers read after CHECK load from their `_sh` copies in CHECK,
        # in groups of at most ~32 bits, each under its own copy of the CHECK flag
        m.d.sync += [reg.eq(port) for reg, port in job_check_only]
        m.d.sync += [sh.eq(port) for _, sh, port in job_sh]
        held = [[(mult, mult_sh)], [(m_rows, m_rows_sh)], [(n_tok, n_tok_sh)],
                [(out_mode, out_mode_sh), (shift, shift_sh), (sam_n, sam_n_sh),
                 (sam_m, sam_m_sh), (spr, spr_sh), (job_dense, job_dense_sh)]]
        held += [[(q, n_tok_sh) for q in n_tok_rc[i:i + 2]] for i in range(0, L, 2)]
        for q, group in zip(replicas(m, platform, leave_idle_c[2], len(held), "jld"), held):
            with m.If(q):
                m.d.sync += [reg.eq(sh) for reg, sh in group]

        # ------------------------------------------------------------ issue stage
        # the activation word of the beat: a counter per column, stepped by its
        # SEL bank's issue flags (dense: every other beat)
        gw_chk = replicas(m, platform, leave_idle_c[3], C, "gwchk")
        word_step = Signal()
        m.d.comb += word_step.eq(~job_dense | beat[0])
        for c in range(C):
            gw_c = Signal(kw_bits, name=f"gw{c}")
            iss_c, bl_c, _, _ = local_issue(3 + c)
            with m.If(gw_chk[c]):
                m.d.sync += gw_c.eq(0)
            with m.Elif(iss_c):
                with m.If(bl_c):
                    m.d.sync += gw_c.eq(0)
                with m.Elif(word_step):
                    m.d.sync += gw_c.eq(gw_c + 1)
            m.d.comb += self.gw[c].eq(gw_c)
        m.d.sync += s1_valid.eq(issue)
        tt16 = Signal(16)             # the token tile in the metadata's 16-bit field
        m.d.comb += tt16.eq(tt)
        # the s1 registers load every cycle; s1_valid says a beat is there
        m.d.sync += [s1_lanes.eq(self.w.payload), s1_first.eq(vb == 0),
                     s1_blast.eq(last_vb | last_beat),
                     s1_tlast.eq(last_beat), s1_half.eq(beat[0]),
                     s1_meta.eq(Cat(tt16, rt_base, mask_now)), s1_rows.eq(rows_left)]
        # the beat's checks (sticky; the job runs on), from the s1 registers
        s1_vbl = Signal(**DR)
        m.d.sync += s1_vbl.eq(last_vb)
        lanes = s1_lanes
        for r in range(cfg.rows):
            lo, hi = lanes[r].nib[:2], lanes[r].nib[2:]
            err_terms[ERR_META].append(s1_valid & ~job_dense & (hi <= lo))
            bad = lanes[r].idx >= sam_m
            if r > 0:
                bad = bad | (((r & (sam_n - 1)) != 0) & (lanes[r].idx <= lanes[r - 1].idx))
            err_terms[ERR_INDEX].append(s1_valid & job_sam & bad)
        # a tile must end on a flush-block boundary (V divides K); a LOAD past the buffer
        err_terms[ERR_CONFIG] += [s1_valid & s1_tlast & ~s1_vbl, cyc_chk & ld_bad]

        # tiles in the unit; the error bits (the stream checks registered once, err_q)
        m.d.comb += pend_n.eq(pend + (issue & beat_zero) - self.drain_done)
        m.d.sync += pend.eq(pend_n)
        err_set = Signal(4)
        for bit, terms in err_terms.items():
            m.d.comb += err_set[bit.bit_length() - 1].eq(or_all(terms))
        err_q = Signal(4)
        m.d.sync += err_q.eq(Mux(self.clear, 0, err_set))
        m.d.sync += error.eq(Mux(self.clear, 0,
                                 error | err_q | Mux(err_now, ERR_CONFIG, 0)))
        if self.formal:
            def A(test, msg):
                m.d.comb += Assert(test, f"sptc: {msg}")
            for k, q in enumerate(flag_q):
                A(q == Cat(run_q, beat_zero, pend[1], beat_last, vb_last, rt_at_last),
                  f"issue flag copy {k} != the flags")
            states = ("IDLE", "CHECK", "LOAD", "SEL", "RUN", "WAIT")
            A(sum(fsm.ongoing(x) for x in states) == 1, "the FSM in no state")
            A((load_q == fsm.ongoing("LOAD")) & (sel_q == fsm.ongoing("SEL"))
              & (run_q == fsm.ongoing("RUN")), "load_q/sel_q/run_q != the FSM's state")
            A(ldg == Cat(load_q & ld_more, load_q & ld_more, load_q & ~ld_more),
              "the LOAD flag copies != (load_q, ld_more)")
            ld_last = Signal(16)      # the LOAD's last token index
            m.d.comb += ld_last.eq(ntok_last1 + 1)
            A(~(load_q & ld_more) | ((ld_tl == (tt == ld_last)) & (tt <= ld_last)
                                     & (ld_last < cfg.max_tokens)),
              "LOAD: the token counter past its last token, the last-token flag wrong, "
              "or the last token outside the buffer")
            for k, q in enumerate(idle_c):
                A(q == fsm.ongoing("IDLE"), f"idle copy {k} != the FSM's IDLE")
            self.formal_state = {"pe_busy": pe_busy}
        return m
