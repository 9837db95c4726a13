"""golden.pim: ISA, bit-exact functional model, cycle model; tb.dram_timing.TimingChecker."""
import numpy as np
import pytest

from golden import pim as gp
from golden.errors import FormatError
from golden.numerics import apply_out
from tb.dram_timing import TimingChecker
from tb.pim import random_program

SMALL, DEFAULT = gp.CONFIG_SMALL, gp.CONFIG_DEFAULT


def test_hbm3_preset_matches_design():
    t = gp.HBM3_5G2
    assert (t.tCL, t.tRCD, t.tRP, t.tRAS, t.tRC) == (19, 19, 19, 45, 63)
    assert (t.tCCD_S, t.tCCD_L, t.tRRD_S, t.tRRD_L, t.tFAW) == (2, 4, 2, 4, 39)
    assert (t.tWTR_S, t.tWTR_L, t.tWR, t.tREFI) == (8, 11, 21, 5070)
    assert (t.tCWL, t.tBL, t.tRTP, t.tACT, t.tCK_ps) == (6, 2, 8, 2, 769)
    assert t.tRFC == 456 and t.rd_to_wr == 17      # tests/test_pim_timing.py: the HBM3 rules
    assert DEFAULT.bundles == 2 and DEFAULT.banks_per_bundle == 8 and DEFAULT.bundle_bits == 512


@pytest.mark.parametrize("kw, field", [
    (dict(cols=12), "cols"), (dict(bundle_bits=100), "bundle_bits"),
    (dict(banks_per_bundle=6), "banks_per_bundle"), (dict(max_tokens=0), "max_tokens"),
    (dict(max_k_words=5000), "max_k_words"), (dict(rows=-1), "rows"),
])
def test_config_rejects(kw, field):
    with pytest.raises(FormatError) as e:
        gp.PIMConfig(**kw)
    if field:
        assert field in str(e.value)


def test_timing_rejects():
    with pytest.raises(FormatError, match="tRCD"):
        gp.HBM3Timing(tRCD=0)
    with pytest.raises(FormatError, match="tREFI"):
        gp.HBM3Timing(tREFI=100)
    with pytest.raises(FormatError, match="timing"):
        gp.PIMConfig(timing="hbm3")


def test_encode_decode_roundtrip():
    rng = np.random.default_rng(0)
    for _ in range(200):
        addr, n, cnt = (int(rng.integers(0, 1 << 32)), int(rng.integers(0, 1 << 16)),
                        int(rng.integers(0, 1 << 24)))
        d = gp.decode(gp.encode("GEMM", addr=addr, n=n))
        assert (d["name"], d["addr"], d["n"]) == ("GEMM", addr, n)
        d = gp.decode(gp.encode("WRITE", addr=addr, count=cnt))
        assert (d["name"], d["addr"], d["count"]) == ("WRITE", addr, cnt)
    d = gp.decode(gp.encode("SET_OUT", mode=2, shift=31, mult=65535))
    assert (d["mode"], d["shift"], d["mult"]) == (2, 31, 65535)
    d = gp.decode(gp.encode("LOAD_TOKENS", t=255, kw=4095))
    assert (d["t"], d["kw"]) == (255, 4095)
    with pytest.raises(FormatError, match="n"):
        gp.encode("GEMM", n=1 << 16)
    with pytest.raises(FormatError, match="op"):
        gp.encode("JUMP")
    with pytest.raises(FormatError, match="mult"):
        gp.encode("GEMM", mult=1)


def test_pack_unpack_roundtrip():
    rng = np.random.default_rng(1)
    w = rng.integers(-128, 128, (5, 37), dtype=np.int8)
    words = gp.pack_rows(SMALL, w)
    assert len(words) == 5 * 3
    back = gp.unpack_words(SMALL, words).reshape(5, -1)
    assert np.array_equal(back[:, :37], w) and not back[:, 37:].any()
    with pytest.raises(FormatError, match="mat"):
        gp.pack_rows(SMALL, w.astype(np.int16))


@pytest.mark.parametrize("out", ["int32", "int8_sat", ("requant", 3000, 12), ("requant", 65535, 1),
                                 ("requant", 0, 31)])
