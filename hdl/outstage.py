"""The output stage every engine shares: int32 pass-through, int8 saturate, requantize.

``golden.numerics.apply_out`` in hardware. ``mode`` is the :class:`golden.numerics.OutMode`
code (0 ``int32``, 1 ``int8_sat``, 2 ``requant``); requant is
``sat8((acc * mult + (1 << (shift - 1))) >> shift)``. ``out`` is signed(32) (int8
results sign-extended).

``stages`` registers the datapath: 0 is combinational (``out`` follows ``acc`` in the
same cycle); with ``stages`` = k, ``out`` is the result for the ``acc`` of k cycles
earlier. The pipeline is free-running (no enable): ``mode``, ``mult`` and ``shift``
are job constants that must hold while results are in flight.

``stages=7`` is the SpTC output lane's schedule (:meth:`OutputStage._lane7`), built
for a 150 MHz FPGA: ``acc`` holds ``acc_bits`` significant bits, split into a low
17-bit part multiplied in a DSP (:class:`hdl.fpga.RegMul`) and a high part
multiplied in a second DSP (``hi_dsp=True``) or as radix-4 shifted adds in LUTs
(``hi_dsp=False``). It has two more inputs, the per-job constants
:func:`requant_consts` derives from ``shift`` once for all lanes: ``rnd`` (the
rounding term ``1 << (shift - 1)``, one-hot) and ``sat_mask`` (bit j set iff
j >= shift: saturation is tested as AND-OR trees of the product against it).
``mode``, ``mult`` and ``shift`` are copied inside the lane (``hdl.fpga.replicas``),
so they may come from one register per lane. docs/timing.md explains the stages.
"""
from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .common import le_const, round_const, sat8, tree_sum
from .fpga import RegMul, replicas

LANE_STAGES = 7      # the SpTC lane schedule (o0 .. o6)


def lane_t_width(acc_bits: int) -> int:
    """Width of the rounded product ``acc * mult + rnd`` in the SpTC lane schedule."""
    return acc_bits - 17 + 37


def requant_consts(shift, acc_bits: int):
    """``(rnd, sat_mask)`` of the SpTC lane schedule as expressions of ``shift``: the
    rounding term one-hot (31 bits), and the saturation mask (bit j set iff
    j >= shift; as and/or logic, no carry chain)."""
    tw = lane_t_width(acc_bits)
    return (Cat(shift == k + 1 for k in range(31)),
            Cat(le_const(shift, k - 7) for k in range(7, tw)))


