"""Benchmark of decode attention on the Logic-PIM (ATTN): cycles vs context length and
group size, the bundles' bandwidth fraction, Op/B.

Rows (``build/bench/attn.json``, ``kind`` = ``decode_attn``), ``G`` query heads per
group over ``L`` positions, head dim 128, at the default config (512-bit
bundles, HBM3 timing; ``attn_len`` 2048 bounds ``L``), from the cycle model
``golden.pim.predict`` (tests/test_pim_attn_*.py prove the RTL equal to it, cycle for
cycle and DRAM command for command, at the small config), refresh timer at 0 when
the instruction is accepted:

``cycles_alone`` one ATTN on its own, its fetch to the next fetch (score pass,
                softmax, value pass, output; ``score_pass`` .. ``output`` its phases);
``cycles``      ``GROUPS`` query groups back to back (LOAD_TOKENS + ATTN each, one slot
                each, then FENCE): the first LOAD_TOKENS's fetch to idle; each ATTN's
                softmax and score pass overlap the previous one's value pass;
``kv_bytes``    the K and V rows streamed, ``2 L kw elems`` bytes per group (the head
                dim padded to whole 64-byte words);
``bw_fraction`` ``kv_bytes / (cycles x peak)``, peak = ``elems / tCCD_L`` bytes a cycle
                (one bundle burst per tCCD_L): the bundles' share of the run;
``fraction_of_attainable`` the same over the time not locked out by refresh
                (``1 - REFs x tRFC / cycles``), as the pim bench's stream rows;
``mac_per_byte`` MACs per KV byte = G (each K or V byte serves G query heads);
``op_per_byte`` ``golden.duplex.op_per_byte("attention_decode")``, 2 ops a MAC, the
                query and output vectors counted too (Duplex's "Op/B = group size" is
                for an FP16 cache: half of this with 2-byte K/V).

Target: bandwidth >= 90 % of the bundles at contexts >= 1k.

Co-processing rows (``kind`` = ``coprocess``, :func:`coprocess_rows`): per kit preset
with grouped-query attention, a trace of ``golden.trace.generate(preset, steps=STEPS)``
(the kit's batching: 8 decode requests, Poisson(1) prompts of 16-32 tokens; contexts
derived by ``golden.attn_sched.step_requests``), the preset's attention shape
(``golden.attn_sched.ATTN_SHAPES``, full size), one layer per step, summed over the
steps; ``golden.attn_sched`` defines the costs: ``pim`` every request on the
Logic-PIM, ``sptc`` every request on the SpTC side, ``duplex`` decode on the
Logic-PIM and prefill on the SpTC concurrently (step = the longer unit), ``split``
the best split of each step's requests (``golden.attn_sched.step_time``);
``gain_vs_*`` = that unit alone / ``duplex``, ``split_vs_*`` the same over ``split``.
The machine: the default Logic-PIM with ``rows`` = ``KV_ROWS`` (the modelled slice
enlarged to hold the KV cache,
``capacity`` = ``attn_len`` positions per slot; the timing is per config, proven
equal to the RTL at the small config), the default SpTC reading K/V at a quarter of
the Logic-PIM's peak bytes per cycle (Duplex: its TSVs give the Logic-PIM about 4x
the xPU's bandwidth; as the moe bench), one clock.
"""
from __future__ import annotations

import json

import numpy as np

import dataclasses

from golden import attn_sched as asch, duplex, pim as gp, sptc as gs, trace as traces
from golden.errors import FormatError
from golden.pim.kv import KVLayout

from . import BENCH_DIR

OUT = BENCH_DIR / "attn.json"
HEAD_DIM = 128
GROUPS = 4
TARGET = 0.90
STEPS = 16
KV_ROWS = 16384
#: Duplex's co-processing figure and why it is not the quantity measured here.
DUPLEX_COPROC = ("Duplex: expert + attention co-processing add about 1.04x end-to-end "
                 "throughput over Duplex without them (whole model, H100-class xPU); "
                 "that is not this attention-layer gain against each unit alone: no "
                 "comparable figure")


def _program(cfg, G: int, L: int, groups: int):
    """SET_KV, then ``groups`` query groups back to back (LOAD_TOKENS + ATTN each, one
    slot each), then FENCE (which runs the last ATTN's tail)."""
    lay = KVLayout(cfg, HEAD_DIM, 1, groups, cfg.attn_len)
    p = gp.Program(cfg).set_kv(lay)
    for r in range(groups):
        p.attention(lay, r, 0, np.zeros((G, HEAD_DIM), np.int8), L, 1000, 16)
    return p.fence(), lay


