"""The FPGA flow's place-and-route side without running it: report parsing and
metrics, the nextpnr options per design, the router2 watch and its stop rules, the
ABC9 fallback and the per-endpoint timing report (fake tools and fixtures).
"""
from __future__ import annotations

import json
import time
import types
from pathlib import Path

import pytest

from synth import flow, metrics, nextpnr, report, router, tools, yosys
from synth_fakes import REPORT, iter_line
from synth.engines import Design


# ------------------------------------------------------- reports and metrics


def test_parse_report_and_summary_fields():
    r = nextpnr.parse_report(REPORT)
    assert r["fmax"]["$glbnet$clk"]["achieved"] == 123.4
    cp = r["critical_paths"][0]  # the register path, not the longer IO (async) path
    assert cp["delay_ns"] == pytest.approx(3.35) and cp["logic_levels"] == 1
    assert cp["start"] == "a_reg.CLK" and cp["end"] == "b_reg.CLK" and cp["nets"] == ["n1", "n2"]
    assert cp["signals"] == ["a_reg", "n1", "n2", "b_reg"]
    assert nextpnr.path_signals(["core.sam_n$178_TRELLIS_FF_Q_4", "core.base_row[2]",
                              "core.base_row_MULT18X18D_P9_B1_CCU2C_S1_COUT$CCU2_FCI_INT",
                              "core.dr_last_TRELLIS_FF_Q_4_DI_CCU2C_S0", "core.dr_last_TRELLIS_FF_Q_12"]
                             ) == ["sam_n", "base_row", "dr_last"]
    res = flow.resources_from_pnr("ecp5", r["utilization"])
    assert res["trellis_comb"] == 1000 and res["trellis_slice"] == 750  # max(1000, 1500) / 2


@pytest.fixture
def nextpnr_argv(monkeypatch, tmp_path):
    """nextpnr replaced by a run that fails at once: the list gets each command line."""
    seen = []

    def fake_run(module, func, argv, workdir, out, timeout, **kw):
        seen.append(argv)
        Path(out).write_text("no nextpnr here\n")
        return types.SimpleNamespace(returncode=1)

    monkeypatch.setattr(nextpnr, "run_yowasp", fake_run)
    (tmp_path / "synth.json").write_text("{}")
    return seen


def test_ecp5_speed_grade_reaches_nextpnr_and_names_its_entry(nextpnr_argv, tmp_path):
    """The speed grade and the placer's timing weight are part of nextpnr's command
    line (speed 6 by default); a non-default grade gets its own summary entry; an
    unknown grade is refused."""
    for speed in (None, 8):
        kw = {} if speed is None else {"speed": speed}
        with pytest.raises(tools.ToolError):
            nextpnr.place_and_route(tmp_path, "ecp5", 150.0, **kw)
        i = nextpnr_argv[-1].index("--speed")
        assert nextpnr_argv[-1][i + 1] == str(speed or 6)
        # the placer's timing weight (ECP5_PLACER_TIMING_WEIGHT) reaches nextpnr too
        i = nextpnr_argv[-1].index("--placer-heap-timingweight")
        assert nextpnr_argv[-1][i + 1] == str(nextpnr.ECP5_PLACER_TIMING_WEIGHT)
    with pytest.raises(ValueError, match="speed.*5"):
        nextpnr.place_and_route(tmp_path, "ecp5", 150.0, speed=5)
    d = Design("sptc", "small")
    assert flow.Job(d, "ecp5", "out", 150.0).key == "ecp5-sptc-small"
    assert flow.Job(d, "ecp5", "out", 150.0, speed=8).key == "ecp5-sptc-small-s8"


