"""The CIM bench's evaluation tables (sim/bench/cim_eval.py, ``build/bench/cim.json``) and
the ``make sim ENGINE=cim`` report (sim/runners/cim_report.py) without the RTL: the
figures are golden.cim.evaluate's, every mapping has them, and a run whose exercised ADC
range differs from the model's fails."""
from __future__ import annotations

import argparse
import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from golden import cim as gc
from golden.cim.paper import paper_rows
from sim.bench import cim as bench
from sim.bench import cim_eval

FIELDS = ("arrays", "array_reduction", "utilization", "footprint_reduction", "flop_reduction",
          "adc_bits", "cycles", "energy_total_pj", "speedup", "energy_gain", "stored_bytes",
          "flops", "adc_share", "energy_pj")


def test_eval_rows_equal_golden_evaluate():
    """One small case, by hand through golden.cim.evaluate: every field equal."""
    rows = cim_eval.sweep_rows()
    assert len(rows) == len(cim_eval.SWEEP_N) * len(cim_eval.SWEEP_M) * len(gc.MAPPINGS)
    got = {r["mapping"]: r for r in rows if (r["n"], r["array_size"]) == (256, 64)}
    assert sorted(got) == sorted(gc.MAPPINGS)
    base = gc.evaluate(256, 16, 64, "unfactored")
    for mp in gc.MAPPINGS:
        ev = gc.evaluate(256, 16, 64, mp)
        want = ev.as_dict()
        r = got[mp]
        for k in set(FIELDS + cim_eval.EVAL_FIELDS) & set(want):
            assert r[k] == want[k], (mp, k)
        assert r["speedup"] == base.cycles / ev.cycles
        assert r["energy_gain"] == base.energy_total_pj / ev.energy_total_pj
        assert r["adc_bits_baseline"] == base.adc_bits
    # hand-checked: n=256, b=16 on 64 x 64 arrays
    assert (got["dense"]["arrays"], got["sparse"]["arrays"], got["unfactored"]["arrays"]) == (
        2, 8, 16)
    assert got["dense"]["footprint_reduction"] == 256 / (2 * 16)
    assert got["dense"]["adc_bits"] == 5 and got["unfactored"]["adc_bits"] == 7


def test_bench_json_has_every_mapping(tmp_path, monkeypatch):
    """``python -m sim.bench cim`` writes the eval rows (every field, every mapping, every
    table), the paper's claims and the energy parameters into cim.json and cim.md; the
    RTL rows are stubbed (the cocotb bench measures them, tests/test_cim_rtl.py)."""
    monkeypatch.setattr(bench, "BENCH_DIR", tmp_path)
    monkeypatch.setattr("sim.bench.BENCH_DIR", tmp_path)
    monkeypatch.setattr(bench, "measure_rtl", lambda maps, cfg: [
        dict(cycles=gc.token_cycles(mp, cfg), load_cycles=0, rtl_total_cycles=1,
             model_total_cycles=1, rtl_tokens=1) for mp in maps])
    monkeypatch.setattr(bench, "preset_layer_means", lambda: {})    # a console line only
    bench.main(quick=True)
    rows = json.loads((tmp_path / "cim.json").read_text())
    kinds = {r["kind"] for r in rows}
    assert kinds == {"mapping", "eval", "paper", "energy_config"}
    evals = [r for r in rows if r["kind"] == "eval"]
    tables = {}
    for r in evals:
        tables.setdefault(r["table"], {})[r["mapping"]] = r
        for k in FIELDS:
            assert k in r, (r["table"], r["mapping"], k)
    assert all(sorted(t) == sorted(gc.MAPPINGS) for t in tables.values())
    assert {r["workload"] for r in evals} == {"matrix", "preset"}
    # the preset layers (quick: the kit presets on 128 x 128 arrays)
    from golden.trace import PRESETS
    presets = [r for r in evals if r["workload"] == "preset"]
    assert sorted({r["preset"] for r in presets}) == sorted(cim_eval.QUICK_PRESETS)
    for r in presets:
        p = PRESETS[r["preset"]]
        assert r["matrices"] == (p.num_experts + p.num_shared) * 3
        assert (r["n"], r["b"], r["array_size"]) == (cim_eval.PRESET_N, cim_eval.PRESET_B, 128)
        assert (r["hidden"], r["ffn"]) == (p.hidden, p.ffn)
    mix = {r["mapping"]: r for r in presets if r["preset"] == "mixtral-8x7b"}
    ev = gc.evaluate(1024, 32, 128, "dense", matrices=24)
    assert mix["dense"]["arrays"] == ev.arrays == 96
    assert mix["dense"]["energy_total_pj"] == pytest.approx(ev.energy_total_pj)
    claims = [r for r in rows if r["kind"] == "paper"]
    assert [r["claim"] for r in claims] == [r["claim"] for r in paper_rows()]
    assert all(r["paper"] and r["definition"] and set(r["fields"]) <= set(FIELDS)
               for r in claims)
    md = (tmp_path / "cim.md").read_text()
    assert md.count("### ") == len(tables)
    assert "[paper: 78.8 %]" in md and "| ADC resolution | 3 bits (DenseMap) vs 8" in md


