"""Derived figures per engine, computed from a design's measured synthesis entry.

SpTC (Engine 1), for a ``rows x cols`` PE array at the measured Fmax:

* physical MACs per cycle = 2 x rows x cols (every PE does 2 int8 MACs a cycle);
* dense mode: a weight beat carries 2 consecutive K positions, so the effective
  (dense-equivalent) MACs per cycle are 2 x rows x cols;
* 2:4 mode: a beat carries the 2 kept values of a 4-wide K group, i.e. 4 dense K
  positions' work, so the dense-equivalent MACs per cycle are 4 x rows x cols;
* effective GOPS = 2 (multiply + add) x effective MACs per cycle x Fmax;
* LUTs per effective MAC = LUT4 sites / effective MACs per cycle, with LUT4 sites
  = nextpnr's TRELLIS_COMB after place and route (Yosys LUT4 + 2 x CCU2C +
  2 x DPR16X4 when only synthesis ran).

Samoyeds mode adds the sub-row sparsity on top of 2:4 (density N/M x 1/2), so its
dense-equivalent rate is M/N times the 2:4 one; it is not in the table because
its gain depends on the (N, M) pair of the job, not on the hardware.
"""
from __future__ import annotations

NOTES = {
    "lut4": "Yosys LUT4 cells after synth_ecp5 (logic LUTs; carry and LUT-RAM not included)",
    "lut4_equiv": "LUT4 sites after synthesis: LUT4 + 2 x CCU2C + 2 x TRELLIS_DPR16X4",
    "trellis_comb": "nextpnr TRELLIS_COMB bels used after P&R (LUT4 sites incl. carry/RAM)",
    "trellis_slice": "nextpnr SLICEs; newer nextpnr reports COMB/FF halves, then "
                     "max(TRELLIS_COMB, TRELLIS_FF)/2 (lower bound)",
    "fmax_mhz": "nextpnr achieved Fmax of the slowest clock (seed 1; see mode: pin wrapper "
                "or out of context); fmax_kind 'placement estimate' when the design was not "
                "routed (--no-route, or status 'unrouted': router2 stopped, see router_stop)",
    "status": "ok | unrouted (placed; router2 not converging, stopped) | no-fit | error",
    "sptc_gops": "2 x effective MACs/cycle x Fmax; dense 2*rows*cols, 2:4 4*rows*cols "
                 "dense-equivalent MACs/cycle; only from a routed Fmax",
}


def _luts(entry: dict) -> int | None:
    return entry.get("trellis_comb") or entry.get("lut4_equiv")


def sptc_metrics(cfg, entry: dict) -> dict:
    rows, cols = cfg.rows, cfg.cols
    modes = {"dense": 2 * rows * cols, "2:4": 4 * rows * cols}
    out = {"macs_per_cycle": 2 * rows * cols}
    # GOPS only from a routed Fmax: a placement estimate (--no-route, or a router that
    # was stopped) is no throughput figure
    fmax = entry.get("fmax_mhz") if entry.get("fmax_kind", "routed") == "routed" else None
    luts = _luts(entry)
    perf = {}
    for mode, macs in modes.items():
        m = {"effective_macs_per_cycle": macs}
        if fmax:
            m["effective_gops"] = round(2 * macs * fmax / 1000.0, 2)
        if luts:
            m["luts_per_effective_mac"] = round(luts / macs, 1)
        perf[mode] = m
    out["sptc_modes"] = perf
    return out


def engine_metrics(design, entry: dict) -> dict:
    if entry.get("target") != "ecp5":
        return {}
    if design.engine == "sptc":
        return sptc_metrics(design.config(), entry)
    return {}
