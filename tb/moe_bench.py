"""cocotb bench of the MoE-layer top (hdl.moe): the one bench of the regression and ``make sim``.

The host (:func:`tb.moe.run`) writes a job file (``MOE_JOB``): one or more *layers*,
each a layer configuration, a preamble (every expert's weights into the Logic-PIM)
and programs (the descriptor, token-entry, SpTC activation / weight and Logic-PIM
data streams of one step or micro-batch, with the golden layer output and the
expected executed schedule); then malformed inputs (``n_bad``, maybe none).

Per layer the bench sets the configuration ports, pulses ``clear``, runs the
preamble and then each program: it drives the five input streams (StreamDrivers)
with random valid/ready stalls (the classic uniform ones, or
``MOE_STALL_PROFILE``'s kind: a profile of its own per stream, :func:`stall_setup`),
takes both outputs through StreamMonitors (the stream rules checked every cycle),
and checks every output beat (``y_lanes`` values of one token, its token and first
row) and every output element against the golden layer, the
``trace`` stream against the program's schedule per unit and the sticky error
status (:func:`check_step`). Each malformed input is then fed under the last
layer's configuration: the error bits, that nothing wrong comes out and that the
top does not hang.

Measured per program (``l<i>_s<j>_*`` in ``MOE_RESULT``): cycles from its streams
offered to the top idle with every output out, and the SpTC / Logic-PIM busy-counter
deltas. With ``record`` (one layer, as ``make sim`` runs it) the bench also reads
the top's busy and job counters every cycle after the preamble and the cycle of every
``y`` and ``trace`` beat, and writes per-cycle busy bits, job starts (``trace``
beats), job ends (job-counter updates), program spans and first / last output
cycles. Everything is read from the top's ports, so the records are exact and do
not depend on internal signal names.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tb.common import StreamMonitor, stall_probs, stall_profiles
from tb.moe import IN_STREAMS, OUT_STREAMS, from_chunks

#: Cycles a bad input is watched after it settles for a stray output or job.
BAD_WATCH = 16
#: Cycle budget of one malformed input (times the stall slack).
BAD_BUDGET = 20_000


def decode_trace(words: list[int]) -> list[tuple[int, int, int]]:
    """The top's ``trace`` stream words -> (unit, expert, slots) records."""
    return [(w & 1, (w >> 1) & 0xFF, (w >> 9) & 0xFF) for w in words]


def check_step(sb, tag: str, dut, y_words: list[int], y_exp: np.ndarray, hidden: int,
               lanes: int, trace_words: list[int], trace_exp: np.ndarray) -> None:
    """Scoreboard one program of the layer top: the outputs (:func:`check_outputs`), the
    executed schedule (per unit, the (unit, expert, slots) records of the ``trace`` stream
    in the program's order) and the sticky error status."""
    check_outputs(sb, tag, y_words, y_exp, hidden, lanes)
    got = np.array(decode_trace(trace_words), np.int64).reshape(-1, 3)
    for u in (0, 1):
        a = got[got[:, 0] == u].tolist()
        b = trace_exp[trace_exp[:, 0] == u].tolist()
        sb.check(tag, a == b, f"unit {u} executed {a}, the program says {b}")
    e = int(dut.err.value)
    sb.check(tag, e == 0, f"err 0x{e:x} (sptc 0x{int(dut.sptc_err.value):x}, "
                          f"pim 0x{int(dut.pim_err.value):x})")


