"""The Sparse Tensor Core bench: drivers, monitor, golden scoreboard (cocotb and the fast lanes).

The host (``sim.sptc``) writes a batch of jobs to the ``.npz`` named by
``MOE_JOB``: per job the register values, the weight beats (from
``golden.sptc.plan``), the activation words (LOADed at token 0, then any further
LOADs at their ``tok_base``), SEL and the *golden* output from
``golden.ssmm`` (computed from the compressed formats, not from the beats),
plus the error bits the job must raise (0 for a good job). This bench drives
the job through the DUT with random valid/ready stalls on every stream (the
classic uniform stalls, or ``MOE_STALL_PROFILE``'s kind: a profile of its own
per stream, see :func:`stall_setup`), takes ``res`` through a StreamMonitor
(the stream rules checked every cycle), reassembles the compressed output from
the result beats, and the scoreboard checks every element, the error status,
that every output element is written exactly once, and (with stalls off) the
cycle count the golden model predicts. A job the CHECK cycle must refuse (bad
registers, on the LOAD or the MATMUL) must take no input beat and send no
result beat. Observations go to ``MOE_RESULT`` for the host.
"""
from __future__ import annotations

import os

import cocotb
import numpy as np

from golden.sptc import REG_NAMES
from tb.common import (CocotbIO, Harness, Scoreboard, StreamDriver, StreamMonitor, as_profile,
                       stall_profiles)


def pack_weights(v0, v1, nib, idx) -> list[int]:
    """Weight beats -> integers in the lane layout (v0 | v1 | nib | idx, 24 bits per lane)."""
    lane = ((v0.astype(np.int64) & 0xFF) | ((v1.astype(np.int64) & 0xFF) << 8)
            | ((nib.astype(np.int64) & 0xF) << 16) | ((idx.astype(np.int64) & 0xF) << 20))
    out = []
    for row in lane:
        word = 0
        for r, v in enumerate(row.tolist()):
            word |= v << (24 * r)
        out.append(word)
    return out


def pack_sel(sel, lanes: int) -> list[int]:
    """SEL indices -> beats of ``lanes`` 16-bit entries (lane 0 in the low bits).

    The hardware ignores the last beat's lanes past n_sel; they are filled with
    0xFFFF (out of range and out of order) so a design that checked or stored
    them would fail the bench."""
    sel = [int(v) for v in sel]
    out = []
    for b in range(0, len(sel), lanes):
        chunk = sel[b:b + lanes]
        chunk += [0xFFFF] * (lanes - len(chunk))
        word = 0
        for l, v in enumerate(chunk):
            word |= (v & 0xFFFF) << (16 * l)
        out.append(word)
    return out


def unpack_result(word: int, cols: int, rows: int = 1):
    """A result beat -> (data[p][c], row, tile, mask, rmask), the fields of
    ``hdl.sptc.result_layout`` with ``drain_rows = rows``."""
    data = []
    for p in range(rows):
        lane = []
        for c in range(cols):
            v = (word >> (32 * (p * cols + c))) & 0xFFFFFFFF
            lane.append(v - (1 << 32) if v >> 31 else v)
        data.append(lane)
    base = 32 * cols * rows
    return (data, (word >> base) & 0xFFFF, (word >> (base + 16)) & 0xFFFF,
            (word >> (base + 32)) & ((1 << cols) - 1),
            (word >> (base + 32 + cols)) & ((1 << rows) - 1))


def report_progress(done_jobs: int):
    """Tell the host how many jobs are done (it draws the progress bar)."""
    path = os.environ.get("MOE_PROGRESS")
    if path:
        with open(path, "w") as fh:
            fh.write(str(done_jobs))


def stall_probs(rng, stalls: bool):
    """tb.common.stall_probs with the switch as an argument instead of MOE_NO_STALLS."""
    if not stalls:
        return 1.0, 1.0
    return float(rng.uniform(0.4, 0.9)), float(rng.uniform(0.4, 0.9))


#: The bench's streams: three the DUT takes, one it sends (checked by a StreamMonitor).
STREAMS = ("w", "act", "sel", "res")


def stall_setup(rng, stalls: bool, kind: str | None):
    """Per-stream valid/ready behaviour: ``kind`` None is the classic run (one uniform
    probability shared by the three drivers, one for the monitor; 1.0 without stalls),
    else ``tb.common.stall_profiles``' kind (uniform, bursty, starve, mixed) with a
    profile of its own per stream. Returns (dict stream -> float or StallProfile,
    timeout factor: long stalls stretch a job far beyond the classic budget)."""
    if not stalls or kind is None:
        p_valid, p_ready = stall_probs(rng, stalls)
        return {n: (p_ready if n == "res" else p_valid) for n in STREAMS}, 1
    return stall_profiles(rng, STREAMS, kind), (1 if kind == "uniform" else 8)


