"""The Logic-PIM instruction set: opcodes, error bits, DRAM command codes and the
64-bit instruction word (:data:`INSTR_LAYOUT`), with the host's encoder and decoder.
"""
from __future__ import annotations

from amaranth.lib import data

from ..errors import FormatError
from ..fields import pack, unpack


OPCODES = {"NOP": 0, "LOAD_TOKENS": 1, "WRITE": 2, "GEMM": 3, "SET_OUT": 4, "FENCE": 5,
           "SET_KV": 8, "APPEND_KV": 9, "ATTN": 10}
#: The decode-attention instructions (illegal opcodes in a build with ``attn_heads = 0``).
ATTN_OPS = ("SET_KV", "APPEND_KV", "ATTN")
OP_NAMES = {v: k for k, v in OPCODES.items()}
ERR_OPCODE, ERR_ADDR, ERR_TOKENS, ERR_FIELD = 1, 2, 4, 8
ERR_NAMES = {ERR_OPCODE: "illegal opcode",
             ERR_ADDR: "address out of range (also: KV slot, position or context beyond "
                       "the cache)",
             ERR_TOKENS: "token count / K out of range or no tokens loaded (also: query "
                         "head count or head dim the attention cannot take)",
             ERR_FIELD: "bad field"}
#: DRAM command codes on the command-bus port.
CMD_ACT, CMD_PRE, CMD_RD, CMD_WR, CMD_REF = 1, 2, 3, 4, 5
CMD_NAMES = {CMD_ACT: "ACT", CMD_PRE: "PRE", CMD_RD: "RD", CMD_WR: "WR", CMD_REF: "REF"}

#: The instruction word: the opcode ``op``, then one argument struct per opcode
#: (the union ``args``: the field set of ``op``); reserved bits are ignored.
ARGS_LAYOUT = data.UnionLayout({
    "load_tokens": data.StructLayout({"t": 8, "kw": 12}),
    "write": data.StructLayout({"addr": 32, "count": 24}),
    "gemm": data.StructLayout({"addr": 32, "n": 16}),
    "set_out": data.StructLayout({"mode": 2, "shift": 5, "mult": 16}),
    "set_kv": data.StructLayout({"base": 32, "cap": 16, "kw": 12}),
    "append_kv": data.StructLayout({"slot": 16, "pos": 16}),
    "attn": data.StructLayout({"slot": 16, "len": 16, "mult": 16, "shift": 6}),
})
INSTR_LAYOUT = data.FlexibleLayout(64, {"op": data.Field(4, 0),
                                         "args": data.Field(ARGS_LAYOUT, 4)})
INSTR_BITS = INSTR_LAYOUT.size
#: The ``args`` member of each opcode that has operands.
ARGS_OF = {"LOAD_TOKENS": "load_tokens", "WRITE": "write", "GEMM": "gemm", "SET_OUT": "set_out",
           "SET_KV": "set_kv", "APPEND_KV": "append_kv", "ATTN": "attn"}


def encode(op: str, **fields_) -> int:
    """Encode one instruction; fields: t, kw (LOAD_TOKENS), addr, count (WRITE),
    addr, n (GEMM), mode, shift, mult (SET_OUT), base, cap, kw (SET_KV), slot, pos
    (APPEND_KV), slot, len, mult, shift (ATTN: the softmax scale). Unchecked against a config (so a
    test can build bad instructions); :class:`~golden.pim.Program` checks."""
    if op not in OPCODES:
        raise FormatError(f"op: unknown opcode {op!r} (expected one of {sorted(OPCODES)})")
    member = ARGS_OF.get(op)
    names = {n for n, _ in ARGS_LAYOUT[member].shape} if member else set()
    for k in fields_:
        if k not in names:
            raise FormatError(f"{k}: not a field of {op}")
    init = {"op": OPCODES[op]}
    if fields_:
        init["args"] = {member: fields_}
    return pack(INSTR_LAYOUT, init)


def decode(word: int) -> dict:
    """Fields of an instruction word (all of them, whatever the opcode); the attention
    fields are ``kv_base``, ``kv_cap``, ``kv_kw`` (SET_KV), ``slot``, ``pos``
    (APPEND_KV; ATTN's ``slot`` is the same bits), ``len``, ``sm_mult``, ``sm_shift``
    (ATTN)."""
    f = unpack(INSTR_LAYOUT, word)
    op = f["op"]
    return dict(op=op, name=OP_NAMES.get(op, f"ILLEGAL_{op}"), t=f["args.load_tokens.t"],
                kw=f["args.load_tokens.kw"], addr=f["args.write.addr"],
                count=f["args.write.count"], n=f["args.gemm.n"], mode=f["args.set_out.mode"],
                shift=f["args.set_out.shift"], mult=f["args.set_out.mult"],
                kv_base=f["args.set_kv.base"], kv_cap=f["args.set_kv.cap"],
                kv_kw=f["args.set_kv.kw"], slot=f["args.append_kv.slot"],
                pos=f["args.append_kv.pos"], len=f["args.attn.len"],
                sm_mult=f["args.attn.mult"], sm_shift=f["args.attn.shift"])
