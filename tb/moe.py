"""Host side of the MoE-layer top's bench (hdl.moe): layers, malformed inputs, the job file.

For each *layer* (a preset's scaled trace, random int8 expert weights, a capacity
policy and a dispatch) the schedule compiler (``golden.schedule.Scheduler``) turns
each step's routing into a program; :func:`encode_layer` writes per step the
descriptor words, the token entries, the SpTC's activation words and weight beats
(``golden.sptc.plan``, in the order of the program's SpTC jobs), the Logic-PIM's
data words (weights in the preamble, gathered token vectors per PIM job), the
golden layer output (``golden.moe.moe_layer``, with the static policy's drops) and
the expected executed schedule (unit, expert, slots per job, in program order).
:func:`bad_inputs` lists malformed descriptors and token entries, one per check of
the top. :func:`make_run` flattens layers and bad inputs into the job file (wide
words as little-endian uint64 chunks, no pickles) and :func:`run` runs it through
the bench, :mod:`tb.moe_bench` (the regression: :data:`LAYERS` and the bad inputs;
``make sim``: one layer of micro-batches, recorded cycle by cycle).
"""
from __future__ import annotations

import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np

from golden import moe as gm, pim as gp, schedule as S, sptc as gs
from tb.sptc import pack_weights

#: The top's streams: five in, two out (every output goes through a StreamMonitor).
IN_STREAMS = ("job", "tok", "sptc_w", "sptc_act", "pim_din")
OUT_STREAMS = ("y", "trace")
#: The cocotb test module of the top.
BENCH = "tb.moe_bench"
#: Default cycle budgets (times the bench's stall slack) of a layer's preamble and of
#: one program; a layer or step dict may set its own (``pre_budget``, ``budget``).
PRE_BUDGET, STEP_BUDGET = 200_000, 400_000


# --------------------------------------------------------------------------- wide ints <-> npz

