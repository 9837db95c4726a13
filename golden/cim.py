"""Engine 3 golden model: CIM mapping of Monarch weights, the controller's program, cycle model.

Past 500 lines: config, mapper, ISA, interpreter and cycle model in one module until
its split along those seams (open work).

One API serves the golden model, the RTL bench and the benchmark:

* :class:`CIMConfig` - the hardware parameters (also taken by ``hdl.cim.build``).
* :func:`map_monarch` - places the L and R blocks of one or more Monarch matrices on
  ``m x m`` CIM arrays with the ``"linear"``, ``"sparse"`` (SparseMap) or ``"dense"``
  (DenseMap) strategy and derives the step schedule.
* :func:`encode_program` / :func:`decode_program` - the controller's binary program
  (64-bit words, see "Program format" below and docs/cim.md).
* :func:`execute` - runs a program word by word exactly as the RTL does: same state,
  same checks (and error codes) on malformed programs, same per-instruction cycle
  counts; the RTL bench compares its outputs and cycle counts with it.
* :func:`token_cycles` / :func:`load_cycles` - the cycle model straight from a mapping
  (for shapes too large to encode or simulate).

Array model
-----------
An array is ``m x m`` int8 cells, rows are inputs (driven by activations), columns are
outputs. ``m`` is cut into ``g = m / b`` slots of ``b`` rows/columns, so a ``b x b`` block
occupies slot ``(row slot, col slot)``. A *step* activates a set of row slots of one
array with one activation line (``m`` int8 from the input buffer X in stage R or from the
permuted buffer H in stage L; row ``r`` always sees lane ``r`` of the line) and reads a
set of column slots; column ``c``'s dot product over the active rows goes to lane ``c``
of one accumulator line (set or accumulate). A read column sums *every* active row that
has a weight in it, so a step may only combine blocks whose columns see no other active
block: that is what limits DenseMap (below).

Buffers are indexed by element: line ``l`` holds elements ``l*m .. l*m+m-1``, and slot
``s`` of a line holds the ``b`` elements of "segment" ``l*g + s``.

Strategies (``n = b*b``, ``g = m / b``, lines per vector ``n / m``)
--------------------------------------------------------------------
``linear``: each factor stored as a dense ``n x n`` matrix (zeros included), tiled on
``(n/m)^2`` arrays; tile ``(i, j)`` maps input line j to output line i. Utilization
``1/b``; the dense unfactored layer (``dense_arrays``) would need half of these arrays.

``sparse`` (SparseMap): array ``a`` of a factor holds the ``g`` blocks of one line on its
main diagonal (slot ``(s, s)``). One step per array fires every row. Utilization ``b/m``.

``dense`` (DenseMap): the ``g`` blocks of a line form one *block diagonal* ``d``: the
block of row slot ``s`` sits in column slot ``(s + d) mod g``. Each array holds ``g``
diagonals (all ``g^2`` slots), so utilization approaches 100%. Rules:

* diagonal ``d`` rotates its output by ``d`` slots: stage-R block ``k = l*g + s`` writes
  segment ``l*g + (s + d) mod g`` of the accumulator line ``l``;
* the stage-R rotation is folded into L: row ``j`` of every L block is stored at row
  ``kt(j)``, the segment where R block ``j``'s outputs landed;
* the stage-L rotation is cancelled by R ("R placed at -d"): output ``c`` of every R block
  is stored at column ``sigma(c) = l*g + (c mod g - d_L(l)) mod g`` (``l = c // g``,
  ``d_L(l)`` the diagonal of L's line ``l``), so L block ``c`` finds its input in H
  segment ``sigma(c)`` i.e. row slot ``(c - d_L) mod g``, and its diagonal ``d_L`` brings
  the result back to column slot ``c mod g``: L's outputs come out in natural order.
* schedule: a step may fire several blocks of one diagonal only if no active row slot
  has another occupied block in a read column slot. In a full array every pair conflicts
  (one block per step, ``g`` steps per diagonal); partially filled arrays pack
  non-conflicting blocks into one step (greedy colouring).

Utilization (``Mapping.utilization``) is weight cells / cells of the arrays used, over
everything the mapping holds: L and R of all ``matrices`` matrices. ``util_bound`` is the
most any placement of the same weights can reach (``ceil(weights / m^2)`` arrays): below
100 % for one matrix whenever ``2 n b < m^2``. DenseMap hands diagonals out in order, so
only its last array can be partly filled and it always reaches the bound.

Program format (64-bit words; fields LSB first; reserved bits must be 0)
------------------------------------------------------------------------
``[3:0]`` opcode:

==========  =====================================================================
1 CFG       [7:4] log2 b, [9:8] mid kind, [25:10] mid mult, [30:26] mid shift,
            [32:31] out kind, [48:33] out mult, [53:49] out shift (kind: 0 int32,
            1 int8_sat, 2 requant; mid must be 1 or 2). Sets n = b*b.
2 LOADW     [13:4] array, [21:14] first column, [30:22] column count (1..m); followed
            by count * m/8 data words: column c, rows 8w..8w+7 in word w (row 8w at
            bits [7:0]).
3 INPUT     read n/lanes activation beats into X (starts a token: stage R).
4 STEP      [13:4] array, [21:14] activation line, [29:22] accumulator line,
            [45:30] row-slot mask, [61:46] column-slot mask, [62] accumulate
            (0: set the column's accumulator, 1: add to it).
5 MID       requantize the accumulators with ``mid``, permute by P into H (stage L).
6 OUTPUT    stream n/lanes beats of out(accumulator) (ends the token).
==========  =====================================================================

A malformed program sets a sticky error code (:data:`ERRORS`) and the controller
discards everything until ``clear``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .errors import FormatError
from .monarch import Monarch, check_shape, fold_input
from .numerics import OutMode, apply_out

STRATEGIES = ("linear", "sparse", "dense")

# ---------------------------------------------------------------------- ISA constants

OP_CFG, OP_LOADW, OP_INPUT, OP_STEP, OP_MID, OP_OUTPUT = 1, 2, 3, 4, 5, 6
OPCODES = {OP_CFG: "CFG", OP_LOADW: "LOADW", OP_INPUT: "INPUT", OP_STEP: "STEP",
           OP_MID: "MID", OP_OUTPUT: "OUTPUT"}

#: Sticky error codes of the controller (``status.error_code``).
ERRORS = {0: "OK", 1: "BAD_OPCODE", 2: "BAD_ARRAY", 3: "BAD_COLUMN", 4: "BAD_LINE",
          5: "BAD_MASK", 6: "BAD_CFG", 7: "BAD_SEQUENCE", 8: "UNWRITTEN"}
ERROR_CODES = {v: k for k, v in ERRORS.items()}

#: Bits used by each opcode (everything above must be zero).
USED_BITS = {OP_CFG: 54, OP_LOADW: 31, OP_INPUT: 4, OP_STEP: 63, OP_MID: 4, OP_OUTPUT: 4}

ARRAY_BITS, LINE_BITS, MASK_BITS = 10, 8, 16
MAX_ARRAYS, MAX_LINES, MAX_SLOTS = 1 << ARRAY_BITS, 1 << LINE_BITS, MASK_BITS

PHASE_IDLE, PHASE_R, PHASE_L = 0, 1, 2


def _field(word: int, lo: int, width: int) -> int:
    return (word >> lo) & ((1 << width) - 1)


def _is_pow2(v: int) -> bool:
    return v >= 1 and v & (v - 1) == 0


def _int(v, name: str) -> int:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise FormatError(f"{name}: expected an integer, got {v!r}")
    return int(v)


# ---------------------------------------------------------------------- configuration

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
    """

    array_size: int = 64
    arrays: int = 64
    lanes: int = 8
    n_max: int = 1024

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
        if self.b_min > self.b_max:
            raise FormatError(f"n_max: {nm} too small for array_size {m}: no block size b "
                              f"with m <= b*b <= n_max and m/b <= {MAX_SLOTS}")

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


