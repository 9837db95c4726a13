"""Parallel sweep runner: a process pool by default, a Dask cluster when asked.

One file past 500 lines: the pool and the Dask path share the point protocol,
the retry/error capture and the grid CLI, which read best together.

    >>> from sim import sweep
    >>> rows = sweep.run(some_module.point, [dict(preset="mixtral-8x7b", seed=0), ...])

``fn`` must be a module-level function (it is sent to worker processes) that
takes one job dict and returns a list of result rows; ``run`` returns the rows
of every job, in job order (``progress=True``: a tqdm bar over the jobs as they
complete). Backends:

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

Job functions: :func:`sim.bench.moe.point` (the MoE cycle models) and
:func:`sptc_point` (one SpTC job of a trace step on the RTL: the pyverilator fast
lane or cocotb). RTL jobs on a Dask worker build in
a folder of that worker's own, ``$MOE_WORKER_BUILD_ROOT`` (default
``build/workers``) ``/<host>-<worker name>/``: each worker builds a design once
and reuses the build for every later job, across restarts too.

CLI: ``python -m sim.sweep --grid preset=mixtral-8x7b,qwen2-moe seed=0,1
mode=dense,2:4 -o results.json`` (or ``--grid-file grid.toml``) runs the grid's
cartesian product and merges every row into one JSON file; without a grid,
``python -m sim.sweep [--quick] [--workers N] [--dask] [--scheduler ADDR]``
runs the MoE-layer benchmark sweep (``sim.bench.moe``) on the chosen backend.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import as_completed as _pool_completed
from pathlib import Path

from golden.errors import FormatError


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
        scheduler: str | None = None, progress: bool = False) -> list:
    """Run ``fn(job)`` for every job in parallel; return all rows in job order."""
    return _flatten(run_jobs(fn, jobs, workers=workers, client=client, dask=dask,
                             scheduler=scheduler, progress=progress))


def run_jobs(fn, jobs: list, *, workers: int | None = None, client=None, dask: bool = False,
             scheduler: str | None = None, progress: bool = False,
             keep_going: bool = False) -> list:
    """Like :func:`run`, but one entry per job: its list of rows, or with ``keep_going``
    the exception a failed job raised (instead of raising it)."""
    jobs = list(jobs)
    if not callable(fn):
        raise TypeError(f"fn: expected a callable, got {fn!r}")
    if workers is not None and workers < 1:
        raise ValueError(f"workers: must be >= 1, got {workers}")
    if client is not None or dask or scheduler:
        return _run_dask(fn, jobs, workers, client, scheduler, progress, keep_going)
    if not jobs:
        return []
    n = min(len(jobs), workers or os.cpu_count() or 1)
    if n == 1:
        out = []
        for j in _bar(jobs, progress, len(jobs)):
            out.append(_call(fn, j, keep_going))
        return out
    with ProcessPoolExecutor(max_workers=n) as pool:
        futs = {pool.submit(fn, j): i for i, j in enumerate(jobs)}
        return _collect(futs, _pool_completed(futs), progress, keep_going,
                        lambda f: f.result())


def _call(fn, job, keep_going):
    try:
        return fn(job)
    except Exception as exc:  # noqa: BLE001 - reported per job
        if not keep_going:
            raise
        return exc


def _bar(it, progress: bool, total: int):
    if not progress:
        return it
    try:
        from tqdm import tqdm
    except ImportError:          # the sim extra installs it; no bar without it
        return it
    return tqdm(it, total=total, unit="job", file=sys.stderr)


def _collect(index: dict, done, progress, keep_going, result) -> list:
    """Results by job index from futures in completion order."""
    out = [None] * len(index)
    for fut in _bar(done, progress, len(index)):
        try:
            out[index[fut]] = result(fut)
        except Exception as exc:  # noqa: BLE001 - reported per job
            if not keep_going:
                raise
            out[index[fut]] = exc
    return out


def _run_dask(fn, jobs, workers, client, scheduler, progress=False, keep_going=False):
    if not have_dask():
        raise RuntimeError("dask.distributed is not installed: pip install 'dask[distributed]' "
                           "(or run the sweep without --dask)")
    from dask.distributed import Client, LocalCluster, as_completed
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
        if not jobs:
            return []
        futures = client.map(fn, jobs, pure=False)
        index = {f.key: i for i, f in enumerate(futures)}
        out = [None] * len(jobs)
        for fut in _bar(as_completed(futures), progress, len(jobs)):
            try:
                out[index[fut.key]] = fut.result()
            except Exception as exc:  # noqa: BLE001 - reported per job
                if not keep_going:
                    raise
                out[index[fut.key]] = exc
        return out
    finally:
        for obj in own:
            obj.close()


# --------------------------------------------------------------------------- RTL jobs

#: Job kinds of the grid CLI: name -> (function, {key: default}).
SPTC_DEFAULTS = dict(preset="mixtral-8x7b", seed=0, mode="dense", lane="fast",
                     config="small", scale=None, step=0, simulator="verilator", stalls=False)
MOE_DEFAULTS = dict(preset="mixtral-8x7b", skew="hot", seed=0, steps=24)
SPTC_MODES = ("dense", "2:4", "samoyeds")
SAMOYEDS_NMV = (1, 2, 16)
LANES = ("fast", "cocotb")


def worker_build_root() -> Path | None:
    """This Dask worker's own build folder, or None outside a Dask worker.

    ``$MOE_WORKER_BUILD_ROOT`` (default ``build/workers`` under the output folder, :data:`tb.toolchain.BUILD`) ``/<host>-<worker
    name>``; fast-lane builds go to ``fastlane/`` and cocotb builds to ``sim_build/``
    under it (the build caches of :mod:`sim.fastlane` and :mod:`tb.cocotb_run`,
    pointed there for the life of the worker process).
    """
    try:
        from dask.distributed import get_worker
        worker = get_worker()
    except (ImportError, ValueError):
        return None
    import re
    import socket

    from tb import cocotb_run, toolchain

    from . import fastlane
    base = Path(os.environ.get("MOE_WORKER_BUILD_ROOT") or toolchain.BUILD / "workers")
    key = re.sub(r"[^A-Za-z0-9._-]", "_", f"{socket.gethostname()}-{worker.name}")
    root = base / key
    fastlane.BUILD_ROOT = root / "fastlane"
    cocotb_run.BUILD_ROOT = root / "sim_build"
    fastlane.BUILD_ROOT.mkdir(parents=True, exist_ok=True)
    cocotb_run.BUILD_ROOT.mkdir(parents=True, exist_ok=True)
    return root


def worker_info(_=None) -> dict:
    """Where this process builds: worker name, its build root (None outside a Dask
    worker) and the fast-lane and cocotb build caches in use (for ``client.submit``)."""
    from tb import cocotb_run

    from . import fastlane
    root = worker_build_root()
    return dict(worker=_worker_name(), build_root=str(root) if root else None,
                fastlane=str(fastlane.BUILD_ROOT), sim_build=str(cocotb_run.BUILD_ROOT))


def check_job(kind: str, job: dict) -> dict:
    """``job`` with defaults filled in; FormatError naming a bad key or value."""
    if kind not in JOB_KINDS:
        raise FormatError(f"job: unknown kind {kind!r} (one of {', '.join(JOB_KINDS)})")
    defaults = JOB_KINDS[kind][1]
    unknown = sorted(set(job) - set(defaults))
    if unknown:
        raise FormatError(f"{unknown[0]}: unknown key for {kind} jobs (keys: "
                          f"{', '.join(defaults)})")
    job = {**defaults, **job}
    for key in ("seed", "step", "steps"):
        if key in job and (not isinstance(job[key], int) or isinstance(job[key], bool)
                           or job[key] < (1 if key == "steps" else 0)):
            raise FormatError(f"{key}: expected an integer >= {1 if key == 'steps' else 0}, "
                              f"got {job[key]!r}")
    if kind == "moe":
        from sim.bench import moe
        if job["preset"] not in moe.PRESETS:
            raise FormatError(f"preset: unknown {job['preset']!r} (one of "
                              f"{', '.join(moe.PRESETS)})")
        if job["skew"] not in moe.SKEWS:
            raise FormatError(f"skew: unknown {job['skew']!r} (one of {', '.join(moe.SKEWS)})")
        return job
    from hdl.sptc import CONFIGS

    from golden import trace as traces
    for key, ok in (("preset", traces.PRESETS), ("mode", SPTC_MODES), ("lane", LANES),
                    ("config", CONFIGS), ("simulator", ("verilator", "icarus"))):
        if job[key] not in ok:
            raise FormatError(f"{key}: unknown {job[key]!r} (one of {', '.join(ok)})")
    sc = job["scale"]
    if sc is not None and (not isinstance(sc, int) or isinstance(sc, bool) or sc < 1):
        raise FormatError(f"scale: expected an integer >= 1, got {job['scale']!r}")
    if not isinstance(job["stalls"], bool):
        raise FormatError(f"stalls: expected true or false, got {job['stalls']!r}")
    if job["lane"] == "fast" and job["simulator"] != "verilator":
        raise FormatError(f"simulator: {job['simulator']!r}; the fast lane is Verilator only")
    return job


def sptc_spec(job: dict):
    """(config, JobSpec, info) of an SpTC job: the gate projection (ffn x hidden, random
    int8 weights in the job's mode) of the busiest expert of step ``step`` of a
    generated trace of ``preset`` (uniform skew, decode 8, Poisson(0.5) prompts of 4..16
    tokens); the step's tokens beyond the build's ``max_tokens`` are cut off. ``scale``
    (default: 64, doubled until hidden fits the build's ``max_k``) divides the model."""
    import warnings

    import numpy as np

    import golden
    from hdl.sptc import CONFIGS

    from golden import trace as traces
    from .sptc import JobSpec
    job = check_job("sptc", job)
    cfg = CONFIGS[job["config"]]
    p = traces.PRESETS[job["preset"]]
    scale = job["scale"] or 64
    while job["scale"] is None and traces.scaled_dim(p.hidden, scale) > cfg.max_k:
        scale *= 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        tr = traces.generate(job["preset"], steps=job["step"] + 1, seed=job["seed"],
                             scale=scale, decode=8, prefill=0.5, prompt_len=(4, 16))
    st = tr.step(job["step"])
    tokens = min(st.tokens, cfg.max_tokens)
    counts = np.bincount(st.expert_ids[:tokens].ravel(), minlength=tr.num_experts)
    expert = int(np.argmax(counts))
    sel = st.sel(expert)
    sel = sel[sel < tokens]
    rng = np.random.default_rng([job["seed"], job["step"]])
    w = rng.integers(-128, 128, size=(tr.ffn, tr.hidden), dtype=np.int8)
    if job["mode"] == "2:4":
        w = golden.Sparse24.from_dense(golden.prune_2to4(w))
    elif job["mode"] == "samoyeds":
        w = golden.SamoyedsWeight.from_dense(golden.prune_samoyeds(w, *SAMOYEDS_NMV),
                                             *SAMOYEDS_NMV)
    x = rng.integers(-128, 128, size=(tr.hidden, tokens), dtype=np.int8)
    info = dict(model=p.name, scale=scale, hidden=tr.hidden, ffn=tr.ffn, expert=expert,
                tokens=tokens, routed=len(sel))
    return cfg, JobSpec(f"{job['preset']} s{job['seed']} {job['mode']}", w, x, sel), info


def sptc_point(job: dict) -> list[dict]:
    """One SpTC job (:func:`sptc_spec`) on the RTL -> one row: the DUT's cycles beside
    ``golden.sptc``'s prediction, a sha256 of the output (checked element by element
    against ``golden.ssmm`` inside the bench), the worker and its build folder, and
    ``build``: "fresh" if this job built the design, else "cached"."""
    import hashlib
    import tempfile
    import time

    from golden import sptc as gs

    from tb import cocotb_run, toolchain

    from . import fastlane
    job = check_job("sptc", job)
    root = worker_build_root()
    cfg, spec, info = sptc_spec(job)
    t0 = time.time()
    cache = fastlane.BUILD_ROOT if job["lane"] == "fast" else cocotb_run.BUILD_ROOT
    before = set(cache.glob("*/.built")) if cache.exists() else set()
    if job["lane"] == "fast":
        from . import sptc_fast
        res = sptc_fast.run_batch(cfg, [spec], seed=job["seed"], stalls=job["stalls"])
    else:
        from . import sptc
        runs = (root or toolchain.BUILD) / "sweep_runs"
        runs.mkdir(parents=True, exist_ok=True)
        res = sptc.run_batch(cfg, [spec], simulator=job["simulator"], seed=job["seed"],
                             stalls=job["stalls"], workdir=Path(tempfile.mkdtemp(dir=runs)))
    fresh = bool(set(cache.glob("*/.built")) - before)
    out = res["j0_out"]
    pred = gs.predict_job_cycles(cfg, gs.plan(cfg, spec.weight, spec.x.shape, spec.sel))
    return [dict(job, **info, cycles=int(res["j0_cycles"]), model_cycles=int(pred),
                 out_shape=list(out.shape),
                 out_sha256=hashlib.sha256(out.astype("<i8").tobytes()).hexdigest(),
                 worker=_worker_name(), build_root=str(root) if root else None,
                 build="fresh" if fresh else "cached", wall_s=round(time.time() - t0, 3))]


def _worker_name() -> str:
    try:
        from dask.distributed import get_worker
        return str(get_worker().name)
    except (ImportError, ValueError):
        return f"local-{os.getpid()}"


def _moe_point(job: dict) -> list[dict]:
    from sim.bench import moe
    return moe.point(check_job("moe", job))


JOB_KINDS = {"sptc": (sptc_point, SPTC_DEFAULTS), "moe": (_moe_point, MOE_DEFAULTS)}


# --------------------------------------------------------------------------- grid CLI

def parse_value(text: str):
    """A grid value: int, float, true/false, else the string itself ("2:4" stays)."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text.strip()


def parse_grid(items: list[str]) -> dict:
    """``["preset=a,b", "seed=0,1"]`` -> ``{"preset": ["a", "b"], "seed": [0, 1]}``."""
    grid = {}
    for item in items:
        key, eq, vals = item.partition("=")
        key = key.strip()
        if not eq or not key or not vals.strip():
            raise FormatError(f"grid: {item!r} is not KEY=V1,V2,...")
        if key in grid:
            raise FormatError(f"grid: {key} given twice")
        grid[key] = [parse_value(v) for v in vals.split(",")]
    return grid


def read_grid_file(path) -> tuple[str | None, dict]:
    """A TOML grid: optional ``job = "sptc"`` and a ``[grid]`` table of key = value or
    list of values. Returns (job kind or None, grid)."""
    import tomllib
    try:
        doc = tomllib.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise FormatError(f"{path}: cannot read ({e})") from None
    except tomllib.TOMLDecodeError as e:
        raise FormatError(f"{path}: not valid TOML ({e})") from None
    unknown = sorted(set(doc) - {"job", "grid"})
    if unknown:
        raise FormatError(f"{path}: {unknown[0]}: unknown key (expected job and [grid])")
    kind, grid = doc.get("job"), doc.get("grid", {})
    if kind is not None and not isinstance(kind, str):
        raise FormatError(f"{path}: job: expected a string, got {kind!r}")
    if not isinstance(grid, dict):
        raise FormatError(f"{path}: grid: expected a table")
    out = {}
    for key, v in grid.items():
        vals = v if isinstance(v, list) else [v]
        if not vals or any(isinstance(x, (list, dict)) for x in vals):
            raise FormatError(f"{path}: grid.{key}: expected a value or a list of values, "
                              f"got {v!r}")
        out[key] = vals
    return kind, out


def expand(kind: str, grid: dict) -> list[dict]:
    """The cartesian product of ``grid`` (first key outermost), each job checked."""
    import itertools
    keys = list(grid)
    return [check_job(kind, dict(zip(keys, combo)))
            for combo in itertools.product(*(grid[k] for k in keys))]


def sweep_grid(kind: str, grid: dict, *, progress: bool = False, **backend) -> dict:
    """Run a grid; return the merged results: ``job``, ``grid``, ``jobs``, ``failed``,
    ``rows`` (job order; each row has ``job_index``), ``errors`` (job_index, job, error)."""
    jobs = expand(kind, grid)
    results = run_jobs(JOB_KINDS[kind][0], jobs, progress=progress, keep_going=True,
                       **backend)
    rows, errors = [], []
    for i, (job, res) in enumerate(zip(jobs, results)):
        if isinstance(res, BaseException):
            errors.append(dict(job_index=i, job=job, error=f"{type(res).__name__}: {res}"))
        else:
            rows += [dict(r, job_index=i) for r in res]
    return dict(job=kind, grid=grid, jobs=len(jobs), failed=len(errors), rows=rows,
                errors=errors)


_EPILOG = """\
grid keys (sptc jobs): preset (a sim.traces preset), seed, mode (dense, 2:4,
samoyeds), lane (fast, cocotb), config (small, default), scale, step, simulator
(verilator, icarus; cocotb lane), stalls (true/false).
grid keys (moe jobs): preset (a sim.bench.moe preset), skew, seed, steps.

examples:
  python -m sim.sweep --grid preset=mixtral-8x7b,qwen2-moe seed=0,1 mode=dense,2:4 \\
      --dask --workers 2 -o results.json
  python -m sim.sweep --grid-file grid.toml --scheduler tcp://host:8786 -o results.json
  python -m sim.sweep --quick --dask          # the MoE benchmark sweep (no grid)

grid.toml:
  job = "sptc"
  [grid]
  preset = ["mixtral-8x7b", "qwen2-moe"]
  seed = [0, 1]
  mode = ["dense", "2:4"]
  lane = "fast"

exit status: 0 ok, 1 some job failed (listed in the file's "errors"), 2 bad options."""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m sim.sweep", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=_EPILOG)
    p.add_argument("--grid", nargs="+", metavar="KEY=V1,V2", default=None,
                   help="sweep the cartesian product of these values")
    p.add_argument("--grid-file", default=None, help="a TOML grid (--grid keys override it)")
    p.add_argument("--job", choices=list(JOB_KINDS), default=None,
                   help="what each grid point runs (default: the file's, else sptc)")
    p.add_argument("-o", "--output", default=None, help="grid: merged results JSON")
    p.add_argument("--force", action="store_true", help="grid: overwrite --output")
    p.add_argument("--no-progress", action="store_true", help="grid: no progress bar")
    p.add_argument("--quick", action="store_true", help="no grid: the short MoE sweep")
    p.add_argument("--workers", type=int, default=None, help="processes (default: CPU count)")
    p.add_argument("--dask", action="store_true", help="run on a Dask LocalCluster")
    p.add_argument("--scheduler", default=None, help="address of a running Dask scheduler")
    args = p.parse_args(argv)
    if args.workers is not None and args.workers < 1:
        p.error(f"--workers: must be >= 1, got {args.workers}")
    backend = dict(workers=args.workers, dask=args.dask, scheduler=args.scheduler)
    if args.grid is None and args.grid_file is None:
        if args.output or args.job or args.force:
            p.error("--job, -o and --force go with --grid or --grid-file")
        from sim.bench import moe
        moe.main(quick=args.quick, **backend)
        return 0
    if args.quick:
        p.error("--quick is the MoE benchmark sweep's; a grid sets its own points")
    if not args.output:
        p.error("-o/--output is required with a grid")
    out = Path(args.output)
    if out.exists() and not args.force:
        p.error(f"--output: {out} exists (--force overwrites it)")
    try:
        kind, grid = read_grid_file(args.grid_file) if args.grid_file else (None, {})
        grid.update(parse_grid(args.grid or []))
        kind = args.job or kind or "sptc"
        if not grid:
            raise FormatError("grid: empty")
        expand(kind, grid)                      # every point checked before any runs
    except FormatError as e:
        p.error(str(e))
    if (args.dask or args.scheduler) and not have_dask():
        p.error("--dask/--scheduler: dask.distributed is not installed "
                "(pip install 'dask[distributed]')")
    res = sweep_grid(kind, grid, progress=not args.no_progress, **backend)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1, default=str) + "\n")
    print(f"wrote {out}: {res['jobs']} jobs, {len(res['rows'])} rows, {res['failed']} failed")
    for e in res["errors"]:
        print(f"error: job {e['job_index']} {e['job']}: {e['error']}", file=sys.stderr)
    return 1 if res["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
