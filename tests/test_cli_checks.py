"""`python -m sim run` refuses bad options before it builds or writes anything.

Everything here runs in-process (``sim.cli.main``) and stops before the RTL: the
builders and runners are replaced by stubs that fail the test if reached, unless a
test lets a run go as far as the bench's entry point. One RTL run at the end.
"""
import dataclasses
import json
import os

import numpy as np
import pytest

import golden
from golden import cim as gc
from golden import pim as gp
from golden.errors import FormatError
from golden import trace as traces
from sim import cli, rundir, runopts
from tb import toolchain


class Reached(Exception):
    """A stub of a build or run step was called."""


@pytest.fixture
def no_rtl(monkeypatch):
    """Fail loudly if a command gets as far as building or running RTL."""
    import sim.moe
    import sim.sptc
    from tb import cim as tbc
    from tb import cocotb_run
    from tb import pim as tbp

    def stop(*a, **k):
        raise Reached("RTL build/run reached")
    for mod, name in ((cocotb_run, "build"), (sim.sptc, "build_design"),
                      (sim.sptc, "run_batch"), (sim.moe, "build"), (tbp, "run_jobs"),
                      (tbc, "run_jobs")):
        monkeypatch.setattr(mod, name, stop)


def _run(capsys, *argv):
    rc = cli.main(["run", *map(str, argv)])
    return rc, capsys.readouterr().err


def _notes_folder(tmp_path):
    x = tmp_path / "x"
    (x / "src").mkdir(parents=True)
    (x / "notes.txt").write_text("1\n")
    (x / "src" / "keep.py").write_text("print(1)\n")
    return x


def _intact(x):
    return (x / "notes.txt").read_text() == "1\n" and (x / "src" / "keep.py").is_file()


# ------------------------------------------------------------------ no data loss

def test_run_dir_of_the_issue_survives(tmp_path, capsys, no_rtl):
    """The issue's reproduction: exit 2, notes.txt and src/ still there."""
    x = _notes_folder(tmp_path)
    rc, err = _run(capsys, "--engine", "sptc", "--config", "small", "--nmv", "1,3,32",
                   "--no-waves", "--run-dir", x)
    assert rc == 2 and err.startswith("error:") and _intact(x)
    # valid options: the folder itself is refused, still untouched
    rc, err = _run(capsys, "--engine", "sptc", "--config", "small", "--no-waves",
                   "--run-dir", x)
    assert rc == 2 and "not empty" in err and rundir.MARKER in err and _intact(x)
    assert not (x / rundir.MARKER).exists()


def test_nmv_refused_before_anything(tmp_path, capsys, no_rtl):
    """(N, M) the build lacks, M = 0, V not a multiple of 4 or not dividing K: refused
    before a build and before the (new) run folder exists."""
    new = tmp_path / "new"
    for nmv, text in (("1,3,32", "samoyeds_nm"), ("1,0,32", "(1, 0)"), ("1,2,6", "V = 6"),
                      ("1,2,128", "V = 128"), ("1,2", "three integers")):
        rc, err = _run(capsys, "--engine", "sptc", "--config", "small", "--nmv", nmv,
                       "--no-waves", "--run-dir", new)
        assert rc == 2 and text in err, (nmv, err)
        assert not new.exists()


def test_run_dir_dot_and_protected_folders(tmp_path, capsys, monkeypatch, no_rtl):
    x = _notes_folder(tmp_path)
    monkeypatch.chdir(x)
    rc, err = _run(capsys, "--engine", "cim", "--no-waves", "--run-dir", ".")
    assert rc == 2 and "not empty" in err and _intact(x)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for d, text in (("~", "home folder"), (str(rundir.ROOT), "checkout"),
                    (str(rundir.ROOT.parent), "checkout"), ("/", "filesystem root")):
        rc, err = _run(capsys, "--engine", "cim", "--no-waves", "--run-dir", d)
        assert rc == 2 and text in err, (d, err)
    assert not list(home.iterdir())          # even an empty home folder is not used


# ------------------------------------------------------------------ bad run folders

