"""The CIM mapper: places the L and R blocks of Monarch matrices on CIM arrays and
derives the controller's step schedule.

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
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import FormatError
from ..monarch import Monarch, check_shape
from .config import _int, _is_pow2

STRATEGIES = ("linear", "sparse", "dense")


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
