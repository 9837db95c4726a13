"""Reusable bench agents: stream driver, stream monitor, clocked harness, scoreboard.

All agents are stepped by one :class:`Harness` loop instead of one coroutine
each: every cycle it lets each agent drive its inputs (after the rising edge),
waits for ``ReadOnly`` to sample settled values, and records the transfers that
happen at the next edge (``valid & ready`` in that settled state). That is the
exact ``amaranth.lib.stream`` handshake, it keeps agents deterministic for a
given seed, and it costs one scheduler round trip per cycle, not one per agent.

Random stalls: a driver holds ``valid`` low with probability ``1 - p_valid`` on
each idle cycle (once raised, ``valid`` stays up until the beat is taken, as the
stream rules require); a monitor drops ``ready`` with probability ``1 - p_ready``.
"""
from __future__ import annotations

import os
from collections import deque

import numpy as np


class BenchTimeout(AssertionError):
    """A job did not finish in its cycle budget: the DUT hung (or the budget is wrong)."""


class CocotbIO:
    """Ports by Verilog name over a cocotb DUT: the ``io`` the agents below talk to.

    The same agents and benches also run on the pyverilator fast lane
    (``sim.fastlane.Model``) and Amaranth's simulator (``sim.sptc_amaranth``),
    which provide the same four methods.
    """

    def __init__(self, dut):
        self.dut = dut
        self._sigs = {}

    def _sig(self, name):
        s = self._sigs.get(name)
        if s is None:
            s = self._sigs[name] = getattr(self.dut, name)
        return s

    def set(self, name, value):
        self._sig(name).value = int(value)

    def get(self, name):
        return int(self._sig(name).value)

    async def settle(self):
        from cocotb.triggers import ReadOnly
        await ReadOnly()

    async def tick(self):
        from cocotb.triggers import RisingEdge
        await RisingEdge(self.dut.clk)


def as_io(dut_or_io):
    """Accept a cocotb DUT (wrapped in CocotbIO) or anything with set/get/settle/tick."""
    if all(hasattr(type(dut_or_io), m) for m in ("set", "get", "settle", "tick")):
        return dut_or_io
    return CocotbIO(dut_or_io)


class StreamDriver:
    """Drives ``<name>__valid``/``__payload`` from a queue of integer payloads."""

    def __init__(self, dut, name, rng, p_valid=1.0):
        self.io = as_io(dut)
        self.v, self.r, self.p = f"{name}__valid", f"{name}__ready", f"{name}__payload"
        self.rng, self.p_valid = rng, p_valid
        self.queue: deque[int] = deque()
        self.sent = 0
        self._up = False
        self.io.set(self.v, 0)

    def push(self, items):
        self.queue.extend(int(x) for x in items)

    def flush(self):
        """Drop every pending beat (after a job the DUT aborted) and lower valid."""
        self.queue.clear()
        self._up = False
        self.io.set(self.v, 0)

    @property
    def idle(self):
        return not self.queue and not self._up

    def drive(self):
        if not self._up and self.queue and self.rng.random() < self.p_valid:
            self._up = True
            self.io.set(self.p, self.queue[0])
        self.io.set(self.v, int(self._up))

    def sample(self):
        if self._up and self.io.get(self.r):
            self.queue.popleft()
            self.sent += 1
            self._up = False


class StreamMonitor:
    """Applies random ``ready`` back-pressure and records every accepted payload."""

    def __init__(self, dut, name, rng, p_ready=1.0):
        self.io = as_io(dut)
        self.v, self.r, self.p = f"{name}__valid", f"{name}__ready", f"{name}__payload"
        self.rng, self.p_ready = rng, p_ready
        self.received: list[int] = []
        self._r = 0
        self.io.set(self.r, 0)

    def drive(self):
        self._r = int(self.rng.random() < self.p_ready)
        self.io.set(self.r, self._r)

    def sample(self):
        if self._r and self.io.get(self.v):
            self.received.append(self.io.get(self.p))


class Harness:
    """One clock, a reset, and a list of agents stepped together every cycle."""

    def __init__(self, dut, agents=(), period_ns=10):
        self.io = as_io(dut)
        self.dut = getattr(self.io, "dut", None)
        self.agents, self.period_ns = list(agents), period_ns
        self.cycle = 0

    async def start(self, reset_cycles=2):
        """cocotb only: start the clock and hold reset (the other simulators reset themselves)."""
        from cocotb.clock import Clock
        from cocotb.triggers import RisingEdge
        Clock(self.dut.clk, self.period_ns, unit="ns").start()
        self.dut.rst.value = 1
        for _ in range(reset_cycles):
            await RisingEdge(self.dut.clk)
        self.dut.rst.value = 0

    async def step(self, probe=None):
        """One clock cycle. ``probe()`` (optional) is evaluated on settled values
        (after ``io.settle()``), i.e. it sees the DUT state of this cycle, before
        the edge; its result is returned."""
        for a in self.agents:
            a.drive()
        r = self.io.settle()
        if r is not None:
            await r
        for a in self.agents:
            a.sample()
        seen = probe() if probe is not None else None
        r = self.io.tick()
        if r is not None:
            await r
        self.cycle += 1
        return seen

    async def run_until(self, done, timeout, what="the job"):
        """Step until ``done()`` (read on settled values) holds; a hang fails loudly."""
        start = self.cycle
        while not await self.step(done):
            if self.cycle - start > timeout:
                raise BenchTimeout(f"timeout: {what} not finished after {timeout} cycles")


def run_sync(coro):
    """Run a bench coroutine whose ``io`` never suspends (the fast lane's is synchronous)."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise RuntimeError("the coroutine suspended: run it under an event loop or simulator")


def seeded_rng(default=1):
    """The bench's RNG: from MOE_SEED (set by the host) so a failure replays exactly."""
    return np.random.default_rng(int(os.environ.get("MOE_SEED", default)))


def stall_probs(rng):
    """Random stall probabilities for this run, or none with MOE_NO_STALLS=1."""
    if os.environ.get("MOE_NO_STALLS") == "1":
        return 1.0, 1.0
    return float(rng.uniform(0.4, 0.9)), float(rng.uniform(0.4, 0.9))


class Scoreboard:
    """Compares observed arrays with golden arrays element by element; keeps every mismatch."""

    def __init__(self, name):
        self.name, self.errors, self.checked = name, [], 0

    def compare(self, tag, got, expected):
        got, expected = np.asarray(got), np.asarray(expected)
        self.checked += 1
        if got.shape != expected.shape:
            self.errors.append(f"{tag}: shape {got.shape} != golden {expected.shape}")
            return
        bad = np.argwhere(got != expected)
        if len(bad):
            first = tuple(int(i) for i in bad[0])
            self.errors.append(f"{tag}: {len(bad)} of {got.size} elements differ; first at "
                               f"{first}: rtl {got[first]} != golden {expected[first]}")

    def check(self, tag, cond, msg):
        self.checked += 1
        if not cond:
            self.errors.append(f"{tag}: {msg}")

    def assert_clean(self):
        assert self.checked > 0, f"{self.name}: the scoreboard checked nothing"
        assert not self.errors, f"{self.name}: " + "\n".join(self.errors[:20])
