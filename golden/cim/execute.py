"""The CIM controller's program interpreter: :func:`execute` runs a program word by
word exactly as the RTL does (same state, same checks and error codes on malformed
programs, same per-instruction cycle costs ``cost_*``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import FormatError
from ..numerics import OutMode, apply_out
from .config import CIMConfig
from .isa import (ERROR_CODES, OP_CFG, OP_INPUT, OP_LOADW, OP_MID, OP_STEP, OPCODES, PHASE_IDLE,
                  PHASE_L, PHASE_R, USED_BITS, decode_word)


def step_groups(col_mask: int, b: int, config: CIMConfig) -> int:
    """Column groups of ``lanes`` columns a step visits (its compute cycles)."""
    p, m = config.lanes, config.m
    n = 0
    for j in range(m // p):
        lo, hi = j * p // b, (j * p + p - 1) // b
        if any(col_mask >> s & 1 for s in range(lo, hi + 1)):
            n += 1
    return n


# Per-instruction cycle costs (fetch of the header to fetch of the next instruction),
# measured on the RTL with no stalls and asserted equal by the cocotb bench.
def cost_cfg(config) -> int:
    return 1


def cost_loadw(ncols: int, config) -> int:
    return 1 + ncols * config.words_per_column


def cost_input(n: int, config) -> int:
    return 1 + n // config.lanes


def cost_step(col_mask: int, b: int, config) -> int:
    return 2 + step_groups(col_mask, b, config)


def cost_mid(n: int, b: int, config) -> int:
    return 1 + config.step_drain + (n // config.m) * (1 + b) + config.mid_tail


def cost_output(n: int, config) -> int:
    return 2 + config.step_drain + n // config.lanes + config.out_tail


@dataclass
class ExecResult:
    outputs: list            # per OUTPUT: (n,) int64 values in hardware order
    cycles: list             # per instruction: (word index, op, cycles)
    error: str = "OK"
    error_index: int = -1    # word index of the offending instruction
    steps: int = 0

    @property
    def error_code(self) -> int:
        return ERROR_CODES[self.error]

    @property
    def total_cycles(self) -> int:
        return sum(c for _, _, c in self.cycles)


def _wrap32(a: np.ndarray) -> np.ndarray:
    return ((a.astype(np.int64) + (1 << 31)) % (1 << 32)) - (1 << 31)


def execute(words, config: CIMConfig, act_beats: Sequence[int] = ()) -> ExecResult:
    """Run a program exactly as the controller does (state, checks, cycles).

    Stops at the first malformed instruction with its error code (the hardware then
    discards everything until ``clear``). Weights start at zero.
    """
    m, p, A = config.m, config.lanes, config.arrays
    words = [int(w) for w in words]
    beats = list(act_beats)
    W = np.zeros((A, m, m), dtype=np.int8)
    X = np.zeros(config.n_max, dtype=np.int8)
    H = np.zeros(config.n_max, dtype=np.int8)
    acc = np.zeros(config.n_max, dtype=np.int64)
    written: set = set()
    phase, cfg = PHASE_IDLE, None
    res = ExecResult([], [])
    i = 0
    bi = 0

    def fail(code: str, idx: int):
        res.error, res.error_index = code, idx
        return res

    while i < len(words):
        word, idx = words[i], i
        op = word & 0xF
        if op not in OPCODES or word >> USED_BITS[op]:
            return fail("BAD_OPCODE", idx)
        ins = decode_word(word).fields
        i += 1
        if op == OP_CFG:
            if phase != PHASE_IDLE:
                return fail("BAD_SEQUENCE", idx)
            b = 1 << ins["log2b"]
            ok = (config.b_min <= b <= config.b_max and ins["mid_kind"] in (1, 2)
                  and ins["out_kind"] in (0, 1, 2))
            for k in ("mid", "out"):
                kind, mult, shift = ins[f"{k}_kind"], ins[f"{k}_mult"], ins[f"{k}_shift"]
                if kind == 2 and shift == 0:
                    ok = False
                if kind in (0, 1) and (mult or shift):
                    ok = False
            if not ok:
                return fail("BAD_CFG", idx)
            kinds = {0: "int32", 1: "int8_sat"}
            mid = (OutMode("requant", ins["mid_mult"], ins["mid_shift"]) if ins["mid_kind"] == 2
                   else OutMode(kinds[ins["mid_kind"]]))
            out = (OutMode("requant", ins["out_mult"], ins["out_shift"]) if ins["out_kind"] == 2
                   else OutMode(kinds[ins["out_kind"]]))
            cfg = dict(b=b, n=b * b, g=m // b, mid=mid, out=out)
            res.cycles.append((idx, "CFG", cost_cfg(config)))
        elif op == OP_LOADW:
            if phase != PHASE_IDLE:
                return fail("BAD_SEQUENCE", idx)
            if ins["array"] >= A:
                return fail("BAD_ARRAY", idx)
            c0, nc = ins["col"], ins["ncols"]
            if nc == 0 or c0 + nc > m:
                return fail("BAD_COLUMN", idx)
            need = nc * config.words_per_column
            data = words[i:i + need]
            if len(data) < need:
                raise FormatError(f"words: LOADW at word {idx} needs {need} data words, "
                                  f"the program ends after {len(data)}")
            i += need
            for c in range(nc):
                raw = b"".join(w.to_bytes(8, "little") for w in
                               data[c * config.words_per_column:(c + 1) * config.words_per_column])
                W[ins["array"], :, c0 + c] = np.frombuffer(raw, dtype=np.int8)
            res.cycles.append((idx, "LOADW", cost_loadw(nc, config)))
        elif op == OP_INPUT:
            if phase != PHASE_IDLE or cfg is None:
                return fail("BAD_SEQUENCE", idx)
            n = cfg["n"]
            need = n // p
            if bi + need > len(beats):
                raise FormatError(f"act_beats: INPUT at word {idx} needs {need} beats, only "
                                  f"{len(beats) - bi} left")
            raw = b"".join(int(x).to_bytes(p, "little") for x in beats[bi:bi + need])
            bi += need
            X[:n] = np.frombuffer(raw, dtype=np.int8)
            written.clear()
            phase = PHASE_R
            res.cycles.append((idx, "INPUT", cost_input(n, config)))
        elif op == OP_STEP:
            if phase not in (PHASE_R, PHASE_L):
                return fail("BAD_SEQUENCE", idx)
            if ins["array"] >= A:
                return fail("BAD_ARRAY", idx)
            n, b, g = cfg["n"], cfg["b"], cfg["g"]
            lines = n // m
            if ins["act_line"] >= lines or ins["acc_line"] >= lines:
                return fail("BAD_LINE", idx)
            rm, cm = ins["row_mask"], ins["col_mask"]
            if rm == 0 or cm == 0 or rm >> g or cm >> g:
                return fail("BAD_MASK", idx)
            line = ins["acc_line"]
            slots = [line * g + s for s in range(g) if cm >> s & 1]
            if ins["acc"] and any(s not in written for s in slots):
                return fail("UNWRITTEN", idx)
            src = X if phase == PHASE_R else H
            act = src[ins["act_line"] * m:(ins["act_line"] + 1) * m].astype(np.int64)
            rows = np.repeat([(rm >> s) & 1 for s in range(g)], b).astype(bool)
            dots = (act * rows) @ W[ins["array"]].astype(np.int64)      # (m,) per column
            cols = np.repeat([(cm >> s) & 1 for s in range(g)], b).astype(bool)
            base = acc[line * m:(line + 1) * m]
            new = np.where(cols, _wrap32((base if ins["acc"] else 0) + dots), base)
            acc[line * m:(line + 1) * m] = new
            written.update(slots)
            res.steps += 1
            res.cycles.append((idx, "STEP", cost_step(cm, b, config)))
        elif op == OP_MID:
            if phase != PHASE_R:
                return fail("BAD_SEQUENCE", idx)
            n, b = cfg["n"], cfg["b"]
            if len(written) != b:
                return fail("UNWRITTEN", idx)
            j = np.arange(n)
            H[(j % b) * b + j // b] = apply_out(acc[:n], cfg["mid"])
            written.clear()
            phase = PHASE_L
            res.cycles.append((idx, "MID", cost_mid(n, b, config)))
        else:  # OUTPUT
            if phase != PHASE_L:
                return fail("BAD_SEQUENCE", idx)
            n, b = cfg["n"], cfg["b"]
            if len(written) != b:
                return fail("UNWRITTEN", idx)
            res.outputs.append(apply_out(acc[:n], cfg["out"]).astype(np.int64))
            written.clear()
            phase = PHASE_IDLE
            res.cycles.append((idx, "OUTPUT", cost_output(n, config)))
    return res
