"""Engine 3 benchmark: utilization, arrays and cycles of linear / SparseMap / DenseMap.

What is measured
----------------
``utilization`` = cells holding a Monarch weight / cells of the arrays the mapping uses,
over *everything mapped together*: both factors (L and R) of every Monarch matrix of the
workload (``golden.cim.Mapping.utilization``). Two workloads per (n, array size):

* ``matrix``: one n x n Monarch matrix (its L and R) on arrays of its own;
* ``layer``: every expert matrix of one MoE layer mapped together, as an MoE accelerator
  holding the layer's weights would: Mixtral-8x7B's 8 experts x (gate, up, down) = 24
  n x n Monarch matrices (the expert FFN width taken equal to n, as in the bench's
  expert projection ``tb.cim.trace_job``). This is the headline.

``util_bound`` is the most any mapping of the same weights can reach on m x m arrays
(``weights / (ceil(weights / m^2) m^2)``). One matrix holds ``2 n b`` weights: at n=256 that
is 50 % of a 128 x 128 array and 12.5 % of a 256 x 256 one, so the single-matrix mean over
the sweep cannot exceed 84.7 % under any mapping; DenseMap reaches the bound at every
point. The paper's 78.8 % is a mean over whole transformer models mapped onto CIM
("storing the entire model in memory"), i.e. a many-matrix figure like ``layer``.

Rows (``build/bench/cim.json``, a list of dicts) cover n in 256/1024/4096, b = sqrt(n),
array size m in 64/128/256, the three strategies and both workloads. ``cycles`` is one
token through one matrix (INPUT + stage-R steps + MID + stage-L steps + OUTPUT),
``load_cycles`` the one-time weight load, with 8 columns per ADC (``lanes = m / 8``):

* ``cycles_source == "rtl"``: measured in Verilator (cocotb, no stalls) on the simulated
  ``default`` tile (64 x 64 arrays, lanes 8, 64 arrays, n <= 1024) wherever the mapping
  fits it: every m = 64 row with n <= 1024 and at most 64 arrays. The bench asserts the
  measured total equal to the model's (``model_cycles`` is printed beside it), and
  records the exercised ADC range (``adc_rows_rtl``/``adc_bits_rtl``: the largest over the
  job's tokens, which the cocotb bench checks against ``golden.cim.program_activity``).
* ``cycles_source == "model"``: the cycle model (``golden.cim.token_cycles``), which the
  regression proves equal to the RTL instruction by instruction
  (tests/test_cim_rtl.py::test_cim_cycles_match_model).

The evaluation tables (``kind`` "eval" rows, :mod:`sim.bench.cim_eval`): per mapping
(unfactored dense weights, linear, SparseMap, DenseMap) arrays, utilization, footprint and
FLOP reduction, ADC bits, cycles and energy per token, beside the paper's claims
("paper" rows), for one matrix per (n, b, m) and one MoE layer of every model preset;
also as markdown in ``build/bench/cim.md``. The utilization/cycle rows above are
``kind`` "mapping".

Run: ``python -m sim.bench cim`` (``--quick``: RTL rows at n = 256 only, preset layers
of the four kit presets on 128 x 128 arrays only).
"""
from __future__ import annotations

import numpy as np

from golden import cim as gc
from golden import monarch as gm

from . import BENCH_DIR, cim_eval, table, write_rows

SWEEP_N = (256, 1024, 4096)
SWEEP_M = (64, 128, 256)
LAYER_PRESET = "mixtral-8x7b"       # the headline MoE layer
PROJECTIONS = ("gate", "up", "down")
PAPER = {"sparse_util_n1024_m256": 0.125, "dense_mean_util": 0.788, "array_reduction": 0.87,
         "footprint_reduction_min": 4.0, "dense_over_sparse": 3.0}
TARGET_DENSE_MEAN = 0.90


def layer_matrices(preset: str) -> int:
    """n x n Monarch matrices of one MoE layer: (routed + shared experts) x 3 projections."""
    from golden.trace import PRESETS
    p = PRESETS[preset]
    return (p.num_experts + p.num_shared) * len(PROJECTIONS)


