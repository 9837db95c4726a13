"""SpTC tiling API and cycle model (pure Python, no simulator)."""
import dataclasses

import numpy as np
import pytest

import golden
from golden import sptc as gs
from golden.errors import FormatError

CFG = gs.SpTCConfig(rows=4, cols=4, max_k=64, max_tokens=64, max_sel=64,
                    samoyeds_nm=((1, 2), (2, 4), (4, 8)))
rng = np.random.default_rng(7)


def rand(shape):
    return rng.integers(-128, 128, size=shape, dtype=np.int8)


def replay_beats(cfg, job, x):
    """Execute the planned beat stream in plain Python: a second path to ssmm.

    Checks that the tiling carries exactly the information the hardware needs
    (values, nibbles, indices, tile order) to reproduce W @ X[:, sel].
    """
    r = job.regs
    mode = job.mode
    k_steps = 2 * r["k_words"] if mode == "dense" else r["k_words"]
    v_steps = r["v_steps"] if mode == "samoyeds" else k_steps
    spr = gs.store_rows_per_tile(cfg, mode, r["sam_n"], r["sam_m"])
    kp = 4 * r["k_words"]
    xp = np.zeros((kp, x.shape[1]), np.int64)
    xp[: x.shape[0]] = x
    y = np.zeros((job.m, len(job.sel)), np.int64)
    b = 0
    for tt in range(-(-len(job.sel) // cfg.cols)):
        toks = job.sel[tt * cfg.cols:(tt + 1) * cfg.cols]
        for rt in range(r["n_row_tiles"]):
            store = np.zeros((spr, len(toks)), np.int64)
            acc = np.zeros((cfg.rows, len(toks)), np.int64)
            for beat in range(k_steps):
                v0, v1, nib, idx = job.v0[b], job.v1[b], job.nib[b], job.idx[b]
                b += 1
                g = beat // 2 if mode == "dense" else beat
                for lane in range(cfg.rows):
                    lo, hi = nib[lane] & 3, nib[lane] >> 2
                    acc[lane] += int(v0[lane]) * xp[4 * g + lo, toks] + \
                        int(v1[lane]) * xp[4 * g + hi, toks]
                if beat % v_steps == v_steps - 1:
                    for lane in range(cfg.rows):
                        s = lane if mode != "samoyeds" else \
                            (lane // r["sam_n"]) * r["sam_m"] + idx[lane]
                        store[s] += acc[lane]
                    acc[:] = 0
            for s in range(spr):
                row = rt * spr + s
                if row < job.m:
                    y[row, tt * cfg.cols: tt * cfg.cols + len(toks)] = store[s]
    assert b == job.n_beats
    return y


@pytest.mark.parametrize("mode,nmv", [("dense", None), ("2:4", None), ("samoyeds", (1, 2, 16)),
                                      ("samoyeds", (4, 8, 32)), ("samoyeds", (2, 4, 16))])
@pytest.mark.parametrize("m,k,sel", [(8, 32, None), (13 * 8, 36, [0, 5, 6]), (16, 64, [3]),
                                     (24, 32, [])])
def test_plan_replays_to_ssmm(mode, nmv, m, k, sel):
    if mode == "samoyeds" and k % nmv[2]:
        k = nmv[2] * (-(-k // nmv[2]))
    if mode == "samoyeds":
        m = nmv[1] * (-(-m // nmv[1]))
    w = rand((m, k))
    if mode == "2:4":
        w = golden.Sparse24.from_dense(golden.prune_2to4(w))
    elif mode == "samoyeds":
        w = golden.SamoyedsWeight.from_dense(golden.prune_samoyeds(w, *nmv), *nmv)
    x = rand((k, 9))
    job = gs.plan(CFG, w, x.shape, sel)
    assert np.array_equal(replay_beats(CFG, job, x), golden.ssmm(w, x, job.sel))


def test_plan_rejects_bad_inputs():
    x = rand((32, 8))
    with pytest.raises(FormatError, match="max_k"):
        gs.plan(CFG, rand((4, 128)), (128, 8))
    with pytest.raises(FormatError, match="max_tokens"):
        gs.plan(CFG, rand((4, 32)), (32, 65))
    with pytest.raises(FormatError, match="sel"):
        gs.plan(CFG, rand((4, 32)), x.shape, [3, 3])
    with pytest.raises(FormatError, match="sel"):
        gs.plan(CFG, rand((4, 32)), x.shape, [8])
    with pytest.raises(FormatError, match="x: has 16 rows"):
        gs.plan(CFG, rand((4, 32)), (16, 8))
    with pytest.raises(FormatError, match="weight"):
        gs.plan(CFG, rand((4, 32)).astype(np.int16), x.shape)
    w = golden.SamoyedsWeight.from_dense(golden.prune_samoyeds(rand((16, 32)), 1, 4, 16), 1, 4, 16)
    with pytest.raises(FormatError, match=r"\(N, M\) = \(1, 4\)"):
        gs.plan(CFG, w, x.shape)
    with pytest.raises(FormatError, match="k: K = 65540"):
        gs.plan(CFG, rand((1, 4)), (65540, 1))


def test_config_rejects_unbuildable():
    with pytest.raises(FormatError, match="rows"):
        gs.SpTCConfig(rows=6)
    with pytest.raises(FormatError, match="max_k"):
        gs.SpTCConfig(max_k=96)
    with pytest.raises(FormatError, match="samoyeds_nm"):
        gs.SpTCConfig(rows=4, samoyeds_nm=((8, 16),))
    with pytest.raises(FormatError, match="max_sel"):
        gs.SpTCConfig(max_sel=12)
    with pytest.raises(FormatError, match="out_stages"):
        gs.SpTCConfig(out_stages=0)
    with pytest.raises(FormatError, match="ctrl_lag"):
        gs.SpTCConfig(pe_stages=1, route_stages=1)


def test_cycle_model_follows_the_pipeline_depths():
    """The cycle model counts the config's pipeline depths: one more output stage or
    PE stage is one more cycle per job (the last tile's drain follows them)."""
    job = dict(mode="2:4", m=8, k=64, tokens=8)
    base = gs.predict_cycles(CFG, **job)
    for field in ("out_stages", "pe_stages", "route_stages"):
        deeper = dataclasses.replace(CFG, **{field: getattr(CFG, field) + 1})
        assert gs.predict_cycles(deeper, **job) == base + 1, field


def test_cycle_model_shape():
    """Sanity of the model itself: 2:4 halves the beats, Samoyeds scales with SEL."""
    cfg = gs.SpTCConfig()
    for t in (8, 64, 512):
        d = gs.predict_cycles(cfg, "dense", 224, 64, t)
        s = gs.predict_cycles(cfg, "2:4", 224, 64, t)
        assert d / s > 1.8
    a = gs.predict_cycles(cfg, "samoyeds", 224, 64, 16, (1, 2, 32))
    b = gs.predict_cycles(cfg, "samoyeds", 224, 64, 32, (1, 2, 32))
    assert 1.8 < b / a < 2.1
    assert gs.predict_cycles(cfg, "2:4", 224, 64, 0) == 2  # start -> CHECK -> WAIT -> done
    with pytest.raises(FormatError, match="mode"):
        gs.predict_cycles(cfg, "4:8", 8, 8, 1)
