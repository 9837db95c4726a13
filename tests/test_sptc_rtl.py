"""SpTC RTL regression: every mode, output mode and bad-input class, bit-exact vs golden.ssmm.

Each test is one simulator launch running a batch of jobs (one build per
configuration and simulator, reused). With stalls on, every stream sees random
valid/ready stalls and the scoreboard checks data and status; with stalls off
it also checks every job's cycle count against ``golden.sptc``'s cycle model.
"""
import dataclasses

import numpy as np
import pytest

import golden
from golden import sptc as gs
from hdl.sptc import CONFIGS
from sptc_operands import rand, to_mode
from golden import trace as traces
from sim.sptc import JobSpec, run, run_batch

CFG = CONFIGS["small"]
OUTS = ["int32", "int8_sat", ("requant", 77, 9), ("requant", 65535, 31), ("requant", 1, 1)]
NMVS = [(1, 2, 16), (4, 8, 32), (2, 4, 16), (1, 2, 32)]


def trace_jobs(seed, modes=("dense", "2:4", "samoyeds"), max_experts=3):
    """Stimulus from a MoE trace: each expert's routed tokens form SEL."""
    rng = np.random.default_rng(seed)
    tr = traces.load_default()
    step = tr.step(seed % tr.steps)
    x = rand(rng, (tr.hidden, step.tokens))[:, :CFG.max_tokens]
    counts = step.tokens_per_expert()
    specs = []
    for i, e in enumerate(np.argsort(-counts)[:max_experts]):
        sel = step.sel(int(e))
        sel = sel[sel < x.shape[1]]
        mode = modes[i % len(modes)]
        nmv = NMVS[i % len(NMVS)]
        w = to_mode(rand(rng, (32, tr.hidden)), mode, nmv)
        specs.append(JobSpec(f"trace expert {e} {mode}", w, x, sel, OUTS[(seed + i) % len(OUTS)]))
    return specs


def coverage_jobs(seed):
    rng = np.random.default_rng(seed)
    specs = []
    for i, mode in enumerate(["dense", "2:4"] + ["samoyeds"] * len(NMVS)):
        nmv = NMVS[(i - 2) % len(NMVS)]
        m = 24 if mode != "samoyeds" else 2 * nmv[1] * 2 + nmv[1]
        k = 64 if mode == "samoyeds" else 36   # 36: K not a multiple of the array
        T = int(rng.integers(5, 20))
        sel = np.sort(rng.choice(T, size=int(rng.integers(2, T)), replace=False))
        specs.append(JobSpec(f"{mode} {nmv if mode == 'samoyeds' else ''}",
                             to_mode(rand(rng, (m, k)), mode, nmv), rand(rng, (k, T)), sel,
                             OUTS[(seed + i) % len(OUTS)]))
    # Edge cases: empty SEL, a single token, all tokens (sel=None), extreme values.
    specs.append(JobSpec("empty sel", to_mode(rand(rng, (8, 16)), "2:4"), rand(rng, (16, 4)), []))
    specs.append(JobSpec("one token", rand(rng, (12, 20)), rand(rng, (20, 9)), [8], "int8_sat"))
    specs.append(JobSpec("all tokens", to_mode(rand(rng, (8, 32)), "samoyeds", (1, 2, 16)),
                         rand(rng, (32, 6)), None, ("requant", 1000, 15)))
    full = np.full((4, 64), -128, np.int8)
    specs.append(JobSpec("extremes", full, np.full((64, 4), -128, np.int8), None, "int32"))
    # The largest accumulator magnitudes a max_k build can see, through requant's
    # split multiplier (a DSP for the low 17 bits, a DSP or LUTs for the high
    # part, see requant_hi_dsp): +2**20 and -64*128*127.
    specs.append(JobSpec("extremes requant +", full, np.full((64, 5), -128, np.int8), None,
                         ("requant", 100, 31)))
    specs.append(JobSpec("extremes requant -", full, np.full((64, 3), 127, np.int8), None,
                         ("requant", 65535, 31)))
    # One activation word per token (K <= 4) and a single token: LOAD's and RUN's
    # "count is 1" paths (their counters' last-value flags start set).
    specs.append(JobSpec("one word, one token", to_mode(rand(rng, (8, 4)), "2:4"),
                         rand(rng, (4, 1)), [0], "int32"))
    specs.append(JobSpec("one word dense", rand(rng, (12, 3)), rand(rng, (3, 2)), None,
                         "int8_sat"))
    return specs