def workloads() -> dict[str, int]:
    return {"matrix": 1, "layer": layer_matrices(LAYER_PRESET)}


def _row(mp: gc.Mapping, config: gc.CIMConfig, workload: str) -> dict:
    c = gm.counts(mp.n, mp.b)
    steps0 = [s for s in mp.steps if s.matrix == 0]
    cyc = gc.token_cycles(mp, config)
    return dict(kind="mapping", n=mp.n, b=mp.b, array_size=mp.array_size,
                strategy=mp.strategy, workload=workload, matrices=mp.matrices,
                lanes=config.lanes,
                utilization=mp.utilization, util_bound=mp.util_bound, arrays=mp.arrays,
                min_arrays=mp.min_arrays, dense_arrays=mp.dense_arrays,
                array_reduction_vs_dense=1 - mp.arrays / mp.dense_arrays,
                steps=len(steps0), cycles=cyc, model_cycles=cyc,
                step_cycles=sum(gc.cost_step(s.col_mask, mp.b, config) for s in steps0),
                load_cycles=gc.load_cycles(mp, config),
                param_reduction=c["param_reduction"], mac_reduction=c["mac_reduction"],
                cycles_source="model")


def sweep() -> list[tuple[str, gc.Mapping]]:
    out = []
    for n in SWEEP_N:
        b = int(round(n ** 0.5))
        for m in SWEEP_M:
            for workload, k in workloads().items():
                for strategy in gc.STRATEGIES:
                    out.append((workload, gc.map_monarch(n, b, m, strategy, matrices=k)))
    return out


def rtl_fits(mp: gc.Mapping, cfg: gc.CIMConfig) -> bool:
    """The simulated tile holds the mapping and reads as many columns per cycle as the model."""
    return (mp.array_size == cfg.m and mp.n <= cfg.n_max and mp.arrays <= cfg.arrays
            and cfg.b_min <= mp.b <= cfg.b_max
            and cfg.lanes == gc.model_config(mp.array_size, mp.n).lanes)


def measure_rtl(maps: list[gc.Mapping], cfg: gc.CIMConfig, config_name: str = "default",
                seed: int = 0) -> list[dict]:
    """Run each mapping's program (random factors, 2 tokens per matrix, 1 for layers) in one
    Verilator launch without stalls; return per-mapping measured cycles."""
    from sim.runners import get
    from tb.cim import Job

    rng = np.random.default_rng(seed)
    jobs, tokens = [], []
    for mp in maps:
        t = 2 if mp.matrices == 1 else 1
        mons = [gm.random_monarch(mp.b, rng, mid=("requant", 300, 16))
                for _ in range(mp.matrices)]
        xs = rng.integers(-128, 128, size=(t, mp.n)).astype(np.int8)
        jobs.append(Job(f"{mp.strategy} n={mp.n} x{mp.matrices}", strategy=mp.strategy,
                        monarchs=mons, xs=xs))
        tokens.append(t)
    res = get("cim").simulate(config_name, jobs, BENCH_DIR / "cim_rtl", seed=seed,
                              stalls=False)
    out = []
    for i, mp in enumerate(maps):
        lo, hi = int(res["offsets"][i]), int(res["offsets"][i + 1])
        costs, ops = res["costs"][lo:hi], res["cost_ops"][lo:hi]
        load = int(sum(c for c, o in zip(costs, ops) if o == "LOADW"))
        cfgc = int(sum(c for c, o in zip(costs, ops) if o == "CFG"))
        total = int(costs.sum())
        model_total = gc.program_cycles(mp, cfg, tokens[i])
        if total != model_total:
            raise AssertionError(f"{jobs[i].name}: RTL {total} != model {model_total} cycles")
        rows = int(res["adc_rows"][i])
        out.append(dict(cycles=(total - load - cfgc) / (tokens[i] * mp.matrices),
                        load_cycles=load, rtl_total_cycles=total,
                        model_total_cycles=model_total, rtl_tokens=tokens[i] * mp.matrices,
                        adc_rows_rtl=rows, adc_bits_rtl=int(res["adc_bits"][i])))
    return out