def test_gemm_bit_exact_vs_int64_reference(out):
    rng = np.random.default_rng(2)
    for cfg in (SMALL, DEFAULT):
        t, k, n = int(rng.integers(1, cfg.max_tokens + 1)), int(rng.integers(1, 300)), 9
        w = rng.integers(-128, 128, (n, k), dtype=np.int8)
        x = rng.integers(-128, 128, (t, k), dtype=np.int8)
        p = gp.Program(cfg).write_matrix(3, w).load_tokens(x).set_out(out).gemm(3, n)
        r = gp.execute(cfg, p.words, p.din)
        ref = apply_out(w.astype(np.int64) @ x.astype(np.int64).T, out)
        assert r.err == 0 and len(r.gemms) == 1
        assert np.array_equal(r.gemms[0], ref) and r.gemms[0].dtype == ref.dtype
        assert np.array_equal(r.values, ref.ravel().astype(np.int64))
        assert r.last.sum() == 1 and r.last[-1]


def test_extreme_accumulators():
    """K = max_k_words * elems of -128 * -128: the largest sum, exact in int32."""
    cfg = SMALL
    k = cfg.max_k_words * cfg.elems
    w = np.full((2, k), -128, np.int8)
    x = np.full((1, k), -128, np.int8)
    p = gp.Program(cfg).write_matrix(0, w).load_tokens(x).gemm(0, 2)
    assert list(gp.execute(cfg, p.words, p.din).values) == [k * 16384] * 2


@pytest.mark.parametrize("word, err", [
    (gp.encode("GEMM", addr=0, n=1), gp.ERR_TOKENS),                 # nothing loaded yet
    (7, gp.ERR_OPCODE), (15 | (123 << 20), gp.ERR_OPCODE),
    (gp.encode("LOAD_TOKENS", t=0, kw=1), gp.ERR_TOKENS),
    (gp.encode("LOAD_TOKENS", t=SMALL.max_tokens + 1, kw=1), gp.ERR_TOKENS),
    (gp.encode("LOAD_TOKENS", t=1, kw=SMALL.max_k_words + 1), gp.ERR_TOKENS),
    (gp.encode("WRITE", addr=SMALL.words - 1, count=2), gp.ERR_ADDR),
    (gp.encode("WRITE", addr=0, count=0), gp.ERR_FIELD),
    (gp.encode("SET_OUT", mode=3), gp.ERR_FIELD),
    (gp.encode("SET_OUT", mode=2, shift=0, mult=1), gp.ERR_FIELD),
    (gp.encode("SET_OUT", mode=0, mult=1), gp.ERR_FIELD),
    (gp.encode("SET_OUT", mode=1, shift=2), gp.ERR_FIELD),
    (6, gp.ERR_OPCODE), (gp.encode("LOAD_TOKENS", t=1, kw=0), gp.ERR_TOKENS),
    (gp.encode("GEMM", addr=0, n=0), gp.ERR_FIELD | gp.ERR_TOKENS),      # and nothing loaded
    (gp.encode("WRITE", addr=(1 << 32) - 1, count=2), gp.ERR_ADDR),
    (gp.encode("SET_OUT", mode=0, shift=1), gp.ERR_FIELD),
    (gp.encode("SET_OUT", mode=1, mult=3), gp.ERR_FIELD),
])
def test_bad_instruction_sets_sticky_bit_and_unit_continues(word, err):
    cfg = SMALL
    x = np.ones((2, 16), np.int8)
    p = gp.Program(cfg).raw(word).load_tokens(x).write(0, [5, 6]).gemm(0, 2)
    r = gp.execute(cfg, p.words, p.din)
    assert r.err == err
    assert len(r.values) == 4 and r.din_used == len(p.din)     # the bad one took no data


def test_gemm_address_and_field_errors_combine():
    cfg = SMALL
    p = gp.Program(cfg).load_tokens(np.ones((1, 16), np.int8))
    p.raw(gp.encode("GEMM", addr=cfg.words, n=0))
    p.raw(gp.encode("GEMM", addr=cfg.words - 1, n=2))
    r = gp.execute(cfg, p.words, p.din)
    assert r.err == gp.ERR_FIELD | gp.ERR_ADDR and len(r.values) == 0


def test_execute_rejects_short_data_stream():
    p = gp.Program(SMALL).load_tokens(np.ones((2, 16), np.int8))
    with pytest.raises(FormatError, match="din"):
        gp.execute(SMALL, p.words, p.din[:1])


