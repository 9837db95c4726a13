"""Decode attention on the Logic-PIM's RTL (``hdl.pim`` with attention, bench ``tb/pim.py``).

``python -m sim run --engine attn``: one decode step's attention of a trace step on the
``small`` build. The requests are the step's first decode requests (at most
``MAX_REQUESTS``, fewer when their KV cache would not fit the bank slice), their
contexts derived from the trace (``golden.attn_sched.step_requests``); the preset's
group size ``G`` (``golden.attn_sched.ATTN_SHAPES``) with ``KV_HEADS`` KV heads of
head dim ``HEAD_DIM`` (what the small build's 2048-word slice holds for a few
requests). Two jobs, both timed:

* ``kv preload``: WRITE of every request's K and V rows of its earlier positions
  (``0 .. L - 2``) at the ``golden.pim.kv.KVLayout`` addresses;
* ``decode step``: SET_KV, SET_OUT requant (1, 15), APPEND_KV of each request's new
  position ``L - 1`` per KV head, then LOAD_TOKENS + ATTN per (request, KV head)
  group back to back, FENCE.

Checks: every output value of the RTL against ``golden.pim.execute`` (the bench's
scoreboard), and that against ``golden.attention.decode_attention`` (host side, every
element); the RTL's busy cycles and DRAM command trace against ``golden.pim.predict``;
the DRAM timing checker; the K/V bytes the RTL read against the model's.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from golden.errors import FormatError

from .base import NOTHING, Plan, Runner, RunResult, find_wave, load_trace, pick_step, trace_info

MAX_REQUESTS = 3
KV_HEADS = 2
HEAD_DIM = 16
SCORE_SCALE = 0.002          # real value of one score unit (golden.softmax.scale_config)
OUT = ("requant", 1, 15)     # round(sum p v / 2**15)


def _decode_requests(cfg, trace, step: int, kv_heads: int, head_dim: int):
    from golden import attn_sched as asch
    from golden.pim.kv import max_capacity
    dec = [q for q in asch.step_requests(trace)[step] if not q.prefill]
    if not dec:
        raise FormatError(f"step: {step} has no decode request ({NOTHING})")
    for n in range(min(MAX_REQUESTS, len(dec)), 0, -1):
        cap = max_capacity(cfg, head_dim, n * kv_heads)
        if max(q.context for q in dec[:n]) <= cap:
            return dec[:n], cap
    raise FormatError(f"capacity: request {dec[0].request} has context {dec[0].context}, "
                      f"longer than the cache's "
                      f"{max_capacity(cfg, head_dim, kv_heads)} positions")


def programs(cfg, trace, step: int, seed: int, kv_heads: int = KV_HEADS,
             head_dim: int = HEAD_DIM) -> dict:
    """The two jobs' programs, their data and the golden attention of the step."""
    from golden import attn_sched as asch, pim as gp
    from golden.pim.kv import KVLayout
    from golden.softmax import scale_config
    G = asch.preset_shape(trace.preset).group
    if G > cfg.attn_heads:
        raise FormatError(f"group: {trace.preset} has {G} query heads per KV head, the "
                          f"build holds 1..{cfg.attn_heads} (attn_heads)")
    reqs, cap = _decode_requests(cfg, trace, step, kv_heads, head_dim)
    B, L = len(reqs), max(q.context for q in reqs)
    lens = np.array([q.context for q in reqs])
    rng = np.random.default_rng(seed)
    shape = (B, kv_heads, L, head_dim)
    k = rng.integers(-128, 128, shape, dtype=np.int8)
    v = rng.integers(-128, 128, shape, dtype=np.int8)
    q = rng.integers(-128, 128, (B, kv_heads * G, head_dim), dtype=np.int8)
    sm = scale_config(SCORE_SCALE)
    lay = KVLayout(cfg, head_dim, kv_heads, B, cap)
    pre = gp.Program(cfg)
    for r in range(B):
        for h in range(kv_heads):
            if lens[r] > 1:
                pre.write(lay.k_addr(r, h), gp.pack_rows(cfg, k[r, h, :lens[r] - 1]))
                pre.write(lay.v_addr(r, h), gp.pack_rows(cfg, v[r, h, :lens[r] - 1]))
    pre.fence()
    dec = gp.Program(cfg).set_kv(lay).set_out(OUT)
    for r in range(B):
        for h in range(kv_heads):
            n = lens[r] - 1
            dec.append_kv(lay, r, h, int(n), k[r, h, n], v[r, h, n])
    for r in range(B):
        for h in range(kv_heads):
            dec.attention(lay, r, h, q[r, h * G:(h + 1) * G], int(lens[r]), *sm)
    dec.fence()
    return dict(reqs=reqs, group=G, kv_heads=kv_heads, head_dim=head_dim, capacity=cap,
                layout=lay, pre=pre, dec=dec, q=q, k=k, v=v, lens=lens, sm=sm)