def _row(cfg: gp.PIMConfig, G: int, L: int) -> dict:
    T = cfg.timing
    burst = max(T.tCCD_L, T.tBUS)
    p, lay = _program(cfg, G, L, 1)
    tm = gp.predict(cfg, p.words, ref_phase=0)
    alone = tm.instr_start[-1] - tm.instr_start[2]             # ATTN fetch -> FENCE fetch
    sp = tm.attn_spans[0]
    p, lay = _program(cfg, G, L, GROUPS)
    tm = gp.predict(cfg, p.words, ref_phase=0)
    window = tm.cycles + 1 - tm.instr_start[1]                 # first LOAD_TOKENS -> idle
    words = GROUPS * 2 * L * lay.kw
    kv_bytes = words * cfg.elems
    refs = sum(1 for c in tm.commands if c[1] == gp.CMD_REF and c[0] >= tm.instr_start[1])
    frac = kv_bytes / (window * cfg.peak_bytes_per_cycle)
    attain = 1 - refs * T.tRFC / window
    return dict(kind="decode_attn", config="default", group=G, context=L, head_dim=HEAD_DIM,
                groups=GROUPS, cycles_alone=int(alone), cycles=int(window),
                cycles_per_group=round(window / GROUPS, 1), kv_bytes=int(kv_bytes),
                bw_fraction=round(frac, 4), refs=refs,
                fraction_of_attainable=round(frac / attain, 4),
                score_pass=int(sp["k_last_issue"] - sp["start"]),
                softmax=int(sp["softmax_done"] - sp["softmax_first"]),
                value_pass=int(sp["v_last_issue"] - sp["v_first_cmd"]),
                output=int(sp["out_last"] - sp["v_last_issue"]),
                mac_per_byte=G,
                op_per_byte=round(duplex.op_per_byte("attention_decode", group=G, seq_len=L,
                                                     head_dim=HEAD_DIM), 3),
                bound="bandwidth" if G <= T.tCCD_L else "compute")


def rows(quick: bool = False) -> list[dict]:
    cfg = gp.CONFIG_DEFAULT
    groups = [1, 4, 8] if quick else [1, 2, 4, 8]
    lengths = [128, 1024] if quick else [128, 256, 512, 1024, 2048]
    return [_row(cfg, G, L) for G in groups for L in lengths if L <= cfg.attn_len]


def machine() -> asch.Machine:
    pc = dataclasses.replace(gp.CONFIG_DEFAULT, rows=KV_ROWS)
    return asch.Machine(pc, gs.SpTCConfig(), pc.peak_bytes_per_cycle / 4, capacity=pc.attn_len)


def coprocess_rows(quick: bool = False) -> list[dict]:
    m = machine()
    presets = ["mixtral-8x7b", "qwen3-30b-a3b"] if quick else list(asch.ATTN_SHAPES)
    steps = 4 if quick else STEPS
    out = []
    for name in presets:
        try:
            shape = asch.preset_shape(name)
        except FormatError as exc:
            out.append(dict(kind="coprocess", preset=name, skipped=str(exc)))
            continue
        tr = traces.generate(name, steps=steps)
        reqs = asch.step_requests(tr)
        g = asch.gains(m, shape, reqs)
        c = g["cycles"]
        out.append(dict(kind="coprocess", preset=name, q_heads=shape.q_heads,
                        kv_heads=shape.kv_heads, head_dim=shape.head_dim, group=shape.group,
                        steps=steps, decode_only_steps=sum(not any(q.prefill for q in r)
                                                           for r in reqs),
                        max_context=max(q.context for r in reqs for q in r),
                        cycles_pim=int(c["pim"]), cycles_sptc=int(round(c["sptc"])),
                        cycles_duplex=int(round(c["duplex"])),
                        cycles_split=int(round(c["split"])),
                        duplex_pim_busy=int(sum(s["duplex"].pim for s in g["steps"])),
                        duplex_sptc_busy=int(round(sum(s["duplex"].sptc for s in g["steps"]))),
                        gain_vs_sptc=round(g["gain_vs_sptc"], 3),
                        gain_vs_pim=round(g["gain_vs_pim"], 3),
                        split_vs_sptc=round(g["split_vs_sptc"], 3),
                        split_vs_pim=round(g["split_vs_pim"], 3)))
    return out