def test_run_dir_bad_paths(tmp_path, capsys, monkeypatch, no_rtl):
    f = tmp_path / "file.txt"
    f.write_text("data")
    for d, text in ((f, "not a folder"), (tmp_path / "missing" / "run", "does not exist"),
                    (f / "run", "is not a folder")):
        rc, err = _run(capsys, "--engine", "pim", "--no-waves", "--run-dir", d)
        assert rc == 2 and text in err and "Traceback" not in err, (d, err)
    assert f.read_text() == "data" and not (tmp_path / "missing").exists()
    # unwritable (simulated: the tests may run as root, who can write anywhere)
    monkeypatch.setattr(rundir.os, "access", lambda *a, **k: False)
    for d in (tmp_path / "new", tmp_path):
        rc, err = _run(capsys, "--engine", "pim", "--no-waves", "--run-dir", d)
        assert rc == 2 and "not writable" in err, err
    assert not (tmp_path / "new").exists()


def test_run_dir_marker_reuse(tmp_path, monkeypatch):
    """A folder the tool made is emptied on reuse (a symlink in it is removed, its
    target kept); an empty folder is taken; creating one that cannot be made is a
    FormatError, not a traceback."""
    outside = tmp_path / "outside.txt"
    outside.write_text("keep")
    d = rundir.prepare(tmp_path / "run")
    assert (d / rundir.MARKER).is_file() and d == (tmp_path / "run").resolve()
    (d / "sim").mkdir()
    (d / "sim" / "old.log").write_text("x")
    (d / "report.json").write_text("{}")
    (d / "link").symlink_to(outside)
    assert rundir.prepare(d) == d
    assert sorted(p.name for p in d.iterdir()) == [rundir.MARKER]
    assert outside.read_text() == "keep"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (rundir.prepare(empty) / rundir.MARKER).is_file()
    with pytest.raises(FormatError, match="run-dir"):
        rundir.prepare(tmp_path)                          # holds files, no marker
    assert rundir.check(rundir.DEFAULT_PARENT / "moe-x-step0", default=True)

    def deny(*a, **k):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(rundir.Path, "mkdir", deny)
    with pytest.raises(FormatError, match="cannot prepare"):
        rundir.prepare(tmp_path / "other")


# ------------------------------------------------------------------ numbers

@pytest.mark.parametrize("argv, text", [
    (["--seed", "-1"], "seed"),
    (["--engine", "sptc", "--seed", "-1"], "seed"),
    (["--engine", "pim", "--seed", "-5"], "seed"),
    (["--engine", "sptc", "--max-experts", "-1"], "max-experts"),
    (["--engine", "sptc", "--max-experts", "0"], "max-experts"),
    (["--engine", "sptc", "--step", "-1"], "step"),
    (["--engine", "sptc", "--mode", "dense", "--nmv", "1,2,32"], "--mode samoyeds"),
])
def test_bad_numbers(argv, text, tmp_path, capsys, no_rtl):
    rc, err = _run(capsys, *argv, "--no-waves", "--run-dir", tmp_path / "r")
    assert rc == 2 and text in err and "Traceback" not in err, err
    assert not (tmp_path / "r").exists()


# ------------------------------------------------------------------ other engines

def test_stall_profile_needs_stalls(tmp_path, capsys, no_rtl):
    rc, err = _run(capsys, "--engine", "sptc", "--stall-profile", "starve", "--no-waves",
                   "--run-dir", tmp_path / "r")
    assert rc == 2 and "--stall-profile starve needs --stalls" in err, err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("engine", ["moe", "sptc", "pim", "cim"])
def test_options_of_other_engines_are_refused(engine, tmp_path, capsys, no_rtl):
    given = {"mode": ["--mode", "dense"], "config": ["--config", "small"],
             "capacity": ["--capacity", "static"], "alpha": ["--alpha", "1.5"],
             "dispatch": ["--dispatch", "duplex"], "nmv": ["--nmv", "1,2,32"],
             "out": ["--out", "int32"], "max_experts": ["--max-experts", "2"],
             "stall_profile": ["--stalls", "--stall-profile", "bursty"]}
    refused = [n for n, engines in runopts.ENGINE_OPTIONS.items() if engine not in engines]
    assert refused
    for name in refused:
        rc, err = _run(capsys, "--engine", engine, *given[name], "--no-waves",
                       "--run-dir", tmp_path / "r")
        flag = "--" + name.replace("_", "-")
        assert rc == 2 and flag in err and engine in err, (name, err)
    assert not (tmp_path / "r").exists()


