"""The FFN glue of one unit: gate and up results in, the down projection's activations out.

A unit (SpTC or Logic-PIM) runs an expert's gate and up projections; their int8
results enter here and ``h = requant(lut[g] * u, prod_rq)`` (``golden.ffn``) stays
on chip until the unit streams it back as the activation words of the down
projection.

Element writes, one element per bank per cycle (``wr_en`` bank b: slot
``wr_tile * B + b``, ffn row ``wr_row``, value ``wr_val[b]``), two cycles each:

* a gate element (``wr_up`` 0) at cycle t reads the SiLU table (a 256 x int8 ROM,
  one synchronous read port per bank: logic or block RAM, as synthesis sees fit) at
  ``g & 0xFF``; at t + 1 ``a = lut[g]`` is written into the G buffer, so G holds
  ``a``, not ``g``, and the up path is short;
* an up element (``wr_up`` 1) at cycle t reads its slot's G word (synchronous,
  transparent to the G write of the same cycle, so it may follow its gate element
  directly); at t + 1 it selects ``a``'s lane, multiplies ``a * u`` (16 bits
  signed), requantizes with ``prod_mult`` / ``prod_shift``
  (:class:`hdl.outstage.OutputStage`, mode 2) and writes ``h`` into the H buffer.
  That cycle is one combinational path (G read data, lane select, ``a * u``, the
  requant's multiply, round, shift and saturate, H write), acceptable for now: a
  register after ``a * u`` and a registered OutputStage would split it, at the
  cost of a longer busy latency.

``busy`` is high in the cycle after a write (the element between its table or G
read and its G or H write): after the last element at cycle t, busy falls at t + 2
and H is complete in that cycle. ``prod_mult`` / ``prod_shift`` must hold while busy.

Buffers: G and H are ``B`` banks each (bank b holds the slots with slot % B == b) of
``max_slots / B * max_rows / E`` words of E int8 lanes, word ``(slot // B) * (max_rows
// E) + row // E``, lane ``row % E``; a write updates one lane (byte-granular write
port). Rows at or past the job's ffn in a slot's last word are never written: they
keep whatever they held (zero after reset), so the down weights' padding columns
must be zero.

Read (the down projection's LOAD): ``rd_start`` samples ``rd_n`` slots and ``rd_kw``
words per slot; ``rd`` then gives slot 0's words 0 .. kw-1, slot 1's, ...; word w
of slot j holds rows w*E .. w*E+E-1, element i in bits [8i, 8i+8) (golden.sptc.act_words
for E = 4, golden.pim.program.pack_rows of the (slots x rows) matrix for any E). One
word per cycle at full rate through a :class:`hdl.stream.SkidBuffer` (registered
``ready``): with ``rd.ready`` high, the words of a read started (``rd_start``) at cycle
c are taken at cycles c + 3 .. c + 2 + n * kw. ``rd_busy`` is high from c + 1 until
the last word is taken. H must not be written during a read.

``error`` (sticky until reset): a write with ``wr_row >= max_rows`` or ``wr_tile >=
max_slots / B`` (dropped), a ``rd_start`` with ``rd_n > max_slots`` or ``rd_kw >
max_rows / E`` (ignored), or a ``rd_start`` while ``rd_busy`` (ignored). A read of zero
slots or words does nothing.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from golden.errors import FormatError
from golden.ffn import silu_lut

from ..common import bits_for, is_pow2, log2
from ..outstage import OutputStage
from ..stream import SkidBuffer


def _below(v, k: int):
    """``v < k``, a constant 1 where every value of ``v`` is (no constant comparison
    in the Verilog)."""
    return Const(1, 1) if k >= 1 << len(v) else v < k


@dataclass(frozen=True)
class GlueConfig:
    """``banks`` B (power of two), ``elems`` E int8 per read word (power of two),
    ``max_slots`` S (a multiple of B), ``max_rows`` F (the largest ffn, a multiple of E)."""

    banks: int = 4
    elems: int = 4
    max_slots: int = 32
    max_rows: int = 128

    def __post_init__(self):
        for name in ("banks", "elems", "max_slots", "max_rows"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise FormatError(f"{name}: must be an integer >= 1, got {v!r}")
        for name in ("banks", "elems"):
            if not is_pow2(int(getattr(self, name))):
                raise FormatError(f"{name}: {getattr(self, name)} is not a power of two")
        if self.max_slots % self.banks:
            raise FormatError(f"max_slots: {self.max_slots} is not a multiple of banks "
                              f"{self.banks}")
        if self.max_rows % self.elems:
            raise FormatError(f"max_rows: {self.max_rows} is not a multiple of elems "
                              f"{self.elems}")

    @property
    def tiles(self) -> int:
        return self.max_slots // self.banks

    @property
    def max_kw(self) -> int:
        return self.max_rows // self.elems

    @property
    def depth(self) -> int:
        """Words per bank of G and of H."""
        return self.tiles * self.max_kw


class FFNGlue(wiring.Component):
    def __init__(self, cfg: GlueConfig, lut=None):
        if not isinstance(cfg, GlueConfig):
            raise FormatError(f"cfg: expected a GlueConfig, got {type(cfg).__name__}")
        lut = silu_lut() if lut is None else lut
        if not isinstance(lut, np.ndarray) or lut.dtype != np.int8 or lut.shape != (256,):
            what = f"{lut.dtype} {lut.shape}" if isinstance(lut, np.ndarray) else type(lut).__name__
            raise FormatError(f"lut: expected a (256,) int8 array, got {what}")
        self.cfg, self.lut = cfg, lut.copy()
        B, E = cfg.banks, cfg.elems
        super().__init__({
            "wr_en": In(B), "wr_up": In(1), "wr_row": In(bits_for(cfg.max_rows)),
            "wr_tile": In(bits_for(cfg.tiles)), "wr_val": In(signed(8)).array(B),
            "prod_mult": In(16), "prod_shift": In(5), "busy": Out(1),
            "rd_start": In(1), "rd_n": In(range(cfg.max_slots + 1)),
            "rd_kw": In(range(cfg.max_kw + 1)), "rd": Out(stream.Signature(8 * E)),
            "rd_busy": Out(1), "error": Out(1),
        })

    def elaborate(self, platform):
        cfg = self.cfg
        B, E, KW, LE = cfg.banks, cfg.elems, cfg.max_kw, log2(cfg.elems)
        m = Module()
        err = Signal()
        m.d.comb += self.error.eq(err)

        # ---- write side: table read or G read (cycle t); G write or compute + H write (t + 1)
        w_ok = _below(self.wr_row, cfg.max_rows) & _below(self.wr_tile, cfg.tiles)
        w_addr = Signal(range(cfg.depth))
        w_lane = Signal(E)               # one-hot lane of wr_row
        m.d.comb += [w_addr.eq(self.wr_tile * KW + (self.wr_row >> LE)),
                     w_lane.eq(1 << self.wr_row[:LE])]
        with m.If(self.wr_en.any() & ~w_ok):
            m.d.sync += err.eq(1)
        s1_g = Signal(B)                 # a gate element per bank, between table read and G write
        s1_v = Signal(B)                 # an up element per bank, between G read and H write
        s1_u = [Signal(signed(8), name=f"s1_u{b}") for b in range(B)]
        s1_addr = Signal.like(w_addr)
        s1_lane = Signal(E)
        s1_idx = Signal(max(LE, 1))
        m.d.sync += [s1_v.eq(Mux(self.wr_up & w_ok, self.wr_en, 0)), s1_addr.eq(w_addr),
                     s1_g.eq(Mux(~self.wr_up & w_ok, self.wr_en, 0)),
                     s1_lane.eq(w_lane), s1_idx.eq(self.wr_row[:LE])]
        m.d.sync += [s1_u[b].eq(self.wr_val[b]) for b in range(B)]
        m.d.comb += self.busy.eq(s1_v.any() | s1_g.any())
        silu = m.submodules.silu = Memory(shape=signed(8), depth=256,
                                          init=[int(v) for v in self.lut])

        # ---- read side: counters (slot j, word w) -> H read -> skid buffer -> rd
        active = Signal()                # words left to issue
        v1 = Signal()                    # the H read data holds a word
        last_j = Signal(range(cfg.max_slots)); last_w = Signal(range(KW))
        j = Signal(range(cfg.max_slots)); w = Signal(range(KW))
        bank = Signal(bits_for(B)); sel = Signal(bits_for(B))
        base = Signal(range(cfg.depth + KW)); addr = Signal(range(cfg.depth + KW))
        skid = m.submodules.skid = SkidBuffer(unsigned(8 * E))
        advance = ~v1 | skid.i.ready
        h_data = []

        for b in range(B):
            lut_rp = silu.read_port()
            g = m.submodules[f"g{b}"] = Memory(shape=unsigned(8 * E), depth=cfg.depth, init=[])
            h = m.submodules[f"h{b}"] = Memory(shape=unsigned(8 * E), depth=cfg.depth, init=[])
            gw = g.write_port(granularity=8)
            gr = g.read_port(transparent_for=(gw,))
            hw, hr = h.write_port(granularity=8), h.read_port()
            m.d.comb += [lut_rp.addr.eq(self.wr_val[b].as_unsigned()),
                         gw.addr.eq(s1_addr), gw.data.eq(Cat([lut_rp.data] * E)),
                         gw.en.eq(Mux(s1_g[b], s1_lane, 0)), gr.addr.eq(w_addr)]
            a = gr.data.word_select(s1_idx[:LE], 8).as_signed()
            rq = m.submodules[f"rq{b}"] = OutputStage(acc_width=16)
            m.d.comb += [rq.acc.eq(a * s1_u[b]), rq.mode.eq(2), rq.mult.eq(self.prod_mult),
                         rq.shift.eq(self.prod_shift),
                         hw.addr.eq(s1_addr), hw.data.eq(Cat([rq.out[:8]] * E)),
                         hw.en.eq(Mux(s1_v[b], s1_lane, 0)),
                         hr.addr.eq(addr), hr.en.eq(advance)]
            h_data.append(hr.data)

        m.d.comb += [skid.i.valid.eq(v1), skid.i.payload.eq(Array(h_data)[sel]),
                     self.rd_busy.eq(active | v1 | skid.o.valid)]
        wiring.connect(m, skid.o, wiring.flipped(self.rd))
        with m.If(advance):
            m.d.sync += [v1.eq(active), sel.eq(bank)]
            with m.If(active):
                with m.If(w != last_w):
                    m.d.sync += [w.eq(w + 1), addr.eq(addr + 1)]
                with m.Else():
                    m.d.sync += [w.eq(0), j.eq(j + 1)]
                    with m.If(j == last_j):
                        m.d.sync += active.eq(0)
                    with m.If(bank == B - 1):
                        m.d.sync += [bank.eq(0), base.eq(base + KW), addr.eq(base + KW)]
                    with m.Else():
                        m.d.sync += [bank.eq(bank + 1), addr.eq(base)]
        with m.If(self.rd_start):
            with m.If(self.rd_busy | ~_below(self.rd_n, cfg.max_slots + 1)
                      | ~_below(self.rd_kw, KW + 1)):
                m.d.sync += err.eq(1)
            with m.Elif((self.rd_n != 0) & (self.rd_kw != 0)):
                m.d.sync += [active.eq(1), last_j.eq(self.rd_n - 1), last_w.eq(self.rd_kw - 1),
                             j.eq(0), w.eq(0), bank.eq(0), base.eq(0), addr.eq(0)]
        return m
