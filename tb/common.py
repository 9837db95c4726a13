"""Reusable cocotb agents: stream driver, stream monitor, clocked harness, scoreboard.

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


def sig(dut, name):
    return getattr(dut, name)


class StreamDriver:
    """Drives ``<name>__valid``/``__payload`` from a queue of integer payloads."""

    def __init__(self, dut, name, rng, p_valid=1.0):
        self.valid = sig(dut, f"{name}__valid")
        self.ready = sig(dut, f"{name}__ready")
        self.payload = sig(dut, f"{name}__payload")
        self.rng, self.p_valid = rng, p_valid
        self.queue: deque[int] = deque()
        self.sent = 0
        self._up = False
        self.valid.value = 0

    def push(self, items):
        self.queue.extend(int(x) for x in items)

    def flush(self):
        """Drop every pending beat (after a job the DUT aborted) and lower valid."""
        self.queue.clear()
        self._up = False
        self.valid.value = 0

    @property
    def idle(self):
        return not self.queue and not self._up

    def drive(self):
        if not self._up and self.queue and self.rng.random() < self.p_valid:
            self._up = True
            self.payload.value = self.queue[0]
        self.valid.value = int(self._up)

    def sample(self):
        if self._up and int(self.ready.value):
            self.queue.popleft()
            self.sent += 1
            self._up = False


class StreamMonitor:
    """Applies random ``ready`` back-pressure and records every accepted payload."""

    def __init__(self, dut, name, rng, p_ready=1.0):
        self.valid = sig(dut, f"{name}__valid")
        self.ready = sig(dut, f"{name}__ready")
        self.payload = sig(dut, f"{name}__payload")
        self.rng, self.p_ready = rng, p_ready
        self.received: list[int] = []
        self._r = 0
        self.ready.value = 0

    def drive(self):
        self._r = int(self.rng.random() < self.p_ready)
        self.ready.value = self._r

    def sample(self):
        if self._r and int(self.valid.value):
            self.received.append(int(self.payload.value))


class Harness:
    """One clock, a reset, and a list of agents stepped together every cycle."""

    def __init__(self, dut, agents=(), period_ns=10):
        self.dut, self.agents, self.period_ns = dut, list(agents), period_ns
        self.cycle = 0

    async def start(self, reset_cycles=2):
        from cocotb.clock import Clock
        from cocotb.triggers import RisingEdge
        Clock(self.dut.clk, self.period_ns, unit="ns").start()
        self.dut.rst.value = 1
        for _ in range(reset_cycles):
            await RisingEdge(self.dut.clk)
        self.dut.rst.value = 0

    async def step(self, probe=None):
        """One clock cycle. ``probe()`` (optional) is evaluated on settled values
        (ReadOnly), i.e. it sees the DUT state of this cycle, before the edge;
        its result is returned."""
        from cocotb.triggers import ReadOnly, RisingEdge
        for a in self.agents:
            a.drive()
        await ReadOnly()
        for a in self.agents:
            a.sample()
        seen = probe() if probe is not None else None
        await RisingEdge(self.dut.clk)
        self.cycle += 1
        return seen

    async def run_until(self, done, timeout, what="the job"):
        """Step until ``done()`` (read on settled values) holds; a hang fails loudly."""
        start = self.cycle
        while not await self.step(done):
            if self.cycle - start > timeout:
                raise AssertionError(f"timeout: {what} not finished after {timeout} cycles")


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