def test_ecp5_placer_per_design_reaches_nextpnr_and_names_its_entry(nextpnr_argv, tmp_path):
    """The SpTC default is placed with nextpnr's static placer (heap's placement of it
    does not route), every other design with heap and its timing weight; --placer
    overrides it, and a placer other than the design's is its own summary entry."""
    default, small = Design("sptc", "default"), Design("sptc", "small")
    assert nextpnr.ecp5_placer(default) == "static"
    assert nextpnr.ecp5_placer(Design("sptc", "default", ("drain_rows=1",))) == "static"
    for d in (small, Design("moe", "default"), Design("cim", "fpga"), Design("pim", "fpga")):
        assert nextpnr.ecp5_placer(d) == "heap", d
    for placer in ("heap", "static"):
        with pytest.raises(tools.ToolError):
            nextpnr.place_and_route(tmp_path, "ecp5", 150.0, placer=placer)
        argv = nextpnr_argv[-1]
        if placer == "static":
            assert argv[argv.index("--placer") + 1] == "static"
            assert "--placer-heap-timingweight" not in argv
        else:  # nextpnr's default placer: the option list of the runs before the choice
            assert "--placer" not in argv
            assert argv[argv.index("--placer-heap-timingweight") + 1] == "30"
    with pytest.raises(ValueError, match="placer.*sa"):
        nextpnr.place_and_route(tmp_path, "ecp5", 150.0, placer="sa")
    assert flow.Job(default, "ecp5", "out", 150.0).ecp5_placer == "static"
    assert flow.Job(default, "ecp5", "out", 150.0).key == "ecp5-sptc-default"
    assert flow.Job(default, "ecp5", "out", 150.0, placer="static").key == "ecp5-sptc-default"
    assert flow.Job(default, "ecp5", "out", 150.0, placer="heap").key == "ecp5-sptc-default-heap"
    assert flow.Job(small, "ecp5", "out", 150.0, placer="static", speed=8).key == \
        "ecp5-sptc-small-s8-static"
    assert flow.Job(small, "ice40", "out", 24.0).key == "ice40-sptc-small"
    e = {"design": "ecp5-sptc-default", "target": "ecp5", "status": "ok", "fmax_mhz": 88.87,
         "fmax_kind": "routed", "meets_target": False, "freq_target_mhz": 150.0,
         "device": "ECP5-85k CABGA381 speed 6", "placer": "static"}
    row = report.table([e]).splitlines()[-1]
    assert "| ECP5-85k CABGA381 speed 6, static placer |" in row and "88.9 (150)" in row


def test_ecp5_router2_timing_ripup_per_design_reaches_nextpnr_and_names_its_entry(
        nextpnr_argv, tmp_path):
    """router2's timing-driven rip-up (--tmg-ripup) is on for the designs in
    ECP5_TMG_RIPUP_BY_DESIGN (the SpTC small) and off elsewhere; router1, place-only
    runs and iCE40 never get it; a choice other than the design's is its own summary
    entry, and the table's device column says which."""
    small, default = Design("sptc", "small"), Design("sptc", "default")
    assert nextpnr.ecp5_tmg_ripup(small)
    assert nextpnr.ecp5_tmg_ripup(Design("sptc", "small", ("requant_hi_dsp=False",)))
    for d in (default, Design("moe", "default"), Design("cim", "fpga"), Design("pim", "fpga")):
        assert not nextpnr.ecp5_tmg_ripup(d), d
    runs = [({"tmg_ripup": True}, "ecp5", True), ({}, "ecp5", False),
            ({"tmg_ripup": True, "router": "router1"}, "ecp5", False),
            ({"tmg_ripup": True, "no_route": True}, "ecp5", False),
            ({"tmg_ripup": True}, "ice40", False)]
    for kw, target, expect in runs:
        with pytest.raises(tools.ToolError):
            nextpnr.place_and_route(tmp_path, target, 150.0, **kw)
        assert ("--tmg-ripup" in nextpnr_argv[-1]) == expect, (kw, target)
    assert flow.Job(small, "ecp5", "out", 150.0).ecp5_tmg_ripup
    assert flow.Job(small, "ecp5", "out", 150.0).key == "ecp5-sptc-small"
    assert flow.Job(small, "ecp5", "out", 150.0, tmg_ripup=True).key == "ecp5-sptc-small"
    assert flow.Job(small, "ecp5", "out", 150.0, tmg_ripup=False).key == "ecp5-sptc-small-notmg"
    assert flow.Job(default, "ecp5", "out", 150.0, tmg_ripup=True).key == "ecp5-sptc-default-tmg"
    assert flow.Job(small, "ice40", "out", 24.0, tmg_ripup=False).key == "ice40-sptc-small"
    e = {"design": "ecp5-sptc-small", "target": "ecp5", "status": "ok", "fmax_mhz": 152.46,
         "fmax_kind": "routed", "meets_target": True, "freq_target_mhz": 150.0,
         "device": "ECP5-85k CABGA381 speed 6", "placer": "heap", "router_tmg_ripup": True}
    row = report.table([e]).splitlines()[-1]
    assert "| ECP5-85k CABGA381 speed 6, heap placer, timing rip-up |" in row
    e["tmg_ripup_stop"] = {"iteration": 34, "failing_arcs": 7}
    assert "timing rip-up stalled: routed without |" in report.table([e]).splitlines()[-1]
    e["router_tmg_ripup"] = False
    assert "rip-up" not in report.table([e]).splitlines()[-1]


