"""Engine 3 benchmark: utilization, arrays and cycles of linear / SparseMap / DenseMap.

Rows (``build/bench/cim.json``, a list of dicts):

* ``cycles_source == "model"``: every (n, b = sqrt(n), array_size) of the issue's sweep
  (n in 256/1024/4096, m in 64/128/256) for each strategy, one matrix, plus DenseMap
  packing 8 matrices per layer (e.g. the 8 experts' projections of a Mixtral layer).
  Placement, arrays and utilization come from ``golden.cim.map_monarch``; cycles per
  token from the cycle model (``golden.cim.token_cycles``) with 8 columns per ADC
  (``lanes = m / 8``). The regression proves the model equal to the RTL instruction by
  instruction (tests/test_cim_rtl.py::test_cim_cycles_match_model).
* ``cycles_source == "rtl"``: the simulated sizes on the RTL "default" tile (32 x 32
  arrays, 4 columns per cycle): every cycle count measured in Verilator (cocotb, no
  stalls), next to the model's figure.

``cycles`` is one token (INPUT + stage-R steps + MID + stage-L steps + OUTPUT);
``load_cycles`` the one-time weight load. Run: ``python -m sim.bench cim``.
"""
from __future__ import annotations

import numpy as np

from golden import cim as gc
from golden import monarch as gm

from . import BENCH_DIR, table, write_rows

SWEEP_N = (256, 1024, 4096)
SWEEP_M = (64, 128, 256)
PACKED = 8                          # matrices packed per DenseMap layer
PAPER = {"sparse_util_n1024_m256": 0.125, "dense_mean_util": 0.788, "array_reduction": 0.87,
         "footprint_reduction_min": 4.0}


def _row(mp: gc.Mapping, config: gc.CIMConfig, source: str) -> dict:
    c = gm.counts(mp.n, mp.b)
    step_cyc = sum(gc.cost_step(s.col_mask, mp.b, config) for s in mp.steps if s.matrix == 0)
    return dict(n=mp.n, b=mp.b, array_size=mp.array_size, strategy=mp.strategy,
                matrices=mp.matrices, lanes=config.lanes, utilization=mp.utilization,
                arrays=mp.arrays, dense_arrays=mp.dense_arrays,
                array_reduction_vs_dense=1 - mp.arrays / mp.dense_arrays,
                steps=len([s for s in mp.steps if s.matrix == 0]),
                cycles=gc.token_cycles(mp, config), model_cycles=gc.token_cycles(mp, config),
                step_cycles=step_cyc, load_cycles=gc.load_cycles(mp, config),
                param_reduction=c["param_reduction"], mac_reduction=c["mac_reduction"],
                cycles_source=source)


def model_rows() -> list[dict]:
    rows = []
    for n in SWEEP_N:
        b = int(round(n ** 0.5))
        for m in SWEEP_M:
            cfg = gc.model_config(m, n)
            for strategy in gc.STRATEGIES:
                rows.append(_row(gc.map_monarch(n, b, m, strategy), cfg, "model"))
            rows.append(_row(gc.map_monarch(n, b, m, "dense", matrices=PACKED), cfg, "model"))
    return rows


def rtl_rows(quick: bool = False) -> list[dict]:
    """Measure token and load cycles on the RTL "default" tile (Verilator, no stalls)."""
    from hdl.cim import CONFIGS
    from tb.cim import Job, run_jobs

    cfg = CONFIGS["default"]
    rng = np.random.default_rng(0)
    tokens = 2
    shapes = [(8, s, 1) for s in gc.STRATEGIES] + [(8, "dense", 2)]
    if not quick:
        shapes += [(16, "sparse", 1), (16, "dense", 1)]
    jobs, maps = [], []
    for b, strategy, k in shapes:
        mons = [gm.random_monarch(b, rng, mid=("requant", 300, 16)) for _ in range(k)]
        xs = rng.integers(-128, 128, size=(tokens, b * b)).astype(np.int8)
        jobs.append(Job(f"{strategy} n={b * b} x{k}", strategy=strategy, monarchs=mons, xs=xs))
        maps.append(gc.map_monarch(b * b, b, cfg.m, strategy, matrices=k))
    res = run_jobs(jobs, config_name="default", test_dir=BENCH_DIR / "cim_rtl", seed=1,
                   stalls=False)
    rows = []
    for i, mp in enumerate(maps):
        lo, hi = int(res["offsets"][i]), int(res["offsets"][i + 1])
        costs, ops = res["costs"][lo:hi], res["cost_ops"][lo:hi]
        load = int(sum(c for c, o in zip(costs, ops) if o == "LOADW"))
        per_token = (int(costs.sum()) - load - int(sum(c for c, o in zip(costs, ops) if o == "CFG")))
        per_token /= tokens * mp.matrices
        model = np.mean([gc.token_cycles(mp, cfg, k) for k in range(mp.matrices)])
        r = _row(mp, cfg, "rtl")
        r.update(cycles=per_token, model_cycles=float(model), load_cycles=load,
                 rtl_total_cycles=int(costs.sum()),
                 model_total_cycles=gc.program_cycles(mp, cfg, tokens))
        if r["rtl_total_cycles"] != r["model_total_cycles"]:
            raise AssertionError(f"RTL {r['rtl_total_cycles']} != model "
                                 f"{r['model_total_cycles']} cycles for {r}")
        rows.append(r)
    # linear at n = 256 needs 128 arrays: more than the simulated tile holds -> model only
    mp = gc.map_monarch(256, 16, cfg.m, "linear")
    rows.append(_row(mp, gc.CIMConfig(array_size=cfg.m, arrays=mp.arrays, lanes=cfg.lanes,
                                      n_max=cfg.n_max), "model"))
    return rows