def _save(tmp_path, tr, name="t.npz"):
    path = tmp_path / name
    traces.save(tr, path)
    return path


def test_pim_run_that_would_check_nothing_fails(tmp_path, capsys, no_rtl):
    """No decode-only step with tokens: refused up front (the issue's run exited 0 with
    'bit-exact yes' after computing nothing); a prefill step named by --step too."""
    tr = traces.generate("mixtral-8x7b", steps=4, seed=3, decode=0, prefill=2.0,
                         prompt_len=(4, 8))
    assert tr.tokens and not any(s.is_decode_only and s.tokens for s in tr)
    path = _save(tmp_path, tr)
    rc, err = _run(capsys, "--engine", "pim", "--trace", path, "--stalls", "--no-waves",
                   "--run-dir", tmp_path / "r")
    assert rc == 2 and "decode-only" in err
    busy = max(range(tr.steps), key=lambda i: tr.step(i).tokens)
    rc, err = _run(capsys, "--engine", "pim", "--trace", path, "--step", busy, "--no-waves",
                   "--run-dir", tmp_path / "r")
    assert rc == 2 and f"step {busy}" in err and "decode-only" in err
    assert not (tmp_path / "r").exists()


# ------------------------------------------------------------------ every preset

@pytest.mark.parametrize("preset", sorted(traces.PRESETS))
def test_every_preset_reaches_the_pim_and_cim_benches(preset, tmp_path, capsys, monkeypatch):
    """Each preset is sized for the Logic-PIM and CIM builds and its jobs are valid: the
    CLI gets as far as the bench with programs the golden models run."""
    from hdl.cim import CONFIGS as CIM
    from hdl.pim import CONFIGS as PIM
    from tb import cim as tbc
    from tb import pim as tbp
    seen = {}

    def pim_jobs(cfg, jobs, *a, **k):
        seen["pim"] = (cfg, jobs)
        raise Reached

    def cim_jobs(jobs, **k):
        seen["cim"] = jobs
        raise Reached
    monkeypatch.setattr(tbp, "run_jobs", pim_jobs)
    monkeypatch.setattr(tbc, "run_jobs", cim_jobs)
    for engine in ("pim", "cim"):
        with pytest.raises(Reached):
            cli.main(["run", "--engine", engine, "--preset", preset, "--no-waves",
                      "--run-dir", str(tmp_path / engine)])
    cfg, jobs = seen["pim"]
    assert cfg == PIM["small"] and len(jobs) == 3          # weights + two decode steps
    state, outputs = gp.UnitState.reset(cfg), 0
    for j in jobs:
        r = gp.execute(cfg, j["program"].words, j["program"].din, state=state)
        assert r.err == 0, j["name"]
        outputs += len(r.values)
    assert outputs > 0
    ccfg = CIM["default"]
    for j in seen["cim"]:
        words, beats, ys = tbc.job_program(j, ccfg)
        assert ys and len(j.xs) > 0 and j.xs.shape[1] in runopts.cim_sizes(ccfg)
        r = gc.execute(words, ccfg, beats)
        assert r.error == "OK" and len(r.outputs) == len(ys)


def test_traces_the_units_cannot_hold_are_refused(tmp_path, capsys, no_rtl):
    wide = _save(tmp_path, traces.generate("mixtral-8x7b", steps=2, seed=1, scale=8))  # hidden 512
    rc, err = _run(capsys, "--engine", "pim", "--trace", wide, "--no-waves")
    assert rc == 2 and "Logic-PIM" in err
    odd = _save(tmp_path, traces.generate("qwen2-moe", steps=2, seed=1), "odd.npz")  # hidden 32
    rc, err = _run(capsys, "--engine", "cim", "--trace", odd, "--no-waves")
    assert rc == 2 and "hidden = 32" in err and "b*b" in err
    rc, err = _run(capsys, "--engine", "sptc", "--config", "small", "--trace", wide,
                   "--no-waves")
    assert rc == 2 and "max_k" in err


