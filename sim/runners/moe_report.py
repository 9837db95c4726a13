"""The MoE-layer top's report section (``python -m sim run --engine moe``): wave views
grouped by function (:data:`MOE_GROUPS`, :data:`MOE_STREAMS`), the per-expert and
timeline plots, report.json and report.md."""
from __future__ import annotations

from pathlib import Path

from ..report import (open_waves, place_wave, save_plot, wave_signals, wave_time, write_files,
                      write_views)

#: GTKWave groups of the MoE-layer top: (title, top-level port leaves). Streams are
#: added one group each; the unit busy group also takes the units' own 1-bit busy
#: and the FSM states where the waveform has them (Verilator and Icarus both dump them).
MOE_GROUPS = [
    ("Control", ["clk", "rst", "clear", "busy", "layer"]),
    ("Errors (sticky: 1 descriptor, 2 token entry, 4 SpTC, 8 Logic-PIM)",
     ["err", "sptc_err", "pim_err"]),
    ("Cycle counters (since clear)", ["cycles", "steps", "sptc_jobs", "pim_jobs"]),
    ("Per-unit busy (counters; expert phase 0 none, 1 gate, 2 up, 3 h load, 4 down; then "
     "each unit's busy bit and controller states)",
     ["sptc_busy", "pim_busy", "sptc_phase", "pim_phase"]),
]
MOE_INTERNAL = ["sptc.busy", "pim.busy", "sctl_state", "pctl_state", "disp_state"]
MOE_STREAMS = [("job", "descriptors: LOAD, EXPERT, END"),
               ("tok", "token entries: token, gate, valid"),
               ("sptc_w", "SpTC weight beats"), ("sptc_act", "SpTC activations"),
               ("pim_din", "Logic-PIM data words"),
               ("trace", "executed schedule: unit, expert, slots"),
               ("y", "layer output: value, token, row")]



def gtkw_moe(wave: Path, names: list[str], module: str, out: Path, start_time: int = 0) -> dict:
    """Wave views (GTKWave + Surfer) of the MoE-layer top: control, errors, cycle
    counters, per-unit busy, then one group per stream; the GTKWave view starts at
    ``start_time`` (the waveform's time unit, see :func:`wave_time`), where the
    trace step begins."""
    have = set(names)
    pre = f"{module}."
    groups = []

    def group(title, sigs):
        rows = []
        for s in sigs:
            if s not in have:
                continue
            if s.endswith(("valid", "ready", "clk", "rst", "clear", ".busy")):
                fmt = "bin"                     # one bit
            elif s.endswith(("payload", "err")):
                fmt = "hex"
            else:
                fmt = "dec"                     # counters, registers, states
            rows.append((s, fmt))
        groups.append((title, rows))

    for title, leaves in MOE_GROUPS:
        sigs = [pre + lf for lf in leaves]
        if title.startswith("Per-unit busy"):
            sigs += [pre + lf for lf in MOE_INTERNAL]
        group(title, sigs)
    for port, what in MOE_STREAMS:
        group(f"Stream {port} ({what})",
              [f"{pre}{port}__{s}" for s in ("valid", "ready", "payload")])
    return write_views(wave, out, groups, start_time=start_time, signals_width=300)


_UNIT_NAMES = {"sptc": "SpTC", "pim": "Logic-PIM"}
_UNIT_COLORS = {"sptc": "tab:blue", "pim": "tab:orange"}


