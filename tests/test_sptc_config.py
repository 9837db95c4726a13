"""hdl.sptc.config: the RTL configuration (the golden one plus requant_hi_dsp) and
the DSP budget that sets requant_hi_dsp's default."""
import pytest

from golden import sptc as gs
from golden.errors import FormatError
from hdl.fpga import ECP5_85K_MULT18
from hdl.sptc import CONFIGS, SparseTensorCore
from hdl.sptc.config import SpTCConfig

CFG = CONFIGS["small"]


def test_requant_hi_dsp_must_be_a_bool():
    with pytest.raises(FormatError, match="requant_hi_dsp: 1 "):
        SpTCConfig(requant_hi_dsp=1)


def test_requant_hi_dsp_follows_the_ecp5_dsp_budget():
    """The lanes' second DSP is the default only where PE + lane multipliers fit the
    ECP5-85k's 156 MULT18X18D (PE array 2*rows*cols, lanes 2*drain_rows*cols)."""
    assert ECP5_85K_MULT18 == 156
    assert CFG.requant_hi_dsp is True                               # 32 + 16
    assert SpTCConfig().requant_hi_dsp is False                     # 128 + 32 = 160
    assert SpTCConfig(drain_rows=1).requant_hi_dsp is True          # 128 + 16 = 144
    assert SpTCConfig(requant_hi_dsp=True).requant_hi_dsp is True
    assert SpTCConfig(rows=4, cols=4, requant_hi_dsp=False).requant_hi_dsp is False


def test_a_golden_config_gets_the_default():
    g = gs.SpTCConfig(rows=4, cols=4, max_k=64)
    r = SpTCConfig.of(g)
    assert isinstance(r, SpTCConfig) and r.requant_hi_dsp is True
    assert (r.rows, r.cols, r.max_k, r.out_stages) == (4, 4, 64, g.out_stages)
    assert SpTCConfig.of(CFG) is CFG
    assert SparseTensorCore(g).cfg == r


def test_the_rtl_refuses_depths_it_does_not_build():
    import dataclasses
    for field in ("pe_stages", "route_stages", "out_stages"):
        with pytest.raises(ValueError, match="the RTL builds"):
            SparseTensorCore(dataclasses.replace(CFG, **{field: getattr(CFG, field) + 1}))
    with pytest.raises(ValueError, match="ctrl_lag"):
        SparseTensorCore(dataclasses.replace(CFG, ctrl_lag=3)).elaborate(None)
