"""Amaranth 0.5 components of moe-rtl.

One sub-package per engine (``hdl.sptc``, ``hdl.pim``, ``hdl.cim``) plus the
shared parts every engine uses: ``hdl.stream`` (skid buffers and stream helpers)
and ``hdl.verilog`` (Verilog emission with a parameter header).
"""
