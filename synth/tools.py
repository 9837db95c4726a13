"""The FPGA flow's view of its tools: progress lines while they run, and whether
the installed versions are the ones the README's figures were measured with.

* :class:`ToolProgress` - ``python -m synth flow`` prints one line every
  ``--progress`` seconds while Yosys or nextpnr runs: the stage (yosys, place,
  route) and, while routing, router2's iteration, overused wires and failing arcs
  (read from the nextpnr log the flow already polls).
* :func:`check_constraints` - compares the installed yowasp tools with
  ``constraints/fpga-tools.txt`` (the versions behind the README's FPGA figures;
  ``make synth`` installs with ``pip install -c`` that file). The flow records the
  result in summary.json (``tool_constraints``) and warns on a mismatch.
"""
from __future__ import annotations

import re
import sys
import time
from pathlib import Path

#: seconds between two progress lines of a running tool (``--progress``; 0: none)
PROGRESS_EVERY = 30.0

#: the pinned tool versions (a pip constraints file: ``name==version`` lines)
CONSTRAINTS_FILE = Path(__file__).resolve().parent.parent / "constraints" / "fpga-tools.txt"

_ITER = re.compile(r"^Info:\s+iter=(\d+) wires=\d+ overused=(\d+)"
                   r"(?: overuse=\d+)?(?: tmgfail=(\d+))?", re.M)


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


def nextpnr_stage(log: str) -> str:
    """What a (partial) nextpnr log says it is doing: ``place``, ``route`` and,
    while router2 runs, its last iteration: ``route, iteration 12: 1,234 overused
    wires`` (+ ``, 7 arcs failing`` with ``--tmg-ripup``)."""
    its = _ITER.findall(log)
    if its:
        it, over, fail = its[-1]
        out = f"route, iteration {it}: {int(over):,} overused wires"
        if fail and int(fail):
            out += f", {int(fail):,} arcs failing"
        return out
    if re.search(r"^Info: (Routing|Running router)", log, re.M):
        return "route"
    return "place"


class ToolProgress:
    """Progress lines for one design: ``[synth] <key>: <stage> (<elapsed>)``.

    :meth:`ticker` gives the callable ``run_yowasp`` calls at each poll; it prints
    (through ``out``, default: stdout, flushed) when ``every`` seconds have passed
    since the tool started or since its last line. ``every`` 0 or None: silent."""

    def __init__(self, key: str, every: float | None = PROGRESS_EVERY, out=None):
        self.key, self.every = key, every
        self.out = out or (lambda line: print(line, flush=True))

    def ticker(self, tool: str, log: Path | None = None, clock=time.monotonic):
        """The poll callback for ``tool`` (``yosys`` or ``nextpnr``, whose ``log``
        tells place from route), or None when progress is off."""
        if not self.every or self.every <= 0:
            return None
        t0 = clock()
        last = [t0]

        def tick():
            now = clock()
            if now - last[0] < self.every:
                return
            last[0] = now
            stage = tool
            if tool == "nextpnr":
                try:
                    text = Path(log).read_text(errors="replace") if log else ""
                except OSError:
                    text = ""
                stage = nextpnr_stage(text)
            self.out(f"[synth] {self.key}: {stage} ({_clock(now - t0)})")
        return tick


def read_constraints(path: Path = CONSTRAINTS_FILE) -> dict[str, str]:
    """``{package: version}`` of a constraints file's ``name==version`` lines."""
    pins = {}
    for line in Path(path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*(\S+)", line)
        if not m:
            raise ValueError(f"{path}: constraint {line!r} is not name==version")
        pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    return pins


def check_constraints(installed: dict[str, str], path: Path = CONSTRAINTS_FILE) -> dict:
    """Compare installed tool versions (``{package: version}``; a package not
    installed is left out) with the pinned ones. Returns the summary.json record:
    ``{"file", "pinned", "installed", "match", "mismatches"}``; a pinned package
    that is not installed is not a mismatch (e.g. no iCE40 tools)."""
    try:
        pinned = read_constraints(path)
    except OSError:
        return {"file": str(path), "pinned": {}, "match": None,
                "mismatches": [], "error": f"{path} not found"}
    have = {k.lower().replace("_", "-"): v for k, v in installed.items()}
    mism = [f"{pkg} {have[pkg]} installed, {ver} pinned"
            for pkg, ver in pinned.items() if pkg in have and have[pkg] != ver]
    try:
        shown = str(Path(path).resolve().relative_to(CONSTRAINTS_FILE.parent.parent))
    except ValueError:
        shown = str(path)
    return {"file": shown, "pinned": pinned,
            "installed": {k: have[k] for k in pinned if k in have},
            "match": not mism, "mismatches": mism}


def warn_constraints(record: dict, err=None) -> None:
    """Print a warning (stderr) when the installed tools differ from the pinned ones."""
    err = err or sys.stderr
    if record.get("match") is False:
        print(f"[synth] warning: FPGA tool versions differ from {record['file']} (the "
              f"versions behind the README's figures; results can differ): "
              + "; ".join(record["mismatches"])
              + f". Install them with: pip install -c {record['file']} -e '.[synth,ice40]'",
              file=err)
