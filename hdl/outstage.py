"""The output stage every engine shares: int32 pass-through, int8 saturate, requantize.

``golden.numerics.apply_out`` in hardware. ``mode`` is the :class:`golden.numerics.OutMode`
code (0 ``int32``, 1 ``int8_sat``, 2 ``requant``); requant is
``sat8((acc * mult + (1 << (shift - 1))) >> shift)``. ``out`` is signed(32) (int8
results sign-extended).

``stages`` registers the datapath: 0 is combinational (``out`` follows ``acc`` in the
same cycle); with ``stages`` = k, ``out`` is the result for the ``acc`` of k cycles
earlier. The pipeline is free-running (no enable): ``mode``, ``mult`` and ``shift``
are job constants that must hold while results are in flight.
"""
from __future__ import annotations

from amaranth import Module, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .common import round_const, sat8


class OutputStage(wiring.Component):
    def __init__(self, *, acc_width: int = 32, mult_width: int = 16, shift_width: int = 5,
                 stages: int = 0):
        if not isinstance(stages, int) or not 0 <= stages <= 3:
            raise ValueError(f"stages: {stages!r} must be an integer in 0..3")
        self.acc_width, self.mult_width, self.shift_width = acc_width, mult_width, shift_width
        self.stages = stages
        super().__init__({"acc": In(signed(acc_width)), "mode": In(2),
                          "mult": In(unsigned(mult_width)), "shift": In(unsigned(shift_width)),
                          "out": Out(signed(32))})

    def elaborate(self, platform):
        m = Module()
        S = self.stages
        pw = self.acc_width + self.mult_width + 2

        def stage(value, name, at):
            """``value`` registered when the pipeline has a register at position ``at``."""
            if S < at:
                return value
            r = Signal.like(value, name=name)
            m.d.sync += r.eq(value)
            return r

        a = Signal(signed(self.acc_width))
        m.d.comb += a.eq(stage(self.acc, "acc_r", 3))
        prod = Signal(signed(pw))
        m.d.comb += prod.eq(a * self.mult.as_unsigned() + round_const(self.shift))
        prod_r = stage(prod, "prod_r", 2)
        a_r = stage(a, "acc_p", 2)
        rq = Signal(signed(pw))
        m.d.comb += rq.eq(prod_r >> self.shift)
        y = Signal(signed(32))
        with m.Switch(self.mode):
            with m.Case(0):
                m.d.comb += y.eq(a_r)
            with m.Case(1):
                m.d.comb += y.eq(sat8(a_r))
            with m.Default():
                m.d.comb += y.eq(sat8(rq))
        m.d.comb += self.out.eq(stage(y, "out_r", 1))
        return m
