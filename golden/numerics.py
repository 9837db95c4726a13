"""The numerics contract: one definition of every integer operation the RTL performs.

Operands are int8 (two's complement); products and sums are int32 in hardware.
Every golden model does its arithmetic in int64 (or Python ints), which is exact
for anything the hardware can produce, then checks that the result fits the
hardware's register width. Nothing wraps silently: a value that would overflow
the hardware is refused with a :class:`FormatError` instead.

The output stage of every engine is selected by an :class:`OutMode`; its
``code`` is the value written to the engine's mode register.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import FormatError

#: Largest reduction length K. With int8 operands |a*b| <= 128*128 = 2**14, so
#: |acc| <= 65536 * 2**14 = 2**30 < 2**31: an int32 accumulator cannot overflow.
MAX_K = 65536

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
MULT_MAX = (1 << 16) - 1  # requant multiplier: unsigned 16-bit register
SHIFT_MIN, SHIFT_MAX = 1, 31

_CODES = {"int32": 0, "int8_sat": 1, "requant": 2}


def _as_int(value, field: str) -> int:
    """Accept Python/numpy integers only: a float multiplier would hide a rounding bug."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise FormatError(f"{field}: expected an integer, got {value!r}")
    return int(value)


def check_k(k: int, field: str = "k") -> None:
    """Refuse reductions longer than MAX_K (they could overflow the int32 accumulator)."""
    if k > MAX_K:
        raise FormatError(f"{field}: K = {k} exceeds MAX_K = {MAX_K} "
                          "(the int32 accumulator could overflow)")


@dataclass(frozen=True)
class OutMode:
    """How an engine turns its int32 accumulators into output words.

    kind
        ``"int32"``: the accumulator itself (what an H100 Sparse Tensor Core returns).
        ``"int8_sat"``: the accumulator clamped to [-128, 127].
        ``"requant"``: ``sat8((acc * mult + (1 << (shift - 1))) >> shift)``, the
        round-half-up rescale used to chain FFN layers in int8.
    mult
        Unsigned 16-bit multiplier, 0..65535. Zero is allowed (it is a legal
        register value; the output is then 0 for every accumulator). Must be 0
        for the other kinds so a stray value cannot be mistaken for a setting.
    shift
        1..31 for ``"requant"`` (shift >= 1 so the rounding term ``1 << (shift-1)``
        exists); 0 for the other kinds.
    """

    kind: str
    mult: int = 0
    shift: int = 0

    def __post_init__(self):
        if self.kind not in _CODES:
            raise FormatError(f"kind: unknown output mode {self.kind!r} "
                              f"(expected one of {sorted(_CODES)})")
        mult, shift = _as_int(self.mult, "mult"), _as_int(self.shift, "shift")
        object.__setattr__(self, "mult", mult)
        object.__setattr__(self, "shift", shift)
        if self.kind == "requant":
            if not 0 <= mult <= MULT_MAX:
                raise FormatError(f"mult: {mult} out of range 0..{MULT_MAX} (unsigned 16-bit)")
            if not SHIFT_MIN <= shift <= SHIFT_MAX:
                raise FormatError(f"shift: {shift} out of range {SHIFT_MIN}..{SHIFT_MAX}")
        elif mult or shift:
            raise FormatError(f"mult/shift: must be 0 for kind {self.kind!r}, "
                              f"got mult={mult}, shift={shift}")

    @property
    def code(self) -> int:
        """Mode register encoding: int32=0, int8_sat=1, requant=2."""
        return _CODES[self.kind]

    @property
    def out_dtype(self) -> type:
        return np.int32 if self.kind == "int32" else np.int8


def parse_out(out) -> OutMode:
    """Normalize ``"int32"``, ``"int8_sat"``, ``("requant", mult, shift)`` or an OutMode."""
    if isinstance(out, OutMode):
        return out
    if isinstance(out, str):
        if out == "requant":
            raise FormatError("out: 'requant' needs parameters: ('requant', mult, shift)")
        return OutMode(out)
    if isinstance(out, tuple) and len(out) == 3 and out[0] == "requant":
        return OutMode("requant", out[1], out[2])
    raise FormatError(f"out: expected 'int32', 'int8_sat', ('requant', mult, shift) "
                      f"or an OutMode, got {out!r}")


def sat8(x) -> np.ndarray:
    """Clamp to [-128, 127] and narrow to int8 (the hardware's saturating output stage)."""
    a = np.asarray(x)
    if a.dtype.kind not in "iu":
        raise FormatError(f"x: expected integers, got dtype {a.dtype}")
    return np.clip(a.astype(np.int64), -128, 127).astype(np.int8)


def requant(acc, mult: int, shift: int) -> np.ndarray:
    """``sat8((acc * mult + (1 << (shift - 1))) >> shift)`` elementwise, exact in int64.

    |acc| < 2**31 and mult < 2**16 keep the product below 2**47, so int64 never
    wraps; numpy's ``>>`` on signed integers is arithmetic (floor division by
    2**shift), which is what the RTL's signed shifter does.
    """
    mode = OutMode("requant", mult, shift)
    a = np.asarray(acc)
    if a.dtype.kind not in "iu":
        raise FormatError(f"acc: expected an integer array, got dtype {a.dtype}")
    _check_int32(a, "acc")
    a = a.astype(np.int64)
    return sat8((a * mode.mult + (1 << (mode.shift - 1))) >> mode.shift)


def _check_int32(a: np.ndarray, field: str) -> None:
    if a.size and (a.min() < INT32_MIN or a.max() > INT32_MAX):
        bad = a[(a < INT32_MIN) | (a > INT32_MAX)].flat[0]
        raise FormatError(f"{field}: value {int(bad)} outside the int32 accumulator range")


def apply_out(acc, out) -> np.ndarray:
    """Apply an output mode to int32-range accumulators; returns the mode's dtype."""
    mode = parse_out(out)
    a = np.asarray(acc)
    if a.dtype.kind not in "iu":
        raise FormatError(f"acc: expected an integer array, got dtype {a.dtype}")
    _check_int32(a, "acc")
    if mode.kind == "int32":
        return a.astype(np.int32)
    if mode.kind == "int8_sat":
        return sat8(a)
    return requant(a, mode.mult, mode.shift)
