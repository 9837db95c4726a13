"""Program encoding of the MoE-layer top (``hdl.moe``): descriptor and token-entry
words, the weight preamble, and a job-by-job combine that cross-checks
``golden.moe.moe_layer``.

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


def pim_addr(mcfg, hidden: int, expert: int) -> int:
    """Word address of expert ``expert``'s weights in the top's Logic-PIM."""
    kw = -(-hidden // mcfg.pim.elems)
    return expert * hidden * kw


def preamble(mcfg, params) -> tuple[list[int], list[int]]:
    """RAW descriptors + PIM data words: every expert's weights into the PIM, SET_OUT."""
    descs, din = [], []
    h = params.hidden
    need = len(params.weights) * h * -(-h // mcfg.pim.elems)
    if need > mcfg.pim.words:
        raise FormatError(f"weights: {len(params.weights)} experts need {need} PIM words, "
                          f"the unit holds {mcfg.pim.words}")
    for e, w in enumerate(params.weights):
        words = gp.pack_rows(mcfg.pim, w)
        for a in range(0, len(words), (1 << 24) - 1):
            part = words[a:a + (1 << 24) - 1]
            descs.append(desc(KIND_RAW, 1, arg=gp.encode("WRITE", addr=pim_addr(mcfg, h, e) + a,
                                                          count=len(part))))
            din += part
    mult, shift = params.expert_rq
    descs.append(desc(KIND_RAW, 1, arg=gp.encode("SET_OUT", mode=2, shift=shift, mult=mult)))
    return descs, din


def encode_step(mcfg, bound, hidden: int, shared_gate: int) -> tuple[list[int], list[int]]:
    """Descriptors and token entries of one bound step: LOAD(T), the jobs, END(T).

    A job's token entries are its slots in order: (token, gate, valid); shared
    experts' entries carry ``shared_gate``, padding slots valid = 0 and gate 0."""
    E = bound.plan.num_experts
    T = bound.T
    if not 1 <= T <= mcfg.max_tokens:
        raise FormatError(f"T: {T} tokens outside 1..{mcfg.max_tokens} (the top's buffer)")
    descs = [desc(KIND_LOAD, 0, slots=T)]
    toks = []
    for j in bound.jobs:
        u = UNIT_CODES[j.unit]
        lim = mcfg.sptc_max_slots if u == 0 else mcfg.pim_max_slots
        if j.slots > lim:
            raise FormatError(f"job: expert {j.expert} has {j.slots} slots, the {j.unit} "
                              f"tile is {lim}")
        descs.append(desc(KIND_EXPERT, u, j.expert, j.slots,
                          pim_addr(mcfg, hidden, j.expert) if u else 0))
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
