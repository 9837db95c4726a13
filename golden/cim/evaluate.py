"""The CIM engine as its paper evaluates it: arrays, utilization, footprint, FLOPs,
cycles, ADC resolution and energy per token, for each mapping of one matrix or a layer.

Mappings (:data:`MAPPINGS`):

* ``unfactored``: the dense ``n x n`` weight matrix itself on CIM, the paper's baseline:
  ``(n/m)^2`` tiles per matrix, each step fires all ``m`` rows of one tile and reads its
  ``m`` columns (accumulating over the input lines); no permutation.
* ``linear``, ``sparse`` (SparseMap), ``dense`` (DenseMap): the Monarch factors L and R
  as placed and scheduled by :func:`golden.cim.map_monarch`.

Per step the model takes the *fired rows* (row slots of the step x b), the *read
columns* (column slots x b) and, per read column, the fired rows holding a stored weight
(a cell the mapping programs: every cell of a linear or unfactored tile, the cells of the
placed b x b blocks for SparseMap/DenseMap). The largest of those per step sets the ADC
resolution the step needs (:meth:`golden.cim.energy.EnergyConfig.adc_bits`). Cycles are
the tile's cycle model (``golden.cim.cost_*`` with ``lanes = m / 8``, 8 columns per ADC;
the unfactored baseline is costed with the same instruction costs: INPUT, one full-width
STEP per tile, OUTPUT). Energy per token sums, per step, the cells fired, the DAC pulses,
the ADC conversions at the step's resolution, the shift-and-adds and the buffer traffic
(activation line read, accumulators read and written), plus per token the INPUT write,
the OUTPUT read and the run-time permutation (MID: accumulators read, H written).

A token goes through every matrix mapped (``matrices``): with K > 1 the figures are a
whole layer's (e.g. an MoE layer's 24 expert matrices held together).

``python -m golden.cim.paper`` prints the paper-claim table (:mod:`golden.cim.paper`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..errors import FormatError
from .config import CIMConfig, model_config
from .energy import EnergyConfig
from .execute import cost_input, cost_mid, cost_output, cost_step
from .mapper import Mapping, map_monarch

MAPPINGS = ("unfactored", "linear", "sparse", "dense")
LABELS = {"unfactored": "dense weights (unfactored n x n)", "linear": "Monarch, linear (naive)",
          "sparse": "Monarch, SparseMap", "dense": "Monarch, DenseMap"}
ENERGY_PARTS = ("array", "dac", "adc", "shift_add", "buffer", "permutation")


@dataclass(frozen=True)
class StepActivity:
    """What one step of a token fires (the quantities the ADC and energy models use)."""
    matrix: int
    stage: int               # 0 R, 1 L; the unfactored baseline: 0
    array: int
    fired_rows: int
    read_cols: int
    rows_per_col: int        # max over read columns of fired rows holding a stored weight
    cells: int               # fired (row, read column) cells holding a stored weight
    cycles: int


def monarch_steps(mp: Mapping, config: CIMConfig) -> list[StepActivity]:
    """Every step of one token through each of the mapping's matrices, in program order."""
    b, g, m = mp.b, mp.g, mp.array_size
    occ = mp.occupied()
    out = []
    for s in mp.steps:
        rows = [r for r in range(g) if s.row_mask >> r & 1]
        cols = [c for c in range(g) if s.col_mask >> c & 1]
        if mp.strategy == "linear":       # a dense factor tile: every cell is stored
            per_col = [len(rows) * b] * len(cols)
        else:
            per_col = [b * sum((r, c) in occ.get(s.array, ()) for r in rows) for c in cols]
        out.append(StepActivity(s.matrix, s.stage, s.array, len(rows) * b, len(cols) * b,
                                max(per_col), b * sum(per_col),
                                cost_step(s.col_mask, b, config)))
    return out


def unfactored_steps(n: int, m: int, matrices: int, config: CIMConfig) -> list[StepActivity]:
    """The baseline's steps: per matrix, one full tile per (output line, input line)."""
    t = n // m
    full = cost_step(1, m, config)       # one slot of m columns: all m / lanes groups
    return [StepActivity(k, 0, k * t * t + i * t + j, m, m, m, m * m, full)
            for k in range(matrices) for i in range(t) for j in range(t)]


@dataclass
class Evaluation:
    """One mapping of ``matrices`` n x n matrices on m x m arrays; per-token figures."""
    mapping: str
    n: int
    b: int
    array_size: int
    matrices: int
    lanes: int
    arrays: int
    utilization: float       # stored Monarch (or dense) weights / cells of the arrays used
    stored_bytes: int        # int8 weights programmed (linear: its dense factors, zeros too)
    macs: int                # MACs per token the arrays perform (stored cells fired)
    cycles: int              # per token (through every matrix), the tile's cycle model
    steps: int
    permutation_cycles: int  # of ``cycles``: the MIDs (run-time permutation P)
    adc_bits: int            # largest resolution any step needs
    adc_bits_steps: dict     # bits -> steps needing exactly that resolution
    conversions: int         # ADC conversions per token
    energy_pj: dict          # ENERGY_PARTS -> pJ per token
    unfactored_arrays: int
    unfactored_bytes: int
    unfactored_macs: int
    energy_config: dict = field(default_factory=dict)
    vs_unfactored: dict = field(default_factory=dict)   # filled by evaluate_all

    @property
    def label(self) -> str:
        return LABELS[self.mapping]

    @property
    def flops(self) -> int:
        return 2 * self.macs

    @property
    def energy_total_pj(self) -> float:
        return sum(self.energy_pj.values())

    @property
    def adc_share(self) -> float:
        return self.energy_pj["adc"] / self.energy_total_pj

    @property
    def array_reduction(self) -> float:
        """1 - arrays / arrays of the unfactored baseline (0.87 = "87 % fewer")."""
        return 1 - self.arrays / self.unfactored_arrays

    @property
    def footprint_reduction(self) -> float:
        """Unfactored weight bytes / bytes this mapping stores."""
        return self.unfactored_bytes / self.stored_bytes

    @property
    def flop_reduction(self) -> float:
        return self.unfactored_macs / self.macs

    def as_dict(self) -> dict:
        d = asdict(self)
        d["adc_bits_steps"] = {str(k): v for k, v in sorted(self.adc_bits_steps.items())}
        d.update(label=self.label, flops=self.flops, energy_total_pj=self.energy_total_pj,
                 adc_share=self.adc_share, array_reduction=self.array_reduction,
                 footprint_reduction=self.footprint_reduction,
                 flop_reduction=self.flop_reduction)
        return d


