"""The CIM tile's program format: opcodes, error codes, the 64-bit instruction word
(:data:`INSTR_LAYOUT`, shared by the host encoder here and the RTL decoder in
``hdl.cim.tile``), the host's encoders and the static decoder.

A word is an opcode (:data:`OPCODES`) and the operands of that opcode (one member of
the union ``args``; fields LSB first, docs/cim.md has the bit table); the bits above
an opcode's operands (:data:`USED_BITS`) are reserved and must be 0.

==========  =====================================================================
CFG         ``log2b``; the ``mid`` and ``out`` output modes (kind: 0 int32,
            1 int8_sat, 2 requant; mid must be 1 or 2; mult, shift). Sets n = b*b.
LOADW       ``array``, first column ``col``, column count ``ncols`` (1..m); followed
            by ncols * m/8 data words: column c, rows 8w..8w+7 in word w (row 8w at
            bits [7:0]).
INPUT       read n/lanes activation beats into X (starts a token: stage R).
STEP        ``array``, activation line ``act_line``, accumulator line ``acc_line``,
            ``row_mask`` and ``col_mask`` (slots), ``acc`` (0: set the column's
            accumulator, 1: add to it).
MID         requantize the accumulators with ``mid``, permute by P into H (stage L).
OUTPUT      stream n/lanes beats of out(accumulator) (ends the token).
==========  =====================================================================

A malformed program sets a sticky error code (:data:`ERRORS`) and the controller
discards everything until ``clear``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth.lib import data

from ..fields import leaves, pack

OP_CFG, OP_LOADW, OP_INPUT, OP_STEP, OP_MID, OP_OUTPUT = 1, 2, 3, 4, 5, 6
OPCODES = {OP_CFG: "CFG", OP_LOADW: "LOADW", OP_INPUT: "INPUT", OP_STEP: "STEP",
           OP_MID: "MID", OP_OUTPUT: "OUTPUT"}

#: Sticky error codes of the controller (``status.error_code``).
ERRORS = {0: "OK", 1: "BAD_OPCODE", 2: "BAD_ARRAY", 3: "BAD_COLUMN", 4: "BAD_LINE",
          5: "BAD_MASK", 6: "BAD_CFG", 7: "BAD_SEQUENCE", 8: "UNWRITTEN"}
ERROR_CODES = {v: k for k, v in ERRORS.items()}

ARRAY_BITS, LINE_BITS, MASK_BITS = 10, 8, 16
MAX_ARRAYS, MAX_LINES, MAX_SLOTS = 1 << ARRAY_BITS, 1 << LINE_BITS, MASK_BITS

#: An output mode (``golden.numerics.OutMode``: code, mult, shift) in a CFG word.
MODE_LAYOUT = data.StructLayout({"kind": 2, "mult": 16, "shift": 5})
#: The operands of each opcode that has some (``args`` member name -> layout).
ARGS_LAYOUT = data.UnionLayout({
    "cfg": data.StructLayout({"log2b": 4, "mid": MODE_LAYOUT, "out": MODE_LAYOUT}),
    "loadw": data.StructLayout({"array": ARRAY_BITS, "col": 8, "ncols": 9}),
    "step": data.StructLayout({"array": ARRAY_BITS, "act_line": LINE_BITS,
                               "acc_line": LINE_BITS, "row_mask": MASK_BITS,
                               "col_mask": MASK_BITS, "acc": 1}),
})
INSTR_LAYOUT = data.FlexibleLayout(64, {"op": data.Field(4, 0),
                                        "args": data.Field(ARGS_LAYOUT, 4)})
ARGS_OF = {OP_CFG: "cfg", OP_LOADW: "loadw", OP_STEP: "step"}
_FIELDS = {p: (o, w) for p, o, w in leaves(INSTR_LAYOUT)}

#: Bits used by each opcode (everything above must be zero).
USED_BITS = {op: INSTR_LAYOUT["args"].offset + (ARGS_LAYOUT[ARGS_OF[op]].width
                                                if op in ARGS_OF else 0)
             for op in OPCODES}

PHASE_IDLE, PHASE_R, PHASE_L = 0, 1, 2


def enc_cfg(log2b: int, mid, out) -> int:
    """A CFG word; ``mid`` and ``out`` are ``golden.numerics.OutMode``."""
    modes = {k: dict(kind=m.code, mult=m.mult, shift=m.shift) for k, m in (("mid", mid),
                                                                            ("out", out))}
    return pack(INSTR_LAYOUT, {"op": OP_CFG, "args": {"cfg": dict(log2b=log2b, **modes)}})


def enc_loadw(array: int, col: int, ncols: int) -> int:
    return pack(INSTR_LAYOUT, {"op": OP_LOADW,
                               "args": {"loadw": dict(array=array, col=col, ncols=ncols)}})


def enc_step(s) -> int:
    """A STEP word from a :class:`golden.cim.mapper.Step`."""
    return pack(INSTR_LAYOUT, {"op": OP_STEP, "args": {"step": dict(
        array=s.array, act_line=s.act_line, acc_line=s.acc_line, row_mask=s.row_mask,
        col_mask=s.col_mask, acc=int(s.acc))}})


def set_field(word: int, field: str, value: int) -> int:
    """``word`` with the operand ``field`` of :data:`ARGS_LAYOUT` (``"step.array"``,
    ``"cfg.mid.kind"``...) replaced by ``value`` truncated to the field's width, unchecked:
    for building malformed programs."""
    f = _FIELDS[f"args.{field}"]
    mask = ((1 << f[1]) - 1) << f[0]
    return (int(word) & ~mask) | ((int(value) << f[0]) & mask)


def column_words(col: np.ndarray) -> list[int]:
    """m int8 weights of one column -> m/8 data words (row 8w at bits [7:0] of word w)."""
    raw = np.asarray(col, dtype=np.int8).view(np.uint8)
    return [int.from_bytes(bytes(raw[i:i + 8]), "little") for i in range(0, len(raw), 8)]


@dataclass(frozen=True)
class Instr:
    index: int               # word index of the header
    op: str
    fields: dict


#: Per opcode: (decoded name, offset, width) of its operands ("mid.kind" -> "mid_kind").
_OPERANDS = {op: [(p[len(f"args.{m}."):].replace(".", "_"), o, w)
                  for p, o, w in leaves(INSTR_LAYOUT) if p.startswith(f"args.{m}.")]
             for op, m in ARGS_OF.items()}
_OP_OFFSET, _OP_MASK = INSTR_LAYOUT["op"].offset, (1 << INSTR_LAYOUT["op"].width) - 1


def decode_word(word: int) -> Instr:
    """Static decode of one instruction header (no state checks)."""
    word = int(word)
    op = (word >> _OP_OFFSET) & _OP_MASK
    if op not in OPCODES:
        return Instr(-1, "BAD", dict(word=word))
    f = {k: (word >> o) & ((1 << w) - 1) for k, o, w in _OPERANDS.get(op, ())}
    f["reserved"] = word >> USED_BITS[op]
    return Instr(-1, OPCODES[op], f)


def decode_program(words, config) -> list[Instr]:
    """Instruction listing of a program (data words skipped); stops at an unknown opcode."""
    out = []
    i = 0
    words = [int(w) for w in words]
    while i < len(words):
        ins = decode_word(words[i])
        out.append(Instr(i, ins.op, ins.fields))
        if ins.op == "BAD":
            break
        i += 1
        if ins.op == "LOADW":
            i += ins.fields["ncols"] * config.words_per_column
    return out
