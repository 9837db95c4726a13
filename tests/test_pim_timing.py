"""HBM3 rules of Ramulator 2's HBM3 model (golden.hbm3) beyond the per-command distances:
ns values -> cycles by JEDEC rounding (one table), the two-cycle ACT, the read-to-write
turnaround tCL + tBL + 2 - tCWL. Each rule: the table, the bench's independent checker
(tb.dram_timing.TimingChecker flags a violating trace), and the cycle model (its traces obey
the checker and the rule binds). The RTL equals the model command for command at the
same configs (tests/test_pim_amaranth.py, tests/test_pim_rtl.py)."""
import numpy as np
import pytest

from golden import hbm3
from golden import pim as gp
from golden.errors import FormatError
from tb.dram_timing import TimingChecker
from tb.pim import random_program

CODE = {v: k for k, v in gp.CMD_NAMES.items()}
SMALL = gp.CONFIG_SMALL
#: 2-word rows in 8 one-bank-group bundles (ACTs come in bursts), tRRD_S = 1 so only
#: the two-cycle ACT separates two ACTs, tBL = 60 so the RD->WR turnaround (75) is
#: longer than RD -> PRE -> ACT -> WR (tRAS + tRP + tRCD = 83 after the ACT): each rule binds.
TIGHT = gp.PIMConfig(bank_groups=8, banks_per_group=1, banks_per_bundle=1, rows=8, cols=2,
                     bundle_bits=32, max_tokens=4, max_k_words=4,
                     timing=gp.HBM3Timing(tREFI=400, tRFC=40, tFAW=60, tRRD_S=1, tBL=60))


def violations(cfg, seq, base=1000):
    chk = TimingChecker(cfg)
    for now, name, b, r, c in seq:
        chk.command(base + now, CODE[name], b, r, c)
    return chk.violations


# --------------------------------------------------------------------------- ns -> cycles

def test_trfc_350ns_is_456_cycles():
    assert hbm3.TIMING_NS["tRFC"] == 350 and hbm3.TCK_PS == 769
    assert hbm3.jedec_cycles(350, 769) == 456          # 455.1 rounds up, not to 455
    assert gp.HBM3Timing().tRFC == gp.HBM3_5G2.tRFC == 456
    assert gp.HBM3Timing().tRFC == hbm3.ns_cycles()["tRFC"]


@pytest.mark.parametrize("t_ns, tck_ps, cycles", [
    (7.69, 769, 10),       # a whole number of cycles
    (7.70, 769, 10),       # 0.013 tCK over: under JEDEC's 0.026 correction, rounds down
    (7.72, 769, 11),       # 0.039 tCK over: rounds up
    (0.5, 769, 1),
    (350, 625, 560),
    (450, 769, 586),       # 585.2
])
def test_jedec_rounding(t_ns, tck_ps, cycles):
    assert hbm3.jedec_cycles(t_ns, tck_ps) == cycles


def test_ns_values_follow_tck_and_can_be_overridden():
    assert gp.HBM3Timing(tCK_ps=625).tRFC == 560
    assert gp.HBM3Timing(tRFC=40).tRFC == 40
    d = gp.config_to_dict(gp.CONFIG_SMALL)
    assert d["timing"]["tRFC"] == 456 and gp.config_from_dict(d) == gp.CONFIG_SMALL
    with pytest.raises(FormatError, match="t_ns"):
        hbm3.jedec_cycles(0)
    with pytest.raises(FormatError, match="tCK_ps"):
        gp.HBM3Timing(tCK_ps=0)
    with pytest.raises(FormatError, match="tCWL"):
        gp.HBM3Timing(tCWL=30)                  # 19 + 2 + 2 - 30 < 1


def test_rd_to_wr_is_cl_plus_bl_plus_2_minus_cwl():
    t = gp.HBM3_5G2
    assert t.rd_to_wr == t.tCL + t.tBL + 2 - t.tCWL == 17
    assert not hasattr(t, "tRTW")              # the preset's nRTW = 3 is not a rule


# --------------------------------------------------------------------------- the checker