def bad_jobs(seed):
    """One job per bad-input class, each followed by a good job that must pass."""
    rng = np.random.default_rng(seed)
    good = lambda tag: JobSpec(f"recovery after {tag}", to_mode(rand(rng, (8, 32)), "2:4"),
                               rand(rng, (32, 6)), [1, 2, 5])
    w24 = to_mode(rand(rng, (8, 32)), "2:4")
    wsam = to_mode(rand(rng, (16, 32)), "samoyeds", (2, 4, 16))
    x = rand(rng, (32, 6))

    def nibble(value):
        def f(job):
            job.nib[len(job.nib) // 2, 1] = value
        return f

    def set_reg(**kw):
        return lambda job: job.regs.update(kw)

    def sel_to(values):
        def f(job):  # the weight stream is repeated per token tile: re-tile it too
            n_old, n_new = (max(1, -(-n // CFG.cols)) for n in (len(job.sel), len(values)))
            one = len(job.v0) // n_old
            for a in ("v0", "v1", "nib", "idx"):
                setattr(job, a, np.tile(getattr(job, a)[:one], (n_new, 1)))
            job.sel = np.array(values, np.int64)
            job.regs["n_sel"] = len(values)
        return f

    def idx_to(lane, value):
        def f(job):
            job.idx[3, lane] = value
        return f

    cases = [(f"nibble 0b{v:04b}", w24, nibble(v), gs.ERR_META) for v in (0, 0b0101, 0b1010, 0b1111, 0b0110)]
    cases += [
        ("sel out of range", w24, sel_to([0, 6]), gs.ERR_SEL),
        ("sel duplicate", w24, sel_to([2, 2, 3]), gs.ERR_SEL),
        ("sel unsorted", w24, sel_to([3, 1]), gs.ERR_SEL),
        # across a SEL beat boundary for 1, 2 and 4 lanes per beat
        ("sel duplicate across beats", w24, sel_to([0, 1, 2, 4, 4]), gs.ERR_SEL),
        ("sel out of range, last lane", w24, sel_to([0, 1, 2, 3, 4, 9]), gs.ERR_SEL),
        ("samoyeds index >= M", wsam, idx_to(0, 4), gs.ERR_INDEX),
        ("samoyeds index not increasing", wsam, idx_to(1, 0), gs.ERR_INDEX),
        # a tile that does not end on a flush-block boundary: found at run time
        ("V does not divide K", wsam, set_reg(v_steps=3), gs.ERR_CONFIG),
    ]
    specs = []
    for tag, w, mutate, err in cases:
        specs.append(JobSpec(tag, w, x, [0, 2, 4], "int32", expect_err=err, mutate=mutate))
        specs.append(good(tag))
    # the CHECK cycle's checks (refused before any beat is taken): config_error_jobs
    return specs


def config_cases(w24, wsam):
    """One MATMUL job per check of the SpTC's CHECK cycle (hdl/sptc/control.py ``chk_*``),
    each breaking exactly that check on an otherwise good job: (tag, weight, mutate)."""
    def set_reg(**kw):
        return lambda job: job.regs.update(kw)
    sam_kw = 8          # the Samoyeds weight's K = 32: k_words 8
    return [
        ("k_words = 0", w24, set_reg(k_words=0)),
        ("unsupported (N, M)", wsam, set_reg(sam_n=2, sam_m=8)),
        ("n_sel > max_sel", w24, set_reg(n_sel=CFG.max_sel + 1)),
        ("requant shift 0", w24, set_reg(out_mode=2, shift=0)),
        ("mode 3", w24, set_reg(mode=3)),
        ("out_mode 3", w24, set_reg(out_mode=3)),
        ("n_tokens > max_tokens", w24, set_reg(n_tokens=CFG.max_tokens + 1)),
        ("k_words > max_kw", w24, set_reg(k_words=CFG.max_kw + 1)),
        ("n_row_tiles = 0", w24, set_reg(n_row_tiles=0)),
        ("m_rows = 0", w24, set_reg(m_rows=0)),
        ("Samoyeds v_steps = 0", wsam, set_reg(v_steps=0)),
        ("Samoyeds v_steps > k_words", wsam, set_reg(v_steps=sam_kw + 1)),
    ]


def load_cases():
    """LOAD jobs the CHECK cycle refuses (the checks that apply to a LOAD):
    (tag, mutate of the LOAD registers)."""
    def set_reg(**kw):
        return lambda regs: regs.update(kw)
    return [("LOAD n_tokens > max_tokens", set_reg(n_tokens=CFG.max_tokens + 1)),
            ("LOAD k_words > max_kw", set_reg(k_words=CFG.max_kw + 1)),
            ("LOAD k_words = 0", set_reg(k_words=0)),
            ("LOAD mode 3", set_reg(mode=3)),
            # x has 6 tokens: the last would land past the buffer's last token
            ("LOAD tok_base + n_tokens > max_tokens", set_reg(tok_base=CFG.max_tokens - 5))]


def config_error_jobs(seed):
    """Every CHECK-cycle refusal (12 MATMUL checks, 5 on a LOAD) in one batch, each
    followed by a good job; the registers are otherwise those of a good job."""
    rng = np.random.default_rng(seed)
    w24 = to_mode(rand(rng, (8, 32)), "2:4")
    wsam = to_mode(rand(rng, (16, 32)), "samoyeds", (2, 4, 16))
    x = rand(rng, (32, 6))
    good = lambda tag: JobSpec(f"recovery after {tag}",  # noqa: E731
                               to_mode(rand(rng, (8, 32)), ("2:4", "dense")[len(tag) % 2]),
                               rand(rng, (32, 6)), [0, 3, 5], OUTS[len(tag) % len(OUTS)])
    specs = []
    for tag, w, mutate in config_cases(w24, wsam):
        specs += [JobSpec(tag, w, x, [0, 2, 4], "int32", expect_err=gs.ERR_CONFIG,
                          mutate=mutate, rejected=True), good(tag)]
    for tag, mutate in load_cases():
        specs += [JobSpec(tag, w24, x, [0, 2, 4], "int32", load_mutate=mutate,
                          load_err=gs.ERR_CONFIG), good(tag)]
    return specs


def check_profiles(res, kind):
    """The stall kind reached the bench: a profile of its own on each of the four streams."""
    got = str(res["stall_profiles"])
    for stream in ("w", "act", "sel", "res"):
        assert f"'{stream}': StallProfile." in got, got
    kinds = ("bursty", "starve", "uniform") if kind == "mixed" else (kind,)
    assert all(got.count(f"StallProfile.{k}(") >= (1 if kind == "mixed" else 4)
               for k in kinds), got


#: the stall kind of each seed's run (None: one uniform probability for the inputs, one
#: for the output; the others give each stream a profile of its own, tb.common)
MODE_STALLS = {1: None, 2: "bursty", 3: "starve"}


@pytest.mark.cocotb
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sptc_modes_with_stalls(seed, tmp_path):
    """Every mode and output mode bit-exact under stalls: classic uniform stalls, bursty
    (long stall runs) and starving streams (valid or ready low for hundreds of cycles);
    the result stream's handshake rules are checked every cycle."""
    kind = MODE_STALLS[seed]
    res = run_batch(CFG, coverage_jobs(seed) + trace_jobs(seed), seed=seed, stalls=True,
                    workdir=tmp_path, stall_profile=kind)
    if kind:
        check_profiles(res, kind)


@pytest.mark.cocotb
def test_sptc_cycles_match_model(tmp_path):
    """No stalls: every job's RTL cycle count equals golden.sptc's prediction."""
    run_batch(CFG, coverage_jobs(4) + trace_jobs(4), seed=4, stalls=False, workdir=tmp_path)


@pytest.mark.cocotb
@pytest.mark.parametrize("seed", [1, 2])
def test_sptc_bad_inputs_flag_and_recover(seed, tmp_path):
    """Data errors (metadata, SEL, Samoyeds index, V vs K): exactly their error bits,
    each followed by an exact job. Seed 1 also runs :func:`config_error_jobs`: each of the
    CHECK cycle's 12 configuration checks (and 5 on a LOAD) alone gives exactly ERR_CONFIG,
    takes no input beat, sends no result beat, holds the error until ``clear``."""
    specs = bad_jobs(seed) + (config_error_jobs(seed) if seed == 1 else [])
    kind = None if seed == 1 else "mixed"
    res = run_batch(CFG, specs, seed=seed, stalls=True, workdir=tmp_path, stall_profile=kind)
    if kind:
        check_profiles(res, kind)
    refused = [i for i, s in enumerate(specs) if s.rejected or s.load_err]
    assert len(refused) == (17 if seed == 1 else 0)
    assert all(int(res[f"j{i}_error"]) == gs.ERR_CONFIG for i in refused)
    assert all(f"j{i + 1}_out" in res for i in refused)     # every recovery job ran


@pytest.mark.cocotb
@pytest.mark.parametrize("seed", [5, 6, 7])
def test_sptc_both_simulators(tmp_path, simulator, seed):
    """The same bench on both simulators: every mode (dense, 2:4, Samoyeds (1,2,16) and
    (4,8,32)), random stalls, a bad-input job and its recovery; Icarus gets this smaller
    batch per seed because it is slower."""
    run_batch(CFG, coverage_jobs(seed)[:4] + bad_jobs(seed)[:2], simulator=simulator,
              seed=seed, stalls=True, workdir=tmp_path)


def reset_jobs(seed):
    """Jobs reset at several points (SEL load, mid-run, with flushes and drains in
    flight), each followed by a good job that must be bit- (and cycle-) exact."""
    rng = np.random.default_rng(seed)
    specs = []
    for i, at in enumerate((3, 19, 26, 33, 41, 50, 64, 90, 130)):
        # Samoyeds with V = K/4 (four flushes per tile add into the store) or 2:4
        # (one flush per tile; drains in flight)
        mode, nmv = (("samoyeds", (2, 4, 16)), ("2:4", None))[i % 2]
        w = to_mode(rand(rng, (32, 64)), mode, nmv)
        specs.append(JobSpec(f"reset at cycle {at}", w, rand(rng, (64, 12)),
                             np.arange(0, 12), ("requant", 77, 9), reset_at=at))
        specs.append(JobSpec(f"after the reset at {at}",
                             to_mode(rand(rng, (24, 64)), "samoyeds", (2, 4, 16)),
                             rand(rng, (64, 10)), [0, 3, 4, 7, 9], OUTS[at % len(OUTS)]))
    return specs


@pytest.mark.cocotb
@pytest.mark.parametrize("stalls", [True, False])
def test_sptc_reset_mid_job(stalls, tmp_path):
    """Reset mid-job: idle and silent after it, and the next job exact (with stalls
    off, also cycle-exact): no datapath register without a reset leaks into it."""
    run_batch(CFG, reset_jobs(3), seed=4, stalls=stalls, workdir=tmp_path)


def test_stall_profile_is_checked(tmp_path):
    """An unknown stall kind is refused by every RTL runner before anything is built."""
    from hdl.moe import CONFIGS as MOE_CONFIGS
    from tb import cim as tbc, moe as tbm
    calls = [lambda: run_batch(CFG, [], stall_profile="sometimes"),
             lambda: tbc.run_jobs([], test_dir=tmp_path / "cim", stall_profile="sometimes"),
             lambda: tbm.run(MOE_CONFIGS["small"], [], tmp_path / "moe",
                             stall_profile="sometimes")]
    for call in calls:
        with pytest.raises(golden.FormatError, match="stall_profile: unknown kind 'sometimes'"):
            call()
    assert not list(tmp_path.iterdir())


@pytest.mark.cocotb
def test_run_entry_point(tmp_path):
    rng = np.random.default_rng(11)
    w = golden.prune_2to4(rand(rng, (10, 24)))
    x = rand(rng, (24, 7))
    y, cycles = run(w, x, sel=[1, 4, 6], mode="2:4", out="int8_sat", config=CFG,
                    workdir=tmp_path)
    assert y.dtype == np.int8
    assert np.array_equal(y, golden.ssmm(w, x, [1, 4, 6], "int8_sat"))
    job = gs.plan(CFG, golden.Sparse24.from_dense(w), x.shape, [1, 4, 6], "int8_sat")
    assert cycles == gs.predict_job_cycles(CFG, job)
    with pytest.raises(golden.FormatError, match="2:4"):
        run(rand(rng, (4, 8)) | 1, rand(rng, (8, 2)), mode="2:4", config=CFG)
    with pytest.raises(golden.FormatError, match="x"):
        run(w, x.astype(np.int16), config=CFG)


VARIANTS = {"1 SEL lane, 1 drain row": dict(sel_lanes=1, drain_rows=1),
            "2 SEL lanes, 4 drain rows": dict(sel_lanes=2, drain_rows=4)}


@pytest.mark.cocotb
@pytest.mark.parametrize("variant", VARIANTS)
def test_sptc_stream_width_variants(variant, tmp_path):
    """Other SEL-beat and result-beat widths than the default: bit-exact under stalls,
    bad SEL flagged, and the cycle model still exact with stalls off."""
    from dataclasses import replace
    cfg = replace(CFG, **VARIANTS[variant])
    seed = 8 + len(variant)
    specs = coverage_jobs(seed)
    run_batch(cfg, specs + [s for s in bad_jobs(seed) if "sel" in s.name], seed=seed,
              stalls=True, workdir=tmp_path / "stalls")
    run_batch(cfg, specs, seed=seed, stalls=False, workdir=tmp_path / "cycles")


@pytest.mark.slow
@pytest.mark.cocotb
def test_sptc_default_config(tmp_path):
    """The default 8 x 8 build (the one `make sim` and `make synth` use): every mode
    bit-exact under stalls, then (same build) without stalls, where every job's LOAD
    and MATMUL cycle counts must equal golden.sptc's cycle model."""
    cfg = CONFIGS["default"]
    rng = np.random.default_rng(21)
    specs = [JobSpec(f"default {mode}", to_mode(rand(rng, (64, 64)), mode, (4, 8, 32)),
                     rand(rng, (64, 40)), np.sort(rng.choice(40, 19, replace=False)), out)
             for mode, out in (("dense", "int32"), ("2:4", "int8_sat"),
                               ("samoyeds", ("requant", 500, 12)))]
    run_batch(cfg, specs, seed=21, stalls=True, workdir=tmp_path / "stalls")
    # no stalls: smaller jobs (two row tiles, two token tiles, one Samoyeds job per
    # (N, M) class the 8 rows hold), each job's cycles compared inside the bench
    nmvs = [(1, 2, 16), (2, 4, 16), (4, 8, 32)]
    specs = [JobSpec(f"default {mode} {nmv if mode == 'samoyeds' else ''}",
                     to_mode(rand(rng, (16 if mode != "samoyeds" else 2 * nmv[1], 64)), mode,
                             nmv),
                     rand(rng, (64, 20)), np.sort(rng.choice(20, 11, replace=False)), out)
             for mode, nmv, out in (("dense", None, ("requant", 77, 9)), ("2:4", None, "int32"),
                                    *(("samoyeds", n, "int8_sat") for n in nmvs))]
    res = run_batch(cfg, specs, seed=21, stalls=False, workdir=tmp_path / "cycles")
    for i, s in enumerate(specs):
        job = gs.plan(cfg, s.weight, s.x.shape, s.sel, s.out)
        assert int(res[f"j{i}_cycles"]) == gs.predict_job_cycles(cfg, job) > 0, s.name


@pytest.mark.slow
@pytest.mark.cocotb
def test_sptc_ecp5_flavour(tmp_path):
    """The Verilog the FPGA flow synthesizes (``target="ecp5"``: every PE and requant
    multiply a MULT18X18D with its own registers, the output lanes' job constants in
    kept TRELLIS_FF replicas, the activation buffers DP16KD block RAMs with their
    output registers), simulated against behavioural models of those primitives
    (sim/models/ecp5_prims.v): bit-exact under stalls (which exercise the
    requant DSPs' clock enable), and cycle for cycle the generic design's model.
    On 4 rows x 2 columns: the small build's rows (every Samoyeds (N, M) it holds) and
    every primitive and copy kind it instantiates, in half its Verilog (the ECP5
    flavour's build is what this test's time goes to)."""
    cfg = dataclasses.replace(CFG, cols=2, sel_lanes=2)
    assert cfg.requant_hi_dsp and cfg.samoyeds_nm == CFG.samoyeds_nm
    specs = coverage_jobs(12)
    run_batch(cfg, specs + bad_jobs(12)[:2], seed=12, stalls=True, workdir=tmp_path / "stalls",
              target="ecp5")
    run_batch(cfg, specs, seed=12, stalls=False, workdir=tmp_path / "cycles", target="ecp5")


@pytest.mark.slow
@pytest.mark.cocotb
def test_sptc_requant_lut_form(tmp_path):
    """``requant_hi_dsp=False`` (the lanes of builds whose DSPs are all taken, as the
    8 x 8 default's: hi * mult as shifted adds in LUTs) in the ECP5 flavour (its kept
    per-digit copies of hi), on a 2 x 2 array: the lane is the same at every array
    size (tests/test_outstage.py checks both forms of the lane in the Amaranth
    simulator; this run checks the ECP5 primitives and copies of the LUT form, which
    only the Verilog has) and a third of the small array's Verilog builds in a third
    of its time. Requant and int8 jobs of every weight mode, with the largest
    accumulators of both signs (max_k as the small build's), bit-exact under stalls
    and cycle for cycle the model (the form must not change the latency)."""
    cfg = dataclasses.replace(CFG, rows=2, cols=2, sel_lanes=2, samoyeds_nm=((1, 2),),
                              requant_hi_dsp=False)
    assert cfg.max_k == CFG.max_k
    rng = np.random.default_rng(31)
    specs = []
    for mode, out in (("dense", ("requant", 77, 9)), ("2:4", "int8_sat"),
                      ("samoyeds", ("requant", 65535, 31)), ("dense", ("requant", 1, 1)),
                      ("2:4", ("requant", 1000, 15)), ("samoyeds", "int8_sat")):
        m, k = (10, 64) if mode == "samoyeds" else (12, 36)
        T = int(rng.integers(5, 20))
        sel = np.sort(rng.choice(T, size=int(rng.integers(2, T)), replace=False))
        specs.append(JobSpec(f"{mode} {out}", to_mode(rand(rng, (m, k)), mode, (1, 2, 16)),
                             rand(rng, (k, T)), sel, out))
    full = np.full((4, 64), -128, np.int8)
    specs.append(JobSpec("extremes requant +", full, np.full((64, 5), -128, np.int8), None,
                         ("requant", 100, 31)))
    specs.append(JobSpec("extremes requant -", full, np.full((64, 3), 127, np.int8), None,
                         ("requant", 65535, 31)))
    run_batch(cfg, specs, seed=31, stalls=True, workdir=tmp_path / "stalls", target="ecp5")
    run_batch(cfg, specs, seed=31, stalls=False, workdir=tmp_path / "cycles", target="ecp5")