def model_rows() -> tuple[list[dict], list[gc.Mapping]]:
    """Every sweep row from the mapper and the cycle model, and the row's mapping."""
    rows, maps = [], []
    for workload, mp in sweep():
        rows.append(_row(mp, gc.model_config(mp.array_size, mp.n), workload))
        maps.append(mp)
    return rows, maps


def build_rows(quick: bool = False) -> list[dict]:
    """Model rows, with cycles measured on the RTL wherever the default tile holds the mapping."""
    from hdl.cim import CONFIGS

    cfg = CONFIGS["default"]
    rows, maps = model_rows()
    idx = [i for i, mp in enumerate(maps)
           if rtl_fits(mp, cfg) and not (quick and mp.n > 256)]
    for i, meas in zip(idx, measure_rtl([maps[i] for i in idx], cfg)):
        model = np.mean([gc.token_cycles(maps[i], cfg, k) for k in range(maps[i].matrices)])
        rows[i].update(meas, model_cycles=float(model), cycles_source="rtl")
    return rows


def _pick(rows, workload, strategy):
    return [r for r in rows if r["workload"] == workload and r["strategy"] == strategy]


def _mean(rows, key):
    return float(np.mean([r[key] for r in rows]))


def summarize(rows: list[dict]) -> dict:
    s = {}
    for w in ("matrix", "layer"):
        dense, sparse = _pick(rows, w, "dense"), _pick(rows, w, "sparse")
        s[w] = dict(
            dense_mean_util=_mean(dense, "utilization"),
            dense_mean_bound=_mean(dense, "util_bound"),
            sparse_mean_util=_mean(sparse, "utilization"),
            dense_over_sparse=float(np.mean([d["utilization"] / p["utilization"]
                                             for d, p in zip(dense, sparse)])),
            dense_array_reduction=_mean(dense, "array_reduction_vs_dense"),
            matrices=dense[0]["matrices"])
    sp = next(r for r in _pick(rows, "matrix", "sparse") if r["n"] == 1024
              and r["array_size"] == 256)
    dense1 = _pick(rows, "matrix", "dense")
    lin1 = _pick(rows, "matrix", "linear")
    s.update(sparse_util_n1024_m256=sp["utilization"],
             footprint_reduction={r["n"]: r["param_reduction"] for r in dense1},
             dense_vs_linear_cycles=float(np.mean([li["cycles"] / d["cycles"]
                                                   for li, d in zip(lin1, dense1)])))
    return s


def preset_layer_means() -> dict[str, float]:
    """DenseMap mean utilization over the sweep for one layer of every model preset."""
    from golden.trace import PRESETS
    out = {}
    for name in PRESETS:
        k = layer_matrices(name)
        out[name] = float(np.mean([gc.map_monarch(n, int(round(n ** 0.5)), m, "dense",
                                                  matrices=k).utilization
                                   for n in SWEEP_N for m in SWEEP_M]))
    return out


