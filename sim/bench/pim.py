"""Benchmark of Engine 2 (Logic-PIM): bundle bandwidth, decode-stage MoE, Duplex split.

Three measurements, written to ``build/bench/pim.json`` (a list of rows, each
with ``kind``) and printed as tables:

``stream`` rows - sustained fraction of the peak bundle bandwidth while one GEMM
    streams weights, measured on the RTL (small config, Verilator, the DRAM
    command trace of the run; the cycle model reproduces it command for
    command) and from the cycle model at the default config on a long stream.
``moe`` rows - one decode-only MoE step of Mixtral-8x7B shapes scaled by 16
    (hidden 256, expert FFN 896; 8 experts, top-2), for average tokens per
    expert 1..64 and three routing skews (sim.traces): cycles with every expert
    on Logic-PIM, on the SpTC alone, and split by Duplex co-processing. Per-
    expert times come from the cycle models: golden.pim (default config,
    512-bit bundles) and golden.sptc (Engine 1, default config, dense int8)
    with its weights streamed at plain-HBM3 bandwidth = 1/4 of the bundle rate
    (Duplex's premise); ``cycles_sptc_compute`` is the SpTC model alone, as if
    the weights were already on chip. Both units are counted in the same clock.
``crossover`` row - for one expert, the token count (and its Op/B) at which
    Logic-PIM stops being faster than the xPU, and the PIM's own roofline ridge,
    beside the paper's (about 8 FLOP/B).
"""
from __future__ import annotations

import json
import warnings
from functools import lru_cache
from pathlib import Path

from golden import duplex, pim as gp
from golden import sptc

from . import BENCH_DIR

OUT = BENCH_DIR / "pim.json"
PRESET, SCALE = "mixtral-8x7b", 16
PAPER_CROSSOVER_OPB = 8.0


def _stream_rows(quick: bool) -> list[dict]:
    from hdl.pim import CONFIGS
    from sim.runners import get
    from tb import pim as tbp
    small = CONFIGS["small"]
    toks = [1, 4] if quick else [1, 2, 4, 8]
    jobs = [dict(name=f"stream_t{t}", timed=True, program=tbp.stream_program(small, small.words, t))
            for t in toks]
    res = get("pim").simulate("small", jobs, BENCH_DIR / "pim_rtl", seed=1)
    if int(res["violations"]):
        raise RuntimeError(f"pim bench: {int(res['violations'])} DRAM timing violations")
    rows = []
    for i, t in enumerate(toks):
        st = tbp.stream_stats(small, res[f"cmds{i}"])
        assert res["cycles_rtl"][i] == res["cycles_model"][i]
        rows.append(dict(kind="stream", source="rtl", config="small", tokens=t, skew=None,
                         bound="bandwidth" if t <= small.timing.tCCD_L else "compute",
                         words=st["words"], cycles_pim=int(res["cycles_rtl"][i]),
                         cycles_model=int(res["cycles_model"][i]), cycles_sptc=None,
                         cycles_coprocessed=None, bandwidth_fraction=round(st["fraction"], 4),
                         refs=st["refs"], fraction_of_attainable=round(st["fraction_of_attainable"], 4)))
    for t in toks:
        st = gp.stream_bandwidth(gp.CONFIG_DEFAULT, 8_000 if quick else 32_000, tokens=t)
        rows.append(dict(kind="stream", source="model", config="default", tokens=t, skew=None,
                         bound="bandwidth" if t <= gp.CONFIG_DEFAULT.timing.tCCD_L else "compute",
                         words=st["words"], cycles_pim=st["cycles"], cycles_model=st["cycles"],
                         cycles_sptc=None, cycles_coprocessed=None,
                         bandwidth_fraction=round(st["fraction"], 4), refs=st["refs"],
                         fraction_of_attainable=round(st["fraction_of_attainable"], 4)))
    return rows