def _check(n, b, array_size, mapping, matrices):
    if mapping not in MAPPINGS:
        raise FormatError(f"mapping: {mapping!r} is not one of {MAPPINGS}")
    for name, v in (("n", n), ("b", b), ("array_size", array_size), ("matrices", matrices)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise FormatError(f"{name}: {v!r} must be an int >= 1")
    if b * b != n:
        raise FormatError(f"n: {n} != b*b = {b * b} (the tile's Monarch form has b blocks of b)")
    if n % array_size:
        raise FormatError(f"array_size: {array_size} must divide n = {n}")


def evaluate(n: int, b: int, array_size: int, mapping: str, *, matrices: int = 1,
             energy: EnergyConfig | None = None, config: CIMConfig | None = None) -> Evaluation:
    """Figures of one mapping (:data:`MAPPINGS`) of ``matrices`` n x n matrices.

    ``config``: the tile whose cycle model is used (default ``model_config``: lanes =
    m / 8); ``energy``: the energy parameters (default :class:`EnergyConfig`).
    """
    _check(n, b, array_size, mapping, matrices)
    energy = energy or EnergyConfig()
    m, K = array_size, matrices
    config = config or model_config(m, n)
    if config.m != m:
        raise FormatError(f"config: array_size {config.m} != {m}")
    t = n // m
    if mapping == "unfactored":
        steps = unfactored_steps(n, m, K, config)
        arrays, stored = K * t * t, K * n * n
        per_token = K * (cost_input(n, config) + cost_output(n, config))
        perm_cycles, util = 0, 1.0
    else:
        mp = map_monarch(n, b, m, mapping, matrices=K)
        steps = monarch_steps(mp, config)
        arrays = mp.arrays
        stored = arrays * m * m if mapping == "linear" else mp.weight_cells
        perm_cycles = K * cost_mid(n, b, config)
        per_token = K * (cost_input(n, config) + cost_output(n, config)) + perm_cycles
        util = mp.utilization
    e = energy
    parts = dict.fromkeys(ENERGY_PARTS, 0.0)
    hist: dict = {}
    conversions = 0
    for s in steps:
        bits = e.adc_bits(s.rows_per_col)
        conv = s.read_cols * e.conversions_per_column
        hist[bits] = hist.get(bits, 0) + 1
        conversions += conv
        parts["array"] += s.cells * e.conversions_per_column * e.cell_pj
        parts["dac"] += s.fired_rows * e.pulses * e.dac_pj
        parts["adc"] += conv * e.adc_energy(bits)
        parts["shift_add"] += conv * e.shift_add_pj
        # activation line (int8 per fired row) read; accumulators (int32) read and written
        parts["buffer"] += (s.fired_rows + 8 * s.read_cols) * e.buffer_pj_per_byte
    # per matrix: INPUT writes n int8, OUTPUT reads n int32
    parts["buffer"] += K * (n + 4 * n) * e.buffer_pj_per_byte
    if mapping != "unfactored":
        # MID: n int32 accumulators read, n int8 written into H through P
        parts["permutation"] += K * ((4 * n + n) * e.buffer_pj_per_byte + n * e.perm_pj)
    return Evaluation(
        mapping=mapping, n=n, b=b, array_size=m, matrices=K, lanes=config.lanes,
        arrays=arrays, utilization=util, stored_bytes=stored,
        macs=sum(s.cells for s in steps), cycles=per_token + sum(s.cycles for s in steps),
        steps=len(steps), permutation_cycles=perm_cycles, adc_bits=max(hist),
        adc_bits_steps=hist, conversions=conversions, energy_pj=parts,
        unfactored_arrays=K * t * t, unfactored_bytes=K * n * n, unfactored_macs=K * n * n,
        energy_config=e.as_dict())


def evaluate_all(n: int, b: int, array_size: int, *, matrices: int = 1,
                 energy: EnergyConfig | None = None,
                 config: CIMConfig | None = None) -> dict[str, Evaluation]:
    """:func:`evaluate` for every mapping, each with ``vs_unfactored`` ratios filled in:
    ``speedup`` (baseline cycles / cycles), ``energy_gain`` (baseline pJ / pJ),
    ``adc_bits_baseline`` (the baseline's resolution)."""
    out = {mp: evaluate(n, b, array_size, mp, matrices=matrices, energy=energy, config=config)
           for mp in MAPPINGS}
    base = out["unfactored"]
    for ev in out.values():
        ev.vs_unfactored = dict(speedup=base.cycles / ev.cycles,
                                energy_gain=base.energy_total_pj / ev.energy_total_pj,
                                adc_bits_baseline=base.adc_bits)
    return out
