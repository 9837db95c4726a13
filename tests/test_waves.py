"""Wave views of a run (sim/report.py; the runners' signal groups): the GTKWave save
file (pyvcd's vcd.gtkw) and the Surfer command file name the same signal groups, and
both name the waveform relative to the run folder, so the folder can be moved. Uses a
small VCD written with pyvcd (no simulation)."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from vcd import VCDWriter

from sim import report
from sim.runners import moe_report
from sim.runners import sptc as sptc_runner

# (scope, name, width) of a small MoE-layer-like waveform; "extra" is in no group
SIGNALS = [("clk", 1), ("rst", 1), ("busy", 1), ("layer", 64), ("err", 4), ("cycles", 32),
           ("sptc_busy", 16), ("sptc_phase", 3), ("y__valid", 1), ("y__ready", 1), ("y__payload", 24), ("job__valid", 1),
           ("job__payload", 40), ("extra", 8)]


def _vcd(path: Path) -> Path:
    with open(path, "w") as fh, VCDWriter(fh, timescale="1 ps", date="today") as w:
        ids = {n: w.register_var("moe_layer", n, "wire", size=s) for n, s in SIGNALS}
        for t in range(4):
            for n, s in SIGNALS:
                w.change(ids[n], t * 1000, t % (1 << s))
    return path


def parse_gtkw(text: str) -> dict:
    """The parts of a .gtkw save file a viewer reads: header values, and the traces
    between group begin (flags 0x800000) / end (0x1000000) markers."""
    out = {"header": {}, "groups": [], "loose": []}
    flags, group = 0, None
    for line in text.splitlines():
        if line.startswith("[*]"):
            continue                                    # a comment
        if line.startswith("["):
            m = re.fullmatch(r"\[(\w+)\] ?(.*)", line)
            out["header"][m.group(1)] = m.group(2).strip('"')
        elif line.startswith("@"):
            flags = int(line[1:], 16)
        elif line.startswith("-"):
            if flags & 0x800000:
                group = (line[1:], [])
                out["groups"].append(group)
            elif flags & 0x1000000:
                assert group and group[0] == line[1:], line
                group = None
        elif line:
            (group[1] if group else out["loose"]).append((line, flags))
    return out


def test_moe_views_group_the_same_signals_with_relative_paths(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    wave = _vcd(run / "moe.vcd")
    names = report.wave_signals(wave)
    files = moe_report.gtkw_moe(wave, names, "moe_layer", run / "moe.gtkw", start_time=2000)
    assert files == {"gtkwave": run / "moe.gtkw", "surfer": run / "moe.sucl"}
    g = parse_gtkw(files["gtkwave"].read_text())
    # relative to the run folder: no absolute path, no folder name anywhere
    assert g["header"]["dumpfile"] == "moe.vcd" and g["header"]["savefile"] == "moe.gtkw"
    assert str(tmp_path) not in files["gtkwave"].read_text()
    assert g["header"]["timestart"] == "2000" and not g["loose"]
    groups = {t: [s for s, _ in sigs] for t, sigs in g["groups"]}
    assert list(groups) == [
        "Control", "Errors (sticky: 1 descriptor, 2 token entry, 4 SpTC, 8 Logic-PIM)",
        "Cycle counters (since clear)",
        "Per-unit busy (counters; expert phase 0 none, 1 gate, 2 up, 3 h load, 4 down; then "
        "each unit's busy bit and controller states)",
        "Stream job (descriptors: LOAD, EXPERT, END)", "Stream y (layer output: value, token, row)"]
    assert groups["Control"] == ["moe_layer.clk", "moe_layer.rst", "moe_layer.busy",
                                 "moe_layer.layer"]
    assert groups[list(groups)[3]] == ["moe_layer.sptc_busy", "moe_layer.sptc_phase"]
    assert groups["Stream y (layer output: value, token, row)"] == [
        "moe_layer.y__valid", "moe_layer.y__ready", "moe_layer.y__payload"]
    assert all(s in names for sigs in groups.values() for s in sigs)
    assert "moe_layer.extra" not in files["gtkwave"].read_text()
    # display formats: one bit binary (0x8), payload/err hex (0x2), counters decimal (0x4)
    fmt = {s: f & 0xE for _, sigs in g["groups"] for s, f in sigs}
    assert fmt["moe_layer.clk"] == 0x8 and fmt["moe_layer.y__payload"] == 0x2
    assert fmt["moe_layer.err"] == 0x2 and fmt["moe_layer.cycles"] == 0x4

    # Surfer: one divider per group (one word), then its variables, same order
    sucl = files["surfer"].read_text().splitlines()
    assert sucl[-1] == "zoom_fit"
    s_groups, cur = [], None
    for line in sucl[:-1]:
        cmd, arg = line.split(" ", 1)
        assert cmd in ("divider_add", "variable_add"), line
        if cmd == "divider_add":
            assert re.fullmatch(r"\w+", arg), arg
            cur = (arg, [])
            s_groups.append(cur)
        else:
            cur[1].append(arg)
    assert [sigs for _, sigs in s_groups] == list(groups.values())
    assert [t for t, _ in s_groups][:3] == ["Control", "Errors", "Cycle_counters"]
    assert "/" not in files["surfer"].read_text()     # no paths at all

    # the folder moves: the views still name the waveform next to them
    moved = shutil.move(str(run), str(tmp_path / "elsewhere"))
    g2 = parse_gtkw((Path(moved) / "moe.gtkw").read_text())
    assert (Path(moved) / g2["header"]["dumpfile"]).is_file()


def test_sptc_and_generic_views(tmp_path):
    wave = _vcd(tmp_path / "pim.vcd")
    names = report.wave_signals(wave)
    files = report.gtkw_generic(wave, names, "moe_layer", tmp_path / "pim.gtkw")
    g = parse_gtkw(files["gtkwave"].read_text())
    assert g["header"]["dumpfile"] == "pim.vcd"
    titles = [t for t, _ in g["groups"]]
    assert titles == ["Control and status", "Stream job", "Stream y"]
    y = dict(g["groups"])["Stream y"]
    assert [s for s, _ in y] == ["moe_layer.y__valid", "moe_layer.y__ready",
                                 "moe_layer.y__payload"]
    assert files["surfer"].read_text().splitlines()[:2] == ["divider_add Control_and_status",
                                                            "variable_add moe_layer.busy"]
    files = sptc_runner.gtkw(wave, names, tmp_path / "sptc.gtkw")
    g = parse_gtkw(files["gtkwave"].read_text())
    groups = dict(g["groups"])
    assert [s for s, _ in groups["Cycle counter"]] == ["moe_layer.cycles"]
    assert "Weight stream" not in groups          # an empty group is left out
    assert "divider_add Weight_stream" not in files["surfer"].read_text()
    # the views must sit next to the waveform (paths are relative to that folder)
    (tmp_path / "sub").mkdir()
    with pytest.raises(ValueError, match="same folder"):
        sptc_runner.gtkw(wave, names, tmp_path / "sub" / "x.gtkw")


def test_report_md_says_how_to_open_both(tmp_path):
    text = report.open_waves({"waveform": str(tmp_path / "moe.fst"),
                               "gtkwave": str(tmp_path / "moe.gtkw"),
                               "surfer": str(tmp_path / "moe.sucl")})
    assert "`gtkwave moe.fst moe.gtkw`" in text
    assert "`surfer moe.fst --command-file moe.sucl`" in text
