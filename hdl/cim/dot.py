"""The CIM tile's column-group datapath: ``lanes`` exact int8 dot products of ``m`` rows.

:class:`GroupDot` takes one column group per cycle: the gated activation line ``act``
(``m`` int8, rows outside the step's row mask already zero), the group's weight word
``w`` (``lanes`` columns of ``m`` int8, column ``j`` at bits ``[j*m*8, (j+1)*m*8)``, row 0
at the LSB) and the row select ``rowsel``. It returns, ``latency`` cycles later:

* ``dots[j]``: the int32 dot product of column ``j`` with ``act``;
* ``rows[j]``: the selected rows whose cell in column ``j`` is nonzero (the ADC range
  the tile reports, ``golden.cim.program_activity``).

``registered`` (the FPGA schedule): every multiply in a DSP block with its input and
output registers (:class:`hdl.fpga.RegMul`), the products copied into fabric registers
beside their adder tree (the DSP rows span the die: a product's route is a register
hop), and ``tree_regs`` of the ``log2(m)`` adder-tree levels registered, spread evenly,
the last level always among them; the row counts follow the same schedule (latency
``3 + tree_regs``). Otherwise everything is combinational (latency 0). The pipeline is
free-running (no enable, no reset): the tile qualifies it with its own valid bits.
"""
from __future__ import annotations

from amaranth import Cat, Module, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ..fpga import RegMul


def reg_levels(levels: int, regs: int) -> set[int]:
    """Tree levels (1-based, counted from the leaves) followed by a register: ``regs`` of
    ``levels``, spread evenly, the last level included when ``regs`` > 0."""
    return {levels - (k * levels) // regs for k in range(regs)} if regs else set()


class GroupDot(wiring.Component):
    def __init__(self, m: int, lanes: int, *, registered: bool = False, tree_regs: int = 0):
        levels = ceil_log2(m)
        if not 0 <= tree_regs <= levels or (tree_regs and not registered):
            raise ValueError(f"tree_regs: {tree_regs} must be in 0..{levels}, and 0 unless "
                             f"registered")
        self.m, self.lanes = m, lanes
        self.registered, self.tree_regs = registered, tree_regs
        super().__init__({
            "act": In(m * 8),
            "w": In(lanes * m * 8),
            "rowsel": In(m),
            "dots": Out(data.ArrayLayout(signed(32), lanes)),
            "rows": Out(data.ArrayLayout(unsigned(ceil_log2(m + 1)), lanes)),
        })

    @property
    def latency(self) -> int:
        return (3 + self.tree_regs) if self.registered else 0

    def elaborate(self, platform):
        mod = Module()
        m, p = self.m, self.lanes
        regs = reg_levels(ceil_log2(m), self.tree_regs)

        def tree(values, name):
            level = 0
            while len(values) > 1:
                level += 1
                values = [values[i] + values[i + 1] for i in range(0, len(values), 2)]
                if level in regs:
                    qs = []
                    for i, v in enumerate(values):
                        q = Signal.like(v, name=f"{name}_l{level}_{i}", reset_less=True)
                        mod.d.sync += q.eq(v)
                        qs.append(q)
                    values = qs
            return values[0]

        act = [self.act[8 * r:8 * r + 8].as_signed() for r in range(m)]
        for j in range(p):
            base = j * m * 8
            wb = [self.w[base + 8 * r:base + 8 * r + 8] for r in range(m)]
            nz = Signal(m, name=f"nz{j}")
            mod.d.comb += nz.eq(Cat(self.rowsel[r] & wb[r].any() for r in range(m)))
            if self.registered:
                prods = []
                for r in range(m):
                    mul = mod.submodules[f"mul{j}_{r}"] = RegMul(signed(8), signed(8))
                    mod.d.comb += [mul.a.eq(act[r]), mul.b.eq(wb[r].as_signed())]
                    pq = Signal(signed(16), name=f"prod{j}_{r}", reset_less=True)
                    mod.d.sync += pq.eq(mul.p)
                    prods.append(pq)
                for k in range(3):
                    nq = Signal(m, name=f"nz{j}_q{k + 1}", reset_less=True)
                    mod.d.sync += nq.eq(nz)
                    nz = nq
            else:
                prods = [act[r] * wb[r].as_signed() for r in range(m)]
            mod.d.comb += [self.dots[j].eq(tree(prods, f"dot{j}")),
                           self.rows[j].eq(tree([nz[r] for r in range(m)], f"rows{j}"))]
        return mod
