"""The CIM energy model's parameters (:class:`EnergyConfig`) and the ADC resolution rule.

ADC model (the one the paper's "8 bits for a dense mapping" fits)
------------------------------------------------------------------
An analog CIM array as DNN+NeuroSim and ISAAC model it: activations enter bit-serially
(``dac_bits`` bits per pulse, 1 by default: ``8 / dac_bits`` pulses per int8 input),
weights are bit-sliced into cells of ``cell_bits`` bits (1 by default: an int8 weight
occupies ``8 / cell_bits`` physical columns), and one ADC conversion digitizes the
current of *one* physical column for *one* input pulse. The shift-and-add of the
``(8/dac_bits) * (8/cell_bits)`` partial sums happens digitally after the ADC. So the
ADC digitizes the sum over the rows fired in that step of ``input slice x cell slice``,
each in ``0 .. (2^dac_bits - 1)(2^cell_bits - 1)``; with ``R`` fired rows holding a
weight in that column it takes ``R (2^dac_bits - 1)(2^cell_bits - 1) + 1`` values and a
lossless conversion needs::

    adc_bits(R) = ceil(log2(R (2^dac_bits - 1)(2^cell_bits - 1) + 1))

(1-bit input, 1-bit cells: ``ceil(log2(R + 1))``: 128 rows -> 8 bits, the paper's dense
figure on NeuroSim's 128 x 128 subarrays). The full int8 x int8 column sum is *not* what
the ADC sees in this model; our digital macros (hdl/cim) compute that sum exactly in
one cycle and have no ADC at all: for them ``adc_bits`` is the resolution an analog
macro would need for the same schedule, and the tile reports the rows it fired per
column so this figure is checked against the hardware's activity (docs/cim.md).

Energy parameters and their sources (all in pJ; ``EnergyConfig`` docstring)
---------------------------------------------------------------------------
Every default is a published figure of ISAAC (Shafiee et al., ISCA 2016, 32 nm,
128 x 128 crossbars), as tabulated with its derivation in the Accelergy
``hwcomponents-library`` (github.com/Accelergy-Project/hwcomponents-library,
``hwcomponents_library/library/isaac.py``):

* ADC conversion, by resolution: 4..10 bits = 0.79, 0.99, 1.20, 1.42, 1.67, 1.97, 2.38
  pJ (8 bits: ISAAC's 16 mW at 1.2 GS/s x 8 ADCs, from the 3.1 mW 8-bit 1.2 GS/s SAR
  ADC of Kull et al., ISSCC 2013; other resolutions scaled as Saberi et al., TCAS-I
  2011). Below 4 bits the 4-bit figure is used (the table's smallest entry: no
  extrapolation), above 10 bits the energy doubles per bit (Walden figure of merit).
* DAC (row driver), per fired row per input pulse: 0.41667 pJ (ISAAC's 1-bit DACs).
* buffer access: 20.45 pJ per 256-bit eDRAM access (ISAAC tile buffer) = 0.639 pJ/byte.
* shift-and-add, per ADC output: 0.021 pJ (ISAAC's S+A units).
* cell (MAC in the array), per cell per input pulse: 1.83 fJ = ISAAC's crossbar power
  (2.4 mW for the 8 arrays of an IMA, 128 x 128 cells, 100 ns per read) / cells / reads
  (2.4e-3 / 8 * 100e-9 / 16384); from the ISAAC paper's component table, not from the
  hwcomponents file.
* permutation: the run-time P between L and R is a fixed index-bit swap, i.e. the
  address wiring of MID's writes into H; its cost is MID's buffer traffic (n int32
  reads + n int8 writes, counted), plus ``perm_pj`` per element (default 0: no switch
  network in this tile; set it to model one).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from ..errors import FormatError

#: ISAAC/Saberi ADC energy per conversion (pJ) by resolution (bits), see the module doc.
ISAAC_ADC_PJ = {4: 0.79, 5: 0.99, 6: 1.20, 7: 1.42, 8: 1.67, 9: 1.97, 10: 2.38}


@dataclass(frozen=True)
class EnergyConfig:
    """Energy parameters (pJ) and the operand slicing of the analog CIM model.

    dac_bits / cell_bits: input bits per pulse / weight bits per cell (1, 2, 4 or 8).
    cols_per_adc: physical columns sharing one ADC (NeuroSim's ``numColMuxed`` = 8).
    adc_pj: energy per conversion by resolution (bits -> pJ; clamped below its smallest
    key, doubling per bit above its largest).
    cell_pj: per cell per input pulse; dac_pj: per fired row per input pulse;
    shift_add_pj: per ADC output; buffer_pj_per_byte: per byte read or written;
    perm_pj: per element moved by the run-time permutation (beyond its buffer traffic).
    """

    dac_bits: int = 1
    cell_bits: int = 1
    cols_per_adc: int = 8
    adc_pj: dict = field(default_factory=lambda: dict(ISAAC_ADC_PJ))
    cell_pj: float = 2.4e-3 / 8 * 100e-9 / (128 * 128) * 1e12
    dac_pj: float = 0.41667
    shift_add_pj: float = 0.021
    buffer_pj_per_byte: float = 20.45 / 32
    perm_pj: float = 0.0

    def __post_init__(self):
        for name in ("dac_bits", "cell_bits"):
            v = getattr(self, name)
            if v not in (1, 2, 4, 8):
                raise FormatError(f"{name}: {v!r} must be 1, 2, 4 or 8 (a slice of int8)")
        if not isinstance(self.cols_per_adc, int) or self.cols_per_adc < 1:
            raise FormatError(f"cols_per_adc: {self.cols_per_adc!r} must be an int >= 1")
        if not self.adc_pj or any(not isinstance(k, int) or k < 1 or v < 0
                                  for k, v in self.adc_pj.items()):
            raise FormatError(f"adc_pj: {self.adc_pj!r} must map bits >= 1 to pJ >= 0")
        for name in ("cell_pj", "dac_pj", "shift_add_pj", "buffer_pj_per_byte", "perm_pj"):
            if getattr(self, name) < 0:
                raise FormatError(f"{name}: {getattr(self, name)!r} must be >= 0")

    @property
    def pulses(self) -> int:
        """Input pulses per int8 activation."""
        return 8 // self.dac_bits

    @property
    def slices(self) -> int:
        """Physical columns (cells) per int8 weight."""
        return 8 // self.cell_bits

    @property
    def conversions_per_column(self) -> int:
        """ADC conversions per weight column read for one int8 input vector."""
        return self.pulses * self.slices

    def adc_bits(self, rows: int) -> int:
        """Bits to digitize losslessly a column sum over ``rows`` fired rows (module doc)."""
        if rows < 0:
            raise FormatError(f"rows: {rows} must be >= 0")
        top = rows * ((1 << self.dac_bits) - 1) * ((1 << self.cell_bits) - 1)
        return max(1, math.ceil(math.log2(top + 1)))

    def adc_energy(self, bits: int) -> float:
        """pJ per conversion at ``bits`` resolution."""
        lo, hi = min(self.adc_pj), max(self.adc_pj)
        if bits <= lo:
            return self.adc_pj[lo]
        if bits >= hi:
            return self.adc_pj[hi] * 2.0 ** (bits - hi)
        if bits in self.adc_pj:
            return self.adc_pj[bits]
        below = max(k for k in self.adc_pj if k < bits)
        above = min(k for k in self.adc_pj if k > bits)
        f = (bits - below) / (above - below)
        return self.adc_pj[below] + f * (self.adc_pj[above] - self.adc_pj[below])

    def as_dict(self) -> dict:
        d = asdict(self)
        d["adc_pj"] = {str(k): v for k, v in sorted(self.adc_pj.items())}
        return d


def adc_bits(rows: int, dac_bits: int = 1, cell_bits: int = 1) -> int:
    """:meth:`EnergyConfig.adc_bits` with the given slicing."""
    return EnergyConfig(dac_bits=dac_bits, cell_bits=cell_bits).adc_bits(rows)
