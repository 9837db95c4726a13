"""The files `make sim` writes: report.json, report.md, plots, GTKWave save file."""
from __future__ import annotations

import json
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


def wave_signals(path: Path) -> list[str]:
    """Full names of the signals in a waveform (FST or VCD), read back with pywellen."""
    from pywellen import Waveform
    return [v.full_name for v in Waveform(str(path)).all_vars()]


def gtkw(wave: Path, names: list[str], out: Path) -> Path:
    """A GTKWave save file that opens ``wave`` with the interesting signals grouped."""
    # The top-level ports of the DUT: the shortest path for each port name.
    # Verilator also lists the ports under a "$rootio" pseudo-scope; use the module's.
    ports = {}
    for n in names:
        if n.startswith("$"):
            continue
        leaf = n.rsplit(".", 1)[-1].split("[")[0]
        if leaf not in ports or n.count(".") < ports[leaf].count("."):
            ports[leaf] = n
    lines = [f'[dumpfile] "{wave.resolve()}"', f'[savefile] "{out.resolve()}"',
             "[timestart] 0", "[size] 1600 900", "[signals_width] 260"]
    for title, leaves in GROUPS:
        present = [ports[lf] for lf in leaves if lf in ports]
        if not present:
            continue
        lines += ["@800200", f"-{title}"]
        for sig in present:
            hexa = sig.endswith(("payload", "cycles", "n_sel", "k_words", "n_row_tiles"))
            lines += ["@22" if hexa else "@28", sig]
        lines += ["@1000200", f"-{title}"]
    out.write_text("\n".join(lines) + "\n")
    return out


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
    fig.tight_layout()
    files["plot_tokens"] = run_dir / "tokens_vs_cycles.png"
    fig.savefig(files["plot_tokens"], dpi=110)
    plt.close(fig)

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
    fig.tight_layout()
    files["plot_timeline"] = run_dir / "timeline.png"
    fig.savefig(files["plot_timeline"], dpi=110)
    plt.close(fig)
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
        files["gtkwave"] = gtkw(dest, names, run_dir / "sptc.gtkw")
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
    out += ["", "Open the waveform with `gtkwave " + rep["files"].get("gtkwave", "<file>.gtkw")
            + "` (signals grouped: control, cycle counter, errors, one group per stream)."]
    return "\n".join(out) + "\n"


def gtkw_generic(wave: Path, names: list[str], module: str, out: Path) -> Path:
    """A GTKWave save file grouping a DUT's ports: control/status, then one group per stream."""
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
    lines = [f'[dumpfile] "{wave.resolve()}"', f'[savefile] "{out.resolve()}"',
             "[timestart] 0", "[size] 1600 900", "[signals_width] 260"]
    for title, sigs in [("Control and status", control)] + [
            (f"Stream {k}", sorted(v, key=lambda s: ("valid" not in s, "ready" not in s, s)))
            for k, v in sorted(streams.items())]:
        lines += ["@800200", f"-{title}"]
        for sig in sigs:
            lines += ["@22" if sig.endswith("payload") else "@28", sig]
        lines += ["@1000200", f"-{title}"]
    out.write_text("\n".join(lines) + "\n")
    return out


def write_generic(run_dir: Path, engine: str, module: str, info: dict, trace_info: dict,
                  rows: list[dict], columns: list[str], verdict: bool, failure: str | None,
                  wave: Path | None, notes: list[str]) -> dict:
    """report.json/md, waveform + save file and a cycles plot for the PIM and CIM runs."""
    files = {}
    if wave is not None and Path(wave).exists() and verdict:
        dest = run_dir / f"{engine}{Path(wave).suffix}"
        shutil.move(str(wave), dest)
        files["waveform"] = dest
        files["gtkwave"] = gtkw_generic(dest, wave_signals(dest), module, run_dir / f"{engine}.gtkw")
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
        fig.tight_layout()
        files["plot_cycles"] = run_dir / "cycles.png"
        fig.savefig(files["plot_cycles"], dpi=110)
        plt.close(fig)
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
