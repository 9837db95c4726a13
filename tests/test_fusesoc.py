"""FuseSoC: the engine cores (cores/*.core) and their generator (synth/fusesoc_gen.py).

A FuseSoC user adds this repository as a library and depends on
``moe-rtl:engines:<engine>``; FuseSoC runs the generator, which writes the
engine's Verilog with the project's own generation (``python -m synth verilog``).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from synth import fusesoc_gen
from synth.engines import ENGINES, Design, load_engine
from synth.verilog import emit

ROOT = Path(__file__).resolve().parents[1]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def _core(path: Path) -> dict:
    text = path.read_text()
    assert text.startswith("CAPI=2:\n"), path
    return yaml.safe_load(text.split("\n", 1)[1])


def _fusesoc(args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """The fusesoc CLI of this venv, isolated from the user's FuseSoC config and cache;
    ``python3`` on PATH (the generator's interpreter) is this venv's."""
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    for var in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME"):
        env[var] = str(cwd / ".xdg" / var.lower())
    res = subprocess.run([sys.executable, "-m", "fusesoc.main", *args], cwd=cwd, env=env,
                         capture_output=True, text=True, timeout=300)
    if check:
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res


def test_engine_cores_name_every_engine():
    """One core per engine, named moe-rtl:engines:<engine>:<project version>, whose
    toplevel is the engine's Verilog top and whose generator is the project's."""
    gen = _core(ROOT / "cores" / "generators.core")
    assert gen["name"] == f"moe-rtl:engines:generators:{VERSION}"
    command = gen["generators"]["moe_rtl_verilog"]["command"]
    assert (ROOT / "cores" / command).resolve() == ROOT / "synth" / "fusesoc_gen.py"
    assert sorted(p.stem for p in (ROOT / "cores").glob("*.core")) == sorted([*ENGINES,
                                                                              "generators"])
    for engine in ENGINES:
        core = _core(ROOT / "cores" / f"{engine}.core")
        assert core["name"] == f"moe-rtl:engines:{engine}:{VERSION}"
        inst = core["generate"]["verilog"]
        assert inst["generator"] == "moe_rtl_verilog"
        assert inst["parameters"] == {"engine": engine, "config": "default", "target": "generic"}
        assert "moe-rtl:engines:generators" in core["filesets"]["generator"]["depend"]
        top = load_engine(engine).MODULE_NAME
        for name, target in core["targets"].items():
            assert target["toplevel"] == top, (engine, name)
            fusesoc_gen.check_input({"gapi": "1.0", "vlnv": "a:b:c:1",
                                     "parameters": {**inst["parameters"],
                                                    **_overrides(target)}})


def _overrides(target: dict) -> dict:
    out = {}
    for item in target.get("generate", []):
        if isinstance(item, dict):
            for params in item.values():
                out.update(params)
    return out


def test_fusesoc_generates_the_engine_verilog(tmp_path):
    """`fusesoc library add` the repository, set up an engine core's lint_small
    target: the generator writes the project's own Verilog (byte for byte) and a
    core that lists it with the lint waivers. (The CIM tile: the quickest engine
    to generate; every engine's core is the same but for its names.)"""
    _fusesoc(["library", "add", "moe-rtl", str(ROOT)], tmp_path)
    listed = _fusesoc(["core", "list"], tmp_path).stdout
    for engine in ENGINES:
        assert f"moe-rtl:engines:{engine}:{VERSION}" in listed
    _fusesoc(["run", "--setup", "--target", "lint_small", "moe-rtl:engines:cim"], tmp_path)
    work = tmp_path / "build" / f"moe-rtl_engines_cim_{VERSION}" / "lint_small"
    src = work / "src" / f"moe-rtl_engines_cim-verilog_{VERSION}"
    verilog = (src / "moe_cim.v").read_text()
    assert re.search(r"^module moe_cim\(", verilog, re.M)
    assert verilog == emit(Design("cim", "small"))
    vc = (work / f"moe-rtl_engines_cim_{VERSION}.vc").read_text().split()
    assert vc[vc.index("--top-module") + 1] == "moe_cim"
    assert "--lint-only" in vc and "-Wall" in vc
    assert f"src/moe-rtl_engines_cim-verilog_{VERSION}/{fusesoc_gen.WAIVERS}" in vc
    assert (src / fusesoc_gen.WAIVERS).read_bytes() == fusesoc_gen.WAIVER_FILE.read_bytes()


_USER_CORE = """CAPI=2:
name: user:demo:{name}:1.0
filesets:
  rtl:
    depend: [moe-rtl:engines:generators]
generate:
  mine:
    generator: moe_rtl_verilog
    parameters: {parameters}
targets:
  default:
    flow: lint
    flow_options: {{tool: verilator}}
    filesets: [rtl]
    generate: [mine]
    toplevel: {top}
"""


def test_fusesoc_user_core_calls_the_generator(tmp_path):
    """A user's own core asks the generator for an engine with its own parameters
    (the path for anything the engine cores' targets do not offer); a bad
    parameter fails the FuseSoC run with the generator's message."""
    _fusesoc(["library", "add", "moe-rtl", str(ROOT)], tmp_path)
    for name, parameters, top in (
            ("top", "{engine: pim, config: small, target: ecp5, params: [max_tokens=16]}", "moe_pim"),
            ("bad", "{engine: nope}", "x")):
        (tmp_path / name).mkdir()
        (tmp_path / name / f"{name}.core").write_text(
            _USER_CORE.format(name=name, parameters=parameters, top=top))
        _fusesoc(["library", "add", name, str(tmp_path / name)], tmp_path)
    _fusesoc(["run", "--setup", "user:demo:top"], tmp_path)
    src = tmp_path / "build" / "user_demo_top_1.0" / "default" / "src" / "user_demo_top-mine_1.0"
    verilog = (src / "moe_pim.v").read_text()
    assert verilog == emit(Design("pim", "small", ("max_tokens=16",)), "ecp5")
    assert "// target: ecp5" in verilog and "//   max_tokens = 16" in verilog

    res = _fusesoc(["run", "--setup", "user:demo:bad"], tmp_path, check=False)
    assert res.returncode != 0
    assert "parameters.engine: 'nope' is not one of sptc, pim, cim, moe" in res.stdout + res.stderr


def _input(tmp_path, **parameters) -> Path:
    f = tmp_path / "in.yml"
    f.write_text(yaml.safe_dump({"files_root": str(tmp_path), "gapi": "1.0",
                                 "vlnv": "moe-rtl:engines:cim-x:0.1.0",
                                 "parameters": parameters}))
    return f


@pytest.mark.parametrize("parameters, message", [
    ({}, "parameters.engine: None is not one of sptc, pim, cim, moe"),
    ({"engine": "cim", "cfg": "small"}, "parameters: unknown parameter 'cfg'"),
    ({"engine": "cim", "config": "huge"}, "engine 'cim' has no config 'huge'"),
    ({"engine": "cim", "target": "ice40"}, "parameters.target: 'ice40' is not one of generic, ecp5"),
    ({"engine": "cim", "params": "rows=4"}, "parameters.params: 'rows=4' is not a list"),
    ({"engine": "cim", "params": ["nope=1"]}, "unknown field 'nope'"),
])
def test_generator_names_a_bad_parameter(tmp_path, capsys, parameters, message):
    cwd = tmp_path / "out"
    cwd.mkdir()
    old = os.getcwd()
    try:
        os.chdir(cwd)
        assert fusesoc_gen.main([str(_input(tmp_path, **parameters))]) == 2
    finally:
        os.chdir(old)
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert list(cwd.iterdir()) == []          # nothing written


def test_generator_writes_a_core_and_overwrites_nothing(tmp_path, capsys):
    cwd = tmp_path / "out"
    cwd.mkdir()
    inp = _input(tmp_path, engine="cim", config="small")
    old = os.getcwd()
    try:
        os.chdir(cwd)
        assert fusesoc_gen.main([str(inp)]) == 0
        written = sorted(p.name for p in cwd.iterdir())
        assert written == sorted(["moe_cim.v", "cim.f", "cim.json", fusesoc_gen.WAIVERS,
                                  "cim-x.core"])
        core = _core(cwd / "cim-x.core")
        assert core["name"] == "moe-rtl:engines:cim-x:0.1.0"
        assert core["filesets"]["rtl"] == {"files": ["moe_cim.v"], "file_type": "verilogSource"}
        assert core["targets"]["default"]["filesets"] == ["rtl", "verilator_waivers"]
        before = {p.name: p.stat().st_mtime_ns for p in cwd.iterdir()}
        assert fusesoc_gen.main([str(inp)]) == 2          # a second run into the same folder
        assert {p.name: p.stat().st_mtime_ns for p in cwd.iterdir()} == before
    finally:
        os.chdir(old)
    assert "moe_cim.v exists" in capsys.readouterr().err


def test_generator_rejects_another_api_version(tmp_path):
    data = {"gapi": "2.0", "vlnv": "a:b:c:1", "parameters": {"engine": "cim"}}
    with pytest.raises(fusesoc_gen.GeneratorError, match="gapi: '2.0'"):
        fusesoc_gen.check_input(data)