def _tables(hidden: int, ffn: int):
    cfg = gp.CONFIG_DEFAULT
    xcfg = sptc.SpTCConfig()
    xbw = cfg.peak_bytes_per_cycle / 4
    shapes = [(ffn, hidden), (ffn, hidden), (hidden, ffn)]

    @lru_cache(maxsize=None)
    def t_pim(n):
        return gp.expert_ffn_cycles(cfg, hidden, ffn, n)

    @lru_cache(maxsize=None)
    def t_xpu_compute(n):
        return sum(sptc.predict_cycles(xcfg, "dense", m, k, n) for m, k in shapes)

    @lru_cache(maxsize=None)
    def t_xpu(n):
        return sum(max(sptc.predict_cycles(xcfg, "dense", m, k, n), -(-m * k // int(xbw)))
                   for m, k in shapes)

    return t_pim, t_xpu, t_xpu_compute, xbw


def _moe_rows(quick: bool, t_pim, t_xpu, t_xpu_compute, hidden, ffn) -> list[dict]:
    from golden import trace as traces
    p = traces.PRESETS[PRESET]
    cfg = gp.CONFIG_DEFAULT
    rows = []
    for avg in ([1, 4, 16, 64] if quick else [1, 2, 4, 8, 16, 32, 64]):
        for skew in (["uniform", "hot"] if quick else ["uniform", "zipf", "hot"]):
            with warnings.catch_warnings():
                # at a few tokens per step the hot target is below the router's own
                # sampling noise: the generator says so and uses no boost; the row
                # records the imbalance the step really has
                warnings.simplefilter("ignore", UserWarning)
                tr = traces.generate(PRESET, steps=1, seed=avg, scale=SCALE, skew=skew,
                                     decode=avg * p.num_experts // p.top_k, prefill=0)
            step = tr.step(0)
            assert step.is_decode_only and duplex.dispatch_stage("expert_ffn", True) == "pim"
            counts = [int(c) for c in step.tokens_per_expert()]
            a = duplex.coprocess(counts, t_xpu, t_pim)
            pim_bytes = sum(-(-n // cfg.max_tokens) * 3 * hidden * ffn for n in counts if n)
            cyc_pim = sum(t_pim(n) for n in counts if n)
            rows.append(dict(
                kind="moe", tokens=avg, skew=skew, tokens_per_expert=counts,
                imbalance=round(step.imbalance(), 3),
                cycles_sptc=int(a.all_xpu), cycles_sptc_compute=sum(t_xpu_compute(n) for n in counts if n),
                cycles_pim=int(cyc_pim), cycles_coprocessed=int(a.makespan),
                experts_on_pim=a.moved, speedup_vs_sptc=round(a.all_xpu / a.makespan, 3),
                speedup_vs_pim=round(cyc_pim / a.makespan, 3),
                bandwidth_fraction=round(pim_bytes / (cyc_pim * cfg.peak_bytes_per_cycle), 4)))
    return rows


def _crossover_row(t_pim, t_xpu, t_xpu_compute, hidden, ffn, xbw) -> dict:
    tmax = 64
    opb = lambda t: duplex.op_per_byte("expert_ffn", tokens=t, hidden=hidden, ffn=ffn)  # noqa: E731
    cross = duplex.crossover(t_xpu, t_pim, tmax)
    cross_c = duplex.crossover(t_xpu_compute, t_pim, tmax)
    base = t_pim(1)
    ridge_t = max(t for t in range(1, tmax + 1) if t_pim(t) <= 1.05 * base)
    return dict(kind="crossover", tokens=cross, skew=None, cycles_sptc=t_xpu(cross) if cross else None,
                cycles_pim=t_pim(cross) if cross else None, cycles_coprocessed=None,
                bandwidth_fraction=None, crossover_tokens=cross,
                crossover_opb=round(opb(cross), 2) if cross else None,
                crossover_tokens_compute_only=cross_c,
                crossover_opb_compute_only=round(opb(cross_c), 2) if cross_c else None,
                pim_ridge_tokens=ridge_t, pim_ridge_opb=round(opb(ridge_t), 2),
                paper_crossover_opb=PAPER_CROSSOVER_OPB, xpu_bytes_per_cycle=xbw,
                pim_peak_bytes_per_cycle=gp.CONFIG_DEFAULT.peak_bytes_per_cycle,
                pim_cycles_by_tokens={t: t_pim(t) for t in (1, 2, 4, 8, 16, 32, 64)},
                xpu_cycles_by_tokens={t: t_xpu(t) for t in (1, 2, 4, 8, 16, 32, 64)})


def _print(rows):
    print("Logic-PIM bundle bandwidth while streaming weights (one GEMM)")
    print(f"{'source':>6} {'config':>8} {'tokens':>6} {'words':>7} {'cycles':>8} {'REFs':>5} "
          f"{'of peak':>8} {'of attainable':>14} {'bound':>10}")
    for r in rows:
        if r["kind"] == "stream":
            print(f"{r['source']:>6} {r['config']:>8} {r['tokens']:>6} {r['words']:>7} "
                  f"{r['cycles_pim']:>8} {r['refs']:>5} {r['bandwidth_fraction']:>8.1%} "
                  f"{r['fraction_of_attainable']:>14.1%} {r['bound']:>10}")
    print(f"\nDecode-only MoE step, {PRESET} / {SCALE} (hidden 256, FFN 896, 8 experts, top-2), cycles")
    print(f"{'tok/exp':>7} {'skew':>8} {'imbal':>6} {'SpTC':>9} {'SpTC(cmp)':>9} {'PIM':>9} "
          f"{'split':>9} {'on PIM':>6} {'vs SpTC':>7} {'PIM BW':>7}")
    for r in rows:
        if r["kind"] == "moe":
            print(f"{r['tokens']:>7} {r['skew']:>8} {r['imbalance']:>6.2f} {r['cycles_sptc']:>9} "
                  f"{r['cycles_sptc_compute']:>9} {r['cycles_pim']:>9} {r['cycles_coprocessed']:>9} "
                  f"{r['experts_on_pim']:>6} {r['speedup_vs_sptc']:>6.2f}x "
                  f"{r['bandwidth_fraction']:>7.1%}")
    c = next(r for r in rows if r["kind"] == "crossover")
    print("\nCrossover (one expert, Op/B = ops per byte, int8 weights: Op/B ~ 2 x tokens)")
    print(f"  Logic-PIM roofline ridge (cycle model; above it the MAC array, not the banks, "
          f"sets the pace): {c['pim_ridge_tokens']} tokens, Op/B {c['pim_ridge_opb']}")
    print(f"  PIM vs SpTC at plain-HBM3 bandwidth ({c['xpu_bytes_per_cycle']:g} B/cycle): "
          f"{c['crossover_tokens']} tokens, Op/B {c['crossover_opb']}")
    cc = c["crossover_tokens_compute_only"]
    print("  PIM vs SpTC compute only (weights on chip): "
          + ("the SpTC is at least as fast at every token count" if cc in (None, 1)
             else f"{cc} tokens, Op/B {c['crossover_opb_compute_only']}"))
    print(f"  paper (Duplex, FP16): about {c['paper_crossover_opb']:g} FLOP/B")


def main(quick: bool = False) -> list[dict]:
    from golden.trace import PRESETS, scaled_dim
    p = PRESETS[PRESET]
    hidden, ffn = scaled_dim(p.hidden, SCALE), scaled_dim(p.ffn, SCALE)
    t_pim, t_xpu, t_xpu_compute, xbw = _tables(hidden, ffn)
    rows = _stream_rows(quick)
    rows += _moe_rows(quick, t_pim, t_xpu, t_xpu_compute, hidden, ffn)
    rows.append(_crossover_row(t_pim, t_xpu, t_xpu_compute, hidden, ffn, xbw))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(rows, indent=1))
    _print(rows)
    print(f"\nwritten {OUT}")
    return rows


if __name__ == "__main__":
    import sys
    main(quick="--quick" in sys.argv)