def test_program_rejects_bad_operands():
    p = gp.Program(SMALL)
    with pytest.raises(FormatError, match="tokens"):
        p.load_tokens(np.ones((SMALL.max_tokens + 1, 4), np.int8))
    with pytest.raises(FormatError, match="K"):
        p.load_tokens(np.ones((1, SMALL.max_k_words * SMALL.elems + 1), np.int8))
    with pytest.raises(FormatError, match="addr"):
        p.write(SMALL.words, [1])


def test_state_carries_between_streams():
    cfg = SMALL
    st = gp.UnitState.reset(cfg)
    w = np.arange(32, dtype=np.int8).reshape(2, 16)
    p1 = gp.Program(cfg).write_matrix(4, w).load_tokens(np.ones((1, 16), np.int8)).set_out("int8_sat")
    gp.execute(cfg, p1.words, p1.din, state=st)
    assert st.loaded == (1, 1)
    p2 = gp.Program(cfg).gemm(4, 2)
    r = gp.execute(cfg, p2.words, p2.din, state=st)
    assert list(r.values) == [min(127, int(w[0].sum())), min(127, int(w[1].sum()))]


# --------------------------------------------------------------------------- cycle model

def test_model_traces_obey_the_independent_checker():
    """The scheduler model never breaks a rule of tb.dram_timing.TimingChecker (and the RTL
    equals the model command for command, tests/test_pim_rtl.py)."""
    rng = np.random.default_rng(3)
    for cfg in (SMALL, STRESS):
        st = gp.UnitState.reset(cfg)
        for _ in range(4):
            p = random_program(cfg, rng, n_instr=14, max_rows=40)
            loaded = st.loaded
            gp.execute(cfg, p.words, p.din, state=st)
            phase = int(rng.integers(0, 50))
            tm = gp.predict(cfg, p.words, loaded=loaded, ref_phase=phase)
            chk = TimingChecker(cfg)
            chk.ref_base = 10_000 - phase       # as if the timer had wrapped at 10_000 - phase
            for c in tm.commands:
                chk.command(c[0] + 10_000, *c[1:])
            assert not chk.violations, chk.violations[:3]
            assert tm.commands


def test_long_stream_bandwidth_default_config():
    """>= 90 % of the peak bundle rate on a long weight stream, refresh included."""
    r = gp.stream_bandwidth(DEFAULT, 20_000, tokens=1)
    assert r["fraction"] >= 0.90
    assert r["fraction_of_attainable"] >= 0.98
    assert gp.stream_bandwidth(DEFAULT, 20_000, tokens=4)["fraction"] >= 0.90


