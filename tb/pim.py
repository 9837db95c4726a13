"""cocotb bench of the Logic-PIM unit (hdl.pim): jobs, scoreboard, DRAM timing checker.

The host (tests/test_pim_rtl.py, sim/bench/pim.py) writes a job file (``MOE_JOB``,
.npz): the unit's config as JSON and, per job, the instruction words, the data
words and whether the job runs *timed* (no stalls: the busy-cycle counter and the
whole DRAM command trace must equal golden.pim.predict) or under random stalls
on all three streams (data and error bits only). The bench keeps the golden
state (DRAM contents, token buffer, output mode) across jobs, checks every output
value and ``last`` flag, the sticky error bits, ``dram_fault``, and runs
:class:`tb.dram_timing.TimingChecker` (an independent model of the HBM3 rules) on
every DRAM command of the whole simulation. Per-job measurements go to
``MOE_RESULT`` (.npz).
"""
from __future__ import annotations

import json
import os

import numpy as np

from golden import pim as gp
from tb.dram_timing import TimingChecker

# --------------------------------------------------------------------------- building

def build_unit(cfg: gp.PIMConfig, simulator: str = "verilator", name: str = "pim",
               waves: bool = False):
    """Generate the unit's Verilog and compile it (cached) for ``simulator``."""
    from hdl.pim import MODULE_NAME, build, config_params
    from hdl.verilog import to_verilog
    from tb import cocotb_run
    v = to_verilog(build(cfg), MODULE_NAME, config_params(cfg))
    return cocotb_run.build(name, v, MODULE_NAME, simulator=simulator, waves=waves)