def test_router2_timing_stall_rule():
    """A --tmg-ripup router2 is stopped only once every wire is routed and arcs have
    failed for TMG_STALL_ITERS iterations in a row (its router would go on forever):
    not while wires are overused, not when an iteration had no failing arc."""
    n = router.TMG_STALL_ITERS
    # seed 3 of the SpTC small at ac241e5: overuse cleared at 25, 7 arcs failing from then on
    stuck = [iter_line(i, max(0, 25 - i) * 3, 7) for i in range(1, 25 + n)]
    its = router.router2_iterations("\n".join(stuck))
    assert its[0] == (1, 72, 7) and its[-1] == (24 + n, 0, 7)
    why = router.router2_timing_stalled(its)
    assert why and f"iteration {24 + n}" in why and "7 arcs" in why
    assert router.router2_timing_stall(its) == len(its) - 1
    assert router.router2_timing_stalled(its[:-1]) is None          # only n - 1 routed iterations
    ok = its[:-1] + [(24 + n, 0, 0)]                                # converging: no arc fails
    assert router.router2_timing_stalled(ok) is None
    # a stretch of n counts even if the run got past it (polling must not decide)
    past = its + [(25 + n, 0, 0)]
    assert router.router2_timing_stall(past) == len(its) - 1
    assert f"iteration {24 + n}" in router.router2_timing_stalled(past)
    broken = its[:-2] + [(23 + n, 0, 0), (24 + n, 0, 7)]           # interrupted: starts again
    assert router.router2_timing_stalled(broken) is None
    congested = [(i, 5, 7) for i in range(1, 3 * n)]                 # wires still overused
    assert router.router2_timing_stalled(congested) is None
    # a log without tmgfail (no --tmg-ripup) never stalls on timing
    plain = router.router2_iterations("\n".join(iter_line(i, 0) for i in range(1, 3 * n)))
    assert plain[-1] == (3 * n - 1, 0, 0) and router.router2_timing_stalled(plain) is None


def test_timing_ripup_stall_routes_again_without_it(monkeypatch, tmp_path):
    """When the rip-up stalls, nextpnr is stopped and run again without --tmg-ripup:
    the stalled log is kept, the result says so, and a rerun reuses it (cached)."""
    calls = []

    def fake_run(module, func, argv, workdir, out, timeout, watch=None, **kw):
        calls.append(list(argv))
        log = Path(workdir) / "nextpnr.log"
        if "--tmg-ripup" in argv:
            log.write_text("\n".join(iter_line(i, 0, 7) for i in range(1, router.TMG_STALL_ITERS + 1)))
            reason = watch()
            assert reason and "stalled" in reason
            return types.SimpleNamespace(returncode=-15, stopped=reason)
        log.write_text("Info: Max frequency for clock 'clk': 140.00 MHz (FAIL at 150.00 MHz)\n")
        assert watch is None or watch() is None
        (Path(workdir) / "report.json").write_text(json.dumps(REPORT))
        return types.SimpleNamespace(returncode=0, stopped=None)

    monkeypatch.setattr(nextpnr, "run_yowasp", fake_run)
    (tmp_path / "synth.json").write_text("{}")
    out = nextpnr.place_and_route(tmp_path, "ecp5", 150.0, tmg_ripup=True)
    assert len(calls) == 2 and "--tmg-ripup" in calls[0] and "--tmg-ripup" not in calls[1]
    assert [a for a in calls[0] if a != "--tmg-ripup"] == calls[1]
    assert out["tmg_ripup_stop"]["failing_arcs"] == 7 and out["routed"]
    assert (tmp_path / "nextpnr_tmg.log").exists()
    again = nextpnr.place_and_route(tmp_path, "ecp5", 150.0, tmg_ripup=True)
    assert len(calls) == 2 and again["cached"] and again["tmg_ripup_stop"] == out["tmg_ripup_stop"]
    assert out["tmg_ripup_stop"]["iteration"] == router.TMG_STALL_ITERS