def golden_check(cfg, d: dict) -> tuple[int, str | None]:
    """(values compared, failure): golden.pim.execute of both jobs against
    golden.attention.decode_attention, every element."""
    from golden import pim as gp
    from golden.attention import decode_attention
    from golden.numerics import apply_out, parse_out
    st = gp.UnitState.reset(cfg)
    gp.execute(cfg, d["pre"].words, d["pre"].din, state=st)
    r = gp.execute(cfg, d["dec"].words, d["dec"].din, state=st)
    B, H, G, D = len(d["reqs"]), d["kv_heads"], d["group"], d["head_dim"]
    kw = d["layout"].kw
    ref = decode_attention(d["q"], d["k"], d["v"], d["lens"], *d["sm"], 1, 15, steps=True)
    want = apply_out(ref["acc"], parse_out(OUT))
    if r.err or len(r.values) != B * H * G * kw * cfg.elems:
        return 0, f"golden.pim.execute: err {r.err:#x}, {len(r.values)} values"
    got = np.asarray(r.values).reshape(B, H, G, kw * cfg.elems)
    if (got[..., D:] != 0).any() or not np.array_equal(got[..., :D].reshape(B, H * G, D), want):
        return 0, "golden.pim.execute differs from golden.attention.decode_attention"
    return int(want.size), None


def step_figures(cfg, d: dict, phase: int, cmds) -> dict:
    """Per-request attention cycles (cycle model), KV bytes and bandwidth of the decode
    job; ``cmds`` the RTL's DRAM command trace of that job."""
    from golden import pim as gp
    from golden.hbm3 import TCK_PS
    tm = gp.predict(cfg, d["dec"].words, ref_phase=phase, kv=None)
    H = d["kv_heads"]
    rows = []
    for i, q in enumerate(d["reqs"]):
        sp = tm.attn_spans[i * H:(i + 1) * H]
        rows.append(dict(request=q.request, context=q.context, groups=H,
                         start=int(sp[0]["start"]), end=int(sp[-1]["out_last"]),
                         cycles=int(sp[-1]["out_last"] - sp[0]["start"] + 1),
                         kv_bytes=int(sum(s["words"] for s in sp) * cfg.elems)))
    cmds = np.asarray(cmds).reshape(-1, 5)
    rtl_bytes = int((cmds[:, 1] == gp.CMD_RD).sum()) * cfg.elems
    model_bytes = sum(r["kv_bytes"] for r in rows)
    first = tm.attn_spans[0]["start"]
    window = int(tm.cycles - first + 1)
    bpc = rtl_bytes / window
    return dict(requests=rows, ref_phase=phase, model_cycles=int(tm.cycles), kv_bytes=rtl_bytes,
                kv_bytes_model=int(model_bytes), attn_window=window,
                bytes_per_cycle=round(bpc, 3), gbytes_per_s=round(bpc / (TCK_PS / 1000), 2),
                fraction_of_peak=round(bpc / cfg.peak_bytes_per_cycle, 4))


