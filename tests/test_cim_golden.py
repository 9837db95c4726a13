"""golden.cim: mapper (linear / SparseMap / DenseMap), program format, interpreter, cycle model."""
import numpy as np
import pytest

from golden import FormatError
from golden import cim as gc
from golden import monarch as gm
from hdl.cim import CONFIGS
from sim.bench import cim as bench
from golden.trace import PRESETS
from tb.cim import job_program, malformed_jobs, rand_monarch

SHAPES = [(4, 8), (4, 16), (8, 16), (8, 32), (8, 64), (16, 16), (16, 32), (16, 64),
          (16, 128), (16, 256), (32, 64), (32, 256)]


@pytest.mark.parametrize("b,m", SHAPES)
@pytest.mark.parametrize("strategy", gc.STRATEGIES)
def test_schedule_execution_is_bit_exact(b, m, strategy):
    """Executing the encoded placement + schedule equals the factored matmul."""
    rng = np.random.default_rng(b * 1000 + m)
    K = 1 if strategy == "linear" and b >= 16 else 2
    mp = gc.map_monarch(b * b, b, m, strategy, matrices=K)
    assert mp.arrays <= gc.MAX_ARRAYS
    mons = [rand_monarch(b, rng) for _ in range(K)]
    xs = [rng.integers(-128, 128, size=b * b).astype(np.int8) for _ in range(2)]
    ys, res = gc.run_mapping(mp, mons, xs)
    want = [mon.matmul(x).astype(np.int64) for mon in mons for x in xs]
    assert len(ys) == len(want)
    for y, w in zip(ys, want):
        assert np.array_equal(y, w)
    cfg = gc.CIMConfig(array_size=m, arrays=mp.arrays, lanes=max(1, m // 8), n_max=b * b)
    assert res.total_cycles == gc.program_cycles(mp, cfg, 2)
    assert res.steps == 2 * len(mp.steps)


def test_paper_utilization_figures():
    # SparseMap at n=1024, m=256, b=32: 12.5 % (the paper's figure), DenseMap fills the array.
    sp = gc.map_monarch(1024, 32, 256, "sparse")
    de = gc.map_monarch(1024, 32, 256, "dense")
    li = gc.map_monarch(1024, 32, 256, "linear")
    assert sp.utilization == pytest.approx(0.125) and sp.arrays == 8
    assert de.utilization == pytest.approx(1.0) and de.arrays == 1
    assert li.utilization == pytest.approx(1 / 32) and li.arrays == 32
    assert de.dense_arrays == 16          # the unfactored 1024 x 1024 layer
    for n, b in [(256, 16), (1024, 32), (4096, 64)]:
        for m in (64, 128, 256):
            s = gc.map_monarch(n, b, m, "sparse")
            d = gc.map_monarch(n, b, m, "dense")
            assert s.utilization == pytest.approx(b / m)
            bound = min(1.0, 2 * n * b / m ** 2)   # a single matrix cannot fill more
            assert d.utilization == pytest.approx(bound)
            # packing several matrices (e.g. an MoE layer's experts) fills every array
            assert gc.map_monarch(n, b, m, "dense", matrices=8).utilization == pytest.approx(1.0)


def check_mapping(mp: gc.Mapping) -> None:
    """Mapper invariants: every block placed once, no two blocks on one cell, and a legal
    schedule that fires every block exactly once per token in its own stage."""
    b, m, g = mp.b, mp.array_size, mp.g
    want = sorted((mat, f, k) for mat in range(mp.matrices) for f in "RL" for k in range(b))
    assert sorted((k.matrix, k.factor, k.block) for k in mp.blocks) == want
    at = {}
    for blk in mp.blocks:
        assert 0 <= blk.array < mp.arrays
        assert 0 <= blk.row0 <= m - b and 0 <= blk.col0 <= m - b
        assert blk.row0 % b == 0 and blk.col0 % b == 0
        key = (blk.array, blk.row0 // b, blk.col0 // b)
        assert key not in at, f"two blocks on the cells of {key}"
        at[key] = blk
    assert len(at) * b * b == mp.weight_cells
    assert mp.utilization == pytest.approx(mp.weight_cells / (mp.arrays * m * m))
    assert mp.min_arrays <= mp.arrays and mp.utilization <= mp.util_bound + 1e-12
    occ = mp.occupied()
    if mp.strategy != "linear":          # no empty array (linear stores zero tiles)
        assert sorted(occ) == list(range(mp.arrays))
    per_col = {}
    for (a, _, c) in at:
        per_col[a, c] = per_col.get((a, c), 0) + 1
    fired = []
    for step in mp.steps:
        rows = [r for r in range(g) if step.row_mask >> r & 1]
        cols = [c for c in range(g) if step.col_mask >> c & 1]
        assert rows and cols and step.row_mask >> g == 0 and step.col_mask >> g == 0
        assert 0 <= step.array < mp.arrays
        if mp.strategy == "linear":
            continue   # one whole tile per step: each column sums all its rows by design
        for c in cols:   # each read column slot sees exactly one active block
            active = [r for r in rows if (step.array, r, c) in at]
            assert len(active) == 1, (step, c, active)
            blk = at[step.array, active[0], c]
            assert blk.matrix == step.matrix and "RL"[step.stage] == blk.factor
            fired.append((blk.matrix, blk.factor, blk.block))
        if mp.strategy == "dense":
            shared = any(per_col.get((step.array, c), 0) > 1 for c in range(g))
            # DenseMap never fires a whole array whose columns hold several blocks ...
            assert not (shared and len(rows) == g and len(cols) == g), step
            # ... and a full array one block at a time
            if len(occ[step.array]) == g * g:
                assert len(rows) == 1 and len(cols) == 1, step
    if mp.strategy != "linear":   # every block fires exactly once per token
        assert sorted(fired) == want


@pytest.mark.parametrize("b,m", SHAPES)
@pytest.mark.parametrize("strategy", gc.STRATEGIES)
@pytest.mark.parametrize("K", [1, 3])
def test_placement_and_schedule_are_consistent(b, m, strategy, K):
    check_mapping(gc.map_monarch(b * b, b, m, strategy, matrices=K))


def test_check_mapping_catches_broken_mappings():
    """The invariant checker is not vacuous: each kind of breakage is caught."""
    import dataclasses
    mp = gc.map_monarch(256, 16, 64, "dense")             # two full arrays (g = 4)
    check_mapping(mp)
    g, full = mp.g, (1 << mp.g) - 1
    whole = [dataclasses.replace(s, row_mask=full, col_mask=full) for s in mp.steps]
    moved = list(mp.blocks)
    moved[1] = dataclasses.replace(moved[1], row0=moved[0].row0, col0=moved[0].col0,
                                   array=moved[0].array)
    dropped = [s for s in mp.steps if s is not mp.steps[0]]
    wrong_stage = [dataclasses.replace(mp.steps[0], stage=1 - mp.steps[0].stage),
                   *mp.steps[1:]]
    for bad in (dict(steps=tuple(whole)), dict(blocks=tuple(moved)),
                dict(steps=tuple(dropped)), dict(steps=tuple(wrong_stage)),
                dict(blocks=mp.blocks[:-1])):
        with pytest.raises(AssertionError):
            check_mapping(dataclasses.replace(mp, **bad))
    assert g == 4


@pytest.mark.parametrize("K", [1, 2, 3, 24])
def test_densemap_sweep_is_legal_and_reaches_the_bound(K):
    """Over the benchmark sweep DenseMap uses the fewest arrays any placement could, for one
    matrix and for several sharing arrays (24: one Mixtral-shaped MoE layer)."""
    for n in bench.SWEEP_N:
        b = int(round(n ** 0.5))
        for m in bench.SWEEP_M:
            mp = gc.map_monarch(n, b, m, "dense", matrices=K)
            check_mapping(mp)
            assert mp.arrays == mp.min_arrays == -(-K * 2 * n * b // (m * m))
            assert mp.utilization == pytest.approx(mp.util_bound)


def test_bench_rows_definitions_and_headline():
    rows, maps = bench.model_rows()
    layer_k = bench.layer_matrices(bench.LAYER_PRESET)
    p = PRESETS[bench.LAYER_PRESET]
    assert layer_k == (p.num_experts + p.num_shared) * 3
    assert len(rows) == len(bench.SWEEP_N) * len(bench.SWEEP_M) * 2 * len(gc.STRATEGIES)
    for r, mp in zip(rows, maps):
        for key in ("n", "b", "array_size", "strategy", "utilization", "arrays", "cycles",
                    "cycles_source", "workload", "matrices", "util_bound"):
            assert key in r, key
        assert r["b"] ** 2 == r["n"] and r["cycles_source"] == "model"
        assert r["matrices"] == {"matrix": 1, "layer": layer_k}[r["workload"]]
        assert r["utilization"] == mp.utilization and r["arrays"] == mp.arrays
        assert r["cycles"] == gc.token_cycles(mp, gc.model_config(mp.array_size, mp.n))
    s = bench.summarize(rows)
    dense1 = [r for r in rows if r["workload"] == "matrix" and r["strategy"] == "dense"]
    assert s["matrix"]["dense_mean_util"] == pytest.approx(np.mean([r["utilization"]
                                                                    for r in dense1]))
    # one matrix: DenseMap is at the bound, and the bound is below the 90 % target
    assert s["matrix"]["dense_mean_util"] == pytest.approx(s["matrix"]["dense_mean_bound"])
    assert s["matrix"]["dense_mean_bound"] < bench.TARGET_DENSE_MEAN
    assert s["layer"]["dense_mean_util"] >= bench.TARGET_DENSE_MEAN
    assert s["sparse_util_n1024_m256"] == pytest.approx(bench.PAPER["sparse_util_n1024_m256"])
    # the RTL-measured rows are exactly the sweep points the simulated tile holds
    cfg = CONFIGS["default"]
    fits = [r for r, mp in zip(rows, maps) if bench.rtl_fits(mp, cfg)]
    assert fits and all(r["array_size"] == cfg.m and r["n"] <= cfg.n_max
                        and r["arrays"] <= cfg.arrays for r in fits)
    assert len(fits) == sum(r["array_size"] == cfg.m and r["n"] <= cfg.n_max
                            and r["arrays"] <= cfg.arrays for r in rows)


def test_densemap_rotation_rule():
    n, b, m = 256, 16, 64                   # g = 4 diagonals per array, 4 lines per factor
    mp = gc.map_monarch(n, b, m, "dense")
    g = m // b
    by = {(k.factor, k.block): k for k in mp.blocks}
    diags = {}
    for line in range(n // m):
        for s in range(g):
            r = by["R", line * g + s]
            d = (r.col0 // b - s) % g             # the diagonal R's line sits on
            assert r.row0 == s * b                 # input lanes are fixed: row slot = segment
            assert mp.r_pos[0, line * g + s] == line * g + r.col0 // b   # rotated by d
            lb = by["L", line * g + s]
            dl = (s - lb.row0 // b) % g            # L's diagonal
            assert lb.col0 == s * b                # L's outputs land unrotated
            # R is placed at -d_L: output c of each R block goes to column sigma(c)
            assert mp.r_col[0, line * g + s] == line * g + (s - dl) % g
            diags.setdefault(("R", line), set()).add((r.array, d))
            diags.setdefault(("L", line), set()).add((lb.array, dl))
    assert all(len(v) == 1 for v in diags.values())      # a line is one whole diagonal
    used = [next(iter(v)) for v in diags.values()]
    assert len(set(used)) == len(used)                   # diagonals never share slots
    # a full array: one block per step, g steps per diagonal
    assert all(bin(s.row_mask).count("1") == 1 for s in mp.steps)
    assert len(mp.steps) == 2 * b
    # a half-full array packs non-conflicting blocks: fewer steps than blocks
    half = gc.map_monarch(256, 16, 128, "dense")
    assert half.utilization == pytest.approx(0.5) and len(half.steps) < 2 * 16


def test_program_roundtrip_and_listing():
    cfg = CONFIGS["default"]
    rng = np.random.default_rng(1)
    mon = rand_monarch(8, rng)
    mp = gc.map_monarch(64, 8, cfg.m, "dense")
    prog = gc.encode_program(mp, mon, 3, cfg)
    ins = gc.decode_program(prog.words, cfg)
    ops = [i.op for i in ins]
    assert ops[0] == "LOADW" and ops[1] == "CFG"
    assert ops.count("INPUT") == ops.count("MID") == ops.count("OUTPUT") == 3
    assert ops.count("STEP") == 3 * len(mp.steps)
    steps = [i.fields for i in ins if i.op == "STEP"][:len(mp.steps)]
    for f, s in zip(steps, mp.steps):
        assert (f["array"], f["act_line"], f["acc_line"], f["row_mask"], f["col_mask"],
                bool(f["acc"]), f["reserved"]) == (s.array, s.act_line, s.acc_line,
                                                   s.row_mask, s.col_mask, s.acc, 0)
    c = ins[1].fields
    assert (c["log2b"], c["mid_kind"], c["mid_mult"], c["mid_shift"]) == (
        3, 2, mon.mid_mode.mult, mon.mid_mode.shift)
    # weights: the LOADW data words reproduce the array contents
    W = gc.array_weights(mp, [mon])[0]
    data = [int(w) for w in prog.words[1:1 + cfg.m * cfg.words_per_column]]
    got = np.frombuffer(b"".join(w.to_bytes(8, "little") for w in data), np.int8)
    assert np.array_equal(got.reshape(cfg.m, cfg.m).T, W)
    # activation / result packing
    x = rng.integers(-128, 128, size=64).astype(np.int8)
    beats = gc.pack_inputs([x], 8, cfg)
    assert len(beats) == 64 // cfg.lanes
    raw = np.frombuffer(b"".join(bt.to_bytes(cfg.lanes, "little") for bt in beats), np.int8)
    assert np.array_equal(raw, gm.fold_input(x, 8))
    vals = np.array([-(2**31), 2**31 - 1, -1, 0, 5, -7, 127, -128] * 8, dtype=np.int64)
    out_beats = [sum((int(v) & 0xFFFFFFFF) << (32 * i) for i, v in
                     enumerate(vals[k:k + cfg.lanes])) for k in range(0, 64, cfg.lanes)]
    assert np.array_equal(gc.unpack_outputs(out_beats, 64, cfg)[0], vals)


def test_cycle_model_matches_interpreter():
    cfg = CONFIGS["default"]
    rng = np.random.default_rng(2)
    for b, strategy in [(8, "dense"), (8, "sparse"), (8, "linear"), (16, "dense"), (16, "sparse")]:
        mp = gc.map_monarch(b * b, b, cfg.m, strategy)
        prog = gc.encode_program(mp, rand_monarch(b, rng), 2, cfg)
        xs = [rng.integers(-128, 128, size=b * b).astype(np.int8) for _ in range(2)]
        res = gc.execute(prog.words, cfg, gc.pack_inputs(xs, b, cfg))
        assert res.error == "OK"
        assert res.total_cycles == gc.program_cycles(mp, cfg, 2)
        assert res.total_cycles == gc.load_cycles(mp, cfg) + 1 + 2 * gc.token_cycles(mp, cfg)
        for idx, op, c in res.cycles:
            if op == "STEP":
                col_mask = gc.decode_word(int(prog.words[idx])).fields["col_mask"]
                assert c == 2 + gc.step_groups(col_mask, b, cfg)
    # full arrays read b/lanes groups per block: DenseMap and SparseMap read the same columns
    d = gc.map_monarch(1024, 32, 256, "dense")
    s = gc.map_monarch(1024, 32, 256, "sparse")
    mc = gc.model_config(256, 1024)
    steps_d = sum(gc.cost_step(x.col_mask, 32, mc) for x in d.steps)
    steps_s = sum(gc.cost_step(x.col_mask, 32, mc) for x in s.steps)
    assert steps_d - 2 * len(d.steps) == steps_s - 2 * len(s.steps)   # same readout cycles
    assert len(d.steps) == 64 and len(s.steps) == 8                   # more, narrower steps


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_malformed_programs_give_their_error(name):
    cfg = CONFIGS[name]
    jobs = malformed_jobs(cfg, seed=3)
    assert len(jobs) >= 15
    seen = set()
    for j in jobs:
        words, beats, _ = job_program(j, cfg)
        res = gc.execute(words, cfg, beats)
        assert res.error == j.expect, j.name
        seen.add(res.error)
    assert seen == set(gc.ERRORS.values()) - {"OK"}


@pytest.mark.parametrize("args,match", [
    ((128, 8, 16, "dense"), "n: 128 != b\\*b = 64"),
    ((64, 3, 16, "dense"), "b: 3 does not divide n = 64"),
    ((36, 6, 16, "dense"), "b: 6 is not a power of two"),
    ((1024, 32, 16, "sparse"), "b: 32 exceeds array_size 16"),
    ((256, 16, 48, "dense"), "array_size: 48 is not a power of two"),
    ((64, 8, 128, "dense"), "array_size: 128 exceeds n = 64"),
    ((64, 8, 16, "diagonal"), "strategy: 'diagonal'"),
])
def test_mapper_rejects_bad_shapes(args, match):
    with pytest.raises(FormatError, match=match):
        gc.map_monarch(*args)
    with pytest.raises(FormatError, match="matrices: must be >= 1"):
        gc.map_monarch(64, 8, 16, "dense", matrices=0)


def test_config_and_encoder_reject_bad_parameters():
    with pytest.raises(FormatError, match="array_size: 24"):
        gc.CIMConfig(array_size=24)
    with pytest.raises(FormatError, match="lanes: 3"):
        gc.CIMConfig(lanes=3)
    with pytest.raises(FormatError, match="arrays: 0"):
        gc.CIMConfig(arrays=0)
    with pytest.raises(FormatError, match="n_max: 16"):
        gc.CIMConfig(array_size=32, n_max=16)
    cfg = CONFIGS["small"]
    rng = np.random.default_rng(0)
    mon = rand_monarch(8, rng)
    with pytest.raises(FormatError, match="arrays: the linear mapping needs 32 arrays"):
        gc.encode_program(gc.map_monarch(64, 8, 16, "linear"), mon, 1, cfg)
    with pytest.raises(FormatError, match="array_size: mapping uses 32"):
        gc.encode_program(gc.map_monarch(64, 8, 32, "dense"), mon, 1, cfg)
    with pytest.raises(FormatError, match="b: 16 not supported"):
        gc.encode_program(gc.map_monarch(256, 16, 16, "dense"), rand_monarch(16, rng), 1, cfg)
    with pytest.raises(FormatError, match="monarchs: mapping has 2 matrices"):
        gc.encode_program(gc.map_monarch(64, 8, 16, "dense", matrices=2), mon, 1, cfg)
    with pytest.raises(FormatError, match="act_beats: INPUT at word"):
        prog = gc.encode_program(gc.map_monarch(64, 8, 16, "dense"), mon, 1, cfg)
        gc.execute(prog.words, cfg, [])
    with pytest.raises(FormatError, match="x: expected an int8 vector of length 64"):
        gc.pack_inputs([np.zeros(63, np.int8)], 8, cfg)
