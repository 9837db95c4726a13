"""The ``make sim ENGINE=cim`` report: the run's jobs beside the evaluation model.

For the run's Monarch shape (n = b*b on the simulated tile's m x m arrays) the report
carries, per mapping (``golden.cim.evaluate_all``: the unfactored n x n matrix, linear,
SparseMap, DenseMap), arrays, utilization, footprint and FLOPs against the unfactored
matrix, ADC bits, cycles and energy per token; per job the RTL's cycles per token beside
the model's and the exercised ADC range the tile reported (``adc_rows``/``adc_bits``)
beside the model's (``golden.cim.program_activity`` of the job's program; the mapping's
design figure, :func:`golden.cim.evaluate.monarch_steps`, beside it). Pictures: the
placement of the L and R blocks of each mapping run (``placement_<mapping>.svg``) and
cycles and energy per mapping side by side (``mappings.svg``), linked from report.md.
The same for the trace's MoE layer held together (its experts x gate/up/down, each
projection one n x n Monarch matrix: ``placement_layer_<mapping>.svg``), where DenseMap
fills whole arrays that one small matrix cannot.
"""
from __future__ import annotations

from pathlib import Path

from golden import cim as gc
from golden.cim.evaluate import monarch_steps

from .. import report
from ..bench import cim_eval

STRATEGY_LABEL = {"linear": "linear", "sparse": "SparseMap", "dense": "DenseMap"}


def job_figures(jobs, res: dict, config: gc.CIMConfig, stalls: bool) -> list[dict]:
    """Per job: RTL cycles (total, per token) beside the cycle model's, the exercised ADC
    range the RTL reported beside the model's, and the mapping's design ADC figure."""
    from tb.cim import job_program
    rows = []
    for i, j in enumerate(jobs):
        b = j.monarchs[0].b
        n, k, tokens = b * b, len(j.monarchs), len(j.xs)
        mp = gc.map_monarch(n, b, config.m, j.strategy, matrices=k)
        words, beats, _ = job_program(j, config)
        model_rows = max(gc.program_activity(words, config, beats).tokens, default=0)
        design = max(s.rows_per_col for s in monarch_steps(mp, config))
        row = dict(job=j.name, strategy=j.strategy, tokens=tokens,
                   model_cycles=gc.program_cycles(mp, config, tokens),
                   model_cycles_per_token=gc.token_cycles(mp, config),
                   adc_rows_model=model_rows, adc_bits_model=gc.rows_bits(model_rows),
                   adc_rows_design=design, adc_bits_design=gc.EnergyConfig().adc_bits(design))
        if res:
            lo, hi = int(res["offsets"][i]), int(res["offsets"][i + 1])
            costs, ops = res["costs"][lo:hi], res["cost_ops"][lo:hi]
            once = int(sum(c for c, o in zip(costs, ops) if o in ("LOADW", "CFG")))
            rtl_rows = int(res["adc_rows"][i])
            rtl_bits = int(res["adc_bits"][i])
            row.update(cycles=int(res["total"][i]), steps=int(res["steps"][i]),
                       cycles_per_token=(int(res["total"][i]) - once) / (tokens * k),
                       adc_rows_rtl=rtl_rows, adc_bits_rtl=rtl_bits)
            row["adc_ok"] = (row["adc_rows_rtl"], row["adc_bits_rtl"]) == (
                model_rows, row["adc_bits_model"])
            row["cycles_ok"] = None if stalls else (row["cycles"] == row["model_cycles"])
        rows.append(row)
    return rows


def checks(rows: list[dict]) -> dict:
    """The run's ADC and cycle checks over its jobs (None: not compared)."""
    ran = [r for r in rows if "adc_ok" in r]
    cyc = [r["cycles_ok"] for r in ran if r["cycles_ok"] is not None]
    return dict(adc_ok=all(r["adc_ok"] for r in ran) if ran else None,
                cycles_ok=all(cyc) if cyc else None)


def evaluation(n: int, b: int, config: gc.CIMConfig, matrices: int = 1) -> dict:
    """``evaluate_all`` of ``matrices`` n x n matrices on the tile's m x m arrays (its cycle
    costs; the tile's array count does not limit the model)."""
    return gc.evaluate_all(n, b, config.m, matrices=matrices, config=config)


