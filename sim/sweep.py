"""Parallel sweep runner: a process pool by default, a Dask cluster when asked.

    >>> from sim import sweep
    >>> rows = sweep.run(some_module.point, [dict(preset="mixtral-8x7b", seed=0), ...])

``fn`` must be a module-level function (it is sent to worker processes) that
takes one job dict and returns a list of result rows; ``run`` returns the rows
of every job, in job order. Backends:

* ``workers=1``: in this process (no pool; for debugging and tiny sweeps);
* default: ``concurrent.futures.ProcessPoolExecutor`` with ``workers`` processes
  (default: the CPU count);
* ``client=<dask.distributed.Client>``: the jobs go to that cluster (any size,
  any number of machines);
* ``dask=True`` without a client: a ``dask.distributed.LocalCluster`` of
  ``workers`` single-threaded worker processes is started for the sweep and
  shut down after it; ``scheduler="tcp://host:8786"`` connects to a running
  cluster instead.

Dask is optional (``pip install 'dask[distributed]'``); asking for it without it
installed raises a RuntimeError that says so.

CLI: ``python -m sim.sweep [--quick] [--workers N] [--dask] [--scheduler ADDR]``
runs the MoE-layer benchmark sweep (``sim.bench.moe``) on the chosen backend.
"""
from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures import ProcessPoolExecutor


def have_dask() -> bool:
    try:
        import dask.distributed  # noqa: F401
    except ImportError:
        return False
    return True


def _flatten(parts) -> list:
    out = []
    for p in parts:
        out.extend(p)
    return out


def run(fn, jobs: list, *, workers: int | None = None, client=None, dask: bool = False,
        scheduler: str | None = None) -> list:
    """Run ``fn(job)`` for every job in parallel; return all rows in job order."""
    jobs = list(jobs)
    if not callable(fn):
        raise TypeError(f"fn: expected a callable, got {fn!r}")
    if workers is not None and workers < 1:
        raise ValueError(f"workers: must be >= 1, got {workers}")
    if client is not None or dask or scheduler:
        return _run_dask(fn, jobs, workers, client, scheduler)
    if not jobs:
        return []
    n = min(len(jobs), workers or os.cpu_count() or 1)
    if n == 1:
        return _flatten(fn(j) for j in jobs)
    with ProcessPoolExecutor(max_workers=n) as pool:
        return _flatten(pool.map(fn, jobs))


def _run_dask(fn, jobs, workers, client, scheduler):
    if not have_dask():
        raise RuntimeError("dask.distributed is not installed: pip install 'dask[distributed]' "
                           "(or run the sweep without --dask)")
    from dask.distributed import Client, LocalCluster
    own = []
    try:
        if client is None:
            if scheduler:
                client = Client(scheduler)
            else:
                cluster = LocalCluster(n_workers=workers or os.cpu_count() or 1,
                                       threads_per_worker=1, processes=True,
                                       dashboard_address=":0")
                own.append(cluster)
                client = Client(cluster)
            own.insert(0, client)
        futures = client.map(fn, jobs, pure=False)
        return _flatten(client.gather(futures))
    finally:
        for obj in own:
            obj.close()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m sim.sweep", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="the short sweep")
    p.add_argument("--workers", type=int, default=None, help="processes (default: CPU count)")
    p.add_argument("--dask", action="store_true", help="run on a Dask LocalCluster")
    p.add_argument("--scheduler", default=None, help="address of a running Dask scheduler")
    args = p.parse_args(argv)
    from sim.bench import moe
    moe.main(quick=args.quick, workers=args.workers, dask=args.dask, scheduler=args.scheduler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