# ------------------------------------------------------------- make sim report, no RTL

def _fake_rtl(jobs, adc_bump=0):
    """What tb.cim.run_jobs returns, from the golden interpreter (no stalls)."""
    from hdl.cim import CONFIGS
    from tb.cim import job_program
    cfg = CONFIGS["default"]
    rec = dict(costs=[], cost_ops=[], offsets=[0], total=[], steps=[], adc_rows=[], adc_bits=[])
    for j in jobs:
        words, beats, _ = job_program(j, cfg)
        e = gc.execute(words, cfg, beats)
        rec["costs"] += [c for _, _, c in e.cycles]
        rec["cost_ops"] += [o for _, o, _ in e.cycles]
        rec["offsets"].append(len(rec["costs"]))
        rec["total"].append(sum(c for _, _, c in e.cycles))
        rec["steps"].append(e.steps)
        rows = max(gc.program_activity(words, cfg, beats).tokens) + adc_bump
        rec["adc_rows"].append(rows)
        rec["adc_bits"].append(gc.rows_bits(rows))
    return {k: np.array(v) for k, v in rec.items()}


@pytest.mark.parametrize("bump", [0, 1])
def test_sim_report_figures_and_adc_check(bump, tmp_path, monkeypatch, capsys):
    from sim import runners
    r = runners.get("cim")
    monkeypatch.setattr(r, "simulate", lambda config, jobs, workdir, **k: _fake_rtl(jobs, bump))
    args = argparse.Namespace(engine="cim", preset=None, trace=None, step=None, seed=1,
                              stalls=False, simulator="verilator", waves=False, run_dir=None)
    res = r.execute(r.plan(args), tmp_path)
    files = r.write_report(tmp_path, res)
    r.summary(res, files)
    out = capsys.readouterr().out
    rep = json.loads((tmp_path / "report.json").read_text())
    md = (tmp_path / "report.md").read_text()
    assert res.bit_exact and rep["checks"]["cycles_ok"] is True
    assert res.ok == (bump == 0) and rep["checks"]["adc_ok"] == (bump == 0)
    assert ("**Exercised ADC range, RTL = model on every job:** "
            + ("yes" if bump == 0 else "NO")) in md
    assert ("ADC range     " + ("yes" if bump == 0 else "NO")) in out
    for j in rep["jobs"]:
        assert j["adc_rows_rtl"] == j["adc_rows_model"] + bump == 8 + bump   # b = 8, no zeros
        assert j["cycles_per_token"] == j["model_cycles_per_token"]
    assert {j["strategy"]: j["adc_rows_design"] for j in rep["jobs"]} == {
        "linear": 64, "sparse": 8, "dense": 8}
    assert sorted(rep["evaluation"]) == sorted(gc.MAPPINGS)
    want = gc.evaluate_all(64, 8, 64)
    for mp, ev in want.items():
        assert rep["evaluation"][mp]["cycles"] == ev.cycles
        assert rep["evaluation"][mp]["energy_total_pj"] == pytest.approx(ev.energy_total_pj)
    # the trace's layer: 8 experts x 3 = 24 matrices of n = 64; DenseMap fills 6 arrays
    assert rep["evaluation_layer"]["dense"]["matrices"] == 24
    assert rep["evaluation_layer"]["dense"]["arrays"] == 6
    assert rep["evaluation_layer"]["dense"]["utilization"] == 1.0
    for name in ("placement_linear", "placement_sparse", "placement_dense", "mappings",
                 "placement_layer_sparse", "placement_layer_dense", "layer_mappings"):
        svg = tmp_path / f"{name}.svg"
        assert ET.parse(svg).getroot().tag.endswith("svg")
        assert f"]({svg.name})" in md