def _print_coprocess(rs):
    print(f"\nAttention co-processing: one layer per step, summed over the trace's steps "
          f"(golden.attn_sched; Logic-PIM cycles = RTL-exact model, SpTC = its cycle model)")
    print(f"{'preset':<17} {'Hq':>3} {'Hkv':>3} {'G':>2} {'steps':>5} {'dec-only':>8} "
          f"{'max L':>5} {'all PIM':>9} {'all SpTC':>9} {'co-proc':>9} {'PIM busy':>9} "
          f"{'SpTC busy':>9} {'vs SpTC':>7} {'vs PIM':>6} {'split':>9} {'vs SpTC':>7} "
          f"{'vs PIM':>6}")
    for r in rs:
        if "skipped" in r:
            print(f"{r['preset']:<17} skipped: {r['skipped']}")
            continue
        print(f"{r['preset']:<17} {r['q_heads']:>3} {r['kv_heads']:>3} {r['group']:>2} "
              f"{r['steps']:>5} {r['decode_only_steps']:>8} {r['max_context']:>5} "
              f"{r['cycles_pim']:>9} {r['cycles_sptc']:>9} {r['cycles_duplex']:>9} "
              f"{r['duplex_pim_busy']:>9} {r['duplex_sptc_busy']:>9} "
              f"{r['gain_vs_sptc']:>6.2f}x {r['gain_vs_pim']:>5.2f}x {r['cycles_split']:>9} "
              f"{r['split_vs_sptc']:>6.2f}x {r['split_vs_pim']:>5.2f}x")
    print("  all PIM / all SpTC: every request's attention on that unit; co-proc: decode on "
          "the Logic-PIM, prefill on the SpTC, concurrently, step = the longer unit "
          "(PIM/SpTC busy: each unit's share); vs X = all-X cycles / co-proc cycles; "
          "split: each step's best split of its requests (Duplex's rule: all on the SpTC, "
          "move the fewest-token requests to the Logic-PIM one at a time), its gains "
          "beside it; docs/attention.md")
    print(f"  {DUPLEX_COPROC}")


def _print(rs):
    print(f"Decode attention on the Logic-PIM: {GROUPS} query groups back to back (one "
          f"ATTN each, head dim {HEAD_DIM}), default config; cycle model = RTL")
    print(f"{'G':>2} {'L':>5} {'alone':>6} {'score':>6} {'softmax':>7} {'value':>6} {'out':>5} "
          f"{'per group':>9} {'REFs':>4} {'of peak':>8} {'of attain.':>10} {'MAC/B':>5} "
          f"{'Op/B':>5} {'bound':>9}")
    for r in rs:
        print(f"{r['group']:>2} {r['context']:>5} {r['cycles_alone']:>6} {r['score_pass']:>6} "
              f"{r['softmax']:>7} {r['value_pass']:>6} {r['output']:>5} "
              f"{r['cycles_per_group']:>9} {r['refs']:>4} {r['bw_fraction']:>8.1%} "
              f"{r['fraction_of_attainable']:>10.1%} {r['mac_per_byte']:>5} "
              f"{r['op_per_byte']:>5.2f} {r['bound']:>9}")
    for bound in ("bandwidth", "compute"):
        long = [r for r in rs if r["context"] >= 1024 and r["bound"] == bound]
        if long:
            lo = min(r["bw_fraction"] for r in long)
            la = min(r["fraction_of_attainable"] for r in long)
            print(f"  contexts >= 1k, {bound} bound (G {'<=' if bound == 'bandwidth' else '>'} "
                  f"tCCD_L): >= {lo:.1%} of peak, >= {la:.1%} of attainable (target "
                  f"{TARGET:.0%} of the bundles)")
    print("  alone: one ATTN, fetch to the next instruction's fetch; score/softmax/value/out: "
          "its phases; per group: the back-to-back run / groups; 'of peak' = KV bytes / "
          "(cycles x elems / tCCD_L); 'of attain.' excludes the refresh lock-out (REFs x "
          "tRFC); MAC/B = G (Duplex: Op/B = group size with an FP16 cache); "
          "docs/attention.md")


def main(quick: bool = False) -> list[dict]:
    rs = rows(quick)
    co = coprocess_rows(quick)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(rs + co, indent=1))
    _print(rs)
    _print_coprocess(co)
    rs = rs + co
    print(f"\nwritten {OUT}")
    return rs


if __name__ == "__main__":
    import sys
    main(quick="--quick" in sys.argv)