def y_beats(T: int, hidden: int, lanes: int) -> int:
    """``y`` beats of an END of T tokens: ``ceil(hidden / lanes)`` per token."""
    return T * -(-hidden // lanes)


def decode_y(word: int, lanes: int) -> tuple[list[int], int, int]:
    """A ``y`` beat (hdl.moe.y_layout(lanes)) -> (lanes int8 values, token, first row)."""
    vals = [_s8(word >> (8 * i)) for i in range(lanes)]
    return vals, (word >> (8 * lanes)) & 0xFF, (word >> (8 * lanes + 8)) & 0xFF


def y_values(received: list[int], hidden: int, lanes: int) -> list[int]:
    """Every output element of the beats (the lanes at rows < hidden)."""
    out = []
    for word in received:
        vals, _, r = decode_y(word, lanes)
        out += vals[:max(0, min(lanes, hidden - r))]
    return out


def check_outputs(sb, tag: str, received: list[int], y_exp: np.ndarray, hidden: int,
                  lanes: int) -> None:
    """Scoreboard the top's y stream of one step: token-major beats of ``lanes`` rows
    (``ceil(hidden / lanes)`` per token, rows ascending), every (row, token) element
    exactly once, every value equal to the golden layer output ``y_exp``."""
    T = y_exp.shape[1]
    per = -(-hidden // lanes)
    got = np.zeros((hidden, T), np.int64)
    seen = np.zeros((hidden, T), np.int64)
    for k, word in enumerate(received):
        vals, t, r = decode_y(word, lanes)
        want_t, want_c = divmod(k, per)
        if (t, r) != (want_t, want_c * lanes) or t >= T:
            sb.check(tag, False, f"output beat {k}: token/row ({t}, {r}), expected "
                                 f"({want_t}, {want_c * lanes})")
            break
        n = min(lanes, hidden - r)
        got[r:r + n, t] = vals[:n]
        seen[r:r + n, t] += 1
    sb.check(tag, len(received) == T * per and (seen == 1).all(),
             f"{len(received)} output beats for {T * per} ({T * hidden} elements)")
    sb.compare(tag, got, y_exp.astype(np.int64))


def _s8(v: int) -> int:
    v &= 0xFF
    return v - 256 if v & 0x80 else v


def stall_setup(rng):
    """Per-stream valid/ready behaviour from the host's environment: without
    ``MOE_STALL_PROFILE`` the classic run (one uniform probability for the inputs, one
    for the outputs; ``MOE_NO_STALLS=1``: none), else ``tb.common.stall_profiles``' kind
    with a profile of its own per stream. Returns (dict stream -> float or StallProfile,
    timeout factor: long stalls stretch a step far beyond the classic budget)."""
    kind = os.environ.get("MOE_STALL_PROFILE") or None
    if kind is None or os.environ.get("MOE_NO_STALLS") == "1":
        p_valid, p_ready = stall_probs(rng)
        return {n: (p_ready if n in OUT_STREAMS else p_valid)
                for n in IN_STREAMS + OUT_STREAMS}, 1
    return stall_profiles(rng, IN_STREAMS + OUT_STREAMS, kind), (1 if kind == "uniform" else 8)


class TimedMonitor(StreamMonitor):
    """A stream monitor that also records the cycle of every beat."""

    def __init__(self, dut, name, rng, p_ready, clock):
        super().__init__(dut, name, rng, p_ready)
        self.clock, self.cycles = clock, []

    def sample(self):
        n = len(self.received)
        super().sample()
        if len(self.received) > n:
            self.cycles.append(self.clock())


class Recorder:
    """Reads the top's busy and job counters every cycle while ``on`` (settled values);
    writes the number of jobs done so far to ``progress_path`` whenever it changes."""

    NAMES = ("sptc_busy", "pim_busy", "sptc_jobs", "pim_jobs", "sptc_phase", "pim_phase")

    def __init__(self, io, progress_path=None):
        self.io, self.progress_path = io, progress_path
        self.on = False
        self.rows: list[tuple] = []
        self.jobs_seen = 0

    def drive(self):
        pass

    def sample(self):
        if not self.on:
            return
        row = tuple(self.io.get(n) for n in self.NAMES)
        self.rows.append(row)
        n = row[2] + row[3]
        if n != self.jobs_seen and self.progress_path:
            self.jobs_seen = n
            Path(self.progress_path).write_text(str(n))


def recorded(rec: Recorder, t_mon: TimedMonitor, origin: int) -> dict:
    """The per-cycle records of a layer: busy bits per unit, the expert phase per unit
    (0 none, 1 gate, 2 up, 3 h load, 4 down: ``sptc_phase`` / ``pim_phase``), job starts
    (cycle, unit, expert, slots: the ``trace`` beats) and ends (cycle, unit: job-counter
    updates), cycles counted from ``origin`` (the layer's first program)."""
    rows = np.array(rec.rows, np.int64).reshape(-1, len(Recorder.NAMES))
    # rows[i] was read in cycle origin + i; a counter that advanced from row i to
    # row i + 1 counted cycle origin + i.
    d = np.diff(rows, axis=0)
    ann = [(c - origin, u, e, s) for c, (u, e, s) in
           zip(t_mon.cycles, decode_trace(t_mon.received))]
    done = [(i + 1, u) for u in (0, 1) for i in np.flatnonzero(d[:, 2 + u])
            for _ in range(int(d[i, 2 + u]))]
    done.sort()
    return dict(busy_sptc=(d[:, 0] > 0).astype(np.uint8), busy_pim=(d[:, 1] > 0).astype(np.uint8),
                phase_sptc=rows[:-1, 4].astype(np.uint8), phase_pim=rows[:-1, 5].astype(np.uint8),
                ann=np.array(ann, np.int64).reshape(-1, 4),
                done=np.array(done, np.int64).reshape(-1, 2))


def _set_cfg(dut, chunks) -> None:
    """The layer registers (the ``layer`` port: ``golden.program.LAYER_LAYOUT``)."""
    dut.layer.value = from_chunks(np.asarray(chunks).reshape(1, -1))[0]


# --------------------------------------------------------------------------- the cocotb test

try:
    import cocotb
except ImportError:
    cocotb = None


if cocotb is not None:
    from tb.common import Harness, Scoreboard, StreamDriver, as_profile, seeded_rng

    async def _pulse(h, dut, name):
        getattr(dut, name).value = 1
        await h.step()
        getattr(dut, name).value = 0

    @cocotb.test()
    async def moe_top(dut):
        from cocotb.utils import get_sim_time

        job = np.load(os.environ["MOE_JOB"], allow_pickle=False)
        rng = seeded_rng()
        prof, slack = stall_setup(rng)
        clock = lambda: h.cycle  # noqa: E731 - h is bound below
        drv = {n: StreamDriver(dut, n, rng, prof[n]) for n in IN_STREAMS}
        y_mon = TimedMonitor(dut, "y", rng, prof["y"], clock)          # both check the
        t_mon = TimedMonitor(dut, "trace", rng, prof["trace"], clock)  # stream rules
        h = Harness(dut, [*drv.values(), y_mon, t_mon])
        rec = None
        if int(job["record"]):
            rec = Recorder(h.io, os.environ.get("MOE_PROGRESS"))
            h.agents.append(rec)
        dut.clear.value = 0
        _set_cfg(dut, job["l0_cfg"])
        await h.start()
        lanes = int(job["y_lanes"])
        sb = Scoreboard("moe")
        res: dict = {"checked": 0}

        async def run_program(tag, descs, toks, act, w, din, n_out, budget):
            """Offer one program's streams and step until every output is out and the top
            is idle; returns that cycle (the registered status settles one edge later)."""
            for n, items in (("job", descs), ("tok", toks), ("sptc_act", act), ("sptc_w", w),
                             ("pim_din", din)):
                drv[n].push(items)
            y_mon.received.clear()
            await h.run_until(lambda: len(y_mon.received) >= n_out and all(
                d.idle for d in drv.values()) and not int(dut.busy.value), budget, tag)
            end = h.cycle
            await h.step()
            return end

        for li in range(int(job["n_layers"])):
            p = f"l{li}_"
            lname = str(job[p + "name"])
            cfg = job[p + "cfg"]
            _set_cfg(dut, cfg)
            hidden = int(job[p + "hidden"])
            await _pulse(h, dut, "clear")
            t0 = h.cycle
            await run_program(f"{lname} preamble", from_chunks(job[p + "pre_desc"]), [], [], [],
                              from_chunks(job[p + "pre_din"]), 0,
                              int(job[p + "pre_budget"]) * slack)
            res[p + "pre_cycles"] = h.cycle - t0
            e = int(dut.err.value)
            sb.check(lname, e == 0, f"preamble raised err 0x{e:x}")
            origin, origin_ps = h.cycle, get_sim_time(unit="ps")
            if rec is not None:
                rec.on = True
            y_mon.cycles.clear()
            t_mon.cycles.clear()
            t_mon.received.clear()
            spans: dict = {"start": [], "end": [], "first_y": [], "last_y": []}
            for si in range(int(job[p + "n_steps"])):
                q = f"{p}s{si}_"
                tag = f"{lname} step {si}"
                y_exp = job[q + "y"]
                T = y_exp.shape[1]
                t_before, y_before = len(t_mon.received), len(y_mon.cycles)
                c0 = [int(getattr(dut, n).value) for n in ("sptc_busy", "pim_busy")]
                start = h.cycle
                end = await run_program(tag, from_chunks(job[q + "desc"]), job[q + "tok"].tolist(),
                                        job[q + "act"].tolist(), from_chunks(job[q + "w"]),
                                        from_chunks(job[q + "din"]), y_beats(T, hidden, lanes),
                                        int(job[q + "budget"]) * slack)
                check_step(sb, tag, dut, y_mon.received, y_exp, hidden, lanes,
                           t_mon.received[t_before:], job[q + "trace"])
                res["checked"] += int(y_exp.size)
                res[q + "cycles"] = end - start
                res[q + "sptc_busy"] = int(dut.sptc_busy.value) - c0[0]
                res[q + "pim_busy"] = int(dut.pim_busy.value) - c0[1]
                ys = y_mon.cycles[y_before:]
                for k, c in (("start", start), ("end", end), ("first_y", ys[0] if ys else end),
                             ("last_y", ys[-1] if ys else end)):
                    spans[k].append(c - origin)
            counters = dict(sptc_jobs=int(dut.sptc_jobs.value), pim_jobs=int(dut.pim_jobs.value),
                            steps=int(dut.steps.value))
            res.update({p + k: v for k, v in counters.items()})
            if rec is not None:       # the one recorded layer: its records without prefix
                rec.on = False
                res.update(recorded(rec, t_mon, origin), **counters,
                           **{k: np.array(v, np.int64) for k, v in spans.items()},
                           pre_cycles=res[p + "pre_cycles"], origin=origin, origin_ps=origin_ps,
                           cycles=int(dut.cycles.value))
        # ---- malformed inputs: sticky error bits, nothing wrong out, no hang, clear
        for i in range(int(job["n_bad"])):
            tag = f"bad input '{job[f'b{i}_name']}'"
            _set_cfg(dut, job[f"b{i}_cfg"])
            await _pulse(h, dut, "clear")
            t_mon.received.clear()
            n_out = y_beats(int(job[f"b{i}_n_out"]) // hidden, hidden, lanes)  # from elements
            await run_program(tag, from_chunks(job[f"b{i}_desc"]), job[f"b{i}_tok"].tolist(),
                              job[f"b{i}_act"].tolist(), from_chunks(job[f"b{i}_w"]),
                              from_chunks(job[f"b{i}_din"]), n_out, BAD_BUDGET * slack)
            for _ in range(BAD_WATCH):       # nothing more may come out
                await h.step()
            e, want = int(dut.err.value), int(job[f"b{i}_err"])
            sb.check(tag, e == want, f"err 0x{e:x}, expected 0x{want:x}")
            for name, got, exp in zip(("sptc_err", "pim_err"),
                                      (int(dut.sptc_err.value), int(dut.pim_err.value)),
                                      job[f"b{i}_unit_err"].tolist()):
                sb.check(tag, exp < 0 or got == exp, f"{name} 0x{got:x}, expected 0x{exp:x}")
            sb.check(tag, len(y_mon.received) == n_out,
                     f"{len(y_mon.received)} output beats, expected {n_out}")
            sb.check(tag, len(t_mon.received) == int(job[f"b{i}_trace"]),
                     f"{len(t_mon.received)} jobs started, expected {int(job[f'b{i}_trace'])}")
            if int(job[f"b{i}_y_zero"]):
                vals = y_values(y_mon.received, hidden, lanes)
                sb.check(tag, not any(vals), f"an invalid token entry was combined: outputs "
                                             f"{sorted(set(vals))[:8]}, expected all 0")
        if int(job["n_bad"]):
            _set_cfg(dut, cfg)
            await _pulse(h, dut, "clear")
            await h.step()
            sb.check("clear", int(dut.err.value) == 0, "err not cleared")
        res["stall_profiles"] = repr({n: as_profile(p) for n, p in prof.items()})
        res["errors"] = "\n".join(sb.errors)
        np.savez(os.environ["MOE_RESULT"], **{k: np.asarray(v) for k, v in res.items()})
        sb.assert_clean()