def test_checker_flags_act_then_pre_of_another_bundle():
    seq = [(0, "ACT", 1, 1, 0), (100, "ACT", 0, 1, 0), (101, "PRE", 1, 0, 0)]
    assert any("two-cycle ACT: ACT->PRE" in v for v in violations(SMALL, seq))
    seq[-1] = (102, "PRE", 1, 0, 0)
    assert violations(SMALL, seq) == []


def test_checker_flags_act_then_act_within_two_cycles():
    seq = [(0, "ACT", 0, 1, 0), (1, "ACT", 1, 1, 0)]     # tRRD_S = 1 allows it
    assert any("two-cycle ACT: ACT->ACT" in v for v in violations(TIGHT, seq))
    seq[-1] = (2, "ACT", 1, 1, 0)
    assert violations(TIGHT, seq) == []


def test_checker_flags_act_then_ref():
    v = violations(TIGHT, [(0, "ACT", 0, 1, 0), (1, "REF", 0, 0, 0)])
    assert any("two-cycle ACT: ACT->REF" in x for x in v)


def test_checker_flags_read_to_write_turnaround():
    seq = [(0, "ACT", 0, 1, 0), (30, "RD", 0, 1, 0), (30 + 16, "WR", 0, 1, 1)]
    assert any("RD->WR turnaround" in v for v in violations(SMALL, seq))    # 16 >= tRTW 3
    seq[-1] = (30 + 17, "WR", 0, 1, 1)
    assert violations(SMALL, seq) == []


def test_checker_flags_ref_to_act_at_455():
    seq = [(0, "REF", 0, 0, 0), (455, "ACT", 0, 1, 0)]
    assert any("tRFC" in v for v in violations(SMALL, seq))
    seq[-1] = (456, "ACT", 0, 1, 0)
    assert violations(SMALL, seq) == []


# --------------------------------------------------------------------------- the cycle model

def _gaps(cmds, first, then, same_bundle=None):
    out = []
    for i, a in enumerate(cmds):
        if a[1] != first:
            continue
        for b in cmds[i + 1:]:
            if b[1] == then:
                if same_bundle is None or (a[2] == b[2]) == same_bundle:
                    out.append(b[0] - a[0])
                break
    return out


def test_model_rd_to_wr_binds_and_obeys_checker():
    """A GEMM's last RD, then a WRITE to the same row: the WR waits the turnaround."""
    cfg, T = TIGHT, TIGHT.timing
    p = gp.Program(cfg).load_tokens(np.ones((1, 4), np.int8)).gemm(0, 1).write(1, [7])
    tm = gp.predict(cfg, p.words)
    rd = next(c[0] for c in tm.commands if c[1] == gp.CMD_RD)
    wr = next(c[0] for c in tm.commands if c[1] == gp.CMD_WR)
    assert wr - rd == T.rd_to_wr == 75
    chk = TimingChecker(cfg)
    for c in tm.commands:
        chk.command(c[0] + 10_000, *c[1:])
    assert chk.violations == []


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_model_two_cycle_act_binds_and_obeys_checker(seed):
    cfg = TIGHT
    rng = np.random.default_rng(seed)
    st = gp.UnitState.reset(cfg)
    pre_gaps, act_gaps = [], []
    for _ in range(3):
        p = random_program(cfg, rng, n_instr=14, max_rows=16)
        loaded = st.loaded
        gp.execute(cfg, p.words, p.din, state=st)
        phase = int(rng.integers(0, 50))
        tm = gp.predict(cfg, p.words, loaded=loaded, ref_phase=phase)
        chk = TimingChecker(cfg)
        chk.ref_base = 10_000 - phase           # the refresh timer wrapped there
        for c in tm.commands:
            chk.command(c[0] + 10_000, *c[1:])
        assert chk.violations == [], chk.violations[:3]
        pre_gaps += _gaps(tm.commands, gp.CMD_ACT, gp.CMD_PRE, same_bundle=False)
        act_gaps += _gaps(tm.commands, gp.CMD_ACT, gp.CMD_ACT)
    assert min(act_gaps) == 2                 # not tRRD_S = 1
    assert min(pre_gaps) == 2                 # a PRE right after the ACT would be 1
