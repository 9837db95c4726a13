"""moe-rtl formal proofs (SymbiYosys from PyPI: yowasp-sby, smtbmc + yices).

    python -m formal [--list] [-k SUBSTR ...] [-o build/formal] [-j 2]

Writes <out>/<proof>/<proof>.sby (+ the harness RTLIL) and runs yowasp-sby.
Exit status: 0 every proof as expected (a proof passes, a planted bug fails;
a known design bug is reported and does not fail the run), 1 otherwise,
2 bad request (unknown proof, missing tools).
"""
from __future__ import annotations

import argparse
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .core import FormalError, run, tools
from .proofs import PROOFS

MARKER = ".moe-rtl-formal"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m formal", description=__doc__.split("\n\n")[0])
    ap.add_argument("--list", action="store_true", help="list the proofs and exit")
    ap.add_argument("-k", action="append", default=[], metavar="SUBSTR",
                    help="run the proofs whose name contains SUBSTR (repeatable)")
    ap.add_argument("-o", "--out", type=Path, default=Path("build/formal"),
                    help="output folder (default: build/formal)")
    ap.add_argument("-j", "--jobs", type=int, default=2, help="proofs run at once (default: 2)")
    a = ap.parse_args(argv)
    if a.list:
        for p in PROOFS:
            print(f"{p.name:20s} {p.mode:6s} depth {p.depth:3d}  {p.what}")
        return 0
    if a.jobs < 1:
        print(f"python -m formal: --jobs {a.jobs} must be at least 1", file=sys.stderr)
        return 2
    sel = [p for p in PROOFS if not a.k or any(k in p.name for k in a.k)]
    if not sel:
        print(f"python -m formal: no proof matches {' '.join(a.k)} (see --list)", file=sys.stderr)
        return 2
    out = a.out
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MARKER).exists())):
        print(f"python -m formal: {out} exists and was not made by this tool; "
              "give another --out", file=sys.stderr)
        return 2
    try:
        tools()
        out.mkdir(parents=True, exist_ok=True)
        (out / MARKER).touch()
    except (FormalError, OSError) as e:
        print(f"python -m formal: {e}", file=sys.stderr)
        return 2
    with ThreadPoolExecutor(a.jobs) as ex:
        results = list(ex.map(lambda p: run(p, out), sel))
    bad = 0
    print(f"\n{'proof':20s} {'mode':6s} {'depth':>5s} {'result':8s} {'time':>6s}  verdict")
    for r in results:
        p = r.proof
        if p.known_bug and r.status == "FAIL":
            verdict = f"KNOWN BUG: {p.known_bug}"
        elif r.ok:
            verdict = "ok" if p.expect else "ok (planted bug found)"
        else:
            bad += 1
            verdict = ("FAILED: " if p.expect else "MISSED planted bug: ") + \
                "; ".join(r.failed() or [f"sby {r.status}, see {r.workdir}/logfile.txt"])
        print(f"{p.name:20s} {p.mode:6s} {p.depth:5d} {r.status:8s} {r.seconds:5.1f}s  {verdict}")
    npass = len(results) - bad
    print(f"\nformal: {npass} as expected, {bad} not ({out})")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
