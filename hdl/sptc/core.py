"""Sparse Tensor Core: a PE array with dual-side structured sparsity (Samoyeds). One class past 500 lines until its split into components (open work).

See golden/sptc.py for the dataflow and docs/sptc.md for the interfaces and the
cycle formula. Pipeline (one beat per cycle when nothing stalls):

  issue   a weight beat is taken; each PE column's activation bank is addressed
          at (SEL token of that column, K group)           -> s1_* registers
  act     the activation words out of the block RAMs        -> s1b_*
  copy    each PE's own copy of its operands                -> s1c_*
  select  the nibble picks 2 of the 4 activations per PE   -> s1d_* (fabric)
  mult    2 int8 x int8 products per PE (DSP blocks: input
          registers s2_*, output registers)                  -> s3_*
  sum     p0 + p1                                           -> s4_*
  acc     acc + sum; on the last beat of a flush block the partial sums
          go to the flush registers
  route   the flush registers are copied once per half of the store, then each
          store lane registers the OR of the copies that land on it (PE row r ->
          its store row: identity, or Samoyeds' indices)
  store   the routed sums are added into the accumulator store (every cycle:
          the routed value is zero unless a flush lands); a finished tile
          moves from the store to the drain bank once the bank is free
  drain   the drain bank shifts out ``drain_rows`` rows per cycle into a
          free-running 7-stage output pipeline (a copy of the row beside its
          lane, x mult, + rounding, + high part, saturation flags + coarse
          shift, fine shift, select), an output
          FIFO, its read register and a skid buffer

The store, drain and output lanes execute what a small controller decided
CTRL_LAG cycles earlier (see "store / drain control").

A job starts with one CHECK cycle: the control ports are registered at start,
checked and turned into the counters' end values from those registers.

Nothing inside the array stalls: the pipeline registers have no enable. The
issue stage holds a tile's first beat (``w.ready`` low) while two older tiles
are still in the unit, which guarantees that a flush never finds the store
holding a finished tile the drain bank cannot take. An array-wide stall enable
was the FPGA critical path (its fanout reaches every PE register).
"""
from __future__ import annotations

from amaranth import Array, Assert, Cat, Const, Fragment, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from golden.sptc import (CTRL_LAG, DENSE_NIBBLES, ERR_CONFIG, ERR_INDEX, ERR_META, ERR_SEL, MODE_CODES,
                         OP_LOAD, OUT_FIFO_DEPTH, OUT_SKID_DEPTH, OUT_STAGES, SpTCConfig)

from ..fpga import RegMul, RegReadRAM, replicas
from ..stream import SkidBuffer

DENSE, SPARSE24, SAMOYEDS = MODE_CODES["dense"], MODE_CODES["2:4"], MODE_CODES["samoyeds"]


def _bits(n: int) -> int:
    return max(1, (n - 1).bit_length())


def _le_const(x: Value, k: int) -> Value:
    """``x <= k`` (x unsigned, k a constant) as and/or logic, one term per bit of
    x (built from bit 0 up, so the top bit decides first). Yosys makes a carry
    chain of ``<=``; a decoder of a few bits is one LUT level this way."""
    if k < 0:
        return Const(0, 1)
    if k >= 2 ** len(x) - 1:
        return Const(1, 1)
    out = Const(1, 1)                  # all bits below equal: x <= k
    for i in range(len(x)):            # bit 0 up: out = "x[:i+1] <= k[:i+1]"
        out = (~x[i] | out) if (k >> i) & 1 else (~x[i] & out)
    return out


def _tree(terms):
    """Sum as a balanced adder tree (log depth), not the chain ``sum()`` builds."""
    terms = list(terms)
    if not terms:
        return Const(0, 1)
    while len(terms) > 1:
        terms = [terms[i] + terms[i + 1] if i + 1 < len(terms) else terms[i]
                 for i in range(0, len(terms), 2)]
    return terms[0]


def _or(terms):
    out = terms[0]
    for t in terms[1:]:
        out = out | t
    return out


def lane_layout():
    return data.StructLayout({"v0": signed(8), "v1": signed(8), "nib": unsigned(4),
                              "idx": unsigned(4)})


def weight_layout(cfg: SpTCConfig):
    return data.ArrayLayout(lane_layout(), cfg.rows)


def sel_layout(cfg: SpTCConfig):
    """``sel_lanes`` SEL indices per beat; lanes past ``n_sel`` in the last beat are ignored."""
    return data.ArrayLayout(unsigned(16), cfg.sel_lanes)


def result_layout(cfg: SpTCConfig):
    P = cfg.drain_rows
    return data.StructLayout({
        # data[p][c]: output row `row + p`, column `tile * cols + c`; int8 modes sign-extended
        "data": data.ArrayLayout(data.ArrayLayout(signed(32), cfg.cols), P),
        "row": unsigned(16),                             # output row of data[0]
        "tile": unsigned(16),                            # token tile: columns tile*cols + c
        "mask": unsigned(cfg.cols),                      # which columns are selected tokens
        "rmask": unsigned(P),                            # which of the P rows are output rows
    })