def write_pictures(run_dir: Path, evals: dict, strategies, prefix: str = "") -> dict:
    """``placement_<prefix><s>.svg`` per strategy and ``<prefix>mappings.svg``."""
    files = {}
    for s in strategies:
        ev = evals[s]
        mp = gc.map_monarch(ev.n, ev.b, ev.array_size, s, matrices=ev.matrices)
        files[f"placement_{prefix}{s}"] = run_dir / f"placement_{prefix}{s}.svg"
        files[f"placement_{prefix}{s}"].write_text(gc.placement_svg(mp))
    files[f"{prefix}mappings"] = run_dir / f"{prefix}mappings.svg"
    files[f"{prefix}mappings"].write_text(gc.bars_svg(evals))
    return files


def _cycles_plot(run_dir: Path, rows: list[dict]) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar(range(len(rows)), [r["cycles"] for r in rows], label="RTL cycles")
    ax.plot(range(len(rows)), [r["model_cycles"] for r in rows], "kx", label="cycle model")
    ax.set_xticks(range(len(rows)), [str(r["job"])[:18] for r in rows], rotation=30,
                  ha="right", fontsize=7)
    ax.set_ylabel("cycles")
    ax.set_title("cim: cycles per job (weight load + tokens)")
    ax.legend()
    return report.save_plot(fig, run_dir / "cycles.png")


def _yes(v) -> str:
    return "not compared" if v is None else ("yes" if v else "NO")


