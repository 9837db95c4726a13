"""Sparse Tensor Core jobs on Amaranth's Python simulator (no Verilog, no cocotb).

The third way to run the same job: ``amaranth.sim.Simulator`` with an async
testbench that runs :func:`tb.sptc.bench` - the very code cocotb and the fast lane
runs, so stimulus, random stalls (same seed, same draws), scoreboard and
result keys are identical. Ports are addressed by their Verilog names
(``w__payload`` -> ``dut.w.payload``, struct payloads as their raw bits).
It is slow (pure Python), which is what ``sim.simspeed`` measures; use it for
small jobs, debugging without a C++ toolchain, or Amaranth-level waveforms.
"""
from __future__ import annotations

from amaranth.hdl import Value
from amaranth.sim import Simulator

from golden import sptc as gs

from tb.cocotb_run import SimulationError
from .sptc import JobSpec, encode_jobs
from tb.common import BenchTimeout, StreamRuleError
from tb.sptc import bench

from .sptc_fast import check

CLOCK_PERIOD = 10e-9


class AmaranthIO:
    """``set/get/tick`` by Verilog port name over an Amaranth testbench context."""

    def __init__(self, ctx, dut):
        self.ctx, self.dut = ctx, dut
        self._sigs: dict = {}
        self._last: dict = {}

    def _sig(self, name: str):
        s = self._sigs.get(name)
        if s is None:
            obj = self.dut
            for part in name.split("__"):
                obj = getattr(obj, part)
            s = self._sigs[name] = Value.cast(obj)  # a struct payload as raw bits
        return s

    def set(self, name: str, value: int) -> None:
        value = int(value)
        if self._last.get(name) != value:  # every ctx.set re-settles the design
            self.ctx.set(self._sig(name), value)
            self._last[name] = value

    def get(self, name: str) -> int:
        return self.ctx.get(self._sig(name))

    def settle(self):
        """ctx.get already returns settled values."""

    async def tick(self):
        await self.ctx.tick()


def make_simulator(cfg: gs.SpTCConfig, job: dict, *, seed: int = 1, stalls: bool = True,
                   out: dict | None = None):
    """An ``amaranth.sim.Simulator`` whose testbench runs the encoded ``job``.

    ``out`` receives ``results``, ``scoreboard``, ``cycles`` when it finishes.
    The caller runs it (``sim.run()``), optionally inside ``sim.write_vcd(...)``.
    """
    from hdl import sptc
    dut = sptc.build(cfg)
    sim = Simulator(dut)
    sim.add_clock(CLOCK_PERIOD)
    out = {} if out is None else out

    async def testbench(ctx):
        res, sb, cycles = await bench(AmaranthIO(ctx, dut), job, seed=seed, stalls=stalls)
        out.update(results=res, scoreboard=sb, cycles=cycles)

    sim.add_testbench(testbench)
    return sim, out


def run_encoded(cfg: gs.SpTCConfig, job: dict, *, seed: int = 1, stalls: bool = True,
                vcd: str | None = None) -> dict:
    sim, out = make_simulator(cfg, job, seed=seed, stalls=stalls)
    try:
        if vcd:
            with sim.write_vcd(vcd):
                sim.run()
        else:
            sim.run()
    except (BenchTimeout, StreamRuleError) as exc:
        raise SimulationError(f"sptc on the Amaranth simulator: {exc}") from None
    check(out["scoreboard"], "sptc on the Amaranth simulator")
    res = dict(out["results"])
    res["harness_cycles"] = out["cycles"]
    return res


def run_batch(cfg: gs.SpTCConfig, specs: list[JobSpec], *, seed: int = 1,
              stalls: bool = True, vcd: str | None = None) -> dict:
    """``sim.sptc_fast.run_batch`` on Amaranth's simulator (same results and checks)."""
    return run_encoded(cfg, encode_jobs(cfg, specs), seed=seed, stalls=stalls, vcd=vcd)
