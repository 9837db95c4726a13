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

Pipelining (``CIMConfig.step_stages``, ``out_stages``; the ``fpga`` configuration, see
docs/timing.md): a STEP's column groups flow through a pipeline (one group a cycle, as
in the combinational tile) whose last stage writes the accumulator lanes, so MID and
OUTPUT first wait for the last write. ``cmem`` is then one block-RAM bank per lane with
the columns skewed across the banks, read through one registered requantizer per bank
shared by MID and OUTPUT; MID waits for its last H write, and OUTPUT's results pass a
FIFO whose free entries the controller counts before each read.

Cycle costs (fetch to next fetch, no stalls) are exactly ``golden.cim.cost_*``.

This file is about 650 lines: the controller and the two datapath flavours it drives
(combinational, pipelined) share its state machine's signals cycle by cycle; the
arithmetic (:mod:`.dot`) and the instruction checks (:mod:`.check`) are components.
"""
from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, ResetInserter, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from golden import cim as gc
from golden.cim import CIMConfig

from ..fpga import RegReadRAM, replicas
from ..outstage import OutputStage, lane_t_width, requant_consts
from .check import InstrCheck
from .dot import GroupDot

# controller states
S_FETCH, S_LOADW, S_INPUT, S_STEP0, S_STEP, S_MIDRD, S_MIDWR, S_MIDEND, S_OUT, S_ERROR = range(10)


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
        PIPE = cfg.step_stages > 0
        mod.submodules.amem = amem = Memory(shape=unsigned(m * 8), depth=max(2, 2 * NL), init=[])
        a_rd, a_wr = amem.read_port(), amem.write_port(granularity=8)
        a_line = Signal(range(max(2, 2 * NL)))  # pipelined tile: the STEP's activation line
        if PIPE:
            # read every cycle from a register (the gated activations are registered two
            # cycles after each group's issue, before the next STEP's fetch changes it)
            d.comb += [a_rd.addr.eq(a_line), a_rd.en.eq(1)]
        else:
            d.comb += a_rd.en.eq(0)
        # amem writes (INPUT, MID): registered on their way in the pipelined tile (a STEP
        # reads the line two cycles after the instruction that wrote it ends, at the earliest)
        aw_addr, aw_data, aw_en = Signal.like(a_wr.addr), Signal.like(a_wr.data), Signal(m)
        if PIPE:
            d.sync += [a_wr.addr.eq(aw_addr), a_wr.data.eq(aw_data), a_wr.en.eq(aw_en)]
        else:
            d.comb += [a_wr.addr.eq(aw_addr), a_wr.data.eq(aw_data), a_wr.en.eq(aw_en)]
        if PIPE:
            # weights: one RegReadRAM per lane (a column per write). Accumulators: one
            # RegReadRAM bank per lane; column c of line l is in bank (c + c // b) % lanes at
            # l * (m / lanes) + c // lanes, so a column group's lanes and MID's g elements
            # (columns s*b + e) each fall in different banks (g <= lanes <= b)
            # (a lane's weights in slices of WSL bits, each slice with its own copies of
            # the read and write addresses: one address register reached 60 block RAMs)
            WSL = 64
            wl = [[RegReadRAM(WSL, A * G) for _ in range(m * 8 // WSL)] for _ in range(p)]
            banks = [RegReadRAM(32, NL * G) for _ in range(p)]
            for j in range(p):
                for i, ram in enumerate(wl[j]):
                    mod.submodules[f"wmem{j}_{i}"] = ram
                mod.submodules[f"cbank{j}"] = banks[j]
        else:
            mod.submodules.wmem = wmem = Memory(shape=unsigned(p * m * 8), depth=max(2, A * G),
                                                init=[])
            w_rd, w_wr = wmem.read_port(), wmem.write_port(granularity=m * 8)
            mod.submodules.cmem = cmem = Memory(shape=unsigned(m * 32), depth=max(2, NL), init=[])
            c_rd, c_wr = cmem.read_port(), cmem.write_port(granularity=32)
            c_rs = cmem.read_port(domain="comb")     # a STEP's old lanes
            d.comb += [w_rd.en.eq(0), c_rd.en.eq(0)]

        # ------------------------------------------------------------ registers
        state = Signal(range(10), init=S_FETCH)
        phase = Signal(2)
        err_code = Signal(4)
        steps = Signal(32)
        cfg_valid = Signal()
        log2b = Signal(4, init=lb_lo)
        mid_kind, out_kind = Signal(2), Signal(2)
        mid_mult, out_mult = Signal(16), Signal(16)
        mid_shift, out_shift = Signal(5), Signal(5)
        # accumulator slots written in this stage: per line, its g = m / b slots
        win = Signal(data.ArrayLayout(GMAX, NL))
        g_mask = Signal(16)              # (1 << g) - 1, set with log2b
        last_line = Signal(8)            # n/m - 1, set with log2b
        step_ok = Signal()               # a STEP passed the check in the last cycle

        # latched instruction fields
        i_array = Signal(10)
        i_act, i_acc = Signal(8), Signal(8)
        rowsel = Signal(m)               # STEP: activated rows (slot s: rows s*b .. s*b+b-1)
        colsel = Signal(m)               # STEP: read columns
        i_accum = Signal()
        col = Signal(9)                  # LOADW: current column
        cols_left = Signal(9)
        wcnt = Signal(range(max(2, WPC)))
        colbuf = Signal(max(1, (WPC - 1) * 64))
        cnt = Signal(range(max(2, cfg.n_max // p + 1)))   # beats (INPUT/OUTPUT)
        gleft = Signal(G)                # STEP: column groups still to read
        mline = Signal(range(max(2, NL)))   # MID: accumulator line
        me = Signal(range(max(2, BMAX)))    # MID: element within a segment
        pend = Signal()                  # OUTPUT: c_rd.data holds an unsent beat
        pend_chunk = Signal(range(max(2, G)))
        tail = Signal(range(max(2, cfg.mid_tail)))   # MIDEND: cycles left

        adc_rows = Signal(range(m + 1))  # exercised ADC range of the current token
        d.comb += [self.busy.eq((state != S_FETCH) & (state != S_ERROR)),
                   self.error.eq(state == S_ERROR), self.error_code.eq(err_code),
                   self.phase.eq(phase), self.steps.eq(steps), self.adc_rows.eq(adc_rows)]
        with mod.Switch(adc_rows):       # adc_bits = bit length of adc_rows
            for v in range(m + 1):
                with mod.Case(v):
                    d.comb += self.adc_bits.eq(v.bit_length())

        # ------------------------------------------------------------ derived from b
        log2g = Signal(4)
        last_beat = Signal(range(max(2, cfg.n_max // p + 1)))   # n/p - 1
        last_e = Signal(range(max(2, BMAX)))                    # b - 1
        with mod.Switch(log2b):
            for lb in LOG2B:
                with mod.Case(lb):
                    b, g = 1 << lb, m >> lb
                    n = b * b
                    d.comb += [log2g.eq(LOGM - lb),
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

        mod.submodules.check = check = InstrCheck(cfg)
        d.comb += [check.word.eq(w), check.phase.eq(phase), check.cfg_valid.eq(cfg_valid),
                   check.win.eq(win), check.g_mask.eq(g_mask), check.last_line.eq(last_line)]
        err_now = check.err
        d.sync += [step_ok.eq(0), steps.eq(steps + step_ok)]

        # ------------------------------------------------------------ step datapath
        def lowest(vec, width):
            idx = Signal(range(max(2, width)))
            for i in reversed(range(width)):
                with mod.If(vec[i]):
                    d.comb += idx.eq(i)
            return idx

        next_g = lowest(gleft, G)

        # A column group's pipeline (docs/cim.md): issued by the controller (iss_*), its
        # tag (valid, group, accumulator line, accumulate, column select, weight address)
        # moves one stage a cycle beside its data. Combinational tile: the weight word
        # arrives the cycle after the issue and the lanes are written in that cycle.
        # Pipelined (step_stages > 0): the issue register, the weight RAM's read and
        # output register (and the gated activations' register), GroupDot's latency, the
        # products rotated into bank order and registered while the banks read the old
        # lanes, then the write: 1 + step_stages cycles after the issue.
        def bank_rot(g):
            """Bank of lane 0 of column group ``g`` (lane j is in bank (j + rot) % lanes)."""
            return (Cat(Const(0, LOGP), g) >> log2b)[:LOGP] if LOGP else Const(0, 1)

        iss_v = Signal()
        iss_g = Signal(range(max(2, G)))
        iss_addr = Signal(range(max(2, A * G)))
        # the next group (the lowest left) and its weight address, from registers only
        d.comb += [iss_g.eq(next_g), iss_addr.eq((i_array << LOGG) | iss_g)]
        tag_layout = data.StructLayout({"v": 1, "g": range(max(2, G)), "acc": 8, "accum": 1,
                                        "csel": p, "addr": range(max(2, A * G)),
                                        "rot": max(1, LOGP)})
        tag0 = Signal(tag_layout)
        d.comb += [tag0.v.eq(iss_v), tag0.g.eq(iss_g), tag0.acc.eq(i_acc),
                   tag0.accum.eq(i_accum), tag0.csel.eq(colsel.word_select(iss_g, p)),
                   tag0.addr.eq(iss_addr), tag0.rot.eq(-bank_rot(iss_g))]
        tags = [tag0]

        def step_tag():
            t = Signal(tag_layout, name=f"tag{len(tags)}")
            d.sync += [t.eq(tags[-1]), t.v.eq(tags[-1].v & ~self.clear)]
            tags.append(t)
            return t

        mod.submodules.dot = dot = GroupDot(m, p, registered=PIPE, tree_regs=cfg.tree_stages)
        act_gated = Cat(Mux(rowsel[r], a_rd.data[8 * r:8 * r + 8], 0) for r in range(m))
        K = cfg.out_stages

        def rotate(vals, amount):
            """``vals`` rotated: element k of the result is ``vals[(k + amount) % len]``."""
            n = len(vals)
            out = []
            for k in range(n):
                o = Signal.like(vals[0], name=f"rot{len(rotations)}_{k}")
                with mod.Switch(amount):
                    for r in range(n):
                        with mod.Case(r):
                            d.comb += o.eq(vals[(k + r) % n])
                out.append(o)
            rotations.append(out)
            return out
        rotations = []

        mid_v = Signal()                 # a MIDWR cycle: element me of line mline
        out_iss = Signal()               # OUTPUT: beat cnt is read this cycle
        h_index = Signal(range(2 * cfg.n_max))
        d.comb += h_index.eq((me << log2b) + (mline << log2g))
        if PIPE:
            step_tag()
            for j in range(p):
                for i, ram in enumerate(wl[j]):
                    ra_c = replicas(mod, platform, tag0.addr, 1, f"wra{j}_{i}",
                                    reset_less=True)[0]
                    d.comb += ram.rd_addr.eq(ra_c)
            wdata = Cat(ram.rd_data for lane in wl for ram in lane)
            step_tag()
            act_q = Signal(m * 8, reset_less=True)
            rowsel_q = Signal(m, reset_less=True)
            d.sync += [act_q.eq(act_gated), rowsel_q.eq(rowsel)]
            step_tag()
            d.comb += [dot.act.eq(act_q), dot.w.eq(wdata), dot.rowsel.eq(rowsel_q)]
            for _ in range(dot.latency):
                step_tag()
            dt = tags[-1]                # the dot products are valid
            rq = tags[-4]                # read the old lanes: 4 cycles before the write
            # bank read addresses, registered (data 3 cycles after the request, then
            # copied into a fabric register beside the adder)
            ra = [Signal(range(max(2, NL * G)), name=f"bank_ra{k}") for k in range(p)]
            ra_q = [Signal.like(x, name=f"bank_raq{k}") for k, x in enumerate(ra)]
            for k in range(p):
                s_k = Const(k, LOGP + 1) - me[:LOGP] if LOGP else Const(0, 1)
                with mod.If(rq.v):
                    d.comb += ra[k].eq((rq.acc << LOGG) | rq.g)
                with mod.Elif(mid_v):
                    d.comb += ra[k].eq((mline << LOGG)
                                       | ((((s_k[:LOGP] if LOGP else s_k) << log2b) | me)
                                          >> LOGP))
                with mod.Elif(out_iss):
                    d.comb += ra[k].eq(cnt)
                d.sync += ra_q[k].eq(ra[k])
                d.comb += banks[k].rd_addr.eq(ra_q[k])
            # the write stage: the dot products in bank order, the old lanes, the sum
            rot_dots = rotate([dot.dots[j] for j in range(p)], dt.rot)
            rot_csel = rotate([dt.csel[j] for j in range(p)], dt.rot)
            wt = step_tag()
            accq = replicas(mod, platform, dt.accum, p, "accum_b", reset_less=True)
            # The bank read (in the cycle 3 before the write) misses a write in that same
            # cycle: a group of the STEP before, issued 3 cycles earlier (the least distance
            # between STEPs) to the same lanes. That write's sum is forwarded.
            d_addr = Signal(range(max(2, NL * G)))
            w_addr = Signal.like(d_addr)
            d.comb += [d_addr.eq((dt.acc << LOGG) | dt.g), w_addr.eq((wt.acc << LOGG) | wt.g)]
            for k in range(p):
                dq = Signal(signed(32), name=f"dot_b{k}", reset_less=True)
                cq = Signal(name=f"csel_b{k}", reset_less=True)
                oq = Signal(32, name=f"old_b{k}", reset_less=True)
                d.sync += [dq.eq(rot_dots[k]), cq.eq(rot_csel[k]), oq.eq(banks[k].rd_data)]
                we = Signal(name=f"we_b{k}")
                total = Signal(32, name=f"sum_b{k}")
                d.comb += we.eq(wt.v & cq)
                # the writes of the last cycles (address and enable 1 and 2 back, sums
                # 1..3 back) and the hit on the one 3 back, registered from the stage before
                h_a = [Signal.like(w_addr, name=f"wa_b{k}_{i}", reset_less=True) for i in (1, 2)]
                h_e = [Signal(name=f"we_b{k}_{i}") for i in (1, 2)]
                h_s = [Signal(32, name=f"ws_b{k}_{i}", reset_less=True) for i in (1, 2, 3)]
                hit = Signal(name=f"fwd_b{k}")
                d.sync += [h_a[0].eq(w_addr), h_a[1].eq(h_a[0]), h_e[0].eq(we & ~self.clear),
                           h_e[1].eq(h_e[0] & ~self.clear), h_s[0].eq(total), h_s[1].eq(h_s[0]),
                           h_s[2].eq(h_s[1]), hit.eq(h_e[1] & (h_a[1] == d_addr))]
                old = Mux(accq[k], Mux(hit, h_s[2], oq), 0).as_signed()
                d.comb += [total.eq(old + dq), banks[k].wr_addr.eq(w_addr),
                           banks[k].wr_data.eq(total), banks[k].wr_en.eq(we)]
            adc_t = dt
        else:
            wt = step_tag()
            d.comb += [w_rd.addr.eq(iss_addr), w_rd.en.eq(iss_v),
                       dot.act.eq(act_gated),
                       dot.w.eq(w_rd.data), dot.rowsel.eq(rowsel)]
            old_line = Signal(m * 32)
            d.comb += [c_rs.addr.eq(wt.acc), old_line.eq(c_rs.data)]
            old = Signal(32 * p)
            d.comb += old.eq(Mux(wt.accum, old_line.word_select(wt.g, 32 * p), 0))
            newv = []
            for j in range(p):
                nv = Signal(signed(32), name=f"acc_new{j}")
                d.comb += nv.eq(old[32 * j:32 * j + 32].as_signed() + dot.dots[j])
                newv.append(nv)
            d.comb += [c_wr.addr.eq(wt.acc), c_wr.data.eq(Cat(*(newv * G)))]
            for c in range(m):
                d.comb += c_wr.en[c].eq(wt.v & wt.csel[c % p] & (wt.g == c // p))
            adc_t = wt
        pipe_busy = Signal()             # a group's accumulator write is still to come
        d.comb += pipe_busy.eq(Cat(t.v for t in tags[1:]).any())
        # exercised ADC range: the largest lane count of the group (registered when
        # pipelined), then the token's running maximum
        lane_rows = [Mux(adc_t.csel[j], dot.rows[j], 0) for j in range(p)]
        while len(lane_rows) > 1:
            nxt = []
            for a, b_ in zip(lane_rows[0::2], lane_rows[1::2]):
                mx = Signal(range(m + 1))
                d.comb += mx.eq(Mux(a > b_, a, b_))
                nxt.append(mx)
            lane_rows = nxt + lane_rows[len(lane_rows) & ~1:]
        group_rows = Signal(range(m + 1))
        group_v = Signal()
        if PIPE:
            d.sync += [group_rows.eq(lane_rows[0]), group_v.eq(adc_t.v & ~self.clear)]
        else:
            d.comb += [group_rows.eq(lane_rows[0]), group_v.eq(adc_t.v)]
        with mod.If(group_v & (group_rows > adc_rows)):
            d.sync += adc_rows.eq(group_rows)

        # ------------------------------------------------------------ MID and OUTPUT
        # MID: element (s*b + e) of accumulator line l goes to H[e*b + l*g + s] (the P
        # swap); a MIDWR cycle (mid_v) takes the g elements of one e. OUTPUT: a beat is the
        # lanes of one column group.
        if PIPE:
            # the banks' data (3 cycles after a request) through one requantizer per bank
            # (K cycles) with the instruction's mode, registered at its fetch; a request's
            # tag follows beside it. MID rotates the int8 results into slot order, OUTPUT
            # the int32 results into lane order and into a FIFO against credits.
            rq_kind, rq_mult, rq_shift = Signal(2), Signal(16), Signal(5)
            rnd_q, smask_q = Signal(31), Signal(lane_t_width(32) - 7)
            rnd, smask = requant_consts(rq_shift, 32)
            d.sync += [rnd_q.eq(rnd), smask_q.eq(smask)]
            rqv = []
            for k in range(p):
                lane = {"acc_bits": 32} if K == 7 else {}
                os_ = mod.submodules[f"rq{k}"] = OutputStage(stages=K, **lane)
                d.comb += [os_.acc.eq(banks[k].rd_data.as_signed()), os_.mode.eq(rq_kind),
                           os_.mult.eq(rq_mult), os_.shift.eq(rq_shift)]
                if K == 7:
                    d.comb += [os_.rnd.eq(rnd_q), os_.sat_mask.eq(smask_q)]
                rqv.append(os_.out)
            LQ = 3 + K
            mtag = data.StructLayout({"v": 1, "h": len(h_index), "e": range(max(2, BMAX))})
            otag = data.StructLayout({"v": 1, "rot": max(1, LOGP)})
            mt, ot = Signal(mtag), Signal(otag)
            d.comb += [mt.v.eq(mid_v), mt.h.eq(h_index), mt.e.eq(me),
                       ot.v.eq(out_iss), ot.rot.eq(bank_rot(cnt[:LOGG] if LOGG else 0))]
            for k in range(LQ):
                nm, no = Signal(mtag, name=f"mid_t{k + 1}"), Signal(otag, name=f"out_t{k + 1}")
                d.sync += [nm.eq(mt), nm.v.eq(mt.v & ~self.clear),
                           no.eq(ot), no.v.eq(ot.v & ~self.clear)]
                mt, ot = nm, no
            mvals = rotate([v[:8] for v in rqv], mt.e[:LOGP] if LOGP else Const(0, 1))
            mw_v, mw_h = mt.v, mt.h
            res_vals = rotate(rqv, ot.rot)
            F = cfg.out_fifo_depth
            mod.submodules.res_fifo = fifo = ResetInserter(self.clear)(
                SyncFIFOBuffered(width=32 * p, depth=F))
            credit = Signal(range(F + 1), init=F)
            sent = Signal(range(max(2, cfg.n_max // p + 1)))
            xfer = fifo.r_rdy & self.res.ready
            d.comb += [fifo.w_data.eq(Cat(*res_vals)), fifo.w_en.eq(ot.v),
                       self.res.valid.eq(fifo.r_rdy), self.res.payload.eq(fifo.r_data),
                       fifo.r_en.eq(self.res.ready)]
            d.sync += credit.eq(credit - out_iss + xfer)
        else:
            mvals = []
            for s in range(GMAX):
                idx = Signal(range(m), name=f"mid_lane{s}")
                d.comb += idx.eq((Const(s, 8) << log2b) | me)
                os_ = mod.submodules[f"mid_os{s}"] = OutputStage(stages=0)
                d.comb += [os_.acc.eq(c_rd.data.word_select(idx, 32).as_signed()),
                           os_.mode.eq(mid_kind), os_.mult.eq(mid_mult),
                           os_.shift.eq(mid_shift)]
                mvals.append(os_.out[:8])
            mw_v, mw_h = mid_v, h_index
            out_lanes = Signal(32 * p)
            d.comb += out_lanes.eq(c_rd.data.word_select(pend_chunk, 32 * p))
            res_vals = []
            for j in range(p):
                os_ = mod.submodules[f"out_os{j}"] = OutputStage(stages=0)
                d.comb += [os_.acc.eq(out_lanes[32 * j:32 * j + 32].as_signed()),
                           os_.mode.eq(out_kind), os_.mult.eq(out_mult),
                           os_.shift.eq(out_shift)]
                res_vals.append(os_.out)
            d.comb += self.res.payload.eq(Cat(*res_vals))
        mid_wdata = Signal(m * 8)
        mid_wen = Signal(m)
        off = mw_h[:LOGM] if LOGM else Const(0, 1)
        with mod.Switch(log2b):
            for lb in LOG2B:
                with mod.Case(lb):
                    g = m >> lb
                    d.comb += mid_wdata.eq(Cat(mvals[t % g] for t in range(m)))
                    d.comb += mid_wen.eq(Const((1 << g) - 1, m) << off)
        with mod.If(mw_v):
            d.comb += [aw_addr.eq(NL + (mw_h >> LOGM)), aw_data.eq(mid_wdata),
                       aw_en.eq(mid_wen)]

        # LOADW: the column's words before its last; slot k loads every cycle the word count
        # is k (the count moves on the accepted word only)
        for k in range(WPC - 1):
            with mod.If(wcnt == k):
                d.sync += colbuf[64 * k:64 * k + 64].eq(w)
        column = Cat(colbuf[:(WPC - 1) * 64], w) if WPC > 1 else w
        waddr = (i_array << LOGG) | (col >> LOGP)
        lane_en = Const(1, p) << col[:LOGP] if LOGP else Const(1, 1)
        if PIPE:
            # the column write, registered on its way to the weight RAMs (no STEP before
            # the next INPUT): one copy of the address and enable per RAM slice
            lw_en = Signal(p)
            lw_data = Signal(m * 8, reset_less=True)
            d.sync += lw_data.eq(column)
            for j in range(p):
                for i, ram in enumerate(wl[j]):
                    wa = replicas(mod, platform, waddr, 1, f"wwa{j}_{i}", reset_less=True)[0]
                    we = replicas(mod, platform, lw_en[j], 1, f"wwe{j}_{i}")[0]
                    d.comb += [ram.wr_addr.eq(wa), ram.wr_en.eq(we),
                               ram.wr_data.eq(lw_data[WSL * i:WSL * (i + 1)])]

        rowsel_next, colsel_next = Signal(m), Signal(m)   # a STEP header's row/column masks
        with mod.Switch(log2b):
            for lb in LOG2B:
                with mod.Case(lb):
                    d.comb += [rowsel_next.eq(Cat(f_rmask[r >> lb] for r in range(m))),
                               colsel_next.eq(Cat(f_cmask[c >> lb] for c in range(m)))]

        # ------------------------------------------------------------ controller
        with mod.Switch(state):
            with mod.Case(S_FETCH):
                d.comb += self.prog.ready.eq(1)
                with mod.If(self.prog.valid):
                    # the instruction's fields and counters are latched whether or not it
                    # passes the check (after an error only clear leads on, and it forgets
                    # them), so only the state, phase, CFG-valid, step count and ADC range
                    # wait for the check
                    with mod.Switch(op):
                        with mod.Case(gc.OP_CFG):
                            d.sync += [log2b.eq(f_log2b), mid_kind.eq(f_mk),
                                       mid_mult.eq(f_mm), mid_shift.eq(f_ms),
                                       out_kind.eq(f_ok), out_mult.eq(f_om),
                                       out_shift.eq(f_os)]
                            with mod.Switch(f_log2b):
                                for lb in LOG2B:
                                    with mod.Case(lb):
                                        d.sync += [g_mask.eq((1 << (m >> lb)) - 1),
                                                   last_line.eq((1 << (2 * lb)) // m - 1)]
                        with mod.Case(gc.OP_LOADW):
                            d.sync += [i_array.eq(f_array), col.eq(f_col),
                                       cols_left.eq(f_ncols), wcnt.eq(0)]
                        with mod.Case(gc.OP_INPUT):
                            d.sync += [cnt.eq(0), win.eq(0)]
                        with mod.Case(gc.OP_STEP):
                            d.sync += [i_array.eq(f_array), i_act.eq(f_act),
                                       i_acc.eq(f_acc), i_accum.eq(f_accum)]
                            for ln in range(NL):
                                with mod.If(f_acc == ln):
                                    d.sync += win[ln].eq(win[ln] | f_cmask[:GMAX])
                            if PIPE:
                                d.sync += a_line.eq(Mux(phase == 2, NL, 0) + f_act)
                            d.sync += [rowsel.eq(rowsel_next), colsel.eq(colsel_next),
                                       gleft.eq(Cat(colsel_next[j * p:(j + 1) * p].any()
                                                    for j in range(G)))]
                        with mod.Case(gc.OP_MID):
                            d.sync += [mline.eq(0), win.eq(0)]
                            if PIPE:
                                d.sync += [rq_kind.eq(mid_kind), rq_mult.eq(mid_mult),
                                           rq_shift.eq(mid_shift)]
                        with mod.Case(gc.OP_OUTPUT):
                            d.sync += [cnt.eq(0), pend.eq(0), win.eq(0)]
                            if PIPE:
                                d.sync += [sent.eq(0), rq_kind.eq(out_kind),
                                           rq_mult.eq(out_mult), rq_shift.eq(out_shift)]
                    with mod.If(err_now != 0):
                        d.sync += [err_code.eq(err_now), state.eq(S_ERROR)]
                    with mod.Else():
                        with mod.Switch(op):
                            with mod.Case(gc.OP_CFG):
                                d.sync += cfg_valid.eq(1)
                            with mod.Case(gc.OP_LOADW):
                                d.sync += state.eq(S_LOADW)
                            with mod.Case(gc.OP_INPUT):
                                d.sync += [phase.eq(1), adc_rows.eq(0), state.eq(S_INPUT)]
                            with mod.Case(gc.OP_STEP):
                                d.sync += [step_ok.eq(1), state.eq(S_STEP0)]
                            with mod.Case(gc.OP_MID):
                                d.sync += [phase.eq(2), state.eq(S_MIDRD)]
                            with mod.Case(gc.OP_OUTPUT):
                                d.sync += [phase.eq(0), state.eq(S_OUT)]

            with mod.Case(S_LOADW):
                d.comb += self.prog.ready.eq(1)
                with mod.If(self.prog.valid):
                    with mod.If(wcnt == WPC - 1):
                        if PIPE:
                            d.comb += lw_en.eq(lane_en)
                        else:
                            d.comb += [w_wr.addr.eq(waddr), w_wr.data.eq(Cat(*([column] * p))),
                                       w_wr.en.eq(lane_en)]
                        d.sync += [wcnt.eq(0), col.eq(col + 1), cols_left.eq(cols_left - 1)]
                        with mod.If(cols_left == 1):
                            d.sync += state.eq(S_FETCH)
                    with mod.Else():
                        d.sync += wcnt.eq(wcnt + 1)

            with mod.Case(S_INPUT):
                d.comb += self.act.ready.eq(1)
                with mod.If(self.act.valid):
                    chunk = cnt[:LOGG] if LOGG else Const(0, 1)
                    d.comb += [aw_addr.eq(cnt >> LOGG),
                               aw_data.eq(Cat(*([self.act.payload] * G))),
                               aw_en.eq(Const((1 << p) - 1, m) << (chunk << LOGP))]
                    d.sync += cnt.eq(cnt + 1)
                    with mod.If(cnt == last_beat):
                        d.sync += state.eq(S_FETCH)

            with mod.Case(S_STEP0):
                if not PIPE:
                    d.comb += [a_rd.addr.eq(Mux(phase == 2, NL, 0) + i_act), a_rd.en.eq(1)]
                d.comb += iss_v.eq(1)
                d.sync += [gleft.eq(gleft & ~(Const(1, G) << next_g)), state.eq(S_STEP)]

            with mod.Case(S_STEP):
                with mod.If(gleft != 0):
                    d.comb += iss_v.eq(1)
                    d.sync += gleft.eq(gleft & ~(Const(1, G) << next_g))
                with mod.Else():
                    d.sync += state.eq(S_FETCH)

            with mod.Case(S_MIDRD):
                with mod.If(~pipe_busy):     # the last STEP's writes have landed
                    if not PIPE:
                        d.comb += [c_rd.addr.eq(mline), c_rd.en.eq(1)]
                    d.sync += [me.eq(0), state.eq(S_MIDWR)]

            with mod.Case(S_MIDWR):
                d.comb += mid_v.eq(1)
                d.sync += me.eq(me + 1)
                with mod.If(me == last_e):
                    d.sync += mline.eq(mline + 1)
                    with mod.If(mline != last_line):
                        d.sync += state.eq(S_MIDRD)
                    with mod.Else():
                        if cfg.mid_tail:
                            d.sync += [tail.eq(cfg.mid_tail - 1), state.eq(S_MIDEND)]
                        else:
                            d.sync += state.eq(S_FETCH)

            with mod.Case(S_MIDEND):         # the requantizer's last H writes
                d.sync += tail.eq(tail - 1)
                with mod.If(tail == 0):
                    d.sync += state.eq(S_FETCH)

            with mod.Case(S_OUT):
                more = cnt <= last_beat
                if PIPE:
                    with mod.If(more & (credit != 0) & ~pipe_busy):
                        d.comb += out_iss.eq(1)
                        d.sync += [pend_chunk.eq(cnt[:LOGG] if LOGG else 0), cnt.eq(cnt + 1)]
                    with mod.If(xfer):
                        d.sync += sent.eq(sent + 1)
                        with mod.If(sent == last_beat):
                            d.sync += state.eq(S_FETCH)
                else:
                    d.comb += self.res.valid.eq(pend)
                    advance = ~pend | self.res.ready
                    with mod.If(advance & more & ~pipe_busy):
                        d.comb += [c_rd.addr.eq(cnt >> LOGG), c_rd.en.eq(1)]
                        d.sync += [pend.eq(1), pend_chunk.eq(cnt[:LOGG] if LOGG else 0),
                                   cnt.eq(cnt + 1)]
                    with mod.Elif(pend & self.res.ready):
                        d.sync += [pend.eq(0), state.eq(S_FETCH)]

            with mod.Case(S_ERROR):
                d.comb += [self.prog.ready.eq(1), self.act.ready.eq(1)]

        with mod.If(self.clear):
            d.sync += [state.eq(S_FETCH), err_code.eq(0), phase.eq(0), cfg_valid.eq(0),
                       win.eq(0), steps.eq(0), step_ok.eq(0), pend.eq(0), adc_rows.eq(0)]
            if PIPE:
                d.sync += credit.eq(cfg.out_fifo_depth)
        return mod
