"""Monarch (block-diagonal) weights: format, bit-exact factored matmul, projection, counts.

Convention
----------
``n = b * b``. ``P`` is the fixed "transpose" permutation of ``n`` indices::

    p(i) = (i % b) * b + i // b          (P x)[i] = x[p(i)]

i.e. view a length-n vector as a b x b matrix (row-major) and transpose it. ``P`` is
an involution (``p(p(i)) = i``), so ``P = P^-1 = P^T``; when ``b`` is a power of two,
``p`` swaps the high and low ``log2 b`` bits of the index (a wiring-only operation).

``L`` and ``R`` are block-diagonal with ``b`` blocks of ``b x b`` int8, stored as
``(b, b, b)`` arrays ``L[k][out, in]``, ``R[k][out, in]``: block ``k`` maps elements
``k*b .. k*b+b-1`` of its input to the same range of its output. The Monarch matrix is::

    M = P L P R P           y = M x = P(L(P(R(P x))))

so entry ``M[a*b + c, e*b + j] = L[c][a, j] * R[j][c, e]``: every entry is one product,
and the ``(c, j)`` slice of ``M`` is the rank-1 outer product ``L[c][:, j] R[j][c, :]``
(which is what :func:`project` exploits).

Numerics (the contract the RTL of Engine 3 implements bit for bit)::

    xp = P x                                   int8   (folded: see below)
    u  = R xp        per block, int32 sums     int32  stage R
    h  = mid(u)      int8_sat or requant       int8   <- the only requantization
    hp = P h                                   int8   the run-time permutation
    v  = L hp        per block, int32 sums     int32  stage L
    z  = out(v)      int32 / int8_sat / requant       the final output mode
    y  = P z

Requantization happens exactly once, on the int32 outputs of stage R, before the middle
permutation (requantization is elementwise, so it commutes with P; the hardware applies
it while it moves the stage-R accumulators through P into the stage-L input buffer).

Folding: ``P`` is an involution, so in a chain of Monarch layers
``... P L2 P R2 P . act(P L1 P R1 P x)`` the trailing ``P`` of one layer and the leading
``P`` of the next cancel (the elementwise activation commutes with P). Only the middle
``P`` of each layer remains at run time. For a single layer the host applies the outer
two (``fold_input``/``unfold_output``: free index reorderings in software); the hardware
streams ``xp`` in and ``z`` out and applies only the middle ``P``.

Per token the factored form costs ``2 n b`` MACs and stores ``2 n b`` weights vs ``n^2``
for the dense matrix: a reduction of ``b / 2`` (8x at n=256, 16x at 1024, 32x at 4096).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import FormatError
from .numerics import MAX_K, OutMode, apply_out, parse_out


def _check_b(b, field_name: str = "b") -> int:
    if isinstance(b, (bool, np.bool_)) or not isinstance(b, (int, np.integer)):
        raise FormatError(f"{field_name}: expected an integer, got {b!r}")
    b = int(b)
    if b < 1:
        raise FormatError(f"{field_name}: must be >= 1, got {b}")
    if b * b > MAX_K:
        raise FormatError(f"{field_name}: n = b*b = {b * b} exceeds MAX_K = {MAX_K}")
    return b


def check_shape(n, b) -> tuple[int, int]:
    """Validate ``n = b*b`` (b divides n and n/b == b); returns (n, b) as ints."""
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)):
        raise FormatError(f"n: expected an integer, got {n!r}")
    n = int(n)
    b = _check_b(b)
    if n < 1:
        raise FormatError(f"n: must be >= 1, got {n}")
    if n % b:
        raise FormatError(f"b: {b} does not divide n = {n}")
    if n != b * b:
        raise FormatError(f"n: {n} != b*b = {b * b} (a Monarch matrix has b blocks of b x b)")
    return n, b


def perm(b: int) -> np.ndarray:
    """The index map p of P for n = b*b: ``p[i] = (i % b) * b + i // b`` (int64)."""
    b = _check_b(b)
    i = np.arange(b * b, dtype=np.int64)
    return (i % b) * b + i // b


def apply_perm(x: np.ndarray, b: int) -> np.ndarray:
    """``P x`` along axis 0 (works for vectors and (n, T) token batches)."""
    x = np.asarray(x)
    if x.shape[0] != b * b:
        raise FormatError(f"x: leading dimension {x.shape[0]} != n = {b * b}")
    return x[perm(b)]


