"""``python -m synth verilog``: one Verilog top per engine, a file list and a port manifest.

Output for engine ``e`` with top module ``M`` (``hdl.e.MODULE_NAME``)::

    <out>/M.v        the top and its sub-modules (Amaranth puts them in one file);
                     a header comment names every parameter of the configuration
    <out>/e.f        the file list: one .v per line, relative to the .f's folder
                     (``verilator -F``, ``yosys read_verilog $(sed 's|^|<out>/|' e.f)``)
    <out>/e.json     manifest: engine, config, top, parameters, ports (name, dir, width)
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from hdl.verilog import to_verilog

from .engines import Design

_PORT_RE = re.compile(r"^\s*(input|output|inout)\s+(?:wire\s+|reg\s+)?(?:(signed)\s+)?"
                      r"(?:\[(\d+):(\d+)\]\s+)?(\\\S+|[A-Za-z_][A-Za-z0-9_$]*)\s*;", re.M)


def emit(design: Design, target: str | None = None) -> str:
    """The Verilog text of a design (top module named ``MODULE_NAME``); ``target``
    ``"ecp5"`` elaborates with the ECP5 primitives of hdl.fpga (the FPGA flow)."""
    mod = design.module()
    cfg = design.config()
    return to_verilog(mod.build(cfg), mod.MODULE_NAME, mod.config_params(cfg), target)


def top_ports(text: str, top: str) -> list[dict]:
    """Ports of module ``top`` in declaration order: name, dir, width."""
    start = re.search(rf"^module\s+{re.escape(top)}\s*\(", text, re.M)
    if start is None:
        raise ValueError(f"module {top} not found in the generated Verilog")
    close = text.find(");", start.end())
    order = [n.strip() for n in text[start.end():close].split(",") if n.strip()]
    end = text.find("\nendmodule", close)
    decl = {}
    for m in _PORT_RE.finditer(text, close, end):
        width = int(m.group(3)) - int(m.group(4)) + 1 if m.group(3) is not None else 1
        decl[m.group(5)] = {"name": m.group(5), "dir": m.group(1), "width": width}
    return [decl[n] for n in order if n in decl]


def write(design: Design, outdir: Path, text: str | None = None,
          target: str | None = None) -> dict:
    """Emit one design into ``outdir``; returns its manifest."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    mod = design.module()
    top = mod.MODULE_NAME
    if text is None:
        text = emit(design, target)
    vfile = outdir / f"{top}.v"
    vfile.write_text(text)
    (outdir / f"{design.engine}.f").write_text(f"{vfile.name}\n")
    cfg = design.config()
    manifest = {
        "engine": design.engine,
        "config": design.config_name,
        "overrides": list(design.params),
        "target": target or "generic",
        "top": top,
        "files": [vfile.name],
        "sha256": hashlib.sha256(text.encode()).hexdigest(),
        "params": {k: _jsonable(v) for k, v in mod.config_params(cfg).items()},
        "ports": top_ports(text, top),
    }
    (outdir / f"{design.engine}.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def _jsonable(v):
    if isinstance(v, (int, float, str, bool)) or v is None:
        return v
    if isinstance(v, (tuple, list)):
        return [_jsonable(x) for x in v]
    return repr(v)
