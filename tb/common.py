"""Reusable bench agents: stream driver, stream monitor, clocked harness, scoreboard.

All agents are stepped by one :class:`Harness` loop instead of one coroutine
each: every cycle it lets each agent drive its inputs (after the rising edge),
waits for ``ReadOnly`` to sample settled values, and records the transfers that
happen at the next edge (``valid & ready`` in that settled state). That is the
exact ``amaranth.lib.stream`` handshake, it keeps agents deterministic for a
given seed, and it costs one scheduler round trip per cycle, not one per agent.

Stalls: each driver and monitor asks its own :class:`StallProfile`, cycle by
cycle, whether it may go: a driver raises ``valid`` only on a go cycle (once
raised, ``valid`` stays up until the beat is taken, as the stream rules
require); a monitor raises ``ready`` on go cycles only. Profiles are uniform
(independent each cycle), bursty (long stall runs) or starving (``ready`` or
``valid`` low for hundreds of cycles); :func:`stall_profiles` picks them for a
run from ``MOE_STALL_PROFILE``.

Stream rules: every :class:`StreamMonitor` checks, on the DUT's output, that
``valid`` once high stays high until a transfer and that the payload does not
change while ``valid & ~ready``; a violation raises :class:`StreamRuleError`
at the cycle it happens.
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


class StreamRuleError(AssertionError):
    """A DUT output broke the stream rules (valid dropped, or payload changed, before a transfer)."""


class StallProfile:
    """Per-cycle go/stall decisions for one stream end (stateful: one instance per stream).

    ``go(rng)`` is called once per cycle by the agent that owns the profile; a
    uniform profile draws exactly one ``rng.random()`` per call, as the agents
    did before profiles existed, so seeded runs replay.
    """

    def __init__(self, kind: str, p: float = 1.0, mean_stall: float = 0.0,
                 every: int = 0, length: int = 0):
        self.kind, self.p, self.mean_stall = kind, float(p), float(mean_stall)
        self.every, self.length = int(every), int(length)
        self._stalled = False     # bursty: in a stall run
        self._left = 0            # starve: cycles of the current starvation left
        self._just_ended = False  # starve: the last stretch ended on the previous cycle

    @classmethod
    def always(cls):
        return cls("always")

    @classmethod
    def uniform(cls, p: float):
        if not 0.0 < p <= 1.0:
            raise ValueError(f"uniform stall profile: p must be in (0, 1], got {p}")
        return cls("uniform", p=p)

    @classmethod
    def bursty(cls, p: float, mean_stall: float):
        """Two-state Markov chain: long-run go fraction ``p``, stall runs of mean
        length ``mean_stall`` cycles (geometric), go runs of mean
        ``mean_stall * p / (1 - p)``."""
        if not 0.0 < p < 1.0:
            raise ValueError(f"bursty stall profile: p must be in (0, 1), got {p}")
        if mean_stall < 1.0:
            raise ValueError(f"bursty stall profile: mean_stall must be >= 1, got {mean_stall}")
        return cls("bursty", p=p, mean_stall=mean_stall)

    @classmethod
    def starve(cls, every: int, length: int):
        """Go every cycle, except stretches of exactly ``length`` cycles with no go,
        each starting with probability ``1 / every`` on a go cycle."""
        if every < 1 or length < 1:
            raise ValueError(f"starve stall profile: every and length must be >= 1, "
                             f"got every={every}, length={length}")
        return cls("starve", every=every, length=length)

    def go(self, rng) -> bool:
        k = self.kind
        if k == "always":
            return True
        if k == "uniform":
            return bool(rng.random() < self.p)
        if k == "bursty":
            if self._stalled:
                self._stalled = rng.random() >= 1.0 / self.mean_stall
            else:
                go_run = self.mean_stall * self.p / (1.0 - self.p)
                self._stalled = rng.random() < 1.0 / max(go_run, 1.0)
            return not self._stalled
        if self._left:              # starve
            self._left -= 1
            self._just_ended = not self._left
            return False
        if self._just_ended:        # one go between two stretches: each is exactly `length`
            self._just_ended = False
            return True
        if rng.random() < 1.0 / self.every:
            self._left = self.length - 1
            return False
        return True

    def __repr__(self):
        args = {"always": "", "uniform": f"{self.p:.3f}",
                "bursty": f"{self.p:.3f}, {self.mean_stall:g}",
                "starve": f"{self.every}, {self.length}"}[self.kind]
        return f"StallProfile.{self.kind}({args})"


def as_profile(p) -> StallProfile:
    """A float is a uniform profile (1.0: no stalls, still one draw a cycle, so a seeded
    run replays exactly as before profiles existed); a StallProfile passes through."""
    if isinstance(p, StallProfile):
        return p
    return StallProfile.uniform(float(p))


STALL_KINDS = ("uniform", "bursty", "starve", "mixed")


def _one_profile(kind: str, rng) -> StallProfile:
    if kind == "uniform":
        return StallProfile.uniform(float(rng.uniform(0.4, 0.9)))
    if kind == "bursty":
        return StallProfile.bursty(float(rng.uniform(0.4, 0.8)), float(rng.uniform(8, 40)))
    if kind == "starve":
        return StallProfile.starve(int(rng.integers(100, 400)), int(rng.integers(150, 400)))
    raise ValueError(f"stall profile: unknown kind {kind!r} (one of {', '.join(STALL_KINDS)})")


def stall_profiles(rng, names, kind: str | None = None) -> dict[str, StallProfile]:
    """A fresh profile per stream for one run. ``kind`` None reads ``MOE_STALL_PROFILE``
    (default ``uniform``: a random probability in [0.4, 0.9] per stream); ``mixed``
    gives the streams different kinds in turn (from a random start). With
    ``MOE_NO_STALLS=1`` every profile is ``always``."""
    names = list(names)
    if os.environ.get("MOE_NO_STALLS") == "1":
        return {n: StallProfile.always() for n in names}
    kind = kind or os.environ.get("MOE_STALL_PROFILE") or "uniform"
    if kind not in STALL_KINDS:
        raise ValueError(f"MOE_STALL_PROFILE: unknown kind {kind!r} "
                         f"(one of {', '.join(STALL_KINDS)})")
    if kind != "mixed":
        return {n: _one_profile(kind, rng) for n in names}
    start = int(rng.integers(3))
    return {n: _one_profile(STALL_KINDS[(start + i) % 3], rng) for i, n in enumerate(names)}


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

    @property
    def p_valid(self) -> StallProfile:
        return self._prof

    @p_valid.setter
    def p_valid(self, p):
        """A float (uniform, 1.0 = no stalls) or a StallProfile; settable between jobs."""
        self._prof = as_profile(p)

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
        if not self._up and self.queue and self._prof.go(self.rng):
            self._up = True
            self.io.set(self.p, self.queue[0])
        self.io.set(self.v, int(self._up))

    def sample(self):
        if self._up and self.io.get(self.r):
            self.queue.popleft()
            self.sent += 1
            self._up = False


class StreamMonitor:
    """Applies ``ready`` back-pressure from its stall profile, records every accepted
    payload, and checks the stream rules on the DUT's output every cycle."""

    def __init__(self, dut, name, rng, p_ready=1.0):
        self.io = as_io(dut)
        self.name = name
        self.v, self.r, self.p = f"{name}__valid", f"{name}__ready", f"{name}__payload"
        self.rng, self.p_ready = rng, p_ready
        self.received: list[int] = []
        self.cycle = 0
        self._r = 0
        self._held = None         # payload offered and not taken last cycle
        self.io.set(self.r, 0)

    @property
    def p_ready(self) -> StallProfile:
        return self._prof

    @p_ready.setter
    def p_ready(self, p):
        """A float (uniform, 1.0 = no stalls) or a StallProfile; settable between jobs."""
        self._prof = as_profile(p)

    def reset(self):
        """The DUT was reset: the stream rules start afresh (a beat it offered before the
        reset edge is gone, legally)."""
        self._held = None

    def drive(self):
        self._r = int(self._prof.go(self.rng))
        self.io.set(self.r, self._r)

    def sample(self):
        valid = self.io.get(self.v)
        payload = self.io.get(self.p) if valid else None
        if self._held is not None:
            if not valid:
                raise StreamRuleError(
                    f"stream {self.name!r}: valid fell at monitor cycle {self.cycle} before "
                    f"the payload {self._held:#x} offered the cycle before was taken")
            if payload != self._held:
                raise StreamRuleError(
                    f"stream {self.name!r}: payload changed while stalled at monitor cycle "
                    f"{self.cycle}: {self._held:#x} -> {payload:#x} (valid high, ready low)")
        self._held = payload if valid and not self._r else None
        if self._r and valid:
            self.received.append(payload)
        self.cycle += 1


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


def check_stall_profile(kind: str | None) -> None:
    """A host's ``stall_profile`` option: None (the bench's classic uniform stalls) or a
    kind of :data:`STALL_KINDS`; refused before anything is built."""
    from golden.errors import FormatError
    if kind is not None and kind not in STALL_KINDS:
        raise FormatError(f"stall_profile: unknown kind {kind!r} (one of "
                          f"{', '.join(STALL_KINDS)})")


def stall_env(stalls: bool, kind: str | None) -> dict:
    """The bench's stall switches as environment variables (read in the simulator by
    :func:`stall_probs` and :func:`stall_profiles`)."""
    env = {"MOE_NO_STALLS": "0" if stalls else "1"}
    if kind is not None:
        env["MOE_STALL_PROFILE"] = kind
    return env


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
