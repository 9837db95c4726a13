"""Run every engine's benchmark that is present: ``python -m sim.bench [--quick] [engine ...]``.

``--no-rtl``, ``--workers`` and ``--preset`` apply to the ``moe`` benchmark (the model
sweep alone, ``--no-rtl``, runs in about a minute)."""
import argparse
import importlib
import sys

from . import ENGINES


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m sim.bench", description=__doc__)
    p.add_argument("engines", nargs="*",
                   help=f"engines to benchmark (default: all present of {', '.join(ENGINES)})")
    p.add_argument("--quick", action="store_true", help="smaller sweeps (for smoke tests)")
    p.add_argument("--no-rtl", action="store_true",
                   help="moe: the cycle-model sweep only, without the Verilator rows")
    p.add_argument("--workers", type=int, default=None,
                   help="moe: worker processes of the sweep (default: one per core)")
    p.add_argument("--preset", action="append", default=None,
                   help="moe: sweep only this preset (repeatable); kit presets and the "
                        "paper setups duplex-serving, dynamoe-training")
    args = p.parse_args(argv)
    unknown = [e for e in args.engines if e not in ENGINES]
    if unknown:
        p.error(f"unknown engine(s): {', '.join(unknown)} (known: {', '.join(ENGINES)})")
    moe_opts = args.no_rtl or args.workers is not None or args.preset
    if moe_opts and args.engines and "moe" not in args.engines:
        p.error("--no-rtl, --workers and --preset apply to the moe benchmark only")
    if args.workers is not None and args.workers < 1:
        p.error(f"--workers: must be >= 1, got {args.workers}")
    if args.preset:
        from .moe import PRESETS
        bad = [x for x in args.preset if x not in PRESETS]
        if bad:
            p.error(f"--preset: unknown {', '.join(bad)} (known: {', '.join(PRESETS)})")
    for name in args.engines or ENGINES:
        try:
            mod = importlib.import_module(f"sim.bench.{name}" if name != "simspeed"
                                          else "sim.simspeed")
        except ModuleNotFoundError as exc:
            if args.engines or not exc.name or not exc.name.startswith("sim."):
                raise
            print(f"[{name}] no benchmark yet (module {exc.name} not present)\n")
            continue
        print(f"===== {name} =====")
        if name == "moe":
            mod.main(quick=args.quick, workers=args.workers, rtl=not args.no_rtl,
                     presets=args.preset)
        else:
            mod.main(quick=args.quick)
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
