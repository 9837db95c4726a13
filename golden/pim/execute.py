"""The functional golden model of the Logic-PIM unit: :func:`execute` runs an
instruction stream bit-exact with the RTL (outputs, sticky error bits, DRAM contents).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import FormatError
from ..numerics import OutMode, apply_out
from .config import PIMConfig
from ..softmax import SHIFT_MAX, SHIFT_MIN, softmax
from .isa import ATTN_OPS, ERR_ADDR, ERR_FIELD, ERR_OPCODE, ERR_TOKENS, INSTR_BITS, decode
from .program import unpack_words


@dataclass
class PIMResult:
    values: np.ndarray          # int64, every output-stream value in order
    last: np.ndarray            # bool, the 'last' flag of each output (end of a GEMM)
    err: int                    # sticky error bits after the stream
    dram: list                  # word contents (python ints), length cfg.words
    gemms: list = field(default_factory=list)   # per GEMM: (n, t) array in the out dtype
    din_used: int = 0
    state: "UnitState | None" = None
    attns: list = field(default_factory=list)   # per ATTN: dict of scores, p, acc, out


def _check_gemm(cfg, f, have, kw) -> int:
    e = 0
    if f["n"] == 0:
        e |= ERR_FIELD
    if not have:
        e |= ERR_TOKENS
    if f["addr"] + f["n"] * kw > cfg.words:
        e |= ERR_ADDR
    return e


def _attn_errors(cfg: PIMConfig, f: dict, have: bool, t: int, kw: int, kv) -> int:
    """SET_KV / APPEND_KV / ATTN (docs/attention.md, "KV cache"). ``kv`` = (base,
    capacity, kw) of the last SET_KV, or None."""
    name = f["name"]
    if name == "SET_KV":
        e = ERR_TOKENS if not 1 <= f["kv_kw"] <= cfg.attn_kw else 0
        e |= ERR_FIELD if f["kv_cap"] == 0 else 0
        if f["kv_cap"] > cfg.attn_len or \
                f["kv_base"] + 2 * f["kv_cap"] * f["kv_kw"] > cfg.words:
            e |= ERR_ADDR
        return e
    if kv is None:
        return ERR_FIELD
    base, cap, kvkw = kv
    e = ERR_ADDR if base + (f["slot"] + 1) * 2 * cap * kvkw > cfg.words else 0
    if name == "APPEND_KV":
        return e | (ERR_ADDR if f["pos"] >= cap else 0)
    if f["len"] == 0 or not SHIFT_MIN <= f["sm_shift"] <= SHIFT_MAX:
        e |= ERR_FIELD
    if f["len"] > cap:
        e |= ERR_ADDR
    if not have or t > cfg.attn_heads or kw != kvkw:
        e |= ERR_TOKENS
    return e


def instr_errors(cfg: PIMConfig, word: int, have_tokens: bool, kw: int, *, t: int = 0,
                 kv=None) -> int:
    """The error bits the unit raises for one instruction (0 = executes); ``t``/``kw``
    the token buffer's shape, ``kv`` the KV-cache registers (base, capacity, kw) or
    None before any SET_KV."""
    f = decode(word)
    name = f["name"]
    if name in ATTN_OPS:
        if cfg.attn_heads == 0:
            return ERR_OPCODE
        return _attn_errors(cfg, f, have_tokens, t, kw, kv)
    if name == "LOAD_TOKENS":
        return ERR_TOKENS if not (1 <= f["t"] <= cfg.max_tokens and
                                  1 <= f["kw"] <= cfg.max_k_words) else 0
    if name == "WRITE":
        e = ERR_FIELD if f["count"] == 0 else 0
        return e | (ERR_ADDR if f["addr"] + f["count"] > cfg.words else 0)
    if name == "GEMM":
        return _check_gemm(cfg, f, have_tokens, kw)
    if name == "SET_OUT":
        if f["mode"] == 3 or (f["mode"] == 2 and f["shift"] == 0) or \
                (f["mode"] < 2 and (f["shift"] or f["mult"])):
            return ERR_FIELD
        return 0
    if name in ("NOP", "FENCE"):
        return 0
    return ERR_OPCODE


def _mode_of(code, shift, mult) -> OutMode:
    return {0: OutMode("int32"), 1: OutMode("int8_sat")}.get(code) or \
        OutMode("requant", mult, shift)


@dataclass
class UnitState:
    """Architectural state that survives between instruction streams (reset values)."""
    dram: list
    mode: OutMode = field(default_factory=lambda: OutMode("int32"))
    buf: np.ndarray | None = None     # (t, kw * elems) int8, None until a LOAD_TOKENS
    kw: int = 0
    kv: tuple | None = None           # (base, capacity, kw) of the last SET_KV

    @classmethod
    def reset(cls, cfg: PIMConfig) -> "UnitState":
        return cls([0] * cfg.words)

    @property
    def loaded(self):
        """(t, kw) of the token buffer, or None (what :func:`predict` needs)."""
        return None if self.buf is None else (self.buf.shape[0], self.kw)


def execute(cfg: PIMConfig, words, din=(), dram=None, state: UnitState | None = None) -> PIMResult:
    """Run an instruction stream functionally, bit-exact with the RTL.

    ``dram``: initial word contents (default all zero, as after reset), or
    ``state``: a :class:`UnitState` to continue from (it is updated in place and
    also returned as ``result.state``). A rejected instruction sets its error
    bits and consumes no data words.
    """
    if state is None:
        state = UnitState.reset(cfg) if dram is None else UnitState([int(x) for x in dram])
    mem = state.dram
    if len(mem) != cfg.words:
        raise FormatError(f"dram: {len(mem)} words, expected {cfg.words}")
    din = [int(x) for x in din]
    pos, err = 0, 0
    mode, buf, kw, kv = state.mode, state.buf, state.kw, state.kv
    vals, lasts, gemms, attns = [], [], [], []

    def take(n, what):
        nonlocal pos
        if pos + n > len(din):
            raise FormatError(f"din: {what} needs {n} data words, only {len(din) - pos} left")
        out = din[pos:pos + n]
        pos += n
        return out

    for i, word in enumerate(words):
        word = int(word)
        if not 0 <= word < 1 << INSTR_BITS:
            raise FormatError(f"words[{i}]: {word!r} is not a 64-bit instruction")
        e = instr_errors(cfg, word, buf is not None, kw,
                         t=0 if buf is None else buf.shape[0], kv=kv)
        if e:
            err |= e
            continue
        f = decode(word)
        name = f["name"]
        if name == "SET_OUT":
            mode = _mode_of(f["mode"], f["shift"], f["mult"])
        elif name == "LOAD_TOKENS":
            data = take(f["t"] * f["kw"], f"LOAD_TOKENS (instruction {i})")
            buf = unpack_words(cfg, data).reshape(f["t"], f["kw"] * cfg.elems)
            kw = f["kw"]
        elif name == "WRITE":
            data = take(f["count"], f"WRITE (instruction {i})")
            mem[f["addr"]:f["addr"] + f["count"]] = data
        elif name == "GEMM":
            n = f["n"]
            wts = unpack_words(cfg, mem[f["addr"]:f["addr"] + n * kw]).reshape(n, kw * cfg.elems)
            acc = wts.astype(np.int64) @ buf.astype(np.int64).T      # (n, t)
            out = apply_out(acc, mode)
            gemms.append(out)
            vals.extend(int(v) for v in out.ravel())
            lasts.extend([False] * (out.size - 1) + [True])
        elif name == "SET_KV":
            kv = (f["kv_base"], f["kv_cap"], f["kv_kw"])
        elif name == "APPEND_KV":
            base, cap, kvkw = kv
            a = base + (f["slot"] * 2 * cap + f["pos"]) * kvkw
            data = take(2 * kvkw, f"APPEND_KV (instruction {i})")
            mem[a:a + kvkw] = data[:kvkw]
            mem[a + cap * kvkw:a + (cap + 1) * kvkw] = data[kvkw:]
        elif name == "ATTN":
            base, cap, kvkw = kv
            a = base + f["slot"] * 2 * cap * kvkw
            res = attn_slot(cfg, buf, mem[a:a + f["len"] * kvkw],
                            mem[a + cap * kvkw:a + (cap + f["len"]) * kvkw],
                            f["sm_mult"], f["sm_shift"], mode)
            attns.append(res)
            vals.extend(int(v) for v in res["out"].ravel())
            lasts.extend([False] * (res["out"].size - 1) + [True])
    state.mode, state.buf, state.kw, state.kv = mode, buf, kw, kv
    return PIMResult(np.array(vals, np.int64), np.array(lasts, bool), err, mem, gemms, pos,
                     state, attns)


def attn_slot(cfg: PIMConfig, q, k_words, v_words, sm_mult: int, sm_shift: int,
              mode: OutMode) -> dict:
    """ATTN's arithmetic: ``q`` int8 (G, kw * elems), K and V rows as words; scores
    (G, L) int64, p (G, L) Q0.15, acc (G, kw * elems) int64 and ``out`` =
    ``apply_out(acc, mode)``, emitted head by head, every lane of the padded head."""
    q = np.asarray(q).astype(np.int64)
    d = q.shape[1]
    k = unpack_words(cfg, k_words).reshape(-1, d).astype(np.int64)
    v = unpack_words(cfg, v_words).reshape(-1, d).astype(np.int64)
    scores = q @ k.T
    p = softmax(scores, sm_mult, sm_shift).astype(np.int64)
    acc = p @ v
    return dict(scores=scores, p=p, acc=acc, out=apply_out(acc, mode))