class SparseTensorCore(wiring.Component):
    """The Engine 1 top: streams ``w``, ``act``, ``sel`` in, ``res`` out, plus control/status.

    Control ports are sampled on the cycle ``start`` is high in idle; ``done``
    stays high until the next ``start`` or ``clear``; ``error`` bits are sticky
    until ``clear`` (or reset). ``cycles`` counts the cycles of the last job.

    ``formal=True`` (off by default: a default build's Verilog does not change)
    adds ``Assert``s of the invariants the comments below state as "equals ... in
    every cycle" (register copies and flags against what they stand for), the
    output FIFO's data (``_formal_out_fifo``: a free input ``formal_pick`` picks the
    beat it tracks) and the output skid buffer's own; ``formal/`` proves them
    (``python -m formal``).
    """

    def __init__(self, cfg: SpTCConfig = SpTCConfig(), *, formal: bool = False,
                 formal_bug: str = ""):
        self.cfg = cfg
        self.formal = bool(formal)
        # formal only: a planted bug for the output FIFO's data proof (formal/proofs.py)
        # ("drop": the metadata column loses every write into entry 0)
        if formal_bug not in ("", "drop") or (formal_bug and not self.formal):
            raise ValueError(f"formal_bug: {formal_bug!r} is not '' or 'drop' with formal=True")
        self.formal_bug = formal_bug
        kwb = _bits(cfg.max_kw + 1)
        # formal only: `formal_pick` (free in a harness) picks the output FIFO
        # write whose beat the data proof tracks
        extra = {"formal_pick": In(1)} if self.formal else {}
        super().__init__({**extra,
            "w": In(stream.Signature(weight_layout(cfg))),
            "act": In(stream.Signature(32)),
            "sel": In(stream.Signature(sel_layout(cfg))),
            "res": Out(stream.Signature(result_layout(cfg))),
            "start": In(1), "clear": In(1),
            "op": In(1), "mode": In(2), "out_mode": In(2), "mult": In(16), "shift": In(5),
            "k_words": In(kwb + 1), "v_steps": In(kwb + 1), "m_rows": In(16),
            "n_row_tiles": In(16), "n_sel": In(16), "n_tokens": In(16),
            "sam_n": In(5), "sam_m": In(5),
            "busy": Out(1), "done": Out(1), "error": Out(4), "cycles": Out(32),
        })

    def elaborate(self, platform):
        cfg = self.cfg
        R, C, S = cfg.rows, cfg.cols, cfg.store_rows
        L, P = cfg.sel_lanes, cfg.drain_rows
        m = Module()

        # ---------------------------------------------------------------- job registers
        op = Signal(1); mode = Signal(2); out_mode = Signal(2); mult = Signal(16)
        shift = Signal(5); m_rows = Signal(16)
        n_sel = Signal(16); n_tok = Signal(16); sam_n = Signal(5); sam_m = Signal(5)
        k_words = Signal.like(self.k_words)
        n_rt = Signal(16)
        # Start latches the control ports; the CHECK cycle after it validates them
        # and derives the job constants below from those registers, so neither the
        # checks nor the derivations are on a path from the ports into the FSM.
        # The RUN counters (beat, vb, rt, tt) each carry an "at its last value" flag
        # register, set from a compare with (last - 1) when the counter steps, so no
        # compare sits between a counter and the FSM; the other ends are registers.
        kw_bits_ = self.k_words.shape().width + 1
        k_last1 = Signal(kw_bits_); v_last1 = Signal(kw_bits_)   # last value - 1
        rt_last2 = Signal(16); tt_last1 = Signal(16)
        # the row tile one before its last (rt == n_row_tiles - 2), a flag stepped
        # with rt: the 16-bit compare sat in the "at last" flag's next state, in
        # front of the issue flags' copies (a failing path)
        rt_pen = Signal(); rt_two = Signal()
        k_one = Signal(); v_one = Signal(); rt_one = Signal()    # the count is 1
        beat_last = Signal(); vb_last = Signal(); rt_at_last = Signal(); tt_at_last = Signal()
        beat_zero = Signal()
        ld_more = Signal()            # LOAD: tokens left to load
        # LOAD's counters carry "at the last value" flags the same way: the beat at
        # k_words - 1 (ld_bl), the token at n_tokens - 1 (ld_tl), set from compares
        # with (last - 1); the compares of the counters with their last values sat
        # in front of the "loading" copies and the counters (a failing group).
        kw_last1 = Signal.like(self.k_words); ntok_last1 = Signal(16)
        ld_bl = Signal(); ld_tl = Signal()
        sel_end = Signal()            # SEL: the next beat is the last (sel_left <= lanes)
        sel_left = Signal(17)         # SEL: entries not yet loaded (n_sel - cnt * lanes)
        lane_ok = Signal(L)           # SEL lanes carrying an entry (sel_left > lane), a
                                      # register so no compare sits before the LUT-RAM enables
        # store rows per tile: rows, or rows * M / N in Samoyeds mode (a job constant)
        spr = Signal(_bits(cfg.store_rows + 1) + 1)
        spr_in = Mux(self.mode == SAMOYEDS, (cfg.rows * self.sam_m) >> Mux(
            self.sam_n == 1, 0, Mux(self.sam_n == 2, 1, Mux(self.sam_n == 4, 2,
                                                           Mux(self.sam_n == 8, 3, 4)))),
            cfg.rows)
        rt_base = Signal(16)          # first output row of the current row tile
        rows_left = Signal(17)        # m_rows - rt_base
        pend = Signal(2)              # tiles started and not yet drained (see the issue gate)
        job_sam = Signal()            # Samoyeds mode (job constant)
        job_nm = Signal(len(cfg.samoyeds_nm))  # one-hot: which (N, M) the job uses
        error = Signal(4)
        m.d.comb += self.error.eq(error)
        # Sticky error sources, OR-ed into `error` once per cycle (several can
        # fire in the same cycle; separate sync assignments would overwrite).
        err_terms = {ERR_CONFIG: [], ERR_META: [], ERR_SEL: [], ERR_INDEX: []}
        err_now = Signal()            # the job check in CHECK (not registered: done rises with it)

        # Job checks: each is one compare of the ports, registered at start (like a
        # CSR decode); CHECK ORs the bits, so no compare tree feeds the FSM.
        nm_ok = Signal()
        m.d.comb += nm_ok.eq(0)
        for (nn, mm) in cfg.samoyeds_nm:
            with m.If((self.sam_n == nn) & (self.sam_m == mm)):
                m.d.comb += nm_ok.eq(1)
        chk_any_in = Cat(self.mode == 3, self.out_mode == 3,
                         (self.out_mode == 2) & (self.shift == 0),
                         self.n_tokens > cfg.max_tokens, self.k_words == 0,
                         self.k_words > cfg.max_kw)
        # (the checks a LOAD ignores take the port's op in, so CHECK's decision
        # is an OR of the four registers)
        not_load = self.op != OP_LOAD
        chk_mm_in = not_load & Cat(self.n_sel > cfg.max_sel, self.n_row_tiles == 0).any()
        chk_mm2_in = not_load & Cat(self.m_rows == 0, (self.mode == SAMOYEDS) & ~nm_ok,
                                    (self.mode == SAMOYEDS) & (self.v_steps == 0)).any()
        chk_vk_in = not_load & (self.mode == SAMOYEDS) & (self.v_steps > self.k_words)
        # each group's checks OR-ed on the port side of its register (V > K, a
        # compare of two ports, has a register of its own), so CHECK's decision
        # is one LUT of four registers (the OR trees behind them sat in
        # front of the FSM, done, error and the LOAD copies: a failing group)
        chk_any = Signal(); chk_mm = Signal(); chk_mm2 = Signal(); chk_vk = Signal()
        cfg_bad = Signal()
        m.d.comb += cfg_bad.eq(chk_any | chk_mm | chk_mm2 | chk_vk)
        # Job constants decoded from the ports at start (registered like the job
        # registers), so neither CHECK's derivations nor the issue logic wait on a
        # decode of `mode` behind its register (its fanout was a failing group).
        ks_port = Mux(self.mode == DENSE, self.k_words << 1, self.k_words)
        vs_port = Mux(self.mode == SAMOYEDS, self.v_steps, ks_port)
        ks_in = Signal.like(ks_port, name="ks_q")       # weight beats per tile
        v_in = Signal(max(len(ks_port), len(self.v_steps)), name="vs_q")  # beats per flush block
        job_dense = Signal()
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
        # token tiles: decoded from the port every cycle like the CHECK-only job
        # registers (in CHECK, n_sel's tiles - 2 was two chained carry chains)
        n_tt_in = Signal(17, name="ntt_sh", reset_less=True)
        ntt_one = Signal(name="ntt_one_sh", reset_less=True)    # n_sel <= cols
        m.d.sync += [n_tt_in.eq((self.n_sel + C - 1) >> _bits(C) if C > 1 else self.n_sel),
                     ntt_one.eq(self.n_sel <= C)]
        # "the count is 1" for the beat, flush-block and row-tile counters, decoded
        # from the ports the same way (they feed the counters' flag copies in CHECK)
        ks_one, vs_one, nrt_one, kw_one_in, ntok_one_in = (
            Signal(name=f"{x}_one_sh", reset_less=True) for x in ("ks", "vs", "nrt", "kw", "ntok"))
        nrt_two = Signal(name="nrt_two_sh", reset_less=True)
        # and "no SEL entries" (CHECK's move to WAIT: a compare of n_sel's register
        # in front of the move to SEL was a failing path)
        nsel_zero = Signal(name="nsel_zero_sh", reset_less=True)
        ntok_nz = Signal(name="ntok_nz_sh", reset_less=True)     # LOAD has tokens
        m.d.sync += [nsel_zero.eq(self.n_sel == 0), ntok_nz.eq(self.n_tokens != 0)]
        # and SEL's first-beat flags: n_sel > lane for each lane, n_sel <= lanes
        # (compares of n_sel's register in CHECK fed sel_end, lane_ok and t0q: a
        # failing path)
        nsel_gt = Signal(L, name="nsel_gt_sh", reset_less=True)
        nsel_le = Signal(name="nsel_le_sh", reset_less=True)
        m.d.sync += [nsel_gt.eq(Cat(self.n_sel > l for l in range(L))),
                     nsel_le.eq(self.n_sel <= L)]
        kw_one = Signal()     # the job's k_words is 1 (LOAD's beat flag after a token)
        m.d.sync += [kw_one_in.eq(self.k_words == 1), ntok_one_in.eq(self.n_tokens == 1),
                     ks_one.eq(ks_port == 1),
                     vs_one.eq(vs_port == 1),
                     nrt_one.eq(self.n_row_tiles == 1), nrt_two.eq(self.n_row_tiles == 2)]

        # ---------------------------------------------------------------- memories
        # One copy of the activation buffer per PE column: every column reads a
        # different (gathered) token in the same cycle, so each gets its own
        # read port; loads write all copies at once.
        kw_bits = _bits(cfg.max_kw)
        tok_bits = _bits(cfg.max_tokens)
        act_depth = cfg.max_tokens * cfg.max_kw
        act_wr_addr = Signal(kw_bits + tok_bits)
        act_wr_en = Signal()
        act_rd_addr = [Signal(kw_bits + tok_bits, name=f"act_rd_addr{c}") for c in range(C)]
        # The words come out of each copy through the block RAM's own output
        # register (RegReadRAM: on the ECP5 a DP16KD with REGMODE "OUTREG", one per
        # bit slice, so no read mux follows the block RAMs either): that register
        # is the s1b stage. Without it the block RAM's 5.8 ns clock-to-out left
        # under a nanosecond of a 150 MHz cycle for the route to a fabric register.
        act_q = []
        for c in range(C):
            ram = m.submodules[f"act_buf{c}"] = RegReadRAM(32, act_depth)
            m.d.comb += [ram.wr_addr.eq(act_wr_addr), ram.wr_data.eq(self.act.payload),
                         ram.wr_en.eq(act_wr_en), ram.rd_addr.eq(act_rd_addr[c])]
            act_q.append(ram.rd_data)
        # SEL banks: entry j lives in bank j % cols at address j // cols, so one
        # read at the token-tile index yields the tile's `cols` tokens. A SEL beat
        # (L entries, L dividing C) writes L consecutive banks at one address.
        # `tok` holds the current token tile's entries in registers (the activation
        # block RAMs' read addresses come from them, not through the LUT RAM's read
        # mux). The read port is transparent and addressed with the tile *after*
        # the one issued next cycle, and `tok` loads its data when a tile's last
        # beat issues, so the next tile's tokens are there the cycle after (no
        # fetch bubble); the first tile's tokens are copied from the SEL beat that
        # writes address 0.
        sel_depth = cfg.max_sel // C
        sel_wr_en = Signal(C)
        # The write address is a slice of the beat counter, not muxed by the FSM
        # state (the enables gate the write): a routed path from the state register
        # to every LUT-RAM's write-address pins limited Fmax (docs/synth.md).
        sel_wr_addr = Signal(_bits(sel_depth))
        # tt counts tokens (LOAD, up to max_tokens) or token tiles (RUN, up to
        # max_sel / cols): as wide as those need, not the port's 16 bits (its
        # load enable and carry chain were a failing group)
        tt = Signal(max(_bits(cfg.max_tokens + 1), _bits(-(-cfg.max_sel // C) + 2)) + 1)
        # the last beat of a token tile issues this cycle: one decision per SEL bank
        # (from its own copies of the counter flags), which steers the bank's read
        # address and its `tok` register (one shared decision reaching every
        # bank's address mux was a failing group)
        tok_load = Signal(C)
        # the next SEL beat writes bank c's address 0 (the first tile's token, which
        # `tok` copies from the beat): a register per bank, stepped with the SEL
        # counters, so `tok`'s load enable is not behind the write enable's decode
        # of the beat counter (sel.valid -> that decode -> `tok` was a failing group)
        t0q = Signal(C)
        sel_q = Signal()              # in SEL (a register: see load_q below)
        tok = []
        for c in range(C):
            tt_rd = Signal(len(tt) + 1, name=f"tt_rd{c}")
            m.d.comb += tt_rd.eq(Mux(tok_load[c], tt + 2, tt + 1))
            mem = Memory(shape=16, depth=sel_depth, init=[])
            m.submodules[f"sel_buf{c}"] = mem
            wp = mem.write_port()
            rp = mem.read_port(transparent_for=(wp,))
            m.d.comb += [wp.addr.eq(sel_wr_addr), wp.data.eq(self.sel.payload[c % L]),
                         wp.en.eq(sel_wr_en[c]), rp.addr.eq(tt_rd)]
            tok_c = Signal(16, name=f"tok{c}")
            with m.If(tok_load[c]):
                m.d.sync += tok_c.eq(rp.data)
            with m.Elif(sel_q & self.sel.valid & t0q[c]):
                m.d.sync += tok_c.eq(wp.data)
            tok.append(tok_c)

        # ---------------------------------------------------------------- counters / FSM
        beat = Signal(kw_bits_)       # beat within the tile
        vb = Signal(kw_bits_)         # beat within the flush block
        rt = Signal(16)               # row tile
        cnt = Signal(16)              # SEL beat counter
        first = Signal(32)            # SEL entry index of the beat's lane 0
        m.d.comb += [first.eq(cnt * L), sel_wr_addr.eq(first >> _bits(C) if C > 1 else first)]

        def sel_grp(k):     # the bank group SEL beat k writes
            return (k % (C // L)) if C > L else 0

        def writes_addr0(k, c, lane_has_entry):    # SEL beat k writes bank c's address 0
            addr = (k * L) >> _bits(C) if C > 1 else k * L
            return (sel_grp(k) == c // L) & (addr == 0) & lane_has_entry
        # `cycles` counts while a job runs. Its enable and its restart come from
        # registers written through the FSM's next state (not from the state and
        # `start` through the FSM logic, a path that limited Fmax), one copy per
        # byte (`cyc_q` below): "CHECK", where the count restarts at 1 and the port
        # reads 0 (as if the register had been cleared at start); `cyc_run`: "not
        # IDLE". cyc_chk is the same CHECK flag for the other CHECK-cycle logic.
        cycles = Signal(32)
        cyc_chk = Signal(); cyc_run = Signal()

        # pipeline state (declared here, driven below)
        # Data registers whose consumers are qualified by a valid bit have no reset
        # (`reset_less`): the reset net then reaches only the control, not every
        # datapath bit (on the ECP5 it was a 10k-load net through the fabric). What
        # a reset must clear -- valid bits, the FSM and counters, the store and its
        # route registers and selects -- keeps it.
        s1_valid = Signal()
        s1_first = Signal(reset_less=True); s1_blast = Signal(reset_less=True)
        s1_tlast = Signal(reset_less=True)
        s1_lanes = Signal(weight_layout(cfg), reset_less=True)
        s1_half = Signal(reset_less=True)  # dense: which half of the activation word
        NB = _bits(S + 1) + 1         # width of a tile's output-row count
        MW = 32 + C + NB              # tile metadata: token tile, base row, mask, rows
        s1_meta = Signal(32 + C, reset_less=True)  # token tile, base row, mask (+ rows at s1b)
        s1_rows = Signal(17, reset_less=True)      # rows left in the job at this row tile
        store_full = Signal()
        drain_busy = Signal()
        skid = SkidBuffer(result_layout(cfg), depth=OUT_SKID_DEPTH, formal=self.formal)
        # (formal: elaborated here, so the checks below can read its state)
        m.submodules.skid = Fragment.get(skid, platform) if self.formal else skid
        wiring.connect(m, wiring.flipped(self.res), skid.o)
        pipe_empty = Signal()
        s1b_valid, s1c_valid, s1d_valid, s2_valid, s3_valid = (Signal() for _ in range(5))
        # "the output FIFO is empty": wires of three registers (below), one for
        # each copy of the pop and one for the WAIT -> IDLE decode
        ofifo_empty, ofifo_empty_b, ofifo_empty_pe = Signal(), Signal(), Signal()
        rd_v = Signal()               # a beat in the FIFO's read register
        pop = Signal()                # a beat leaves the FIFO (into its read register)
        pop_b = Signal()              # the same, from its own flags: for the occupancy
        # rd_v's consumers other than the skid buffer (whose push reaches every
        # control copy and data enable) read their own copies: the WAIT -> IDLE
        # decode, and the credit count (both were failing groups behind rd_v)
        rd_v_pe, rd_v_crd = replicas(m, platform, pop, 2, "rd_v_c")
        out_busy = Signal()   # a row is in the output pipeline
        # (the store controller takes a flush at s3: see "store / drain control")
        # pe_busy equals "a beat in s1 .. s3" in every cycle (from the valid bits'
        # next states): one register instead of six in the WAIT -> IDLE decode
        pe_busy = Signal(); issue = Signal()
        m.d.sync += pe_busy.eq(issue | s1_valid | s1b_valid | s1c_valid | s1d_valid | s2_valid)
        m.d.comb += pipe_empty.eq(~pe_busy
                                  & ~store_full & ~drain_busy & ~out_busy & ofifo_empty_pe
                                  & ~rd_v_pe & ~skid.o.valid)
        # Issue gate. Nothing in the PE pipeline ever stalls (no array-wide enable:
        # its fanout was the design's critical path on the FPGA); instead a tile may
        # start only when at most one older tile is still anywhere in the unit.
        # Then the older tile finds the drain bank free when it finishes, so a
        # flush never meets a store it cannot add into.
        gate = Signal()
        m.d.comb += gate.eq(~beat_zero | (pend <= 1))

        last_beat, last_vb = beat_last, vb_last
        mask_now = Signal(C)
        rem = Signal(_bits(cfg.max_sel + 1) + 2)  # SEL entries from token tile tt on
                                                  # (n_sel - tt * cols; at most max_sel)
        for c in range(C):
            m.d.comb += mask_now[c].eq(rem > c)

        with m.If(self.clear):
            m.d.sync += self.done.eq(0)

        # The job registers: see `job_check_only` / `job_sh` and their loads below.
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
                # (CHECK's derivations load under the CHECK flag's copies: below)
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
        # The LOAD, SEL and RUN datapaths step under `load_q`, `sel_q`, `run_q`:
        # registers equal to "in LOAD" / "in SEL" / "in RUN" (written through the
        # FSM's next state), not under the state decode. The stream handshakes and
        # the ~100 counter bits they enable then start from a register beside them
        # instead of the FSM's state register (a routed path that limited Fmax).
        # The FSM keeps only the transitions.
        m.d.comb += run_n.eq(Mux(run_q, ~leave_run, enter_run))
        m.d.sync += [load_q.eq(Mux(load_q, ~leave_load, enter_load)),
                     sel_q.eq(Mux(sel_q, ~enter_run, enter_sel)),
                     run_q.eq(run_n)]
        # LOAD: tt counts whole tokens loaded (no n_tok * k_words multiplier).
        # "loading" (LOAD and tokens left) and "load finished" are registers with
        # one copy per group of loads -- the stream's ready and the block RAMs'
        # write enable, the beat/tt counters, the FSM -- replicas of their
        # next-state values (one `ld_more` register reaching all of them was a
        # failing group). The write address is the counters themselves; only the
        # enable depends on the state.
        # (CHECK's move to LOAD from the CHECK flag, not the FSM's state decode, and
        # "there are tokens" decoded on the port side: both sat in front of the
        # "loading" copies, a failing path)
        ld_n = Signal(); load_n = Signal()
        m.d.comb += [ld_n.eq(ld_more),
                     load_n.eq(Mux(load_q, ~leave_load, cyc_chk & ~cfg_bad & (op == OP_LOAD)))]
        with m.If(cyc_chk):           # the CHECK cycle
            m.d.comb += ld_n.eq(ntok_nz)
        with m.Elif(load_q & self.act.valid & ld_more & ld_bl):
            m.d.comb += ld_n.eq(~ld_tl)
        m.d.sync += ld_more.eq(ld_n)
        ldg = replicas(m, platform, Cat(load_n & ld_n, load_n & ld_n, load_n & ~ld_n), 1, "ld")[0]
        m.d.comb += [self.act.ready.eq(ldg[0]), act_wr_en.eq(self.act.valid & ldg[0]),
                     act_wr_addr.eq(Cat(beat[:kw_bits], tt[:tok_bits]))]
        with m.If(self.act.valid & ldg[1]):
            with m.If(ld_bl):
                m.d.sync += [beat.eq(0), tt.eq(tt + 1), ld_bl.eq(kw_one),
                             ld_tl.eq(tt == ntok_last1)]
            with m.Else():
                m.d.sync += [beat.eq(beat + 1), ld_bl.eq(beat == kw_last1)]
        with m.If(ldg[2]):
            m.d.sync += [self.done.eq(1), tt.eq(0)]
            m.d.comb += [enter_idle.eq(1), leave_load.eq(1)]
        # SEL: the move to RUN comes from a flag register ("this beat is the
        # last", from sel_left when it steps), not from a compare of the beat
        # counter behind the FSM (a failing path).
        with m.If(sel_q):
            m.d.comb += self.sel.ready.eq(1)
            with m.If(self.sel.valid):
                m.d.sync += [sel_left.eq(sel_left - L),
                             lane_ok.eq(Cat(sel_left > l + L for l in range(L))),
                             sel_end.eq(sel_left <= 2 * L)]
                for c in range(C):
                    m.d.comb += sel_wr_en[c].eq((sel_grp(cnt) == c // L) & lane_ok[c % L])
                m.d.sync += [cnt.eq(cnt + 1),
                             t0q.eq(Cat(writes_addr0(cnt + 1, c, sel_left > c % L + L)
                                        for c in range(C)))]
                with m.If(sel_end):
                    m.d.comb += enter_run.eq(1)
        # The SEL checks (range and order: 16-bit compares) run two cycles after the
        # beat, on two register hops (the port's payload, which lanes carry an
        # entry; the previous beat's last entry is kept beside them: one hop left the
        # compares behind a route from the port's side, a failing path); the
        # compares' results are registered once more (sel_bad below). The sticky
        # bit rises three cycles after the beat, long before the job's done (RUN
        # and the pipeline follow).
        sc_v1, sc_v = Signal(L), Signal(L)      # lanes carrying an entry of a beat taken
        sc_p1 = [Signal(16, name=f"sc1_p{l}", reset_less=True) for l in range(L)]
        # the previous beat's last entry, kept at the check stages from the beats
        # they see (sc_t1: a beat was taken): a register beside the compares,
        # enabled by a register (loaded at the port, its enable was SEL's
        # handshake, a failing path into 16 enables)
        sc_t1 = Signal()
        sc_last, sc_prev = (Signal(16, name=f"sc_{k}", reset_less=True) for k in ("last", "prev"))
        sc_nz1, sc_nz = (Signal(name=f"sc{k}_nz", reset_less=True)
                         for k in (1, 2))       # not the job's first beat
        sel_take = sel_q & self.sel.valid
        m.d.sync += [sc_v1.eq(Mux(sel_take & ~self.clear, lane_ok, 0)),
                     sc_v.eq(Mux(self.clear, 0, sc_v1)),
                     sc_t1.eq(sel_take), sc_nz1.eq(cnt != 0), sc_nz.eq(sc_nz1)]
        with m.If(sc_t1):
            m.d.sync += [sc_last.eq(sc_p1[L - 1]), sc_prev.eq(sc_last)]
        m.d.sync += [sc_p1[l].eq(self.sel.payload[l]) for l in range(L)]
        # the second hop: a copy of each lane's entry per compare it feeds (its
        # range, its order, the next lane's order), each beside its carry chain
        # (one register feeding three chains sat ~3.5 ns from one of them)
        sc_p = [replicas(m, platform, sc_p1[l], 3 if l < L - 1 else 2, f"sc2_p{l}",
                         reset_less=True) for l in range(L)]
        # each range compare reads its own copy of n_tok (loaded with it after
        # CHECK: the job register reached all of them, a 4 ns failing route)
        n_tok_rc = [Signal(16, name=f"n_tok_rc{l}") for l in range(L)]
        sel_cmp, sel_qual = [], []
        for l in range(L):
            v_rng, v_ord = sc_p[l][0], sc_p[l][1]
            # range and order registered apiece, raw: each compare's carry chain
            # ends in its register; which of them count (the lane carried an
            # entry; for lane 0's order, not the job's first beat) is registered
            # beside them and ANDed in behind (ANDed in front, it put one to three
            # LUT levels between the carry chain and its register: failing paths)
            sel_cmp += [v_rng >= n_tok_rc[l],
                        (v_ord <= sc_p[l - 1][2]) if l else (v_ord <= sc_prev)]
            sel_qual += [sc_v[l], sc_v[l] & sc_nz if l == 0 else sc_v[l]]
        with m.If(run_q):
            m.d.comb += [self.w.ready.eq(gate), issue.eq(self.w.valid & gate)]
        # The issue decision (a beat taken: `w.valid` and the gate, in RUN) enables
        # ~170 counter bits. Each counter group takes it from its own copies of the
        # flags it depends on (hdl.fpga.replicas of their next-state values, so
        # equal to them in every cycle) and ANDs `w.valid` in beside itself: one
        # flag register and a long route in front of all of them limited Fmax.
        # The flags' next states (the CHECK values, then the step on an issue):
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
        # groups: 0 beat/vb, 1 rt/rt_base/rows_left, 2 tt/rem, 3 + c SEL bank c (its
        # read address and token register)
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
        # RUN's end (issue & last_beat & rt_at_last & tt_at_last) from the FSM's own
        # copy of the flags: through the issue gate's shared decode, `pend` reached
        # the FSM state over four LUT levels (a failing path)
        iss, bl, _, ral = local_issue(3 + C)
        m.d.comb += leave_run.eq(iss & bl & ral & tt_at_last)
        m.d.comb += self.busy.eq(~fsm.ongoing("IDLE"))
        idle_n = Signal()
        m.d.comb += idle_n.eq(Mux(fsm.ongoing("IDLE"), ~leave_idle, enter_idle))
        # "in IDLE" as registers (next-state copies, equal to the FSM's IDLE decode
        # in every cycle), one per group of CHECK-flag copies: each group decodes
        # its own "IDLE and start" beside it. (From the FSM's state register, one
        # decode reached all ~20 copies: 7 ns of routing over two LUTs, a failing
        # group.) The FSM's own transition keeps `leave_idle`.
        go = self.start & ~self.clear
        idle_c = replicas(m, platform, idle_n, 4, "idle", init=1)
        leave_idle_c = [q & go for q in idle_c]
        m.d.sync += [cyc_chk.eq(leave_idle_c[0]), cyc_run.eq(~idle_n)]
        # the counter and its port mux take their own copies of the CHECK flag, one
        # per byte (cyc_chk reaching all 64 bits was a failing group, docs/timing.md);
        # `cyc_run` stays one register (its next state is the deep idle decode)
        cyc_q = replicas(m, platform, leave_idle_c[0], 4, "cyc")
        inc = cycles + 1
        for k in range(4):
            b = slice(8 * k, 8 * k + 8)
            m.d.comb += self.cycles[b].eq(Mux(cyc_q[k], 0, cycles[b]))
            with m.If(cyc_q[k]):
                m.d.sync += cycles[b].eq(1 if k == 0 else 0)
            with m.Elif(cyc_run):
                m.d.sync += cycles[b].eq(inc[b])
        # The counters restart in CHECK (nothing reads them there), from the
        # registered "CHECK" flag rather than from `start` through the IDLE decode:
        # that path from the port to ~80 counter bits limited Fmax.
        # (one copy of the CHECK flag per counter group: a single register's
        # reset net to all of them was a failing group)
        chk_q = replicas(m, platform, leave_idle_c[1], 4, "chk")
        # CHECK's derivations of the job constants load under the same copies,
        # grouped by the counters they serve (under the FSM's state decode, the
        # state register reached ~150 of them: a failing group)
        with m.If(chk_q[0]):
            m.d.sync += [cnt.eq(0), sel_end.eq(nsel_le), sel_left.eq(n_sel),
                         t0q.eq(Cat(writes_addr0(0, c, nsel_gt[c % L]) for c in range(C))),
                         lane_ok.eq(nsel_gt)]
        with m.If(chk_q[1]):
            m.d.sync += [beat.eq(0), vb.eq(0),
                         kw_last1.eq(k_words - 2), ntok_last1.eq(n_tok_sh - 2),
                         ld_bl.eq(kw_one_in), ld_tl.eq(ntok_one_in), kw_one.eq(kw_one_in),
                         k_last1.eq(ks_in - 2), v_last1.eq(v_in - 2),
                         k_one.eq(ks_one), v_one.eq(vs_one)]
        with m.If(chk_q[2]):
            m.d.sync += [rt.eq(0), rt_base.eq(0), rt_last2.eq(n_rt - 3), rt_one.eq(nrt_one),
                         rt_pen.eq(nrt_two), rt_two.eq(nrt_two),
                         rows_left.eq(m_rows_sh)]
        with m.If(chk_q[3]):
            m.d.sync += [tt.eq(0), tt_last1.eq(n_tt_in - 2), tt_at_last.eq(ntt_one),
                         rem.eq(n_sel)]
        with m.If(cyc_chk):
            m.d.sync += [job_sam.eq(mode == SAMOYEDS),
                         job_nm.eq(Cat((mode == SAMOYEDS) & (sam_n_sh == nn) & (sam_m_sh == mm)
                                       for nn, mm in cfg.samoyeds_nm))]
        # (groups of at most ~32 bits: one load enable for ~50 bits was a
        # failing group)
        # The control ports are registered in every cycle (`*_sh`, no enable), so in
        # CHECK those registers hold what the ports carried with start: CHECK reads
        # them. What the job reads after CHECK is copied from them in CHECK, under
        # the CHECK flag's copies (registers written from `start` through one LUT).
        # A load enable "IDLE and start" needed IDLE's copies, whose next state is
        # the FSM's deep WAIT -> IDLE decode (pipe_empty): copies of it spread over
        # the job registers were failing paths.
        m.d.sync += [reg.eq(port) for reg, port in job_check_only]
        m.d.sync += [sh.eq(port) for _, sh, port in job_sh]
        held = [[(mult, mult_sh)], [(m_rows, m_rows_sh)], [(n_tok, n_tok_sh)],
                [(out_mode, out_mode_sh), (shift, shift_sh), (sam_n, sam_n_sh),
                 (sam_m, sam_m_sh), (spr, spr_sh), (job_dense, job_dense_sh)]]
        held += [[(q, n_tok_sh) for q in n_tok_rc[i:i + 2]] for i in range(0, L, 2)]
        for q, group in zip(replicas(m, platform, leave_idle_c[2], len(held), "jld"), held):
            with m.If(q):
                m.d.sync += [reg.eq(sh) for reg, sh in group]
        # One register per SEL compare (range and order: 16-bit carry chains) and
        # one for whether it counts: sel_bad equals, in every cycle, a register of
        # the qualified compares cleared by `clear`.
        sel_raw = Signal(len(sel_cmp), reset_less=True)
        sel_ok = Signal(len(sel_qual))
        m.d.sync += [sel_raw.eq(Cat(sel_cmp)), sel_ok.eq(Mux(self.clear, 0, Cat(sel_qual)))]
        sel_bad = Signal(len(sel_cmp))
        m.d.comb += sel_bad.eq(sel_raw & sel_ok)
        err_terms[ERR_SEL] = [sel_bad.any()]

        # ---------------------------------------------------------------- issue stage
        # The activation word of the beat (beat // 2 in dense mode, else beat) is a
        # counter per column, each stepped by its SEL bank's copies of the issue
        # flags (local_issue(3 + c)) and restarted by its own CHECK copy, so each
        # block RAM's read address is registers only and the next-state logic sits
        # beside its counter: one counter's next state copied to every column (its
        # mux behind the issue decision, then a route to each copy) and before that
        # the dense select behind `beat` were failing groups.
        gw_chk = replicas(m, platform, leave_idle_c[3], C, "gwchk")
        word_step = Signal()          # this beat steps the word (dense: every other beat)
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
            m.d.comb += act_rd_addr[c].eq(Cat(gw_c, tok[c][:tok_bits]))
        m.d.sync += s1_valid.eq(issue)
        tt16 = Signal(16)             # the token tile in the metadata's 16-bit field
        m.d.comb += tt16.eq(tt)
        # The s1 registers load every cycle (only s1_valid says a beat is there and
        # everything behind them is qualified by the valid bits), so the issue
        # logic does not drive the enable of ~200 register bits.
        m.d.sync += [s1_lanes.eq(self.w.payload), s1_first.eq(vb == 0),
                     s1_blast.eq(last_vb | last_beat),
                     s1_tlast.eq(last_beat), s1_half.eq(beat[0]),
                     s1_meta.eq(Cat(tt16, rt_base, mask_now)), s1_rows.eq(rows_left)]
        # Bad-input checks on every beat taken (sticky; the job runs on), from the
        # s1 registers a cycle after the issue (the issue decision and the port's
        # payload through the compares into `err_q` in one cycle was a failing
        # path); the flags rise long before the job's done.
        s1_vbl = Signal(reset_less=True)
        m.d.sync += s1_vbl.eq(last_vb)
        lanes = s1_lanes
        for r in range(R):
            lo, hi = lanes[r].nib[:2], lanes[r].nib[2:]
            err_terms[ERR_META].append(s1_valid & ~job_dense & (hi <= lo))
            bad = lanes[r].idx >= sam_m
            if r > 0:
                bad = bad | (((r & (sam_n - 1)) != 0) & (lanes[r].idx <= lanes[r - 1].idx))
            err_terms[ERR_INDEX].append(s1_valid & job_sam & bad)
        # A tile must end on a flush-block boundary (V divides K).
        err_terms[ERR_CONFIG].append(s1_valid & s1_tlast & ~s1_vbl)

        # ---------------------------------------------------------------- PE array
        # Register stages, so the block RAM output, every operand hop, every
        # multiplier (a DSP block with registered inputs and outputs) and every adder
        # has a cycle to itself:
        #   s1  the beat, the activation banks addressed
        #   s1b the activation words registered out of the block RAMs (one per
        #       column), the beat's lanes and nibbles (one per row)
        #   s1c every PE's own copy of its weight pair, its column's activation word
        #       and its nibble: each operand net that spans a row or a column of the
        #       array is one register-to-register hop
        #   s1d the nibble has picked two of the four activations per PE (fabric
        #       registers beside the PE's select LUTs)
        #   s2  the DSPs' input registers: a pure hop from the fabric into the DSP
        #       row (the select LUTs sat in the fabric, their outputs crossed to
        #       the DSP row inside the same cycle: the largest failing group)
        #   s3  the two int8 x int8 products per PE
        #   s4  their sum
        #   acc (first ? 0 : acc) + sum; on a block's last beat also -> flush
        # (s4's valid and flags reach the accumulators and route selects as per-row,
        # per-PE and per-column copies of s3's: no shared s4 register)
        stages = ("s1b", "s1c", "s1d", "s2", "s3")
        s1b_flags, s1c_flags, s1d_flags, s2_flags, s3_flags = (
            Signal(3, name=f"{n}_flags", reset_less=True) for n in stages)
        s1b_meta, s1c_meta, s1d_meta, s2_meta, s3_meta = (
            Signal(MW, name=f"{n}_meta", reset_less=True) for n in stages)
        s1b_lanes = Signal(weight_layout(cfg), reset_less=True)
        s1b_half = Signal(reset_less=True)
        s1c_idx, s1d_idx, s2_idx, s3_idx = (
            [Signal(4, name=f"{n}_idx{r}", reset_less=True) for r in range(R)]
            for n in stages[1:])
        m.d.sync += [s1b_valid.eq(s1_valid), s1c_valid.eq(s1b_valid), s1d_valid.eq(s1c_valid),
                     s2_valid.eq(s1d_valid), s3_valid.eq(s2_valid),
                     s1b_flags.eq(Cat(s1_first, s1_blast, s1_tlast)), s1c_flags.eq(s1b_flags),
                     s1d_flags.eq(s1c_flags), s2_flags.eq(s1d_flags), s3_flags.eq(s2_flags),
                     s1b_meta.eq(Cat(s1_meta, Mux(s1_rows < spr, s1_rows, spr)[:NB])),
                     s1c_meta.eq(s1b_meta), s1d_meta.eq(s1c_meta), s2_meta.eq(s1d_meta),
                     s3_meta.eq(s2_meta),
                     s1b_lanes.eq(s1_lanes), s1b_half.eq(s1_half)]
        m.d.sync += [s1c_idx[r].eq(s1b_lanes[r].idx) for r in range(R)]
        m.d.sync += [s1d_idx[r].eq(s1c_idx[r]) for r in range(R)]
        m.d.sync += [s2_idx[r].eq(s1d_idx[r]) for r in range(R)]
        m.d.sync += [s3_idx[r].eq(s2_idx[r]) for r in range(R)]
        # s1c: the column's activation word, one copy per PE of the column
        act_pe = [replicas(m, platform, act_q[c], R, f"s1c_act{c}", reset_less=True)
                  for c in range(C)]
        # The accumulators and flush registers are cfg.acc_bits wide (every partial
        # sum fits: |sum| <= max_k * 2**14): a shorter carry chain behind the
        # accumulator's first-beat select than 32 bits (sign-extended at the route).
        AB = cfg.acc_bits
        acc = [[Signal(signed(AB), name=f"acc_{r}_{c}", reset_less=True) for c in range(C)]
               for r in range(R)]
        flush = [[Signal(signed(AB), name=f"flush_{r}_{c}", reset_less=True) for c in range(C)]
                 for r in range(R)]
        # The nibble each PE selects with (dense mode: the fixed pair of the beat's
        # half), registered per row at s1b and per PE at s1c: the activation select
        # then waits on a register beside it, not on the job's mode across the array.
        row_dense = replicas(m, platform, job_dense, R, "dense")
        # valid, first & valid, blast & valid steer every accumulator and flush bit
        # of the array: a copy per PE row at s3, then one per PE at s4. The
        # accumulator has no enable: a sum register that is zero without a valid
        # beat (cleared by the row's s3 valid copy) and a first flag that is
        # qualified by valid make it hold by adding zero, so its register takes the
        # adder's output directly (nothing but the carry chain between them).
        row_s3 = replicas(m, platform, Cat(s2_valid, s2_valid & s2_flags[0],
                                           s2_valid & s2_flags[1]), R, "s3f")
        for r in range(R):
            nib_b = Signal(4, name=f"s1b_nib{r}", reset_less=True)
            m.d.sync += nib_b.eq(Mux(row_dense[r],
                                     Mux(s1_half, DENSE_NIBBLES[1], DENSE_NIBBLES[0]),
                                     s1_lanes[r].nib))
            nibs = replicas(m, platform, nib_b, C, f"s1c_nib{r}", reset_less=True)
            # the weights wait a cycle per row (s1c), then take their per-PE copy at
            # s1d beside the activations' select
            w_row = Signal(16, name=f"s1c_w{r}", reset_less=True)
            m.d.sync += w_row.eq(Cat(s1b_lanes[r].v0, s1b_lanes[r].v1))
            w_pe = replicas(m, platform, w_row, C, f"s1d_w{r}", reset_less=True)
            pe_s4 = replicas(m, platform, row_s3[r][1:], C, f"s4c{r}")   # first, blast
            for c in range(C):
                lo, hi = nibs[c][:2], nibs[c][2:]
                a_w = act_pe[c][r]
                xs = Array(a_w[8 * i: 8 * i + 8].as_signed() for i in range(4))
                xa = Signal(signed(8), name=f"s1d_xa_{r}_{c}", reset_less=True)
                xb = Signal(signed(8), name=f"s1d_xb_{r}_{c}", reset_less=True)
                # s2 = the DSPs' input registers, s3 = their output registers
                mul0 = m.submodules[f"pe{r}_{c}_mul0"] = RegMul(signed(8), signed(8))
                mul1 = m.submodules[f"pe{r}_{c}_mul1"] = RegMul(signed(8), signed(8))
                ps = Signal(signed(17), name=f"s4_sum_{r}_{c}", reset_less=True)
                nxt = Signal(signed(AB), name=f"accn_{r}_{c}")
                m.d.sync += [xa.eq(xs[lo]), xb.eq(xs[hi])]
                m.d.comb += [mul0.a.eq(w_pe[c][:8].as_signed()), mul0.b.eq(xa),
                             mul1.a.eq(w_pe[c][8:16].as_signed()), mul1.b.eq(xb),
                             nxt.eq(Mux(pe_s4[c][0], 0, acc[r][c]) + ps)]
                with m.If(row_s3[r][0]):
                    m.d.sync += ps.eq(mul0.p + mul1.p)
                with m.Else():
                    m.d.sync += ps.eq(0)
                m.d.sync += acc[r][c].eq(nxt)
                with m.If(pe_s4[c][1]):
                    m.d.sync += flush[r][c].eq(nxt)
        # Which store row each flushed PE row lands on (one-hot per store row).
        # Candidates are fixed at elaboration by cfg.samoyeds_nm, so the store's
        # crossbar holds only the connections some supported (N, M) can use. The
        # selects are decoded from the indices when the flush registers load, so the
        # store's add sees registered one-hot selects (the decode is not on its path).
        route = {}
        G, W = 8, 4                   # a store lane's nibbles: its route selects and its
                                      # store/drain control have one copy per nibble
        # The select registers are decoded once per store column, from that
        # column's own copies of the indices and of "a block's last beat" (one
        # shared select register per store row reached 4 * cols copies spread
        # over the whole store: 7 ns of pure routing).
        s4_idx_c = [replicas(m, platform, s3_idx[r], C, f"s4_idx{r}_c", reset_less=True)
                    for r in range(R)]
        s4_fl_c = replicas(m, platform, s3_valid & s3_flags[1], C, "s4_fl_c")
        jm_c = replicas(m, platform, Cat(job_sam, job_nm), C, "jobnm_c")   # job constants

        def cond(r, c, t):            # column c's condition for a term (see below)
            if t is None:
                return ~jm_c[c][0]
            k, i = t
            return jm_c[c][1 + k] & (s4_idx_c[r][c] == i)
        for s_ in range(S):
            # (row, None) for the identity, (row, (k, i)) for Samoyeds' (N, M) k at index i
            terms = []
            if s_ < R:
                terms.append((s_, None))
            for k, (nn, mm) in enumerate(cfg.samoyeds_nm):
                b, i = divmod(s_, mm)
                if b * nn >= R:
                    continue
                for r in range(b * nn, b * nn + nn):
                    terms.append((r, (k, i)))
            # one select per PE row that can land here (the modes' conditions OR-ed):
            # fewer select copies and a narrower OR in front of every routed bit
            rows_here = sorted({r for r, _ in terms})
            by_row = [[t for rr, t in terms if rr == r] for r in rows_here]
            # One copy per byte of each store lane, a cycle behind its column's
            # select register (as the flush copies below are behind the flush
            # registers): a shared select register would reach 32 * cols route bits.
            # The selects are a one-cycle pulse (zero unless a flush loads), so the
            # routed value is zero except in the cycle its store lane adds it: the
            # store then adds every cycle and needs no load enable or select behind
            # its adder.
            route[s_] = []
            for c in range(C):
                sels = Signal(len(rows_here), name=f"f_route{s_}_{c}")
                m.d.sync += sels.eq(Mux(s4_fl_c[c],
                                        Cat(_or([cond(r, c, t) for t in ts])
                                            for r, ts in zip(rows_here, by_row)), 0))
                copies = replicas(m, platform, sels, G, f"froute{s_}_{c}_")
                route[s_].append([[(r, copies[k][j]) for j, r in enumerate(rows_here)]
                                  for k in range(G)])
        # The first route stage: each flush register is copied once per quarter of the
        # store rows it can reach (per half with 2-3 store rows: a pure register hop,
        # which the placer puts between the PE and those store lanes); the second ORs
        # the copies onto each store lane.
        NH = 4 if S >= 4 else (2 if S >= 2 else 1)
        fl2 = [[replicas(m, platform, flush[r][c], NH, f"fl2_{r}_{c}", reset_less=True)
                for c in range(C)] for r in range(R)]
        for r in range(R):            # sign-extended to the store's 32 bits (wires)
            for c in range(C):
                for h in range(NH):
                    x = Signal(signed(32), name=f"fl2x_{r}_{c}_{h}")
                    m.d.comb += x.eq(fl2[r][c][h].as_signed())
                    fl2[r][c][h] = x

        # ---------------------------------------------------------------- store / drain control
        # The store, drain and output lanes only execute: a small controller decides
        # each cycle what they do (copy the store into the drain bank, shift P rows
        # out; the routed flush is added every cycle, zero when none lands) and the
        # decision reaches the lanes through a register tree of CTRL_LAG levels
        # (the decision register, then one copy per store column, per lane, per byte
        # of a lane). So the controller runs CTRL_LAG cycles ahead of the lanes: it
        # takes a flush at s3, whose sums reach their store lane CTRL_LAG cycles
        # later (s4, the flush registers and the two route stages). Nothing in the
        # lanes feeds back into the controller, and `res` backpressure never reaches them either: the output
        # pipeline runs free into an output FIFO whose entries the controller
        # counts as credits (it shifts the drain bank only with an entry free). No
        # control net then has to cross the store, the drain bank or the output
        # lanes within one cycle.
        LAG = CTRL_LAG
        # A tile's last flush at s3 (valid, a block's last beat, the tile's last
        # block): the controller's own copy, loaded from s2 beside the store
        # registers it enables (through s3_flags, its LUT sat beside the PE rows'
        # copies and crossed the array to those enables: the small's worst path).
        tile_end = replicas(m, platform, s2_valid & s2_flags[1] & s2_flags[2], 1, "s3_tend")[0]
        a_tt, a_base, a_mask, a_n = (s3_meta[:16], s3_meta[16:32], s3_meta[32:32 + C],
                                     s3_meta[32 + C:])
        st_tt = Signal(16); st_base = Signal(16); st_mask = Signal(C); st_n = Signal(NB)
        dr_tt = Signal(16); dr_mask = Signal(C); dr_base = Signal(16)
        pb = _bits(P) if P > 1 else 0
        dr_q = Signal(NB); dr_lastq = Signal(NB); dr_n = Signal(NB)
        FD = OUT_FIFO_DEPTH
        crd = Signal(range(FD + 1))   # drain beats decided and not yet out of the FIFO
        crd_ok = Signal(init=1)       # crd < FD: a beat may leave the drain bank
        # A finished tile moves from the store into a free drain bank (copy). A
        # tile's last flush always lands in the store first: the drain bank loads
        # only from the store, so the store's adder drives nothing but the store.
        copy = store_full & ~drain_busy
        d_shift = drain_busy & crd_ok   # P rows leave the drain bank
        # dr_at_last == (dr_q == dr_lastq) in every cycle, stepped with dr_q: no
        # compare between the drain registers and drain_done, which reaches the
        # issue gate's copies through `pend` (a failing group)
        dr_at_last = Signal()
        drain_done = d_shift & dr_at_last
        m.d.sync += [store_full.eq(tile_end | (store_full & ~copy)),
                     drain_busy.eq(copy | (drain_busy & ~drain_done))]
        # A popped beat returns its credit a cycle later (through rd_v, the registered
        # pop): the credit count then waits on no FIFO compare. A beat holds its
        # credit 13 cycles (decision to FIFO read register), fewer than the 16
        # entries, so a sink that never stalls never runs out of credits.
        crd_n = crd + d_shift - rd_v_crd
        m.d.sync += [crd.eq(crd_n), crd_ok.eq(crd_n < FD)]
        with m.If(tile_end):
            m.d.sync += [st_tt.eq(a_tt), st_base.eq(a_base), st_mask.eq(a_mask), st_n.eq(a_n)]
        st_lastq = (st_n - 1) >> pb     # the drain's last beat index
        with m.If(copy):
            m.d.sync += [dr_tt.eq(st_tt), dr_mask.eq(st_mask), dr_q.eq(0),
                         dr_base.eq(st_base), dr_n.eq(st_n), dr_lastq.eq(st_lastq),
                         dr_at_last.eq(st_lastq == 0)]
        with m.Elif(d_shift):
            m.d.sync += [dr_q.eq(dr_q + 1), dr_at_last.eq(dr_q + 1 == dr_lastq)]
        started = issue & beat_zero   # beat_zero == (beat == 0) in RUN
        m.d.comb += pend_n.eq(pend + started - drain_done)
        m.d.sync += pend.eq(pend_n)
        # The decision tree: the decision register, then a copy per store column, per
        # lane and per byte of a lane (a lane's store and drain bits are ~64 loads).
        # A landing flush needs no decision: the routed value is zero unless a flush lands.
        assert LAG == 4, "the decision tree below has CTRL_LAG = 4 register levels"
        ops = Signal(2)
        m.d.sync += ops.eq(Cat(copy, d_shift))
        t1 = replicas(m, platform, ops, C, "sctl1")
        t2 = [replicas(m, platform, t1[c], S, f"sctl2c{c}") for c in range(C)]
        t3 = [[replicas(m, platform, t2[c][s_], G, f"sctl3s{s_}c{c}") for c in range(C)]
              for s_ in range(S)]

        # ---------------------------------------------------------------- accumulator store
        # A flush adds into the store; a finished tile waits there (store_full) until
        # it is copied into the drain bank, which then shifts it out.
        store = [[Signal(signed(32), name=f"store_{s_}_{c}") for c in range(C)] for s_ in range(S)]
        drain = [[Signal(signed(32), name=f"drain_{s_}_{c}", reset_less=True) for c in range(C)]
                 for s_ in range(S)]
        for s_ in range(S):
            for c in range(C):
                # The route stage: registered beside its store lane, so the adder no
                # longer waits on a mux tree fed from PE rows across the array.
                routed = Signal(signed(32), name=f"route_{s_}_{c}")
                for k in range(G):
                    b = slice(k * W, (k + 1) * W)
                    contrib = 0
                    for r, cond in route[s_][c][k]:
                        contrib = contrib | Mux(cond, fl2[r][c][s_ * NH // S][b], 0)
                    m.d.sync += routed[b].eq(contrib)
                # The store adds the routed value every cycle (zero unless a flush
                # lands); a copy empties it, so an add in the same cycle as a copy
                # leaves the routed value alone. The adder's output is the store's
                # next value: no enable, no select behind the carry chain.
                kept = Signal(signed(32), name=f"kept_{s_}_{c}")
                below = drain[s_ + P][c] if s_ + P < S else Const(0, 32)
                for k in range(G):
                    l_copy, l_shift = t3[s_][c][k]
                    b = slice(k * W, (k + 1) * W)
                    st, dr = store[s_][c][b], drain[s_][c][b]
                    m.d.comb += kept[b].eq(Mux(l_copy, 0, st))
                    # The drain bank is a shift register: P rows leave per beat from the top.
                    with m.If(l_copy):
                        m.d.sync += dr.eq(st)
                    with m.Elif(l_shift):
                        m.d.sync += dr.eq(below[b])
                m.d.sync += store[s_][c].eq(kept + routed)

        # ---------------------------------------------------------------- drain / output
        # Output pipeline, one per drain lane (top P rows x cols), free running: each
        # stage registers every cycle and a valid bit travels with it, from the
        # lane's own copy of the shift decision:
        #   o0 the drain row, copied beside the lane
        #   o1 lo * mult in a DSP; hi * mult in a second DSP (requant_hi_dsp) or
        #      as two LUT partial sums
        #   o2 lo product + rounding bit; hi partials summed (or hi's product copied)
        #   o3 + (hi product << 17): acc * mult + rounding, exact
        #   o4 t against the job's saturation mask (AND-OR trees in 16-bit groups),
        #      beside the coarse shift by shift & ~3
        #   o5 the saturation flags (the groups OR-ed, or the int8_sat clamp flags
        #      compared in o3), the fine shift by shift & 3 (or the int8_sat value)
        #   o6 the select: +127, -128, the int8 value or the int32 value
        # and then into the lane's column of the output FIFO (LUT RAM, written at the
        # lane's own write pointer). The row/tile metadata travels the same
        # CTRL_LAG + OUT_STAGES cycles in the controller and lands in the FIFO's metadata
        # column in the same cycle.
        # Every store value fits cfg.acc_bits signed bits (|acc| <= max_k * 2**14),
        # so acc = hi * 2**17 + lo with lo = acc[:17] unsigned and hi = acc[17:acc_bits]
        # signed. lo * mult is 17 x 16 bits: one MULT18X18D. hi * mult is a second
        # MULT18X18D when the build has the DSPs for it (cfg.requant_hi_dsp); else,
        # hi being a few bits, a handful of shifted adds in LUTs: one term per radix-4 digit
        # of hi (0, mult, 2 mult or 3 mult; 3 mult is a per-lane job constant) and
        # one for the sign bit (-mult), summed in two trees of at most two terms
        # for hb <= 7, i.e. one carry chain each. (The 8 x 8 default's 2 x 16
        # lane DSPs would not fit the ECP5-85k next to the PE array's 128.)
        NST = OUT_STAGES
        OW = 32 + C + P
        fb = _bits(FD)
        ov = Signal(LAG + NST)        # the controller's copy of the beats in flight
        o_meta = [Signal(OW, name=f"om{k}_meta", reset_less=True) for k in range(LAG + NST)]
        # out_busy as a register equal to (ov != 0) in every cycle (from ov's next
        # value): the OR of the beats in flight was in front of the FSM's WAIT exit
        # and the `idle` copies (once seed 1's worst path, docs/timing.md)
        m.d.sync += out_busy.eq(d_shift | (ov[:-1] != 0))
        rmask = Signal(P)
        m.d.comb += [rmask[p].eq(((dr_q << pb) | p) < dr_n) for p in range(P)]
        m.d.sync += [ov.eq(Cat(d_shift, ov[:-1])),
                     o_meta[0].eq(Cat((dr_base + (dr_q << pb))[:16], dr_tt, dr_mask, rmask))]
        m.d.sync += [o_meta[k + 1].eq(o_meta[k]) for k in range(LAG + NST - 1)]
        wp = Signal(fb + 1); rp = Signal(fb + 1)
        wp_n = Signal(fb + 1)
        # wp + 1 and rp + 1 as registers stepped with their pointers (equal to the
        # pointer + 1 in every cycle): the pointers' next values then wait on no
        # carry chain (rp + 1 was in front of the read pointer's copies, a failing
        # path)
        wp_inc = Signal(fb + 1, init=1)
        m.d.comb += wp_n.eq(Mux(ov[-1], wp_inc, wp))
        m.d.sync += wp_inc.eq(Mux(ov[-1], wp_inc + 1, wp_inc))
        m.d.sync += wp.eq(wp_n)
        # The read pointer reaches every lane's FIFO column: one copy per lane (and
        # one for the metadata), next-state copies equal to rp in every cycle.
        # The FIFO is read into a free-running register per lane (beside its LUT
        # RAM), which then feeds the skid buffer: the read data crosses to the
        # skid buffer as a register-to-register hop. So the skid buffer never has
        # to refuse a beat, the FIFO is read only while fewer than OUT_SKID_DEPTH
        # beats are in the read register and the skid buffer (`fin`).
        # The pop is decided twice from copies of its two flags: `pop` for the
        # read pointer (and its 17 copies) and the read register, `pop_b` for the
        # FIFO's occupancy and `fin` (one pop reaching all of them was a failing
        # path).
        fin = Signal(range(OUT_SKID_DEPTH + 1))
        taken = skid.o.valid & skid.o.ready
        fin_n = fin + pop_b - taken
        fin_ok = replicas(m, platform, fin_n < OUT_SKID_DEPTH, 2, "fin_ok", init=1)
        m.d.sync += [fin.eq(fin_n), rd_v.eq(pop)]
        m.d.comb += [pop.eq(~ofifo_empty & fin_ok[0]), pop_b.eq(~ofifo_empty_b & fin_ok[1]),
                     skid.i.valid.eq(rd_v)]
        # pop selects between precomputed values (rp + 1 does not wait for it): it
        # was the last decision into this carry chain and the read pointer's
        # replicas
        rp_n = Signal(fb + 1)
        rp_inc = Signal(fb + 1, init=1)
        m.d.comb += rp_n.eq(Mux(pop, rp_inc, rp))
        m.d.sync += rp_inc.eq(Mux(pop, rp_inc + 1, rp_inc))
        # The empty flag is a register, from the FIFO's occupancy kept as a
        # thermometer code (occ[i]: more than i entries; it never overflows, the
        # credits keep it at most FD): its next value is one LUT of the write, the
        # pop and two occupancy bits. (As pointer compares selected by the write
        # and the pop it was three LUT levels behind the pointers, a failing path.)
        # It equals wp == rp in every cycle.
        occ = Signal(FD, name="ofifo_occ")
        occ_n = Signal(FD)
        m.d.comb += occ_n.eq(Mux(ov[-1] & ~pop_b, Cat(1, occ[:-1]),
                                 Mux(pop_b & ~ov[-1], Cat(occ[1:], 0), occ)))
        m.d.sync += [rp.eq(rp_n), occ.eq(occ_n)]
        ofe = replicas(m, platform, ~occ_n[0], 3, "ofifo_empty", init=1)
        m.d.comb += [ofifo_empty.eq(ofe[0]), ofifo_empty_b.eq(ofe[1]), ofifo_empty_pe.eq(ofe[2])]
        rp_q = replicas(m, platform, rp_n, P * C + 1, "orp")
        mfifo = m.submodules.ofifo_meta = Memory(shape=OW, depth=FD, init=[])
        mwp, mrp = mfifo.write_port(), mfifo.read_port(domain="comb")
        m.d.comb += [mwp.addr.eq(wp[:fb]), mwp.data.eq(o_meta[-1]), mwp.en.eq(ov[-1]),
                     mrp.addr.eq(rp_q[P * C][:fb])]
        rd_meta = Signal(OW, reset_less=True)
        m.d.sync += rd_meta.eq(mrp.data)
        m.d.comb += Cat(skid.i.payload.row, skid.i.payload.tile, skid.i.payload.mask,
                        skid.i.payload.rmask).eq(rd_meta)
        # The job constants of the output stage (shift, out_mode, mult) reach every
        # bit of every lane: each lane gets its own copies (hdl.fpga.replicas)
        # through a two-level tree (one copy a lane, then five: o1 mult for the DSP
        # and one for each of the two LUT partial-product trees, o2-o4 shift, o5
        # shift and mode; four with requant_hi_dsp: one mult for each DSP), loaded
        # three cycles after the job starts, long before its first row arrives. (One level fanning out to all the lanes'
        # copies made the job registers' nets the critical path: pure routing.)
        f_lanes = []                      # formal only: each lane's FIFO column
        HI_DSP = cfg.requant_hi_dsp
        NCFG = 4 if HI_DSP else 5
        cfg_l1 = replicas(m, platform, Cat(shift, out_mode, mult), P * C, "ocfg1", reset_less=True)
        lane_cfg = [q for i in range(P * C)
                    for q in replicas(m, platform, cfg_l1[i], NCFG, f"ocfg{i}_", reset_less=True)]
        # Rounding bit and saturation mask of requant, derived from the job's shift
        # once (a cycle after start) and copied to every lane. With t the rounded
        # product, (t >> shift) > 127 iff t >= 128 << shift iff t >= 0 and some bit
        # k >= shift + 7 of t is set; (t >> shift) < -128 iff t < 0 and some such
        # bit is clear (two's complement). So the saturation tests are AND-OR trees
        # of t against the mask (bit k set iff k >= shift + 7): plain LUTs beside
        # the barrel shifter (which then only makes 8 bits), no carry chain that
        # every bit of t has to reach.
        hb = AB - 17                      # >= 1 for every legal max_k
        TW = hb + 37                      # width of t (o3)
        # (From a copy of the job's shift beside them: a cycle later, still long
        # before the first row, and the shift register's net no longer reaches
        # both these decoders and the lanes' config tree.)
        shift_c = replicas(m, platform, shift, 1, "oshift", reset_less=True)[0]
        rnd_c = Signal(31)
        sat_mk_c = Signal(TW - 7)         # bits 0-6 of the mask are always clear
        # (the rounding bit decoded by compares: shift - 1 was a carry chain in
        # front of the decoder; the mask's "shift <= k" as plain logic, not the
        # carry-chain compares Yosys makes of `<=`, a failing group)
        m.d.sync += [rnd_c.eq(Cat(shift_c == k + 1 for k in range(31))),
                     sat_mk_c.eq(Cat(_le_const(shift_c, k - 7) for k in range(7, TW)))]
        req_l1 = replicas(m, platform, Cat(rnd_c, sat_mk_c), P, "oreq1", reset_less=True)
        lane_req = [q for p in range(P)
                    for q in replicas(m, platform, req_l1[p], C, f"oreq{p}_", reset_less=True)]
        for p in range(P):
            for c in range(C):
                n = f"{p}_{c}"
                # o0: the drain bank's row copied beside its lane (a pure register
                # hop: the bank sits by the store, the lanes by the output FIFO, and
                # the route between them left no time for o1's multiplier logic).
                # The low bits' copy is the DSP's own input register: a register in
                # the fabric in front of the DSP's unregistered input left the route
                # into the DSP row plus the multiplier in one cycle.
                src = Signal(32, name=f"o0_{n}", reset_less=True)
                m.d.sync += src.eq(drain[p][c])
                lq = lane_cfg[(p * C + c) * NCFG: (p * C + c + 1) * NCFG]
                qa, qa_h0, qb, qc = lq[0], lq[1], lq[-2], lq[-1]
                l_mult = qa[7:23]
                l_shift = qb[:5]
                o5_shift, o5_mode = qc[:5], qc[5:7]
                DR = dict(reset_less=True)     # the lane's valid bits travel in `lv`
                # the output mode decoded into a register per lane (a job constant,
                # a cycle behind its copy): the decode was a LUT level on the way
                # into the select
                m_i32 = Signal(name=f"o5_i32_{n}", **DR)
                m_sat = Signal(name=f"o5_sat_{n}", **DR)
                m.d.sync += [m_i32.eq(o5_mode == 0), m_sat.eq(o5_mode == 1)]
                # this lane's copy of the rounding bit and the saturation mask
                rq = lane_req[p * C + c]
                rnd_bit = rq[:31]
                sat_mk = rq[31:]
                # o0 -> o1: the low 17 bits x mult in a DSP (its input registers are
                # o0, its output register o1)
                lo_mul = m.submodules[f"req{n}_mul"] = RegMul(unsigned(17), unsigned(16))
                m.d.comb += [lo_mul.a.eq(drain[p][c][:17]), lo_mul.b.eq(l_mult)]
                lo_p = lo_mul.p
                o1a, o2a, o3a = (Signal(signed(32), name=f"o{k}_acc_{n}", **DR) for k in (1, 2, 3))
                s_lo = Signal(unsigned(34), name=f"o2_lo_{n}", **DR)
                s_hi = Signal(signed(hb + 19), name=f"o2_hi_{n}", **DR)
                t = Signal(signed(TW), name=f"o3_t_{n}", **DR)
                o4a = Signal(signed(32), name=f"o4_acc_{n}", **DR)
                big = Signal(name=f"o3_big_{n}", **DR)       # int8_sat: o3a > 127
                small = Signal(name=f"o3_small_{n}", **DR)   # int8_sat: o3a < -128
                # The saturation tests: o4 registers the sign of t and, per group
                # of SG bits from bit 7 on, "a masked bit is set" (pos) and "a
                # masked bit is clear" (neg); o5 ORs the groups.
                SG = 16
                groups = [(k, min(k + SG, TW)) for k in range(7, TW, SG)]
                pos_g = Signal(len(groups), name=f"o4_pos_{n}", **DR)
                neg_g = Signal(len(groups), name=f"o4_neg_{n}", **DR)
                t_neg, big4, small4 = (Signal(name=f"o4_{x}_{n}", **DR)
                                       for x in ("tneg", "big", "small"))
                f_pos = Signal(name=f"o5_pos_{n}")     # saturate to +127
                f_neg = Signal(name=f"o5_neg_{n}")     # saturate to -128
                m.d.comb += [f_pos.eq(Mux(m_sat, big4, ~t_neg & pos_g.any())),
                             f_neg.eq(Mux(m_sat, small4, t_neg & neg_g.any()))]
                tq = Signal(11, name=f"o4_tq_{n}", **DR)     # t >> (shift & ~3): 11 bits suffice
                # o5 registers the flags, the int8 candidate and the int32 value;
                # o6 selects (the select after the flags was the lanes' worst path)
                f_pos5, f_neg5 = (Signal(name=f"o5_f{x}_{n}", **DR) for x in ("pos", "neg"))
                v5 = Signal(signed(8), name=f"o5_v_{n}", **DR)
                o5a = Signal(signed(32), name=f"o5_acc_{n}", **DR)
                o6 = Signal(signed(32), name=f"o6_{n}", **DR)
                if HI_DSP:
                    # hi * mult in a second DSP beside lo's: hi (signed) x mult
                    # (unsigned, so one more bit), o0 its input registers, o1 its
                    # output register; at o2 s_hi copies it, where the LUT form sums
                    # its two trees (same cycles, same numbers)
                    hi_mul = m.submodules[f"req{n}_mulhi"] = RegMul(signed(hb), signed(17))
                    m.d.comb += [hi_mul.a.eq(drain[p][c][17:AB].as_signed()),
                                 hi_mul.b.eq(Cat(qa_h0[7:23], Const(0, 1)).as_signed())]
                    # (o1a is written in each branch: in the LUT form beside its
                    # trees, the statement order its measured Verilog has)
                    m.d.sync += o1a.eq(src)
                    hi_next = hi_mul.p
                else:
                    # hi's own copies at o0: each radix-4 term its digit's bits (kept
                    # registers: plain copies were merged into src by Yosys, and src's
                    # hi bits then reached o1a and every term's ~18 select LUTs, a
                    # failing group)
                    digits = [(i, min(i + 2, hb - 1)) for i in range(0, hb - 1, 2)]
                    hi_t = [replicas(m, platform, drain[p][c][17 + a:17 + b], 1,
                                     f"o0_hi{j}_{n}", reset_less=True)[0]
                            for j, (a, b) in enumerate(digits)]
                    hi_t.append(replicas(m, platform, drain[p][c][AB - 1], 1,
                                         f"o0_hs_{n}", reset_less=True)[0])
                    # hi * mult: a term per radix-4 digit of hi's unsigned bits, one for
                    # the sign bit; the first half of the terms from one copy of mult,
                    # the rest from the other. 3 mult and -mult are registers beside the
                    # lane (mult is a job constant): no carry chain in front of the trees
                    half = (len(digits) + 2) // 2
                    qa_h1 = lq[2]
                    tmult = [(qa_h0 if j < half else qa_h1)[7:23] for j in range(len(digits) + 1)]
                    m3 = {}
                    terms = []
                    for j, (a, b) in enumerate(digits):
                        mj = tmult[j]
                        if b - a == 1:
                            terms.append(Mux(hi_t[j][0], mj, 0) << a)
                            continue
                        h = int(j >= half)
                        if h not in m3:
                            m3[h] = Signal(18, name=f"o1_m3_{h}_{n}", **DR)
                            m.d.sync += m3[h].eq(mj + (mj << 1))
                        d = hi_t[j]
                        terms.append(Mux(d[1], Mux(d[0], m3[h], mj << 1),
                                         Mux(d[0], mj, 0)) << a)
                    ha = Signal(signed(hb + 18), name=f"o1_ha_{n}", **DR)
                    hbp = Signal(signed(hb + 18), name=f"o1_hb_{n}", **DR)
                    nmult = Signal(signed(17), name=f"o1_nmult_{n}", **DR)
                    m.d.sync += nmult.eq(-Cat(tmult[-1], Const(0, 1)).as_signed())
                    terms.append(Mux(hi_t[-1][0], nmult << (hb - 1), 0))
                    m.d.sync += [o1a.eq(src),
                                 ha.eq(_tree(terms[:half])), hbp.eq(_tree(terms[half:]))]
                    hi_next = ha + hbp
                low8 = (tq >> o5_shift[:2])[:8].as_signed()
                m.d.sync += [o2a.eq(o1a), s_lo.eq(lo_p + rnd_bit), s_hi.eq(hi_next),
                             o3a.eq(o2a), t.eq(s_lo + (s_hi << 17)),
                             big.eq(o2a > 127), small.eq(o2a < -128),
                             o4a.eq(o3a),
                             t_neg.eq(t[-1]),
                             pos_g.eq(Cat((t[a:b] & sat_mk[a - 7:b - 7]).any() for a, b in groups)),
                             neg_g.eq(Cat((~t[a:b] & sat_mk[a - 7:b - 7]).any() for a, b in groups)),
                             big4.eq(big), small4.eq(small),
                             tq.eq(t >> Cat(Const(0, 2), l_shift[2:5])),
                             f_pos5.eq(f_pos), f_neg5.eq(f_neg),
                             v5.eq(Mux(m_sat, o4a[:8].as_signed(), low8)), o5a.eq(o4a),
                             o6.eq(Mux(m_i32, o5a,
                                       Mux(f_pos5, 127, Mux(f_neg5, -128, v5))))]
                # the lane's valid bits (from its store lane's copy of the shift
                # decision) and its FIFO column, written at its own pointer
                lv = Signal(NST, name=f"ov_{n}")
                lwp = Signal(fb, name=f"owp_{n}")
                m.d.sync += lv.eq(Cat(t3[p][c][0][1], lv[:-1]))
                with m.If(lv[-1]):
                    m.d.sync += lwp.eq(lwp + 1)
                lf = m.submodules[f"ofifo_{n}"] = Memory(shape=32, depth=FD, init=[])
                lfw, lfr = lf.write_port(), lf.read_port(domain="comb")
                m.d.comb += [lfw.addr.eq(lwp), lfw.data.eq(o6), lfw.en.eq(lv[-1]),
                             lfr.addr.eq(rp_q[p * C + c][:fb])]
                rd_q = Signal(32, name=f"ord_{n}", **DR)
                m.d.sync += rd_q.eq(lfr.data)
                m.d.comb += skid.i.payload.data[p][c].eq(rd_q)
                if self.formal:
                    f_lanes.append((lf, lv, lwp, o6, rd_q))

        # The stream checks (SEL, metadata, indices, the tile-end check) are registered
        # once before they reach `error` (their compare trees then end in a register);
        # the job check in CHECK is not: `done` rises with it. Every stream check
        # fires many cycles before the job's `done`.
        err_set = Signal(4)
        for bit, terms in err_terms.items():
            any_ = 0
            for t in terms:
                any_ = any_ | t
            m.d.comb += err_set[bit.bit_length() - 1].eq(any_)
        err_q = Signal(4)
        m.d.sync += err_q.eq(Mux(self.clear, 0, err_set))
        m.d.sync += error.eq(Mux(self.clear, 0,
                                 error | err_q | Mux(err_now, ERR_CONFIG, 0)))
        if self.formal:
            def A(test, msg):
                m.d.comb += Assert(test, f"sptc: {msg}")
            A(pe_busy == (s1_valid | s1b_valid | s1c_valid | s1d_valid | s2_valid | s3_valid),
              "pe_busy != a beat in s1 .. s3")
            for k, q in enumerate(flag_q):
                A(q == Cat(run_q, beat_zero, pend[1], beat_last, vb_last, rt_at_last),
                  f"issue flag copy {k} != the flags")
            states = ("IDLE", "CHECK", "LOAD", "SEL", "RUN", "WAIT")
            A(sum(fsm.ongoing(x) for x in states) == 1, "the FSM in no state")
            A((load_q == fsm.ongoing("LOAD")) & (sel_q == fsm.ongoing("SEL"))
              & (run_q == fsm.ongoing("RUN")), "load_q/sel_q/run_q != the FSM's state")
            A(ldg == Cat(load_q & ld_more, load_q & ld_more, load_q & ~ld_more),
              "the LOAD flag copies != (load_q, ld_more)")
            for k, q in enumerate(idle_c):
                A(q == fsm.ongoing("IDLE"), f"idle copy {k} != the FSM's IDLE")
            A(~drain_busy | (dr_at_last == (dr_q == dr_lastq)),
              "dr_at_last != (dr_q == dr_lastq) while draining")
            A(~drain_busy | (dr_q <= dr_lastq), "drain beat past the tile's last")
            A(out_busy == (ov != 0), "out_busy != (ov != 0)")
            A(wp_inc == (wp + 1)[:len(wp)], "wp_inc != wp + 1")
            A(rp_inc == (rp + 1)[:len(rp)], "rp_inc != rp + 1")
            for k, q in enumerate(rp_q):
                A(q == rp, f"read pointer copy {k} != rp")
            for k, q in enumerate(ofe):
                A(q == (wp == rp), f"output FIFO empty flag {k} != (wp == rp)")
            A(occ[0] == (wp != rp), "output FIFO occupancy != (wp != rp)")
            # (what makes the above inductive: the occupancy is a thermometer code
            # counting wp - rp, and the credits count every beat past the drain bank)
            held = sum(occ[i] for i in range(FD))
            for i in range(FD - 1):
                A(occ[i] | ~occ[i + 1], "output FIFO occupancy not a thermometer code")
            A(held == (wp - rp)[:len(wp)], "output FIFO occupancy != wp - rp")
            A(crd == sum(ov[i] for i in range(len(ov))) + held + rd_v,
              "credits != beats in the output pipeline, the FIFO and its read register")
            A((crd <= FD) & (crd_ok == (crd < FD)), "credits out of range or crd_ok wrong")
            A((rd_v_pe == rd_v) & (rd_v_crd == rd_v), "rd_v copies != rd_v")
            # the skid buffer never refuses a beat (the read register has no
            # enable): `fin` counts the read register and the skid buffer's beats
            sk = skid.formal_state["occ"]
            A(fin == rd_v + sum(sk[i] for i in range(OUT_SKID_DEPTH)),
              "fin != beats in the read register and the skid buffer")
            A(~rd_v | skid.i.ready, "the skid buffer refuses a beat")
            for k, q in enumerate(fin_ok):
                A(q == (fin < OUT_SKID_DEPTH), f"fin_ok copy {k} != (fin < OUT_SKID_DEPTH)")
            self._formal_out_fifo(m, A, dict(
                FD=FD, fb=fb, LAG=LAG, P=P, C=C, ov=ov, ops=ops, t1=t1, t2=t2, t3=t3,
                write=ov[-1], data=o_meta[-1], mfifo=mfifo, mwp=mwp, wp=wp, rp=rp,
                pop=pop, held=held, rd_v=rd_v, rd_meta=rd_meta, lanes=f_lanes,
                skid_valid=skid.i.valid))
        return m

    def _formal_out_fifo(self, m, A, f):
        """Formal only: the output FIFO's data (no loss, no duplication, order kept).

        The FIFO is a metadata column and one column per lane, all written in the
        same cycle (``write``: the controller's ``ov[-1]``, each lane's ``lv[-1]``)
        and read at ``rp`` into the read register (``rd_v`` a cycle after ``pop``).
        A free input (``formal_pick``) picks one write, its beat (metadata and every
        lane's value) is recorded, and ``pos`` counts the beats ahead of it (the
        writes before it not yet popped): the pop that finds it at ``pos == 0`` must
        put exactly that beat into the read register. Any write may be the one
        picked, so the n-th beat read is the n-th beat written, with its value.
        What makes it inductive: the lanes' write enables and pointers equal the
        controller's (``lv`` = ``ov``'s last stages through the decision tree,
        ``lwp`` = ``wp``), and the entry at ``rp + pos`` of every column holds the
        tracked beat (read through a formal-only read port)."""
        FD, fb, LAG, ov = f["FD"], f["fb"], f["LAG"], f["ov"]
        if self.formal_bug == "drop":     # planted: the metadata write into entry 0 is lost
            m.d.comb += f["mwp"].en.eq(f["write"] & (f["wp"][:fb] != 0))
        # the lanes' write enables: the decision tree, then each lane's valid bits
        A(f["ops"][1] == ov[0], "decision register != ov[0]")
        for c in range(f["C"]):
            A(f["t1"][c][1] == ov[1], f"decision copy t1[{c}] != ov[1]")
            for s_, q2 in enumerate(f["t2"][c]):
                A(q2[1] == ov[2], f"decision copy t2[{c}][{s_}] != ov[2]")
        for p in range(f["P"]):
            for c in range(f["C"]):
                A(f["t3"][p][c][0][1] == ov[3], f"decision copy t3[{p}][{c}] != ov[3]")
        for i, (_, lv, lwp, _, _) in enumerate(f["lanes"]):
            A(lv == ov[LAG:], f"lane {i} valid bits != ov's")
            A(lwp == f["wp"][:fb], f"lane {i} write pointer != wp")
        write, pop = f["write"], f["pop"]
        cnt = Signal(range(FD + 1), name="fchk_count")    # writes - pops, counted here
        armed = Signal(name="fchk_armed")    # the tracked beat is in the FIFO
        used = Signal(name="fchk_used")      # a beat was picked
        out = Signal(name="fchk_out")        # it was popped last cycle
        pos = Signal(fb, name="fchk_pos")    # beats ahead of it in the FIFO
        v_meta = Signal(len(f["data"]), name="fchk_meta")
        v_lane = [Signal(32, name=f"fchk_lane{i}") for i in range(len(f["lanes"]))]
        m.d.sync += [cnt.eq(cnt + write - pop), out.eq(armed & pop & (pos == 0))]
        with m.If(armed & pop):
            with m.If(pos == 0):
                m.d.sync += armed.eq(0)
            with m.Else():
                m.d.sync += pos.eq(pos - 1)
        with m.If(write & self.formal_pick & ~used):
            m.d.sync += [armed.eq(1), used.eq(1), pos.eq(cnt - pop), v_meta.eq(f["data"])]
            m.d.sync += [v.eq(ln[3]) for v, ln in zip(v_lane, f["lanes"])]
        A(cnt == f["held"], "output FIFO: beats written - read != occupancy")
        A(~(armed | out) | used, "output FIFO: tracked beat never picked")
        A(~(armed & out), "output FIFO: tracked beat both held and read")
        A(~armed | (pos < cnt), "output FIFO: tracked beat lost")
        at = (f["rp"] + pos)[:fb]
        rds = [f["mfifo"].read_port(domain="comb")] + \
              [ln[0].read_port(domain="comb") for ln in f["lanes"]]
        m.d.comb += [r.addr.eq(at) for r in rds]
        A(~armed | (rds[0].data == v_meta), "output FIFO: tracked entry's metadata changed")
        for i, (r, v) in enumerate(zip(rds[1:], v_lane)):
            A(~armed | (r.data == v), f"output FIFO: tracked entry's lane {i} changed")
        A(~out | f["rd_v"], "output FIFO: tracked beat popped, read register empty")
        A(~out | (f["rd_meta"] == v_meta), "output FIFO: read metadata != tracked beat's")
        for i, (ln, v) in enumerate(zip(f["lanes"], v_lane)):
            A(~out | (ln[4] == v), f"output FIFO: read lane {i} != tracked beat's")
        A(~out | f["skid_valid"], "output FIFO: tracked beat not offered to the skid buffer")
