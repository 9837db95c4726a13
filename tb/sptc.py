"""cocotb bench of the Sparse Tensor Core: drivers, monitor, golden scoreboard.

The host (``sim.sptc``) writes a batch of jobs to the ``.npz`` named by
``MOE_JOB``: per job the register values, the weight beats (from
``golden.sptc.plan``), the activation words, SEL and the *golden* output from
``golden.ssmm`` (computed from the compressed formats, not from the beats),
plus the error bits the job must raise (0 for a good job). This bench drives
the job through the DUT with random valid/ready stalls on every stream,
reassembles the compressed output from the result beats, and the scoreboard
checks every element, the error status, that every output element is written
exactly once, and (with stalls off) the cycle count the golden model predicts.
Observations go to ``MOE_RESULT`` for the host.
"""
from __future__ import annotations

import os

import cocotb
import numpy as np

from tb.common import Harness, Scoreboard, StreamDriver, StreamMonitor, seeded_rng, stall_probs

REG_NAMES = ("op", "mode", "out_mode", "mult", "shift", "k_words", "v_steps", "m_rows",
             "n_row_tiles", "n_sel", "n_tokens", "sam_n", "sam_m")


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


def unpack_result(word: int, cols: int):
    data = []
    for c in range(cols):
        v = (word >> (32 * c)) & 0xFFFFFFFF
        data.append(v - (1 << 32) if v >> 31 else v)
    base = 32 * cols
    return (data, (word >> base) & 0xFFFF, (word >> (base + 16)) & 0xFFFF,
            (word >> (base + 32)) & ((1 << cols) - 1))


def report_progress(done_jobs: int):
    """Tell the host how many jobs are done (it draws the progress bar)."""
    path = os.environ.get("MOE_PROGRESS")
    if path:
        with open(path, "w") as fh:
            fh.write(str(done_jobs))


async def pulse(h: Harness, name: str):
    getattr(h.dut, name).value = 1
    await h.step()
    getattr(h.dut, name).value = 0


def set_regs(dut, regs):
    for name, v in zip(REG_NAMES, regs):
        getattr(dut, name).value = int(v)


async def run_phase(h, dut, regs, timeout):
    set_regs(dut, regs)
    await pulse(h, "start")
    await h.run_until(lambda: int(dut.done.value) == 1, timeout)
    return int(dut.cycles.value), int(dut.error.value)


@cocotb.test()
async def sptc_jobs(dut):
    job = np.load(os.environ["MOE_JOB"], allow_pickle=False)
    rng = seeded_rng()
    stalls = os.environ.get("MOE_NO_STALLS") != "1"
    p_valid, p_ready = stall_probs(rng)
    cols = int(job["cols"])
    w_drv = StreamDriver(dut, "w", rng, p_valid)
    a_drv = StreamDriver(dut, "act", rng, p_valid)
    s_drv = StreamDriver(dut, "sel", rng, p_valid)
    mon = StreamMonitor(dut, "res", rng, p_ready)
    h = Harness(dut, [w_drv, a_drv, s_drv, mon])
    dut.start.value = 0
    dut.clear.value = 0
    await h.start()
    sb = Scoreboard("sptc")
    results = {}
    for i in range(int(job["n_jobs"])):
        j = lambda k: job[f"j{i}_{k}"]
        tag = f"job {i} ({str(j('name'))})"
        # ---- LOAD the activation buffer
        words = j("act")
        a_drv.push(words.tolist())
        cyc, err = await run_phase(h, dut, j("load_regs"), timeout=40 * len(words) + 100)
        sb.check(tag, err == 0, f"LOAD raised error 0x{err:x}")
        sb.check(tag, a_drv.idle, "LOAD left activation words unconsumed")
        if not stalls:
            sb.check(tag, cyc == int(j("load_cycles")),
                     f"LOAD took {cyc} cycles, model says {int(j('load_cycles'))}")
        # ---- MATMUL
        beats = pack_weights(j("v0"), j("v1"), j("nib"), j("idx"))
        s_drv.push(j("sel").tolist())
        w_drv.push(beats)
        mon.received.clear()
        timeout = 40 * (len(beats) + len(j("sel")) + int(j("out_rows"))) + 200
        results[f"j{i}_start"] = h.cycle
        cyc, err = await run_phase(h, dut, j("regs"), timeout)
        results[f"j{i}_end"] = h.cycle
        expect_err = int(j("expect_err"))
        results[f"j{i}_cycles"] = cyc
        results[f"j{i}_error"] = err
        if expect_err:
            sb.check(tag, err & expect_err == expect_err and err & ~expect_err == 0,
                     f"error status 0x{err:x}, expected 0x{expect_err:x}")
            # Recover: clear, drop what the aborted job left, the next job must pass.
            w_drv.flush()
            s_drv.flush()
            await pulse(h, "clear")
            after = await h.step(lambda: (int(dut.error.value), int(dut.busy.value)))
            sb.check(tag, after == (0, 0), f"after clear: error/busy = {after}, expected (0, 0)")
            continue
        sb.check(tag, err == 0, f"unexpected error status 0x{err:x}")
        sb.check(tag, w_drv.idle and s_drv.idle, "job finished with input beats unconsumed")
        expected = j("expected")
        m_rows, n_sel = expected.shape
        got = np.zeros((m_rows, n_sel), np.int64)
        seen = np.zeros((m_rows, n_sel), np.int64)
        for word in mon.received:
            data, row, tile, mask = unpack_result(word, cols)
            for c in range(cols):
                if mask >> c & 1:
                    col = tile * cols + c
                    if row < m_rows and col < n_sel:
                        got[row, col] = data[c]
                        seen[row, col] += 1
                    else:
                        sb.check(tag, False, f"result for row {row} column {col} out of range")
        sb.check(tag, (seen == 1).all(),
                 f"{int((seen == 0).sum())} output elements never written, "
                 f"{int((seen > 1).sum())} written twice")
        sb.compare(tag, got, expected.astype(np.int64))
        results[f"j{i}_out"] = got
        if not stalls:
            sb.check(tag, cyc == int(j("pred_cycles")),
                     f"MATMUL took {cyc} cycles, model says {int(j('pred_cycles'))}")
        report_progress(i + 1)
    np.savez(os.environ["MOE_RESULT"], **results)
    sb.assert_clean()
