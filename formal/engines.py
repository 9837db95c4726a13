"""Harnesses around whole engines: the output stream rules under any input behaviour.

:class:`EngineHarness` wraps an engine top (a ``wiring.Component``). Every input
of the engine is a free input of the harness: each input stream's ``valid`` and
``payload`` (the harness *assumes* the stream rules on them: the producer keeps a
beat offered, unchanged, until it is taken) and every other input port (start,
clear, job registers, ...: anything in any cycle). Every output stream's
``ready`` is free too. The harness *asserts* the stream rules on every output
stream. The proof is bounded (BMC): depth n checks every behaviour of the first
n cycles after reset.
"""
from __future__ import annotations

from amaranth import Assume, Cover, Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In

from .rules import no_reset, stream_rules


def _streams(dut):
    """(name, flow, member) for the engine's ports; flow In/Out of the engine."""
    for name, member in dut.signature.members.items():
        if member.is_signature and isinstance(member.signature, stream.Signature):
            yield name, member.flow, member, True
        elif member.is_port:
            yield name, member.flow, member, False


class EngineHarness(wiring.Component):
    def __init__(self, make_dut, bug: str = "", outputs=None, cover: bool = False):
        """``outputs``: the output streams whose rules are asserted (default all)."""
        self.dut = make_dut()
        self.bug = bug
        self.outputs = outputs
        self.cover = cover        # Cover "an output beat stalled" (sby mode cover)
        ports = {}
        for name, flow, member, is_stream in _streams(self.dut):
            if is_stream and flow == In:
                ports[f"{name}_valid"] = In(1)
                ports[f"{name}_payload"] = In(member.signature.members["payload"].shape)
            elif is_stream:
                ports[f"{name}_ready"] = In(1)
            elif flow == In:
                ports[name] = In(member.shape)
        ports["glitch"] = In(1)
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        no_reset(m)
        dut = self.dut
        if self.bug == "reset":
            # planted: a reset that reaches the engine at any time (like a `clear`
            # wired to the engine's reset): it empties the output buffers, so an
            # offered beat vanishes before it is taken
            from amaranth.hdl import ResetInserter
            m.submodules.dut = ResetInserter({"sync": self.glitch})(dut)
        else:
            m.submodules.dut = dut
        for name, flow, member, is_stream in _streams(dut):
            port = getattr(dut, name)
            if is_stream and flow == In:
                v, p = getattr(self, f"{name}_valid"), getattr(self, f"{name}_payload")
                m.d.comb += [port.valid.eq(v), port.payload.eq(p)]
                stream_rules(m, v, port.ready, p, f"{name}", check=_assume)
            elif is_stream:
                r = getattr(self, f"{name}_ready")
                m.d.comb += port.ready.eq(r)
                if self.outputs is None or name in self.outputs:
                    stream_rules(m, port.valid, r, port.payload, f"{name}")
                    if self.cover:
                        m.d.comb += Cover(port.valid & ~r, f"{name}: a beat stalled")
            elif flow == In:
                m.d.comb += port.eq(getattr(self, name))
        return m


def _assume(test, msg=None):
    return Assume(test, msg)
