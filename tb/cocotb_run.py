"""Build-once, run-many cocotb simulations of Amaranth designs.

Every RTL test goes through here, so the simulator quirks live in one place:

* a design is built once per (Verilog text, simulator, waves) into its own
  directory under ``build/sim_build/`` and reused by every later run (cocotb's
  Verilator runner would otherwise regenerate and recompile on each call);
  a file lock makes that safe under pytest-xdist;
* Amaranth emits no ``timescale``, so both simulators get 1ns/1ps;
* Verilator gets targeted ``-Wno-...`` waivers for the width lint Amaranth's
  Verilog trips (see :data:`VERILATOR_WAIVERS`), never a blanket ``-Wno-fatal``;
* waveforms are FST on both simulators (Verilator needs the lz4/zlib headers;
  without them we fall back to VCD and say so).

Job data crosses into the simulator process through files named in
environment variables, never through pickles: the host writes a ``.npz`` job,
the cocotb test writes a ``.npz`` result, and scoreboards inside the cocotb
test compare against the golden models and fail the test on any mismatch.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import re
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from . import toolchain

ROOT = toolchain.ROOT
BUILD_ROOT = toolchain.BUILD / "sim_build"
SIMULATORS = ("verilator", "icarus")
TIMESCALE = ("1ns", "1ps")

# Amaranth's Verilog mixes widths freely (it is correct by construction: the
# widths come from Amaranth's own typed expressions), which Verilator's
# default lint calls out. These are the only warnings we waive in simulation.
VERILATOR_WAIVERS = ["-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-Wno-CMPCONST", "-Wno-UNSIGNED",
                     "-Wno-CASEINCOMPLETE"]

# The C++ optimisation level of Verilator models. A cocotb run spends its time
# in Python (the drivers, monitors and scoreboards step every cycle), not in the
# model, while g++ -Os on a big netlist dominates a fresh build: one 0.9 MB
# file of the 8 x 8 SpTC compiles in 21 s at -Os, 10 s at -O1 and 3.4 s at -O0.
# MOE_VERILATOR_OPT overrides it (e.g. -Os for a long make sim run); a build
# whose run time dominates its compile may ask for a level itself (build(opt=)).
VERILATOR_OPT_DEFAULT = "-O0"


def verilator_opt() -> str:
    return os.environ.get("MOE_VERILATOR_OPT", VERILATOR_OPT_DEFAULT)


_TIME0_TRIGGER = re.compile(
    r"^(\s*)reg (\\\$auto\$verilog_backend\.cc:\d+:dump_module\$\d+ ) = 0;$", re.M)


def icarus_time0_fix(verilog: str) -> str:
    """Make every ``always @*`` block run once at time 0 under Icarus.

    Yosys guards each combinational block with a dummy ``reg ... = 0`` meant to
    trigger it at time 0, but Icarus applies declaration initialisers before
    the blocks wait on their sensitivity lists, so a block whose inputs never
    change afterwards (a mux indexed by a register that stays 0) keeps X
    forever. Toggling the dummy after ``#0`` (when every block is waiting)
    fixes that without touching the logic. Verilator needs no fix.
    """
    return _TIME0_TRIGGER.sub(lambda mo: f"{mo.group(1)}reg {mo.group(2)} = 0;\n"
                                         f"{mo.group(1)}initial #0 {mo.group(2)} = 1;", verilog)


class SimulationError(RuntimeError):
    """A cocotb run failed: a scoreboard mismatch, an assertion or a simulator crash."""


@dataclass(frozen=True)
class Build:
    name: str
    toplevel: str
    simulator: str
    build_dir: Path
    waves: bool
    wave_format: str | None  # "fst", "vcd" or None


@contextmanager
def locked(path: Path):
    """An exclusive file lock: one build of a design at a time across pytest-xdist workers."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _check_simulator(simulator: str) -> None:
    if simulator not in SIMULATORS:
        raise ValueError(f"simulator must be one of {SIMULATORS}, got {simulator!r}")
    if simulator == "verilator":
        toolchain.ensure_verilator()
    elif not toolchain.have_icarus():
        raise RuntimeError("Icarus Verilog (iverilog) is not installed: apt-get install iverilog")


