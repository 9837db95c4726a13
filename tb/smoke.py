"""cocotb bench of hdl.stream.SkidBuffer: order and content preserved under random stalls."""
import cocotb

import os

from tb.common import (Harness, Scoreboard, StreamDriver, StreamMonitor, seeded_rng, stall_probs,
                       stall_profiles)


@cocotb.test()
async def skid_buffer_under_stalls(dut):
    """300 random payloads through the buffer; the output's stream rules checked every
    cycle by the monitor. Stalls: classic uniform, or ``MOE_STALL_PROFILE``'s kind."""
    rng = seeded_rng()
    if os.environ.get("MOE_STALL_PROFILE"):
        prof = stall_profiles(rng, ("i", "o"))
        p_valid, p_ready = prof["i"], prof["o"]
    else:
        p_valid, p_ready = stall_probs(rng)
    width = len(dut.i__payload)
    nbytes = -(-width // 8)   # any width, also past numpy's 64-bit integers
    data = [int.from_bytes(rng.bytes(nbytes), "little") & ((1 << width) - 1) for _ in range(300)]
    drv = StreamDriver(dut, "i", rng, p_valid)
    mon = StreamMonitor(dut, "o", rng, p_ready)
    h = Harness(dut, [drv, mon])
    await h.start()
    drv.push(data)
    await h.run_until(lambda: len(mon.received) == len(data), timeout=200 * len(data))
    for _ in range(10):  # nothing extra may come out
        await h.step()
    sb = Scoreboard("skid")
    sb.compare("payloads", mon.received, data)
    sb.assert_clean()
