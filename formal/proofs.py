"""The proofs `python -m formal` and tests/test_formal.py run (docs/formal.md)."""
from __future__ import annotations

import importlib

from golden.sptc import SpTCConfig

from .core import Proof
from .engines import EngineHarness
from .streams import FifoHarness, SkidHarness

OUT_SKID_DEPTH = SpTCConfig().out_skid_depth     # the SpTC's output skid buffer


def _engine(name: str, config: str, formal: bool = False, bug: str = ""):
    mod = importlib.import_module(f"hdl.{name}")
    cfg = mod.CONFIGS[config]
    if formal:
        return lambda: mod.SparseTensorCore(cfg, formal=True, formal_bug=bug)
    return lambda: mod.build(cfg)


def _skid(width, depth, ecp5=False, bug=""):
    return lambda: SkidHarness(width, depth, ecp5, bug)


RULES = "output stream rules (valid held until ready, payload stable while stalled)"

PROOFS = [
    # ---- the skid buffer: unbounded (k-induction), any producer and consumer
    Proof("skid_d2", _skid(8, 2), "prove", 4,
          f"SkidBuffer depth 2 (default): no loss, no duplication, order kept, {RULES}"),
    Proof("skid_d3", _skid(8, OUT_SKID_DEPTH), "prove", 5,
          f"SkidBuffer depth {OUT_SKID_DEPTH} (the SpTC's output): the same"),
    Proof("skid_d3_ecp5", _skid(40, OUT_SKID_DEPTH, ecp5=True), "prove", 5,
          "SkidBuffer depth 3, ECP5 flavour (40-bit payload: two control copies as "
          "TRELLIS_FF models): the same, and every copy equals occ/rp", ecp5=True),
    # ---- the library FIFO the engines use (SyncFIFOBuffered), bounded
    Proof("fifo_d4", lambda: FifoHarness(8, 4), "bmc", 12,
          "SyncFIFOBuffered depth 4 (the MoE top's job queues): no loss, no duplication, "
          f"order kept, level/ready/valid, {RULES}; 12 cycles: fill, wrap, drain"),
    # ---- whole engines, bounded: any input behaviour that follows the input rules
    Proof("sptc_small", lambda: EngineHarness(_engine("sptc", "small", formal=True)),
          "prove", 2, f"SpTC small, unbounded: {RULES} on res; the 'equals ... in every "
          "cycle' invariants, the output FIFO's bookkeeping and data (no loss, no "
          "duplication, order kept: the n-th beat read is the n-th written, with its "
          "value) and the skid buffer's state invariants", timeout=240),
    Proof("pim_small", lambda: EngineHarness(_engine("pim", "small")), "prove", 3,
          f"Logic-PIM small, unbounded: {RULES} on out"),
    Proof("cim_small", lambda: EngineHarness(_engine("cim", "small")), "bmc", 10,
          f"CIM small: {RULES} on res"),
    Proof("moe_small_y", lambda: EngineHarness(_engine("moe", "small"), outputs=("y",)),
          "bmc", 6, f"MoE top small: {RULES} on y"),
    Proof("moe_small_trace", lambda: EngineHarness(_engine("moe", "small"), outputs=("trace",)),
          "bmc", 6, f"MoE top small: {RULES} on trace (the arbiter locks a stalled "
          "Logic-PIM entry against the SpTC's)"),
    # ---- planted bugs: each must fail
    Proof("bug_skid_loss", _skid(8, 2, bug="loss"), "prove", 4,
          "planted: the skid buffer pops a beat the consumer did not take", expect=False),
    Proof("bug_skid_dup", _skid(8, 2, bug="dup"), "prove", 4,
          "planted: the skid buffer keeps a beat the consumer took", expect=False),
    Proof("bug_skid_valid", _skid(8, 2, bug="valid"), "prove", 4,
          "planted: the skid buffer's valid drops while stalled", expect=False),
    Proof("bug_fifo_drop", lambda: FifoHarness(8, 4, bug="drop"), "bmc", 12,
          "planted: the FIFO loses a write into its last free entry", expect=False),
    Proof("bug_sptc_fifo_drop", lambda: EngineHarness(_engine("sptc", "small", formal=True,
                                                              bug="drop")),
          "bmc", 24, "planted: the SpTC's output FIFO loses the metadata write into "
          "entry 0 (its first beat after reset reaches the FIFO at cycle 22)",
          expect=False),
    Proof("bug_moe_reset", lambda: EngineHarness(_engine("moe", "small"), bug="reset",
                                                 outputs=("y",)),
          "bmc", 6, "planted: a reset reaches the MoE top at any time (drops y's beat; "
          "that it fails also shows moe_small_y reaches a stalled beat on y)",
          expect=False),
]

BY_NAME = {p.name: p for p in PROOFS}
