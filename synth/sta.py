"""Where a routed design misses its clock target: every failing endpoint, grouped.

nextpnr prints one critical path per clock; when a few hundred endpoints fail,
that path says little about where the rest are. This reads the SDF nextpnr
writes after routing (``--sdf``: every cell's pin-to-pin delays, clock-to-out
and setup times, and every routed connection's delay) and recomputes the
latest arrival at every timing endpoint (single clock, max delays, as nextpnr's
own analysis does; the flow checks that the worst path it finds is nextpnr's
critical path). Failing endpoints are grouped by (start register, end register)
with bit indices folded to ``#``, so ``core.drain_#_# -> core.o#_ha_#_#``
stands for every such path; each group keeps its worst slack and one full path.

Not timed, as in nextpnr: paths from constant drivers and from the reset pin
(the shell's ``rst`` is asynchronous to the clock).
"""
from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

# Clock pins of the ECP5 cells nextpnr's SDF times (an IOPATH from one of these
# is a clock-to-out: the path starts there).
CLOCK_PINS = frozenset({"CLK", "CLK0", "CLK1", "CLK2", "CLK3", "CLKA", "CLKB", "WCK"})
UNTIMED_SOURCES = ("$PACKER_GND", "$PACKER_VCC", "rst$")

_TRIPLE = r"\(([-\d.]*):([-\d.]*):([-\d.]*)\)"
_CELL = re.compile(r"\(CELLTYPE \"([^\"]+)\"\)\s*\(INSTANCE ([^)]*)\)(.*?)(?=\(CELL\b|\Z)", re.S)
_INTERCONNECT = re.compile(r"\(INTERCONNECT (\S+) (\S+) " + _TRIPLE)
_IOPATH = re.compile(r"\(IOPATH (\S+) (\S+) " + _TRIPLE)
_SETUP = re.compile(r"\(SETUPHOLD \((?:posedge|negedge) (\S+)\) \((?:posedge|negedge) \S+\) "
                    + _TRIPLE)


def _unescape(name: str) -> str:
    return name.replace("\\", "")


def _max(m, first: int) -> float:
    """The max of an SDF (min:typ:max) triple, in ps (an empty field counts as 0)."""
    return float(m[first + 2] or 0)


@dataclass
class Group:
    start: str
    end: str
    count: int = 0
    worst_ps: float = 0.0
    path: list = field(default_factory=list)   # [(pin, arrival ps)] of the worst member


@dataclass
class Analysis:
    period_ps: float
    endpoints: int
    failing: int
    worst_slack_ps: float
    worst_arrival_ps: float
    groups: list                               # [Group], most members first

    def as_dict(self, top: int = 12) -> dict:
        return {"endpoints": self.endpoints, "failing_endpoints": self.failing,
                "worst_slack_ns": round(self.worst_slack_ps / 1000, 3),
                "failing_groups": [{"start": g.start, "end": g.end, "endpoints": g.count,
                                    "worst_slack_ns": round(g.worst_ps / 1000, 3)}
                                   for g in self.groups[:top]]}


def _fold(pin: str) -> str:
    """A path's start or end pin -> its register/cell family (bit indices as #)."""
    cell = pin.rsplit("/", 1)[0]
    cell = re.sub(r"(_TRELLIS_FF_Q(_\d+)?|_TRELLIS_FF_DI.*|_LUT4_.*|_PFUMX.*|_L6MUX21.*|"
                  r"\$CCU2_COMB\d|_CCU2C.*)$", "", cell)
    return re.sub(r"\d+", "#", cell)