# ------------------------------------------------------------------ empty steps

def _with_empty_step(tr, at):
    off = np.insert(tr.step_offsets, at, tr.step_offsets[at])
    return dataclasses.replace(tr, step_offsets=off)


def _all_empty(tr, steps=3):
    k = tr.top_k
    return dataclasses.replace(
        tr, step_offsets=np.zeros(steps + 1, np.int64), expert_ids=np.zeros((0, k), np.int16),
        gate=np.zeros((0, k), np.float32), gate_q=np.zeros((0, k), np.int8),
        is_prefill=np.zeros(0, bool), request_id=np.zeros(0, np.int32))


@pytest.mark.parametrize("engine", ["moe", "sptc", "pim", "cim"])
def test_steps_without_tokens_are_refused(engine, tmp_path, capsys, no_rtl):
    base = traces.load_default()
    tr = _with_empty_step(base, 2)
    assert tr.step(2).tokens == 0 and tr.steps == base.steps + 1
    path = _save(tmp_path, tr)
    assert traces.load(path).step(2).tokens == 0          # a valid trace file
    rc, err = _run(capsys, "--engine", engine, "--trace", path, "--step", 2, "--no-waves",
                   "--run-dir", tmp_path / "r")
    assert rc == 2 and "step 2" in err and ("no tokens" in err or "0 tokens" in err), err
    empty = _save(tmp_path, _all_empty(base), "empty.npz")
    rc, err = _run(capsys, "--engine", engine, "--trace", empty, "--no-waves",
                   "--run-dir", tmp_path / "r")
    assert rc == 2 and "empty" in err, err
    assert not (tmp_path / "r").exists()


def test_icarus_missing_is_a_clear_error(tmp_path, capsys, monkeypatch, no_rtl):
    monkeypatch.setattr(toolchain, "have_icarus", lambda: False)
    for engine in ("moe", "sptc", "pim", "cim"):
        rc, err = _run(capsys, "--engine", engine, "--simulator", "icarus", "--no-waves",
                       "--run-dir", tmp_path / "r")
        assert rc == 2 and "iverilog" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


# ------------------------------------------------------------------ values as given

def test_messages_show_huge_unsigned_values_as_given():
    big = 2 ** 63 + 1
    with pytest.raises(FormatError, match=f"token {big},"):
        golden.check_sel(np.array([0, big], np.uint64), 4)
    w = golden.SamoyedsWeight.from_dense(
        golden.prune_samoyeds(np.ones((8, 32), np.int8), 1, 2, 32), 1, 2, 32)
    idx = w.indices.astype(np.uint64)
    idx[1, 0] = big
    with pytest.raises(FormatError, match=f"value {big},"):
        golden.SamoyedsWeight(w.data, idx, w.meta, 1, 2, 32)


# ------------------------------------------------------------------ one RTL run

@pytest.mark.cocotb
def test_cim_runs_a_preset_it_used_to_refuse(tmp_path, capsys):
    """qwen2-moe is hidden 32 at the default scale (not a Monarch size): the CLI now
    sizes it to n = 64 and runs it; an unmarked reuse of the folder is refused."""
    run_dir = tmp_path / "cim"
    rc = cli.main(["run", "--engine", "cim", "--preset", "qwen2-moe", "--no-waves",
                   "--run-dir", str(run_dir), "--step", "3"])
    out = capsys.readouterr().out
    assert rc == 0, out
    rep = json.loads((run_dir / "report.json").read_text())
    assert rep["bit_exact"] is True and rep["trace"]["hidden"] == 64
    assert rep["trace"]["preset"] == "qwen2-moe" and "trace step 3 " in rep["config"]["job"]
    assert rep["config"]["checked_values"] == 3 * 64 * int(rep["config"]["job"].split("(")[1]
                                                           .split()[0])
    assert (run_dir / rundir.MARKER).is_file() and "yes: all" in out
    assert os.listdir(run_dir / "sim")
