"""``python -m sim.traces``: make, import and inspect MoE routing traces.

``gen`` writes a generated trace (:func:`golden.trace.generate`), ``import``
converts routing recorded from a model run (:mod:`sim.recorded`), ``show`` prints a
trace's header and load tables. The trace model, generator and file format are
:mod:`golden.trace`; ``--help`` on each command gives its options.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from golden.errors import FormatError
from golden.trace import PRESETS, SKEWS, Trace, generate, load, save


def _show(trace: Trace, name: str, limit: int | None) -> str:
    if trace.preset in PRESETS:
        p = PRESETS[trace.preset]
        model, full = p.name, (p.hidden, p.ffn)
    else:                        # recorded: provenance and full sizes are in gen
        src, m = trace.gen["source"], trace.gen["model"]
        layer = "" if src.get("layer") is None else f", layer {src['layer']}"
        model = f"recorded from {src['file']}{layer}, sha256 {src['sha256'][:16]}..."
        full = (m["hidden"], m["ffn"])
    imb = trace.imbalances()
    npre = int(trace.is_prefill.sum())
    dec_only = sum(s.is_decode_only for s in trace)
    gen = " ".join(f"{k}={v}" for k, v in trace.gen.items())
    lines = [f"trace {name}",
             f"  schema_version  {trace.schema_version}",
             f"  preset          {trace.preset} ({model})",
             f"  scale           {trace.scale} (hidden {trace.hidden}, ffn {trace.ffn}; "
             f"full {full[0]}, {full[1]})",
             f"  experts         {trace.num_experts} routed + {trace.num_shared} shared, "
             f"top-{trace.top_k}" + (f", expert_scale {trace.expert_scale}"
                                     if trace.expert_scale != 1 else ""),
             f"  skew            {trace.skew} (param {trace.skew_param:.4g})",
             f"  seed            {trace.seed}",
             f"  steps           {trace.steps} ({dec_only} decode-only)",
             f"  tokens          {trace.tokens} ({npre} prefill, {trace.tokens - npre} decode)",
             f"  gen             {gen}", ""]
    load_ = trace.tokens_per_expert()
    total = max(int(load_.sum()), 1)
    peak = max(int(load_.max(initial=0)), 1)
    lines.append("per-expert load (tokens summed over steps)")
    lines.append(f"  {'expert':>6}  {'tokens':>8}  {'share':>6}")
    for e in range(trace.num_experts)[:limit]:
        bar = "#" * round(30 * load_[e] / peak)
        lines.append(f"  {e:>6}  {load_[e]:>8}  {100 * load_[e] / total:>5.1f}%  {bar}")
    if limit is not None and trace.num_experts > limit:
        lines.append(f"  ... {trace.num_experts - limit} more experts")
    lines += ["", "per-step load",
              f"  {'step':>6}  {'tokens':>6}  {'prefill':>7}  {'max':>5}  {'imbalance':>9}"]
    for s in list(trace)[:limit]:
        lines.append(f"  {s.index:>6}  {s.tokens:>6}  {int(s.is_prefill.sum()):>7}  "
                     f"{int(s.tokens_per_expert().max(initial=0)):>5}  {imb[s.index]:>9.3f}")
    if limit is not None and trace.steps > limit:
        lines.append(f"  ... {trace.steps - limit} more steps")
    lines.append("")
    lines.append(f"mean imbalance {imb.mean():.3f} (min {imb.min():.3f}, max {imb.max():.3f}; "
                 f"limit E/k-1 = {trace.num_experts / trace.top_k - 1:g})")
    return "\n".join(lines)


_EPILOG = """\
skew models: uniform (every expert equally likely); zipf (expert of rank r has
weight r**-s, s = --skew-param); hot (--hot-experts experts, redrawn every 10..100
steps, get a logit boost calibrated so the mean per-step imbalance
(max-mean)/mean of tokens per expert hits --imbalance; at most E/k-1, larger
targets are clamped with a warning).

batching: every step has --decode decode tokens (one per running request) and a
Poisson(--prefill) number of new prompts of --prompt-len tokens each.

