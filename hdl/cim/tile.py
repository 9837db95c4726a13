"""The CIM tile: digital CIM arrays plus the controller that executes a Monarch program.

Structure (see docs/cim.md and :mod:`golden.cim.isa` for the program format):

* ``wmem``: the weights of ``arrays`` digital CIM arrays of ``m x m`` int8 cells, one
  memory word per group of ``lanes`` columns (a column is ``m`` int8, row 0 at the LSB).
  A step reads the addressed array's column groups one per cycle; each of the ``lanes``
  columns computes the exact int32 dot product of the *active* rows (rows whose slot is
  in the step's row mask; the others are gated to zero) with the activation line.
* ``amem``: activation lines, bank 0 = X (stage-R input, written by INPUT), bank 1 = H
  (stage-L input, written by MID through the permutation P).
* ``cmem``: int32 accumulator lines; a step sets or accumulates the lanes of the columns
  it reads. MID reads them back through the ``mid`` requantizer and the permutation P;
  OUTPUT streams them through the output mode.
* the controller: fetches one 64-bit instruction per cycle when idle, checks it
  (sticky ``error``/``error_code``, then discards every program word and activation
  beat until ``clear``), and runs the instruction's state machine.

Cycle costs (fetch to next fetch, no stalls) are exactly ``golden.cim.cost_*``.
"""
from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from golden import cim as gc
from golden.cim import CIMConfig

from ..common import tree_sum
from ..outstage import OutputStage

ERR = gc.ERROR_CODES

# controller states
S_FETCH, S_LOADW, S_INPUT, S_STEP0, S_STEP, S_MIDRD, S_MIDWR, S_OUT, S_ERROR = range(9)