def test_timing_ripup_run_that_got_past_a_stall_is_routed_again(monkeypatch, tmp_path):
    """A --tmg-ripup run that ended (no poll saw its stall) but whose log has a stall
    stretch is routed again without the rip-up, as a stopped one would be: which
    result the flow keeps must not depend on the machine's speed."""
    calls = []
    n = router.TMG_STALL_ITERS

    def fake_run(module, func, argv, workdir, out, timeout, watch=None, **kw):
        calls.append(list(argv))
        log = [iter_line(i, 0, 3) for i in range(1, n + 3)] + [iter_line(n + 3, 0, 0)]
        if "--tmg-ripup" not in argv:
            log = [iter_line(1, 0)]
        (Path(workdir) / "nextpnr.log").write_text("\n".join(log) + "\n")
        (Path(workdir) / "report.json").write_text(json.dumps(REPORT))
        return types.SimpleNamespace(returncode=0, stopped=None)

    monkeypatch.setattr(nextpnr, "run_yowasp", fake_run)
    (tmp_path / "synth.json").write_text("{}")
    out = nextpnr.place_and_route(tmp_path, "ecp5", 150.0, tmg_ripup=True)
    assert len(calls) == 2 and "--tmg-ripup" not in calls[1]
    assert out["tmg_ripup_stop"] == {"reason": out["tmg_ripup_stop"]["reason"], "iteration": n,
                                     "failing_arcs": 3, "stopped_at_iteration": n + 3}
    # a run that converges with no stall is kept as it is
    calls.clear()
    monkeypatch.setattr(router, "TMG_STALL_ITERS", n + 5)
    out = nextpnr.place_and_route(tmp_path, "ecp5", 150.0, tmg_ripup=True)
    assert len(calls) == 1 and "tmg_ripup_stop" not in out


# router2's overused wires per iteration, from nextpnr logs of this repository's designs:
# the SpTC small and the MoE top route (a steady fall into a tail of a few wires); the
# SpTC default (ed38afd, seed 1) flattens and turns up again: the flow stopped it at 11
SPTC_SMALL_ROUTES = [17037, 9018, 5311, 2864, 1600, 915, 563, 334, 245, 141, 106, 65, 43, 35,
                     29, 23, 16, 12, 6, 3, 3, 3, 3, 1, 1, 1, 0]
MOE_TOP_ROUTES = [23985, 11516, 5981, 3164, 1755, 1104, 723, 483, 349, 237, 198, 156, 145]
SPTC_DEFAULT = [70635, 45376, 31631, 24292, 20220, 18287, 17135, 16766, 16632, 16700, 17392]


def _iters(overused):
    return list(enumerate(overused, start=1))


