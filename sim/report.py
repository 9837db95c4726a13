"""The files `make sim` writes: report.json, report.md, plots, and the wave views:
a GTKWave save file (``.gtkw``, written with pyvcd's ``vcd.gtkw``) and a Surfer
command file (``.sucl``) with the same signal groups. Both name the waveform by
its file name only (relative to the run folder), so a run folder can be moved
or shared: ``gtkwave <run>/moe.fst <run>/moe.gtkw`` and ``surfer <run>/moe.fst
--command-file <run>/moe.sucl`` (from inside the folder: ``gtkwave moe.gtkw``)."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np

# Signal groups of the GTKWave save file: (group title, name suffixes in port order).
GROUPS = [
    ("Control", ["clk", "rst", "start", "clear", "busy", "done", "op", "mode", "out_mode",
                 "n_sel", "n_row_tiles", "k_words"]),
    ("Cycle counter", ["cycles"]),
    ("Errors (sticky: 1 config, 2 meta, 4 sel, 8 index)", ["error"]),
    ("Weight stream", ["w__valid", "w__ready", "w__payload"]),
    ("Activation stream", ["act__valid", "act__ready", "act__payload"]),
    ("SEL stream", ["sel__valid", "sel__ready", "sel__payload"]),
    ("Result stream", ["res__valid", "res__ready", "res__payload"]),
]



def _save(fig, path: Path) -> Path:
    """Write a finished matplotlib figure as a PNG and free it."""
    import matplotlib.pyplot as plt
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

def wave_signals(path: Path) -> list[str]:
    """Full names of the signals in a waveform (FST or VCD), read back with pywellen.

    A missing file raises FileNotFoundError (pywellen itself panics); an unreadable
    one ValueError naming the file."""
    from pywellen import Waveform
    path = Path(path)
    if not path.is_file():
        others = sorted(p.name for p in path.parent.glob(f"{path.stem}.*")
                        if p.suffix in (".fst", ".vcd")) if path.parent.is_dir() else []
        raise FileNotFoundError(f"waveform {path} does not exist"
                                + (f" (the folder has {', '.join(others)})" if others else ""))
    try:
        return [v.full_name for v in Waveform(str(path)).all_vars()]
    except BaseException as exc:   # pywellen reports a bad file as a Rust panic
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        raise ValueError(f"waveform {path}: not a readable FST or VCD file "
                         f"({type(exc).__name__}: {str(exc)[:200]})") from None


# A wave view: [(group title, [(full signal name, "bin"|"hex"|"dec"), ...]), ...]
Groups = list[tuple[str, list[tuple[str, str]]]]


def _surfer_word(title: str) -> str:
    """A group title as one Surfer command word (its divider_add takes one word)."""
    return re.sub(r"\W+", "_", title.split(" (")[0]).strip("_") or "group"


def write_views(wave: Path, gtkw_out: Path, groups: Groups, start_time: int = 0,
                signals_width: int = 260) -> dict:
    """Write the GTKWave save file ``gtkw_out`` and a Surfer command file next to it
    (same stem, ``.sucl``) showing ``groups`` of ``wave``. Paths are relative to the
    run folder (the waveform's file name), so the folder can be moved; an empty
    group is left out. Returns ``{"gtkwave": path, "surfer": path}``."""
    from vcd.gtkw import GTKWSave

    wave, gtkw_out = Path(wave), Path(gtkw_out)
    if wave.parent.resolve() != gtkw_out.parent.resolve():
        raise ValueError(f"wave view {gtkw_out}: the waveform {wave} must be in the same "
                         f"folder (paths are relative to the run folder)")
    groups = [(t, sigs) for t, sigs in groups if sigs]
    with open(gtkw_out, "w") as fh:
        gs = GTKWSave(fh)
        gs.comment("moe-rtl wave view; paths are relative to this folder")
        gs.dumpfile(wave.name, abspath=False)
        gs.savefile(gtkw_out.name, abspath=False)
        gs.timestart(int(start_time))
        gs.size(1600, 900)
        gs.signals_width(signals_width)
        for title, sigs in groups:
            with gs.group(title):
                for sig, fmt in sigs:
                    gs.trace(sig, datafmt=fmt)
    sucl = gtkw_out.with_suffix(".sucl")
    lines = []
    for title, sigs in groups:
        lines.append(f"divider_add {_surfer_word(title)}")
        lines += [f"variable_add {sig}" for sig, _ in sigs]
    lines.append("zoom_fit")
    sucl.write_text("\n".join(lines) + "\n")
    return {"gtkwave": gtkw_out, "surfer": sucl}


def gtkw(wave: Path, names: list[str], out: Path) -> dict:
    """Wave views (GTKWave + Surfer, see :func:`write_views`) of an SpTC run:
    the DUT's ports grouped as in :data:`GROUPS`."""
    # The top-level ports of the DUT: the shortest path for each port name.
    # Verilator also lists the ports under a "$rootio" pseudo-scope; use the module's.
    ports = {}
    for n in names:
        if n.startswith("$"):
            continue
        leaf = n.rsplit(".", 1)[-1].split("[")[0]
        if leaf not in ports or n.count(".") < ports[leaf].count("."):
            ports[leaf] = n
    groups = []
    for title, leaves in GROUPS:
        sigs = [ports[lf] for lf in leaves if lf in ports]
        groups.append((title, [
            (sig, "hex" if sig.endswith(("payload", "cycles", "n_sel", "k_words", "n_row_tiles"))
             else "bin") for sig in sigs]))
    return write_views(wave, out, groups)


def _plots(run_dir: Path, meta: list[dict]) -> dict:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [m for m in meta if "cycles" in m]
    files = {}
    if not done:
        return files
    fig, ax = plt.subplots(figsize=(6, 4))
    tok = np.array([m["tokens"] for m in done])
    cyc = np.array([m["cycles"] for m in done])
    ideal = np.array([m["ideal_cycles"] for m in done])
    ax.scatter(tok, cyc, label="RTL cycles")
    ax.scatter(tok, ideal, marker="x", label="ideal (useful MACs / peak)")
    for m in done:
        ax.annotate(str(m["expert"]), (m["tokens"], m["cycles"]), fontsize=7,
                    xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("tokens routed to the expert (SEL length)")
    ax.set_ylabel("cycles")
    ax.set_title("Per-expert tokens vs SpTC cycles")
    ax.legend()
    files["plot_tokens"] = _save(fig, run_dir / "tokens_vs_cycles.png")

    fig, ax = plt.subplots(figsize=(8, 2.6))
    for m in done:
        ax.barh(0, m["end"] - m["start"], left=m["start"], height=0.6)
        ax.text(m["start"] + (m["end"] - m["start"]) / 2, 0, str(m["expert"]), ha="center",
                va="center", fontsize=7)
    total = max(m["end"] for m in done) - min(m["start"] for m in done)
    busy = sum(m["cycles"] for m in done)
    ax.set_yticks([0], ["SpTC"])
    ax.set_xlabel("testbench cycle (bars: matmul jobs, labelled by expert; gaps: loads)")
    ax.set_title(f"Unit utilization timeline: SpTC busy on jobs {busy / total:.0%} of the span")
    files["plot_timeline"] = _save(fig, run_dir / "timeline.png")
    return files


def write(run_dir: Path, info: dict, trace, step_i: int, meta: list[dict], verdict: bool,
          failure: str | None, wave: Path | None, cfg) -> dict:
    files = {}
    step = trace.step(step_i)
    counts = step.tokens_per_expert()
    if wave is not None and Path(wave).exists():
        dest = run_dir / f"sptc{Path(wave).suffix}"
        shutil.move(str(wave), dest)
        files["waveform"] = dest
        names = wave_signals(dest)
        files.update(gtkw(dest, names, run_dir / "sptc.gtkw"))
        info["wave_signals"] = len(names)
    files.update(_plots(run_dir, meta))
    done = [m for m in meta if "cycles" in m]
    cyc = sum(m["cycles"] for m in done)
    ideal = sum(m["ideal_cycles"] for m in done)
    rep = {
        "config": info,
        "trace": {"preset": trace.preset, "scale": trace.scale, "seed": trace.seed,
                  "skew": trace.skew, "step": step_i, "tokens": int(step.tokens),
                  "decode_tokens": int((~step.is_prefill).sum()),
                  "prefill_tokens": int(step.is_prefill.sum()),
                  "tokens_per_expert": [int(c) for c in counts],
                  "imbalance": float(step.imbalance()), "hidden": trace.hidden, "ffn": trace.ffn},
        "jobs": meta,
        "units": {"sptc": {"cycles": cyc, "ideal_cycles": ideal,
                           "efficiency": ideal / cyc if cyc else None, "jobs": len(done)}},
        "bit_exact": verdict,
        "cycles_match_model": verdict and not info["stalls"],
        "failure": failure,
        "files": {k: str(v) for k, v in files.items()},
    }
    files["report_json"] = run_dir / "report.json"
    files["report_md"] = run_dir / "report.md"
    rep["files"].update(report_json=str(files["report_json"]), report_md=str(files["report_md"]))
    files["report_json"].write_text(json.dumps(rep, indent=2, default=float) + "\n")
    files["report_md"].write_text(_markdown(rep, cfg))
    return files


def _open_waves(files: dict) -> str:
    """How to open a run's waveform in GTKWave and Surfer (report.md)."""
    if "gtkwave" not in files or "waveform" not in files:
        return "No waveform was written (run with --waves)."
    w, g = Path(files["waveform"]).name, Path(files["gtkwave"]).name
    s = Path(files.get("surfer", Path(g).with_suffix(".sucl"))).name
    return (f"Open the waveform from this folder with `gtkwave {w} {g}` or "
            f"`surfer {w} --command-file {s}` (both files name the waveform relative to "
            f"the folder, so it can be moved).")


def _markdown(rep: dict, cfg) -> str:
    c, t, u = rep["config"], rep["trace"], rep["units"]["sptc"]
    out = [f"# moe-rtl sim report: {t['preset']} step {t['step']}", ""]
    out += [f"**Bit-exact:** {'yes — every output element equals `golden.ssmm`' if rep['bit_exact'] else 'NO'}",
            ""]
    if rep["failure"]:
        out += ["```", rep["failure"][:4000], "```", ""]
    out += ["## Configuration", "",
            f"- engine: Sparse Tensor Core, {cfg.rows} x {cfg.cols} PEs, max_k {cfg.max_k}, "
            f"max_tokens {cfg.max_tokens}",
            f"- mode: {c['mode']}" + (f" (N, M, V) = {tuple(c['nmv'])}" if c["nmv"] else ""),
            f"- output: {c['out']}; simulator: {c['simulator']}; seed {c['seed']}; "
            f"stalls: {'random' if c['stalls'] else 'none (cycles compared with the model)'}",
            "", "## Trace", "",
            f"- preset {t['preset']} at scale {t['scale']} (hidden {t['hidden']}, FFN {t['ffn']}), "
            f"skew {t['skew']}, trace seed {t['seed']}",
            f"- step {t['step']}: {t['tokens']} tokens ({t['prefill_tokens']} prefill, "
            f"{t['decode_tokens']} decode), imbalance (max-mean)/mean = {t['imbalance']:.2f}",
            "", "| expert | tokens |", "|---:|---:|"]
    out += [f"| {e} | {n} |" for e, n in enumerate(t["tokens_per_expert"])]
    out += ["", "## Jobs", "",
            "| expert | token chunk | SEL | cycles | ideal | efficiency |",
            "|---:|---:|---:|---:|---:|---:|"]
    for m in rep["jobs"]:
        if "cycles" in m:
            out.append(f"| {m['expert']} | {m['chunk']} | {m['tokens']} | {m['cycles']} | "
                       f"{m['ideal_cycles']:.0f} | {m['efficiency']:.1%} |")
    if u["cycles"]:
        out += ["", f"SpTC total: {u['cycles']} cycles for {u['jobs']} jobs; ideal "
                    f"{u['ideal_cycles']:.0f}; efficiency {u['efficiency']:.1%}."]
    out += ["", "Ideal = useful MACs / (2 x rows x cols) per cycle; efficiency = ideal / RTL "
                "cycles. Short jobs pay the SEL load, the pipeline fill and the last drain.",
            "", "## Files", ""]
    out += [f"- {k}: `{v}`" for k, v in rep["files"].items()]
    out += ["", _open_waves(rep["files"])
            + " Signals grouped: control, cycle counter, errors, one group per stream."]
    return "\n".join(out) + "\n"


def gtkw_generic(wave: Path, names: list[str], module: str, out: Path) -> dict:
    """Wave views (GTKWave + Surfer) grouping a DUT's ports: control/status, then one
    group per stream."""
    # Verilator lists the top-level ports (and only them) under "$rootio"; Icarus does
    # not, so there fall back to the module's signals without generated "$" names.
    prefix = f"{module}."
    leaves = {n.split(".", 1)[1] for n in names if n.startswith("$rootio.")}
    ports = sorted(prefix + lf for lf in leaves) if leaves else sorted(
        n for n in names if n.startswith(prefix) and n.count(".") == 1 and "$" not in n)
    streams: dict[str, list[str]] = {}
    control = []
    for n in ports:
        leaf = n[len(prefix):]
        if "__" in leaf:
            streams.setdefault(leaf.split("__")[0], []).append(n)
        else:
            control.append(n)
    groups = [(title, [(sig, "hex" if sig.endswith("payload") else "bin") for sig in sigs])
              for title, sigs in [("Control and status", control)] + [
                  (f"Stream {k}", sorted(v, key=lambda s: ("valid" not in s, "ready" not in s, s)))
                  for k, v in sorted(streams.items())]]
    return write_views(wave, out, groups)


def write_generic(run_dir: Path, engine: str, module: str, info: dict, trace_info: dict,
                  rows: list[dict], columns: list[str], verdict: bool, failure: str | None,
                  wave: Path | None, notes: list[str]) -> dict:
    """report.json/md, waveform + save file and a cycles plot for the PIM and CIM runs."""
    files = {}
    if wave is not None and Path(wave).exists() and verdict:
        dest = run_dir / f"{engine}{Path(wave).suffix}"
        shutil.move(str(wave), dest)
        files["waveform"] = dest
        files.update(gtkw_generic(dest, wave_signals(dest), module, run_dir / f"{engine}.gtkw"))
    if rows:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(7, 3.5))
        ax.bar(range(len(rows)), [r["cycles"] for r in rows], label="RTL cycles")
        if all(r.get("model_cycles") is not None for r in rows):
            ax.plot(range(len(rows)), [r["model_cycles"] for r in rows], "kx", label="cycle model")
        ax.set_xticks(range(len(rows)), [str(r["job"])[:18] for r in rows], rotation=30,
                      ha="right", fontsize=7)
        ax.set_ylabel("cycles")
        ax.set_title(f"{engine}: cycles per job")
        ax.legend()
        files["plot_cycles"] = _save(fig, run_dir / "cycles.png")
    rep = {"config": info, "trace": trace_info, "jobs": rows,
           "units": {engine: {"cycles": sum(r["cycles"] for r in rows), "jobs": len(rows)}},
           "bit_exact": verdict, "failure": failure, "notes": notes,
           "files": {k: str(v) for k, v in files.items()}}
    files["report_json"] = run_dir / "report.json"
    files["report_md"] = run_dir / "report.md"
    rep["files"].update(report_json=str(files["report_json"]), report_md=str(files["report_md"]))
    files["report_json"].write_text(json.dumps(rep, indent=2, default=float) + "\n")
    md = [f"# moe-rtl sim report: {engine}", "",
          f"**Bit-exact:** {'yes' if verdict else 'NO'}", ""]
    if failure:
        md += ["```", failure[:4000], "```", ""]
    md += ["## Configuration", ""] + [f"- {k}: {v}" for k, v in info.items()]
    md += ["", "## Trace", ""] + [f"- {k}: {v}" for k, v in trace_info.items()]
    md += ["", "## Jobs", "", "| " + " | ".join(columns) + " |",
           "|" + "---:|" * len(columns)]
    md += ["| " + " | ".join(str(r.get(c, "")) for c in columns) + " |" for r in rows]
    md += [""] + [f"- {n}" for n in notes]
    md += ["", "## Files", ""] + [f"- {k}: `{v}`" for k, v in rep["files"].items()]
    files["report_md"].write_text("\n".join(md) + "\n")
    return files


# --------------------------------------------------------------------------- the MoE layer

#: GTKWave groups of the MoE-layer top: (title, top-level port leaves). Streams are
#: added one group each; the unit busy group also takes the units' own 1-bit busy
#: and the FSM states where the waveform has them (Verilator and Icarus both dump them).
MOE_GROUPS = [
    ("Control", ["clk", "rst", "clear", "busy", "cfg_hidden", "cfg_experts", "cfg_k_words",
                 "cfg_row_tiles", "cfg_mode", "cfg_mult", "cfg_shift", "cfg_pim_kw",
                 "cfg_comb_mult", "cfg_comb_shift"]),
    ("Errors (sticky: 1 descriptor, 2 token entry, 4 SpTC, 8 Logic-PIM)",
     ["err", "sptc_err", "pim_err"]),
    ("Cycle counters (since clear)", ["cycles", "steps", "sptc_jobs", "pim_jobs"]),
    ("Per-unit busy (counters; then each unit's busy bit and controller states)",
     ["sptc_busy", "pim_busy"]),
]
MOE_INTERNAL = ["sptc.busy", "pim.busy", "sctl_state", "pctl_state", "disp_state"]
MOE_STREAMS = [("job", "descriptors: LOAD, EXPERT, END"),
               ("tok", "token entries: token, gate, valid"),
               ("sptc_w", "SpTC weight beats"), ("sptc_act", "SpTC activations"),
               ("pim_din", "Logic-PIM data words"),
               ("trace", "executed schedule: unit, expert, slots"),
               ("y", "layer output: value, token, row")]


_PS = {"fs": 1e-3, "ps": 1.0, "ns": 1e3, "us": 1e6, "ms": 1e9, "s": 1e12}


def wave_time(wave: Path, ps: float) -> int:
    """``ps`` picoseconds in the waveform's own time unit (what GTKWave's times use)."""
    from pywellen import Waveform
    ts = Waveform(str(wave)).timescale
    unit = _PS.get(str(ts.unit).strip().lower())
    if unit is None:
        return 0
    return int(round(ps / (unit * ts.factor)))


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
    files["plot_tokens"] = _save(fig, run_dir / "tokens_vs_cycles.png")

    # unit utilization timeline: busy bits per cycle (from the top's counters), the
    # jobs on top (labelled by expert), the drain of each program's output
    span = rep["cycles"]["span"]
    fig, ax = plt.subplots(figsize=(10, 3.6))
    rows = {"sptc": 2, "pim": 1}
    from .moe import busy_runs
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
    files["plot_timeline"] = _save(fig, run_dir / "timeline.png")
    return files


def write_moe(run_dir: Path, rep: dict, wave: Path | None, busy: dict, module: str,
              start_ps: float = 0) -> dict:
    """Waveform + GTKWave save file, plots, report.json and report.md of a MoE-layer run."""
    files = {}
    if wave is not None and Path(wave).exists():
        dest = run_dir / f"moe{Path(wave).suffix}"
        shutil.move(str(wave), dest)
        files["waveform"] = dest
        names = wave_signals(dest)
        files.update(gtkw_moe(dest, names, module, run_dir / "moe.gtkw",
                                  wave_time(dest, start_ps)))
        rep["config"]["wave_signals"] = len(names)
    files.update(_moe_plots(run_dir, rep, busy))
    files["report_json"] = run_dir / "report.json"
    files["report_md"] = run_dir / "report.md"
    rep["files"] = {k: str(v) for k, v in files.items()}
    files["report_json"].write_text(json.dumps(rep, indent=2, default=float) + "\n")
    files["report_md"].write_text(_moe_markdown(rep))
    return files


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
            f"max_hidden {c['max_hidden']}",
            f"- schedule: {c['capacity']} capacity"
            + (f" (alpha {c['alpha']})" if c["capacity"] == "static" else "")
            + f", dispatch {c['dispatch']}, SpTC weights {c['mode']}",
            f"- layer: hidden {c['hidden']}, {c['experts']} routed + {c['shared']} shared "
            f"experts (one hidden x hidden int8 projection each), requant expert "
            f"{tuple(c['expert_rq'])}, combine {tuple(c['combine_rq'])}, shared gate "
            f"{c['shared_gate']}",
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
            f"({cy['drain']} of them draining the {t['tokens']} x {t['hidden']} output, "
            "one element per cycle)",
            f"- cycle models (`golden.schedule.step_cost`, unit times only): SpTC "
            f"{cy['model_sptc']} (jobs + activation LOAD), Logic-PIM {cy['model_pim']}; "
            f"makespan {cy['model_makespan']}",
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
            "| # | program | unit | expert | slots | tokens | start | cycles | model | ideal | "
            "efficiency | check |", "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for i, j in enumerate(rep["jobs"]):
        if "cycles" not in j:
            continue
        out.append(f"| {i} | {j['batch']} | {_UNIT_NAMES[j['unit']]} | {j['expert']} | "
                   f"{j['slots']} | {j['tokens']} | {j['start']} | {j['cycles']} | "
                   f"{j['model_cycles']} | {j['ideal_cycles']:.0f} | {_pct(j['efficiency'])} | "
                   f"{j['check']} |")
    out += ["", rep["cycle_check_note"]]
    if rep["cycle_problems"]:
        out += [""] + [f"- {p}" for p in rep["cycle_problems"]]
    out += ["", "## Files", ""]
    out += [f"- {k}: `{v}`" for k, v in rep["files"].items()]
    if "gtkwave" in rep["files"]:
        out += ["", _open_waves(rep["files"]) + " (GTKWave starts at "
                    "the step's first descriptor; the layer preamble that writes the experts' "
                    "weights into the Logic-PIM comes before). Groups: control, errors, cycle "
                    "counters, per-unit busy (counters, each unit's busy bit, controller "
                    "states), then one per stream (`job`, `tok`, `sptc_w`, `sptc_act`, "
                    "`pim_din`, `trace`, `y`)."]
    return "\n".join(out) + "\n"