def run_jobs(cfg: gp.PIMConfig, jobs: list[dict], workdir, simulator: str = "verilator",
             seed: int = 1, waves: bool = False) -> dict:
    """Build (cached), run the bench on ``jobs`` and return the result arrays."""
    from pathlib import Path

    from tb import cocotb_run
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    write_job_file(workdir / "job.npz", cfg, jobs)
    tag = "x".join(str(v) for v in (cfg.bundles, cfg.rows, cfg.cols, cfg.bundle_bits))
    b = build_unit(cfg, simulator, name=f"pim_{tag}", waves=waves)
    cocotb_run.run(b, "tb.pim", test_dir=workdir,
                   env={"MOE_JOB": str(workdir / "job.npz"), "MOE_RESULT": str(workdir / "res.npz"),
                        "MOE_SEED": str(seed)})
    with np.load(workdir / "res.npz", allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


# --------------------------------------------------------------------------- job generation (host side)

def _out_choice(rng):
    k = rng.integers(0, 3)
    if k == 0:
        return "int32"
    if k == 1:
        return "int8_sat"
    return ("requant", int(rng.integers(0, 1 << 16)), int(rng.integers(1, 32)))


def random_program(cfg: gp.PIMConfig, rng, n_instr: int = 12, bad: float = 0.15,
                   max_rows: int = 24, first_gemm_unloaded: bool = False) -> gp.Program:
    """A random instruction stream with a fraction ``bad`` of illegal instructions."""
    p = gp.Program(cfg)
    W = cfg.elems
    if first_gemm_unloaded:
        p.gemm(0, 1)       # no tokens loaded yet after reset -> ERR_TOKENS
    kw = None
    for _ in range(n_instr):
        if rng.random() < bad:
            kind = rng.integers(0, 7)
            if kind == 0:
                op = int(rng.integers(6, 16))
                p.raw((6 if op in gp.OP_NAMES else op)        # 6: illegal in every build
                      | (int(rng.integers(0, 1 << 40)) << gp.INSTR_LAYOUT["args"].offset))
            elif kind == 1:
                p.raw(gp.encode("GEMM", addr=cfg.words - 1, n=int(rng.integers(2, 50))))
            elif kind == 2:
                p.raw(gp.encode("LOAD_TOKENS", t=int(rng.choice([0, cfg.max_tokens + 1])), kw=1))
            elif kind == 3:
                p.raw(gp.encode("LOAD_TOKENS", t=1, kw=int(rng.choice([0, cfg.max_k_words + 1]))))
            elif kind == 4:
                p.raw(gp.encode("SET_OUT", **[dict(mode=3), dict(mode=2, shift=0, mult=5),
                                             dict(mode=0, mult=7), dict(mode=1, shift=3)]
                                [int(rng.integers(0, 4))]))
            elif kind == 5:
                addr, cnt = [(0, 0), (cfg.words - 2, 5), (cfg.words, 1)][int(rng.integers(0, 3))]
                p.raw(gp.encode("WRITE", addr=addr, count=cnt))
            else:
                p.raw(gp.encode("GEMM", addr=0, n=0))
            continue
        r = rng.random()
        if r < 0.15:
            cnt = int(rng.integers(1, min(160, cfg.words) + 1))
            addr = int(rng.integers(0, cfg.words - cnt + 1))
            p.write(addr, [int.from_bytes(rng.integers(0, 256, cfg.elems, dtype=np.uint8).tobytes(),
                                          "little") for _ in range(cnt)])
        elif r < 0.35 or kw is None:
            t = int(rng.integers(1, cfg.max_tokens + 1))
            k = int(rng.integers(1, cfg.max_k_words * W + 1))
            p.load_tokens(rng.integers(-128, 128, (t, k), dtype=np.int8))
            kw = -(-k // W)
        elif r < 0.5:
            p.set_out(_out_choice(rng))
        elif r < 0.56:
            p.nop()
        elif r < 0.62:
            p.fence()
        else:
            n = int(rng.integers(1, min(max_rows, cfg.words // kw) + 1))
            p.gemm(int(rng.integers(0, cfg.words - n * kw + 1)), n)
    return p


def trace_programs(cfg: gp.PIMConfig, trace, rng, steps: int = 2, rows: int | None = None,
                   hidden: int | None = None, step: int | None = None) -> list[gp.Program]:
    """Decode-stage MoE from a routing trace: every expert's (rows x hidden) weight
    slice resident in the banks (first program), then per decode-only step, for
    every expert with routed tokens: LOAD_TOKENS(its tokens' hidden states) and
    GEMM(its weights), token tiles of at most ``max_tokens``.

    The first ``steps`` decode-only steps with tokens, or only step ``step`` (which
    must be decode-only and have tokens). A trace that fits nothing raises
    ``golden.FormatError`` naming the field."""
    from golden.errors import FormatError
    E = trace.num_experts
    hidden = hidden or min(trace.hidden, cfg.max_k_words * cfg.elems)
    kw = -(-hidden // cfg.elems)
    rows = rows or min(trace.ffn, cfg.words // (E * kw))
    if rows < 1 or E * rows * kw > cfg.words:
        raise FormatError(f"trace: {E} experts x {max(rows, 1)} rows x {kw} words (hidden "
                          f"{hidden}) do not fit the Logic-PIM's {cfg.words} words")
    if step is not None:
        if not 0 <= step < trace.steps:
            raise FormatError(f"step: {step} out of range 0..{trace.steps - 1}")
        st = trace.step(step)
        if st.tokens == 0 or not st.is_decode_only:
            raise FormatError(f"step: step {step} has {st.tokens} tokens "
                              f"({int(st.is_prefill.sum())} prefill); the Logic-PIM runs "
                              f"decode-only steps with at least one token")
    progs = []
    p = gp.Program(cfg)
    base = []
    for e in range(E):
        base.append(e * rows * kw)
        p.write_matrix(base[-1], rng.integers(-128, 128, (rows, hidden), dtype=np.int8))
    progs.append(p)
    dec = ([trace.step(step)] if step is not None else
           [s for s in trace if s.is_decode_only and s.tokens > 0][:steps])
    for s in dec:
        p = gp.Program(cfg)
        x = rng.integers(-128, 128, (s.tokens, hidden), dtype=np.int8)
        p.set_out(_out_choice(rng))
        for e in range(E):
            sel = s.sel(e)
            for i in range(0, len(sel), cfg.max_tokens):
                p.load_tokens(x[sel[i:i + cfg.max_tokens]])
                p.gemm(base[e], rows)
        progs.append(p)
    return progs


def stream_program(cfg: gp.PIMConfig, words: int, tokens: int = 1, addr: int = 0) -> gp.Program:
    """One long GEMM that streams ``words`` weight words (bandwidth measurement)."""
    kw = min(cfg.max_k_words, words)
    n = max(1, words // kw)
    p = gp.Program(cfg)
    p.load_tokens(np.ones((tokens, kw * cfg.elems), np.int8))
    p.gemm(addr, n)
    return p


def stream_stats(cfg: gp.PIMConfig, cmds) -> dict:
    """Bundle-bandwidth figures of one streaming job from its DRAM command trace.

    ``fraction``: words x tBUS / span, the span running from the first ACT to
    one burst after the last RD (the raw fraction of the peak bundle rate over
    that window). ``attainable``: 1 - (REFs in the window) x tRFC / span, the
    share of the window not locked out by refresh. ``fraction_of_attainable`` =
    fraction / attainable (row activations, precharges and the refresh
    entry/exit are the remaining overhead).
    """
    cmds = np.asarray(cmds).reshape(-1, 5)
    rd = cmds[cmds[:, 1] == gp.CMD_RD]
    if not len(rd):
        return dict(words=0, span=0, fraction=0.0, refs=0, attainable=1.0, fraction_of_attainable=0.0)
    burst = max(cfg.timing.tCCD_L, cfg.timing.tBUS)
    first = cmds[(cmds[:, 1] == gp.CMD_ACT) | (cmds[:, 1] == gp.CMD_RD)][0, 0]
    last = rd[-1, 0] + burst
    span = int(last - first)
    refs = int(((cmds[:, 1] == gp.CMD_REF) & (cmds[:, 0] >= first) & (cmds[:, 0] < last)).sum())
    frac = len(rd) * burst / span
    att = 1 - refs * cfg.timing.tRFC / span
    return dict(words=int(len(rd)), span=span, fraction=frac, refs=refs, attainable=att,
                fraction_of_attainable=frac / att)


def write_job_file(path, cfg: gp.PIMConfig, jobs: list[dict]) -> None:
    """jobs: dicts with ``program`` (gp.Program), ``timed`` (bool), ``name`` and, for
    untimed jobs, ``stall``: a kind of ``tb.common.STALL_KINDS`` (default: the
    ``MOE_STALL_PROFILE`` environment variable, else uniform). ``starve`` starves each
    stream (instr, din, out) for 200-400 cycles about twice per job."""
    from tb.common import STALL_KINDS
    for i, j in enumerate(jobs):
        k = j.get("stall")
        if k is not None and k not in STALL_KINDS:
            raise ValueError(f"jobs[{i}].stall: unknown stall kind {k!r} "
                             f"(one of {', '.join(STALL_KINDS)})")
    meta = dict(config=gp.config_to_dict(cfg),
                jobs=[dict(name=j.get("name", f"job{i}"), timed=bool(j["timed"]),
                           stall=j.get("stall"))
                      for i, j in enumerate(jobs)])
    arrays = {"meta": np.array(json.dumps(meta))}
    for i, j in enumerate(jobs):
        p = j["program"]
        arrays[f"w{i}"] = np.array(p.words, np.uint64)
        arrays[f"d{i}"] = np.frombuffer(b"".join(int(x).to_bytes(cfg.elems, "little") for x in p.din),
                                        np.uint8).reshape(-1, cfg.elems) if p.din else \
            np.zeros((0, cfg.elems), np.uint8)
    np.savez(path, **arrays)


def read_job_file(path):
    with np.load(path, allow_pickle=False) as f:
        meta = json.loads(str(f["meta"]))
        cfg = gp.config_from_dict(meta["config"])
        jobs = []
        for i, j in enumerate(meta["jobs"]):
            d = f[f"d{i}"]
            din = [int.from_bytes(r.tobytes(), "little") for r in d]
            jobs.append(dict(j, words=[int(x) for x in f[f"w{i}"]], din=din))
    return cfg, jobs


# --------------------------------------------------------------------------- the cocotb test

try:
    import cocotb
except ImportError:        # imported by host-side code without cocotb
    cocotb = None


class _Watch:
    """Harness agent: feeds the timing checker, logs commands, spots the first accept."""

    def __init__(self, dut, h, checker, drivers=()):
        self.dut, self.h, self.chk = dut, h, checker
        self.log: list[tuple] = []
        self.first_accept = None
        self.phase = None
        self.watch_accept = False
        self.busy = 0
        self.drivers = dict(drivers)     # stream name -> StreamDriver
        self.reset_stalls()

    def reset_stalls(self):
        """Longest run, per stream, of cycles the bench held the unit up: a driver with
        data and valid low (instr, din), out valid with ready low (out)."""
        self.stall_run = {k: 0 for k in ("instr", "din", "out")}
        self.stall_max = dict(self.stall_run)

    def _stall(self, name, held):
        r = self.stall_run[name] = self.stall_run[name] + 1 if held else 0
        self.stall_max[name] = max(self.stall_max[name], r)

    def drive(self):
        pass

    def sample(self):
        d = self.dut
        now = self.h.cycle
        if int(d.cmd_valid.value):
            c = (now, int(d.cmd_kind.value), int(d.cmd_bundle.value), int(d.cmd_row.value),
                 int(d.cmd_col.value))
            self.chk.command(*c)
            self.log.append(c)
        if self.watch_accept and self.first_accept is None and int(d.instr__valid.value) \
                and int(d.instr__ready.value):
            self.first_accept = now
            self.phase = int(d.ref_phase.value)
        self.busy = int(d.busy.value)
        for name, drv in self.drivers.items():
            self._stall(name, bool(drv.queue) and not int(getattr(d, f"{name}__valid").value))
        self._stall("out", bool(int(d.out__valid.value)) and not int(d.out__ready.value))


def _starve_profiles(rng, calls: dict):
    """``starve`` profiles sized to a job: each stream starved for 200-400 cycles about
    twice in its expected number of go() calls (a driver asks once per beat and once
    per stalled cycle, a monitor once per cycle)."""
    from tb.common import StallProfile
    return {k: StallProfile.starve(max(2, n // 2), int(rng.integers(200, 400)))
            for k, n in calls.items()}


def _signed32(v):
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >> 31 else v


if cocotb is not None:
    @cocotb.test()
    async def pim_jobs(dut):
        from tb.common import Harness, Scoreboard, StreamDriver, StreamMonitor, seeded_rng, \
            stall_profiles

        cfg, jobs = read_job_file(os.environ["MOE_JOB"])
        rng = seeded_rng()
        T = cfg.timing
        quiet_from = T.tRFC + T.ref_slack + 8
        chk = TimingChecker(cfg)
        di = StreamDriver(dut, "instr", rng)
        dd = StreamDriver(dut, "din", rng)
        mo = StreamMonitor(dut, "out", rng)
        h = Harness(dut, [di, dd, mo])
        w = _Watch(dut, h, chk, drivers={"instr": di, "din": dd})
        h.agents.append(w)
        dut.clear.value = 0
        await h.start()
        sb = Scoreboard("pim")
        state = gp.UnitState.reset(cfg)
        res = {k: [] for k in ("cycles_rtl", "cycles_model", "first_accept", "phase", "timed",
                               "stall_instr", "stall_din", "stall_out")}
        kinds = []
        logs = {}
        for ji, job in enumerate(jobs):
            tag = f"job {ji} ({job['name']})"
            timed = job["timed"]
            loaded, kv = state.loaded, state.kv
            gold = gp.execute(cfg, job["words"], job["din"], state=state)
            # settle: idle, banks closed, and (timed) no refresh in progress or imminent
            idle = 0
            while idle < (100 if ji else 0) or (timed and chk.counts["REF"] and
                                                 int(dut.ref_phase.value) < quiet_from) \
                    or (timed and int(dut.ref_phase.value) > T.tREFI - 4):
                await h.step()
                idle = idle + 1 if not w.busy else 0
            dut.clear.value = 1
            await h.step()
            dut.clear.value = 0
            if timed:
                di.p_valid = dd.p_valid = mo.p_ready = 1.0
                kinds.append("none")
            else:
                kind = job.get("stall")
                if kind == "starve" and os.environ.get("MOE_NO_STALLS") != "1":
                    prof = _starve_profiles(rng, dict(
                        instr=len(job["words"]), din=max(1, len(job["din"])),
                        out=gp.predict_cycles(cfg, job["words"], loaded=loaded, kv=kv)))
                else:
                    prof = stall_profiles(rng, ("instr", "din", "out"), kind=kind)
                di.p_valid, dd.p_valid, mo.p_ready = prof["instr"], prof["din"], prof["out"]
                kinds.append(" ".join(f"{k}={v!r}" for k, v in prof.items()))
            mo.received.clear()
            w.reset_stalls()
            w.first_accept, w.phase, w.watch_accept = None, None, True
            log_from = len(w.log)
            di.push(job["words"])
            dd.push(job["din"])
            n_out = len(gold.values)
            bound = 40 * gp.predict_cycles(cfg, job["words"], loaded=loaded, kv=kv) + 20_000
            start, stable = h.cycle, 0
            while stable < 3:      # busy is low for a cycle while the queue takes a word
                await h.step()
                done = di.idle and dd.idle and not w.busy and len(mo.received) >= n_out
                stable = stable + 1 if done else 0
                if h.cycle - start > bound:
                    raise AssertionError(f"timeout: {tag} not finished after {bound} cycles "
                                         f"({len(mo.received)}/{n_out} outputs, "
                                         f"err {int(dut.err.value):#x})")
            w.watch_accept = False
            got = [_signed32(v) for v in mo.received]
            lasts = [bool((v >> 32) & 1) for v in mo.received]
            sb.compare(f"{tag} values", np.array(got, np.int64), gold.values)
            sb.compare(f"{tag} last", np.array(lasts, bool), gold.last)
            sb.check(f"{tag} err", int(dut.err.value) == gold.err,
                     f"err bits rtl {int(dut.err.value):#x} != golden {gold.err:#x}")
            sb.check(f"{tag} dram_fault", int(dut.dram_fault.value) == 0, "pseudo-channel fault")
            cyc = int(dut.perf_cycles.value)
            fa = w.first_accept if w.first_accept is not None else 0
            cmds = [(c[0] - fa,) + c[1:] for c in w.log[log_from:]]
            model = -1
            if timed:
                tm = gp.predict(cfg, job["words"], ref_phase=w.phase, loaded=loaded, kv=kv)
                model = tm.cycles
                sb.check(f"{tag} cycles", cyc == model, f"busy cycles rtl {cyc} != model {model}")
                mine = [c for c in cmds if c[0] <= cyc]
                k = next((i for i, (a, b) in enumerate(zip(mine, tm.commands)) if a != b),
                         min(len(mine), len(tm.commands)))
                sb.check(f"{tag} command trace", mine == tm.commands,
                         f"{len(mine)} rtl vs {len(tm.commands)} model commands, first "
                         f"difference at #{k}: rtl {mine[k:k + 2]} model {tm.commands[k:k + 2]}")
            res["cycles_rtl"].append(cyc)
            res["cycles_model"].append(model)
            res["first_accept"].append(fa)
            res["phase"].append(w.phase if w.phase is not None else -1)
            res["timed"].append(timed)
            for k, v in w.stall_max.items():
                res[f"stall_{k}"].append(v)
            logs[f"cmds{ji}"] = np.array(cmds, np.int64).reshape(-1, 5)
        for _ in range(50):
            await h.step()
        chk.finish(h.cycle)
        sb.check("timing", not chk.violations,
                 f"{len(chk.violations)} timing violations: {chk.violations[:5]}")
        sb.check("dram_fault", int(dut.dram_fault.value) == 0, "pseudo-channel fault at end")
        out = os.environ.get("MOE_RESULT")
        if out:
            np.savez(out, violations=np.array(len(chk.violations)),
                     counts=np.array(json.dumps(chk.counts)), stalls=np.array(json.dumps(kinds)),
                     **{k: np.array(v, np.int64) for k, v in res.items()}, **logs)
        sb.assert_clean()
