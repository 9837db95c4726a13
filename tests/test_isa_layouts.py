"""The instruction / descriptor layouts: the docs' bit tables against them, and the host's
encoder (golden.fields) against ``amaranth.lib.data``'s own ``const`` / ``from_bits``.

Formats: the Logic-PIM instruction (golden.pim.isa.INSTR_LAYOUT, docs/pim.md), the CIM
program word (golden.cim.isa.INSTR_LAYOUT, docs/cim.md), the MoE top's descriptor and
token entry (golden.program.DESC_LAYOUT / TOK_LAYOUT, docs/moe.md).
"""
import re
from pathlib import Path

import numpy as np
import pytest
from amaranth.lib import data

from golden import FormatError
from golden import cim as gc
from golden import program as gprog
from golden.cim import isa as cim_isa
from golden.fields import leaves, pack, unpack
from golden.pim import isa as pim_isa

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _span(hi, lo):
    """(offset, width) of a doc's ``[hi:lo]`` or ``[bit]``."""
    hi = int(hi)
    lo = hi if lo in (None, "") else int(lo)
    return lo, hi - lo + 1


def _member(layout, op_member):
    """{leaf name inside args.<member>: (offset, width)} of a layout with an ``args`` union."""
    pre = f"args.{op_member}."
    return {p[len(pre):]: (o, w) for p, o, w in leaves(layout) if p.startswith(pre)}


def _table_rows(text, header):
    """Cells of the rows of the markdown table whose header line starts with ``header``."""
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith(header))
    rows = []
    for ln in lines[start + 2:]:
        if not ln.startswith("|"):
            break
        rows.append([c.strip() for c in ln.strip("|").split("|")])
    return rows


def test_pim_doc_table_matches_layout():
    rows = _table_rows((DOCS / "pim.md").read_text(), "| op | name | fields |")
    seen = set()
    assert pim_isa.INSTR_LAYOUT["op"].offset == 0 and pim_isa.INSTR_LAYOUT["op"].width == 4
    for op, name, fields, *_ in rows:
        if name not in pim_isa.OPCODES:
            continue
        assert int(op) == pim_isa.OPCODES[name], name
        doc = {f: _span(hi, lo) for f, hi, lo in re.findall(r"(\w+) \[(\d+)(?::(\d+))?\]", fields)}
        member = pim_isa.ARGS_OF.get(name)
        assert doc == (_member(pim_isa.INSTR_LAYOUT, member) if member else {}), name
        seen.add(name)
    assert seen == set(pim_isa.OPCODES)
    assert pim_isa.INSTR_BITS == 64


def test_cim_doc_table_matches_layout():
    rows = _table_rows((DOCS / "cim.md").read_text(), "| op | name | fields |")
    seen = set()
    for op, name, fields in rows:
        code = int(op)
        assert gc.OPCODES[code] == name
        doc = {f: _span(hi, lo)
               for hi, lo, f in re.findall(r"`\[(\d+)(?::(\d+))?\]` `([\w.]+)`", fields)}
        member = cim_isa.ARGS_OF.get(code)
        assert doc == (_member(cim_isa.INSTR_LAYOUT, member) if member else {}), name
        # the reserved bits start right above the highest documented field
        top = max((o + w for o, w in doc.values()), default=4)
        assert cim_isa.USED_BITS[code] == top, name
        seen.add(code)
    assert seen == set(gc.OPCODES)


def test_moe_doc_tables_match_layouts():
    text = (DOCS / "moe.md").read_text()
    desc_text, tok_text = text.split("Token entry (", 1)
    desc_text = desc_text.split("Descriptor (", 1)[1]
    for t, layout in ((desc_text, gprog.DESC_LAYOUT), (tok_text, gprog.TOK_LAYOUT)):
        assert int(re.match(r"(\d+) bits", t).group(1)) == layout.size
        rows = _table_rows(t, "| bits | field |")
        doc = {}
        for bits, name, _ in rows:
            hi, lo = re.fullmatch(r"\[(\d+)(?::(\d+))?\]", bits).groups()
            doc[name] = _span(hi, lo)
        assert doc == {p: (o, w) for p, o, w in leaves(layout)}