def test_compute_bound_scaling():
    """Above tCCD_L tokens the MAC array, not the DRAM, sets the pace: ~ words * t cycles."""
    cfg = DEFAULT
    words = 4096
    c1 = gp.predict_cycles(cfg, gp.gemm_program(cfg, words // 64, 64 * 64, 1))
    c4 = gp.predict_cycles(cfg, gp.gemm_program(cfg, words // 64, 64 * 64, 4))
    c16 = gp.predict_cycles(cfg, gp.gemm_program(cfg, words // 64, 64 * 64, 16))
    assert abs(c4 - c1) / c1 < 0.02          # both bandwidth bound
    # compute bound: t cycles per word, plus the refresh stalls the 16-word FIFO cannot hide
    assert 0.99 < c16 / (words * 16) < 1.10


def test_refresh_happens_every_trefi():
    cfg = SMALL
    tm = gp.predict(cfg, gp.gemm_program(cfg, 128, 256, 8), ref_phase=0)
    refs = [c[0] for c in tm.commands if c[1] == gp.CMD_REF]
    assert len(refs) >= 2
    due = [cfg.timing.tREFI * (i + 1) for i in range(len(refs))]
    assert all(0 <= r - d <= cfg.timing.ref_slack for r, d in zip(refs, due))


def test_predict_rejects_bad_phase():
    with pytest.raises(FormatError, match="ref_phase"):
        gp.predict(SMALL, [], ref_phase=SMALL.timing.tREFI)


# --------------------------------------------------------------------------- the checker itself

STRESS = gp.PIMConfig(bank_groups=8, banks_per_group=1, banks_per_bundle=1, rows=8, cols=2,
                      bundle_bits=32, max_tokens=4, max_k_words=4,
                      timing=gp.HBM3Timing(tREFI=400, tRFC=40, tFAW=60))


@pytest.mark.parametrize("seq, rule", [
    ([(0, "ACT", 0, 1, 0), (10, "RD", 0, 1, 0)], "tRCD"),
    ([(0, "ACT", 0, 1, 0), (30, "PRE", 0, 0, 0)], "tRAS"),
    ([(0, "ACT", 0, 1, 0), (50, "PRE", 0, 0, 0), (60, "ACT", 0, 2, 0)], "tRP"),
    ([(0, "ACT", 0, 1, 0), (1, "ACT", 1, 1, 0)], "tRRD_S"),
    ([(0, "ACT", 0, 1, 0), (2, "ACT", 1, 1, 0), (4, "ACT", 2, 1, 0), (6, "ACT", 3, 1, 0),
      (8, "ACT", 4, 1, 0)], "tFAW"),
    ([(0, "ACT", 0, 1, 0), (30, "RD", 0, 1, 0), (32, "RD", 0, 1, 1)], "tCCD_L"),
    ([(0, "ACT", 0, 1, 0), (30, "WR", 0, 1, 0), (35, "RD", 0, 1, 1)], "tWTR_L"),
    ([(0, "ACT", 0, 1, 0), (30, "WR", 0, 1, 0), (50, "PRE", 0, 0, 0)], "tWR"),
    ([(0, "ACT", 0, 1, 0), (30, "RD", 0, 1, 0), (32, "PRE", 0, 0, 0)], "tRTP"),
    ([(0, "ACT", 0, 1, 0), (30, "RD", 0, 1, 0), (32, "WR", 0, 1, 1)], "RD->WR turnaround"),
    ([(0, "ACT", 0, 1, 0), (100, "REF", 0, 0, 0)], "REF with bank"),
    ([(0, "REF", 0, 0, 0), (10, "ACT", 0, 1, 0)], "tRFC"),
    ([(0, "ACT", 0, 1, 0), (30, "RD", 0, 2, 0)], "open row"),
    ([(0, "PRE", 0, 0, 0)], "PRE to closed"),
    ([(300, "REF", 0, 0, 0), (900, "REF", 0, 0, 0)], "refresh late"),
])
def test_checker_flags_each_rule(seq, rule):
    chk = TimingChecker(STRESS)
    code = {v: k for k, v in gp.CMD_NAMES.items()}
    for now, name, b, r, c in seq:
        chk.command(now + 1000 if rule != "refresh late" else now, code[name], b, r, c)
    assert any(rule in v for v in chk.violations), chk.violations


def test_checker_accepts_a_legal_sequence():
    t = STRESS.timing
    chk = TimingChecker(STRESS)
    code = {v: k for k, v in gp.CMD_NAMES.items()}
    n = 100
    seq = [(n, "ACT", 0, 1, 0), (n + t.tRCD, "RD", 0, 1, 0), (n + t.tRCD + 4, "RD", 0, 1, 1),
           (n + t.tRAS, "PRE", 0, 0, 0), (n + t.tRAS + t.tRP, "REF", 0, 0, 0)]
    for now, name, b, r, c in seq:
        chk.command(now, code[name], b, r, c)
    assert not chk.violations


@pytest.mark.parametrize("n, kw, t", [(16, 4, 1), (40, 4, 3), (10, 16, 8), (60, 2, 4), (100, 1, 5),
                                      (3, 1, 1), (1, 1, 8)])
def test_closed_form_cycles_without_refresh(n, kw, t):
    """docs/pim.md: busy cycles of LOAD_TOKENS + GEMM (w = n*kw words) when no refresh
    falls in: 1 + (1 + t*kw) + max(tCCD_L*(w-1) + t, w*t) + tRCD + tCL + 7 + 2."""
    cfg, T = SMALL, SMALL.timing
    w = n * kw
    words = [gp.encode("LOAD_TOKENS", t=t, kw=kw), gp.encode("GEMM", addr=0, n=n)]
    tm = gp.predict(cfg, words, ref_phase=0)
    assert tm.refs == 0
    assert tm.cycles == 1 + (1 + t * kw) + max(T.tCCD_L * (w - 1) + t, w * t) + T.tRCD + T.tCL + 7 + 2


@pytest.mark.parametrize("count", [1, 5, 33, 200])
def test_closed_form_write_cycles(count):
    T = SMALL.timing
    assert gp.predict_cycles(SMALL, [gp.encode("WRITE", addr=7, count=count)]) == \
        1 + T.tRCD + T.tCCD_L * (count - 1) + 3
