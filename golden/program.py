"""Program encoding of the MoE-layer top (``hdl.moe``): descriptor and token-entry
words, the layer registers, the weight preamble, and a job-by-job combine that
cross-checks ``golden.moe.moe_layer``.

Split from :mod:`golden.schedule` (which re-exports every name here, so
``golden.schedule.desc`` etc. keep working) along the seam between compiling a
step's program and encoding it as words for the hardware.
"""
from __future__ import annotations

import numpy as np
from amaranth.lib import data

from . import pim as gp
from .errors import FormatError
from .fields import pack, unpack

SPTC, PIM = "sptc", "pim"
UNIT_CODES = {SPTC: 0, PIM: 1}


KIND_EXPERT, KIND_LOAD, KIND_RAW, KIND_END = 0, 1, 2, 3
KIND_NAMES = {KIND_EXPERT: "EXPERT", KIND_LOAD: "LOAD", KIND_RAW: "RAW", KIND_END: "END"}
#: A job descriptor (``arg``: the RAW descriptor's Logic-PIM instruction, the EXPERT
#: job's weight address) and a token entry of an EXPERT job, LSB first.
DESC_LAYOUT = data.StructLayout({"kind": 2, "unit": 1, "expert": 8, "slots": 8, "arg": 64})
DESC_BITS = DESC_LAYOUT.size
TOK_LAYOUT = data.StructLayout({"tok": 8, "gate": 8, "valid": 1})
TOK_BITS = TOK_LAYOUT.size
#: The top's layer registers (its ``cfg`` port, held while a layer runs), LSB first.
#: SpTC registers of the gate/up GEMMs (``up_*``: K = hidden, ffn output rows) and of
#: the down GEMM (``dn_*``: K = ffn padded as the SpTC runs it, hidden output rows) as
#: ``golden.sptc.plan`` computes them; Logic-PIM K words of hidden and ffn; the five
#: requant pairs (gate, up, SiLU product, down = the expert's output, combine).
LAYER_LAYOUT = data.StructLayout({
    "hidden": 9, "ffn": 9, "experts": 9, "mode": 2, "sam_n": 5, "sam_m": 5,
    "up_kw": 8, "up_v": 8, "up_rt": 9, "dn_kw": 8, "dn_v": 8, "dn_rt": 9,
    "pim_kw_h": 8, "pim_kw_f": 8,
    "gate_mult": 16, "gate_shift": 5, "up_mult": 16, "up_shift": 5,
    "prod_mult": 16, "prod_shift": 5, "down_mult": 16, "down_shift": 5,
    "comb_mult": 16, "comb_shift": 5})
LAYER_BITS = LAYER_LAYOUT.size
#: PIM opcodes a RAW descriptor may carry (LOAD_TOKENS / GEMM belong to EXPERT jobs).
RAW_OK = (gp.OPCODES["NOP"], gp.OPCODES["WRITE"], gp.OPCODES["SET_OUT"], gp.OPCODES["FENCE"])
# Sticky error bits of the top's status.
ERR_DESC = 1 << 0    # malformed descriptor (dropped, consumed no token entries)
ERR_TOKEN = 1 << 1   # token entry with token >= T or gate > 127 (not combined)
ERR_SPTC = 1 << 2    # the SpTC raised an error
ERR_PIM = 1 << 3     # the Logic-PIM unit raised an error
ERROR_NAMES = {ERR_DESC: "desc", ERR_TOKEN: "token", ERR_SPTC: "sptc", ERR_PIM: "pim"}


def desc(kind: int, unit: int = 0, expert: int = 0, slots: int = 0, arg: int = 0) -> int:
    """One descriptor word (fields unchecked against a config so tests can build bad ones)."""
    return pack(DESC_LAYOUT, dict(kind=kind, unit=unit, expert=expert, slots=slots, arg=arg))


def decode_desc(word: int) -> dict:
    return unpack(DESC_LAYOUT, word)


def tok_entry(tok: int, gate: int, valid: bool) -> int:
    return pack(TOK_LAYOUT, dict(tok=tok, gate=gate & 0xFF, valid=int(valid)))


