"""The engine-neutral parts of the files ``make sim`` writes (each engine's runner in
:mod:`sim.runners` adds its own report section): report.json + report.md, the
waveform moved into the run folder, PNG plots, and the wave views: a GTKWave save
file (``.gtkw``, written with pyvcd's ``vcd.gtkw``) and a Surfer command file
(``.sucl``) with the same signal groups. Both name the waveform by its file name
only (relative to the run folder), so a run folder can be moved or shared:
``gtkwave <run>/moe.fst <run>/moe.gtkw`` and ``surfer <run>/moe.fst --command-file
<run>/moe.sucl`` (from inside the folder: ``gtkwave moe.gtkw``)."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path



def save_plot(fig, path: Path) -> Path:
    """Write a finished matplotlib figure as a PNG and free it."""
    import matplotlib.pyplot as plt
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def place_wave(wave: Path | None, run_dir: Path, stem: str) -> Path | None:
    """Move the simulation's waveform to ``run_dir/<stem>.fst`` (or ``.vcd``); None when
    the run left none."""
    if wave is None or not Path(wave).exists():
        return None
    dest = run_dir / f"{stem}{Path(wave).suffix}"
    shutil.move(str(wave), dest)
    return dest


def write_files(run_dir: Path, rep: dict, files: dict, markdown) -> dict:
    """Write report.json (``rep`` with its ``files`` section last) and report.md
    (``markdown(rep)``); return ``files`` with both added."""
    files["report_json"] = run_dir / "report.json"
    files["report_md"] = run_dir / "report.md"
    rep["files"] = {k: str(v) for k, v in files.items()}
    files["report_json"].write_text(json.dumps(rep, indent=2, default=float) + "\n")
    files["report_md"].write_text(markdown(rep))
    return files


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


def open_waves(files: dict) -> str:
    """How to open a run's waveform in GTKWave and Surfer (report.md)."""
    if "gtkwave" not in files or "waveform" not in files:
        return "No waveform was written (run with --waves)."
    w, g = Path(files["waveform"]).name, Path(files["gtkwave"]).name
    s = Path(files.get("surfer", Path(g).with_suffix(".sucl"))).name
    return (f"Open the waveform from this folder with `gtkwave {w} {g}` or "
            f"`surfer {w} --command-file {s}` (both files name the waveform relative to "
            f"the folder, so it can be moved).")


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
    dest = place_wave(wave, run_dir, engine) if verdict else None
    if dest is not None:
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
        files["plot_cycles"] = save_plot(fig, run_dir / "cycles.png")
    rep = {"config": info, "trace": trace_info, "jobs": rows,
           "units": {engine: {"cycles": sum(r["cycles"] for r in rows), "jobs": len(rows)}},
           "bit_exact": verdict, "failure": failure, "notes": notes}

    def markdown(rep):
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
        return "\n".join(md) + "\n"
    return write_files(run_dir, rep, files, markdown)


_PS = {"fs": 1e-3, "ps": 1.0, "ns": 1e3, "us": 1e6, "ms": 1e9, "s": 1e12}


def wave_time(wave: Path, ps: float) -> int:
    """``ps`` picoseconds in the waveform's own time unit (what GTKWave's times use)."""
    from pywellen import Waveform
    ts = Waveform(str(wave)).timescale
    unit = _PS.get(str(ts.unit).strip().lower())
    if unit is None:
        return 0
    return int(round(ps / (unit * ts.factor)))