# ---------------------------------------------------------------------- mapping

@dataclass(frozen=True)
class Block:
    """One b x b block on an array: cells [row0, row0+b) x [col0, col0+b)."""
    matrix: int
    factor: str      # "R" (stage 0) or "L" (stage 1)
    block: int
    array: int
    row0: int
    col0: int


@dataclass(frozen=True)
class Step:
    """One controller step (see the module docstring)."""
    matrix: int
    stage: int       # 0: R (reads X), 1: L (reads H)
    array: int
    act_line: int
    acc_line: int
    row_mask: int
    col_mask: int
    acc: bool = False


@dataclass(frozen=True, eq=False)
class Mapping:
    """A placement and step schedule of ``matrices`` Monarch matrices of size n."""
    n: int
    b: int
    array_size: int
    strategy: str
    matrices: int
    arrays: int
    blocks: tuple            # Block, one per (matrix, factor, block)
    steps: tuple             # Step, grouped by matrix then stage
    r_pos: np.ndarray        # (matrices, b): segment where R block k's outputs land (kt)
    r_col: np.ndarray        # (matrices, b): column of R output c inside its block (sigma)
    tiles: tuple = ()        # linear only: (matrix, factor, ti, tj, array)

    @property
    def g(self) -> int:
        return self.array_size // self.b

    @property
    def weight_cells(self) -> int:
        return self.matrices * 2 * self.n * self.b

    @property
    def utilization(self) -> float:
        """Cells holding a Monarch weight / cells of the arrays used.

        Measured over everything the mapping holds: both factors (L and R) of all
        ``matrices`` Monarch matrices, on all the arrays they occupy.
        """
        return self.weight_cells / (self.arrays * self.array_size ** 2)

    @property
    def min_arrays(self) -> int:
        """Fewest arrays any placement of these weights needs: ceil(weights / m^2)."""
        return -(-self.weight_cells // self.array_size ** 2)

    @property
    def util_bound(self) -> float:
        """Highest utilization any mapping of the same weights on m x m arrays can reach
        (``weight_cells / (min_arrays * m^2)``): one n = 256 matrix (8192 weights) fills at
        most 50 % of one 128 x 128 array, whatever the strategy."""
        return self.weight_cells / (self.min_arrays * self.array_size ** 2)

    @property
    def dense_arrays(self) -> int:
        """Arrays an unfactored dense n x n layer needs (per matrix, summed)."""
        t = -(-self.n // self.array_size)
        return self.matrices * t * t

    def steps_for(self, matrix: int, stage: int) -> list:
        return [s for s in self.steps if s.matrix == matrix and s.stage == stage]

    def placement(self) -> list[dict]:
        """Which block sits where: dicts with matrix, factor, block, array, rows, cols."""
        return [dict(matrix=k.matrix, factor=k.factor, block=k.block, array=k.array,
                     rows=(k.row0, k.row0 + self.b), cols=(k.col0, k.col0 + self.b))
                for k in self.blocks]

    def occupied(self) -> dict:
        """array -> set of (row slot, col slot) holding a block (any matrix/factor)."""
        occ: dict = {}
        for k in self.blocks:
            occ.setdefault(k.array, set()).add((k.row0 // self.b, k.col0 // self.b))
        return occ

    def summary(self) -> dict:
        return dict(n=self.n, b=self.b, array_size=self.array_size, strategy=self.strategy,
                    matrices=self.matrices, arrays=self.arrays,
                    utilization=self.utilization, util_bound=self.util_bound,
                    steps=len(self.steps), dense_arrays=self.dense_arrays)


def _check_mapping_args(n, b, array_size, strategy, matrices):
    n, b = check_shape(n, b)
    m = _int(array_size, "array_size")
    if not _is_pow2(m):
        raise FormatError(f"array_size: {m} is not a power of two (slots and lines are "
                          "bit fields in the hardware)")
    if not _is_pow2(b):
        raise FormatError(f"b: {b} is not a power of two (the run-time permutation P is a "
                          "swap of the index's two log2(b)-bit halves)")
    if b > m:
        raise FormatError(f"b: {b} exceeds array_size {m}: a block must fit in one array")
    if n < m:
        raise FormatError(f"array_size: {m} exceeds n = {n}: a vector must fill at least "
                          "one array line")
    if strategy not in STRATEGIES:
        raise FormatError(f"strategy: {strategy!r} is not one of {STRATEGIES}")
    k = _int(matrices, "matrices")
    if k < 1:
        raise FormatError(f"matrices: must be >= 1, got {k}")
    return n, b, m, k


def map_monarch(n: int, b: int, array_size: int, strategy: str, *, matrices: int = 1) -> Mapping:
    """Place ``matrices`` Monarch matrices (n = b*b) on ``array_size``-square arrays.

    Returns a :class:`Mapping` with the block placement, arrays used, utilization and
    step schedule (per matrix: all stage-R steps, then all stage-L steps).
    """
    n, b, m, K = _check_mapping_args(n, b, array_size, strategy, matrices)
    g = m // b
    lines = n // m
    blocks: list[Block] = []
    steps: list[Step] = []
    tiles: list = []
    r_pos = np.tile(np.arange(b), (K, 1))
    r_col = np.tile(np.arange(b), (K, 1))
    full = (1 << g) - 1

    if strategy == "linear":
        a = 0
        tile_array = {}
        for mat in range(K):
            for f in ("R", "L"):
                for ti in range(lines):
                    for tj in range(lines):
                        tile_array[mat, f, ti, tj] = a
                        tiles.append((mat, f, ti, tj, a))
                        a += 1
        for mat in range(K):
            for f in ("R", "L"):
                for k in range(b):
                    t = (k * b) // m
                    off = (k * b) % m
                    blocks.append(Block(mat, f, k, tile_array[mat, f, t, t], off, off))
            for stage, f in ((0, "R"), (1, "L")):
                for ti in range(lines):
                    for tj in range(lines):
                        steps.append(Step(mat, stage, tile_array[mat, f, ti, tj], tj, ti,
                                          full, full, tj > 0))
        arrays = a

    elif strategy == "sparse":
        a = 0
        line_array = {}
        for mat in range(K):
            for f in ("R", "L"):
                for line in range(lines):
                    line_array[mat, f, line] = a
                    for s in range(g):
                        blocks.append(Block(mat, f, line * g + s, a, s * b, s * b))
                    a += 1
        for mat in range(K):
            for stage, f in ((0, "R"), (1, "L")):
                for line in range(lines):
                    steps.append(Step(mat, stage, line_array[mat, f, line], line, line,
                                      full, full, False))
        arrays = a

    else:  # dense
        diag = {}     # (mat, f, line) -> (array, d)
        idx = 0
        for mat in range(K):
            for f in ("R", "L"):
                for line in range(lines):
                    diag[mat, f, line] = (idx // g, idx % g)
                    idx += 1
        arrays = -(-idx // g)
        for mat in range(K):
            for line in range(lines):
                a, d = diag[mat, "R", line]
                for s in range(g):
                    k = line * g + s
                    cs = (s + d) % g
                    blocks.append(Block(mat, "R", k, a, s * b, cs * b))
                    r_pos[mat, k] = line * g + cs
                a, d = diag[mat, "L", line]
                for j in range(g):
                    c = line * g + j
                    rs = (j - d) % g
                    blocks.append(Block(mat, "L", c, a, rs * b, j * b))
                    r_col[mat, c] = line * g + rs
        occ: dict = {}
        for k in blocks:
            occ.setdefault(k.array, set()).add((k.row0 // b, k.col0 // b))
        for mat in range(K):
            for stage, f in ((0, "R"), (1, "L")):
                for line in range(lines):
                    a, d = diag[mat, f, line]
                    cells = [(s, (s + d) % g) for s in range(g)]
                    for group in _colour(cells, occ[a]):
                        rm = sum(1 << s for s, _ in group)
                        cm = sum(1 << c for _, c in group)
                        steps.append(Step(mat, stage, a, line, line, rm, cm, False))

    return Mapping(n, b, m, strategy, K, arrays, tuple(blocks), tuple(steps),
                   r_pos, r_col, tuple(tiles))


def _colour(cells, occupied) -> list[list]:
    """Greedy partition of one diagonal's blocks into conflict-free steps.

    Blocks (s1, c1) and (s2, c2) conflict when (s2, c1) or (s1, c2) holds another block:
    firing both rows would add that block's products into a column being read.
    """
    groups: list[list] = []
    for cell in cells:
        for grp in groups:
            if all((o[0], cell[1]) not in occupied and (cell[0], o[1]) not in occupied
                   for o in grp):
                grp.append(cell)
                break
        else:
            groups.append([cell])
    return groups


def array_weights(mapping: Mapping, monarchs: Sequence[Monarch]) -> dict:
    """array -> (m, m) int8 cell contents [row = input, col = output] for a mapping."""
    monarchs = _as_list(monarchs, mapping)
    m, b = mapping.array_size, mapping.b
    # every cell not covered by a block is zero (for linear: the zero tiles of the dense
    # factors, which the naive mapping stores too)
    W = {a: np.zeros((m, m), dtype=np.int8) for a in range(mapping.arrays)}
    for blk in mapping.blocks:
        mon = monarchs[blk.matrix]
        w = W[blk.array]
        if blk.factor == "R":
            sig = mapping.r_col[blk.matrix]
            # cell [row0 + e, col0 + sigma(c) % b] = R[k][c, e]
            cols = blk.col0 + (sig % b)
            w[blk.row0:blk.row0 + b, cols] = mon.R[blk.block].T
        else:
            kt = mapping.r_pos[blk.matrix]
            rows = blk.row0 + (kt % b)
            # cell [row0 + kt(j) % b, col0 + a] = L[c][a, j]
            w[rows, blk.col0:blk.col0 + b] = mon.L[blk.block].T
    return W


def _as_list(monarchs, mapping: Mapping) -> list:
    if isinstance(monarchs, Monarch):
        monarchs = [monarchs]
    monarchs = list(monarchs)
    if len(monarchs) != mapping.matrices:
        raise FormatError(f"monarchs: mapping has {mapping.matrices} matrices, got "
                          f"{len(monarchs)}")
    for i, mon in enumerate(monarchs):
        if not isinstance(mon, Monarch):
            raise FormatError(f"monarchs[{i}]: expected a Monarch, got {type(mon).__name__}")
        if mon.b != mapping.b:
            raise FormatError(f"monarchs[{i}]: b = {mon.b}, mapping has b = {mapping.b}")
    return monarchs


# ---------------------------------------------------------------------- encoding

def enc_cfg(log2b: int, mid: OutMode, out: OutMode) -> int:
    return (OP_CFG | log2b << 4 | mid.code << 8 | mid.mult << 10 | mid.shift << 26
            | out.code << 31 | out.mult << 33 | out.shift << 49)


def enc_loadw(array: int, col: int, ncols: int) -> int:
    return OP_LOADW | array << 4 | col << 14 | ncols << 22


def enc_step(s: Step) -> int:
    return (OP_STEP | s.array << 4 | s.act_line << 14 | s.acc_line << 22 | s.row_mask << 30
            | s.col_mask << 46 | int(s.acc) << 62)


def column_words(col: np.ndarray) -> list[int]:
    """m int8 weights of one column -> m/8 data words (row 8w at bits [7:0] of word w)."""
    raw = np.asarray(col, dtype=np.int8).view(np.uint8)
    return [int.from_bytes(bytes(raw[i:i + 8]), "little") for i in range(0, len(raw), 8)]


@dataclass(frozen=True, eq=False)
class Program:
    """An encoded program and what it expects on its streams."""
    words: np.ndarray        # uint64
    config: CIMConfig
    mapping: Mapping
    tokens: tuple            # tokens per matrix, in program order
    n: int

    @property
    def beats_per_token(self) -> int:
        return self.n // self.config.lanes

    def __len__(self):
        return len(self.words)


def encode_program(mapping: Mapping, monarchs, tokens, config: CIMConfig) -> Program:
    """Binary program: load every used array, then per matrix a CFG and its tokens.

    ``tokens``: int (same count for every matrix) or one count per matrix. Each token
    section is ``INPUT, stage-R STEPs, MID, stage-L STEPs, OUTPUT``.
    """
    monarchs = _as_list(monarchs, mapping)
    if not isinstance(config, CIMConfig):
        raise FormatError(f"config: expected a CIMConfig, got {type(config).__name__}")
    if mapping.array_size != config.m:
        raise FormatError(f"array_size: mapping uses {mapping.array_size}, config has "
                          f"{config.m}")
    config.check_b(mapping.b)
    if mapping.n > config.n_max:
        raise FormatError(f"n: {mapping.n} exceeds the config's n_max {config.n_max}")
    if mapping.arrays > config.arrays:
        raise FormatError(f"arrays: the {mapping.strategy} mapping needs {mapping.arrays} "
                          f"arrays, the config has {config.arrays}")
    if isinstance(tokens, (int, np.integer)) and not isinstance(tokens, bool):
        tokens = [int(tokens)] * mapping.matrices
    tokens = [_int(t, "tokens") for t in tokens]
    if len(tokens) != mapping.matrices or any(t < 0 for t in tokens):
        raise FormatError(f"tokens: expected {mapping.matrices} counts >= 0, got {tokens}")
    m = config.m
    words: list[int] = []
    W = array_weights(mapping, monarchs)
    for a in range(mapping.arrays):
        words.append(enc_loadw(a, 0, m))
        for c in range(m):
            words += column_words(W[a][:, c])
    log2b = mapping.b.bit_length() - 1
    for mat, mon in enumerate(monarchs):
        if not tokens[mat]:
            continue
        words.append(enc_cfg(log2b, mon.mid_mode, mon.out_mode))
        r_steps = [enc_step(s) for s in mapping.steps_for(mat, 0)]
        l_steps = [enc_step(s) for s in mapping.steps_for(mat, 1)]
        for _ in range(tokens[mat]):
            words += [OP_INPUT, *r_steps, OP_MID, *l_steps, OP_OUTPUT]
    return Program(np.array(words, dtype=np.uint64), config, mapping, tuple(tokens), mapping.n)


def pack_inputs(xs: Sequence[np.ndarray], b: int, config: CIMConfig) -> list[int]:
    """Activation beats for a list of natural-order int8 vectors (folds the leading P)."""
    beats: list[int] = []
    p = config.lanes
    for x in xs:
        x = np.asarray(x)
        if x.dtype != np.int8 or x.shape != (b * b,):
            raise FormatError(f"x: expected an int8 vector of length {b * b}, got "
                              f"{x.dtype} {x.shape}")
        raw = fold_input(x, b).view(np.uint8)
        beats += [int.from_bytes(bytes(raw[i:i + p]), "little") for i in range(0, len(raw), p)]
    return beats


def unpack_outputs(beats: Sequence[int], n: int, config: CIMConfig) -> np.ndarray:
    """Output beats -> (tokens, n) int64 values in hardware (stage-L) order."""
    p = config.lanes
    vals = []
    for beat in beats:
        for i in range(p):
            v = (int(beat) >> (32 * i)) & 0xFFFFFFFF
            vals.append(v - (1 << 32) if v >> 31 else v)
    a = np.array(vals, dtype=np.int64)
    if a.size % n:
        raise FormatError(f"beats: {len(beats)} beats do not make whole vectors of {n}")
    return a.reshape(-1, n)


# ---------------------------------------------------------------------- decoding

@dataclass(frozen=True)
class Instr:
    index: int               # word index of the header
    op: str
    fields: dict


def decode_word(word: int) -> Instr:
    """Static decode of one instruction header (no state checks)."""
    word = int(word)
    op = word & 0xF
    if op not in OPCODES:
        return Instr(-1, "BAD", dict(word=word))
    name = OPCODES[op]
    f: dict = {}
    if op == OP_CFG:
        f = dict(log2b=_field(word, 4, 4), mid_kind=_field(word, 8, 2),
                 mid_mult=_field(word, 10, 16), mid_shift=_field(word, 26, 5),
                 out_kind=_field(word, 31, 2), out_mult=_field(word, 33, 16),
                 out_shift=_field(word, 49, 5))
    elif op == OP_LOADW:
        f = dict(array=_field(word, 4, 10), col=_field(word, 14, 8), ncols=_field(word, 22, 9))
    elif op == OP_STEP:
        f = dict(array=_field(word, 4, 10), act_line=_field(word, 14, 8),
                 acc_line=_field(word, 22, 8), row_mask=_field(word, 30, 16),
                 col_mask=_field(word, 46, 16), acc=_field(word, 62, 1))
    f["reserved"] = word >> USED_BITS[op]
    return Instr(-1, name, f)


def decode_program(words, config: CIMConfig) -> list[Instr]:
    """Instruction listing of a program (data words skipped); stops at an unknown opcode."""
    out = []
    i = 0
    words = [int(w) for w in words]
    while i < len(words):
        ins = decode_word(words[i])
        out.append(Instr(i, ins.op, ins.fields))
        if ins.op == "BAD":
            break
        i += 1
        if ins.op == "LOADW":
            i += ins.fields["ncols"] * config.words_per_column
    return out


# ---------------------------------------------------------------------- execution

def step_groups(col_mask: int, b: int, config: CIMConfig) -> int:
    """Column groups of ``lanes`` columns a step visits (its compute cycles)."""
    p, m = config.lanes, config.m
    n = 0
    for j in range(m // p):
        lo, hi = j * p // b, (j * p + p - 1) // b
        if any(col_mask >> s & 1 for s in range(lo, hi + 1)):
            n += 1
    return n


# Per-instruction cycle costs (fetch of the header to fetch of the next instruction),
# measured on the RTL with no stalls and asserted equal by the cocotb bench.
def cost_cfg(config) -> int:
    return 1


def cost_loadw(ncols: int, config) -> int:
    return 1 + ncols * config.words_per_column


def cost_input(n: int, config) -> int:
    return 1 + n // config.lanes


def cost_step(col_mask: int, b: int, config) -> int:
    return 2 + step_groups(col_mask, b, config)


def cost_mid(n: int, b: int, config) -> int:
    return 1 + (n // config.m) * (1 + b)


def cost_output(n: int, config) -> int:
    return 2 + n // config.lanes


@dataclass
class ExecResult:
    outputs: list            # per OUTPUT: (n,) int64 values in hardware order
    cycles: list             # per instruction: (word index, op, cycles)
    error: str = "OK"
    error_index: int = -1    # word index of the offending instruction
    steps: int = 0

    @property
    def error_code(self) -> int:
        return ERROR_CODES[self.error]

    @property
    def total_cycles(self) -> int:
        return sum(c for _, _, c in self.cycles)


def _wrap32(a: np.ndarray) -> np.ndarray:
    return ((a.astype(np.int64) + (1 << 31)) % (1 << 32)) - (1 << 31)


def execute(words, config: CIMConfig, act_beats: Sequence[int] = ()) -> ExecResult:
    """Run a program exactly as the controller does (state, checks, cycles).

    Stops at the first malformed instruction with its error code (the hardware then
    discards everything until ``clear``). Weights start at zero.
    """
    m, p, A = config.m, config.lanes, config.arrays
    words = [int(w) for w in words]
    beats = list(act_beats)
    W = np.zeros((A, m, m), dtype=np.int8)
    X = np.zeros(config.n_max, dtype=np.int8)
    H = np.zeros(config.n_max, dtype=np.int8)
    acc = np.zeros(config.n_max, dtype=np.int64)
    written: set = set()
    phase, cfg = PHASE_IDLE, None
    res = ExecResult([], [])
    i = 0
    bi = 0

    def fail(code: str, idx: int):
        res.error, res.error_index = code, idx
        return res

    while i < len(words):
        word, idx = words[i], i
        op = word & 0xF
        if op not in OPCODES or word >> USED_BITS[op]:
            return fail("BAD_OPCODE", idx)
        ins = decode_word(word).fields
        i += 1
        if op == OP_CFG:
            if phase != PHASE_IDLE:
                return fail("BAD_SEQUENCE", idx)
            b = 1 << ins["log2b"]
            ok = (config.b_min <= b <= config.b_max and ins["mid_kind"] in (1, 2)
                  and ins["out_kind"] in (0, 1, 2))
            for k in ("mid", "out"):
                kind, mult, shift = ins[f"{k}_kind"], ins[f"{k}_mult"], ins[f"{k}_shift"]
                if kind == 2 and shift == 0:
                    ok = False
                if kind in (0, 1) and (mult or shift):
                    ok = False
            if not ok:
                return fail("BAD_CFG", idx)
            kinds = {0: "int32", 1: "int8_sat"}
            mid = (OutMode("requant", ins["mid_mult"], ins["mid_shift"]) if ins["mid_kind"] == 2
                   else OutMode(kinds[ins["mid_kind"]]))
            out = (OutMode("requant", ins["out_mult"], ins["out_shift"]) if ins["out_kind"] == 2
                   else OutMode(kinds[ins["out_kind"]]))
            cfg = dict(b=b, n=b * b, g=m // b, mid=mid, out=out)
            res.cycles.append((idx, "CFG", cost_cfg(config)))
        elif op == OP_LOADW:
            if phase != PHASE_IDLE:
                return fail("BAD_SEQUENCE", idx)
            if ins["array"] >= A:
                return fail("BAD_ARRAY", idx)
            c0, nc = ins["col"], ins["ncols"]
            if nc == 0 or c0 + nc > m:
                return fail("BAD_COLUMN", idx)
            need = nc * config.words_per_column
            data = words[i:i + need]
            if len(data) < need:
                raise FormatError(f"words: LOADW at word {idx} needs {need} data words, "
                                  f"the program ends after {len(data)}")
            i += need
            for c in range(nc):
                raw = b"".join(w.to_bytes(8, "little") for w in
                               data[c * config.words_per_column:(c + 1) * config.words_per_column])
                W[ins["array"], :, c0 + c] = np.frombuffer(raw, dtype=np.int8)
            res.cycles.append((idx, "LOADW", cost_loadw(nc, config)))
        elif op == OP_INPUT:
            if phase != PHASE_IDLE or cfg is None:
                return fail("BAD_SEQUENCE", idx)
            n = cfg["n"]
            need = n // p
            if bi + need > len(beats):
                raise FormatError(f"act_beats: INPUT at word {idx} needs {need} beats, only "
                                  f"{len(beats) - bi} left")
            raw = b"".join(int(x).to_bytes(p, "little") for x in beats[bi:bi + need])
            bi += need
            X[:n] = np.frombuffer(raw, dtype=np.int8)
            written.clear()
            phase = PHASE_R
            res.cycles.append((idx, "INPUT", cost_input(n, config)))
        elif op == OP_STEP:
            if phase not in (PHASE_R, PHASE_L):
                return fail("BAD_SEQUENCE", idx)
            if ins["array"] >= A:
                return fail("BAD_ARRAY", idx)
            n, b, g = cfg["n"], cfg["b"], cfg["g"]
            lines = n // m
            if ins["act_line"] >= lines or ins["acc_line"] >= lines:
                return fail("BAD_LINE", idx)
            rm, cm = ins["row_mask"], ins["col_mask"]
            if rm == 0 or cm == 0 or rm >> g or cm >> g:
                return fail("BAD_MASK", idx)
            line = ins["acc_line"]
            slots = [line * g + s for s in range(g) if cm >> s & 1]
            if ins["acc"] and any(s not in written for s in slots):
                return fail("UNWRITTEN", idx)
            src = X if phase == PHASE_R else H
            act = src[ins["act_line"] * m:(ins["act_line"] + 1) * m].astype(np.int64)
            rows = np.repeat([(rm >> s) & 1 for s in range(g)], b).astype(bool)
            dots = (act * rows) @ W[ins["array"]].astype(np.int64)      # (m,) per column
            cols = np.repeat([(cm >> s) & 1 for s in range(g)], b).astype(bool)
            base = acc[line * m:(line + 1) * m]
            new = np.where(cols, _wrap32((base if ins["acc"] else 0) + dots), base)
            acc[line * m:(line + 1) * m] = new
            written.update(slots)
            res.steps += 1
            res.cycles.append((idx, "STEP", cost_step(cm, b, config)))
        elif op == OP_MID:
            if phase != PHASE_R:
                return fail("BAD_SEQUENCE", idx)
            n, b = cfg["n"], cfg["b"]
            if len(written) != b:
                return fail("UNWRITTEN", idx)
            j = np.arange(n)
            H[(j % b) * b + j // b] = apply_out(acc[:n], cfg["mid"])
            written.clear()
            phase = PHASE_L
            res.cycles.append((idx, "MID", cost_mid(n, b, config)))
        else:  # OUTPUT
            if phase != PHASE_L:
                return fail("BAD_SEQUENCE", idx)
            n, b = cfg["n"], cfg["b"]
            if len(written) != b:
                return fail("UNWRITTEN", idx)
            res.outputs.append(apply_out(acc[:n], cfg["out"]).astype(np.int64))
            written.clear()
            phase = PHASE_IDLE
            res.cycles.append((idx, "OUTPUT", cost_output(n, config)))
    return res


# ---------------------------------------------------------------------- cycle model

def load_cycles(mapping: Mapping, config: CIMConfig) -> int:
    """Cycles to load every used array (one LOADW of all m columns per array)."""
    return mapping.arrays * cost_loadw(config.m, config)


def token_cycles(mapping: Mapping, config: CIMConfig, matrix: int = 0) -> int:
    """Cycles of one token section: INPUT, R steps, MID, L steps, OUTPUT."""
    n, b = mapping.n, mapping.b
    t = cost_input(n, config) + cost_mid(n, b, config) + cost_output(n, config)
    for s in mapping.steps:
        if s.matrix == matrix:
            t += cost_step(s.col_mask, b, config)
    return t


def program_cycles(mapping: Mapping, config: CIMConfig, tokens) -> int:
    """Total cycles of :func:`encode_program`'s program (no stalls)."""
    if isinstance(tokens, (int, np.integer)):
        tokens = [int(tokens)] * mapping.matrices
    total = load_cycles(mapping, config)
    for mat, t in enumerate(tokens):
        if t:
            total += cost_cfg(config) + t * token_cycles(mapping, config, mat)
    return total


def model_config(array_size: int, n: int, arrays: int = MAX_ARRAYS) -> CIMConfig:
    """The benchmark's config for shapes not simulated: 8 columns per ADC (lanes = m/8)."""
    return CIMConfig(array_size=array_size, arrays=min(arrays, MAX_ARRAYS),
                     lanes=max(1, array_size // 8), n_max=max(n, array_size))


def run_mapping(mapping: Mapping, monarchs, xs: Sequence[np.ndarray],
                config: CIMConfig | None = None) -> tuple[list, ExecResult]:
    """Encode + execute ``xs`` through matrix 0..K-1 (len(xs) tokens each, same xs).

    Returns the natural-order results ``y`` (one (n,) array per matrix and token, matrix
    major) and the :class:`ExecResult`. Used by the pure-Python tests of every strategy.
    """
    monarchs = _as_list(monarchs, mapping)
    if config is None:
        config = CIMConfig(array_size=mapping.array_size, arrays=max(1, mapping.arrays),
                           lanes=max(1, mapping.array_size // 8),
                           n_max=max(mapping.n, mapping.array_size))
    prog = encode_program(mapping, monarchs, len(xs), config)
    beats = pack_inputs(list(xs) * mapping.matrices, mapping.b, config)
    res = execute(prog.words, config, beats)
    if res.error != "OK":
        raise FormatError(f"program: {res.error} at word {res.error_index}")
    b = mapping.b
    ys = [np.asarray(z)[((np.arange(b * b) % b) * b + np.arange(b * b) // b)]
          for z in res.outputs]
    return ys, res
