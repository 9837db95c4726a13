"""SVG pictures of a CIM mapping (pure Python, no plotting library): the placement of the
L and R blocks on the arrays, and cycles / energy per mapping side by side.

:func:`placement_svg` draws each array as its ``g x g`` grid of ``b x b`` slots; a slot
holding a block shows its factor and block index (``R5``, ``L12``; ``m2:R5`` when
several matrices share the arrays) and is coloured by its block diagonal
``(column slot - row slot) mod g`` (DenseMap: one colour per diagonal, all ``g`` of them
in every full array; SparseMap: everything on diagonal 0, the rest of the array empty).
"""
from __future__ import annotations

from html import escape

from .mapper import Mapping

CELL = 26          # px per slot
GAP = 18           # px between arrays


def _colour(d: int, g: int) -> str:
    return f"hsl({round(360 * d / max(1, g))}, 65%, 72%)"


def placement_svg(mapping: Mapping, *, max_arrays: int = 16, per_row: int = 4) -> str:
    """SVG text of the block placement of ``mapping`` (first ``max_arrays`` arrays)."""
    mp, g, b = mapping, mapping.g, mapping.b
    shown = min(mp.arrays, max_arrays)
    side = g * CELL
    cols = max(1, min(per_row, shown))
    rows = -(-shown // cols)
    head = 40
    height = head + rows * (side + GAP + 14) + (16 if shown < mp.arrays else 0) + GAP
    title = (f"{mp.strategy} mapping: n={mp.n}, b={b}, {mp.array_size}x{mp.array_size} arrays "
             f"(g={g} slots), {mp.matrices} matrix(es), {mp.arrays} arrays, "
             f"utilization {100 * mp.utilization:.1f} %")
    # wide enough for the arrays and for the title and legend lines (about 7 px a
    # character at 12 px, 5.5 at 9 px)
    width = max(cols * (side + GAP) + GAP, int(7 * len(title)) + 2 * GAP, 420)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="9">',
           f'<text x="{GAP}" y="18" font-size="12">{escape(title)}</text>',
           f'<text x="{GAP}" y="32">colour = block diagonal (column slot - row slot) mod g; '
           f'label = factor and block</text>']
    by_array: dict = {}
    for blk in mp.blocks:
        by_array.setdefault(blk.array, []).append(blk)
    for i in range(shown):
        x0 = GAP + (i % cols) * (side + GAP)
        y0 = head + (i // cols) * (side + GAP + 14) + 12
        out.append(f'<text x="{x0}" y="{y0 - 3}">array {i}</text>')
        out.append(f'<rect x="{x0}" y="{y0}" width="{side}" height="{side}" fill="#f4f4f4" '
                   f'stroke="#888"/>')
        for blk in by_array.get(i, []):
            rs, cs = blk.row0 // b, blk.col0 // b
            d = (cs - rs) % g
            x, y = x0 + cs * CELL, y0 + rs * CELL
            label = f"{blk.factor}{blk.block}"
            if mp.matrices > 1:
                label = f"m{blk.matrix}:{label}"
            out.append(f'<rect x="{x}" y="{y}" width="{CELL}" height="{CELL}" '
                       f'fill="{_colour(d, g)}" stroke="#555" stroke-width="0.5">'
                       f'<title>{escape(label)}: rows {blk.row0}..{blk.row0 + b - 1}, cols '
                       f'{blk.col0}..{blk.col0 + b - 1}, diagonal {d}</title></rect>')
            out.append(f'<text x="{x + 2}" y="{y + CELL / 2 + 3}" font-size="7">'
                       f'{escape(label)}</text>')
    if shown < mp.arrays:
        out.append(f'<text x="{GAP}" y="{height - GAP}">... and {mp.arrays - shown} more '
                   f'arrays</text>')
    out.append("</svg>")
    return "\n".join(out)


def bars_svg(evals: dict, *, width: int = 560) -> str:
    """Cycles and energy per token of each mapping, side by side (``evaluate_all``'s
    dict of :class:`golden.cim.evaluate.Evaluation`); each bar labelled with its value."""
    metrics = (("cycles per token", lambda e: e.cycles, "{:.0f}"),
               ("energy per token (nJ)", lambda e: e.energy_total_pj / 1e3, "{:.1f}"))
    names = list(evals)
    bar_h, pad, label_w = 16, 8, 210
    panel_h = len(names) * (bar_h + 4) + 24
    height = len(metrics) * (panel_h + pad) + pad
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="10">']
    for k, (title, get, fmt) in enumerate(metrics):
        y0 = pad + k * (panel_h + pad)
        vals = [get(evals[n]) for n in names]
        top = max(vals) or 1
        out.append(f'<text x="4" y="{y0 + 12}" font-size="11">{escape(title)}</text>')
        for i, (n, v) in enumerate(zip(names, vals)):
            y = y0 + 20 + i * (bar_h + 4)
            w = (width - label_w - 60) * v / top
            out.append(f'<text x="4" y="{y + 12}">{escape(evals[n].label)}</text>')
            out.append(f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" '
                       f'fill="hsl({60 * i}, 55%, 60%)"/>')
            out.append(f'<text x="{label_w + w + 4:.1f}" y="{y + 12}">{fmt.format(v)}</text>')
    out.append("</svg>")
    return "\n".join(out)
