"""The CIM controller's instruction check: the error code of a program word as a header.

:class:`InstrCheck` is combinational: from the word, the controller's phase, whether a
CFG was accepted, the accumulator slots written in this stage (``win``: per accumulator
line, the written bits of its ``g = m / b`` slots) and the configured ``b`` as registered
constants (``g_mask`` = ``(1 << g) - 1``, ``last_line`` = ``n / m - 1``), it returns
``err``: 0 if the instruction may run, otherwise the ``golden.cim.ERROR_CODES`` code the
golden interpreter raises for it, in the same order of checks.
"""
from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from golden import cim as gc
from golden.cim import CIMConfig

ERR = gc.ERROR_CODES


class InstrCheck(wiring.Component):
    def __init__(self, config: CIMConfig):
        self.config = config
        super().__init__({
            "word": In(64), "phase": In(2), "cfg_valid": In(1),
            "win": In(data.ArrayLayout(config.g_max, config.lines)),
            "g_mask": In(16), "last_line": In(8),
            "err": Out(4),
        })

    def elaborate(self, platform):
        cfg = self.config
        m, A, GM = cfg.m, cfg.arrays, cfg.g_max
        lb_lo, lb_hi = ceil_log2(cfg.b_min), ceil_log2(cfg.b_max)
        mod = Module()
        d = mod.d
        phase, g_mask, last_line = self.phase, self.g_mask, self.last_line

        w = self.word
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
        seen = Signal(GM)                # the slots of line f_acc written so far
        with mod.Switch(f_acc):
            for ln in range(cfg.lines):
                with mod.Case(ln):
                    d.comb += seen.eq(self.win[ln])
        step_unwritten = f_accum & ((seen & f_cmask[:GM]) != f_cmask[:GM])
        all_written = Signal()           # every slot of every line of the vector
        # line 0 is always a line of the vector (last_line >= 0): no constant compare
        d.comb += all_written.eq(Cat((self.win[ln] | ~g_mask[:GM]).all()
                                     | ((last_line < ln) if ln else 0)
                                     for ln in range(cfg.lines)).all())

        err = self.err
        with mod.If(bad_op):
            d.comb += err.eq(ERR["BAD_OPCODE"])
        with mod.Else():
            with mod.Switch(op):
                with mod.Case(gc.OP_CFG):
                    with mod.If(phase != 0):
                        d.comb += err.eq(ERR["BAD_SEQUENCE"])
                    with mod.Elif(~cfg_ok):
                        d.comb += err.eq(ERR["BAD_CFG"])
                with mod.Case(gc.OP_LOADW):
                    with mod.If(phase != 0):
                        d.comb += err.eq(ERR["BAD_SEQUENCE"])
                    with mod.Elif(array_bad):
                        d.comb += err.eq(ERR["BAD_ARRAY"])
                    with mod.Elif(col_bad):
                        d.comb += err.eq(ERR["BAD_COLUMN"])
                with mod.Case(gc.OP_INPUT):
                    with mod.If((phase != 0) | ~self.cfg_valid):
                        d.comb += err.eq(ERR["BAD_SEQUENCE"])
                with mod.Case(gc.OP_STEP):
                    with mod.If(phase == 0):
                        d.comb += err.eq(ERR["BAD_SEQUENCE"])
                    with mod.Elif(array_bad):
                        d.comb += err.eq(ERR["BAD_ARRAY"])
                    with mod.Elif(line_bad):
                        d.comb += err.eq(ERR["BAD_LINE"])
                    with mod.Elif(mask_bad):
                        d.comb += err.eq(ERR["BAD_MASK"])
                    with mod.Elif(step_unwritten):
                        d.comb += err.eq(ERR["UNWRITTEN"])
                with mod.Case(gc.OP_MID):
                    with mod.If(phase != 1):
                        d.comb += err.eq(ERR["BAD_SEQUENCE"])
                    with mod.Elif(~all_written):
                        d.comb += err.eq(ERR["UNWRITTEN"])
                with mod.Case(gc.OP_OUTPUT):
                    with mod.If(phase != 2):
                        d.comb += err.eq(ERR["BAD_SEQUENCE"])
                    with mod.Elif(~all_written):
                        d.comb += err.eq(ERR["UNWRITTEN"])
        return mod
