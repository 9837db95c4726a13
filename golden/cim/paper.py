"""The paper's claims (seed 003) beside our numbers, each with its definition and baseline.

``python -m golden.cim.paper`` prints the table of
docs/cim.md: a BERT-large-like matrix (n = 1024, b = 32) on 128 x 128 and 256 x 256
arrays with 8 columns per ADC (DNN+NeuroSim's subarray and ``numColMuxed``), the
default :class:`golden.cim.energy.EnergyConfig`, and for utilization also the mean over
the benchmark's sweep. Nothing here is fitted to the paper's figures: every number is
computed from the mapper, the cycle model and the energy parameters.
"""
from __future__ import annotations

import argparse
import json

from .evaluate import evaluate_all
from .mapper import map_monarch

SETUP_N, SETUP_B, SETUP_M = 1024, 32, (128, 256)
SWEEP_N, SWEEP_M = (256, 1024, 4096), (64, 128, 256)
LAYER = 24        # one MoE layer: 8 experts x (gate, up, down), as the benchmark's


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def paper_rows() -> list[dict]:
    """One dict per claim: claim, paper, ours, definition, why (they differ)."""
    ev = {m: evaluate_all(SETUP_N, SETUP_B, m) for m in SETUP_M}
    lay = {m: evaluate_all(SETUP_N, SETUP_B, m, matrices=LAYER) for m in SETUP_M}
    sweep = [(map_monarch(n, round(n ** 0.5), m, "dense"), map_monarch(n, round(n ** 0.5), m,
                                                                      "sparse"))
             for n in SWEEP_N for m in SWEEP_M]
    mean_dense = sum(d.utilization for d, _ in sweep) / len(sweep)
    mean_sparse = sum(s.utilization for _, s in sweep) / len(sweep)
    per_m = lambda f: "; ".join(f"m={m}: {f(m)}" for m in SETUP_M)   # noqa: E731
    d = {m: ev[m]["dense"] for m in SETUP_M}
    s = {m: ev[m]["sparse"] for m in SETUP_M}
    u = {m: ev[m]["unfactored"] for m in SETUP_M}
    return [
        dict(claim="DenseMap mean array utilization", paper="78.8 %",
             ours=f"{_pct(mean_dense)} (sweep mean, one matrix); n=1024: "
                  + per_m(lambda m: _pct(d[m].utilization)) + f"; layer of {LAYER}: "
                  + per_m(lambda m: _pct(lay[m]["dense"].utilization)),
             definition="Monarch weight cells / cells of the arrays used (L and R of all "
                        "matrices mapped); sweep n in 256/1024/4096, b = sqrt(n), m in 64/128/256",
             why="ours reaches the packing bound at every point; below 100 % only where one "
                 "matrix cannot fill an array (2nb < m^2). The paper's mean is over whole "
                 "models with their own matrix shapes, not available to us"),
        dict(claim="utilization gain over SparseMap", paper="+50 % and more (about 3x)",
             ours=f"sweep mean {_pct(mean_sparse)} -> {_pct(mean_dense)}; n=1024: "
                  + per_m(lambda m: f"+{100 * (d[m].utilization - s[m].utilization):.1f} "
                          f"points ({d[m].utilization / s[m].utilization:.1f}x)"),
             definition="DenseMap utilization - SparseMap utilization (points) and their ratio; "
                        "baseline SparseMap (utilization b/m)",
             why="SparseMap uses b/m of an array whatever the model; the gain grows with m/b "
                 "(4x at m=128, 8x at m=256 for b=32)"),
        dict(claim="fewer arrays than a dense mapping", paper="up to 87 % fewer",
             ours=per_m(lambda m: f"{_pct(d[m].array_reduction)} ({d[m].arrays} vs "
                        f"{u[m].arrays})"),
             definition="1 - DenseMap arrays / arrays of the unfactored n x n matrix "
                        "(baseline: (n/m)^2 per matrix)",
             why="our Monarch form has b = sqrt(n) (n/(2b) = 16x fewer weights at n=1024); "
                 "the paper's BERT-large factorization keeps 8x fewer parameters"),
        dict(claim="memory footprint and FLOPs vs dense", paper=">4x; BERT-large 8x params, "
                                                                 "5.7x FLOPs",
             ours=f"{d[128].footprint_reduction:.1f}x bytes, {d[128].flop_reduction:.1f}x "
                  f"FLOPs ({d[128].stored_bytes} vs {u[128].stored_bytes} B; "
                  f"{d[128].flops} vs {u[128].flops} FLOP per token)",
             definition="int8 weight bytes stored / FLOPs (2 x MACs) per token of the "
                        "unfactored matrix over DenseMap's (n / (2b), same for every m)",
             why="per weight matrix with b = sqrt(n): n/(2b) = 16x at n=1024. The paper's 8x "
                 "parameters equal n/(2 x 64), i.e. larger blocks than ours; its 5.7x FLOPs "
                 "is a whole model's (attention products stay dense)"),
        dict(claim="ADC resolution", paper="3 bits (DenseMap) vs 8 (dense)",
             ours=per_m(lambda m: f"{d[m].adc_bits} vs {u[m].adc_bits} bits"),
             definition="bits to digitize losslessly one physical column's sum for one "
                        "input pulse: ceil(log2(R + 1)), R = fired rows holding a weight in "
                        "that column (1-bit inputs, 1-bit cells); largest over the steps",
             why="dense: 128 rows -> 8 bits, as the paper. DenseMap fires one b x b block "
                 "per column per step: R = b = 32 -> 6 bits; 3 bits would need R <= 7 "
                 "(row subsets of at most 7 rows), which our schedule does not do. Our "
                 "digital macros compute the full int8 sum and have no ADC (docs/cim.md)"),
        dict(claim="latency", paper="1.73x (mean, vs dense)",
             ours=per_m(lambda m: f"{d[m].vs_unfactored['speedup']:.2f}x ({u[m].cycles} / "
                        f"{d[m].cycles} cycles)"),
             definition="cycles per token of the unfactored matrix / DenseMap's, the tile's "
                        "cycle model (one array per step, lanes = m/8; MID's permutation "
                        "counted)",
             why="our tile is single-issue: one array fires per step, so DenseMap's more, "
                 "narrower steps (2 + groups each) and MID cost cycles the paper's parallel "
                 "arrays hide; at m=256 one full array fires 64 one-block steps"),
        dict(claim="energy", paper="1.74x (vs dense)",
             ours=per_m(lambda m: f"{d[m].vs_unfactored['energy_gain']:.2f}x (ADC "
                        f"{_pct(d[m].adc_share)} of DenseMap's, {_pct(u[m].adc_share)} of "
                        f"dense)"),
             definition="energy per token of the unfactored matrix / DenseMap's "
                        "(golden.cim.energy.EnergyConfig defaults: ISAAC figures)",
             why="we count the weight matrix only, with ADC-dominated ISAAC figures: "
                 "DenseMap does n/(2m) times fewer conversions at fewer bits; the paper's "
                 "ratio is over whole models with digital periphery and data movement"),
    ]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m golden.cim.paper",
                                 description="The CIM paper's claims beside our numbers.")
    ap.add_argument("--json", action="store_true", help="print JSON (rows + every evaluation)")
    a = ap.parse_args(argv)
    rows = paper_rows()
    if a.json:
        evs = {m: {k: v.as_dict() for k, v in evaluate_all(SETUP_N, SETUP_B, m).items()}
               for m in SETUP_M}
        print(json.dumps({"claims": rows, "evaluations": evs}, indent=1))
        return
    print(f"Setup: n={SETUP_N}, b={SETUP_B}, arrays {' and '.join(f'{m}x{m}' for m in SETUP_M)}"
          ", 8 columns per ADC (lanes = m/8), default EnergyConfig")
    print("| paper claim | our number | definition (baseline) | why they differ |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['claim']}: {r['paper']} | {r['ours']} | {r['definition']} | {r['why']} |")


if __name__ == "__main__":       # pragma: no cover
    main()