class AttnRunner(Runner):
    engine = "attn"
    title = "Logic-PIM attention"

    def build(self, config="small", simulator="verilator", waves=False):
        from hdl.pim import CONFIGS
        from tb import pim as tbp
        return tbp.build_unit(CONFIGS[config], simulator, waves=waves)

    def simulate(self, config, jobs, workdir, *, simulator="verilator", seed=1, stalls=False,
                 waves=False, progress=None, stall_profile=None) -> dict:
        """Jobs as the pim runner's (``dict(name, timed, program)``)."""
        from hdl.pim import CONFIGS
        from tb import pim as tbp
        return tbp.run_jobs(CONFIGS[config], jobs, workdir, simulator, seed=seed, waves=waves)

    def plan(self, args) -> Plan:
        from hdl.pim import CONFIGS
        cfg = CONFIGS["small"]
        trace = load_trace(args, lambda h, e: True, "")
        step = pick_step(trace, args.step)
        d = programs(cfg, trace, step, args.seed)
        timed = not args.stalls
        jobs = [dict(name="kv preload", timed=timed, program=d["pre"]),
                dict(name="decode step", timed=timed, program=d["dec"])]
        return Plan(f"attn-{trace.preset}-step{step}",
                    dict(args=args, cfg=cfg, trace=trace, step=step, d=d, jobs=jobs))

    def execute(self, plan, run_dir) -> RunResult:
        from tb.cocotb_run import SimulationError
        p = plan.data
        args, cfg, d, jobs = p["args"], p["cfg"], p["d"], p["jobs"]
        timed = not args.stalls
        (run_dir / "sim").mkdir()
        print(f"moe-rtl sim: Logic-PIM attention, {p['trace'].preset} step {p['step']}: "
              f"{len(d['reqs'])} decode requests x {d['kv_heads']} KV heads, G = "
              f"{d['group']}, head dim {d['head_dim']}, contexts {d['lens'].tolist()}, "
              f"{args.simulator}{' + waves' if args.waves else ''}"
              f"{' + random stalls' if args.stalls else ''} (first run compiles the RTL)")
        t0 = time.time()
        checked, failure = golden_check(cfg, d)
        verdict, res = failure is None, {}
        if verdict:
            try:
                res = self.simulate("small", jobs, run_dir / "sim", simulator=args.simulator,
                                    seed=args.seed, waves=args.waves)
            except SimulationError as exc:
                verdict, failure = False, str(exc)
        rows = [dict(job=j["name"], instructions=len(j["program"].words),
                     cycles=int(res["cycles_rtl"][i]),
                     model_cycles=int(res["cycles_model"][i]) if timed else None)
                for i, j in enumerate(jobs)] if res else []
        fig, cycles_ok = {}, True
        if res:
            fig = step_figures(cfg, d, int(res["phase"][1]), res["cmds1"])
            cycles_ok = fig["kv_bytes"] == fig["kv_bytes_model"] and (
                not timed or fig["model_cycles"] == rows[1]["model_cycles"] == rows[1]["cycles"])
        notes = [f"DRAM timing violations: {int(res['violations'])}" if res else "no result",
                 f"every output value ({checked}) of the RTL is compared with golden.pim "
                 "(tb/pim.py's scoreboard), and golden.pim's with "
                 "golden.attention.decode_attention (host side)",
                 "per-request cycles: the cycle model's span from the request's first ATTN "
                 "to its last output (the RTL equals the model in busy cycles and DRAM "
                 "commands" + ("" if timed else "; random stalls: cycles not compared") + ")",
                 "bandwidth: K/V bytes the RTL read / the attention window (first ATTN to "
                 "the job's end); peak = elems / tCCD_L bytes a cycle"
                 + ("" if timed else "; the window is the no-stall model's")]
        info = dict(engine="attn", config="small", simulator=args.simulator, seed=args.seed,
                    stalls=args.stalls, step=p["step"], group=d["group"],
                    kv_heads=d["kv_heads"], head_dim=d["head_dim"], capacity=d["capacity"],
                    checked_values=checked if verdict else 0,
                    wall_seconds=round(time.time() - t0, 1))
        report = dict(config=info, trace=trace_info(p["trace"], p["step"]), jobs=rows,
                      attention={k: v for k, v in fig.items() if k != "requests"},
                      requests=fig.get("requests", []), notes=notes)
        return RunResult(bit_exact=verdict, failure=failure, checked=checked,
                         cycles=sum(r["cycles"] for r in rows),
                         model_cycles=sum(r["model_cycles"] for r in rows)
                         if timed and rows else None,
                         cycles_ok=cycles_ok, report=report,
                         extra=dict(wave=find_wave(run_dir / "sim")))

    def write_report(self, run_dir: Path, result: RunResult) -> dict:
        from hdl.pim import MODULE_NAME

        from .. import report
        rep = dict(result.report, bit_exact=result.bit_exact, cycles_ok=result.cycles_ok,
                   failure=result.failure)
        files = {}
        dest = report.place_wave(result.extra["wave"], run_dir, "attn") \
            if result.bit_exact else None
        if dest is not None:
            files["waveform"] = dest
            files.update(report.gtkw_generic(dest, report.wave_signals(dest), MODULE_NAME,
                                             run_dir / "attn.gtkw"))

        def markdown(r):
            md = ["# moe-rtl sim report: attn (decode attention on the Logic-PIM)", "",
                  f"**Bit-exact:** {'yes' if r['bit_exact'] else 'NO'}  ",
                  f"**Cycles equal the model:** {'yes' if r['cycles_ok'] else 'NO'}", ""]
            if r["failure"]:
                md += ["```", r["failure"][:4000], "```", ""]
            md += ["## Configuration", ""] + [f"- {k}: {v}" for k, v in r["config"].items()]
            md += ["", "## Trace", ""] + [f"- {k}: {v}" for k, v in r["trace"].items()]
            md += ["", "## Jobs", "", "| job | instructions | cycles | model_cycles |",
                   "|---|---:|---:|---:|"]
            md += [f"| {j['job']} | {j['instructions']} | {j['cycles']} | {j['model_cycles']} |"
                   for j in r["jobs"]]
            md += ["", "## Requests (decode step)", "",
                   "| request | context | KV heads | start | end | cycles | KV bytes |",
                   "|---:|---:|---:|---:|---:|---:|---:|"]
            md += [f"| {q['request']} | {q['context']} | {q['groups']} | {q['start']} | "
                   f"{q['end']} | {q['cycles']} | {q['kv_bytes']} |" for q in r["requests"]]
            md += ["", "## Attention", ""] + [f"- {k}: {v}" for k, v in r["attention"].items()]
            md += [""] + [f"- {n}" for n in r["notes"]]
            md += ["", "## Files", ""] + [f"- {k}: `{v}`" for k, v in r["files"].items()]
            return "\n".join(md) + "\n"
        return report.write_files(run_dir, rep, files, markdown)

    def summary(self, result, files) -> None:
        from .base import print_files
        r = result.report
        a = r["attention"]
        print()
        for q in r["requests"]:
            print(f"  request {q['request']:>4}  context {q['context']:>4}  "
                  f"{q['cycles']:>6} cycles  {q['kv_bytes']:>6} KV bytes")
        if a:
            print(f"  KV bytes      {a['kv_bytes']} (model {a['kv_bytes_model']})")
            print(f"  bandwidth     {a['bytes_per_cycle']} B/cycle = {a['gbytes_per_s']} GB/s, "
                  f"{a['fraction_of_peak']:.1%} of peak")
        if result.model_cycles is None:
            print(f"  cycles        {result.cycles} under random stalls (not compared; the "
                  "per-request figures are the no-stall model's)")
        else:
            print(f"  cycles        {result.cycles} (model {result.model_cycles}): "
                  + ("equal" if result.cycles_ok else "DIFFER"))
        print(f"  bit-exact     " + (f"yes: all {result.checked} output values equal the golden "
                                     "model" if result.bit_exact else "NO"))
        if result.failure:
            print("  failure       " + result.failure.splitlines()[0])
        print_files(files, 10)


RUNNER = AttnRunner()
