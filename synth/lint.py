"""``python -m synth lint``: ``verilator --lint-only -Wall`` on generated tops.

The only waivers are the ones in :data:`WAIVER_FILE` (synth/lint_waivers.vlt),
each justified there. Simulation builds (sim/cocotb_run.py) use their own short
``-Wno-...`` list without ``-Wall``; see docs/synth.md for how the two relate.
"""
from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

WAIVER_FILE = Path(__file__).resolve().parent / "lint_waivers.vlt"
_MSG_RE = re.compile(r"^%(Warning|Error)(?:-([A-Z0-9_]+))?: (.*)$", re.M)


@dataclass
class LintResult:
    file: Path
    top: str
    returncode: int
    messages: list[tuple[str, str, str]] = field(default_factory=list)  # (kind, rule, text)
    output: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.messages

    def summary(self) -> str:
        if self.ok:
            return f"{self.file.name}: clean"
        rules: dict[str, int] = {}
        for kind, rule, _ in self.messages:
            key = rule or kind
            rules[key] = rules.get(key, 0) + 1
        counts = ", ".join(f"{k} x{v}" for k, v in sorted(rules.items()))
        return f"{self.file.name}: {len(self.messages)} message(s) ({counts})"


def waiver_rules() -> list[str]:
    """The rules the waiver file turns off (for docs and tests)."""
    return re.findall(r"^lint_off\s+-rule\s+([A-Z0-9_]+)", WAIVER_FILE.read_text(), re.M)


def lint_file(path: Path, top: str, timeout: float | None = 1800) -> LintResult:
    from tb.toolchain import ensure_verilator

    exe = ensure_verilator()
    cmd = [exe, "--lint-only", "-Wall", "--top-module", top, str(WAIVER_FILE), str(path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    msgs = []
    for m in _MSG_RE.finditer(out):
        kind, rule, text = m.group(1), m.group(2) or "", m.group(3)
        if kind == "Error" and not rule and text.startswith("Exiting due to"):
            continue  # the summary line of the warnings already listed
        msgs.append((kind, rule, text))
    return LintResult(Path(path), top, proc.returncode, msgs, out)
