"""Properties shared by the harnesses: the stream rules and the "no reset" assumption.

The stream rules (``amaranth.lib.stream``): once ``valid`` is high it stays high
until ``ready`` takes the beat, and ``payload`` does not change while
``valid & ~ready``. On an input stream the harness *assumes* them (the producer
follows them, otherwise anything goes); on an output stream it *asserts* them.

Every harness starts from the design's reset values (the power-up values are the
reset values in Amaranth) and assumes the reset stays low, so "cycle n" of a
bounded proof is n cycles after reset.
"""
from __future__ import annotations

from amaranth import Assert, Assume, Module, ResetSignal, Signal, Value


def no_reset(m: Module):
    m.d.comb += Assume(~ResetSignal())


def stream_rules(m: Module, valid, ready, payload, name: str, check=Assert):
    """``check`` (Assert or Assume) the stream rules on one stream, every cycle."""
    raw = Value.cast(payload)
    stalled = Signal(name=f"{name}_stalled")          # last cycle: valid & ~ready
    held = Signal(len(raw), name=f"{name}_held")      # last cycle's payload
    m.d.sync += [stalled.eq(valid & ~ready), held.eq(raw)]
    m.d.comb += [check(~stalled | valid, f"{name}: valid dropped before ready"),
                 check(~stalled | (raw == held), f"{name}: payload changed while stalled")]
    return stalled


def port_rules(m: Module, port, name: str, check=Assert):
    return stream_rules(m, port.valid, port.ready, port.payload, name, check)
