"""Simulator speed: simulated clock cycles per wall second on one Sparse Tensor Core job.

Three ways to run the same encoded batch (``sim.sptc.encode_jobs``), with the
same seed and the same random valid/ready stalls, so all three simulate the
same cycles and must return identical outputs and cycle counts (checked here
too, and in ``tests/test_fastlane.py``):

* ``cocotb+verilator`` - ``sim.sptc``'s path (the steps of ``run_batch``: a
  cached Verilator build, then ``cocotb_run.run`` of ``tb.sptc``). Timed: the
  simulator run only (build and job encoding excluded). Two rates: over the
  whole run (simulator process launch, cocotb start-up, result files) and over
  the cocotb test body alone (cocotb's own ``results.xml`` timing). Its cycle
  count is cocotb's simulated time / clock period, measured independently.
* ``pyverilator`` - the fast lane (``sim.sptc_fast``). Timed: the job loop
  (the build is cached, loading the model takes milliseconds and is excluded).
* ``amaranth-sim`` - ``amaranth.sim.Simulator`` (``sim.sptc_amaranth``).
  Timed: ``sim.run()`` (elaboration excluded).

    python -m sim.simspeed [--quick]      # writes build/bench/simspeed.json
"""
from __future__ import annotations

import json
import shutil
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

import golden
from hdl.sptc import CONFIGS

from tb import cocotb_run

from . import fastlane, sptc, sptc_amaranth, sptc_fast
from tb.common import run_sync
from tb.sptc import bench

from tb.toolchain import BUILD

OUT = BUILD / "bench" / "simspeed.json"
CONFIG = "small"
SEED = 1
PERIOD_NS = 10  # tb.common.Harness's clock


def jobs(quick: bool) -> list[sptc.JobSpec]:
    """The benchmark job: int8 2:4 and Samoyeds expert slices on gathered tokens."""
    rng = np.random.default_rng(2024)
    cfg = CONFIGS[CONFIG]
    k, T = cfg.max_k, 48
    x = rng.integers(-128, 128, (k, T), dtype=np.int8)
    sel = np.sort(rng.choice(T, 32, replace=False))
    specs = []
    n = 1 if quick else 4
    for i in range(n):
        w = rng.integers(-128, 128, (64, k), dtype=np.int8)
        if i % 2 == 0:
            w = golden.Sparse24.from_dense(golden.prune_2to4(w))
        else:
            w = golden.SamoyedsWeight.from_dense(golden.prune_samoyeds(w, 2, 4, 16), 2, 4, 16)
        specs.append(sptc.JobSpec(f"bench {i}", w, x, sel, "int32" if i % 2 else "int8_sat"))
    return specs


def _cocotb_xml(path: Path) -> tuple[float, float]:
    """(simulated ns, test-body seconds) of the single cocotb test in results.xml."""
    case = ET.parse(path).getroot().find(".//testcase")
    props = {p.get("name"): p.get("value") for p in case.iter("property")}
    return float(props["sim_time_duration"]), float(case.get("time"))


def _same(a: dict, b: dict, n_jobs: int, what: str) -> bool:
    """The three simulators must agree on every output and cycle count, or no figure."""
    keys = [f"j{i}_{k}" for i in range(n_jobs) for k in ("out", "cycles", "error")]
    bad = [k for k in keys if not np.array_equal(a[k], b[k])]
    if bad:
        raise cocotb_run.SimulationError(f"simspeed: {what} disagrees with cocotb on {bad}")
    return True


