"""Configuration of the CIM tile: :class:`CIMConfig` (the golden model and the RTL
generator take the same object) and the benchmark's config for shapes not simulated.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import FormatError
from .isa import MAX_ARRAYS, MAX_LINES, MAX_SLOTS


def _is_pow2(v: int) -> bool:
    return v >= 1 and v & (v - 1) == 0


def _int(v, name: str) -> int:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise FormatError(f"{name}: expected an integer, got {v!r}")
    return int(v)


@dataclass(frozen=True)
class CIMConfig:
    """Parameters of the CIM tile (golden model and RTL).

    array_size
        ``m``: rows = columns of each CIM array (power of two, 8..256).
    arrays
        Number of arrays (1..1024); their weights are held in one weight memory.
    lanes
        Columns read per cycle (the ADC/readout width, power of two dividing m); also
        the int8 activations per input beat and the int32 results per output beat.
    n_max
        Largest Monarch size ``n = b*b`` the buffers hold (power of two, >= m).
    step_stages
        Pipeline registers of a STEP's column group between its read and its accumulator
        write: 0 (the combinational tile: the group is summed and written in the cycle
        after its read), or ``6 + t`` with ``t`` in ``0..log2(m)`` (the pipelined tile):
        the issue register, the weight RAM's output register, the gated activations'
        register, the multipliers' input and output registers, the products' fabric
        copy, ``t`` registered levels of each lane's adder tree and the sums' rotation
        into the accumulator banks.
        The pipelined tile needs ``m / b_min <= lanes <= b_min``.
    out_stages
        Registers of the pipelined tile's MID and OUTPUT requantizers
        (``hdl.outstage.OutputStage``'s ``stages``: 0..3, or 7 for its DSP lane
        schedule); 0 in the combinational tile.
    """

    array_size: int = 64
    arrays: int = 64
    lanes: int = 8
    n_max: int = 1024
    step_stages: int = 0
    out_stages: int = 0

    def __post_init__(self):
        m = _int(self.array_size, "array_size")
        if not _is_pow2(m) or not 8 <= m <= 256:
            raise FormatError(f"array_size: {m} must be a power of two in 8..256")
        a = _int(self.arrays, "arrays")
        if not 1 <= a <= MAX_ARRAYS:
            raise FormatError(f"arrays: {a} out of range 1..{MAX_ARRAYS}")
        p = _int(self.lanes, "lanes")
        if not _is_pow2(p) or p > m:
            raise FormatError(f"lanes: {p} must be a power of two <= array_size {m}")
        nm = _int(self.n_max, "n_max")
        if not _is_pow2(nm) or nm < m or nm // m > MAX_LINES:
            raise FormatError(f"n_max: {nm} must be a power of two with {m} <= n_max "
                              f"<= {m * MAX_LINES}")
        st = _int(self.step_stages, "step_stages")
        if st != 0 and not 6 <= st <= 6 + m.bit_length() - 1:
            raise FormatError(f"step_stages: {st} must be 0 or in 6..{6 + m.bit_length() - 1} "
                              f"(6 + registered tree levels of m = {m})")
        os_ = _int(self.out_stages, "out_stages")
        if os_ not in (0, 1, 2, 3, 7) or (os_ and not st):
            raise FormatError(f"out_stages: {os_} must be 0..3 or 7, and 0 when "
                              f"step_stages is 0")
        if self.b_min > self.b_max:
            raise FormatError(f"n_max: {nm} too small for array_size {m}: no block size b "
                              f"with m <= b*b <= n_max and m/b <= {MAX_SLOTS}")
        if st and not m // self.b_min <= p <= self.b_min:
            raise FormatError(f"step_stages: {st} (the pipelined tile) needs m / b_min <= lanes "
                              f"<= b_min, here {m // self.b_min}, {p}, {self.b_min}")

    @property
    def m(self) -> int:
        return self.array_size

    @property
    def lines(self) -> int:
        return self.n_max // self.array_size

    @property
    def b_min(self) -> int:
        """Smallest legal b: b*b >= m (a vector fills whole lines) and m/b <= 16 slots."""
        b = 1
        while b * b < self.m or self.m // b > MAX_SLOTS:
            b *= 2
        return b

    @property
    def b_max(self) -> int:
        b = 1
        while (2 * b) * (2 * b) <= self.n_max and 2 * b <= self.m:
            b *= 2
        return b

    @property
    def g_max(self) -> int:
        return self.m // self.b_min

    @property
    def tree_stages(self) -> int:
        """Registered levels of each lane's adder tree (``step_stages - 6``, or 0)."""
        return max(0, self.step_stages - 6)

    @property
    def step_drain(self) -> int:
        """Cycles MID and OUTPUT wait, after the STEP before them, for its last write."""
        return max(0, self.step_stages - 1)

    @property
    def mid_tail(self) -> int:
        """Cycles MID waits after its last element for its last H write (pipelined tile:
        the accumulator banks' 3-cycle read and the requantizer)."""
        return 3 + self.out_stages if self.step_stages else 0

    @property
    def out_tail(self) -> int:
        """Cycles an OUTPUT beat spends between its read and ``res`` beyond the
        combinational tile's (pipelined tile: the banks' read, the requantizer and the
        result FIFO, two cycles from its write to its registered output)."""
        return 4 + self.out_stages if self.step_stages else 0

    @property
    def out_fifo_depth(self) -> int:
        """Result FIFO entries of the pipelined tile (beats in flight, and the reads that
        keep one beat a cycle)."""
        return 7 + self.out_stages if self.step_stages else 0

    @property
    def words_per_column(self) -> int:
        return self.m // 8

    @property
    def groups(self) -> int:
        """Column groups of ``lanes`` columns per array."""
        return self.m // self.lanes

    def check_b(self, b: int) -> None:
        if not _is_pow2(b) or not self.b_min <= b <= self.b_max:
            raise FormatError(f"b: {b} not supported by this config (powers of two "
                              f"{self.b_min}..{self.b_max} for array_size {self.m}, "
                              f"n_max {self.n_max})")


def model_config(array_size: int, n: int, arrays: int = MAX_ARRAYS) -> CIMConfig:
    """The benchmark's config for shapes not simulated: 8 columns per ADC (lanes = m/8)."""
    return CIMConfig(array_size=array_size, arrays=min(arrays, MAX_ARRAYS),
                     lanes=max(1, array_size // 8), n_max=max(n, array_size))