def test_router2_stall_rule():
    for seq in (SPTC_SMALL_ROUTES, MOE_TOP_ROUTES):
        for n in range(1, len(seq) + 1):
            assert router.router2_stalled(_iters(seq[:n])) is None
    # a tail that stays flat below ROUTER_STALL_OVERUSED (the CIM: 1 wire for 60 iterations)
    assert router.router2_stalled(_iters([50739, 3821, 1046] + [1] * 60)) is None
    # the SpTC default: 10 iterations still fall fast enough (17 % over the last 5),
    # the 11th (5 %) stops it
    for n in range(1, len(SPTC_DEFAULT)):
        assert router.router2_stalled(_iters(SPTC_DEFAULT[:n])) is None
    assert "iteration 11: 17392 wires" in router.router2_stalled(_iters(SPTC_DEFAULT))
    # a slow steady fall of 1 % an iteration stops once 5 iterations removed < 15 %
    seq = SPTC_DEFAULT[:9]
    while router.router2_stalled(_iters(seq)) is None:
        seq.append(int(seq[-1] * 0.99))
        assert len(seq) < 20
    reason = router.router2_stalled(_iters(seq))
    assert f"iteration {len(seq)}" in reason and str(seq[-1]) in reason
    assert 1 - seq[-1] / seq[-1 - router.ROUTER_STALL_WINDOW] < router.ROUTER_STALL_FALL
    assert 1 - seq[-2] / seq[-2 - router.ROUTER_STALL_WINDOW] >= router.ROUTER_STALL_FALL
    log = "".join(f"Info:     iter={i} wires={900000 + i} overused={o} overuse={o + 7} archfail=NA\n"
                  for i, o in _iters(SPTC_DEFAULT))
    assert router.router2_progress("Info: Running router2...\n" + log) == _iters(SPTC_DEFAULT)


FAKE_PNR = """
import time
def run(argv):
    # a router that never converges: one iteration line every 20 ms, forever
    with open("nextpnr.log", "w") as fh:
        fh.write("Info: Max frequency for clock 'clk': 78.90 MHz (FAIL at 150.00 MHz)\\n")
        fh.write("Info:     TRELLIS_COMB: 44774/83640    53%\\n")
        for i in range(1, 10**6):
            fh.write(f"Info:     iter={i} wires=1000 overused={20000 - 10 * i} overuse=1 archfail=NA\\n")
            fh.flush()
            time.sleep(0.02)
    return 0
"""


def test_stalled_router_is_stopped_and_reported_placed_not_routed(monkeypatch, tmp_path):
    """A real child process that never converges: run_yowasp stops it through the
    watch, place_and_route returns the placement's estimate and the router's state,
    the entry says 'unrouted', and a rerun with the same netlist reuses the result."""
    (tmp_path / "fakepnr.py").write_text(FAKE_PNR)
    (tmp_path / "synth.json").write_text("{}")
    real = tools.run_yowasp
    calls = []

    def run(module, func, argv, workdir, out, timeout, **kw):
        calls.append(kw)
        assert kw.get("watch") is not None
        t0 = time.monotonic()
        res = real("fakepnr", "run", argv, workdir, out, timeout, watch=kw["watch"], poll=0.1)
        assert time.monotonic() - t0 < 30
        return res

    monkeypatch.setattr(nextpnr, "run_yowasp", run)
    pnr = nextpnr.place_and_route(tmp_path, "ecp5", 150.0)
    assert pnr["routed"] is False and pnr["fits"]
    st = pnr["router_stop"]
    assert st["iteration"] >= router.ROUTER_STALL_MIN_ITER and st["overused_wires"] > 19000
    assert "not converging" in st["reason"]
    assert pnr["fmax"] == {"clk": {"achieved": 78.9, "constraint": 150.0}}
    assert pnr["utilization"]["TRELLIS_COMB"] == {"used": 44774, "available": 83640}
    # the child is gone: the log stops growing
    size = (tmp_path / "nextpnr.log").stat().st_size
    time.sleep(0.3)
    assert (tmp_path / "nextpnr.log").stat().st_size == size
    again = nextpnr.place_and_route(tmp_path, "ecp5", 150.0)
    assert len(calls) == 1 and again["cached"] and again["router_stop"] == st
    # without the stop, nothing watches the router
    monkeypatch.setattr(nextpnr, "run_yowasp", lambda *a, **kw: calls.append(kw) or
                        types.SimpleNamespace(returncode=1, stopped=None))
    with pytest.raises(tools.ToolError):
        nextpnr.place_and_route(tmp_path, "ecp5", 150.0, router_stop=False)
    assert calls[-1]["watch"] is None
    e = {"design": "ecp5-sptc-default", "target": "ecp5", "status": "unrouted",
         "fmax_mhz": 78.9, "fmax_kind": "placement estimate", "freq_target_mhz": 150.0,
         "router_stop": st, "params": {"rows": 8, "cols": 8}}
    row = report.table([e]).splitlines()[-1]
    assert "78.9 (150) placed est." in row and "not routed: router2 stopped" in row
    from golden.sptc import SpTCConfig
    m = metrics.sptc_metrics(SpTCConfig(rows=8, cols=8), e)
    assert all("effective_gops" not in v for v in m["sptc_modes"].values())


