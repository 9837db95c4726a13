"""The SpTC's RTL configuration and stream layouts.

:class:`SpTCConfig` is :class:`golden.sptc.SpTCConfig` (the array, the buffers
and the pipeline depths the cycle model counts) plus what only the hardware
build decides: ``requant_hi_dsp``.
"""
from __future__ import annotations

import dataclasses

from amaranth import signed, unsigned
from amaranth.lib import data

from golden import sptc as gs
from golden.errors import FormatError

from ..fpga import ECP5_85K_MULT18


@dataclasses.dataclass(frozen=True)
class SpTCConfig(gs.SpTCConfig):
    """``requant_hi_dsp``: how each output lane multiplies the accumulator's high
    bits (17 and up) by the requant multiplier; the low 17 bits always use one
    MULT18X18D. True: a second MULT18X18D per lane, so every multiply is in a
    DSP block. False: a few shifted adds in LUTs. None (the default) picks True
    when the PE array's and the lanes' multipliers fit the ECP5-85k's DSP blocks,
    ``2*rows*cols + 2*drain_rows*cols <= ECP5_85K_MULT18`` (156): the 4 x 4 build
    needs 48, the 8 x 8 default 128 + 32 = 160, so its lanes use LUTs. Results
    and cycle counts are the same either way."""

    requant_hi_dsp: bool | None = None

    def __post_init__(self):
        super().__post_init__()
        if self.requant_hi_dsp is None:
            dsps = 2 * self.rows * self.cols + 2 * self.drain_rows * self.cols
            object.__setattr__(self, "requant_hi_dsp", dsps <= ECP5_85K_MULT18)
        elif not isinstance(self.requant_hi_dsp, bool):
            raise FormatError(f"requant_hi_dsp: {self.requant_hi_dsp!r} must be True, False "
                              f"or None")

    @classmethod
    def of(cls, cfg: gs.SpTCConfig) -> "SpTCConfig":
        """``cfg`` as an RTL configuration (a golden one gets the default ``requant_hi_dsp``)."""
        if isinstance(cfg, cls):
            return cfg
        return cls(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(gs.SpTCConfig)})


def lane_layout():
    return data.StructLayout({"v0": signed(8), "v1": signed(8), "nib": unsigned(4),
                              "idx": unsigned(4)})


def weight_layout(cfg: gs.SpTCConfig):
    return data.ArrayLayout(lane_layout(), cfg.rows)


def sel_layout(cfg: gs.SpTCConfig):
    """``sel_lanes`` SEL indices per beat; lanes past ``n_sel`` in the last beat are ignored."""
    return data.ArrayLayout(unsigned(16), cfg.sel_lanes)


def result_layout(cfg: gs.SpTCConfig):
    P = cfg.drain_rows
    return data.StructLayout({
        # data[p][c]: output row `row + p`, column `tile * cols + c`; int8 modes sign-extended
        "data": data.ArrayLayout(data.ArrayLayout(signed(32), cfg.cols), P),
        "row": unsigned(16),                             # output row of data[0]
        "tile": unsigned(16),                            # token tile: columns tile*cols + c
        "mask": unsigned(cfg.cols),                      # which columns are selected tokens
        "rmask": unsigned(P),                            # which of the P rows are output rows
    })
