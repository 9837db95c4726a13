"""The column activity a program exercises on the tile: what ``hdl.cim`` reports on its
``adc_rows`` / ``adc_bits`` status outputs.

For every STEP and every column it reads, the tile counts the *fired rows whose cell
holds a nonzero weight* (a fired row with a zero cell adds nothing to the column's sum).
The largest count over the STEPs of a token (INPUT .. OUTPUT) is that token's exercised
ADC range; ``adc_bits`` = ``ceil(log2(rows + 1))``, the resolution an analog macro with
1-bit inputs and 1-bit cells (:mod:`golden.cim.energy`) would need to digitize it. It is
at most the mapping's design figure (:func:`golden.cim.evaluate.monarch_steps`: fired
rows holding a *stored* weight), equal unless some stored weights are zero.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import FormatError
from .config import CIMConfig
from .execute import execute
from .isa import OP_CFG, OP_INPUT, OP_LOADW, OP_OUTPUT, OP_STEP, decode_word


def rows_bits(rows: int) -> int:
    """``ceil(log2(rows + 1))`` (0 for 0 rows): the tile's ``adc_bits`` for ``rows``."""
    return int(rows).bit_length()


@dataclass(frozen=True)
class Activity:
    steps: tuple             # per STEP: largest fired-nonzero-rows count over its read columns
    tokens: tuple            # per OUTPUT: largest over the token's STEPs

    @property
    def bits(self) -> tuple:
        return tuple(rows_bits(r) for r in self.tokens)


def program_activity(words, config: CIMConfig, act_beats=()) -> Activity:
    """Per-step and per-token exercised rows of a program (run until its first error)."""
    words = [int(w) for w in words]
    res = execute(words, config, act_beats)
    end = res.error_index if res.error != "OK" else len(words)
    m, A = config.m, config.arrays
    nz = np.zeros((A, m, m), dtype=bool)        # [array, row, column] weight != 0
    b = None
    steps, tokens = [], []
    cur = 0
    i = 0
    while i < end:
        ins = decode_word(words[i])
        op = words[i] & 0xF
        i += 1
        if op == OP_CFG:
            b = 1 << ins.fields["log2b"]
        elif op == OP_LOADW:
            f = ins.fields
            wpc = config.words_per_column
            for c in range(f["ncols"]):
                raw = b"".join(w.to_bytes(8, "little") for w in words[i + c * wpc:i + (c + 1) * wpc])
                nz[f["array"], :, f["col"] + c] = np.frombuffer(raw, dtype=np.int8) != 0
            i += f["ncols"] * wpc
        elif op == OP_INPUT:
            cur = 0
        elif op == OP_STEP:
            if b is None:
                raise FormatError("program: STEP before CFG")
            f = ins.fields
            g = m // b
            rows = np.repeat([(f["row_mask"] >> s) & 1 for s in range(g)], b).astype(bool)
            cols = np.repeat([(f["col_mask"] >> s) & 1 for s in range(g)], b).astype(bool)
            cnt = int((nz[f["array"]][rows][:, cols]).sum(axis=0).max())
            steps.append(cnt)
            cur = max(cur, cnt)
        elif op == OP_OUTPUT:
            tokens.append(cur)
    return Activity(tuple(steps), tuple(tokens))