def summarize(rows: list[dict]) -> dict:
    sweep = [r for r in rows if r["cycles_source"] == "model" and r["n"] in SWEEP_N
             and r["array_size"] in SWEEP_M]
    one = lambda s: [r for r in sweep if r["strategy"] == s and r["matrices"] == 1]
    dense1, sparse1 = one("dense"), one("sparse")
    packed = [r for r in sweep if r["strategy"] == "dense" and r["matrices"] == PACKED]
    sp1024 = next(r for r in sparse1 if r["n"] == 1024 and r["array_size"] == 256)
    ratio = [d["utilization"] / s["utilization"] for d, s in zip(dense1, sparse1)]
    return dict(
        sparse_util_n1024_m256=sp1024["utilization"],
        dense_mean_util=float(np.mean([r["utilization"] for r in dense1])),
        dense_mean_util_packed=float(np.mean([r["utilization"] for r in packed])),
        dense_over_sparse_util=float(np.mean(ratio)),
        dense_array_reduction=float(np.mean([r["array_reduction_vs_dense"] for r in dense1])),
        dense_array_reduction_packed=float(np.mean([r["array_reduction_vs_dense"]
                                                     for r in packed])),
        footprint_reduction={r["n"]: r["param_reduction"] for r in dense1},
        dense_vs_linear_cycles=float(np.mean(
            [next(x for x in sweep if x["strategy"] == "linear" and x["n"] == d["n"]
                  and x["array_size"] == d["array_size"])["cycles"] / d["cycles"]
             for d in dense1])),
    )


def main(quick: bool = False) -> list[dict]:
    rows = model_rows() + rtl_rows(quick)
    path = write_rows("cim", rows)
    print(table(rows, ["n", "b", "array_size", "strategy", "matrices", "utilization", "arrays",
                       "dense_arrays", "steps", "cycles", "model_cycles", "load_cycles",
                       "cycles_source"],
                {"utilization": "{:.1%}", "cycles": "{:.0f}", "model_cycles": "{:.0f}"}))
    s = summarize(rows)
    print(f"\nSparseMap utilization at n=1024, m=256, b=32: {s['sparse_util_n1024_m256']:.1%} "
          f"(paper {PAPER['sparse_util_n1024_m256']:.1%})")
    print(f"DenseMap mean utilization over the 9 (n, m) points: one matrix "
          f"{s['dense_mean_util']:.1%}, {PACKED} matrices per layer "
          f"{s['dense_mean_util_packed']:.1%} (paper {PAPER['dense_mean_util']:.1%}; target "
          f">= 90%). One n=256 matrix holds 2*n*b = 8192 weights: at most 50% of a 128^2 "
          f"and 12.5% of a 256^2 array, whatever the mapping.")
    print(f"DenseMap / SparseMap utilization: {s['dense_over_sparse_util']:.1f}x (paper ~3x)")
    print(f"DenseMap arrays vs an unfactored dense layer: {s['dense_array_reduction']:.1%} "
          f"fewer (one matrix), {s['dense_array_reduction_packed']:.1%} ({PACKED} matrices) "
          f"(paper {PAPER['array_reduction']:.0%})")
    print("memory footprint and MACs vs dense (= b/2): "
          + ", ".join(f"n={n}: {v:.0f}x" for n, v in s["footprint_reduction"].items())
          + f" (paper >= {PAPER['footprint_reduction_min']:.0f}x)")
    print(f"linear (naive factor mapping) / DenseMap cycles per token: "
          f"{s['dense_vs_linear_cycles']:.2f}x (model)")
    rtl = [r for r in rows if r["cycles_source"] == "rtl"]
    print(f"RTL rows: {len(rtl)}, every RTL cycle count equal to the model "
          f"({all(r['rtl_total_cycles'] == r['model_total_cycles'] for r in rtl)})")
    print(f"written {path}")
    return rows


if __name__ == "__main__":
    main()
