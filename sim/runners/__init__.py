"""One host-side runner per engine behind one protocol (:mod:`sim.runners.base`).

Each runner module imports its RTL, bench and plotting code inside its methods, so
``get`` stays cheap: ``python -m sim run --engine pim`` builds and runs no other engine.
"""
from __future__ import annotations

from .base import Runner

#: the engines, in ``--engine`` order (the first is the default)
ENGINES = ("moe", "sptc", "pim", "cim", "attn")


def get(engine: str) -> Runner:
    """The runner of ``engine`` (one of :data:`ENGINES`)."""
    if engine not in ENGINES:
        raise KeyError(f"unknown engine {engine!r} (one of {', '.join(ENGINES)})")
    from . import attn, cim, moe, pim, sptc
    return {"moe": moe, "sptc": sptc, "pim": pim, "cim": cim, "attn": attn}[engine].RUNNER