def test_fmax_from_the_log_when_the_report_has_no_timing():
    log = ("Info: Max frequency for clock 'clk': 17.65 MHz (FAIL at 150.00 MHz)\n"
           "Info: Max frequency for clock 'clk': 35.47 MHz (FAIL at 150.00 MHz)\n")
    assert nextpnr.log_fmax(log) == {"clk": {"achieved": 35.47, "constraint": 150.0}}


def test_stat_parsing_and_resource_fields():
    stat = {"design": {"num_cells_by_type": {"$scopeinfo": 2, "LUT4": 100, "CCU2C": 10,
                                             "TRELLIS_FF": 50, "MULT18X18D": 4, "DP16KD": 1,
                                             "TRELLIS_DPR16X4": 3, "$mul": 1}}}
    cells = yosys.parse_stat(stat, "moe_x")
    assert "$scopeinfo" not in cells and yosys.unmapped_cells(cells) == {"$mul": 1}
    res = flow.resources_from_cells("ecp5", cells)
    assert (res["lut4"], res["ff"], res["mult18"], res["dp16kd"]) == (100, 50, 4, 1)
    assert res["lut4_equiv"] == 100 + 2 * 10 + 2 * 3


def test_sptc_effective_gops_formula():
    from golden.sptc import SpTCConfig

    entry = {"fmax_mhz": 150.0, "trellis_comb": 25600}
    m = metrics.sptc_metrics(SpTCConfig(rows=8, cols=8), entry)
    assert m["macs_per_cycle"] == 128
    dense, sparse = m["sptc_modes"]["dense"], m["sptc_modes"]["2:4"]
    assert dense["effective_macs_per_cycle"] == 128 and dense["effective_gops"] == 38.4
    assert sparse["effective_macs_per_cycle"] == 256 and sparse["effective_gops"] == 76.8
    assert dense["luts_per_effective_mac"] == 200.0 and sparse["luts_per_effective_mac"] == 100.0
    rows = report.sptc_table([{"design": "ecp5-sptc-default", "params": {"rows": 8, "cols": 8},
                               "fmax_mhz": 150.0, "mult18": 130, **m}])
    assert "76.8" in rows and "| 2:4 |" in rows


def test_abc9_crash_fallback_script():
    """Yosys 0.70's ABC9 reintegration assert: the rerun replaces only the map_luts step."""
    normal = yosys.yosys_script("ecp5", ["a.v"], "top", fast=False, json_out=True)
    assert "synth_ecp5 -top top -json synth.json" in normal and "abc -lut" not in normal
    split = yosys.yosys_script("ecp5", ["a.v"], "top", fast=False, json_out=True, noabc9=True)
    lines = split.splitlines()
    assert lines[1:5] == ["synth_ecp5 -top top -run :map_luts",
                          "techmap -map +/lattice/latches_map.v", "abc -lut 4", "clean"]
    assert lines[5] == "synth_ecp5 -top top -run map_cells: -json synth.json"