def measure(quick: bool = False, stalls: bool = True) -> list[dict]:
    """Each simulator runs the job ``repeats`` times; the fastest run counts (shared cores)."""
    cfg = CONFIGS[CONFIG]
    specs = jobs(quick)
    job = sptc.encode_jobs(cfg, specs)
    repeats = 1 if quick else 3
    rows = []

    # ---- cocotb + Verilator
    b = sptc.build_design(cfg, "verilator")  # build (or reuse) first: not timed
    work = OUT.parent / "simspeed_cocotb"
    base_env = {"MOE_SEED": str(SEED), "MOE_NO_STALLS": "0" if stalls else "1"}
    wall = body = float("inf")
    for _ in range(repeats):
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
        np.savez(work / "job.npz", **job)
        env = dict(base_env, MOE_JOB=str(work / "job.npz"), MOE_RESULT=str(work / "result.npz"))
        t0 = time.perf_counter()
        cocotb_run.run(b, "tb.sptc", test_dir=work, env=env)
        wall = min(wall, time.perf_counter() - t0)
        sim_ns, t_body = _cocotb_xml(work / "results.xml")
        body = min(body, t_body)
    with np.load(work / "result.npz", allow_pickle=False) as r:
        ref = {k: r[k] for k in r.files}
    cyc = int(round(sim_ns / PERIOD_NS))
    rows.append(dict(simulator="cocotb+verilator", cycles=cyc, seconds=wall,
                     cycles_per_s=cyc / wall, note="whole run: process launch + cocotb start-up; "
                     "cycles = cocotb sim time / 10 ns (incl. reset)"))
    rows.append(dict(simulator="cocotb+verilator (test body)", cycles=cyc, seconds=body,
                     cycles_per_s=cyc / body, note="cocotb's results.xml test time"))

    # ---- pyverilator fast lane
    fb = sptc_fast.build_design(cfg)  # cached build: not timed
    dt = float("inf")
    for _ in range(repeats):
        model = fastlane.Model(fb)  # loading takes milliseconds: not timed
        model.reset(sptc_fast.RESET_CYCLES)
        t0 = time.perf_counter()
        res, sb, cyc = run_sync(bench(model, job, seed=SEED, stalls=stalls))
        dt = min(dt, time.perf_counter() - t0)
        sptc_fast.check(sb, "simspeed fast lane")
    rows.append(dict(simulator="pyverilator", cycles=cyc, seconds=dt, cycles_per_s=cyc / dt,
                     note="sim.sptc_fast; same results as cocotb: "
                          f"{_same(ref, res, len(specs), 'the fast lane')}"))

    # ---- Amaranth's Python simulator
    dt = float("inf")
    for _ in range(repeats):
        asim, out = sptc_amaranth.make_simulator(cfg, job, seed=SEED, stalls=stalls)
        t0 = time.perf_counter()
        asim.run()
        dt = min(dt, time.perf_counter() - t0)
        sptc_fast.check(out["scoreboard"], "simspeed amaranth-sim")
    cyc = out["cycles"]
    rows.append(dict(simulator="amaranth-sim", cycles=cyc, seconds=dt, cycles_per_s=cyc / dt,
                     note="sim.sptc_amaranth; same results as cocotb: "
                          f"{_same(ref, out['results'], len(specs), 'amaranth-sim')}"))

    base = rows[0]["cycles_per_s"]
    for r in rows:
        r.update(config=CONFIG, jobs=len(specs), seed=SEED, stalls=stalls, repeats=repeats,
                 vs_cocotb=r["cycles_per_s"] / base)
    return rows


def main(quick: bool = False) -> list[dict]:
    rows = measure(quick)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"Simulator speed: SpTC '{CONFIG}', {rows[0]['jobs']} job(s), seed {SEED}, "
          f"random stalls {'on' if rows[0]['stalls'] else 'off'}, best of "
          f"{rows[0]['repeats']} (-> {OUT})")
    print(f"{'simulator':<30} {'cycles':>8} {'seconds':>9} {'cycles/s':>10} {'vs cocotb':>9}  note")
    for r in rows:
        print(f"{r['simulator']:<30} {r['cycles']:>8} {r['seconds']:>9.3f} "
              f"{r['cycles_per_s']:>10.0f} {r['vs_cocotb']:>8.2f}x  {r['note']}")
    return rows


if __name__ == "__main__":
    main(quick="--quick" in sys.argv[1:])
