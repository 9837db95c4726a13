"""Building Logic-PIM instruction streams: weight/token word packing and :class:`Program`
(instruction words plus the data-stream words they consume, checked against a config).
"""
from __future__ import annotations

import numpy as np

from ..errors import FormatError
from ..numerics import parse_out
from ..softmax import check_config
from .config import PIMConfig
from .isa import INSTR_BITS, encode


def pack_rows(cfg: PIMConfig, mat) -> list[int]:
    """int8 (rows, K) -> bundle words, each row zero-padded to whole words.

    Element e of a word is byte e (little end first): the RTL's lane e.
    """
    a = np.asarray(mat)
    if a.ndim != 2 or a.dtype != np.int8:
        raise FormatError(f"mat: expected a 2-D int8 array, got {a.dtype} shape {a.shape}")
    w = cfg.elems
    kw = max(1, -(-a.shape[1] // w))
    pad = np.zeros((a.shape[0], kw * w), np.int8)
    pad[:, :a.shape[1]] = a
    raw = pad.view(np.uint8).reshape(-1, w)
    return [int.from_bytes(r.tobytes(), "little") for r in raw]


def unpack_words(cfg: PIMConfig, words) -> np.ndarray:
    """bundle words -> int8 (len, elems)."""
    nb = cfg.elems
    buf = b"".join(int(x).to_bytes(nb, "little") for x in words)
    return np.frombuffer(buf, np.int8).reshape(-1, nb).copy()


class Program:
    """Instruction words plus the data-stream words they consume, checked against a config."""

    def __init__(self, cfg: PIMConfig):
        self.cfg = cfg
        self.words: list[int] = []
        self.din: list[int] = []

    def raw(self, word: int, din=()) -> "Program":
        """Append any 64-bit word (also illegal ones) and the data words it should consume."""
        if not 0 <= int(word) < 1 << INSTR_BITS:
            raise FormatError(f"word: {word!r} is not a 64-bit instruction")
        self.words.append(int(word))
        self.din.extend(int(x) for x in din)
        return self

    def nop(self):
        return self.raw(encode("NOP"))

    def fence(self):
        return self.raw(encode("FENCE"))

    def set_out(self, out):
        m = parse_out(out)
        return self.raw(encode("SET_OUT", mode=m.code, shift=m.shift, mult=m.mult))

    def load_tokens(self, x):
        """x: int8 (t, K) token vectors."""
        x = np.asarray(x)
        if x.ndim != 2 or x.dtype != np.int8:
            raise FormatError(f"x: expected int8 (tokens, K), got {x.dtype} {x.shape}")
        t, k = x.shape
        kw = -(-k // self.cfg.elems)
        if not 1 <= t <= self.cfg.max_tokens:
            raise FormatError(f"tokens: {t} out of range 1..{self.cfg.max_tokens}")
        if not 1 <= kw <= self.cfg.max_k_words:
            raise FormatError(f"K: {k} needs {kw} words, range 1..{self.cfg.max_k_words}")
        return self.raw(encode("LOAD_TOKENS", t=t, kw=kw), pack_rows(self.cfg, x))

    def write(self, addr: int, words):
        words = list(words)
        if not words or addr < 0 or addr + len(words) > self.cfg.words:
            raise FormatError(f"addr: WRITE of {len(words)} words at {addr} outside "
                              f"0..{self.cfg.words}")
        return self.raw(encode("WRITE", addr=addr, count=len(words)), words)

    def write_matrix(self, addr: int, w):
        """Store int8 (rows, K) weights row-major, each row padded to whole words."""
        return self.write(addr, pack_rows(self.cfg, w))

    def set_kv(self, layout):
        """SET_KV: the unit's KV-cache registers from a :class:`golden.pim.kv.KVLayout`."""
        if layout.cfg != self.cfg:
            raise FormatError("layout: built for another PIMConfig")
        return self.raw(encode("SET_KV", base=layout.base, cap=layout.capacity, kw=layout.kw))

    def append_kv(self, layout, request: int, head: int, pos: int, k_row, v_row):
        """APPEND_KV: the K and V rows (int8, head_dim each) of one position of a slot."""
        rows = []
        for name, r in (("k_row", k_row), ("v_row", v_row)):
            a = np.asarray(r)
            if a.dtype != np.int8 or a.shape != (layout.head_dim,):
                raise FormatError(f"{name}: expected int8 ({layout.head_dim},), got "
                                  f"{a.dtype} {a.shape}")
            rows += pack_rows(self.cfg, a[None])
        layout.k_addr(request, head, pos)          # FormatError on a bad slot / position
        return self.raw(encode("APPEND_KV", slot=layout.slot(request, head), pos=pos), rows)

    def attention(self, layout, request: int, head: int, q, length: int, sm_mult: int,
                  sm_shift: int):
        """LOAD_TOKENS(q) + ATTN: the group of query heads ``q`` (int8 (G, head_dim))
        that share KV head ``head`` of ``request``, over its first ``length``
        positions; ``sm_mult``/``sm_shift`` the softmax scale (golden.softmax)."""
        q = np.asarray(q)
        if q.dtype != np.int8 or q.ndim != 2 or q.shape[1] != layout.head_dim:
            raise FormatError(f"q: expected int8 (G, {layout.head_dim}), got {q.dtype} {q.shape}")
        if not 1 <= q.shape[0] <= self.cfg.attn_heads:
            raise FormatError(f"q: {q.shape[0]} query heads in the group, the build holds "
                              f"1..{self.cfg.attn_heads} (attn_heads)")
        n = layout.check_length(length)
        check_config(sm_mult, sm_shift)
        self.load_tokens(q)
        return self.raw(encode("ATTN", slot=layout.slot(request, head), len=n, mult=sm_mult,
                               shift=sm_shift))

    def gemm(self, addr: int, n: int):
        if not 1 <= n < 1 << 16 or addr < 0:
            raise FormatError(f"n: GEMM rows {n} out of range 1..65535 (addr {addr})")
        return self.raw(encode("GEMM", addr=addr, n=n))


def gemm_program(cfg: PIMConfig, n: int, k: int, tokens: int, addr: int = 0) -> list[int]:
    """Instruction words of LOAD_TOKENS(tokens x k) + GEMM(n rows) (data irrelevant for timing)."""
    kw = -(-k // cfg.elems)
    return [encode("LOAD_TOKENS", t=tokens, kw=kw), encode("GEMM", addr=addr, n=n)]