def main(quick: bool = False) -> list[dict]:
    rows = build_rows(quick)
    evals = cim_eval.build(quick)
    path = write_rows("cim", rows + evals)
    md = BENCH_DIR / "cim.md"
    md.write_text(cim_eval.markdown(evals))
    print(table(rows, ["n", "b", "array_size", "workload", "matrices", "strategy",
                       "utilization", "util_bound", "arrays", "min_arrays", "dense_arrays",
                       "steps", "cycles", "model_cycles", "load_cycles", "cycles_source"],
                {"utilization": "{:.1%}", "util_bound": "{:.1%}", "cycles": "{:.0f}",
                 "model_cycles": "{:.0f}"}))
    s = summarize(rows)
    k = s["layer"]["matrices"]
    print(f"\nutilization = weight cells / cells of the arrays used, over everything mapped "
          f"together (L and R of every matrix). matrix = one n x n Monarch matrix; layer = "
          f"one {LAYER_PRESET} MoE layer: {k // len(PROJECTIONS)} experts x "
          f"{'/'.join(PROJECTIONS)} = {k} n x n Monarch matrices mapped together.")
    side = []
    for n in SWEEP_N:
        for m in SWEEP_M:
            get = lambda w, st: next(r for r in rows if r["n"] == n and r["array_size"] == m
                                     and r["workload"] == w and r["strategy"] == st)
            side.append(dict(n=n, m=m, dense_matrix=get("matrix", "dense")["utilization"],
                             bound_matrix=get("matrix", "dense")["util_bound"],
                             dense_layer=get("layer", "dense")["utilization"],
                             sparse=get("matrix", "sparse")["utilization"],
                             arrays_matrix=get("matrix", "dense")["arrays"],
                             arrays_layer=get("layer", "dense")["arrays"]))
    print(table(side, ["n", "m", "dense_matrix", "bound_matrix", "dense_layer", "sparse",
                       "arrays_matrix", "arrays_layer"],
                {c: "{:.1%}" for c in ("dense_matrix", "bound_matrix", "dense_layer",
                                       "sparse")}))
    lay, one = s["layer"], s["matrix"]
    ok = "met" if lay["dense_mean_util"] >= TARGET_DENSE_MEAN else "NOT met"
    print(f"\nDenseMap mean utilization over the {len(SWEEP_N) * len(SWEEP_M)} (n, m) points:")
    print(f"  one MoE layer ({k} matrices, headline) {lay['dense_mean_util']:6.1%}   target "
          f">= {TARGET_DENSE_MEAN:.0%}: {ok}")
    print(f"  one matrix                          {one['dense_mean_util']:6.1%}   (upper "
          f"bound for one matrix under any mapping: {one['dense_mean_bound']:.1%})")
    print(f"  paper (whole models, mean)          {PAPER['dense_mean_util']:6.1%}")
    print("  one layer of each model preset: " + ", ".join(
        f"{name} {v:.1%}" for name, v in preset_layer_means().items()))
    print(f"SparseMap utilization at n=1024, m=256, b=32: {s['sparse_util_n1024_m256']:.1%} "
          f"(paper {PAPER['sparse_util_n1024_m256']:.1%}); SparseMap mean "
          f"{one['sparse_mean_util']:.1%} (the same for a layer: one line per array)")
    print(f"DenseMap / SparseMap utilization: {one['dense_over_sparse']:.1f}x one matrix, "
          f"{lay['dense_over_sparse']:.1f}x layer (paper ~{PAPER['dense_over_sparse']:.0f}x)")
    print(f"DenseMap arrays vs an unfactored dense mapping: {one['dense_array_reduction']:.1%} "
          f"fewer (one matrix), {lay['dense_array_reduction']:.1%} (layer) "
          f"(paper up to {PAPER['array_reduction']:.0%})")
    print("memory footprint and MACs vs dense (= b/2): "
          + ", ".join(f"n={n}: {v:.0f}x" for n, v in s["footprint_reduction"].items())
          + f" (paper >= {PAPER['footprint_reduction_min']:.0f}x)")
    print(f"linear (naive factor mapping) / DenseMap cycles per token: "
          f"{s['dense_vs_linear_cycles']:.2f}x")
    rtl = [r for r in rows if r["cycles_source"] == "rtl"]
    print(f"RTL-measured rows: {len(rtl)} (default tile, Verilator), every total equal to the "
          f"model: {all(r['rtl_total_cycles'] == r['model_total_cycles'] for r in rtl)}")
    print("\nPer mapping, as the paper evaluates it (golden.cim.evaluate_all; per token "
          "through every matrix mapped; ratios vs the unfactored matrix; presets on 128 x 128 "
          f"arrays here, every table with the paper's figures in {md.name}):")
    print(cim_eval.console(evals))
    print(f"written {path}, {md}")
    return rows + evals


if __name__ == "__main__":
    main()
