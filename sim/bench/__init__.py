"""`make bench`: cycle, efficiency and simulator-speed benchmarks of every engine.

Each engine has a module here with ``main(quick=False) -> list[dict]`` that
writes ``build/bench/<engine>.json`` and prints its table. Figures come from
measurement: RTL cycle counts from simulation (sptc, pim, cim: through the engine's
runner, ``sim.runners.get(engine).simulate``, as ``python -m sim run`` does; moe:
the multi-step bench of the MoE-layer top), or from the engine's cycle model where
the regression proves the model equal to the RTL (each table says which).
"""
import json
from pathlib import Path

from tb.toolchain import BUILD

BENCH_DIR = BUILD / "bench"
ENGINES = ("sptc", "pim", "attn", "cim", "moe", "simspeed")


def write_rows(name: str, rows: list[dict]) -> Path:
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    path = BENCH_DIR / f"{name}.json"
    path.write_text(json.dumps(rows, indent=1, default=float) + "\n")
    return path


def table(rows: list[dict], cols: list[str], fmt: dict | None = None) -> str:
    fmt = fmt or {}
    cells = [[(fmt.get(c, "{}").format(r[c]) if r.get(c) is not None else "-") for c in cols]
             for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c)
              for i, c in enumerate(cols)]
    line = lambda vals: "  ".join(v.rjust(w) for v, w in zip(vals, widths))
    return "\n".join([line(cols), line(["-" * w for w in widths])] + [line(r) for r in cells])