class CIMTile(wiring.Component):
    """Engine 3 top: program in, activations in, results out, sticky error status.

    Ports
    -----
    prog : stream of 64-bit program words.
    act : stream of ``lanes`` int8 activations per beat (lane 0 at the LSB): the folded
        input ``P x`` of each token, ``n / lanes`` beats per INPUT.
    res : stream of ``lanes`` int32 results per beat (int8 modes sign-extended):
        ``out(v)`` in stage-L order (the host applies the trailing P), ``n / lanes``
        beats per OUTPUT.
    clear : pulse: abort, clear the error, forget CFG (weights are kept).
    busy : an instruction is executing (low when waiting for the next one).
    error, error_code : sticky status (``golden.cim.ERRORS``).
    phase : 0 idle, 1 stage R (after INPUT), 2 stage L (after MID).
    steps : STEP instructions executed since reset/clear.
    adc_rows, adc_bits : the ADC range the current (or last) token exercised: over its
        STEPs and the columns they read, the largest number of fired rows whose cell
        holds a nonzero weight, and ``ceil(log2(adc_rows + 1))`` (the bits an analog
        macro with 1-bit inputs and cells needs for it; ``golden.cim.program_activity``).
        Reset by INPUT and ``clear``; computed beside the dot products (no extra cycle).
    """

    def __init__(self, config: CIMConfig):
        self.config = config
        p, m = config.lanes, config.m
        super().__init__({
            "prog": In(stream.Signature(64)),
            "act": In(stream.Signature(8 * p)),
            "res": Out(stream.Signature(32 * p)),
            "clear": In(1),
            "busy": Out(1),
            "error": Out(1),
            "error_code": Out(4),
            "phase": Out(2),
            "steps": Out(32),
            "adc_rows": Out(range(m + 1)),
            "adc_bits": Out(range(m.bit_length() + 1)),
        })

    def elaborate(self, platform):
        cfg = self.config
        m, p, A = cfg.m, cfg.lanes, cfg.arrays
        G = m // p                       # column groups per array
        WPC = cfg.words_per_column
        NL = cfg.lines                   # accumulator lines (n_max / m)
        LOGM, LOGP, LOGG = ceil_log2(m), ceil_log2(p), ceil_log2(G)
        lb_lo, lb_hi = ceil_log2(cfg.b_min), ceil_log2(cfg.b_max)
        LOG2B = list(range(lb_lo, lb_hi + 1))
        GMAX = cfg.g_max
        BMAX = cfg.b_max

        mod = Module()
        d = mod.d

        # ------------------------------------------------------------ memories
        mod.submodules.wmem = wmem = Memory(shape=unsigned(p * m * 8), depth=max(2, A * G), init=[])
        mod.submodules.amem = amem = Memory(shape=unsigned(m * 8), depth=max(2, 2 * NL), init=[])
        mod.submodules.cmem = cmem = Memory(shape=unsigned(m * 32), depth=max(2, NL), init=[])
        w_rd, w_wr = wmem.read_port(), wmem.write_port(granularity=m * 8)
        a_rd, a_wr = amem.read_port(), amem.write_port(granularity=8)
        c_rd, c_wr = cmem.read_port(), cmem.write_port(granularity=32)
        for port in (w_rd, a_rd, c_rd):
            d.comb += port.en.eq(0)

        # ------------------------------------------------------------ registers
        state = Signal(range(9), init=S_FETCH)
        phase = Signal(2)
        err_code = Signal(4)
        steps = Signal(32)
        cfg_valid = Signal()
        log2b = Signal(4, init=lb_lo)
        mid_kind, out_kind = Signal(2), Signal(2)
        mid_mult, out_mult = Signal(16), Signal(16)
        mid_shift, out_shift = Signal(5), Signal(5)
        written = Signal(BMAX)           # accumulator slot written in this stage

        # latched instruction fields
        i_array = Signal(10)
        i_act, i_acc = Signal(8), Signal(8)
        i_rmask, i_cmask = Signal(16), Signal(16)
        i_accum = Signal()
        col = Signal(9)                  # LOADW: current column
        cols_left = Signal(9)
        wcnt = Signal(range(max(2, WPC)))
        colbuf = Signal(max(1, (WPC - 1) * 64))
        cnt = Signal(range(max(2, cfg.n_max // p + 1)))   # beats (INPUT/OUTPUT)
        gleft = Signal(G)                # STEP: column groups still to read
        gcur = Signal(range(max(2, G)))
        mline = Signal(range(max(2, NL)))   # MID: accumulator line
        me = Signal(range(max(2, BMAX)))    # MID: element within a segment
        pend = Signal()                  # OUTPUT: c_rd.data holds an unsent beat
        pend_chunk = Signal(range(max(2, G)))

        adc_rows = Signal(range(m + 1))  # exercised ADC range of the current token
        d.comb += [self.busy.eq((state != S_FETCH) & (state != S_ERROR)),
                   self.error.eq(state == S_ERROR), self.error_code.eq(err_code),
                   self.phase.eq(phase), self.steps.eq(steps), self.adc_rows.eq(adc_rows)]
        with mod.Switch(adc_rows):       # adc_bits = bit length of adc_rows
            for v in range(m + 1):
                with mod.Case(v):
                    d.comb += self.adc_bits.eq(v.bit_length())

        # ------------------------------------------------------------ derived from b
        b_full = Signal(BMAX)            # (1 << b) - 1: every slot of a vector
        g_mask = Signal(16)              # (1 << g) - 1
        log2g = Signal(4)
        last_line = Signal(8)            # n/m - 1
        last_beat = Signal(range(max(2, cfg.n_max // p + 1)))   # n/p - 1
        last_e = Signal(range(max(2, BMAX)))                    # b - 1
        with mod.Switch(log2b):
            for lb in LOG2B:
                with mod.Case(lb):
                    b, g = 1 << lb, m >> lb
                    n = b * b
                    d.comb += [b_full.eq((1 << b) - 1), g_mask.eq((1 << g) - 1),
                               log2g.eq(LOGM - lb), last_line.eq(n // m - 1),
                               last_beat.eq(n // p - 1), last_e.eq(b - 1)]

        # ------------------------------------------------------------ decode
        w = self.prog.payload            # a header, or a LOADW data word
        ins = data.View(gc.INSTR_LAYOUT, w)
        op = ins.op
        cfg_a, loadw_a, step_a = ins.args.cfg, ins.args.loadw, ins.args.step
        f_log2b = cfg_a.log2b
        f_array = loadw_a.array          # the same bits as step_a.array
        f_col, f_ncols = loadw_a.col, loadw_a.ncols
        f_act, f_acc = step_a.act_line, step_a.acc_line
        f_rmask, f_cmask, f_accum = step_a.row_mask, step_a.col_mask, step_a.acc
        f_mk, f_mm, f_ms = cfg_a.mid.kind, cfg_a.mid.mult, cfg_a.mid.shift
        f_ok, f_om, f_os = cfg_a.out.kind, cfg_a.out.mult, cfg_a.out.shift

        bad_op = Signal()
        with mod.Switch(op):
            for code, used in gc.USED_BITS.items():
                with mod.Case(code):
                    d.comb += bad_op.eq(w[used:] != 0)
            with mod.Default():
                d.comb += bad_op.eq(1)

        def mode_ok(kind, mult, shift, allow_int32):
            ok_kind = (kind == 1) | (kind == 2) | ((kind == 0) if allow_int32 else 0)
            return ok_kind & Mux(kind == 2, shift != 0, (mult == 0) & (shift == 0))

        cfg_ok = ((f_log2b >= lb_lo) & (f_log2b <= lb_hi) & mode_ok(f_mk, f_mm, f_ms, False)
                  & mode_ok(f_ok, f_om, f_os, True))
        array_bad = f_array >= A
        col_bad = (f_ncols == 0) | ((f_col + f_ncols) > m)
        line_bad = (f_act > last_line) | (f_acc > last_line)
        mask_bad = ((f_rmask == 0) | (f_cmask == 0) | ((f_rmask & ~g_mask) != 0)
                    | ((f_cmask & ~g_mask) != 0))
        slot_base = Signal(8)
        d.comb += slot_base.eq(f_acc << log2g)
        seen = Signal(16)
        d.comb += seen.eq(written >> slot_base)
        step_unwritten = f_accum & ((seen & f_cmask) != f_cmask)
        all_written = (written & b_full) == b_full

        err_now = Signal(4)
        with mod.If(bad_op):
            d.comb += err_now.eq(ERR["BAD_OPCODE"])
        with mod.Else():
            with mod.Switch(op):
                with mod.Case(gc.OP_CFG):
                    with mod.If(phase != 0):
                        d.comb += err_now.eq(ERR["BAD_SEQUENCE"])
                    with mod.Elif(~cfg_ok):
                        d.comb += err_now.eq(ERR["BAD_CFG"])
                with mod.Case(gc.OP_LOADW):
                    with mod.If(phase != 0):
                        d.comb += err_now.eq(ERR["BAD_SEQUENCE"])
                    with mod.Elif(array_bad):
                        d.comb += err_now.eq(ERR["BAD_ARRAY"])
                    with mod.Elif(col_bad):
                        d.comb += err_now.eq(ERR["BAD_COLUMN"])
                with mod.Case(gc.OP_INPUT):
                    with mod.If((phase != 0) | ~cfg_valid):
                        d.comb += err_now.eq(ERR["BAD_SEQUENCE"])
                with mod.Case(gc.OP_STEP):
                    with mod.If(phase == 0):
                        d.comb += err_now.eq(ERR["BAD_SEQUENCE"])
                    with mod.Elif(array_bad):
                        d.comb += err_now.eq(ERR["BAD_ARRAY"])
                    with mod.Elif(line_bad):
                        d.comb += err_now.eq(ERR["BAD_LINE"])
                    with mod.Elif(mask_bad):
                        d.comb += err_now.eq(ERR["BAD_MASK"])
                    with mod.Elif(step_unwritten):
                        d.comb += err_now.eq(ERR["UNWRITTEN"])
                with mod.Case(gc.OP_MID):
                    with mod.If(phase != 1):
                        d.comb += err_now.eq(ERR["BAD_SEQUENCE"])
                    with mod.Elif(~all_written):
                        d.comb += err_now.eq(ERR["UNWRITTEN"])
                with mod.Case(gc.OP_OUTPUT):
                    with mod.If(phase != 2):
                        d.comb += err_now.eq(ERR["BAD_SEQUENCE"])
                    with mod.Elif(~all_written):
                        d.comb += err_now.eq(ERR["UNWRITTEN"])

        # ------------------------------------------------------------ step datapath
        # Row activation and column selection: slot s covers rows/cols [s*b, s*b + b).
        rowsel = Signal(m)
        colsel = Signal(m)
        with mod.Switch(log2b):
            for lb in LOG2B:
                with mod.Case(lb):
                    d.comb += [rowsel.eq(Cat(i_rmask[r >> lb] for r in range(m))),
                               colsel.eq(Cat(i_cmask[c >> lb] for c in range(m)))]
        gvisit = Cat(colsel[j * p:(j + 1) * p].any() for j in range(G))

        def lowest(vec, width):
            idx = Signal(range(max(2, width)))
            for i in reversed(range(width)):
                with mod.If(vec[i]):
                    d.comb += idx.eq(i)
            return idx

        first_g = lowest(gvisit, G)
        next_g = lowest(gleft, G)

        act = [Mux(rowsel[r], a_rd.data[8 * r:8 * r + 8].as_signed(), 0) for r in range(m)]
        dots = []
        for j in range(p):
            base = j * m * 8
            prods = [act[r] * w_rd.data[base + 8 * r:base + 8 * r + 8].as_signed() for r in range(m)]
            dot = Signal(signed(32), name=f"dot{j}")
            d.comb += dot.eq(tree_sum(prods))
            dots.append(dot)
        # exercised ADC range: per read lane, the fired rows whose cell is nonzero
        csel = Signal(p)
        d.comb += csel.eq(colsel.word_select(gcur, p))
        lane_rows = []
        for j in range(p):
            base = j * m * 8
            nzr = [rowsel[r] & w_rd.data[base + 8 * r:base + 8 * r + 8].any() for r in range(m)]
            lrows = Signal(range(m + 1), name=f"adc_rows{j}")
            d.comb += lrows.eq(Mux(csel[j], tree_sum(nzr), 0))
            lane_rows.append(lrows)
        while len(lane_rows) > 1:
            nxt = []
            for a, b_ in zip(lane_rows[0::2], lane_rows[1::2]):
                mx = Signal(range(m + 1))
                d.comb += mx.eq(Mux(a > b_, a, b_))
                nxt.append(mx)
            lane_rows = nxt + lane_rows[len(lane_rows) & ~1:]
        group_rows = lane_rows[0]

        # one Signal per wide select: the accumulator line is m*32 bits wide and Amaranth
        # lowers an expression once per use (a variable part-select per use, each as wide
        # as the whole line)
        old = Signal(32 * p)
        d.comb += old.eq(c_rd.data.word_select(gcur, 32 * p))
        newv = []
        for j in range(p):
            nv = Signal(signed(32), name=f"acc_new{j}")
            d.comb += nv.eq(Mux(i_accum, old[32 * j:32 * j + 32].as_signed(), 0) + dots[j])
            newv.append(nv)
        step_wdata = Cat(*(newv * G))
        step_wen = Signal(m)
        for c in range(m):
            d.comb += step_wen[c].eq(colsel[c] & (gcur == c // p))

        # ------------------------------------------------------------ MID datapath
        # Element (s*b + e) of accumulator line l goes to H[e*b + l*g + s] (the P swap).
        mvals = []
        for s in range(GMAX):
            idx = Signal(range(m), name=f"mid_lane{s}")
            d.comb += idx.eq((Const(s, 8) << log2b) | me)
            v = Signal(signed(8), name=f"mid_val{s}")
            mod.submodules[f"mid_os{s}"] = os_ = OutputStage(stages=0)
            d.comb += [os_.acc.eq(c_rd.data.word_select(idx, 32).as_signed()),
                       os_.mode.eq(mid_kind), os_.mult.eq(mid_mult), os_.shift.eq(mid_shift),
                       v.eq(os_.out[:8])]
            mvals.append(v)
        h_index = Signal(range(2 * cfg.n_max))
        d.comb += h_index.eq((me << log2b) + (mline << log2g))
        mid_wdata = Signal(m * 8)
        mid_wen = Signal(m)
        off = h_index[:LOGM] if LOGM else Const(0, 1)
        with mod.Switch(log2b):
            for lb in LOG2B:
                with mod.Case(lb):
                    g = m >> lb
                    d.comb += mid_wdata.eq(Cat(mvals[t % g] for t in range(m)))
                    d.comb += mid_wen.eq(Const((1 << g) - 1, m) << off)

        # ------------------------------------------------------------ OUTPUT datapath
        out_lanes = Signal(32 * p)
        d.comb += out_lanes.eq(c_rd.data.word_select(pend_chunk, 32 * p))
        res_vals = []
        for j in range(p):
            mod.submodules[f"out_os{j}"] = os_ = OutputStage(stages=0)
            d.comb += [os_.acc.eq(out_lanes[32 * j:32 * j + 32].as_signed()),
                       os_.mode.eq(out_kind), os_.mult.eq(out_mult), os_.shift.eq(out_shift)]
            res_vals.append(os_.out)
        d.comb += self.res.payload.eq(Cat(*res_vals))

        # ------------------------------------------------------------ controller
        with mod.Switch(state):
            with mod.Case(S_FETCH):
                d.comb += self.prog.ready.eq(1)
                with mod.If(self.prog.valid):
                    with mod.If(err_now != 0):
                        d.sync += [err_code.eq(err_now), state.eq(S_ERROR)]
                    with mod.Else():
                        with mod.Switch(op):
                            with mod.Case(gc.OP_CFG):
                                d.sync += [log2b.eq(f_log2b), mid_kind.eq(f_mk),
                                           mid_mult.eq(f_mm), mid_shift.eq(f_ms),
                                           out_kind.eq(f_ok), out_mult.eq(f_om),
                                           out_shift.eq(f_os), cfg_valid.eq(1)]
                            with mod.Case(gc.OP_LOADW):
                                d.sync += [i_array.eq(f_array), col.eq(f_col),
                                           cols_left.eq(f_ncols), wcnt.eq(0),
                                           state.eq(S_LOADW)]
                            with mod.Case(gc.OP_INPUT):
                                d.sync += [cnt.eq(0), written.eq(0), phase.eq(1),
                                           adc_rows.eq(0), state.eq(S_INPUT)]
                            with mod.Case(gc.OP_STEP):
                                d.sync += [i_array.eq(f_array), i_act.eq(f_act),
                                           i_acc.eq(f_acc), i_rmask.eq(f_rmask),
                                           i_cmask.eq(f_cmask), i_accum.eq(f_accum),
                                           written.eq(written | (f_cmask << slot_base)),
                                           steps.eq(steps + 1), state.eq(S_STEP0)]
                            with mod.Case(gc.OP_MID):
                                d.sync += [mline.eq(0), written.eq(0), phase.eq(2),
                                           state.eq(S_MIDRD)]
                            with mod.Case(gc.OP_OUTPUT):
                                d.sync += [cnt.eq(0), pend.eq(0), written.eq(0),
                                           phase.eq(0), state.eq(S_OUT)]

            with mod.Case(S_LOADW):
                d.comb += self.prog.ready.eq(1)
                with mod.If(self.prog.valid):
                    with mod.If(wcnt == WPC - 1):
                        column = Cat(colbuf[:(WPC - 1) * 64], w) if WPC > 1 else w
                        d.comb += [w_wr.addr.eq((i_array << LOGG) | (col >> LOGP)),
                                   w_wr.data.eq(Cat(*([column] * p))),
                                   w_wr.en.eq(Const(1, p) << col[:LOGP] if LOGP else 1)]
                        d.sync += [wcnt.eq(0), col.eq(col + 1), cols_left.eq(cols_left - 1)]
                        with mod.If(cols_left == 1):
                            d.sync += state.eq(S_FETCH)
                    with mod.Else():
                        d.sync += wcnt.eq(wcnt + 1)
                        if WPC > 1:
                            d.sync += colbuf.word_select(wcnt, 64).eq(w)

            with mod.Case(S_INPUT):
                d.comb += self.act.ready.eq(1)
                with mod.If(self.act.valid):
                    chunk = cnt[:LOGG] if LOGG else Const(0, 1)
                    d.comb += [a_wr.addr.eq(cnt >> LOGG),
                               a_wr.data.eq(Cat(*([self.act.payload] * G))),
                               a_wr.en.eq(Const((1 << p) - 1, m) << (chunk << LOGP))]
                    d.sync += cnt.eq(cnt + 1)
                    with mod.If(cnt == last_beat):
                        d.sync += state.eq(S_FETCH)

            with mod.Case(S_STEP0):
                d.comb += [a_rd.addr.eq(Mux(phase == 2, NL, 0) + i_act), a_rd.en.eq(1),
                           c_rd.addr.eq(i_acc), c_rd.en.eq(1),
                           w_rd.addr.eq((i_array << LOGG) | first_g), w_rd.en.eq(1)]
                d.sync += [gcur.eq(first_g), gleft.eq(gvisit & ~(Const(1, G) << first_g)),
                           state.eq(S_STEP)]

            with mod.Case(S_STEP):
                d.comb += [c_wr.addr.eq(i_acc), c_wr.data.eq(step_wdata), c_wr.en.eq(step_wen)]
                with mod.If(group_rows > adc_rows):
                    d.sync += adc_rows.eq(group_rows)
                with mod.If(gleft != 0):
                    d.comb += [w_rd.addr.eq((i_array << LOGG) | next_g), w_rd.en.eq(1)]
                    d.sync += [gcur.eq(next_g), gleft.eq(gleft & ~(Const(1, G) << next_g))]
                with mod.Else():
                    d.sync += state.eq(S_FETCH)

            with mod.Case(S_MIDRD):
                d.comb += [c_rd.addr.eq(mline), c_rd.en.eq(1)]
                d.sync += [me.eq(0), state.eq(S_MIDWR)]

            with mod.Case(S_MIDWR):
                d.comb += [a_wr.addr.eq(NL + (h_index >> LOGM)), a_wr.data.eq(mid_wdata),
                           a_wr.en.eq(mid_wen)]
                d.sync += me.eq(me + 1)
                with mod.If(me == last_e):
                    d.sync += mline.eq(mline + 1)
                    with mod.If(mline == last_line):
                        d.sync += state.eq(S_FETCH)
                    with mod.Else():
                        d.sync += state.eq(S_MIDRD)

            with mod.Case(S_OUT):
                d.comb += self.res.valid.eq(pend)
                advance = ~pend | self.res.ready
                more = cnt <= last_beat
                with mod.If(advance & more):
                    d.comb += [c_rd.addr.eq(cnt >> LOGG), c_rd.en.eq(1)]
                    d.sync += [pend.eq(1), pend_chunk.eq(cnt[:LOGG] if LOGG else 0),
                               cnt.eq(cnt + 1)]
                with mod.Elif(pend & self.res.ready):
                    d.sync += [pend.eq(0), state.eq(S_FETCH)]

            with mod.Case(S_ERROR):
                d.comb += [self.prog.ready.eq(1), self.act.ready.eq(1)]

        with mod.If(self.clear):
            d.sync += [state.eq(S_FETCH), err_code.eq(0), phase.eq(0), cfg_valid.eq(0),
                       written.eq(0), steps.eq(0), pend.eq(0), adc_rows.eq(0)]
        return mod
