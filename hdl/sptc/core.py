"""Sparse Tensor Core: a PE array with dual-side structured sparsity (Samoyeds).

See golden/sptc.py for the dataflow and docs/sptc.md for the interfaces and the
cycle formula. Pipeline (one beat per cycle when nothing stalls):

  issue   a weight beat is taken; each PE column's activation bank is addressed
          at (SEL token of that column, K group)           -> s1_* registers
  select  the nibble picks 2 of the 4 activations per PE   -> s2_*
  mult    2 int8 x int8 products per PE (DSP blocks)        -> s3_*
  acc     acc + p0 + p1; on the last beat of a flush block the partial sums
          go to the flush registers
  store   flush registers are added into the accumulator store, each PE row
          landing on its store row (identity, or Samoyeds' indices)
  copy    a finished tile moves from the store to the drain bank
  drain   one output row per cycle through a 4-stage output pipeline (row
          select, x mult, + rounding, shift + saturate) into a skid buffer

The only stall inside the array is "a flush wants to enter a store that still
holds a finished tile the drain bank cannot take yet": then everything up to
the flush stage holds (``en`` low) and the weight stream sees ready low.
"""
from __future__ import annotations

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from golden.sptc import (DENSE_NIBBLES, ERR_CONFIG, ERR_INDEX, ERR_META, ERR_SEL, MODE_CODES,
                         OP_LOAD, SpTCConfig)

from ..stream import SkidBuffer

DENSE, SPARSE24, SAMOYEDS = MODE_CODES["dense"], MODE_CODES["2:4"], MODE_CODES["samoyeds"]


def _bits(n: int) -> int:
    return max(1, (n - 1).bit_length())


def lane_layout():
    return data.StructLayout({"v0": signed(8), "v1": signed(8), "nib": unsigned(4),
                              "idx": unsigned(4)})


def weight_layout(cfg: SpTCConfig):
    return data.ArrayLayout(lane_layout(), cfg.rows)


def result_layout(cfg: SpTCConfig):
    return data.StructLayout({
        "data": data.ArrayLayout(signed(32), cfg.cols),  # int8 modes: sign-extended
        "row": unsigned(16),                             # output row of W @ X
        "tile": unsigned(16),                            # token tile: columns tile*cols + c
        "mask": unsigned(cfg.cols),                      # which columns are selected tokens
    })


