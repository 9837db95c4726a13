"""The ``moe-rtl`` console command: one entry point for the project's CLIs.

    moe-rtl sim    ...   = python -m sim ...        (make sim: run a trace through the RTL)
    moe-rtl bench  ...   = python -m sim.bench ...  (cycle/efficiency benchmarks)
    moe-rtl synth  ...   = python -m synth ...      (Verilog, lint, FPGA flow)
    moe-rtl traces ...   = python -m sim.traces ... (make/show routing traces)
    moe-rtl sweep  ...   = python -m sim.sweep ...  (MoE sweeps, optionally on Dask)

Everything after the subcommand goes to that CLI unchanged, and its exit status
is the command's exit status (``moe-rtl <cmd> --help`` prints the CLI's own help).
The CLIs are imported only when chosen, so ``moe-rtl sim`` loads no synthesis
tool and ``moe-rtl synth`` no simulator.
"""
from __future__ import annotations

import importlib
import sys

#: subcommand -> (module with ``main(argv) -> int``, the ``python -m`` it equals, summary)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "sim": ("sim.cli", "python -m sim", "run a MoE trace step through the RTL (make sim)"),
    "bench": ("sim.bench.__main__", "python -m sim.bench", "cycle/efficiency benchmarks"),
    "synth": ("synth.__main__", "python -m synth", "Verilog, lint and the open FPGA flow"),
    "traces": ("sim.traces", "python -m sim.traces", "make and inspect routing traces"),
    "sweep": ("sim.sweep", "python -m sim.sweep", "MoE sweeps (locally or on Dask)"),
}


def _usage() -> str:
    rows = "\n".join(f"  {name:<7} {summary}  (= {mod})"
                     for name, (_, mod, summary) in COMMANDS.items())
    return (f"usage: moe-rtl {{{','.join(COMMANDS)}}} [args ...]\n\n"
            f"moe-rtl: open RTL kit for MoE inference hardware.\n\ncommands:\n{rows}\n\n"
            f"`moe-rtl <command> --help` prints that command's options.\n")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        (sys.stdout if argv else sys.stderr).write(_usage())
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    if cmd not in COMMANDS:
        sys.stderr.write(_usage())
        print(f"moe-rtl: error: unknown command {cmd!r} (choose from {', '.join(COMMANDS)})",
              file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[cmd][0])
    # argparse's exits (--help: 0, a bad option: 2) pass through as SystemExit.
    rc = module.main(rest)
    return 0 if rc is None else int(rc)


if __name__ == "__main__":
    sys.exit(main())
