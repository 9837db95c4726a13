"""Small RTL helpers shared by every engine: widths, reductions, saturation.

One home for the pieces each engine used to write for itself. They build plain
Amaranth expressions (no registers, no FPGA primitives: those live in
:mod:`hdl.fpga`).
"""
from __future__ import annotations

from amaranth import Const, Mux, Value, signed, unsigned


def bits_for(n: int) -> int:
    """Width of an index 0..n-1 (at least 1)."""
    return max(1, (n - 1).bit_length())


def log2(n: int) -> int:
    """ceil(log2(n)); 0 for n <= 1 (exact for the powers of two the configs require)."""
    return (n - 1).bit_length() if n > 1 else 0


def is_pow2(n: int) -> bool:
    return isinstance(n, int) and n > 0 and n & (n - 1) == 0


def tree_sum(values):
    """Sum as a balanced adder tree (log depth), not the chain ``sum()`` builds."""
    values = list(values)
    if not values:
        return Const(0, 1)
    while len(values) > 1:
        nxt = [values[i] + values[i + 1] for i in range(0, len(values) - 1, 2)]
        if len(values) % 2:
            nxt.append(values[-1])
        values = nxt
    return values[0]


def or_all(values):
    """OR of a non-empty list of values."""
    values = list(values)
    out = values[0]
    for v in values[1:]:
        out = out | v
    return out


def le_const(x: Value, k: int) -> Value:
    """``x <= k`` (x unsigned, k a constant) as and/or logic, one term per bit of x
    (built from bit 0 up, so the top bit decides first). Yosys makes a carry chain
    of ``<=``; a decoder of a few bits is one LUT level this way."""
    if k < 0:
        return Const(0, 1)
    if k >= 2 ** len(x) - 1:
        return Const(1, 1)
    out = Const(1, 1)                  # all bits below equal: x <= k
    for i in range(len(x)):            # bit 0 up: out = "x[:i+1] <= k[:i+1]"
        out = (~x[i] | out) if (k >> i) & 1 else (~x[i] & out)
    return out


def sat8(v):
    """Clamp a signed value to [-128, 127] (result signed(8))."""
    return Mux(v > 127, Const(127, signed(8)),
               Mux(v < -128, Const(-128, signed(8)), v[:8].as_signed()))


def round_const(shift: Value, width: int = 32) -> Value:
    """``1 << (shift - 1)`` for shift >= 1 and 0 for shift == 0 (the requant rounding
    term of golden.numerics), as an unsigned(width) value."""
    return ((Const(1, unsigned(width + 1)) << shift) >> 1)[:width]