def write(run_dir: Path, module: str, info: dict, trace_info: dict, jobs, rows: list[dict],
          config: gc.CIMConfig, verdict: bool, failure: str | None, wave, notes: list[str],
          stalls: bool, layer: int) -> dict:
    """report.json/md, pictures, the cycles plot and (with a waveform) its wave views;
    ``rows``: :func:`job_figures` of ``jobs``; ``layer``: matrices of the trace's MoE
    layer."""
    files = {}
    dest = report.place_wave(wave, run_dir, "cim") if verdict else None
    if dest is not None:
        files["waveform"] = dest
        files.update(report.gtkw_generic(dest, report.wave_signals(dest), module,
                                         run_dir / "cim.gtkw"))
    b = jobs[0].monarchs[0].b
    n = b * b
    ran = [r for r in rows if "cycles" in r]
    chk = checks(rows)
    evals = evaluation(n, b, config)
    strategies = list(dict.fromkeys(j.strategy for j in jobs))
    files.update(write_pictures(run_dir, evals, strategies))
    lay = evaluation(n, b, config, layer)
    files.update(write_pictures(run_dir, lay, strategies, "layer_"))
    if ran:
        files["plot_cycles"] = _cycles_plot(run_dir, ran)
    ev_rows = [cim_eval.eval_row(ev, f"n={n}, b={b}, m={config.m}, one matrix")
               for ev in evals.values()]
    lay_rows = [cim_eval.eval_row(ev, f"n={n}, b={b}, m={config.m}, layer of {layer}")
                for ev in lay.values()]
    claims = {r["claim"]: dict(r, fields=list(cim_eval.CLAIM_FIELDS[r["claim"]]))
              for r in cim_eval.claim_rows()}
    rep = {"config": info, "trace": trace_info, "jobs": ran,
           "units": {"cim": {"cycles": sum(r["cycles"] for r in ran), "jobs": len(ran)}},
           "bit_exact": verdict, "failure": failure, "checks": chk,
           "evaluation": {r["mapping"]: r for r in ev_rows},
           "evaluation_layer": {r["mapping"]: r for r in lay_rows},
           "energy_config": gc.EnergyConfig().as_dict(), "notes": notes}

    def markdown(rep):
        md = ["# moe-rtl sim report: cim", "",
              f"**Bit-exact:** {'yes' if verdict else 'NO'}", "",
              f"**Exercised ADC range, RTL = model on every job:** {_yes(chk['adc_ok'])}", "",
              f"**Cycles, RTL = cycle model on every job:** {_yes(chk['cycles_ok'])}"
              + (" (random stalls)" if stalls else ""), ""]
        if failure:
            md += ["```", failure[:4000], "```", ""]
        md += ["## Configuration", ""] + [f"- {k}: {v}" for k, v in info.items()]
        md += ["", "## Trace", ""] + [f"- {k}: {v}" for k, v in trace_info.items()]
        md += ["", "## Jobs: RTL beside the model", "",
               "| job | steps | cycles (model) | cycles/token (model) | ADC rows RTL / model "
               "| ADC bits RTL / model | design ADC rows / bits |",
               "|---|---:|---:|---:|---:|---:|---:|"]
        for r in ran:
            md.append(f"| {r['job']} | {r['steps']} | {r['cycles']} ({r['model_cycles']}) | "
                      f"{r['cycles_per_token']:g} ({r['model_cycles_per_token']}) | "
                      f"{r['adc_rows_rtl']} / {r['adc_rows_model']} | "
                      f"{r['adc_bits_rtl']} / {r['adc_bits_model']} | "
                      f"{r['adc_rows_design']} / {r['adc_bits_design']} |")
        md += ["", "ADC rows: the largest number, over a token's steps and the columns they "
               "read, of fired rows whose cell is nonzero (the tile's `adc_rows`, model "
               "`golden.cim.program_activity`); bits = ceil(log2(rows + 1)). Design: fired "
               "rows holding a stored weight (`golden.cim.evaluate`), the resolution an analog "
               "macro needs for any weights of this mapping: a linear tile stores its "
               "factors' zeros, so it needs all m rows while only b hold nonzeros. "
               "cycles/token: job cycles without CFG and LOADW, per token."]
        md += ["", f"## Mappings as the paper evaluates them (n={n}, b={b}, "
               f"{config.m} x {config.m} arrays, one matrix)", "",
               "Per token (`golden.cim.evaluate_all`); ratios against the unfactored "
               "n x n matrix on the same arrays; column headers carry the paper's figure "
               "(definitions and baselines below).", ""]
        md += cim_eval.mapping_table(ev_rows, claims)
        parts = list(ev_rows[0]["energy_pj"])
        md += ["", "Energy per token by part (pJ, `golden.cim.EnergyConfig` defaults):", "",
               "| mapping | " + " | ".join(parts) + " | total |", "|---" + "|---:" *
               (len(parts) + 1) + "|"]
        md += [f"| {r['label']} | " + " | ".join(f"{r['energy_pj'][p]:.1f}" for p in parts)
               + f" | {r['energy_total_pj']:.1f} |" for r in ev_rows]
        md += ["", "### Pictures", "",
               "Cycles and energy per token of each mapping:", "",
               "![cycles and energy per mapping](mappings.svg)", ""]
        for s in strategies:
            md += [f"Placement, {STRATEGY_LABEL.get(s, s)} (colour = block diagonal):", "",
                   f"![placement {s}](placement_{s}.svg)", ""]
        md += [f"## The trace's MoE layer held together ({layer} matrices: experts x "
               f"gate/up/down, each n x n, on {config.m} x {config.m} arrays)", "",
               "Per token through all of them; the model only (the simulated tile holds "
               f"{config.arrays} arrays).", ""]
        md += cim_eval.mapping_table(lay_rows, claims)
        md += ["", "![cycles and energy per mapping, layer](layer_mappings.svg)", ""]
        for s in strategies:
            md += [f"Placement, {STRATEGY_LABEL.get(s, s)}, layer (first arrays; colour = "
                   "block diagonal, label = matrix:block):", "",
                   f"![placement {s}, layer](placement_layer_{s}.svg)", ""]
        md += ["### The paper's claims", "",
               "At the paper's setup (n=1024, b=32, 128 x 128 and 256 x 256 arrays; "
               "`python -m golden.cim.paper`, and every (n, b, m) in `make bench`'s "
               "build/bench/cim.md):", ""] + cim_eval.claim_table(claims)
        md += [""] + [f"- {x}" for x in notes]
        md += ["", "## Files", ""] + [f"- {k}: `{v}`" for k, v in rep["files"].items()]
        return "\n".join(md) + "\n"
    return report.write_files(run_dir, rep, files, markdown)
