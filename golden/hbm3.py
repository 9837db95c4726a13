"""HBM3 timing of the Logic-PIM's pseudo-channel: the 5.2 Gbps preset in cycles.

Source: the ``HBM3_5.2Gbps`` preset of AttAcc's Ramulator 2 HBM3 model
(``pim_ramulator_src/HBM3-PIM.cpp`` of scale-snu/attacc_simulator), whose
timing rules are those of Ramulator 2's ``src/dram/impl/HBM3.cpp``
(CMU-SAFARI/ramulator2). Three rules of that model, besides the per-command
distances, are honoured here (and by the RTL controller, the cycle model and
the bench's checker):

* ACT is a two-cycle command: after an ACT the next ACT, PRE or REF on the
  (pseudo-)channel waits :attr:`HBM3Timing.tACT` = 2 cycles
  (``{.level = "channel", .preceding = {"ACT"}, .following = {"ACT", "PRE",
  "PREA", "REFab", ...}, .latency = 2}``);
* timing given in ns becomes cycles by :func:`jedec_cycles`, Ramulator 2's
  ``JEDEC_rounding`` (``src/base/utils.cpp``): round up, with JEDEC's
  correction factor (an excess below 0.026 tCK rounds down). Every ns value
  lives in :data:`TIMING_NS`, the one table; tRFC 350 ns at tCK 769 ps = 456;
* read to write turnaround = CL + nBL + 2 - CWL (Ramulator's "Minimum Read to
  Write, Assuming tWPRE = 1 tCK"): 17 cycles, not the preset's nRTW = 3
  (which the HBM3 model lists but never uses).

This module is part of the golden package: it never imports hdl/.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from .errors import FormatError

#: tCK of the 5.2 Gbps preset in ps: Ramulator's ``int(1E6 / (rate / 4))`` for
#: rate 5200 (QDR DQ pins), i.e. 769 ps = 0.769 ns.
TCK_PS = 769

#: Every timing value given in ns (all others are in cycles, as in the preset).
#: tRFC: all-bank refresh of an 8 Gb die (Ramulator's ``tRFC_TABLE``, 8 Gb column).
TIMING_NS = {"tRFC": 350}


def jedec_cycles(t_ns, tck_ps: int = TCK_PS) -> int:
    """ns -> cycles as Ramulator 2's ``JEDEC_rounding``:
    ``((t_ps * 1000 / tCK_ps) + 974) / 1000`` in integer arithmetic (t_ps = t_ns x 1000):
    round up unless the excess over a whole cycle is under 0.026 tCK."""
    if isinstance(t_ns, bool) or not isinstance(t_ns, (int, float, np.integer, np.floating)) \
            or not t_ns > 0:
        raise FormatError(f"t_ns: must be a number > 0, got {t_ns!r}")
    if isinstance(tck_ps, bool) or not isinstance(tck_ps, (int, np.integer)) or tck_ps < 1:
        raise FormatError(f"tCK_ps: must be an integer >= 1 ps, got {tck_ps!r}")
    t_ps = int(round(float(t_ns) * 1000))
    return (t_ps * 1000 // int(tck_ps) + 974) // 1000


def ns_cycles(tck_ps: int = TCK_PS) -> dict:
    """Every entry of :data:`TIMING_NS` in cycles of ``tck_ps``."""
    return {k: jedec_cycles(v, tck_ps) for k, v in TIMING_NS.items()}


@dataclass(frozen=True)
class HBM3Timing:
    """DRAM timing in command-clock cycles (tCK = ``tCK_ps`` = 769 ps at 5.2 Gbps).

    From DESIGN.md (the AttAcc ``HBM3_5.2Gbps`` preset): CL, tRCD, tRP, tRAS, tRC,
    tCCD_S/L, tRRD_S/L, tFAW, tWTR_S/L, tWR, tREFI. Not in DESIGN.md, from the
    same preset: tCWL = 6 (write latency), tBL = 2 (nBL, burst cycles), tRTP = 8
    (nRTPL, read to precharge; the model applies both nRTPS and nRTPL per bank).
    ``tRFC`` None (the default) is derived from :data:`TIMING_NS` at ``tCK_ps``
    by :func:`jedec_cycles` (456); a number overrides it (in cycles).
    tACT = 2: the two-cycle ACT. tBUS = tCCD_L: the bundle data bus (Duplex's
    4x TSVs) carries one ``bundle_bits`` burst per tCCD_L whatever bundle it
    comes from.
    """

    tCL: int = 19
    tRCD: int = 19
    tRP: int = 19
    tRAS: int = 45
    tRC: int = 63
    tCCD_S: int = 2
    tCCD_L: int = 4
    tRRD_S: int = 2
    tRRD_L: int = 4
    tFAW: int = 39
    tWTR_S: int = 8
    tWTR_L: int = 11
    tWR: int = 21
    tREFI: int = 5070
    tRFC: int | None = None
    tCWL: int = 6
    tBL: int = 2
    tRTP: int = 8
    tBUS: int = 4
    tACT: int = 2
    tCK_ps: int = TCK_PS

    def __post_init__(self):
        v = self.tCK_ps
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise FormatError(f"tCK_ps: must be an integer >= 1 ps, got {v!r}")
        for name, cyc in ns_cycles(int(v)).items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, cyc)
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise FormatError(f"{f.name}: timing must be an integer >= 1 cycle, got {v!r}")
        if self.tRC < self.tRRD_L:
            raise FormatError(f"tRC: {self.tRC} < tRRD_L {self.tRRD_L}")
        if self.rd_to_wr < 1:
            raise FormatError(f"tCWL: {self.tCWL} makes the read-to-write turnaround "
                              f"tCL + tBL + 2 - tCWL = {self.rd_to_wr} < 1")
        if self.tREFI <= self.tRFC + self.ref_slack + 16:
            raise FormatError(f"tREFI: {self.tREFI} too short for tRFC {self.tRFC} "
                              f"+ refresh slack {self.ref_slack}")
        if self.tCL > 64 or self.tREFI >= 1 << 16 or self.tRFC >= 1 << 12:
            raise FormatError(f"timing: tCL <= 64, tREFI < 65536, tRFC < 4096 required "
                              f"(got {self.tCL}, {self.tREFI}, {self.tRFC})")

    @property
    def tCK_ns(self) -> float:
        return self.tCK_ps / 1000

    # derived command-to-command distances
    @property
    def rd_to_wr(self) -> int:
        """RD -> WR on the pseudo-channel: tCL + tBL + 2 - tCWL (Ramulator 2 HBM3)."""
        return self.tCL + self.tBL + 2 - self.tCWL

    @property
    def wr_to_pre(self) -> int:
        return self.tCWL + self.tBL + self.tWR

    @property
    def wr_to_rd_l(self) -> int:
        return self.tCWL + self.tBL + self.tWTR_L

    @property
    def wr_to_rd_s(self) -> int:
        return self.tCWL + self.tBL + self.tWTR_S

    @property
    def ref_slack(self) -> int:
        """Upper bound on how late a REF can come after its due time (8 bundles max)."""
        return max(self.tRAS, self.tRTP, self.wr_to_pre, self.tRC - self.tRP) + 8 + self.tRP + 2


HBM3_5G2 = HBM3Timing()
