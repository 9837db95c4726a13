"""golden.cim: mapper (linear / SparseMap / DenseMap), program format, interpreter, cycle model."""
import numpy as np
import pytest

from golden import FormatError
from golden import cim as gc
from golden import monarch as gm
from hdl.cim import CONFIGS
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


@pytest.mark.parametrize("b,m", SHAPES)
@pytest.mark.parametrize("strategy", gc.STRATEGIES)
def test_placement_and_schedule_are_consistent(b, m, strategy):
    mp = gc.map_monarch(b * b, b, m, strategy, matrices=2)
    g = m // b
    cells = {}
    for blk in mp.blocks:
        assert 0 <= blk.array < mp.arrays
        assert 0 <= blk.row0 <= m - b and 0 <= blk.col0 <= m - b
        assert blk.row0 % b == 0 and blk.col0 % b == 0
        key = (blk.array, blk.row0, blk.col0)
        assert key not in cells, "two blocks on the same cells"
        cells[key] = blk
    assert len(mp.blocks) == 2 * 2 * b
    occ = mp.occupied()
    for step in mp.steps:
        rows = [s for s in range(g) if step.row_mask >> s & 1]
        cols = [c for c in range(g) if step.col_mask >> c & 1]
        assert rows and cols
        if strategy == "linear":
            continue   # one whole tile per step: each column sums all its rows by design
        for c in cols:   # each read column slot sees exactly one active block
            assert sum((r, c) in occ[step.array] for r in rows) == 1
    if strategy != "linear":   # every block fires exactly once per token
        fired = sorted((s.matrix, s.stage, s.array, r, c) for s in mp.steps
                       for r in range(g) if s.row_mask >> r & 1
                       for c in range(g) if s.col_mask >> c & 1
                       and (r, c) in occ[s.array]
                       and sum((rr, c) in occ[s.array] for rr in range(g) if s.row_mask >> rr & 1) == 1)
        want = sorted((k.matrix, 0 if k.factor == "R" else 1, k.array, k.row0 // b, k.col0 // b)
                      for k in mp.blocks)
        assert fired == want


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


@pytest.mark.parametrize("name", ["default", "small"])
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
