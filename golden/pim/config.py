"""Configuration of the Logic-PIM unit: :class:`PIMConfig` (the RTL generator takes the
same object) and the presets the benches and the FPGA flow build.

Address map: a linear *word address* ``a`` (one word = one bundle burst of
``bundle_bits``) is ``((row * bundles) + bundle) * cols + col``: consecutive DRAM
rows of a long stream alternate bank bundles, so the controller can open the
next bundle while it reads the current one.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

import numpy as np

from ..errors import FormatError
from ..hbm3 import HBM3Timing
from ..numerics import MAX_K
from ..softmax import MAX_ROW


def _pow2(v: int) -> bool:
    return v >= 1 and (v & (v - 1)) == 0


@dataclass(frozen=True)
class PIMConfig:
    """Every parameter of the Logic-PIM unit; the RTL generator takes this object.

    bank_groups x banks_per_group banks per pCH; a *bank bundle* is
    ``banks_per_bundle`` banks (whole bank groups) opened by one ACT, and has one
    open row; ``rows`` rows per bundle are modelled (a slice of a real die);
    ``cols`` bundle words per bundle row; a word is ``bundle_bits`` wide
    (512 in Duplex). The GEMM module multiplies one weight word by one token
    slice per cycle (``bundle_bits / 8`` int8 MACs), holds up to ``max_tokens``
    token vectors of up to ``max_k_words`` words, accumulates in int32.

    Decode attention (docs/attention.md): ``attn_heads`` query heads per group
    at most (0: no attention hardware; ATTN, APPEND_KV and SET_KV are then
    illegal opcodes, ``attn_len`` and ``attn_kw`` unused), contexts of up to
    ``attn_len`` positions (the score buffer), head dimensions of up to ``attn_kw``
    words.
    """

    bank_groups: int = 4
    banks_per_group: int = 4
    banks_per_bundle: int = 8
    rows: int = 128
    cols: int = 128
    bundle_bits: int = 512
    max_tokens: int = 32
    max_k_words: int = 64
    instr_depth: int = 8
    wfifo_depth: int = 16
    out_depth: int = 16
    attn_heads: int = 0
    attn_len: int = 256
    attn_kw: int = 4
    timing: HBM3Timing = field(default_factory=HBM3Timing)

    def __post_init__(self):
        for f in fields(self):
            if f.name == "timing":
                continue
            v = getattr(self, f.name)
            low = 0 if f.name == "attn_heads" else 1
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
                raise FormatError(f"{f.name}: must be an integer >= {low}, got {v!r}")
        if not isinstance(self.timing, HBM3Timing):
            raise FormatError(f"timing: expected HBM3Timing, got {self.timing!r}")
        if self.banks_per_bundle % self.banks_per_group:
            raise FormatError(f"banks_per_bundle: {self.banks_per_bundle} is not a multiple of "
                              f"banks_per_group {self.banks_per_group} (bundles are whole bank groups)")
        if (self.bank_groups * self.banks_per_group) % self.banks_per_bundle:
            raise FormatError(f"banks_per_bundle: {self.banks_per_bundle} does not divide the "
                              f"{self.bank_groups * self.banks_per_group} banks of the pCH")
        if not _pow2(self.bundles) or self.bundles > 8:
            raise FormatError(f"bundles: {self.bundles} bundles; must be a power of two <= 8")
        if not _pow2(self.cols):
            raise FormatError(f"cols: {self.cols} must be a power of two")
        if self.bundle_bits % 8 or not _pow2(self.bundle_bits // 8):
            raise FormatError(f"bundle_bits: {self.bundle_bits} must be 8 x a power of two")
        if self.max_tokens > 255:
            raise FormatError(f"max_tokens: {self.max_tokens} > 255 (8-bit instruction field)")
        if self.max_k_words > 4095:
            raise FormatError(f"max_k_words: {self.max_k_words} > 4095 (12-bit field)")
        if self.max_k_words * self.elems > MAX_K:
            raise FormatError(f"max_k_words: K = {self.max_k_words * self.elems} exceeds "
                              f"MAX_K = {MAX_K}")
        if self.words >= 1 << 32:
            raise FormatError(f"rows: {self.words} words exceed the 32-bit address field")
        if self.attn_heads > self.max_tokens:
            raise FormatError(f"attn_heads: {self.attn_heads} > max_tokens {self.max_tokens} "
                              "(the query heads sit in the token buffer)")
        if self.attn_heads and self.attn_len > MAX_ROW:
            raise FormatError(f"attn_len: {self.attn_len} > the softmax's MAX_ROW = {MAX_ROW}")
        if self.attn_heads and self.attn_kw > self.max_k_words:
            raise FormatError(f"attn_kw: {self.attn_kw} > max_k_words {self.max_k_words}")
        if self.wfifo_depth < 2 or self.out_depth < 8 or self.instr_depth < 4:
            raise FormatError("wfifo_depth >= 2, out_depth >= 8, instr_depth >= 4 required, got "
                              f"{self.wfifo_depth}, {self.out_depth}, {self.instr_depth}")

    @property
    def bundles(self) -> int:
        return self.bank_groups * self.banks_per_group // self.banks_per_bundle

    @property
    def groups_per_bundle(self) -> int:
        return self.banks_per_bundle // self.banks_per_group

    @property
    def elems(self) -> int:
        """int8 elements per word = MACs per cycle."""
        return self.bundle_bits // 8

    @property
    def words(self) -> int:
        return self.rows * self.bundles * self.cols

    @property
    def peak_bytes_per_cycle(self) -> float:
        return self.elems / max(self.timing.tCCD_L, self.timing.tBUS)

    def word_addr(self, bundle: int, row: int, col: int) -> int:
        return (row * self.bundles + bundle) * self.cols + col

    def split_addr(self, addr: int) -> tuple[int, int, int]:
        """word address -> (bundle, row, col)."""
        col = addr % self.cols
        bundle = (addr // self.cols) % self.bundles
        return bundle, addr // (self.cols * self.bundles), col


#: Attention: groups of up to 8 query heads, contexts of up to 2048, head dim up to 256.
CONFIG_DEFAULT = PIMConfig(attn_heads=8, attn_len=2048, attn_kw=4)
#: The simulation/CI config: 2 bundles x 64 rows x 16 cols of 128-bit words, 8 tokens;
#: attention over up to 8 heads x 256 positions, head dim up to 64.
CONFIG_SMALL = PIMConfig(bank_groups=4, banks_per_group=2, banks_per_bundle=4, rows=64, cols=16,
                         bundle_bits=128, max_tokens=8, max_k_words=16, instr_depth=8,
                         wfifo_depth=16, out_depth=16, attn_heads=8, attn_len=256, attn_kw=4)
#: The ECP5-85k build (``python -m synth flow`` takes it for ``--config default``): the
#: default's 512-bit bundles (64 MACs per cycle), 2 bundles, HBM3 timing and field
#: widths, with a 32-row x 64-column slice of each bundle (4096 words, 2 Mbit) and a
#: 16-token buffer (512 kbit). The default's 128 x 128 slice is 16 Mbit of bank
#: storage; the ECP5-85k has 3.7 Mbit of block RAM (208 DP16KD).
CONFIG_FPGA = PIMConfig(rows=32, cols=64, max_tokens=16)


def config_to_dict(cfg: PIMConfig) -> dict:
    return asdict(cfg)


def config_from_dict(d: dict) -> PIMConfig:
    d = dict(d)
    t = d.pop("timing", {})
    return PIMConfig(**d, timing=HBM3Timing(**t))