def _moe_plots(run_dir: Path, rep: dict, busy: dict) -> dict:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    jobs = [j for j in rep["jobs"] if "cycles" in j]
    files = {}
    if not jobs:
        return files
    # per expert: tokens routed (this step) vs cycles of its jobs, per unit
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    per: dict = {}
    for j in jobs:
        d = per.setdefault((j["unit"], j["expert"]), dict(tokens=0, cycles=0, model=0))
        d["tokens"] += j["tokens"]
        d["cycles"] += j["cycles"]
        d["model"] += j["model_cycles"]
    for u in ("sptc", "pim"):
        pts = [(k[1], v) for k, v in per.items() if k[0] == u]
        if not pts:
            continue
        ax.scatter([v["tokens"] for _, v in pts], [v["cycles"] for _, v in pts],
                   color=_UNIT_COLORS[u], label=f"{_UNIT_NAMES[u]}: RTL job cycles")
        ax.scatter([v["tokens"] for _, v in pts], [v["model"] for _, v in pts], marker="x",
                   color=_UNIT_COLORS[u], label=f"{_UNIT_NAMES[u]}: cycle model")
        for e, v in pts:
            ax.annotate(str(e), (v["tokens"], v["cycles"]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
    ax.set_xlabel("tokens routed to the expert and kept (padding slots not counted)")
    ax.set_ylabel("cycles (job start to job done)")
    ax.set_title("Per-expert tokens vs cycles (labels: expert id)")
    ax.legend(fontsize=7)
    files["plot_tokens"] = save_plot(fig, run_dir / "tokens_vs_cycles.png")

    # unit utilization timeline: busy bits per cycle (from the top's counters), the
    # jobs on top (labelled by expert), the drain of each program's output
    span = rep["cycles"]["span"]
    fig, ax = plt.subplots(figsize=(10, 3.6))
    rows = {"sptc": 2, "pim": 1}
    from ..moe import busy_runs
    for u, y in rows.items():
        runs = busy_runs(busy[u])
        ax.broken_barh(runs, (y - 0.38, 0.28), color=_UNIT_COLORS[u], alpha=0.45)
        for j in (j for j in jobs if j["unit"] == u):
            ax.broken_barh([(j["start"], j["cycles"])], (y - 0.05, 0.45), color=_UNIT_COLORS[u],
                           edgecolor="black", linewidth=0.5)
            ax.text(j["start"] + j["cycles"] / 2, y + 0.175, str(j["expert"]), ha="center",
                    va="center", fontsize=7)
    for p in rep["programs"]:
        if "first_y" not in p:
            continue
        ax.broken_barh([(p["first_y"], p["last_y"] - p["first_y"] + 1)], (-0.2, 0.4),
                       color="tab:green")
        first = min((j["start"] for j in jobs if j["unit"] == "sptc" and j["batch"] == p["batch"]),
                    default=None)
        if first is not None and first - p["start"] > 0.03 * max(span, 1):
            ax.text((p["start"] + first) / 2, 2 - 0.24, "LOAD", ha="center", va="center",
                    fontsize=6)
    ax.set_yticks([2, 1, 0], ["SpTC", "Logic-PIM", "output drain"])
    ax.set_ylim(-0.5, 2.6)
    ax.set_xlim(0, max(span, 1))
    ax.set_xlabel("cycle from the step's first descriptor (lower bars: unit busy, from the "
                  "top's counters; boxes: jobs, labelled by expert)")
    u = rep["units"]
    util = ", ".join(f"{_UNIT_NAMES[k]} busy {v['utilization']:.0%}" for k, v in u.items()
                     if v["utilization"] is not None)
    ax.set_title(f"Unit utilization timeline ({util} of {span} cycles)")
    files["plot_timeline"] = save_plot(fig, run_dir / "timeline.png")
    return files


def write_moe(run_dir: Path, rep: dict, wave: Path | None, busy: dict, module: str,
              start_ps: float = 0) -> dict:
    """Waveform + GTKWave save file, plots, report.json and report.md of a MoE-layer run."""
    files = {}
    dest = place_wave(wave, run_dir, "moe")
    if dest is not None:
        files["waveform"] = dest
        names = wave_signals(dest)
        files.update(gtkw_moe(dest, names, module, run_dir / "moe.gtkw",
                              wave_time(dest, start_ps)))
        rep["config"]["wave_signals"] = len(names)
    files.update(_moe_plots(run_dir, rep, busy))
    return write_files(run_dir, rep, files, _moe_markdown)


def _pct(v):
    return "-" if v is None else f"{v:.1%}"


def _moe_markdown(rep: dict) -> str:
    c, t, u, cy = rep["config"], rep["trace"], rep["units"], rep["cycles"]
    out = [f"# moe-rtl sim report: MoE layer, {t['preset']} step {t['step']}", ""]
    if rep["bit_exact"]:
        out.append(f"**Bit-exact:** yes — all {rep['checked_elements']} output elements equal "
                   "`golden.moe.moe_layer`, the executed schedule (trace stream) equals the "
                   "compiler's program, no error bit set.")
    else:
        out.append("**Bit-exact:** NO")
    out.append(f"**Cycle checks:** {'pass' if rep['cycles_match_model'] else 'FAIL'} — "
               + rep["cycle_check_note"])
    out.append("")
    if rep["failure"]:
        out += ["```", rep["failure"][:4000], "```", ""]
    out += ["## Configuration", "",
            f"- top: `hdl.moe` config `{c['build']}`: SpTC {c['sptc']['rows']} x "
            f"{c['sptc']['cols']} PEs, Logic-PIM {c['pim']['bundle_bits']}-bit bundles "
            f"({c['pim']['words']} words), max_tokens {c['max_tokens']}, "
            f"max_hidden {c['max_hidden']}, max_ffn {c['max_ffn']}",
            f"- schedule: {c['capacity']} capacity"
            + (f" (alpha {c['alpha']})" if c["capacity"] == "static" else "")
            + f", dispatch {c['dispatch']}, SpTC weights {c['mode']}",
            f"- layer: hidden {c['hidden']}, ffn {c['ffn']}, {c['experts']} routed + "
            f"{c['shared']} shared experts, each a gated FFN (gate and up ffn x hidden, SiLU "
            f"table, down hidden x ffn; `golden.ffn`)"
            + (f", Samoyeds (N, M, V) = {tuple(c['nmv'])} on the SpTC"
               if c["mode"] == "samoyeds" else "")
            + f"; requant gate {tuple(c['gate_rq'])}, up {tuple(c['up_rq'])}, product "
            f"{tuple(c['prod_rq'])}, down {tuple(c['expert_rq'])}, combine "
            f"{tuple(c['combine_rq'])}, shared gate {c['shared_gate']}",
            f"- simulator: {c['simulator']}; seed {c['seed']}; stalls: "
            + ("random valid/ready stalls on every stream" if c["stalls"] else "none"),
            f"- wall time: build {c['build_seconds']} s, simulation {c['sim_seconds']} s",
            "", "## Trace", "",
            f"- preset {t['preset']} at scale {t['scale']} (hidden {t['hidden']}, FFN "
            f"{t['ffn']}), {t['experts']} routed + {t['shared']} shared experts, top-{t['top_k']}, "
            f"skew {t['skew']}, trace seed {t['seed']}",
            f"- step {t['step']}: {t['tokens']} tokens ({t['prefill_tokens']} prefill, "
            f"{t['decode_tokens']} decode), imbalance (max-mean)/mean = {t['imbalance']:.2f}; "
            f"{len(rep['programs'])} program(s) of at most {c['max_tokens']} tokens",
            f"- capacity: {rep['schedule']['dropped']} routed (token, expert) pairs dropped, "
            f"{rep['schedule']['padded']} padding slots, {rep['schedule']['recompiles']} "
            "recompiles", "",
            "| expert | tokens routed | unit | slots | jobs |", "|---:|---:|---|---:|---:|"]
    for e, n in enumerate(t["tokens_per_expert"] + [t["tokens"]] * t["shared"]):
        js = [j for j in rep["jobs"] if j["expert"] == e]
        units = "/".join(sorted({_UNIT_NAMES[j["unit"]] for j in js})) or "-"
        name = f"{e}" + (" (shared)" if e >= t["experts"] else "")
        out.append(f"| {name} | {n} | {units} | {sum(j['slots'] for j in js)} | {len(js)} |")
    out += ["", "## Cycles", "",
            f"- step: {cy['span']} cycles from the first descriptor to the last output "
            f"({cy['drain']} of them, {_pct(cy['drain_share'])}, draining the "
            f"{t['tokens']} x {t['hidden']} output at {c['y_lanes']} elements per cycle; "
            f"drain model `MoEConfig.drain_cycles`: {cy['model_drain']})",
            f"- cycle models (`golden.schedule.step_cost`, unit times only): SpTC "
            f"{cy['model_sptc']} (jobs + activation LOAD), Logic-PIM {cy['model_pim']}; "
            f"makespan {cy['model_makespan']} (step / makespan = {cy['span_over_makespan']})",
            "", "| unit | jobs | busy cycles | utilization | job cycles | model | ideal | "
                "efficiency (ideal / busy) |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for k, v in u.items():
        out.append(f"| {_UNIT_NAMES[k]} | {v['jobs']} | {v['busy_cycles']} | "
                   f"{_pct(v['utilization'])} | {v['job_cycles']} | {v['model_cycles']} | "
                   f"{v['ideal_cycles']:.0f} | {_pct(v['efficiency'])} |")
    out += ["", "Busy = cycles the unit or its controller is busy (the top's `sptc_busy` / "
                "`pim_busy` counters, LOAD included). Ideal: SpTC = useful MACs of the kept "
                "tokens / (2 x rows x cols) per cycle; Logic-PIM = the expert's weight bytes "
                "at the bundle rate (one pass over the weights). Padding slots and the top's "
                "overheads count against efficiency.",
            "", "## Jobs", "",
            "Each job is a whole gated FFN: its phases are the unit's cycles in the gate, "
            "up, h load and down parts (the top's `sptc_phase` / `pim_phase`; on the "
            "Logic-PIM h goes back into the token buffer inside the down part's "
            "LOAD_TOKENS, so the h load column counts only the hand-over) and the model's "
            "(SpTC: `TimeModel.sptc_phases`; Logic-PIM: `golden.pim` per GEMM with its "
            "SET_OUT and LOAD_TOKENS).", "",
            "| # | program | unit | expert | slots | tokens | start | cycles | model | "
            "gate / up / h load / down | model parts | ideal | efficiency | check |",
            "|---:|---:|---|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---|"]
    for i, j in enumerate(rep["jobs"]):
        if "cycles" not in j:
            continue
        ph = " / ".join(str(v) for v in j.get("phases", [])) or "-"
        mp = " / ".join(str(v) for v in j.get("model_phases", [])) or "-"
        out.append(f"| {i} | {j['batch']} | {_UNIT_NAMES[j['unit']]} | {j['expert']} | "
                   f"{j['slots']} | {j['tokens']} | {j['start']} | {j['cycles']} | "
                   f"{j['model_cycles']} | {ph} | {mp} | {j['ideal_cycles']:.0f} | "
                   f"{_pct(j['efficiency'])} | {j['check']} |")
    out += ["", rep["cycle_check_note"]]
    if rep["cycle_problems"]:
        out += [""] + [f"- {p}" for p in rep["cycle_problems"]]
    out += ["", "## Files", ""]
    out += [f"- {k}: `{v}`" for k, v in rep["files"].items()]
    if "gtkwave" in rep["files"]:
        out += ["", open_waves(rep["files"]) + " (GTKWave starts at "
                    "the step's first descriptor; the layer preamble that writes the experts' "
                    "weights into the Logic-PIM comes before). Groups: control, errors, cycle "
                    "counters, per-unit busy (counters, each unit's busy bit, controller "
                    "states), then one per stream (`job`, `tok`, `sptc_w`, `sptc_act`, "
                    "`pim_din`, `trace`, `y`)."]
    return "\n".join(out) + "\n"
