"""The router2 watch of the FPGA flow: when to stop nextpnr's router2.

nextpnr's router2 logs one line per iteration (overused wires and, with
``--tmg-ripup``, arcs failing the target). The flow polls that log while nextpnr
runs (:func:`synth.tools.run_yowasp`'s ``watch``) and stops the router by two rules
that read the log alone, so where it stops does not depend on the machine's speed:

* :func:`router2_stalled` - the congestion is not converging (``ROUTER_STALL_*``);
* :func:`router2_timing_stalled` - every wire is routed but the timing rip-up keeps
  failing the same arcs (``TMG_STALL_ITERS``).
"""
from __future__ import annotations

import re

# router2 routes the congested default configurations in minutes where router1
# (nextpnr's default) was still ripping up after half an hour.
ROUTER = "router2"

# router2 on a placement that needs more wires than the fabric has where it put
# them (the SpTC default) does not converge: its overused wires fall fast, then
# plateau and turn up again (70,635 -> 16,632 in 9 iterations, 17,392 at the 11th)
# while each iteration takes minutes. A design that routes falls steadily into a long tail of
# a few overused wires (the SpTC small 17,037 -> 915 in 6 iterations; the CIM fpga
# 50,739 -> 3,821 in 10, then 1-50 for a hundred more). So the flow stops router2
# when, from iteration ROUTER_STALL_MIN_ITER on, more than ROUTER_STALL_OVERUSED
# wires are still overused and the last ROUTER_STALL_WINDOW iterations removed
# less than ROUTER_STALL_FALL of them: the entry is then "unrouted" and carries
# nextpnr's post-placement Fmax estimate. The rule reads router2's own iteration
# log, so where it stops does not depend on the machine's speed (unlike
# ``--timeout``); ``--no-router-stop`` lets router2 run on.
ROUTER_STALL_MIN_ITER = 8
ROUTER_STALL_OVERUSED = 2000
ROUTER_STALL_WINDOW = 5
ROUTER_STALL_FALL = 0.15

# router2 with --tmg-ripup only ends when no arc fails the target; the flow stops it
# when every wire is routed and arcs have failed for this many iterations in a row
# (synth.nextpnr.ECP5_TMG_RIPUP_BY_DESIGN says which designs use the rip-up).
TMG_STALL_ITERS = 10

_ROUTER2_ITER = re.compile(
    r"^Info:\s+iter=(\d+) wires=\d+ overused=(\d+)(?: overuse=\d+)?(?: tmgfail=(\d+))?", re.M)


def router2_iterations(log: str) -> list[tuple[int, int, int]]:
    """(iteration, overused wires, failing arcs) of every router2 iteration in a log
    (failing arcs 0 where the log has none: runs without ``--tmg-ripup``)."""
    return [(int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))
            for m in _ROUTER2_ITER.finditer(log)]


def router2_progress(log: str) -> list[tuple[int, int]]:
    """(iteration, overused wires) of every router2 iteration in a nextpnr log."""
    return [(it, over) for it, over, _ in router2_iterations(log)]


def router2_timing_stalled(iters: list[tuple[int, int, int]]) -> str | None:
    """The reason to stop a ``--tmg-ripup`` router2 (TMG_STALL_ITERS), or None.

    It stalls when every wire is routed (no overuse) and arcs still fail the target
    in TMG_STALL_ITERS iterations in a row: this nextpnr's router2 only ends when no
    arc fails, and the rip-up has stopped finding better routes. Any such stretch
    in the log counts, also one that a finished run got past: the flow polls the
    log every few seconds, so whether a run ended before a poll saw the stretch
    depends on the machine, and this way the outcome does not."""
    k = router2_timing_stall(iters)
    if k is None:
        return None
    it, _, fail = iters[k]
    return (f"router2's timing rip-up stalled at iteration {it}: every wire routed, "
            f"{fail} arcs failing the target for {TMG_STALL_ITERS} iterations")


def router2_timing_stall(iters: list[tuple[int, int, int]]) -> int | None:
    """Index into ``iters`` of the iteration that completes the first stall, or None."""
    run = 0
    for k, (_, over, fail) in enumerate(iters):
        run = run + 1 if over == 0 and fail > 0 else 0
        if run == TMG_STALL_ITERS:
            return k
    return None


def router2_stalled(progress: list[tuple[int, int]]) -> str | None:
    """The reason to stop router2 (ROUTER_STALL_*), or None to let it go on."""
    if not progress:
        return None
    it, over = progress[-1]
    if it < ROUTER_STALL_MIN_ITER or over <= ROUTER_STALL_OVERUSED:
        return None
    before = [o for i, o in progress if i == it - ROUTER_STALL_WINDOW]
    if not before or before[0] <= 0:
        return None
    fall = 1 - over / before[0]
    if fall >= ROUTER_STALL_FALL:
        return None
    return (f"router2 stopped at iteration {it}: {over} wires still overused, "
            f"{fall:.0%} fewer than {ROUTER_STALL_WINDOW} iterations before "
            f"(less than {ROUTER_STALL_FALL:.0%}: not converging)")

