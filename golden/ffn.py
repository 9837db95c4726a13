"""Golden model of one expert's gated FFN (SwiGLU style), integer end to end.

    g = ssmm(gate, x, sel, requant gate_rq)      int8   (ffn x tokens)
    a = lut[g & 0xFF]                             int8   SiLU by table lookup
    u = ssmm(up,   x, sel, requant up_rq)         int8
    h = requant(a * u, prod_rq)                   int8   (a*u is exact in int32: |a*u| <= 2**14)
    y = ssmm(down, h, None, out_down)                    (hidden x tokens)

The hardware holds the 256-entry table, not the formula: floats are used once,
to build the table, and everything after that is integer and bit-exact. Shapes:
gate and up are (ffn, hidden), down is (hidden, ffn), x is (hidden, T).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .errors import FormatError
from .numerics import OutMode, parse_out, requant
from .ssmm import _weight_shape, ssmm

#: Default scales: int8 code q means q/16, so the table covers SiLU on [-8, 7.94]
#: and its output (min about -0.278) keeps 4 fractional bits.
SILU_IN_SCALE = 1 / 16
SILU_OUT_SCALE = 1 / 16


def _round_half_away(v: float) -> int:
    return int(math.copysign(math.floor(abs(v) + 0.5), v))


def silu_lut(in_scale: float = SILU_IN_SCALE, out_scale: float = SILU_OUT_SCALE) -> np.ndarray:
    """int8 -> int8 SiLU table: ``lut[q & 0xFF] = sat8(round(silu(q*in_scale) / out_scale))``.

    Rounding is half away from zero; entry i holds the output for code
    ``i - 256 if i >= 128 else i`` (the two's-complement byte of q is the address).
    """
    if not (in_scale > 0 and out_scale > 0):
        raise FormatError(f"in_scale/out_scale: must be positive, got {in_scale}, {out_scale}")
    lut = np.empty(256, dtype=np.int8)
    for q in range(-128, 128):
        r = q * in_scale
        silu = r / (1.0 + math.exp(-r))
        lut[q & 0xFF] = max(-128, min(127, _round_half_away(silu / out_scale)))
    return lut


def apply_lut(lut: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Look int8 codes up in a 256-entry table addressed by the code's byte."""
    if codes.dtype != np.int8:
        raise FormatError(f"codes: expected int8, got {codes.dtype}")
    return lut[codes.view(np.uint8)]


def _requant_pair(rq, name: str) -> OutMode:
    if not (isinstance(rq, tuple) and len(rq) == 2):
        raise FormatError(f"{name}: expected (mult, shift), got {rq!r}")
    return parse_out(("requant", *rq))


@dataclass(frozen=True)
class FFNParams:
    """Weights and integer scales of one expert. Requant pairs are (mult, shift)."""

    gate: object  # (ffn, hidden): int8 ndarray, Sparse24 or SamoyedsWeight
    up: object    # (ffn, hidden)
    down: object  # (hidden, ffn)
    gate_rq: tuple
    up_rq: tuple
    prod_rq: tuple
    out_down: object = "int32"  # any output mode; ("requant", m, s) to chain layers
    lut: np.ndarray = field(default_factory=silu_lut)

    def __post_init__(self):
        f, h = _weight_shape(self.gate)
        if _weight_shape(self.up) != (f, h):
            raise FormatError(f"up: shape {_weight_shape(self.up)}, expected {(f, h)} like gate")
        if _weight_shape(self.down) != (h, f):
            raise FormatError(f"down: shape {_weight_shape(self.down)}, expected {(h, f)}")
        for name in ("gate_rq", "up_rq", "prod_rq"):
            _requant_pair(getattr(self, name), name)
        parse_out(self.out_down)
        lut = self.lut
        if not isinstance(lut, np.ndarray) or lut.dtype != np.int8 or lut.shape != (256,):
            what = f"{lut.dtype} {lut.shape}" if isinstance(lut, np.ndarray) else type(lut).__name__
            raise FormatError(f"lut: expected a (256,) int8 array, got {what}")


def expert_ffn(params: FFNParams, x: np.ndarray, sel=None) -> np.ndarray:
    """One expert on the selected tokens: returns (hidden, len(sel)) in out_down's dtype."""
    p = params
    g = ssmm(p.gate, x, sel, _requant_pair(p.gate_rq, "gate_rq"))
    u = ssmm(p.up, x, sel, _requant_pair(p.up_rq, "up_rq"))
    a = apply_lut(p.lut, g)
    prod = _requant_pair(p.prod_rq, "prod_rq")
    h = requant(a.astype(np.int32) * u.astype(np.int32), prod.mult, prod.shift)
    return ssmm(p.down, h, None, p.out_down)