LAYOUTS = [pim_isa.INSTR_LAYOUT, cim_isa.INSTR_LAYOUT, gprog.DESC_LAYOUT, gprog.TOK_LAYOUT]


def _random_init(layout, rng):
    """Random field values for ``layout`` (one random member of each union)."""
    if isinstance(layout, data.UnionLayout):
        names = [n for n, _ in layout]
        name = names[rng.integers(len(names))]
        return {name: _random_init(layout[name].shape, rng)}
    out = {}
    for name, f in layout:
        if isinstance(f.shape, data.Layout):
            out[name] = _random_init(f.shape, rng)
        else:
            out[name] = int.from_bytes(rng.bytes(8), "little") & ((1 << f.width) - 1)
    return out


@pytest.mark.parametrize("layout", LAYOUTS, ids=["pim", "cim", "moe_desc", "moe_tok"])
def test_pack_unpack_agree_with_amaranth(layout):
    rng = np.random.default_rng(0)
    for _ in range(200):
        init = _random_init(layout, rng)
        word = pack(layout, init)
        assert word == layout.const(init).as_bits()
        ref = layout.from_bits(word)
        got = unpack(layout, word)
        for path, off, width in leaves(layout):
            v = ref
            for part in path.split("."):
                v = v[part]
            assert got[path] == v == (word >> off) & ((1 << width) - 1), path


def test_pack_checks_every_field():
    with pytest.raises(FormatError, match=r"expert: 256 does not fit the 8-bit field"):
        pack(gprog.DESC_LAYOUT, dict(kind=0, expert=256))
    with pytest.raises(FormatError, match=r"kind: -1"):
        pack(gprog.DESC_LAYOUT, dict(kind=-1))
    with pytest.raises(FormatError, match=r"valid: True"):
        pack(gprog.TOK_LAYOUT, dict(valid=True))
    with pytest.raises(FormatError, match=r"shift: 32 does not fit the 5-bit field"):
        pack(cim_isa.INSTR_LAYOUT, {"op": 1, "args": {"cfg": {"mid": {"shift": 32}}}})
    with pytest.raises(FormatError, match=r"colour: not a field of args.step"):
        pack(cim_isa.INSTR_LAYOUT, {"op": 4, "args": {"step": {"colour": 1}}})
    with pytest.raises(FormatError, match=r"at most one member"):
        pack(pim_isa.INSTR_LAYOUT, {"args": {"gemm": {"n": 1}, "write": {"count": 1}}})
    with pytest.raises(FormatError, match=r"ncols: 512"):
        gc.enc_loadw(0, 0, 512)
    with pytest.raises(FormatError, match=r"count: 16777216"):
        pim_isa.encode("WRITE", addr=0, count=1 << 24)


def test_cim_decode_word_uses_the_layout():
    step = gc.Step(matrix=0, stage=0, array=1023, act_line=7, acc_line=255, row_mask=0x8001,
                   col_mask=0xFFFF, acc=True)
    ins = gc.decode_word(gc.enc_step(step))
    assert ins.op == "STEP"
    assert ins.fields == dict(array=1023, act_line=7, acc_line=255, row_mask=0x8001,
                              col_mask=0xFFFF, acc=1, reserved=0)
    from golden.numerics import OutMode
    w = gc.enc_cfg(5, OutMode("requant", 977, 13), OutMode("int8_sat"))
    assert gc.decode_word(w).fields == dict(log2b=5, mid_kind=2, mid_mult=977, mid_shift=13,
                                            out_kind=1, out_mult=0, out_shift=0, reserved=0)
    assert gc.decode_word(w | 1 << 60).fields["reserved"] == 1 << (60 - 54)