#: Cycles a refused job is watched for stray result beats and a dropped error bit.
REFUSED_WATCH = 8


async def bench(io, job: dict, *, seed: int = 1, stalls: bool = True, progress=None,
                stall_kind: str | None = None):
    """Drive the encoded jobs through the DUT behind ``io``; return (results, scoreboard, cycles).

    The one SpTC bench: cocotb (``CocotbIO``), the pyverilator fast lane
    (``sim.fastlane.Model``) and Amaranth's simulator (``sim.sptc_amaranth``)
    all run this function, so a seed gives the same stimulus and stalls on all.

    ``job`` is :func:`sim.sptc.encode_jobs`' dict. ``io`` must be out of reset.
    Results use the cocotb bench's keys: ``j<i>_out``, ``j<i>_cycles``, ``j<i>_error``,
    ``j<i>_start``/``j<i>_end`` (harness cycle around the MATMUL phase).
    ``progress(done_jobs)`` is called after each good job, as the cocotb bench does.
    ``stall_kind``: see :func:`stall_setup` (with ``stalls``).
    """
    rng = np.random.default_rng(seed)
    prof, slack = stall_setup(rng, stalls, stall_kind)
    cols = int(job["cols"])
    lanes, drain_rows = int(job["sel_lanes"]), int(job["drain_rows"])
    w_drv = StreamDriver(io, "w", rng, prof["w"])
    a_drv = StreamDriver(io, "act", rng, prof["act"])
    s_drv = StreamDriver(io, "sel", rng, prof["sel"])
    mon = StreamMonitor(io, "res", rng, prof["res"])   # also checks the stream rules
    h = Harness(io, [w_drv, a_drv, s_drv, mon])
    io.set("start", 0)
    io.set("clear", 0)
    sb = Scoreboard("sptc")
    results = {"stall_profiles": np.array(repr({n: as_profile(p) for n, p in prof.items()}))}

    async def pulse(name):
        io.set(name, 1)
        await h.step()
        io.set(name, 0)

    def opt(i, key):
        """A per-job integer the encoder may not have written (older job files)."""
        return int(job[f"j{i}_{key}"]) if f"j{i}_{key}" in job else 0

    async def refused(tag, err):
        """After a job the CHECK cycle refused: the error ``err`` stays, the unit idle
        and done, and nothing comes out for a while, then ``clear``."""
        held = [await h.step(lambda: (io.get("error"), io.get("busy"), io.get("done")))
                for _ in range(REFUSED_WATCH)]
        sb.check(tag, all(a == (err, 0, 1) for a in held),
                 f"after the refusal error/busy/done went {sorted(set(held))}, "
                 f"expected ({err}, 0, 1)")
        sb.check(tag, not mon.received,
                 f"{len(mon.received)} result beats from a refused job")
        for d in (w_drv, a_drv, s_drv):
            d.flush()
        await pulse("clear")
        after = await h.step(lambda: (io.get("error"), io.get("busy")))
        sb.check(tag, after == (0, 0), f"after clear: error/busy = {after}, expected (0, 0)")

    async def run_phase(regs, timeout):
        for name, v in zip(REG_NAMES, regs):
            io.set(name, int(v))
        await pulse("start")
        await h.run_until(lambda: io.get("done") == 1, timeout * slack)
        return io.get("cycles"), io.get("error")

    for i in range(int(job["n_jobs"])):
        j = lambda k: job[f"j{i}_{k}"]  # noqa: E731
        tag = f"job {i} ({str(j('name'))})"
        # ---- LOAD the activation buffer
        words = j("act")
        mon.received.clear()
        a_drv.push(words.tolist())
        load_err = opt(i, "load_err")
        sent0 = a_drv.sent
        cyc, err = await run_phase(j("load_regs").tolist(), timeout=40 * len(words) + 100)
        if load_err:
            # a LOAD the CHECK cycle refuses: exactly its error bits, no word taken
            results[f"j{i}_error"] = err
            sb.check(tag, err == load_err, f"LOAD error status 0x{err:x}, expected "
                                           f"0x{load_err:x}")
            sb.check(tag, a_drv.sent == sent0,
                     f"the refused LOAD took {a_drv.sent - sent0} activation words")
            await refused(tag, err)
            continue
        for n in range(opt(i, "n_loads") + 1):    # x's LOAD, then any at other tok_base
            ln = str(n or "")
            if n:
                words = j(f"act{n}")
                a_drv.push(words.tolist())
                cyc, err = await run_phase(j(f"load_regs{n}").tolist(),
                                           timeout=40 * len(words) + 100)
            results[f"j{i}_load_cycles{ln}"] = cyc
            sb.check(tag, err == 0, f"LOAD{ln} raised error 0x{err:x}")
            sb.check(tag, a_drv.idle, f"LOAD{ln} left activation words unconsumed")
            if not stalls:
                sb.check(tag, cyc == int(j(f"load_cycles{ln}")),
                         f"LOAD{ln} took {cyc} cycles, model says "
                         f"{int(j(f'load_cycles{ln}'))}")
        # ---- MATMUL
        beats = pack_weights(j("v0"), j("v1"), j("nib"), j("idx"))
        s_drv.push(pack_sel(j("sel"), lanes))
        w_drv.push(beats)
        mon.received.clear()
        timeout = 40 * (len(beats) + len(j("sel")) + int(j("out_rows"))) + 200
        results[f"j{i}_start"] = h.cycle
        reset_at = opt(i, "reset_at")
        sent0 = (w_drv.sent, s_drv.sent)
        if reset_at:
            # Reset the unit mid-job: it must come back idle, clean and silent (no
            # stale result beat), and the next job must be exact (the datapath
            # registers without a reset must not leak into it).
            for name, v in zip(REG_NAMES, j("regs").tolist()):
                io.set(name, int(v))
            await pulse("start")
            for _ in range(reset_at):
                await h.step()
            w_drv.flush()
            s_drv.flush()
            io.set("rst", 1)
            for _ in range(2):
                await h.step()
                mon.reset()   # a reset may drop a result beat on offer
            io.set("rst", 0)
            mon.received.clear()
            after = [await h.step(lambda: (io.get("busy"), io.get("error"), io.get("done")))
                     for _ in range(64)]
            sb.check(tag, all(a == (0, 0, 0) for a in after),
                     f"after reset: busy/error/done = {sorted(set(after))}, expected (0, 0, 0)")
            sb.check(tag, not mon.received,
                     f"{len(mon.received)} result beats after the reset")
            results[f"j{i}_end"] = h.cycle
            continue
        cyc, err = await run_phase(j("regs").tolist(), timeout)
        results[f"j{i}_end"] = h.cycle
        expect_err = int(j("expect_err"))
        results[f"j{i}_cycles"] = cyc
        results[f"j{i}_error"] = err
        if expect_err:
            sb.check(tag, err & expect_err == expect_err and err & ~expect_err == 0,
                     f"error status 0x{err:x}, expected 0x{expect_err:x}")
            if opt(i, "rejected"):
                # refused in CHECK: no weight or SEL beat taken, no result beat out
                sb.check(tag, (w_drv.sent, s_drv.sent) == sent0,
                         f"the refused job took {w_drv.sent - sent0[0]} weight and "
                         f"{s_drv.sent - sent0[1]} SEL beats")
                await refused(tag, err)
                continue
            w_drv.flush()
            s_drv.flush()
            await pulse("clear")
            after = await h.step(lambda: (io.get("error"), io.get("busy")))
            sb.check(tag, after == (0, 0), f"after clear: error/busy = {after}, expected (0, 0)")
            continue
        sb.check(tag, err == 0, f"unexpected error status 0x{err:x}")
        sb.check(tag, w_drv.idle and s_drv.idle, "job finished with input beats unconsumed")
        expected = j("expected")
        m_rows, n_sel = expected.shape
        got = np.zeros((m_rows, n_sel), np.int64)
        seen = np.zeros((m_rows, n_sel), np.int64)
        for word in mon.received:
            data, row0, tile, mask, rmask = unpack_result(word, cols, drain_rows)
            sb.check(tag, rmask & 1, f"result beat for row {row0} with row lane 0 empty")
            for p in range(drain_rows):
                if not rmask >> p & 1:
                    continue
                row = row0 + p
                for c in range(cols):
                    if mask >> c & 1:
                        col = tile * cols + c
                        if row < m_rows and col < n_sel:
                            got[row, col] = data[p][c]
                            seen[row, col] += 1
                        else:
                            sb.check(tag, False,
                                     f"result for row {row} column {col} out of range")
        sb.check(tag, (seen == 1).all(),
                 f"{int((seen == 0).sum())} output elements never written, "
                 f"{int((seen > 1).sum())} written twice")
        sb.compare(tag, got, expected.astype(np.int64))
        results[f"j{i}_out"] = got
        if not stalls:
            sb.check(tag, cyc == int(j("pred_cycles")),
                     f"MATMUL took {cyc} cycles, model says {int(j('pred_cycles'))}")
        if progress is not None:
            progress(i + 1)
    return results, sb, h.cycle



@cocotb.test()
async def sptc_jobs(dut):
    job = np.load(os.environ["MOE_JOB"], allow_pickle=False)
    h = Harness(dut)
    await h.start()
    results, sb, _ = await bench(CocotbIO(dut), job, seed=int(os.environ.get("MOE_SEED", 1)),
                                 stalls=os.environ.get("MOE_NO_STALLS") != "1",
                                 progress=report_progress,
                                 stall_kind=os.environ.get("MOE_STALL_PROFILE") or None)
    np.savez(os.environ["MOE_RESULT"], **results)
    sb.assert_clean()
