"""Printed tables of ``build/synth/summary.json`` (the README table comes from here)."""
from __future__ import annotations


def _fmt(v, nd=0) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}f}" if nd else f"{v:.0f}"
    return str(v)


def table(designs: list[dict]) -> str:
    """One row per design: resources and Fmax (markdown)."""
    head = ("| design | target | LUT4 | CCU2C | FF | MULT18X18D | DP16KD | TRELLIS_SLICE "
            "| LUT4 sites (P&R) | Fmax MHz (target) | status |")
    rows = [head, "|" + "|".join(["---"] * (head.count("|") - 1)) + "|"]
    for e in designs:
        ice = e.get("target") == "ice40"
        fmax = e.get("fmax_mhz")
        fcol = "-" if fmax is None else f"{fmax:.1f} ({e.get('freq_target_mhz', 0):g})"
        if fmax is not None and e.get("fmax_kind") == "placement estimate":
            fcol += " placed est."
        status = e.get("status", "?")
        if status == "ok" and fmax is not None:
            status = "meets target" if e.get("meets_target") else "below target"
        elif status == "ok":
            status = "synthesis only"
        elif status == "no-fit":
            over = ", ".join(f"{k} {v}" for k, v in e.get("overuse", {}).items())
            status = f"does not fit ({over})" if over else "does not fit"
        elif status == "error":
            status = "error: " + e.get("error", "").splitlines()[0][:60]
        elif status == "unrouted":
            st = e.get("router_stop", {})
            status = (f"not routed: router2 stopped at iteration {st.get('iteration', '?')}, "
                      f"{_fmt(st.get('overused_wires'))} wires overused")
        rows.append("| " + " | ".join([
            e["design"], e.get("device", e["target"])
            + (f", {e['placer']} placer" if e.get("placer") else "")
            + ("" if not e.get("router_tmg_ripup") else
               ", timing rip-up stalled: routed without" if e.get("tmg_ripup_stop") else
               ", timing rip-up"),
            _fmt(e.get("lut4")),
            _fmt(e.get("carry") if ice else e.get("ccu2c")),
            _fmt(e.get("ff")),
            _fmt(e.get("mac16")) + " SB_MAC16" if ice else _fmt(e.get("mult18")),
            _fmt(e.get("ebr")) + " EBR" if ice else _fmt(e.get("dp16kd")),
            _fmt(e.get("ice40_lc")) + " LC" if ice else _fmt(e.get("trellis_slice")),
            _fmt(e.get("trellis_comb")),
            fcol, status]) + " |")
    return "\n".join(rows)


def sptc_table(designs: list[dict]) -> str:
    """SpTC throughput: effective GOPS and LUTs per effective MAC, dense vs 2:4."""
    rows = []
    for e in designs:
        modes = e.get("sptc_modes")
        if not modes:
            continue
        p = e.get("params", {})
        for mode, m in modes.items():
            rows.append("| " + " | ".join([
                e["design"], f"{p.get('rows', '?')}x{p.get('cols', '?')}", mode,
                str(m["effective_macs_per_cycle"]),
                _fmt(e.get("fmax_mhz"), 1) + (" placed est." if e.get("fmax_kind") ==
                                              "placement estimate" else ""),
                _fmt(m.get("effective_gops"), 1),
                _fmt(m.get("luts_per_effective_mac"), 1),
                f"{_fmt(e.get('mult18'))} / {e.get('macs_per_cycle', '?')}"]) + " |")
    if not rows:
        return ""
    head = ("| design | PEs | mode | eff. MACs/cycle | Fmax MHz | eff. GOPS | LUTs / eff. MAC "
            "| MULT18X18D / PE MACs |")
    return "\n".join([head, "|" + "|".join(["---"] * 8) + "|", *rows])


def crit_summary(e: dict) -> str:
    cp = e["critical_path"]
    shown = " -> ".join(cp.get("signals", [])) or ", ".join(cp.get("nets", [])[:8])
    return (f"[synth] {e['design']} critical path: {cp['delay_ns']} ns "
            f"({cp['logic_levels']} logic levels, logic {cp['logic_ns']} ns, routing "
            f"{cp['routing_ns']} ns) from {cp['start']} to {cp['end']}; through: {shown}")