examples:
  python -m sim.traces gen --preset mixtral-8x7b --steps 16 --seed 1 -o trace.npz
  python -m sim.traces gen --preset deepseek-v3 --imbalance 11 --decode 512 --prefill 0 -o r1.npz
  python -m sim.traces show trace.npz --limit 20
  python -m sim.traces import router.npz --experts 8 --top-k 2 --hidden 4096 --ffn 14336 -o r.npz

exit status: 0 ok, 1 unreadable or invalid trace file, 2 bad options."""


_IMPORT_EPILOG = """\
examples:
  python -m sim.traces import sim/data/recorded_sample.csv --layer 0 --experts 8 \\
      --top-k 2 --hidden 4096 --ffn 14336 --name sample -o recorded.npz
  python -m sim.traces import router.npz --experts 60 --top-k 4 --shared 4 \\
      --hidden 2048 --ffn 1408 -o qwen.npz

exit status: 0 ok, 2 bad options or a bad recorded file (the message names the
field and the value)."""


def _import(args) -> int:
    from sim import recorded
    out = Path(args.output)
    if out.exists():
        print(f"error: {out} exists; not overwritten", file=sys.stderr)
        return 2
    try:
        trace = recorded.import_routing(
            args.file, fmt=args.fmt, name=args.name, num_experts=args.experts,
            top_k=args.top_k, hidden=args.hidden, ffn=args.ffn, num_shared=args.shared,
            scale=args.scale, layer=args.layer, tokens_per_step=args.tokens_per_step,
            phase=args.phase)
    except FormatError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        save(trace, out)
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    src = trace.gen["source"]
    print(f"wrote {out}: {trace.preset} from {src['file']} (sha256 {src['sha256'][:12]}...), "
          f"{trace.steps} steps, {trace.tokens} tokens, {trace.num_experts} experts top-"
          f"{trace.top_k}, scale {trace.scale} (hidden {trace.hidden}, ffn {trace.ffn}), "
          f"mean imbalance {trace.imbalances().mean():.3f}")
    return 0


def _parser() -> argparse.ArgumentParser:
    raw = argparse.RawDescriptionHelpFormatter
    ap = argparse.ArgumentParser(
        prog="python -m sim.traces", formatter_class=raw, epilog=_EPILOG,
        description="Generate and inspect MoE routing traces (.npz, schema 1).")
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gen", help="generate a trace file", formatter_class=raw, epilog=_EPILOG,
                       description="Generate a deterministic routing trace and write it as .npz.")
    g.add_argument("--preset", required=True, choices=list(PRESETS), help="model shapes")
    g.add_argument("--steps", type=int, default=16, help="serving steps (default %(default)s)")
    g.add_argument("--seed", type=int, default=0, help="numpy default_rng seed (default %(default)s)")
    g.add_argument("-o", "--output", required=True, help="output .npz path (written as given)")
    g.add_argument("--scale", type=int, default=64,
                   help="divide hidden/ffn by this, rounded to a multiple of 16, >= 16 "
                        "(default %(default)s)")
    g.add_argument("--expert-scale", type=int, default=1,
                   help="divide the routed expert count by this, floor, >= top_k "
                        "(default %(default)s)")
    g.add_argument("--skew", choices=SKEWS, default=None,
                   help="load-skew model (default uniform, or hot if --imbalance is given)")
    g.add_argument("--skew-param", type=float, default=None,
                   help="zipf: exponent (default 1); hot: target imbalance "
                        "(default 11/31 of E/k-1, DeepSeek-R1's share of its maximum); "
                        "refused for uniform")
    g.add_argument("--imbalance", type=float, default=None,
                   help="target mean imbalance for --skew hot (same as --skew hot --skew-param)")
    g.add_argument("--hot-experts", type=int, default=None,
                   help="--skew hot only: size of the hot set, 1..top_k (default top_k//2, "
                        "at least 1)")
    g.add_argument("--decode", type=int, default=8,
                   help="decode requests (1 token each) per step (default %(default)s)")
    g.add_argument("--prefill", type=float, default=1.0,
                   help="mean (Poisson) number of new prefill requests per step "
                        "(default %(default)s)")
    g.add_argument("--prompt-len", type=int, nargs=2, default=(16, 32), metavar=("LO", "HI"),
                   help="prompt length range in tokens (default 16 32)")
    g.add_argument("--gen-len", type=int, nargs=2, default=(16, 128), metavar=("LO", "HI"),
                   help="decode steps of a request before it leaves (default 16 128)")
    i = sub.add_parser("import", help="import routing recorded from a model run",
                       formatter_class=raw, epilog=_IMPORT_EPILOG,
                       description="Convert a recorded router dump (.npz, .safetensors, .csv, "
                                   ".json; layouts in sim/recorded.py) into a trace .npz with "
                                   "preset recorded:NAME.")
    i.add_argument("file", help="the recorded dump")
    i.add_argument("-o", "--output", required=True, help="output trace .npz (not overwritten)")
    i.add_argument("--experts", type=int, required=True, help="routed experts of the model")
    i.add_argument("--top-k", type=int, required=True, help="experts per token")
    i.add_argument("--hidden", type=int, required=True, help="the model's hidden size")
    i.add_argument("--ffn", type=int, required=True, help="the model's expert FFN size")
    i.add_argument("--shared", type=int, default=0, help="shared experts (default 0)")
    i.add_argument("--scale", type=int, default=64,
                   help="divide hidden/ffn by this as for gen (default %(default)s)")
    i.add_argument("--name", default=None, help="preset becomes recorded:NAME (default: the "
                                                "file's stem)")
    i.add_argument("--format", dest="fmt", default=None,
                   choices=("npz", "safetensors", "csv", "json"),
                   help="the dump's format (default: from the file suffix)")
    i.add_argument("--layer", type=int, default=None,
                   help="the MoE layer to import when the dump holds several")
    i.add_argument("--tokens-per-step", type=int, default=None,
                   help="without a step column: tokens per serving step (default: all in one)")
    i.add_argument("--phase", choices=("auto", "prefill", "decode"), default="auto",
                   help="without an is_prefill column: what the tokens are (default auto: "
                        "several tokens of one request in a step are prefill)")
    s = sub.add_parser("show", help="print a trace's header and load tables",
                       description="Print metadata, tokens per expert summed over steps, "
                                   "per-step load and imbalance, and the mean imbalance.")
    s.add_argument("file", help="trace .npz")
    s.add_argument("--limit", type=int, default=None, help="print at most this many table rows")
    return ap


def main(argv=None) -> int:
    ap = _parser()
    args = ap.parse_args(argv)
    if args.cmd == "show" and args.limit is not None and args.limit < 0:
        ap.error("--limit must be >= 0")
    if args.cmd == "import":
        return _import(args)
    try:
        if args.cmd == "show":
            print(_show(load(args.file), args.file, args.limit))
            return 0
        skew, param = args.skew, args.skew_param
        if args.imbalance is not None:
            if skew not in (None, "hot") or param is not None:
                ap.error("--imbalance goes with --skew hot and without --skew-param")
            skew, param = "hot", args.imbalance
        if param is not None and skew in (None, "uniform"):
            ap.error(f"--skew-param applies to --skew zipf or hot; the {skew or 'uniform'} "
                     f"skew takes no parameter")
        if args.hot_experts is not None and skew != "hot":
            ap.error(f"--hot-experts applies to --skew hot (or --imbalance), not "
                     f"{skew or 'uniform'}")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trace = generate(args.preset, args.steps, args.seed, scale=args.scale,
                             expert_scale=args.expert_scale, skew=skew or "uniform",
                             skew_param=param, decode=args.decode, prefill=args.prefill,
                             prompt_len=tuple(args.prompt_len), gen_len=tuple(args.gen_len),
                             hot_experts=args.hot_experts)
        for w in caught:
            print(f"warning: {w.message}", file=sys.stderr)
        save(trace, args.output)
        print(f"wrote {args.output}: {trace.preset} scale {trace.scale}, {trace.steps} steps, "
              f"{trace.tokens} tokens, {trace.skew} {trace.skew_param:.4g}, "
              f"mean imbalance {trace.imbalances().mean():.3f}")
        return 0
    except FormatError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except ValueError as e:
        ap.error(str(e))
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
