"""Simulation side of moe-rtl: MoE traces, simulator runners and `make sim`.

Sub-modules: ``sim.traces`` (the routing-trace CLI; the traces themselves are
``golden.trace``), ``sim.sptc`` (run the Sparse Tensor Core on user data), ``sim.moe``
(one trace step through the MoE-layer top), ``sim.runners`` (one host-side runner per
engine behind one protocol), ``sim.cli`` (``python -m sim``). The
simulator runner and toolchain shim are ``tb.cocotb_run`` and ``tb.toolchain``.
"""