def expert_words(mcfg, hidden: int, ffn: int) -> int:
    """Logic-PIM words of one expert: gate and up (ffn rows of hidden), down (hidden
    rows of ffn), stored in that order."""
    e = mcfg.pim.elems
    return 2 * ffn * -(-hidden // e) + hidden * -(-ffn // e)


def pim_addr(mcfg, hidden: int, ffn: int, expert: int) -> int:
    """Word address of expert ``expert``'s gate weights in the top's Logic-PIM (its up
    and down weights follow)."""
    return expert * expert_words(mcfg, hidden, ffn)


def layer_cfg(mcfg, params) -> dict:
    """The top's layer registers (:data:`LAYER_LAYOUT` fields) for ``params``
    (a ``golden.moe.LayerParams``), checked against the build ``mcfg``."""
    from . import sptc as gs
    h, f = params.hidden, params.ffn
    if h > mcfg.max_hidden:
        raise FormatError(f"hidden: {h} exceeds the top's max_hidden {mcfg.max_hidden}")
    if params.k_pad(f) > mcfg.max_ffn:
        raise FormatError(f"ffn: {f} (as the SpTC runs it: {params.k_pad(f)}) exceeds the "
                          f"top's max_ffn {mcfg.max_ffn}")
    if params.mode == "samoyeds" and tuple(params.nmv[:2]) not in mcfg.sptc.samoyeds_nm:
        raise FormatError(f"nmv: Samoyeds (N, M) = {tuple(params.nmv[:2])} not in the SpTC's "
                          f"samoyeds_nm {mcfg.sptc.samoyeds_nm}")
    if len(params.experts) >= 1 << mcfg.expert_bits:
        raise FormatError(f"experts: {len(params.experts)} do not fit expert_bits "
                          f"{mcfg.expert_bits}")
    g, _, d = params.experts[0]
    up = gs.plan(mcfg.sptc, params.sptc_weight(g), (params.k_pad(h), 1)).regs
    dn = gs.plan(mcfg.sptc, params.sptc_weight(d), (params.k_pad(f), 1)).regs
    e = mcfg.pim.elems
    rq = {}
    for name in ("gate", "up", "prod", "down", "comb"):
        pair = {"down": params.expert_rq, "comb": params.combine_rq}.get(
            name, getattr(params, f"{name}_rq", None))
        rq[f"{name}_mult"], rq[f"{name}_shift"] = pair
    return dict(hidden=h, ffn=f, experts=len(params.experts),
                mode={"dense": 0, "2:4": 1, "samoyeds": 2}[params.mode],
                sam_n=up["sam_n"], sam_m=up["sam_m"],
                up_kw=up["k_words"], up_v=up["v_steps"], up_rt=up["n_row_tiles"],
                dn_kw=dn["k_words"], dn_v=dn["v_steps"], dn_rt=dn["n_row_tiles"],
                pim_kw_h=-(-h // e), pim_kw_f=-(-f // e), **rq)


def pack_layer(fields: dict) -> int:
    """One ``cfg`` word from :data:`LAYER_LAYOUT` fields (range-checked)."""
    return pack(LAYER_LAYOUT, fields)


def preamble(mcfg, params) -> tuple[list[int], list[int]]:
    """RAW descriptors + PIM data words: every expert's gate, up and down weights into
    the PIM (dense rows, :func:`pim_addr`)."""
    descs, din = [], []
    h, f = params.hidden, params.ffn
    need = len(params.experts) * expert_words(mcfg, h, f)
    if need > mcfg.pim.words:
        raise FormatError(f"experts: {len(params.experts)} experts need {need} PIM words, "
                          f"the unit holds {mcfg.pim.words}")
    for e, mats in enumerate(params.experts):
        words = []
        for w in mats:
            words += gp.pack_rows(mcfg.pim, w)
        for a in range(0, len(words), (1 << 24) - 1):
            part = words[a:a + (1 << 24) - 1]
            descs.append(desc(KIND_RAW, 1, arg=gp.encode(
                "WRITE", addr=pim_addr(mcfg, h, f, e) + a, count=len(part))))
            din += part
    return descs, din


def dispatch_order(bound, model=None) -> list:
    """The order of a step's jobs in the descriptor stream. Each unit runs its own jobs
    in ``bound.jobs`` order; with a ``model`` (``golden.costmodel.TimeModel``) the two
    units' jobs are interleaved by their modelled start on their unit (stable; the SpTC
    first on ties), so that the dispatcher, which hands descriptors out in stream order,
    never holds one unit's jobs behind the other's full queue. Without one: ``bound.jobs``."""
    if model is None:
        return list(bound.jobs)
    t = {"sptc": model.load(bound.T), "pim": 0}
    keyed = []
    for i, j in enumerate(bound.jobs):
        keyed.append((t[j.unit], UNIT_CODES[j.unit], i, j))
        t[j.unit] += model.unit(j.unit, j.slots)
    return [j for *_, j in sorted(keyed, key=lambda k: k[:3])]


def encode_step(mcfg, bound, hidden: int, ffn: int, shared_gate: int,
                model=None) -> tuple[list[int], list[int]]:
    """Descriptors and token entries of one bound step: LOAD(T), the jobs in
    :func:`dispatch_order`, END(T).

    A job's token entries are its slots in order: (token, gate, valid); shared
    experts' entries carry ``shared_gate``, padding slots valid = 0 and gate 0."""
    E = bound.plan.num_experts
    T = bound.T
    if not 1 <= T <= mcfg.max_tokens:
        raise FormatError(f"T: {T} tokens outside 1..{mcfg.max_tokens} (the top's buffer)")
    descs = [desc(KIND_LOAD, 0, slots=T)]
    toks = []
    for j in dispatch_order(bound, model):
        u = UNIT_CODES[j.unit]
        lim = mcfg.sptc_max_slots if u == 0 else mcfg.pim_max_slots
        if j.slots > lim:
            raise FormatError(f"job: expert {j.expert} has {j.slots} slots, the {j.unit} "
                              f"tile is {lim}")
        descs.append(desc(KIND_EXPERT, u, j.expert, j.slots,
                          pim_addr(mcfg, hidden, ffn, j.expert) if u else 0))
        gates = np.where(j.valid, shared_gate, 0) if j.expert >= E else j.gates
        toks += [tok_entry(int(t), int(g), bool(v)) for t, g, v in zip(j.sel, gates, j.valid)]
    descs.append(desc(KIND_END, 0, slots=T))
    return descs, toks


def combine_jobs(params, x: np.ndarray, bound) -> np.ndarray:
    """The layer output computed job by job, as the hardware does (cross-check of
    :func:`golden.moe.moe_layer`; pads and invalid slots contribute nothing)."""
    from .moe import expert_out
    from .numerics import requant
    h, T = x.shape
    acc = np.zeros((h, T), np.int64)
    E = params.num_experts
    for j in bound.jobs:
        y = expert_out(params, j.expert, x, j.sel).astype(np.int64)
        g = (np.full(j.slots, params.shared_gate) if j.expert >= E else j.gates).astype(np.int64)
        for s in range(j.slots):
            if j.valid[s]:
                acc[:, j.sel[s]] += g[s] * y[:, s]
    return requant(acc, *params.combine_rq)