class OutputStage(wiring.Component):
    def __init__(self, *, acc_width: int = 32, mult_width: int = 16, shift_width: int = 5,
                 stages: int = 0, acc_bits: int | None = None, hi_dsp: bool = True):
        if not isinstance(stages, int) or not (0 <= stages <= 3 or stages == LANE_STAGES):
            raise ValueError(f"stages: {stages!r} must be an integer in 0..3 or {LANE_STAGES}")
        self.acc_width, self.mult_width, self.shift_width = acc_width, mult_width, shift_width
        self.stages = stages
        ports = {"acc": In(signed(acc_width)), "mode": In(2),
                 "mult": In(unsigned(mult_width)), "shift": In(unsigned(shift_width)),
                 "out": Out(signed(32))}
        if stages == LANE_STAGES:
            acc_bits = acc_width if acc_bits is None else acc_bits
            if (acc_width, mult_width, shift_width) != (32, 16, 5) or not 18 <= acc_bits <= 32:
                raise ValueError("the lane schedule takes a 32-bit acc with 18..32 significant "
                                 "bits, a 16-bit mult and a 5-bit shift")
            self.acc_bits, self.hi_dsp = acc_bits, bool(hi_dsp)
            ports.update({"rnd": In(31), "sat_mask": In(lane_t_width(acc_bits) - 7)})
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        if self.stages == LANE_STAGES:
            self._lane7(m, platform)
            return m
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

    def _lane7(self, m, platform):
        """o0 the acc copied in (the low DSP's own input registers); o1 lo * mult in a
        DSP, hi * mult in a second DSP or as two trees of LUT partial products; o2 lo
        product + rounding, the high part summed; o3 t = lo + (hi << 17); o4 t's
        sign, the masked-bit groups, the coarse shift by shift & ~3; o5 the
        saturation flags, the fine shift (or the int8_sat value); o6 the select."""
        AB = self.acc_bits
        hb, TW = AB - 17, lane_t_width(AB)
        DR = dict(reset_less=True)
        acc = self.acc
        ncfg = 4 if self.hi_dsp else 5
        # the job constants: one copy for the low DSP, one per high multiply (a DSP
        # or each LUT tree), one for o2-o4's shift, one for o5's shift and mode
        lq = replicas(m, platform, Cat(self.shift, self.mode, self.mult), ncfg, "cfg", **DR)
        qa, qa_h0, qb, qc = lq[0], lq[1], lq[-2], lq[-1]
        l_mult, l_shift = qa[7:23], qb[:5]
        o5_shift, o5_mode = qc[:5], qc[5:7]
        m_i32 = Signal(name="o5_i32", **DR)
        m_sat = Signal(name="o5_sat", **DR)
        m.d.sync += [m_i32.eq(o5_mode == 0), m_sat.eq(o5_mode == 1)]
        rq = replicas(m, platform, Cat(self.rnd, self.sat_mask), 1, "req", **DR)[0]
        rnd_bit, sat_mk = rq[:31], rq[31:]
        src = Signal(32, name="o0", **DR)
        m.d.sync += src.eq(acc)
        lo_mul = m.submodules.mul = RegMul(unsigned(17), unsigned(16))
        m.d.comb += [lo_mul.a.eq(acc[:17]), lo_mul.b.eq(l_mult)]
        lo_p = lo_mul.p
        o1a, o2a, o3a = (Signal(signed(32), name=f"o{k}_acc", **DR) for k in (1, 2, 3))
        s_lo = Signal(unsigned(34), name="o2_lo", **DR)
        s_hi = Signal(signed(hb + 19), name="o2_hi", **DR)
        t = Signal(signed(TW), name="o3_t", **DR)
        o4a = Signal(signed(32), name="o4_acc", **DR)
        big = Signal(name="o3_big", **DR)       # int8_sat: o3a > 127
        small = Signal(name="o3_small", **DR)   # int8_sat: o3a < -128
        # o4: the sign of t and, per 16-bit group from bit 7 on, "a masked bit is
        # set" (pos) and "a masked bit is clear" (neg); o5 ORs the groups
        SG = 16
        groups = [(k, min(k + SG, TW)) for k in range(7, TW, SG)]
        pos_g = Signal(len(groups), name="o4_pos", **DR)
        neg_g = Signal(len(groups), name="o4_neg", **DR)
        t_neg, big4, small4 = (Signal(name=f"o4_{x}", **DR) for x in ("tneg", "big", "small"))
        f_pos = Signal(name="o5_pos")     # saturate to +127
        f_neg = Signal(name="o5_neg")     # saturate to -128
        m.d.comb += [f_pos.eq(Mux(m_sat, big4, ~t_neg & pos_g.any())),
                     f_neg.eq(Mux(m_sat, small4, t_neg & neg_g.any()))]
        tq = Signal(11, name="o4_tq", **DR)     # t >> (shift & ~3): 11 bits suffice
        f_pos5, f_neg5 = (Signal(name=f"o5_f{x}", **DR) for x in ("pos", "neg"))
        v5 = Signal(signed(8), name="o5_v", **DR)
        o5a = Signal(signed(32), name="o5_acc", **DR)
        o6 = Signal(signed(32), name="o6", **DR)
        if self.hi_dsp:
            # hi (signed) x mult (unsigned, so one more bit): o0 the DSP's input
            # registers, o1 its output register; o2 copies the product
            hi_mul = m.submodules.mulhi = RegMul(signed(hb), signed(17))
            m.d.comb += [hi_mul.a.eq(acc[17:AB].as_signed()),
                         hi_mul.b.eq(Cat(qa_h0[7:23], Const(0, 1)).as_signed())]
            m.d.sync += o1a.eq(src)
            hi_next = hi_mul.p
        else:
            # a term per radix-4 digit of hi's unsigned bits (0, m, 2m or 3m) and one
            # for the sign bit (-m), each digit its own kept register at o0; the
            # first half of the terms from one copy of mult, the rest from the other
            digits = [(i, min(i + 2, hb - 1)) for i in range(0, hb - 1, 2)]
            hi_t = [replicas(m, platform, acc[17 + a:17 + b], 1, f"o0_hi{j}", **DR)[0]
                    for j, (a, b) in enumerate(digits)]
            hi_t.append(replicas(m, platform, acc[AB - 1], 1, "o0_hs", **DR)[0])
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
                    m3[h] = Signal(18, name=f"o1_m3_{h}", **DR)
                    m.d.sync += m3[h].eq(mj + (mj << 1))
                d = hi_t[j]
                terms.append(Mux(d[1], Mux(d[0], m3[h], mj << 1), Mux(d[0], mj, 0)) << a)
            ha = Signal(signed(hb + 18), name="o1_ha", **DR)
            hbp = Signal(signed(hb + 18), name="o1_hb", **DR)
            nmult = Signal(signed(17), name="o1_nmult", **DR)
            m.d.sync += nmult.eq(-Cat(tmult[-1], Const(0, 1)).as_signed())
            terms.append(Mux(hi_t[-1][0], nmult << (hb - 1), 0))
            m.d.sync += [o1a.eq(src),
                         ha.eq(tree_sum(terms[:half])), hbp.eq(tree_sum(terms[half:]))]
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
                     o6.eq(Mux(m_i32, o5a, Mux(f_pos5, 127, Mux(f_neg5, -128, v5))))]
        m.d.comb += self.out.eq(o6)
