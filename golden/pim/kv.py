"""The KV cache of decode attention in the Logic-PIM's DRAM banks: which bank bundle,
row and column hold the K and V rows of each (request, position, KV head), how a decode
step appends its row, and how much context a bank slice holds (docs/attention.md).

A *slot* is one (request, KV head) pair: ``slot = request * kv_heads + head``. Each
slot is ``2 * capacity`` rows of ``kw = ceil(head_dim / elems)`` words, K rows first,
then V rows, at consecutive word addresses from ``base``:

    K[request, head, pos] at  base + (slot * 2 * capacity + pos) * kw
    V[request, head, pos] at  base + (slot * 2 * capacity + capacity + pos) * kw

A row is ``kw`` consecutive words (element e of a word = byte e, the head dim
zero-padded to whole words, as ``pack_rows``). The unit's address map
(:meth:`PIMConfig.split_addr`) turns a word address into (bundle, DRAM row, column):
a slot's K rows (and its V rows) are one contiguous stream, so the attention's
score pass and value pass read them at full bundle rate, alternating bundles every
``cols`` words like a GEMM's weight rows. The unit holds ``base``, ``capacity``
and ``kw`` in registers (``SET_KV``); ``APPEND_KV`` writes the K and V rows of one
position of one slot; ``ATTN`` runs one slot's query group over its first ``len``
positions.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import FormatError
from .config import PIMConfig
from .program import pack_rows


def _int(v, field: str) -> int:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise FormatError(f"{field}: expected an integer, got {v!r}")
    return int(v)


def check_build(cfg: PIMConfig) -> None:
    """FormatError unless the build has attention hardware."""
    if cfg.attn_heads == 0:
        raise FormatError("attn_heads: 0 in this build (no attention hardware: ATTN, "
                          "APPEND_KV and SET_KV are illegal opcodes)")


def head_words(cfg: PIMConfig, head_dim: int) -> int:
    """Words of one K or V row; FormatError if the build cannot hold the head dim."""
    check_build(cfg)
    d = _int(head_dim, "head_dim")
    kw = -(-d // cfg.elems) if d > 0 else 0
    if not 1 <= kw <= cfg.attn_kw:
        raise FormatError(f"head_dim: {d} out of range 1..{cfg.attn_kw * cfg.elems} "
                          f"(attn_kw = {cfg.attn_kw} words of {cfg.elems} elements)")
    return kw


def max_capacity(cfg: PIMConfig, head_dim: int, slots: int, base: int = 0) -> int:
    """The longest context (positions per slot) ``slots`` slots can hold from ``base``:
    limited by the bank slice (``cfg.words``) and by the score buffer (``attn_len``)."""
    kw = head_words(cfg, head_dim)
    slots, base = _int(slots, "slots"), _int(base, "base")
    if slots < 1:
        raise FormatError(f"slots: {slots} must be >= 1")
    if not 0 <= base < cfg.words:
        raise FormatError(f"base: {base} out of range 0..{cfg.words - 1}")
    return min(cfg.attn_len, (cfg.words - base) // (2 * kw * slots))


@dataclass(frozen=True)
class KVLayout:
    """The KV cache of ``requests`` requests x ``kv_heads`` KV heads, ``capacity``
    positions each, head dim ``head_dim``, from word address ``base``."""

    cfg: PIMConfig
    head_dim: int
    kv_heads: int
    requests: int
    capacity: int
    base: int = 0

    def __post_init__(self):
        kw = head_words(self.cfg, self.head_dim)
        for name in ("kv_heads", "requests", "capacity"):
            if _int(getattr(self, name), name) < 1:
                raise FormatError(f"{name}: {getattr(self, name)} must be >= 1")
        base = _int(self.base, "base")
        if not 0 <= base < self.cfg.words:
            raise FormatError(f"base: {base} out of range 0..{self.cfg.words - 1}")
        if self.capacity > self.cfg.attn_len:
            raise FormatError(f"capacity: context {self.capacity} longer than the build's "
                              f"attn_len = {self.cfg.attn_len} (the score buffer)")
        if self.capacity >= 1 << 16 or self.slots > 1 << 16:
            raise FormatError(f"capacity/slots: {self.capacity}/{self.slots} exceed the "
                              "16-bit instruction fields")
        if self.end > self.cfg.words:
            cap = max_capacity(self.cfg, self.head_dim, self.slots, base)
            raise FormatError(f"capacity: {self.slots} slots x {self.capacity} positions x "
                              f"2 x {kw} words from {base} end at {self.end}, beyond the "
                              f"bank slice's {self.cfg.words} words (at most {cap} positions)")

    @property
    def kw(self) -> int:
        return -(-self.head_dim // self.cfg.elems)

    @property
    def slots(self) -> int:
        return self.requests * self.kv_heads

    @property
    def slot_words(self) -> int:
        return 2 * self.capacity * self.kw

    @property
    def end(self) -> int:
        """One past the last word of the cache."""
        return self.base + self.slots * self.slot_words

    def slot(self, request: int, head: int) -> int:
        r, h = _int(request, "request"), _int(head, "head")
        if not 0 <= r < self.requests:
            raise FormatError(f"request: {r} out of range 0..{self.requests - 1}")
        if not 0 <= h < self.kv_heads:
            raise FormatError(f"head: {h} out of range 0..{self.kv_heads - 1} (KV heads)")
        return r * self.kv_heads + h

    def _pos(self, pos) -> int:
        p = _int(pos, "pos")
        if not 0 <= p < self.capacity:
            raise FormatError(f"pos: {p} out of range 0..{self.capacity - 1} (the slot's "
                              "capacity)")
        return p

    def k_addr(self, request: int, head: int, pos: int = 0) -> int:
        """Word address of the first word of K[request, head, pos]."""
        return self.base + (self.slot(request, head) * 2 * self.capacity
                            + self._pos(pos)) * self.kw

    def v_addr(self, request: int, head: int, pos: int = 0) -> int:
        """Word address of the first word of V[request, head, pos]."""
        return self.k_addr(request, head, pos) + self.capacity * self.kw

    def locate(self, request: int, pos: int, head: int, which: str = "K") -> list:
        """(bundle, row, col) of each word of the K or V row of (request, pos, head)."""
        if which not in ("K", "V"):
            raise FormatError(f"which: {which!r} must be 'K' or 'V'")
        a = (self.k_addr if which == "K" else self.v_addr)(request, head, pos)
        return [self.cfg.split_addr(a + w) for w in range(self.kw)]

    def check_length(self, length) -> int:
        n = _int(length, "length")
        if not 1 <= n <= self.capacity:
            raise FormatError(f"length: context {n} out of range 1..{self.capacity} "
                              "(the slot's capacity)")
        return n

    def image(self, k_cache, v_cache) -> dict:
        """Word address -> word of a whole cache: ``k_cache``, ``v_cache`` int8
        (requests, kv_heads, L, head_dim) with ``L <= capacity`` (positions past L
        are not written)."""
        out = {}
        for name, c in (("k_cache", k_cache), ("v_cache", v_cache)):
            a = np.asarray(c)
            if a.dtype != np.int8 or a.ndim != 4 or a.shape[:2] != (self.requests, self.kv_heads) \
                    or a.shape[3] != self.head_dim:
                raise FormatError(f"{name}: expected int8 ({self.requests}, {self.kv_heads}, L, "
                                  f"{self.head_dim}), got {a.dtype} {a.shape}")
            self.check_length(a.shape[2])
            addr = self.k_addr if name == "k_cache" else self.v_addr
            for r in range(self.requests):
                for h in range(self.kv_heads):
                    words = pack_rows(self.cfg, a[r, h])
                    a0 = addr(r, h, 0)
                    out.update({a0 + i: w for i, w in enumerate(words)})
        return out
