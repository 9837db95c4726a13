"""`python -m sim run --engine attn` (sim/runners/attn.py): one decode step's attention of
the default trace through the Logic-PIM RTL (small build), its report checked against
the cycle model and the contexts of golden.attn_sched; the host-side checks can fail;
bad input."""
import json
from pathlib import Path

import numpy as np
import pytest

from golden import FormatError, attn_sched as asch, pim as gp, trace as traces
from hdl.pim import CONFIGS
from sim import cli, report
from sim.runners import attn as ra
from tb import toolchain

CFG = CONFIGS["small"]


@pytest.mark.cocotb
def test_sim_run_attn_report_equals_the_model(tmp_path, capsys, monkeypatch):
    """The VCD fallback (as the pim run of tests/test_sim_cli.py: the same build)."""
    run_dir = tmp_path / "attn"
    monkeypatch.setattr(toolchain, "have_fst_headers", lambda: False)
    with pytest.warns(UserWarning, match="fall back to VCD"):
        rc = cli.main(["run", "--engine", "attn", "--run-dir", str(run_dir), "--seed", "3"])
    out = capsys.readouterr().out
    assert rc == 0, out
    rep = json.loads((run_dir / "report.json").read_text())
    assert rep["bit_exact"] is True and rep["cycles_ok"] is True
    assert "DRAM timing violations: 0" in rep["notes"]
    step = rep["trace"]["step"]
    tr = traces.load_default()
    d = ra.programs(CFG, tr, step, 3)
    G, H, D = asch.preset_shape(tr.preset).group, ra.KV_HEADS, ra.HEAD_DIM
    # the requests: the step's first decode requests, contexts as golden.attn_sched derives
    dec = [q for q in asch.step_requests(tr)[step] if not q.prefill][:len(rep["requests"])]
    assert len(dec) >= 1
    assert [(q["request"], q["context"]) for q in rep["requests"]] == \
        [(q.request, q.context) for q in dec]
    assert rep["config"]["checked_values"] == len(dec) * H * G * D
    assert f"yes: all {len(dec) * H * G * D} output values" in out
    # cycles: the RTL's = the model's, the model's = golden.pim.predict of the program
    a = rep["attention"]
    tm = gp.predict(CFG, d["dec"].words, ref_phase=a["ref_phase"])
    jobs = {j["job"]: j for j in rep["jobs"]}
    assert jobs["decode step"]["cycles"] == jobs["decode step"]["model_cycles"] == tm.cycles
    assert jobs["kv preload"]["cycles"] == jobs["kv preload"]["model_cycles"] > 0
    assert a["model_cycles"] == tm.cycles
    kw = -(-D // CFG.elems)
    for i, (q, r) in enumerate(zip(dec, rep["requests"])):
        sp = tm.attn_spans[i * H:(i + 1) * H]
        assert r["cycles"] == sp[-1]["out_last"] - sp[0]["start"] + 1 > 0
        assert r["kv_bytes"] == H * 2 * q.context * kw * CFG.elems
    kv = sum(r["kv_bytes"] for r in rep["requests"])
    assert a["kv_bytes"] == a["kv_bytes_model"] == kv == tm.reads * CFG.elems
    window = tm.cycles - tm.attn_spans[0]["start"] + 1
    assert a["attn_window"] == window
    assert a["bytes_per_cycle"] == round(kv / window, 3)
    assert a["fraction_of_peak"] == round(kv / window / CFG.peak_bytes_per_cycle, 4)
    assert 0 < a["fraction_of_peak"] <= 1
    wave = Path(rep["files"]["waveform"])
    assert wave == run_dir / "attn.vcd" and str(wave) in out
    assert any(n.endswith("instr__valid") for n in report.wave_signals(wave))
    md = (run_dir / "report.md").read_text()
    assert "| request | context |" in md and f"| {dec[0].request} | {dec[0].context} |" in md


def test_golden_check_catches_a_wrong_operand():
    tr = traces.load_default()
    d = ra.programs(CFG, tr, 31, 1)
    n, fail = ra.golden_check(CFG, d)
    assert fail is None and n == len(d["reqs"]) * ra.KV_HEADS * d["group"] * ra.HEAD_DIM
    d["q"] = d["q"].copy()
    d["q"][0, 0, 0] ^= 1                 # the reference now differs from the programs
    n, fail = ra.golden_check(CFG, d)
    assert n == 0 and "decode_attention" in fail


def test_runner_bad_input(capsys):
    tr = traces.generate("mixtral-8x7b", steps=3, decode=2, prompt_len=(400, 400))
    with pytest.raises(FormatError, match="capacity: request 0 has context 401"):
        ra.programs(CFG, tr, 0, 1)
    pre_only = traces.generate("mixtral-8x7b", steps=3, decode=0, prefill=2.0)
    st = next(i for i in range(pre_only.steps) if pre_only.step(i).tokens)
    with pytest.raises(FormatError, match="no decode request"):
        ra.programs(CFG, pre_only, st, 1)
    assert cli.main(["run", "--engine", "attn", "--preset", "deepseek-v3"]) == 2
    assert "grouped-query" in capsys.readouterr().err
    assert not np.array_equal(*(ra.programs(CFG, traces.load_default(), 31, s)["q"]
                                for s in (1, 2)))          # the seed reaches the data