def analyse(sdf: str, period_ps: float) -> Analysis:
    """Latest arrival and slack at every endpoint of the SDF text ``sdf``."""
    fanin = defaultdict(list)       # sink pin -> [(driver pin, delay)]
    arcs = defaultdict(list)        # cell output pin -> [(cell input pin, delay)]
    setup = {}                      # endpoint pin -> setup time
    for m in _INTERCONNECT.finditer(sdf):
        fanin[_unescape(m[2])].append((_unescape(m[1]), _max(m, 3)))
    for cm in _CELL.finditer(sdf):
        inst = _unescape(cm[2].strip())
        for m in _IOPATH.finditer(cm[3]):
            arcs[f"{inst}/{m[2]}"].append((f"{inst}/{m[1]}", _max(m, 3)))
        for m in _SETUP.finditer(cm[3]):
            pin = f"{inst}/{m[1]}"
            setup[pin] = max(setup.get(pin, 0.0), _max(m, 2))

    arrival, pred = {}, {}

    def arrive(pin: str) -> float:
        # iterative DFS (carry chains make recursive descent deep)
        stack = [pin]
        while stack:
            p = stack[-1]
            if p in arrival:
                stack.pop()
                continue
            if p in fanin:
                srcs = [(s, d) for s, d in fanin[p] if not s.startswith(UNTIMED_SOURCES)]
            else:
                srcs = arcs.get(p, [])
            todo = [s for s, _ in srcs
                    if s not in arrival and s.rsplit("/", 1)[1] not in CLOCK_PINS]
            if todo:
                stack.extend(todo)
                continue
            best, src = None, None
            for s, d in srcs:
                a = d if s.rsplit("/", 1)[1] in CLOCK_PINS else arrival[s] + d
                if best is None or a >= best:
                    best, src = a, s
            arrival[p] = -1e18 if best is None else best   # untimed: no timed source
            pred[p] = src
            stack.pop()
        return arrival[pin]

    slacks = []
    for pin, su in setup.items():
        a = arrive(pin)
        if a > -1e17:
            slacks.append((period_ps - su - a, pin))
    slacks.sort()
    groups = {}
    for slack, pin in slacks:
        if slack >= 0:
            break
        chain, p = [], pin
        while p is not None:
            chain.append(p)
            p = pred.get(p)
        chain.reverse()
        key = (_fold(chain[0]), _fold(pin))
        g = groups.get(key)
        if g is None:
            g = groups[key] = Group(key[0], key[1], worst_ps=slack,
                                    path=[(q, arrival.get(q, 0.0)) for q in chain])
        g.count += 1
    worst = slacks[0] if slacks else (0.0, None)
    return Analysis(period_ps=period_ps, endpoints=len(slacks),
                    failing=sum(1 for s, _ in slacks if s < 0),
                    worst_slack_ps=worst[0],
                    worst_arrival_ps=(period_ps - worst[0] - setup[worst[1]]) if worst[1] else 0.0,
                    groups=sorted(groups.values(), key=lambda g: (-g.count, g.worst_ps)))


def report(a: Analysis, top: int = 25, paths: int = 8) -> str:
    """Text report: the groups, then the worst path of the first ``paths`` groups."""
    lines = [f"{a.failing} of {a.endpoints} endpoints fail {1e6 / a.period_ps:.1f} MHz "
             f"(worst slack {a.worst_slack_ps / 1000:.3f} ns)", "",
             "endpoints  worst slack ns  start -> end"]
    for g in a.groups[:top]:
        lines.append(f"{g.count:9d}  {g.worst_ps / 1000:14.3f}  {g.start} -> {g.end}")
    if len(a.groups) > top:
        rest = a.groups[top:]
        lines.append(f"{sum(g.count for g in rest):9d}  (in {len(rest)} more groups)")
    for g in a.groups[:paths]:
        lines += ["", f"worst path of {g.start} -> {g.end} (slack {g.worst_ps / 1000:.3f} ns):",
                  "   incr ns  arrival ns  pin"]
        prev = 0.0
        for pin, t in g.path:
            if pin.endswith(("/FCI",)) or (pin.endswith("/FCO") and t - prev < 100):
                prev = t
                continue          # carry-chain hops: kept in the arrival, not listed
            lines.append(f"  {(t - prev) / 1000:8.3f}  {t / 1000:10.3f}  {pin}")
            prev = t
    return "\n".join(lines) + "\n"


def analyse_file(path: str | Path, freq_mhz: float) -> Analysis:
    return analyse(Path(path).read_text(), 1e6 / freq_mhz)


def main(argv=None) -> int:
    import argparse
    ap = argparse.ArgumentParser(prog="python -m synth.sta",
                                 description="failing endpoints of a routed design, grouped")
    ap.add_argument("sdf", help="SDF written by nextpnr --sdf (make synth keeps routed.sdf)")
    ap.add_argument("--freq", type=float, default=150.0, help="clock target in MHz")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--paths", type=int, default=8)
    args = ap.parse_args(argv)
    print(report(analyse_file(args.sdf, args.freq), args.top, args.paths), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