def build(name: str, verilog: str, toplevel: str, *, simulator: str = "verilator",
          waves: bool = False, opt: str | None = None) -> Build:
    """Compile ``verilog`` (one self-contained file) for ``simulator``, or reuse a build.

    ``opt``: Verilator's C++ optimisation level for this build (default
    :func:`verilator_opt`)."""
    from cocotb_tools.runner import get_runner

    _check_simulator(simulator)
    if simulator == "icarus":
        verilog = icarus_time0_fix(verilog)
    wave_format = None
    build_args: list[str] = []
    if simulator == "verilator":
        build_args += VERILATOR_WAIVERS
        if waves:
            if toolchain.have_fst_headers():
                build_args += ["--trace-fst", "--trace-structs"]
                wave_format = "fst"
            else:
                warnings.warn("lz4.h/zlib.h not found (Debian: liblz4-dev zlib1g-dev): "
                              "Verilator waveforms fall back to VCD")
                wave_format = "vcd"
    elif waves:
        wave_format = "fst"
    opt = (opt or verilator_opt()) if simulator == "verilator" else ""
    key = hashlib.sha256("\0".join([verilog, toplevel, simulator, str(waves), opt, *build_args])
                         .encode()).hexdigest()[:12]
    build_dir = BUILD_ROOT / f"{name}-{simulator}{'-waves' if waves else ''}-{key}"
    result = Build(name, toplevel, simulator, build_dir, waves, wave_format)
    stamp = build_dir / ".built"
    with locked(BUILD_ROOT / f".{build_dir.name}.lock"):
        if stamp.exists():
            return result
        build_dir.mkdir(parents=True, exist_ok=True)
        src = build_dir / f"{name}.v"
        src.write_text(verilog)
        runner = get_runner(simulator)
        saved = dict(os.environ)
        if simulator == "verilator":
            os.environ.update(toolchain.verilator_build_env(opt))
        try:
            runner.build(sources=[src], hdl_toplevel=toplevel, build_dir=build_dir,
                         build_args=build_args, timescale=TIMESCALE, waves=waves,
                         always=True, log_file=build_dir / "build.log")
        except RuntimeError as exc:
            raise SimulationError(f"building {name} for {simulator} failed ({exc}); see "
                                  f"{build_dir / 'build.log'}:\n{_tail(build_dir / 'build.log', 30)}"
                                  ) from None
        finally:
            os.environ.clear()
            os.environ.update(saved)
        stamp.write_text(key)
    return result


def run(b: Build, test_module: str, *, test_dir: Path, env: dict[str, str] | None = None,
        testcase: str | None = None, seed: int | None = None) -> Path:
    """Run the cocotb tests of ``test_module`` against a build; raise on any failure.

    Returns the waveform file (or ``None`` when the build has no waves).
    """
    from cocotb_tools.runner import get_results, get_runner

    test_dir = Path(test_dir).resolve()
    test_dir.mkdir(parents=True, exist_ok=True)
    runner = get_runner(b.simulator)
    runner.build_dir = b.build_dir  # reuse the existing build, do not rebuild
    runner.hdl_toplevel = b.toplevel
    runner.waves = b.waves
    extra = {"PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
             "COCOTB_LOG_LEVEL": os.environ.get("COCOTB_LOG_LEVEL", "WARNING")}
    extra.update(env or {})
    log = test_dir / "sim.log"
    results = test_dir / "results.xml"
    # cocotb's runner calls sys.exit() on failure when it sees pytest; turn
    # every failure path into one exception that carries the log's tail.
    saved = os.environ.pop("PYTEST_CURRENT_TEST", None)
    try:
        runner.test(test_module=test_module, hdl_toplevel=b.toplevel, hdl_toplevel_lang="verilog",
                    testcase=testcase,
                    seed=seed, extra_env=extra, waves=b.waves, build_dir=b.build_dir,
                    test_dir=test_dir, results_xml=str(results), timescale=TIMESCALE,
                    log_file=log)
        ntests, nfailed = get_results(results)
    except (SystemExit, RuntimeError) as exc:
        raise SimulationError(f"{b.name} on {b.simulator} crashed ({exc!r}):\n{_tail(log)}") from None
    finally:
        if saved is not None:
            os.environ["PYTEST_CURRENT_TEST"] = saved
    if ntests == 0 or nfailed:
        raise SimulationError(f"{b.name} on {b.simulator}: {nfailed} of {ntests} cocotb tests "
                              f"failed (log {log}):\n{_tail(log)}")
    return wave_path(b, test_dir)


def wave_path(b: Build, test_dir: Path) -> Path | None:
    if not b.waves:
        return None
    if b.simulator == "verilator":
        return Path(test_dir) / f"dump.{b.wave_format}"
    return Path(test_dir) / f"{b.toplevel}.fst"


def _tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def run_polling(b, module: str, workdir: Path, env: dict, progress=None):
    """``run`` in a worker thread; meanwhile call ``progress(n)`` whenever the bench
    writes a new job count to the file named by ``env["MOE_PROGRESS"]``."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    prog = Path(env["MOE_PROGRESS"])
    prog.unlink(missing_ok=True)
    last = -1
    with ThreadPoolExecutor(1) as pool:
        fut = pool.submit(run, b, module, test_dir=workdir, env=env)
        while not fut.done():
            time.sleep(0.2)
            if progress is None:
                continue
            try:
                done = int(prog.read_text() or 0)
            except (OSError, ValueError):
                continue
            if done != last:
                progress(done)
                last = done
        return fut.result()
