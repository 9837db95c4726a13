"""Formal proofs of moe-rtl's stream buffers and engines (SymbiYosys from PyPI).

``python -m formal`` runs them (docs/formal.md); :mod:`formal.proofs` lists them,
:mod:`formal.core` is the flow (harness -> RTLIL -> .sby -> yowasp-sby)."""
