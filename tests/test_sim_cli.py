"""`python -m sim run` end to end on small cases: files exist and parse, checks can fail."""
import json
from pathlib import Path

import numpy as np
import pytest

from golden import trace as traces
from sim import cli, moe, report
from tb import toolchain

pytest_plugins = ["pytester"]     # test_icarus_skips_are_counted_in_the_summary


def _reported_wave(rep, out, run_dir, engine):
    """The waveform the run reported writing: FST, or VCD where Verilator lacks the
    lz4/zlib headers (the fallback the CLI and README document)."""
    wave = Path(rep["files"]["waveform"])
    ext = ".fst" if toolchain.have_fst_headers() else ".vcd"
    assert wave == run_dir / f"{engine}{ext}" and wave.is_file(), (wave, ext)
    assert str(wave) in out
    return wave


@pytest.mark.cocotb
def test_sim_run_writes_report_and_waveform(tmp_path, capsys):
    run_dir = tmp_path / "run"
    rc = cli.main(["run", "--engine", "sptc", "--config", "small", "--max-experts", "2",
                   "--step", "3", "--run-dir", str(run_dir), "--seed", "2"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "bit-exact     yes" in out
    rep = json.loads((run_dir / "report.json").read_text())
    assert rep["bit_exact"] is True and rep["cycles_match_model"] is True
    assert rep["trace"]["step"] == 3 and len(rep["trace"]["tokens_per_expert"]) == 8
    jobs = rep["jobs"]
    assert jobs and all(j["cycles"] > 0 and 0 < j["efficiency"] <= 1 for j in jobs)
    assert rep["units"]["sptc"]["cycles"] == sum(j["cycles"] for j in jobs)
    fst = _reported_wave(rep, out, run_dir, "sptc")
    names = report.wave_signals(fst)          # the waveform opens with a reader
    assert any(n.endswith("moe_sptc.w__valid") for n in names)
    gtkw = (run_dir / "sptc.gtkw").read_text()
    assert "-Weight stream" in gtkw and "moe_sptc.cycles" in gtkw
    assert f'[dumpfile] "{fst.name}"' in gtkw and str(run_dir) not in gtkw   # relative
    md = (run_dir / "report.md").read_text()
    assert "Bit-exact:** yes" in md
    for png in ("tokens_vs_cycles.png", "timeline.png"):
        assert (run_dir / png).read_bytes()[:4] == b"\x89PNG"


def _small_trace(tmp_path, seed=5):
    """A Mixtral-8x7B trace sized for the small MoE top (hidden 32), saved to a file."""
    from hdl.moe import CONFIGS
    tr = moe.preset_trace("mixtral-8x7b", CONFIGS["small"], seed, steps=4)
    path = tmp_path / "trace.npz"
    traces.save(tr, path)
    return tr, path


@pytest.mark.slow
@pytest.mark.cocotb
def test_sim_run_moe_layer(tmp_path, capsys):
    """The default engine (the whole MoE layer) on the small top: a step with prefill and
    decode, Duplex co-processing, FST waves."""
    tr, path = _small_trace(tmp_path)
    from hdl.moe import CONFIGS
    mcfg = CONFIGS["small"]
    step = moe.pick_step(tr, mcfg, None)
    st = tr.step(step)
    assert st.is_prefill.any() and (~st.is_prefill).any() and st.tokens <= mcfg.max_tokens
    run_dir = tmp_path / "moe"
    rc = cli.main(["run", "--config", "small", "--trace", str(path), "--run-dir", str(run_dir),
                   "--seed", "4"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "bit-exact     yes" in out and "cycle checks  pass" in out
    rep = json.loads((run_dir / "report.json").read_text())
    assert rep["config"]["engine"] == "moe" and rep["config"]["build"] == "small"
    assert rep["config"]["dispatch"] == "duplex_coprocess"
    assert rep["bit_exact"] is True and rep["cycles_match_model"] is True
    assert rep["checked_elements"] == st.tokens * tr.hidden
    t = rep["trace"]
    assert t["step"] == step and t["tokens_per_expert"] == st.tokens_per_expert().tolist()
    assert t["imbalance"] == pytest.approx(st.imbalance(), abs=1e-3)
    jobs = rep["jobs"]
    assert {j["unit"] for j in jobs} == {"sptc", "pim"}          # both units ran
    # every routed token that was kept is in exactly one valid slot of its expert's jobs
    assert sum(j["tokens"] for j in jobs) == int(st.tokens_per_expert().sum()) \
        - rep["schedule"]["dropped"]
    for j in jobs:
        assert j["cycles"] >= j["model_span"] > 0 and j["end"] > j["start"] >= 0
        assert j["check"] in ("equal", "= model") or j["check"].startswith("model +")
    for u in ("sptc", "pim"):
        mine = [j for j in jobs if j["unit"] == u]
        un = rep["units"][u]
        assert un["jobs"] == len(mine) and un["job_cycles"] == sum(j["cycles"] for j in mine)
        assert 0 < un["busy_cycles"] <= rep["cycles"]["span"]
        # jobs on one unit run one after another, inside the unit's busy cycles
        starts = [j["start"] for j in mine]
        assert starts == sorted(starts)
        assert all(a["end"] <= b["start"] + 1 for a, b in zip(mine, mine[1:]))
        assert 0 < un["efficiency"] <= 1
    assert rep["cycles"]["drain"] == rep["cycles"]["model_drain"] == mcfg.drain_cycles(st.tokens, tr.hidden)
    fst = _reported_wave(rep, out, run_dir, "moe")
    names = report.wave_signals(fst)          # the waveform opens with a reader
    for port in ("y__valid", "sptc_busy", "pim_busy", "trace__payload"):
        assert f"moe_layer.{port}" in names
    gtkw = (run_dir / "moe.gtkw").read_text()
    assert f'[dumpfile] "{fst.name}"' in gtkw and str(run_dir) not in gtkw   # relative
    assert "variable_add moe_layer.sptc_busy" in (run_dir / "moe.sucl").read_text()
    for group in ("-Control", "-Errors", "-Cycle counters", "-Per-unit busy", "-Stream job",
                  "-Stream y", "-Stream trace"):
        assert group in gtkw, group
    assert "moe_layer.sptc_busy" in gtkw and "moe_layer.err" in gtkw
    md = (run_dir / "report.md").read_text()
    assert "Bit-exact:** yes" in md and "## Jobs" in md
    for png in ("tokens_vs_cycles.png", "timeline.png"):
        assert (run_dir / png).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.cocotb
def test_sim_run_moe_checks_can_fail(tmp_path, capsys, monkeypatch):
    """SpTC-only dispatch: every SpTC job runs with the Logic-PIM idle, so every job's
    cycles are asserted equal to the model; a shifted job record and a corrupted golden
    output are caught."""
    tr, path = _small_trace(tmp_path)
    run_dir = tmp_path / "exact"
    args = ["run", "--config", "small", "--trace", str(path), "--no-waves", "--dispatch",
            "sptc_only", "--capacity", "static", "--alpha", "1", "--step", "0"]
    rc = cli.main(args + ["--run-dir", str(run_dir)])
    out = capsys.readouterr().out
    assert rc == 0, out
    rep = json.loads((run_dir / "report.json").read_text())
    jobs = rep["jobs"]
    assert jobs and all(j["unit"] == "sptc" and j["check"] == "equal" for j in jobs)
    assert rep["cycle_checks"]["equal"] == len(jobs) and rep["units"]["pim"]["busy_cycles"] == 0
    assert not list(run_dir.glob("*.fst")) and "waveform" not in rep["files"]

    # the cycle check fails on a job one cycle longer than recorded
    from hdl.moe import CONFIGS
    prep = moe.prepare(CONFIGS["small"], tr, 0, seed=1, capacity="static",
                       dispatch="sptc_only", mode="samoyeds", alpha=1.0)   # the CLI's default
    with np.load(run_dir / "sim" / "result.npz") as f:
        res = {k: f[k] for k in f.files}
    assert moe.analyse(prep, res, stalls=False)["cycles_ok"]
    res["done"] = res["done"].copy()
    res["done"][0, 0] += 1
    an = moe.analyse(prep, res, stalls=False)
    assert not an["cycles_ok"] and "Logic-PIM idle" in an["problems"][0]

    # a golden output off by one in one element: the bench's scoreboard fails the run
    real = moe.prepare

    def corrupt(*a, **k):
        p = real(*a, **k)
        p["layer"]["steps"][0]["y"][3, 1] ^= 1
        return p
    monkeypatch.setattr(moe, "prepare", corrupt)
    bad_dir = tmp_path / "bad"
    assert cli.main(args + ["--run-dir", str(bad_dir)]) == 1
    out = capsys.readouterr().out
    assert "bit-exact     NO" in out
    rep = json.loads((bad_dir / "report.json").read_text())
    assert rep["bit_exact"] is False and "differ" in rep["failure"]


def test_sim_cli_bad_options(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    assert cli.main(["run", "--trace", str(bad)]) == 2
    assert "error:" in capsys.readouterr().err
    assert cli.main(["run", "--engine", "sptc", "--trace", str(bad)]) == 2
    assert cli.main(["run", "--step", "9999"]) == 2
    assert "step" in capsys.readouterr().err
    assert cli.main(["run", "--engine", "sptc", "--out", "int4"]) == 2
    assert cli.main(["run", "--preset", "gpt-5"]) == 2
    # options of another engine are refused, not ignored
    for argv in (["--nmv", "1,2,32"], ["--out", "int32"], ["--max-experts", "2"],
                 ["--alpha", "1.5"], ["--capacity", "static", "--alpha", "0"],
                 ["--engine", "sptc", "--dispatch", "duplex"],
                 ["--engine", "pim", "--capacity", "static"]):
        assert cli.main(["run", *argv]) == 2, argv
        assert "error:" in capsys.readouterr().err
    # a trace the top cannot hold: hidden above max_hidden, too many experts for the PIM
    big = traces.generate("mixtral-8x7b", steps=2, seed=1, scale=32)       # hidden 128
    traces.save(big, tmp_path / "big.npz")
    assert cli.main(["run", "--trace", str(tmp_path / "big.npz")]) == 2
    assert "max_hidden" in capsys.readouterr().err
    many = traces.generate("qwen2-moe", steps=2, seed=1, scale=32)         # 64 experts
    traces.save(many, tmp_path / "many.npz")
    assert cli.main(["run", "--trace", str(tmp_path / "many.npz")]) == 2
    assert "Logic-PIM" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        cli.main(["run", "--mode", "3:8"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        cli.main(["run", "--dispatch", "gpu"])
    assert e.value.code == 2


@pytest.mark.cocotb
@pytest.mark.parametrize("engine", ["pim", "cim"])
def test_sim_run_other_engines(engine, tmp_path, capsys, monkeypatch):
    """`python -m sim run --engine pim|cim`. The Logic-PIM run takes the VCD fallback of a
    machine without the lz4/zlib headers (the probe says they are missing) and the
    tests find the waveform the run reported; the CIM run writes no waveform."""
    run_dir = tmp_path / engine
    argv = ["run", "--engine", engine, "--run-dir", str(run_dir)]
    if engine == "pim":
        monkeypatch.setattr(toolchain, "have_fst_headers", lambda: False)
        with pytest.warns(UserWarning, match="fall back to VCD"):
            rc = cli.main(argv)
    else:
        rc = cli.main(argv + ["--no-waves"])
    out = capsys.readouterr().out
    assert rc == 0, out
    rep = json.loads((run_dir / "report.json").read_text())
    assert rep["bit_exact"] is True and rep["jobs"]
    assert all(j["cycles"] > 0 for j in rep["jobs"])
    assert rep["config"]["checked_values"] > 0
    assert f"yes: all {rep['config']['checked_values']} output values" in out
    if engine == "pim":
        assert all(j["cycles"] == j["model_cycles"] for j in rep["jobs"])
        assert "DRAM timing violations: 0" in rep["notes"]
        wave = Path(rep["files"]["waveform"])
        assert wave == run_dir / "pim.vcd" and str(wave) in out
        assert wave.read_text(errors="replace").lstrip().startswith("$")   # a VCD header
        assert any(n.endswith("instr__valid") for n in report.wave_signals(wave))
        assert f'[dumpfile] "{wave.name}"' in (run_dir / "pim.gtkw").read_text()
        assert not list(run_dir.glob("*.fst"))
    else:
        assert "waveform" not in rep["files"]
        _check_cim_report(run_dir, rep, out)
    assert (run_dir / "cycles.png").read_bytes()[:4] == b"\x89PNG"


def _check_cim_report(run_dir, rep, out):
    """The CIM run's report beside the evaluation model (sim/runners/cim_report.py): RTL
    cycles and exercised ADC range equal the model's on every job, the figures of every
    mapping, the SVG pictures written, parseable and linked from report.md."""
    import xml.etree.ElementTree as ET

    from golden import cim as gc
    assert rep["checks"] == {"adc_ok": True, "cycles_ok": True}
    assert [j["strategy"] for j in rep["jobs"]] == ["linear", "sparse", "dense"]
    for j in rep["jobs"]:
        assert (j["adc_rows_rtl"], j["adc_bits_rtl"]) == (j["adc_rows_model"],
                                                          j["adc_bits_model"])
        assert j["adc_rows_model"] <= j["adc_rows_design"]
        assert j["cycles"] == j["model_cycles"]
        assert j["cycles_per_token"] == j["model_cycles_per_token"]
    ev = rep["evaluation"]
    assert sorted(ev) == sorted(gc.MAPPINGS)
    for k in ("arrays", "utilization", "footprint_reduction", "flop_reduction", "adc_bits",
              "cycles", "energy_total_pj", "speedup", "energy_gain"):
        assert all(k in e for e in ev.values()), k
    assert ev["dense"]["cycles"] == rep["jobs"][2]["model_cycles_per_token"]
    md = (run_dir / "report.md").read_text()
    assert "**Exercised ADC range, RTL = model on every job:** yes" in md
    assert "ADC range     yes" in out
    assert sorted(rep["evaluation_layer"]) == sorted(gc.MAPPINGS)
    for name in ("placement_linear", "placement_sparse", "placement_dense", "mappings",
                 "placement_layer_sparse", "placement_layer_dense", "layer_mappings"):
        svg = run_dir / f"{name}.svg"
        assert ET.parse(svg).getroot().tag.endswith("svg"), name
        assert f"]({svg.name})" in md and rep["files"][name] == str(svg)


def test_missing_waveform_is_a_clear_error(tmp_path):
    """pywellen panics (a Rust panic, not an exception a caller expects) on a missing
    file; the reader says which file is missing and what the folder has instead."""
    (tmp_path / "sptc.vcd").write_text("$timescale 1ps $end\n")
    with pytest.raises(FileNotFoundError, match=r"sptc\.fst does not exist.*sptc\.vcd"):
        report.wave_signals(tmp_path / "sptc.fst")
    (tmp_path / "bad.fst").write_bytes(b"not a waveform")
    with pytest.raises(ValueError, match="bad.fst: not a readable"):
        report.wave_signals(tmp_path / "bad.fst")



def test_icarus_skips_are_counted_in_the_summary(pytester):
    """Without iverilog the Icarus variants skip; the terminal summary says how many."""
    from conftest import ICARUS_MISSING
    pytester.makeconftest((Path(__file__).parent / "conftest.py").read_text())
    pytester.makepyfile(test_x=f"""
        import pytest
        no_icarus = pytest.mark.skipif(True, reason={ICARUS_MISSING!r})
        other = pytest.mark.skipif(True, reason="something else")

        @pytest.mark.parametrize("sim", ["a", pytest.param("b", marks=no_icarus)])
        def test_one(sim):
            pass

        @no_icarus
        def test_two():
            pass

        @other
        def test_three():
            pass
    """)
    res = pytester.runpytest("-p", "no:xdist", "-p", "no:cacheprovider")
    res.assert_outcomes(passed=1, skipped=3)
    lines = [ln for ln in res.outlines if ICARUS_MISSING in ln and "skipped:" in ln]
    assert lines and lines[-1].startswith(f"2 tests skipped: {ICARUS_MISSING}"), res.outlines


# ------------------------------------------------------------------ the runner protocol

def test_every_engine_has_one_runner():
    """Each --engine has a runner module implementing the whole protocol."""
    from sim import runners
    from sim.runners.base import Runner
    assert cli.ENGINES == runners.ENGINES == ("moe", "sptc", "pim", "cim", "attn")
    for engine in runners.ENGINES:
        r = runners.get(engine)
        assert isinstance(r, Runner) and r.engine == engine and r.title, engine
        assert not getattr(type(r), "__abstractmethods__", None), engine
    with pytest.raises(KeyError, match="gpu"):
        runners.get("gpu")


def test_run_result_verdict_needs_bits_and_cycles():
    from sim.runners.base import RunResult
    kw = dict(failure=None, checked=1, cycles=10, model_cycles=10, report={})
    assert RunResult(bit_exact=True, cycles_ok=True, **kw).ok
    assert not RunResult(bit_exact=False, cycles_ok=True, **kw).ok
    assert not RunResult(bit_exact=True, cycles_ok=False, **kw).ok


@pytest.mark.parametrize("engine, config", [("pim", "small"), ("cim", "default")])
def test_runner_simulate_is_the_bench_entry(engine, config, tmp_path, monkeypatch):
    """``simulate`` hands the jobs, the build and the options to the engine's cocotb
    bench unchanged (what the benches and the CLI both call)."""
    from hdl.cim import CONFIGS as CIM
    from hdl.pim import CONFIGS as PIM
    from sim import runners
    from tb import cim as tbc
    from tb import pim as tbp
    seen = {}
    monkeypatch.setattr(tbp, "run_jobs", lambda *a, **k: seen.update(a=a, k=k) or {"ok": 1})
    monkeypatch.setattr(tbc, "run_jobs", lambda *a, **k: seen.update(a=a, k=k) or {"ok": 1})
    jobs = ["job0", "job1"]
    res = runners.get(engine).simulate(config, jobs, tmp_path, seed=7, stalls=True)
    assert res == {"ok": 1}
    if engine == "pim":
        assert seen["a"][:3] == (PIM["small"], jobs, tmp_path) and seen["k"]["seed"] == 7
    else:
        assert seen["a"] == (jobs,) and seen["k"]["config_name"] == "default"
        assert seen["k"]["stalls"] is True and seen["k"]["test_dir"] == tmp_path
        assert CIM[seen["k"]["config_name"]] is CIM["default"]


def test_runner_plan_checks_and_writes_nothing(tmp_path, monkeypatch):
    """``plan`` alone: the jobs of a trace step, the default folder name, no file."""
    import argparse

    from sim import runners
    monkeypatch.chdir(tmp_path)
    args = argparse.Namespace(engine="cim", preset="qwen2-moe", trace=None, step=3, seed=1,
                              stalls=False, simulator="verilator", waves=False, run_dir=None)
    plan = runners.get("cim").plan(args)
    assert plan.run_name == "cim-qwen2-moe"
    assert [j.strategy for j in plan.data["jobs"]] == ["linear", "sparse", "dense"]
    assert plan.data["checked"] == sum(len(j.xs) for j in plan.data["jobs"]) * 64
    assert not list(tmp_path.iterdir())
