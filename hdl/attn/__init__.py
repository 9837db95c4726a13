"""Attention parts shared by the Logic-PIM and the SpTC side: the integer softmax
unit (:mod:`hdl.attn.softmax`, the RTL of :mod:`golden.softmax`). docs/attention.md
has the numerics contract and the unit's timing."""
