"""The bench agents themselves: stall profiles and the stream-rule checks of StreamMonitor.

A tiny synchronous model stands in for the DUT (the ``io`` protocol of tb.common:
set/get/settle/tick), so a planted rule break is seen without a simulator."""
import numpy as np
import pytest

from golden.errors import FormatError
from tb.common import (STALL_KINDS, Harness, StallProfile, StreamDriver, StreamMonitor,
                       StreamRuleError, check_stall_profile, run_sync, stall_env, stall_probs,
                       stall_profiles)


class _Source:
    """An output stream ``o`` offering 0, 1, 2, ... with an optional planted bug."""

    def __init__(self, bug=None, n=200):
        self.sig = {"o__ready": 0}
        self.bug, self.n, self.k, self.cyc, self.up = bug, n, 0, 0, False

    def set(self, name, value):
        self.sig[name] = int(value)

    def get(self, name):
        self._comb()
        return self.sig[name]

    def settle(self):
        return None

    def _comb(self):
        self.sig["o__valid"] = int(self.up)
        pay = self.k
        if self.bug == "payload" and self.cyc % 7 == 3:
            pay = self.k + 1000              # payload wobbles while offered
        self.sig["o__payload"] = pay

    def tick(self):
        self._comb()
        if self.up and self.sig["o__ready"]:
            self.k, self.up = self.k + 1, False
        if self.bug == "drop" and self.up and self.cyc % 11 == 5:
            self.up = False                  # valid withdrawn before the transfer
        elif not self.up and self.k < self.n:
            self.up = True
        self.cyc += 1
        return None


async def _drain(io, mon, cycles):
    h = Harness(io, [mon])
    for _ in range(cycles):
        await h.step()


@pytest.mark.parametrize("kind", ["uniform", "bursty", "starve"])
def test_monitor_accepts_a_correct_stream_in_order(kind):
    rng = np.random.default_rng(3)
    io = _Source(n=150)
    mon = StreamMonitor(io, "o", rng, stall_profiles(rng, ["o"], kind)["o"])
    run_sync(_drain(io, mon, 6000))
    assert mon.received == list(range(150))


@pytest.mark.parametrize("bug,what", [("drop", "valid fell"), ("payload", "payload changed")])
def test_monitor_catches_planted_rule_breaks(bug, what):
    rng = np.random.default_rng(5)
    io = _Source(bug=bug)
    mon = StreamMonitor(io, "o", rng, StallProfile.uniform(0.3))
    with pytest.raises(StreamRuleError, match=what):
        run_sync(_drain(io, mon, 2000))


def _runs(bits):
    """Lengths of the stall (False) runs in a go/stall sequence."""
    out, n = [], 0
    for b in bits:
        if not b:
            n += 1
        elif n:
            out.append(n)
            n = 0
    return out


def test_profiles_have_their_documented_statistics():
    rng = np.random.default_rng(11)
    N = 200_000
    u = StallProfile.uniform(0.7)
    assert abs(np.mean([u.go(rng) for _ in range(N)]) - 0.7) < 0.01
    b = StallProfile.bursty(0.6, 20)
    bits = [b.go(rng) for _ in range(N)]
    assert abs(np.mean(bits) - 0.6) < 0.03
    assert 17 < np.mean(_runs(bits)) < 23          # long stall runs, not single cycles
    s = StallProfile.starve(300, 250)
    runs = _runs([s.go(rng) for _ in range(N)])
    assert runs and all(r == 250 for r in runs[:-1])
    assert all(StallProfile.always().go(rng) for _ in range(100))


def test_driver_holds_valid_until_taken_under_every_profile():
    """Our own driver obeys the rules it asks of the DUT: a monitor on the same wires
    (a loopback) sees every beat once, in order, and no rule break."""
    class _Loop:
        def __init__(self):
            self.sig = {}

        def set(self, name, value):
            self.sig[name.replace("x__", "o__") if name != "x__ready" else "o__ready"] = int(value)

        def get(self, name):
            return self.sig.get(name.replace("x__", "o__"), 0)

        def settle(self):
            return None

        def tick(self):
            return None

    for kind in ("uniform", "bursty", "starve", "mixed"):
        rng = np.random.default_rng(7)
        pr = stall_profiles(rng, ["x", "o"], kind)
        io = _Loop()
        drv = StreamDriver(io, "x", rng, pr["x"])
        mon = StreamMonitor(io, "o", rng, pr["o"])
        drv.push(range(300))
        h = Harness(io, [drv, mon])
        run_sync(_loop(h, 20_000))
        assert mon.received == list(range(300)), kind


async def _loop(h, n):
    for _ in range(n):
        await h.step()


def test_stall_profiles_env_and_errors(monkeypatch):
    rng = np.random.default_rng(0)
    monkeypatch.setenv("MOE_STALL_PROFILE", "starve")
    assert all(p.kind == "starve" for p in stall_profiles(rng, "abc").values())
    mixed = stall_profiles(rng, ["a", "b", "c"], "mixed")
    assert {p.kind for p in mixed.values()} == {"uniform", "bursty", "starve"}
    monkeypatch.setenv("MOE_NO_STALLS", "1")
    assert all(p.kind == "always" for p in stall_profiles(rng, "ab").values())
    monkeypatch.delenv("MOE_NO_STALLS")
    monkeypatch.setenv("MOE_STALL_PROFILE", "sometimes")
    with pytest.raises(ValueError, match="MOE_STALL_PROFILE.*'sometimes'"):
        stall_profiles(rng, "a")
    with pytest.raises(ValueError, match="mean_stall"):
        StallProfile.bursty(0.5, 0.5)
    assert set(STALL_KINDS) == {"uniform", "bursty", "starve", "mixed"}


def test_host_stall_options_reach_the_bench(monkeypatch):
    """A host's stall options (check_stall_profile, stall_env) are what the bench's
    stall_probs / stall_profiles read back in the simulator process."""
    for kind in (None, *STALL_KINDS):
        check_stall_profile(kind)
    with pytest.raises(FormatError, match="stall_profile: unknown kind 'sometimes'"):
        check_stall_profile("sometimes")
    rng = np.random.default_rng(0)
    for name in ("MOE_NO_STALLS", "MOE_STALL_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    for k, v in stall_env(False, None).items():
        monkeypatch.setenv(k, v)
    assert stall_probs(rng) == (1.0, 1.0)
    assert all(p.kind == "always" for p in stall_profiles(rng, "ab").values())
    env = stall_env(True, "bursty")
    assert env == {"MOE_NO_STALLS": "0", "MOE_STALL_PROFILE": "bursty"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert all(0.4 <= p < 0.9 for p in stall_probs(rng))
    assert all(p.kind == "bursty" for p in stall_profiles(rng, "ab").values())