# A hand-made routed netlist in nextpnr's SDF dialect (delays in ps):
#   ff_a -> lut_x -> ff_b      525 + 300 + 236 + 700 + 130 setup = 1891
#   ff_a -> ff_c               525 + 4000 + 130 setup            = 4655
#   GND  -> ff_c/CE (constant, untimed), rst -> ff_b/LSR (async, untimed)
_SDF = """(DELAYFILE (SDFVERSION "3.0") (TIMESCALE 1ps)
  (CELL (CELLTYPE "top") (INSTANCE )
    (DELAY (ABSOLUTE
      (INTERCONNECT core.ff_a_TRELLIS_FF_Q/Q core.lut_x_LUT4_Z/A (300:300:300) (300:300:300))
      (INTERCONNECT core.lut_x_LUT4_Z/F core.ff_b_TRELLIS_FF_Q_3/DI (600:650:700) (600:650:700))
      (INTERCONNECT core.ff_a_TRELLIS_FF_Q/Q core.ff_c_TRELLIS_FF_Q_12/DI (4000:4000:4000) (4000:4000:4000))
      (INTERCONNECT \\$PACKER_GND/F core.ff_c_TRELLIS_FF_Q_12/CE (9000:9000:9000) (9000:9000:9000))
      (INTERCONNECT rst\\$TRELLIS_IO_IN/O core.ff_b_TRELLIS_FF_Q_3/LSR (9000:9000:9000) (9000:9000:9000))
    )))
  (CELL (CELLTYPE "TRELLIS_FF") (INSTANCE core.ff_a_TRELLIS_FF_Q)
    (DELAY (ABSOLUTE (IOPATH CLK Q (430:477:525) (430:477:525))))
    (TIMINGCHECK (SETUPHOLD (posedge DI) (posedge CLK) (0:0:0) (0:0:0))))
  (CELL (CELLTYPE "TRELLIS_COMB") (INSTANCE core.lut_x_LUT4_Z)
    (DELAY (ABSOLUTE (IOPATH A F (200:218:236) (200:218:236)))))
  (CELL (CELLTYPE "TRELLIS_FF") (INSTANCE core.ff_b_TRELLIS_FF_Q_3)
    (DELAY (ABSOLUTE (IOPATH CLK Q (430:477:525) (430:477:525))))
    (TIMINGCHECK (SETUPHOLD (posedge DI) (posedge CLK) (100:120:130) (0:0:0))
                 (SETUPHOLD (posedge LSR) (posedge CLK) (300:350:400) (0:0:0))))
  (CELL (CELLTYPE "TRELLIS_FF") (INSTANCE core.ff_c_TRELLIS_FF_Q_12)
    (DELAY (ABSOLUTE (IOPATH CLK Q (430:477:525) (430:477:525))))
    (TIMINGCHECK (SETUPHOLD (posedge DI) (posedge CLK) (100:120:130) (0:0:0))
                 (SETUPHOLD (posedge CE) (posedge CLK) (100:120:130) (0:0:0))))
)
"""


def test_sta_arrivals_slacks_and_groups():
    """synth.sta on a netlist whose arrivals are known: max delays, clock-to-out as
    the start, setup at the end, constant and reset sources untimed."""
    from synth import sta
    a = sta.analyse(_SDF, period_ps=4000.0)
    # timed endpoints: ff_a/DI (no driver here: untimed), ff_b/DI, ff_c/DI; the
    # constant-driven CE and the reset-driven LSR have no timed source
    assert a.endpoints == 2
    assert a.failing == 1
    assert a.worst_slack_ps == pytest.approx(4000 - 4655)
    assert a.worst_arrival_ps == pytest.approx(4525)
    (g,) = a.groups
    assert (g.start, g.end, g.count) == ("core.ff_a", "core.ff_c", 1)
    assert [p for p, _ in g.path] == ["core.ff_a_TRELLIS_FF_Q/CLK", "core.ff_a_TRELLIS_FF_Q/Q",
                                      "core.ff_c_TRELLIS_FF_Q_12/DI"]
    # at 500 MHz both paths fail; bit indices fold into one group per register pair
    b = sta.analyse(_SDF, period_ps=1000.0)
    assert b.failing == 2 and {(g.start, g.end) for g in b.groups} == {
        ("core.ff_a", "core.ff_c"), ("core.ff_a", "core.ff_b")}
    assert min(g.worst_ps for g in b.groups) == pytest.approx(1000 - 4655)
    assert [g for g in b.groups if g.end == "core.ff_b"][0].worst_ps == pytest.approx(1000 - 1891)
    text = sta.report(b)
    assert text.startswith("2 of 2 endpoints fail 1000.0 MHz") and "core.ff_a -> core.ff_b" in text
    assert sta.analyse(_SDF, period_ps=5000.0).failing == 0
