"""cocotb testbenches of moe-rtl: drivers, monitors and scoreboards fed by ``golden``.

``tb.common`` holds the reusable agents; each engine's bench lives in its own
module (``tb.sptc``, ...). Benches read their job from the ``.npz`` file named
by ``MOE_JOB`` and write what they observed to ``MOE_RESULT``.
"""
