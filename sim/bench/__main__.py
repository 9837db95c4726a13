"""Run every engine's benchmark that is present: ``python -m sim.bench [--quick] [engine ...]``."""
import argparse
import importlib
import sys

from . import ENGINES


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m sim.bench", description=__doc__)
    p.add_argument("engines", nargs="*",
                   help=f"engines to benchmark (default: all present of {', '.join(ENGINES)})")
    p.add_argument("--quick", action="store_true", help="smaller sweeps (for smoke tests)")
    args = p.parse_args(argv)
    unknown = [e for e in args.engines if e not in ENGINES]
    if unknown:
        p.error(f"unknown engine(s): {', '.join(unknown)} (known: {', '.join(ENGINES)})")
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
        mod.main(quick=args.quick)
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