def _check_blocks(a, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype != np.int8:
        raise FormatError(f"{name}: expected int8 blocks, got dtype {a.dtype}")
    if a.ndim != 3 or not (a.shape[0] == a.shape[1] == a.shape[2]):
        raise FormatError(f"{name}: expected shape (b, b, b), got {a.shape}")
    _check_b(a.shape[0], f"{name}.shape[0]")
    return a


def _mid_mode(mid) -> OutMode:
    mode = parse_out(mid)
    if mode.kind not in ("int8_sat", "requant"):
        raise FormatError(f"mid: the stage-L input is int8, so mid must be 'int8_sat' or "
                          f"('requant', mult, shift), got {mode.kind!r}")
    return mode


def _block_matmul(blocks: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Block-diagonal product walking the blocks: (b,b,b) int8 x (n, T) int8 -> (n, T) int64."""
    b = blocks.shape[0]
    t = xs.shape[1]
    xb = xs.reshape(b, b, t).astype(np.int64)          # [block, in, token]
    out = np.einsum("koi,kit->kot", blocks.astype(np.int64), xb)
    return out.reshape(b * b, t)


@dataclass(frozen=True, eq=False)
class Monarch:
    """An int8 Monarch matrix ``M = P L P R P`` with its stage numerics.

    L, R
        ``(b, b, b)`` int8: ``L[k]`` is block k as ``[out, in]``.
    mid
        Requantization of the stage-R int32 outputs to int8: ``"int8_sat"`` or
        ``("requant", mult, shift)``.
    out
        Output mode of the stage-L int32 results: ``"int32"``, ``"int8_sat"`` or
        ``("requant", mult, shift)`` (see :mod:`golden.numerics`).
    """

    L: np.ndarray
    R: np.ndarray
    mid: object = "int8_sat"
    out: object = "int32"
    mid_mode: OutMode = field(init=False, repr=False)
    out_mode: OutMode = field(init=False, repr=False)

    def __post_init__(self):
        L = _check_blocks(self.L, "L")
        R = _check_blocks(self.R, "R")
        if L.shape != R.shape:
            raise FormatError(f"R: shape {R.shape} differs from L's {L.shape}")
        object.__setattr__(self, "L", L)
        object.__setattr__(self, "R", R)
        object.__setattr__(self, "mid_mode", _mid_mode(self.mid))
        object.__setattr__(self, "out_mode", parse_out(self.out))

    @property
    def b(self) -> int:
        return int(self.L.shape[0])

    @property
    def n(self) -> int:
        return self.b * self.b

    # ------------------------------------------------------------------ execution

    def _x(self, x) -> tuple[np.ndarray, bool]:
        x = np.asarray(x)
        if x.dtype != np.int8:
            raise FormatError(f"x: expected int8 activations, got dtype {x.dtype}")
        vec = x.ndim == 1
        xs = x[:, None] if vec else x
        if xs.ndim != 2 or xs.shape[0] != self.n:
            raise FormatError(f"x: expected shape ({self.n},) or ({self.n}, T), got {x.shape}")
        return xs, vec

    def stages(self, x) -> dict:
        """Every intermediate of the factored matmul (``xp, u, h, hp, v, z, y``), (n, T)."""
        xs, _ = self._x(x)
        b = self.b
        xp = apply_perm(xs, b)
        u = _block_matmul(self.R, xp)
        h = apply_out(u, self.mid_mode)
        hp = apply_perm(h, b)
        v = _block_matmul(self.L, hp)
        z = apply_out(v, self.out_mode)
        return dict(xp=xp, u=u, h=h, hp=hp, v=v, z=z, y=apply_perm(z, b))

    def matmul(self, x) -> np.ndarray:
        """Bit-exact ``y = P out(L P mid(R P x))`` for x (n,) or (n, T) int8."""
        xs, vec = self._x(x)
        y = self.stages(xs)["y"]
        return y[:, 0] if vec else y

    __matmul__ = matmul

    # ------------------------------------------------------------------ references

    def dense_factors(self) -> tuple[np.ndarray, np.ndarray]:
        """L and R as dense (n, n) int64 block-diagonal matrices (tests only)."""
        b, n = self.b, self.n
        Ld = np.zeros((n, n), dtype=np.int64)
        Rd = np.zeros((n, n), dtype=np.int64)
        for k in range(b):
            s = slice(k * b, (k + 1) * b)
            Ld[s, s] = self.L[k]
            Rd[s, s] = self.R[k]
        return Ld, Rd

    def to_dense(self) -> np.ndarray:
        """``P L P R P`` as a dense (n, n) int64 matrix, ignoring ``mid``/``out``.

        An independent reference for tests only: it equals the factored matmul when
        ``mid`` does not saturate (int8_sat on small values) and ``out`` is int32.
        """
        Ld, Rd = self.dense_factors()
        Pm = np.eye(self.n, dtype=np.int64)[perm(self.b)]
        return Pm @ Ld @ Pm @ Rd @ Pm

    # ------------------------------------------------------------------ counts

    @property
    def params(self) -> int:
        """Stored weights: ``2 n b``."""
        return 2 * self.n * self.b

    @property
    def macs(self) -> int:
        """MACs per token: ``2 n b``."""
        return 2 * self.n * self.b


def counts(n: int, b: int) -> dict:
    """Parameter and MAC counts of the factored form vs the dense n x n matrix."""
    n, b = check_shape(n, b)
    mon = 2 * n * b
    dense = n * n
    return dict(n=n, b=b, monarch_params=mon, dense_params=dense, monarch_macs=mon,
                dense_macs=dense, param_reduction=dense / mon, mac_reduction=dense / mon,
                param_bytes_int8=mon, dense_bytes_int8=dense)


def fold_input(x, b: int) -> np.ndarray:
    """``P x``: what the host streams into the hardware (the leading P, folded)."""
    return apply_perm(x, b)


def unfold_output(z, b: int) -> np.ndarray:
    """``P z``: the natural-order result from the hardware's stage-L output."""
    return apply_perm(z, b)


def random_monarch(b: int, rng, *, mid="int8_sat", out="int32", lo=-128, hi=127) -> Monarch:
    """Random int8 factors in [lo, hi] (seeded by ``rng``)."""
    b = _check_b(b)
    L = rng.integers(lo, hi + 1, size=(b, b, b)).astype(np.int8)
    R = rng.integers(lo, hi + 1, size=(b, b, b)).astype(np.int8)
    return Monarch(L, R, mid, out)


# ---------------------------------------------------------------------- dense -> Monarch

def project(W: np.ndarray, b: int) -> tuple[np.ndarray, np.ndarray]:
    """Best Monarch approximation of a dense float matrix (Frobenius norm), float factors.

    Each ``(c, j)`` slice ``S[a, e] = W[a*b + c, e*b + j]`` of a Monarch matrix is the
    rank-1 product ``L[c][:, j] R[j][c, :]``, so the projection takes the leading
    singular pair of every slice (the dense-to-sparse step of the paper). Returns float64
    ``(L, R)`` of shape (b, b, b); exact (up to rounding) when W is already Monarch.
    """
    W = np.asarray(W, dtype=np.float64)
    n = W.shape[0]
    if W.ndim != 2 or W.shape[1] != n:
        raise FormatError(f"W: expected a square matrix, got shape {W.shape}")
    n, b = check_shape(n, b)
    T = W.reshape(b, b, b, b)  # [a, c, e, j]
    L = np.zeros((b, b, b))
    R = np.zeros((b, b, b))
    for c in range(b):
        for j in range(b):
            S = T[:, c, :, j]
            U, s, Vt = np.linalg.svd(S)
            r = np.sqrt(s[0])
            L[c][:, j] = U[:, 0] * r
            R[j][c, :] = Vt[0] * r
    return L, R


def dense_from_float(L: np.ndarray, R: np.ndarray) -> np.ndarray:
    """``P L P R P`` for float factors (to check :func:`project`)."""
    b = L.shape[0]
    n = b * b
    out = np.zeros((n, n))
    for a in range(b):
        for c in range(b):
            for e in range(b):
                out[a * b + c, e * b:(e + 1) * b] = L[c][a, :] * R[:, c, e]
    return out


def quantize(L: np.ndarray, R: np.ndarray, *, x_absmax: int = 127, out="int32") -> Monarch:
    """Symmetric per-factor int8 quantization of float factors, with a requant ``mid``.

    The scales fill [-127, 127]; ``mid`` is chosen so that the worst-case stage-R sum for
    activations of magnitude ``x_absmax`` maps into int8 (``mult / 2**shift`` ~ 127 /
    bound, rounded half up like the hardware).
    """
    def q(a):
        s = np.abs(a).max()
        s = s / 127 if s > 0 else 1.0
        return np.clip(np.rint(a / s), -127, 127).astype(np.int8)
    Lq, Rq = q(L), q(R)
    bound = int(np.abs(Rq.astype(np.int64)).sum(axis=2).max()) * x_absmax or 1
    shift = 16
    mult = max(1, min(65535, (127 << shift) // bound))
    return Monarch(Lq, Rq, ("requant", mult, shift), out)