class SparseTensorCore(wiring.Component):
    """The Engine 1 top: streams ``w``, ``act``, ``sel`` in, ``res`` out, plus control/status.

    Control ports are sampled on the cycle ``start`` is high in idle; ``done``
    stays high until the next ``start`` or ``clear``; ``error`` bits are sticky
    until ``clear`` (or reset). ``cycles`` counts the cycles of the last job.
    """

    def __init__(self, cfg: SpTCConfig = SpTCConfig()):
        self.cfg = cfg
        kwb = _bits(cfg.max_kw + 1)
        super().__init__({
            "w": In(stream.Signature(weight_layout(cfg))),
            "act": In(stream.Signature(32)),
            "sel": In(stream.Signature(16)),
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
        m = Module()

        # ---------------------------------------------------------------- job registers
        op = Signal(1); mode = Signal(2); out_mode = Signal(2); mult = Signal(16)
        shift = Signal(5); k_steps = Signal(self.k_words.shape().width + 1)
        v_steps = Signal.like(k_steps); m_rows = Signal(16); n_rt = Signal(16)
        n_sel = Signal(16); n_tok = Signal(16); sam_n = Signal(5); sam_m = Signal(5)
        n_tt = Signal(16)
        error = Signal(4)
        m.d.comb += self.error.eq(error)
        # Sticky error sources, OR-ed into `error` once per cycle (several can
        # fire in the same cycle; separate sync assignments would overwrite).
        err_terms = {ERR_CONFIG: [], ERR_META: [], ERR_SEL: [], ERR_INDEX: []}
        k_words_r = Signal.like(self.k_words)

        cfg_bad = Signal()
        nm_ok = Signal()
        m.d.comb += nm_ok.eq(0)
        for (nn, mm) in cfg.samoyeds_nm:
            with m.If((self.sam_n == nn) & (self.sam_m == mm)):
                m.d.comb += nm_ok.eq(1)
        ks_in = Mux(self.mode == DENSE, self.k_words << 1, self.k_words)
        m.d.comb += cfg_bad.eq(
            (self.mode == 3) | (self.out_mode == 3)
            | ((self.out_mode == 2) & (self.shift == 0))
            | (self.n_tokens > cfg.max_tokens) | (self.k_words == 0)
            | (self.k_words > cfg.max_kw)
            | ((self.op != OP_LOAD) & (
                (self.n_sel > cfg.max_sel) | (self.n_row_tiles == 0) | (self.m_rows == 0)
                | ((self.mode == SAMOYEDS) & (~nm_ok | (self.v_steps == 0)
                                              | (self.v_steps > self.k_words))))))

        # ---------------------------------------------------------------- memories
        # One copy of the activation buffer per PE column: every column reads a
        # different (gathered) token in the same cycle, so each gets its own
        # read port; loads write all copies at once.
        kw_bits = _bits(cfg.max_kw)
        tok_bits = _bits(cfg.max_tokens)
        act_depth = cfg.max_tokens * cfg.max_kw
        act_wr_addr = Signal(kw_bits + tok_bits)
        act_wr_en = Signal()
        act_rd = []
        act_rd_addr = [Signal(kw_bits + tok_bits, name=f"act_rd_addr{c}") for c in range(C)]
        en = Signal()
        for c in range(C):
            mem = Memory(shape=32, depth=act_depth, init=[])
            m.submodules[f"act_buf{c}"] = mem
            wp = mem.write_port()
            rp = mem.read_port()
            m.d.comb += [wp.addr.eq(act_wr_addr), wp.data.eq(self.act.payload),
                         wp.en.eq(act_wr_en), rp.addr.eq(act_rd_addr[c]), rp.en.eq(en)]
            act_rd.append(rp.data)
        # SEL banks: entry j lives in bank j % cols at address j // cols, so one
        # read at the token-tile index yields the tile's `cols` tokens.
        sel_depth = cfg.max_sel // C
        sel_wr_en = Signal(C)
        sel_wr_addr = Signal(_bits(sel_depth))
        tt = Signal(16)
        tok = []
        for c in range(C):
            mem = Memory(shape=16, depth=sel_depth, init=[])
            m.submodules[f"sel_buf{c}"] = mem
            wp = mem.write_port()
            rp = mem.read_port(transparent_for=())
            m.d.comb += [wp.addr.eq(sel_wr_addr), wp.data.eq(self.sel.payload),
                         wp.en.eq(sel_wr_en[c]), rp.addr.eq(tt)]
            tok.append(rp.data)

        # ---------------------------------------------------------------- counters / FSM
        beat = Signal.like(k_steps)   # beat within the tile
        vb = Signal.like(k_steps)     # beat within the flush block
        rt = Signal(16)               # row tile
        cnt = Signal(32)              # LOAD / SEL beat counter
        prev_sel = Signal(16)
        cycles = Signal(32)
        m.d.comb += self.cycles.eq(cycles)

        # pipeline state (declared here, driven below)
        s1_valid = Signal(); s1_first = Signal(); s1_blast = Signal(); s1_tlast = Signal()
        s1_lanes = Signal(weight_layout(cfg))
        s1_half = Signal()            # dense: which half of the activation word
        s1_tt = Signal(16); s1_rt = Signal(16); s1_mask = Signal(C)
        f_valid = Signal(); f_tlast = Signal()
        f_tt = Signal(16); f_rt = Signal(16); f_mask = Signal(C)
        store_full = Signal()
        drain_busy = Signal()
        skid = m.submodules.skid = SkidBuffer(result_layout(cfg))
        wiring.connect(m, wiring.flipped(self.res), skid.o)
        copy = Signal()
        m.d.comb += copy.eq(store_full & ~drain_busy)
        m.d.comb += en.eq(~(f_valid & store_full & ~copy))
        pipe_empty = Signal()
        s2_valid, s3_valid = Signal(), Signal()
        out_busy = Signal()   # a row is in the output pipeline
        m.d.comb += pipe_empty.eq(~s1_valid & ~s2_valid & ~s3_valid & ~f_valid & ~store_full
                                  & ~drain_busy & ~out_busy & ~skid.o.valid & skid.i.ready)

        issue = Signal()
        mask_now = Signal(C)
        remaining = Signal(17)
        m.d.comb += remaining.eq(n_sel - (tt << _bits(C) if C > 1 else tt))
        for c in range(C):
            m.d.comb += mask_now[c].eq(remaining > c)

        with m.If(self.clear):
            m.d.sync += self.done.eq(0)

        with m.FSM(name="ctrl") as fsm:
            with m.State("IDLE"):
                with m.If(self.start & ~self.clear):
                    m.d.sync += [
                        op.eq(self.op), mode.eq(self.mode), out_mode.eq(self.out_mode),
                        mult.eq(self.mult), shift.eq(self.shift), k_steps.eq(ks_in),
                        v_steps.eq(Mux(self.mode == SAMOYEDS, self.v_steps, ks_in)),
                        m_rows.eq(self.m_rows), n_rt.eq(self.n_row_tiles),
                        n_sel.eq(self.n_sel), n_tok.eq(self.n_tokens),
                        sam_n.eq(self.sam_n), sam_m.eq(self.sam_m),
                        n_tt.eq((self.n_sel + C - 1) >> _bits(C) if C > 1 else self.n_sel),
                        cnt.eq(0), tt.eq(0), rt.eq(0), beat.eq(0), vb.eq(0), cycles.eq(0),
                        self.done.eq(0), k_words_r.eq(self.k_words),
                    ]
                    err_terms[ERR_CONFIG].append(self.start & ~self.clear & cfg_bad)
                    with m.If(cfg_bad):
                        m.d.sync += self.done.eq(1)
                    with m.Elif(self.op == OP_LOAD):
                        m.next = "LOAD"
                    with m.Elif(self.n_sel == 0):
                        m.next = "WAIT"
                    with m.Else():
                        m.next = "SEL"
            with m.State("LOAD"):
                m.d.sync += cycles.eq(cycles + 1)
                total = Signal(32)
                m.d.comb += total.eq(n_tok * k_words_r)
                m.d.comb += [self.act.ready.eq(cnt != total),
                             act_wr_addr.eq(Cat(beat[:kw_bits], tt[:tok_bits])),
                             act_wr_en.eq(self.act.valid & self.act.ready)]
                with m.If(self.act.valid & self.act.ready):
                    m.d.sync += cnt.eq(cnt + 1)
                    with m.If(beat == k_words_r - 1):
                        m.d.sync += [beat.eq(0), tt.eq(tt + 1)]
                    with m.Else():
                        m.d.sync += beat.eq(beat + 1)
                with m.If(cnt == total):
                    m.d.sync += [self.done.eq(1), tt.eq(0)]
                    m.next = "IDLE"
            with m.State("SEL"):
                m.d.sync += cycles.eq(cycles + 1)
                m.d.comb += [self.sel.ready.eq(1),
                             sel_wr_addr.eq(cnt >> _bits(C) if C > 1 else cnt)]
                with m.If(self.sel.valid):
                    for c in range(C):
                        m.d.comb += sel_wr_en[c].eq((cnt % C) == c)
                    m.d.sync += [cnt.eq(cnt + 1), prev_sel.eq(self.sel.payload)]
                    err_terms[ERR_SEL].append(
                        self.sel.valid & ((self.sel.payload >= n_tok)
                                          | ((cnt != 0) & (self.sel.payload <= prev_sel))))
                    with m.If(cnt == n_sel - 1):
                        m.next = "FETCH"
            with m.State("FETCH"):  # one cycle for the SEL banks' synchronous read
                m.d.sync += cycles.eq(cycles + 1)
                m.next = "RUN"
            with m.State("RUN"):
                m.d.sync += cycles.eq(cycles + 1)
                m.d.comb += [self.w.ready.eq(en), issue.eq(self.w.valid & en)]
                with m.If(issue):
                    last_beat = beat == k_steps - 1
                    with m.If(last_beat):
                        m.d.sync += [beat.eq(0), vb.eq(0)]
                        with m.If(rt == n_rt - 1):
                            m.d.sync += [rt.eq(0), tt.eq(tt + 1)]
                            with m.If(tt == n_tt - 1):
                                m.next = "WAIT"
                            with m.Else():
                                m.next = "FETCH"
                        with m.Else():
                            m.d.sync += rt.eq(rt + 1)
                    with m.Else():
                        m.d.sync += [beat.eq(beat + 1),
                                     vb.eq(Mux(vb == v_steps - 1, 0, vb + 1))]
            with m.State("WAIT"):
                m.d.sync += cycles.eq(cycles + 1)
                with m.If(pipe_empty):
                    m.d.sync += self.done.eq(1)
                    m.next = "IDLE"
        m.d.comb += self.busy.eq(~fsm.ongoing("IDLE"))
        in_sel = fsm.ongoing("SEL")
        err_terms[ERR_SEL] = [t & in_sel for t in err_terms[ERR_SEL]]
        in_idle = fsm.ongoing("IDLE")
        err_terms[ERR_CONFIG] = [err_terms[ERR_CONFIG][0] & in_idle] + err_terms[ERR_CONFIG][1:]

        # ---------------------------------------------------------------- issue stage
        g = Mux(mode == DENSE, beat >> 1, beat)
        for c in range(C):
            m.d.comb += act_rd_addr[c].eq(Cat(g[:kw_bits], tok[c][:tok_bits]))
        with m.If(en):
            m.d.sync += s1_valid.eq(issue)
            with m.If(issue):
                m.d.sync += [s1_lanes.eq(self.w.payload), s1_first.eq(vb == 0),
                             s1_blast.eq((vb == v_steps - 1) | (beat == k_steps - 1)),
                             s1_tlast.eq(beat == k_steps - 1), s1_half.eq(beat[0]),
                             s1_tt.eq(tt), s1_rt.eq(rt), s1_mask.eq(mask_now)]
                # Bad-input checks on every beat taken (sticky; the job runs on).
        lanes = self.w.payload
        for r in range(R):
            lo, hi = lanes[r].nib[:2], lanes[r].nib[2:]
            err_terms[ERR_META].append(issue & (mode != DENSE) & (hi <= lo))
            bad = lanes[r].idx >= sam_m
            if r > 0:
                bad = bad | (((r & (sam_n - 1)) != 0) & (lanes[r].idx <= lanes[r - 1].idx))
            err_terms[ERR_INDEX].append(issue & (mode == SAMOYEDS) & bad)
        # A tile must end on a flush-block boundary (V divides K).
        err_terms[ERR_CONFIG].append(issue & (beat == k_steps - 1) & (vb != v_steps - 1))

        # ---------------------------------------------------------------- PE array
        # Three register stages so every multiplier sits in a DSP block with
        # registered inputs and outputs (the FPGA timing contract, docs/synth.md):
        #   s2  the nibble has picked two of the four activations per PE
        #   s3  the two int8 x int8 products per PE
        #   acc (first ? 0 : acc) + p0 + p1; on a block's last beat also -> flush
        s2_flags = Signal(3); s3_flags = Signal(3)      # first, blast, tlast
        s2_meta = Signal(32 + C); s3_meta = Signal(32 + C)  # tt, rt, mask
        s2_idx = [Signal(4, name=f"s2_idx{r}") for r in range(R)]
        s3_idx = [Signal(4, name=f"s3_idx{r}") for r in range(R)]
        with m.If(en):
            m.d.sync += [s2_valid.eq(s1_valid), s3_valid.eq(s2_valid),
                         s2_flags.eq(Cat(s1_first, s1_blast, s1_tlast)), s3_flags.eq(s2_flags),
                         s2_meta.eq(Cat(s1_tt, s1_rt, s1_mask)), s3_meta.eq(s2_meta)]
            m.d.sync += [s2_idx[r].eq(s1_lanes[r].idx) for r in range(R)]
            m.d.sync += [s3_idx[r].eq(s2_idx[r]) for r in range(R)]
        s3_first, s3_blast, s3_tlast = s3_flags[0], s3_flags[1], s3_flags[2]
        acc = [[Signal(signed(32), name=f"acc_{r}_{c}") for c in range(C)] for r in range(R)]
        flush = [[Signal(signed(32), name=f"flush_{r}_{c}") for c in range(C)] for r in range(R)]
        f_idx = [Signal(4, name=f"f_idx{r}") for r in range(R)]
        for r in range(R):
            lane = s1_lanes[r]
            nib = Mux(mode == DENSE, Mux(s1_half, DENSE_NIBBLES[1], DENSE_NIBBLES[0]), lane.nib)
            lo, hi = nib[:2], nib[2:]
            v0, v1 = Signal(signed(8), name=f"s2_v0_{r}"), Signal(signed(8), name=f"s2_v1_{r}")
            with m.If(en):
                m.d.sync += [v0.eq(lane.v0), v1.eq(lane.v1)]
            for c in range(C):
                xs = Array(act_rd[c][8 * i: 8 * i + 8].as_signed() for i in range(4))
                xa = Signal(signed(8), name=f"s2_xa_{r}_{c}")
                xb = Signal(signed(8), name=f"s2_xb_{r}_{c}")
                p0 = Signal(signed(16), name=f"s3_p0_{r}_{c}")
                p1 = Signal(signed(16), name=f"s3_p1_{r}_{c}")
                nxt = Signal(signed(32), name=f"accn_{r}_{c}")
                m.d.comb += nxt.eq(Mux(s3_first, 0, acc[r][c]) + p0 + p1)
                with m.If(en):
                    m.d.sync += [xa.eq(xs[lo]), xb.eq(xs[hi]), p0.eq(v0 * xa), p1.eq(v1 * xb)]
                    with m.If(s3_valid):
                        m.d.sync += acc[r][c].eq(nxt)
                        with m.If(s3_blast):
                            m.d.sync += flush[r][c].eq(nxt)
        with m.If(en):
            m.d.sync += f_valid.eq(s3_valid & s3_blast)
            with m.If(s3_valid & s3_blast):
                m.d.sync += [f_tlast.eq(s3_tlast), Cat(f_tt, f_rt, f_mask).eq(s3_meta)]
                m.d.sync += [f_idx[r].eq(s3_idx[r]) for r in range(R)]
        # Which store row each flushed PE row lands on (one-hot per store row).
        # Candidates are fixed at elaboration by cfg.samoyeds_nm, so the store's
        # crossbar holds only the connections some supported (N, M) can use.
        route = {}
        for s in range(S):
            terms = []
            if s < R:
                terms.append((s, mode != SAMOYEDS))
            for (nn, mm) in cfg.samoyeds_nm:
                b, i = divmod(s, mm)
                if b * nn >= R:
                    continue
                for r in range(b * nn, b * nn + nn):
                    terms.append((r, (mode == SAMOYEDS) & (sam_n == nn) & (sam_m == mm)
                                  & (f_idx[r] == i)))
            route[s] = terms

        # ---------------------------------------------------------------- accumulator store
        store = [[Signal(signed(32), name=f"store_{s}_{c}") for c in range(C)] for s in range(S)]
        drain = [[Signal(signed(32), name=f"drain_{s}_{c}") for c in range(C)] for s in range(S)]
        st_tt = Signal(16); st_rt = Signal(16); st_mask = Signal(C)
        dr_tt = Signal(16); dr_mask = Signal(C); dr_row = Signal(16); dr_base = Signal(16)
        dr_last = Signal(16)
        add = en & f_valid
        for s in range(S):
            for c in range(C):
                contrib = 0
                for r, cond in route[s]:
                    contrib = contrib | Mux(cond, flush[r][c], 0)
                base = Mux(copy, 0, store[s][c])
                with m.If(add):
                    m.d.sync += store[s][c].eq(base + contrib)
                with m.Elif(copy):
                    m.d.sync += store[s][c].eq(0)
        with m.If(add & f_tlast):
            m.d.sync += [st_tt.eq(f_tt), st_rt.eq(f_rt), st_mask.eq(f_mask)]
        m.d.sync += store_full.eq((add & f_tlast) | (store_full & ~copy))

        # ---------------------------------------------------------------- drain
        spr = Signal(_bits(S + 1) + 1)  # store rows per tile: rows, or rows * M / N in Samoyeds mode
        m.d.comb += spr.eq(Mux(mode == SAMOYEDS, (R * sam_m) >> Mux(sam_n == 1, 0, Mux(
            sam_n == 2, 1, Mux(sam_n == 4, 2, Mux(sam_n == 8, 3, 4)))), R))
        base_row = Signal(32)
        m.d.comb += base_row.eq(st_rt * spr)
        left = Signal(32)
        m.d.comb += left.eq(m_rows - base_row)
        with m.If(copy):
            m.d.sync += [drain[s][c].eq(store[s][c]) for s in range(S) for c in range(C)]
            m.d.sync += [drain_busy.eq(1), dr_tt.eq(st_tt), dr_mask.eq(st_mask), dr_row.eq(0),
                         dr_base.eq(base_row),
                         dr_last.eq(Mux(left < spr, left, spr) - 1)]
        # Output pipeline, all stages moving together when the skid buffer can
        # take a row (its ready is a register, so no long ready chain):
        #   o1 the drain row picked, o2 acc * mult, o3 + rounding, o4 shift + saturate.
        adv = skid.i.ready
        ov = Signal(4)  # valid of o1..o4
        o_meta = [Signal(32 + C, name=f"o{k + 1}_meta") for k in range(4)]
        o1 = [Signal(signed(32), name=f"o1_{c}") for c in range(C)]
        o2a = [Signal(signed(32), name=f"o2_acc_{c}") for c in range(C)]
        o2p = [Signal(signed(49), name=f"o2_prod_{c}") for c in range(C)]
        o3a = [Signal(signed(32), name=f"o3_acc_{c}") for c in range(C)]
        o3r = [Signal(signed(50), name=f"o3_rnd_{c}") for c in range(C)]
        o4 = [Signal(signed(32), name=f"o4_{c}") for c in range(C)]
        m.d.comb += out_busy.eq(ov != 0)
        rnd_bit = Signal(31)
        m.d.comb += rnd_bit.eq((Const(1, unsigned(32)) << (shift - 1)[:5])[:31])
        mult_s = Cat(mult, Const(0, 1)).as_signed()
        with m.If(adv):
            m.d.sync += ov.eq(Cat(drain_busy, ov[:3]))
            m.d.sync += [o_meta[0].eq(Cat((dr_base + dr_row)[:16], dr_tt, dr_mask))]
            m.d.sync += [o_meta[k + 1].eq(o_meta[k]) for k in range(3)]
            for c in range(C):
                row = Array(drain[s][c] for s in range(S))[dr_row]
                shifted = o3r[c] >> shift
                m.d.sync += [
                    o1[c].eq(row),
                    o2a[c].eq(o1[c]), o2p[c].eq(o1[c] * mult_s),
                    o3a[c].eq(o2a[c]), o3r[c].eq(o2p[c] + rnd_bit),
                    o4[c].eq(Mux(out_mode == 0, o3a[c],
                                 Mux(out_mode == 1,
                                     Mux(o3a[c] > 127, 127, Mux(o3a[c] < -128, -128, o3a[c])),
                                     Mux(shifted > 127, 127,
                                         Mux(shifted < -128, -128, shifted[:32]))))),
                ]
        m.d.comb += [skid.i.valid.eq(ov[3]),
                     Cat(skid.i.payload.row, skid.i.payload.tile, skid.i.payload.mask)
                     .eq(o_meta[3])]
        m.d.comb += [skid.i.payload.data[c].eq(o4[c]) for c in range(C)]
        with m.If(drain_busy & adv):
            m.d.sync += dr_row.eq(dr_row + 1)
            with m.If(dr_row == dr_last):
                m.d.sync += drain_busy.eq(0)

        err_set = Signal(4)
        for bit, terms in err_terms.items():
            any_ = 0
            for t in terms:
                any_ = any_ | t
            m.d.comb += err_set[bit.bit_length() - 1].eq(any_)
        m.d.sync += error.eq(Mux(self.clear, 0, error | err_set))
        return m
