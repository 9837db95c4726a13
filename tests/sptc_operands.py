"""Random SpTC operands shared by the SpTC tests: int8 matrices and a weight in a mode."""
import numpy as np

import golden


def rand(rng, shape):
    return rng.integers(-128, 128, size=shape, dtype=np.int8)


def to_mode(w, mode, nmv=None):
    """``w`` pruned and packed for ``mode`` ("dense", "2:4", "samoyeds" with ``nmv``)."""
    if mode == "2:4":
        return golden.Sparse24.from_dense(golden.prune_2to4(w))
    if mode == "samoyeds":
        return golden.SamoyedsWeight.from_dense(golden.prune_samoyeds(w, *nmv), *nmv)
    return w
