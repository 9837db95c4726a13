"""Instruction and descriptor words described by ``amaranth.lib.data`` layouts.

Each hardware word format (the Logic-PIM instruction, the CIM program word, the
MoE top's descriptor and token entry) is one layout, defined next to its golden
model and shared by both sides: the host encodes and decodes words with the
helpers here, the RTL views its instruction signal through the same layout. A
layout is a bit-level contract, not logic, so the golden models may import it.

* :func:`pack` - a word from (nested) field values, each range-checked (a
  :class:`~golden.errors.FormatError` names the field and the value); the same
  bits as ``layout.const(values).as_bits()``;
* :func:`unpack` - every leaf field of a word, by dotted name
  (``"args.gemm.n"``); the same values as ``layout.from_bits(word)``;
* :func:`leaves` - every leaf field as (dotted name, offset, width), for the
  docs' bit tables and the tests that check them.

``pack`` and ``unpack`` read the field offsets and widths from the layout once and
then work on integers: ``data.Const`` recomputes layout sizes on every field
access, about a hundred times slower, and the golden interpreters decode every
instruction of long programs.
"""
from __future__ import annotations

from amaranth.lib import data

from .errors import FormatError

_CACHE: dict = {}


def leaves(layout: data.Layout, prefix: str = "", base: int = 0):
    """(dotted name, offset, width) of every non-layout field, in layout order."""
    for name, f in layout:
        path = f"{prefix}{name}"
        if isinstance(f.shape, data.Layout):
            yield from leaves(f.shape, path + ".", base + f.offset)
        else:
            yield path, base + f.offset, f.width


def _leaf_table(layout: data.Layout) -> dict:
    hit = _CACHE.get(id(layout))
    if hit is None or hit[0] is not layout:
        hit = _CACHE[id(layout)] = (layout, {p: (o, w) for p, o, w in leaves(layout)})
    return hit[1]


def pack(layout: data.Layout, values: dict) -> int:
    """The word whose fields hold ``values`` (nested dicts for sub-layouts, at most one
    member of a union; fields not given are 0), assigned in order as ``layout.const``
    does. Every value must be an integer that fits its field."""
    table = _leaf_table(layout)
    word = 0

    def walk(lay, vals, prefix):
        nonlocal word
        if isinstance(lay, data.UnionLayout) and len(vals) > 1:
            raise FormatError(f"{prefix.rstrip('.') or 'word'}: at most one member of the "
                              f"union can be given, got {sorted(vals)}")
        for name, v in vals.items():
            try:
                f = lay[name]
            except KeyError:
                raise FormatError(f"{name}: not a field of {prefix.rstrip('.') or 'the word'}"
                                  ) from None
            if isinstance(f.shape, data.Layout):
                if not isinstance(v, dict):
                    raise FormatError(f"{name}: expected the fields of {name} as a dict, "
                                      f"got {v!r}")
                walk(f.shape, v, f"{prefix}{name}.")
                continue
            off, w = table[f"{prefix}{name}"]
            if isinstance(v, bool) or not hasattr(v, "__index__") or not 0 <= int(v) < 1 << w:
                raise FormatError(f"{name}: {v!r} does not fit the {w}-bit field")
            word = (word & ~(((1 << w) - 1) << off)) | (int(v) << off)

    walk(layout, values, "")
    return word


def unpack(layout: data.Layout, word: int) -> dict:
    """Every leaf field of ``word`` by dotted name (bits above ``layout.size`` ignored)."""
    word = int(word)
    return {p: (word >> o) & ((1 << w) - 1) for p, (o, w) in _leaf_table(layout).items()}