def to_chunks(values, bits: int) -> np.ndarray:
    n = max(1, -(-bits // 64))
    out = np.zeros((len(values), n), np.uint64)
    for i, v in enumerate(values):
        v = int(v)
        for c in range(n):
            out[i, c] = (v >> (64 * c)) & 0xFFFFFFFFFFFFFFFF
    return out


def from_chunks(a: np.ndarray) -> list[int]:
    return [sum(int(x) << (64 * c) for c, x in enumerate(row)) for row in np.asarray(a)]


# --------------------------------------------------------------------------- host side

def layer_chunks(fields: dict) -> np.ndarray:
    """The top's ``layer`` port value (``golden.program.LAYER_LAYOUT``) as uint64 chunks."""
    return to_chunks([S.pack_layer(fields)], S.LAYER_BITS)[0]


def sptc_beats(mcfg: gm.MoEConfig, params: gm.LayerParams, e: int, x_k: int, sel, T: int):
    """The SpTC weight beats of one job of expert ``e``: the gate, up and down GEMMs'
    (``golden.sptc.plan`` of each matrix in the layer's format; gate and up over the
    step's ``T`` tokens, down over the job's h slots ``h_base ..``)."""
    g, u, d = params.experts[e]
    n = len(sel)
    f_k = params.k_pad(params.ffn)
    beats = []
    for w, shape, s, rq in ((g, (x_k, T), sel, params.gate_rq), (u, (x_k, T), sel, params.up_rq),
                            (d, (f_k, mcfg.h_base + n), mcfg.h_base + np.arange(n),
                             params.expert_rq)):
        job = gs.plan(mcfg.sptc, params.sptc_weight(w), shape, s, ("requant", *rq))
        beats += pack_weights(job.v0, job.v1, job.nib, job.idx)
    return beats


def layer_trace(preset: str, steps: int, seed: int, max_T: int, skew: str = "zipf"):
    """A scaled trace with hidden 32 and at most max_T tokens per step."""
    from golden import trace as traces
    p = traces.PRESETS[preset]
    es = {"qwen2-moe": 4, "deepseek-moe-16b": 8}.get(preset, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for s in range(seed, seed + 50):
            tr = traces.generate(preset, steps=steps, seed=s, scale=p.hidden // 32,
                                 expert_scale=es, skew=skew, decode=4, prefill=0.6,
                                 prompt_len=(3, 6), gen_len=(2, 6))
            if max(st.tokens for st in tr) <= max_T:
                return tr
    raise RuntimeError(f"no trace of {preset} with <= {max_T} tokens per step")


def encode_layer(mcfg: gm.MoEConfig, tr, params: gm.LayerParams, policy: S.Policy,
                 dispatch: str, rng, name: str) -> dict:
    """One layer: config, preamble and every step's streams + expected results."""
    model = S.TimeModel.for_config(mcfg, params.hidden, params.ffn, params.mode, params.nmv)
    sch = S.Scheduler(num_experts=tr.num_experts, num_shared=tr.num_shared, top_k=tr.top_k,
                      policy=policy, dispatch=dispatch, model=model)
    fields = S.layer_cfg(mcfg, params)
    pre_desc, pre_din = S.preamble(mcfg, params)
    h, f = params.hidden, params.ffn
    x_k = params.k_pad(h)
    steps = []
    for st in tr:
        r = sch.step(st)
        b = r.bound
        T = st.tokens
        x = rng.integers(-128, 128, size=(h, T)).astype(np.int8)
        descs, toks = S.encode_step(mcfg, b, h, f, params.shared_gate, model)
        w_beats, din = [], []
        for j in b.jobs:
            if j.unit == S.SPTC:
                w_beats += sptc_beats(mcfg, params, j.expert, x_k, j.sel, T)
            else:
                din += gp.pack_rows(mcfg.pim, np.ascontiguousarray(x[:, j.sel].T))
        y = gm.moe_layer(params, x, st.expert_ids, st.gate_q, b.kept)
        assert np.array_equal(S.combine_jobs(params, x, b), y)
        steps.append(dict(
            desc=to_chunks(descs, S.DESC_BITS), tok=np.array(toks, np.int64),
            act=gs.act_words(gm.pad_cols(x.T, x_k).T).astype(np.int64),
            w=to_chunks(w_beats, 24 * mcfg.sptc.rows),
            din=to_chunks(din, mcfg.pim.bundle_bits), y=y,
            trace=np.array([(S.UNIT_CODES[j.unit], j.expert, j.slots) for j in b.jobs],
                           np.int64).reshape(-1, 3),
            dropped=b.dropped, padded=b.padded, recompiled=r.recompiled,
            model_sptc=r.cycles_sptc, model_pim=r.cycles_pim))
    return dict(name=name, cfg=layer_chunks(fields), fields=fields, hidden=h,
                pre_desc=to_chunks(pre_desc, S.DESC_BITS),
                pre_din=to_chunks(pre_din, mcfg.pim.bundle_bits), steps=steps,
                recompiles=sch.recompiles)


#: The regression's layers: preset, capacity policy, dispatch, SpTC weight mode (every
#: mode on the SpTC, each preset under both policies).
LAYERS = (
    ("mixtral-8x7b", "static", "duplex_coprocess", "samoyeds"),
    ("mixtral-8x7b", "dynamic", "duplex", "2:4"),
    ("qwen2-moe", "static", "duplex_coprocess", "dense"),
    ("qwen2-moe", "dynamic", "duplex_coprocess", "samoyeds"),
    ("deepseek-moe-16b", "static", "duplex", "2:4"),
    ("deepseek-moe-16b", "dynamic", "duplex_coprocess", "dense"),
)


def make_layers(mcfg: gm.MoEConfig, seed: int, steps: int, specs=LAYERS,
                alpha: float = 1.0) -> list[dict]:
    """Encoded layers for :func:`run`: each spec's trace (hidden 32, the preset's ffn
    scaled alike, <= max_tokens per step), random experts, the policy (alpha 1 so the
    static policy drops and pads)."""
    rng = np.random.default_rng(seed)
    out = []
    for i, (preset, cap, disp, mode) in enumerate(specs):
        tr = layer_trace(preset, steps, seed + i, mcfg.max_tokens)
        params = gm.random_params(rng, tr.hidden, tr.ffn, tr.num_experts, tr.num_shared,
                                  mode=mode, shared_gate=int(rng.integers(16, 128)))
        pol = S.Policy(cap, alpha=alpha, min_gap=1)
        out.append(encode_layer(mcfg, tr, params, pol, disp, rng,
                                f"{preset}/{cap}/{disp}/{mode}"))
    return out


def _beats_per_gemm(mcfg: gm.MoEConfig, fields: dict, mode: int) -> tuple[int, int]:
    """Weight beats of one token tile of the gate (= up) and down GEMMs under ``fields``."""
    per_word = 2 if mode == gs.MODE_CODES["dense"] else 1
    return (fields["up_rt"] * per_word * fields["up_kw"],
            fields["dn_rt"] * per_word * fields["dn_kw"])


def bad_inputs(mcfg: gm.MoEConfig, fields: dict) -> list[dict]:
    """Malformed inputs, one per check of the top (hdl/moe/top.py ``bad``, ``e_bad``, the
    units' sticky errors; docs/moe.md's error table): descriptors, token entries, the data
    the accepted parts consume, the error bits expected, and what may come out.

    ``fields``: the layer registers (``golden.program.LAYER_LAYOUT``) the cases run
    under. Bad descriptors are dropped: no token entry or data consumed, no ``trace``
    beat, no output. ``cfg``: layer fields changed for the case (restored after it).
    ``trace``: EXPERT jobs the units must start; ``y_zero``: every output must be 0 (the
    only routed token entry is invalid, so nothing may be combined). ``sptc_err`` /
    ``pim_err``: the unit's own status bits expected."""
    D = S.desc
    hidden, mode = fields["hidden"], fields["mode"]
    kw = fields["pim_kw_h"]
    # nonzero data, so anything combined by mistake shows in the outputs: every weight
    # lane (v0, v1) = (17, -3) with the valid nibble 0b0100 and sub-row index 0,
    # activations and token vectors from a fixed generator
    lane = 17 | (0xFD << 8) | (0b0100 << 16)
    beat = sum(lane << (24 * r) for r in range(mcfg.sptc.rows))
    n_up, n_dn = _beats_per_gemm(mcfg, fields, mode)
    sptc_w = [beat] * (2 * n_up + n_dn)
    g = np.random.default_rng(0)
    act2 = [int(v) for v in g.integers(0, 1 << 32, 2 * fields["up_kw"], dtype=np.uint64)]
    din_bits = mcfg.pim.bundle_bits
    pim_vec = [int.from_bytes(g.bytes(din_bits // 8), "little") for _ in range(kw)]
    expert1 = [D(S.KIND_EXPERT, 0, 0, 1)]
    cases = [
        ("slots 0", [D(S.KIND_EXPERT, 0, 0, 0)], {}),
        ("slots > SpTC tile", [D(S.KIND_EXPERT, 0, 0, mcfg.sptc_max_slots + 1)], {}),
        ("slots > PIM tile", [D(S.KIND_EXPERT, 1, 0, mcfg.pim_max_slots + 1)], {}),
        ("expert >= E", [D(S.KIND_EXPERT, 0, fields["experts"], 1)], {}),
        ("PIM weights out of range", [D(S.KIND_EXPERT, 1, 0, 1, mcfg.pim.words)], {}),
        ("PIM weights end past the banks",
         [D(S.KIND_EXPERT, 1, 0, 1, mcfg.pim.words - S.expert_words(mcfg, hidden,
                                                                    fields["ffn"]) + 1)], {}),
        # an EXPERT job under a layer configuration the units cannot run
        ("EXPERT with hidden 0", expert1, {"hidden": 0}),
        ("EXPERT with hidden > max_hidden", expert1, {"hidden": mcfg.max_hidden + 1}),
        ("EXPERT with ffn 0", expert1, {"ffn": 0}),
        ("EXPERT with ffn > max_ffn", expert1, {"ffn": mcfg.max_ffn + 1}),
        ("EXPERT with mode 3", expert1, {"mode": 3}),
        ("EXPERT with down K words > max_ffn / 4", expert1, {"dn_kw": mcfg.max_ffn // 4 + 1}),
        ("EXPERT with pim_kw_h 0", [D(S.KIND_EXPERT, 1, 0, 1)], {"pim_kw_h": 0}),
        ("EXPERT with pim_kw_f > max_ffn / elems", [D(S.KIND_EXPERT, 1, 0, 1)],
         {"pim_kw_f": mcfg.max_ffn // mcfg.pim.elems + 1}),
        ("RAW to SpTC", [D(S.KIND_RAW, 0, arg=gp.encode("NOP"))], {}),
        ("RAW GEMM", [D(S.KIND_RAW, 1, arg=gp.encode("GEMM", addr=0, n=1))], {}),
        ("RAW LOAD_TOKENS", [D(S.KIND_RAW, 1, arg=gp.encode("LOAD_TOKENS", t=1, kw=kw))], {}),
        ("LOAD on PIM", [D(S.KIND_LOAD, 1, slots=2)], {}),
        ("LOAD of 0 tokens", [D(S.KIND_LOAD, 0, slots=0)], {}),
        ("LOAD too many tokens", [D(S.KIND_LOAD, 0, slots=mcfg.max_tokens + 1)], {}),
        ("END on PIM", [D(S.KIND_END, 1, slots=2)], {}),
        ("END of 0 tokens", [D(S.KIND_END, 0, slots=0)], {}),
        ("END too many tokens", [D(S.KIND_END, 0, slots=mcfg.max_tokens + 1)], {}),
        # an END under a layer configuration the drain cannot walk (0 beats per token)
        ("END with hidden 0", [D(S.KIND_END, 0, slots=2)], {"hidden": 0}),
        ("END with hidden > max_hidden", [D(S.KIND_END, 0, slots=2)],
         {"hidden": mcfg.max_hidden + 1}),
    ]
    out = [dict(name=n, desc=d, tok=[], act=[], w=[], din=[], err=S.ERR_DESC, n_out=0, cfg=c,
                trace=0) for n, d, c in cases]
    step = lambda unit: [D(S.KIND_LOAD, 0, slots=2), D(S.KIND_EXPERT, unit, 0, 1, 0),  # noqa: E731
                         D(S.KIND_END, 0, slots=2)]
    # a token beyond T on the PIM: flagged, not combined, the job still runs
    out.append(dict(name="PIM token >= T", desc=step(1), tok=[S.tok_entry(5, 1, True)], act=act2,
                    w=[], din=pim_vec, err=S.ERR_TOKEN, n_out=2 * hidden, trace=1,
                    y_zero=True))
    # on the SpTC the unit's own SEL check fires too (ERR_SPTC); no hang
    out.append(dict(name="SpTC token >= T", desc=step(0), tok=[S.tok_entry(7, 1, True)],
                    act=act2, w=sptc_w, din=[], err=S.ERR_TOKEN | S.ERR_SPTC,
                    n_out=2 * hidden, trace=1, y_zero=True, sptc_err=gs.ERR_SEL))
    out.append(dict(name="gate > 127", desc=step(1), tok=[S.tok_entry(0, 200, True)], act=act2,
                    w=[], din=pim_vec, err=S.ERR_TOKEN, n_out=2 * hidden, trace=1,
                    y_zero=True))
    # the units' own errors: a 2:4 job whose weight beats carry invalid metadata nibbles
    # (the SpTC's ERR_META; the job runs on), a RAW SET_OUT the Logic-PIM refuses
    f24 = dict(fields, mode=gs.MODE_CODES["2:4"], sam_n=1, sam_m=1, up_v=fields["up_kw"],
               dn_v=fields["dn_kw"], up_rt=-(-fields["ffn"] // mcfg.sptc.rows),
               dn_rt=-(-hidden // mcfg.sptc.rows))
    n_up, n_dn = _beats_per_gemm(mcfg, f24, f24["mode"])
    no_meta = beat & ~(0xF0000 * sum(1 << (24 * r) for r in range(mcfg.sptc.rows)))
    out.append(dict(name="SpTC metadata error", desc=step(0), tok=[S.tok_entry(1, 9, True)],
                    act=act2, w=[no_meta] * (2 * n_up + n_dn), din=[], err=S.ERR_SPTC,
                    n_out=2 * hidden, trace=1, cfg={k: f24[k] for k in f24 if f24[k] != fields[k]},
                    sptc_err=gs.ERR_META))
    out.append(dict(name="Logic-PIM refuses SET_OUT requant shift 0",
                    desc=[D(S.KIND_RAW, 1, arg=gp.encode("SET_OUT", mode=2, shift=0, mult=1))],
                    tok=[], act=[], w=[], din=[], err=S.ERR_PIM, n_out=0, trace=0,
                    pim_err=gp.ERR_FIELD))
    return out


def make_run(mcfg: gm.MoEConfig, layers: list[dict], *, bad: bool = True,
             record: bool = False) -> dict:
    """The bench's job file (flat arrays): the layers, then (``bad``) the malformed
    inputs of :func:`bad_inputs` under the last layer's configuration. ``record``: the
    bench records the (single) layer cycle by cycle (see :mod:`tb.moe_bench`)."""
    if record and len(layers) != 1:
        raise ValueError(f"record: the bench records one layer, got {len(layers)}")
    arrays = {"n_layers": np.int64(len(layers)), "hidden_max": np.int64(mcfg.max_hidden),
              "layer_bits": np.int64(S.LAYER_BITS),
              "y_lanes": np.int64(mcfg.lanes),
              "record": np.int64(bool(record)), "n_bad": np.int64(0)}
    for li, L in enumerate(layers):
        p = f"l{li}_"
        arrays[p + "name"] = np.array(L["name"])
        arrays[p + "cfg"] = L["cfg"]
        arrays[p + "hidden"] = np.int64(L["hidden"])
        arrays[p + "pre_desc"] = L["pre_desc"]
        arrays[p + "pre_din"] = L["pre_din"]
        arrays[p + "pre_budget"] = np.int64(L.get("pre_budget", PRE_BUDGET))
        arrays[p + "n_steps"] = np.int64(len(L["steps"]))
        for si, st in enumerate(L["steps"]):
            for k in ("desc", "tok", "act", "w", "din", "y", "trace"):
                arrays[f"{p}s{si}_{k}"] = st[k]
            arrays[f"{p}s{si}_budget"] = np.int64(st.get("budget", STEP_BUDGET))
    if not bad:
        return arrays
    last = layers[-1]["fields"]
    bad = bad_inputs(mcfg, last)
    arrays["n_bad"] = np.int64(len(bad))
    for i, b in enumerate(bad):
        arrays[f"b{i}_name"] = np.array(b["name"])
        arrays[f"b{i}_desc"] = to_chunks(b["desc"], S.DESC_BITS)
        arrays[f"b{i}_tok"] = np.array(b["tok"], np.int64)
        arrays[f"b{i}_act"] = np.array(b["act"], np.int64)
        arrays[f"b{i}_w"] = to_chunks(b["w"], 24 * mcfg.sptc.rows)
        arrays[f"b{i}_din"] = to_chunks(b["din"], mcfg.pim.bundle_bits)
        arrays[f"b{i}_err"] = np.int64(b["err"])
        arrays[f"b{i}_n_out"] = np.int64(b["n_out"])
        arrays[f"b{i}_cfg"] = layer_chunks(dict(last, **b.get("cfg", {})))
        arrays[f"b{i}_unit_err"] = np.array([b.get("sptc_err", -1), b.get("pim_err", -1)],
                                            np.int64)   # -1: not checked
        arrays[f"b{i}_trace"] = np.int64(b["trace"])
        arrays[f"b{i}_y_zero"] = np.int64(bool(b.get("y_zero")))
    return arrays


@lru_cache(maxsize=4)
def top_verilog(mcfg: gm.MoEConfig) -> str:
    """The top's Verilog (elaborated once per process: ~8 s; both simulators and every
    run of the process share it)."""
    from hdl.moe import MODULE_NAME, build, config_params
    from hdl.verilog import to_verilog
    return to_verilog(build(mcfg), MODULE_NAME, config_params(mcfg))


def build_top(mcfg: gm.MoEConfig, simulator: str = "verilator", name: str = "moe_small",
              waves: bool = False):
    """The top's simulator build (cached by :mod:`tb.cocotb_run`: same Verilog, same
    directory)."""
    from hdl.moe import MODULE_NAME

    from tb import cocotb_run
    return cocotb_run.build(name, top_verilog(mcfg), MODULE_NAME, simulator=simulator,
                            waves=waves)


def run(mcfg: gm.MoEConfig, layers: list[dict], workdir, simulator: str = "verilator",
        seed: int = 1, stalls: bool = True, stall_profile: str | None = None, *,
        bad: bool = True, record: bool = False, build=None, progress=None) -> dict:
    """Run the layers (and, with ``bad``, the malformed inputs) in one simulation of
    :data:`BENCH`; returns the bench's result arrays and ``wave`` (the waveform, or None).

    ``stall_profile`` (with ``stalls``): None for the classic random stalls, or a kind
    of ``tb.common.STALL_KINDS`` (a profile of its own per stream). ``build``: a build
    of the top (default :func:`build_top`). ``progress(done_jobs)`` (with ``record``)
    is called from this thread while the simulator runs. Raises
    ``tb.cocotb_run.SimulationError`` if any check fails."""
    from tb import cocotb_run
    from tb.common import check_stall_profile, stall_env
    check_stall_profile(stall_profile)
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    np.savez(workdir / "job.npz", **make_run(mcfg, layers, bad=bad, record=record))
    b = build if build is not None else build_top(mcfg, simulator)
    env = {"MOE_JOB": str(workdir / "job.npz"), "MOE_RESULT": str(workdir / "result.npz"),
           "MOE_SEED": str(seed), **stall_env(stalls, stall_profile)}
    if progress is None:
        wave = cocotb_run.run(b, BENCH, test_dir=workdir, env=env)
    else:
        env["MOE_PROGRESS"] = str(workdir / "progress.txt")
        wave = cocotb_run.run_polling(b, BENCH, workdir, env, progress)
    with np.load(workdir / "result.npz", allow_pickle=False) as f:
        res = {k: f[k] for k in f.files}
    res["wave"] = wave
    return res
