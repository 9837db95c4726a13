"""cocotb bench of Engine 3 (the CIM tile) and its host-side job runner.

Host side (pytest, ``make bench``): :class:`Job` describes one run - Monarch factors,
a strategy and a token batch (the program is built *inside* the bench with the same
``golden.cim`` mapper/encoder the golden model uses), or raw program words for malformed
programs. :func:`run_jobs` writes the jobs to an ``.npz`` (``MOE_JOB``), runs the cocotb
test below on a cached build, and returns the measurements it wrote (``MOE_RESULT``).

Simulator side (:func:`cim_jobs`): for each job the scoreboard checks, element by
element, the RTL results against ``golden.cim.execute`` (the program interpreter) and,
for Monarch jobs, against the golden factored matmul ``Monarch.matmul``; the sticky
error code against the interpreter's; the step counter; every token's exercised ADC range
(``adc_rows``/``adc_bits`` at its result beats) against ``golden.cim.program_activity``;
and with ``MOE_NO_STALLS=1`` the cycle cost of every instruction against the cycle
model. Malformed jobs must raise the
predicted error, discard the rest of their stream, and the tile must run the next job
after ``clear``. Stalls: the classic uniform ones, or ``MOE_STALL_PROFILE``'s kind (a
profile of its own per stream, ``tb.common.stall_profiles``); ``res`` goes through a
StreamMonitor, which checks the stream rules every cycle.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from golden import cim as gc
from golden import monarch as gm

# ====================================================================== host side


@dataclass
class Job:
    """One bench job. ``kind`` "monarch": monarchs + strategy + xs; "raw": words + beats."""
    name: str
    kind: str = "monarch"
    strategy: str = "dense"
    monarchs: list = field(default_factory=list)
    xs: np.ndarray | None = None          # (T, n) int8, natural order
    words: np.ndarray | None = None       # raw programs
    beats: np.ndarray | None = None
    expect: str | None = None             # error name the job must end with (raw jobs)
    clear_after: bool = False
    clear_before: bool = False


def _mode(mode) -> list:
    return [mode.code, mode.mult, mode.shift]


def _unmode(v):
    kind, mult, shift = (int(x) for x in v)
    return ("requant", mult, shift) if kind == 2 else ("int32", "int8_sat")[kind]


def save_jobs(path: Path, config: gc.CIMConfig, jobs: list[Job]) -> None:
    arrays = {}
    meta = {"config": dict(array_size=config.array_size, arrays=config.arrays,
                           lanes=config.lanes, n_max=config.n_max), "jobs": []}
    for i, j in enumerate(jobs):
        entry = dict(name=j.name, kind=j.kind, strategy=j.strategy, expect=j.expect,
                     clear_after=j.clear_after, clear_before=j.clear_before,
                     matrices=len(j.monarchs),
                     modes=[[_mode(mo.mid_mode), _mode(mo.out_mode)] for mo in j.monarchs])
        meta["jobs"].append(entry)
        for k, mo in enumerate(j.monarchs):
            arrays[f"j{i}_L{k}"] = mo.L
            arrays[f"j{i}_R{k}"] = mo.R
        if j.xs is not None:
            arrays[f"j{i}_x"] = np.asarray(j.xs, dtype=np.int8)
        if j.words is not None:
            arrays[f"j{i}_words"] = np.asarray(j.words, dtype=np.uint64)
            arrays[f"j{i}_beats"] = np.asarray(j.beats if j.beats is not None else [],
                                               dtype=np.uint64)
    np.savez(path, meta=np.array(json.dumps(meta)), **arrays)


def load_jobs(path) -> tuple[gc.CIMConfig, list[Job]]:
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
        config = gc.CIMConfig(**meta["config"])
        jobs = []
        for i, e in enumerate(meta["jobs"]):
            mons = [gm.Monarch(data[f"j{i}_L{k}"], data[f"j{i}_R{k}"], _unmode(e["modes"][k][0]),
                               _unmode(e["modes"][k][1])) for k in range(e["matrices"])]
            jobs.append(Job(e["name"], e["kind"], e["strategy"], mons,
                            data[f"j{i}_x"] if f"j{i}_x" in data else None,
                            data[f"j{i}_words"] if f"j{i}_words" in data else None,
                            data[f"j{i}_beats"] if f"j{i}_beats" in data else None,
                            e["expect"], e["clear_after"], e["clear_before"]))
    return config, jobs


def job_program(job: Job, config: gc.CIMConfig):
    """(words, beats, golden_y or None) of a job, through the shared golden API."""
    if job.kind == "raw":
        return ([int(w) for w in job.words], [int(b) for b in job.beats], None)
    b = job.monarchs[0].b
    mp = gc.map_monarch(b * b, b, config.m, job.strategy, matrices=len(job.monarchs))
    prog = gc.encode_program(mp, job.monarchs, len(job.xs), config)
    beats = gc.pack_inputs(list(job.xs) * len(job.monarchs), b, config)
    ys = [mo.matmul(x) for mo in job.monarchs for x in job.xs]
    return [int(w) for w in prog.words], beats, ys


@lru_cache(maxsize=4)
def tile_verilog(config_name: str) -> str:
    """Verilog of ``hdl.cim.CONFIGS[config_name]`` (elaborated once per process, shared
    by both simulators: the 64 x 64 default takes a few seconds to elaborate)."""
    from hdl.cim import CONFIGS, MODULE_NAME, build, config_params
    from hdl.verilog import to_verilog
    config = CONFIGS[config_name]
    verilog = to_verilog(build(config), MODULE_NAME, config_params(config))
    return verilog  # tb.cocotb_run.build applies the Icarus time-0 fix


def run_jobs(jobs: list[Job], *, config_name: str = "default", simulator: str = "verilator",
             test_dir: Path, seed: int = 1, stalls: bool = True, waves: bool = False,
             stall_profile: str | None = None) -> dict:
    """Build (cached) and run the bench on ``jobs``; returns the measurements.

    ``stall_profile`` (with ``stalls``): None for the classic random stalls, or a kind
    of ``tb.common.STALL_KINDS`` (a profile of its own per stream).
    Raises ``tb.cocotb_run.SimulationError`` if any scoreboard check fails.
    """
    from hdl.cim import CONFIGS, MODULE_NAME
    from tb import cocotb_run
    from tb.common import check_stall_profile, stall_env

    check_stall_profile(stall_profile)

    config = CONFIGS[config_name]
    test_dir = Path(test_dir)
    test_dir.mkdir(parents=True, exist_ok=True)
    job_path, result_path = test_dir / "cim_job.npz", test_dir / "cim_result.npz"
    save_jobs(job_path, config, jobs)
    verilog = tile_verilog(config_name)
    b = cocotb_run.build(f"cim_{config_name}", verilog, MODULE_NAME, simulator=simulator,
                         waves=waves)
    env = {"MOE_JOB": str(job_path), "MOE_RESULT": str(result_path), "MOE_SEED": str(seed),
           **stall_env(stalls, stall_profile)}
    cocotb_run.run(b, "tb.cim", test_dir=test_dir, env=env)
    with np.load(result_path, allow_pickle=False) as r:
        out = {k: r[k] for k in r.files}
    out["meta"] = json.loads(str(out["meta"]))
    return out


def rand_monarch(b: int, rng, out=None) -> gm.Monarch:
    """Random int8 factors with a ``mid`` requant scaled to keep stage-R sums in range."""
    sigma = np.sqrt(b) * 128 * 128 / 3            # rough std of a stage-R sum
    mult = int(min(65535, 127 * 65536 / (3 * sigma)))
    outs = [("requant", 200, 12), "int32", "int8_sat"]
    return gm.random_monarch(b, rng, mid=("requant", mult, 16),
                             out=out if out is not None else outs[int(rng.integers(3))])


def trace_job(seed: int = 0, max_tokens: int = 6, trace=None, step: int | None = None) -> Job:
    """An expert projection (hidden x hidden) in Monarch form on a MoE trace step's tokens.

    Step ``step``, by default the step with the most tokens, of the trace (default:
    ``golden.trace.load_default()``, hidden 64 -> n = 64, b = 8); its most loaded expert's
    tokens (SEL) form the batch. Token activations are int8 drawn from a generator
    seeded by the token's request id (the trace records routing, not activations); the
    weights are a random dense projection W projected to Monarch form
    (``golden.monarch.project``) and quantized. A hidden size that is not a square or a
    step without tokens raises ``golden.FormatError``.
    """
    from golden.errors import FormatError
    from golden import trace as traces
    rng = np.random.default_rng(seed)
    tr = trace if trace is not None else traces.load_default()
    n = tr.hidden
    b = int(round(np.sqrt(n)))
    if b * b != n:
        raise FormatError(f"trace: hidden = {n} is not a square: no Monarch b = sqrt(n)")
    if step is None:
        step = max(range(tr.steps), key=lambda i: tr.step(i).tokens)
    elif not 0 <= step < tr.steps:
        raise FormatError(f"step: {step} out of range 0..{tr.steps - 1}")
    st = tr.step(step)
    if st.tokens == 0:
        raise FormatError(f"step: step {step} has no tokens: nothing to project")
    expert = int(np.argmax(st.tokens_per_expert()))
    sel = st.sel(expert)[:max_tokens]
    xs = np.stack([np.random.default_rng([seed, int(st.request_id[t])])
                   .integers(-128, 128, size=n).astype(np.int8) for t in sel])
    W = rng.normal(size=(n, n)) / np.sqrt(n)
    L, R = gm.project(W, b)
    mon = gm.quantize(L, R, out=("requant", 3000, 16))
    return Job(f"trace step {step} expert {expert} ({len(sel)} tokens)", strategy="dense",
               monarchs=[mon], xs=xs)


def _headers(words, config):
    return {k: [i.index for i in gc.decode_program(words, config) if i.op == k]
            for k in gc.OPCODES.values()}


#: Program words after a malformed job's bad instruction (discarded by the tile).
MALFORMED_TAIL = 24


def malformed_jobs(config: gc.CIMConfig, seed: int = 0, b: int | None = None) -> list[Job]:
    """One raw job per malformed-program class (expected error named), built by mutating
    a valid two-token DenseMap program. Each starts from a cleared tile."""
    rng = np.random.default_rng(seed)
    b = b or config.b_min
    mon = gm.random_monarch(b, rng, mid=("requant", 300, 14), out="int8_sat")
    xs = rng.integers(-128, 128, size=(2, b * b)).astype(np.int8)
    mp = gc.map_monarch(b * b, b, config.m, "dense")
    base = [int(w) for w in gc.encode_program(mp, [mon], 2, config).words]
    beats = gc.pack_inputs(list(xs), b, config)
    hd = _headers(base, config)
    g = config.m // b
    s0 = hd["STEP"][0]                       # first step of token 0
    s1 = hd["STEP"][len(hd["STEP"]) // 2 + 1]   # a step of token 1
    cases = []

    def case(name, expect, edit, at=None):
        """``at``: the opcode the golden interpreter must stop at (the check under test).
        The program ends ``MALFORMED_TAIL`` words after the bad instruction (the tile must
        discard them; a longer tail only costs simulation time)."""
        w = list(base)
        edit(w)
        ex = gc.execute(w, config, beats)
        if at is not None:
            got = gc.OPCODES.get(w[ex.error_index] & 0xF) if ex.error_index >= 0 else None
            if (ex.error, got) != (expect, at):
                raise AssertionError(f"malformed case {name!r}: the golden stops with "
                                     f"{ex.error} at {got}, the case means {expect} at {at}")
        if ex.error_index >= 0:
            w = w[:ex.error_index + 1 + MALFORMED_TAIL]
        cases.append(Job(f"malformed: {name}", "raw", words=np.array(w, dtype=np.uint64),
                         beats=np.array(beats, dtype=np.uint64), expect=expect,
                         clear_before=True))

    case("unknown opcode in token 1", "BAD_OPCODE", lambda w: w.insert(s1, 0x7))
    case("zero word", "BAD_OPCODE", lambda w: w.__setitem__(hd["MID"][0], 0))
    case("reserved bit of a STEP", "BAD_OPCODE",
         lambda w: w.__setitem__(s0, w[s0] | 1 << gc.USED_BITS[gc.OP_STEP]))
    case("LOADW array out of range", "BAD_ARRAY",
         lambda w: w.__setitem__(0, gc.set_field(w[0], "loadw.array", config.arrays)))
    case("LOADW columns past the array", "BAD_COLUMN",
         lambda w: w.__setitem__(0, gc.set_field(gc.set_field(w[0], "loadw.col", config.m - 2),
                                                 "loadw.ncols", 4)))
    case("STEP array out of range", "BAD_ARRAY",
         lambda w: w.__setitem__(s1, gc.set_field(w[s1], "step.array", config.arrays)))
    case("STEP line out of range", "BAD_LINE",
         lambda w: w.__setitem__(s0, gc.set_field(w[s0], "step.act_line", b * b // config.m)))
    if g < gc.MAX_SLOTS:
        case("STEP row beyond the slots", "BAD_MASK",
             lambda w: w.__setitem__(s0, w[s0] | gc.set_field(0, "step.row_mask", 1 << g)))
    case("STEP with no column", "BAD_MASK",
         lambda w: w.__setitem__(s1, gc.set_field(w[s1], "step.col_mask", 0)))
    case("CFG block size too large", "BAD_CFG",
         lambda w: w.__setitem__(hd["CFG"][0], gc.set_field(w[hd["CFG"][0]], "cfg.log2b",
                                                            config.b_max.bit_length())))
    case("CFG mid mode int32", "BAD_CFG",
         lambda w: w.__setitem__(hd["CFG"][0], gc.set_field(w[hd["CFG"][0]], "cfg.mid.kind", 0)))
    case("STEP before INPUT", "BAD_SEQUENCE", lambda w: w.insert(hd["INPUT"][0], w[s0]))
    case("INPUT without CFG", "BAD_SEQUENCE", lambda w: w.pop(hd["CFG"][0]))
    case("OUTPUT in stage R", "BAD_SEQUENCE",
         lambda w: w.__setitem__(hd["MID"][1], gc.OP_OUTPUT))
    case("LOADW inside a token", "BAD_SEQUENCE", lambda w: w.insert(s1, gc.enc_loadw(0, 0, 1)))
    case("missing STEP", "UNWRITTEN", lambda w: w.pop(s1))
    case("accumulate into an unwritten slot", "UNWRITTEN",
         lambda w: w.__setitem__(s0, w[s0] | gc.set_field(0, "step.acc", 1)))
    # every other branch of the tile's checks (hdl/cim/tile.py ``err_now``), one each
    cfg0, mid0, out0 = hd["CFG"][0], hd["MID"][0], hd["OUTPUT"][0]
    l_last = max(i for i in hd["STEP"] if mid0 < i < out0)       # token 0's last L step
    lb_min = config.b_min.bit_length() - 1

    def cfg_field(field, value):
        return lambda w: w.__setitem__(cfg0, gc.set_field(w[cfg0], field, value))

    case("CFG inside a token", "BAD_SEQUENCE", lambda w: w.insert(s1, w[cfg0]), "CFG")
    case("INPUT inside a token", "BAD_SEQUENCE", lambda w: w.insert(s1, gc.OP_INPUT), "INPUT")
    case("MID before INPUT", "BAD_SEQUENCE", lambda w: w.insert(hd["INPUT"][0], gc.OP_MID),
         "MID")
    case("MID in stage L", "BAD_SEQUENCE", lambda w: w.insert(mid0 + 1, gc.OP_MID), "MID")
    if lb_min > 0:
        case("CFG block size too small", "BAD_CFG", cfg_field("cfg.log2b", lb_min - 1), "CFG")
    case("CFG mid kind 3", "BAD_CFG", cfg_field("cfg.mid.kind", 3), "CFG")
    case("CFG mid requant shift 0", "BAD_CFG", cfg_field("cfg.mid.shift", 0), "CFG")
    case("CFG out kind 3", "BAD_CFG", cfg_field("cfg.out.kind", 3), "CFG")
    case("CFG int8_sat out with a multiplier", "BAD_CFG", cfg_field("cfg.out.mult", 5), "CFG")
    case("CFG int8_sat out with a shift", "BAD_CFG", cfg_field("cfg.out.shift", 3), "CFG")
    case("LOADW of 0 columns", "BAD_COLUMN",
         lambda w: w.__setitem__(0, gc.set_field(w[0], "loadw.ncols", 0)), "LOADW")
    case("STEP accumulator line out of range", "BAD_LINE",
         lambda w: w.__setitem__(s0, gc.set_field(w[s0], "step.acc_line", b * b // config.m)),
         "STEP")
    case("STEP with no row", "BAD_MASK",
         lambda w: w.__setitem__(s1, gc.set_field(w[s1], "step.row_mask", 0)), "STEP")
    if g < gc.MAX_SLOTS:
        case("STEP column beyond the slots", "BAD_MASK",
             lambda w: w.__setitem__(s0, w[s0] | gc.set_field(0, "step.col_mask", 1 << g)),
             "STEP")
    case("OUTPUT with an unwritten slot", "UNWRITTEN", lambda w: w.pop(l_last), "OUTPUT")
    return cases


# ====================================================================== simulator side

try:
    import cocotb
except ImportError:  # pragma: no cover - host without cocotb
    cocotb = None


class _ProgDriver:
    """StreamDriver that also records the cycle of every accepted word."""

    def __init__(self, base, harness):
        self.base, self.h, self.accepts = base, harness, []

    def drive(self):
        self.base.drive()

    def sample(self):
        before = self.base.sent
        self.base.sample()
        if self.base.sent != before:
            self.accepts.append(self.h.cycle)


class _Status:
    """Records the cycles at which ``busy`` was low (to time the last instruction) and,
    at every result beat ``res`` takes, the exercised ADC range (``adc_rows``, ``adc_bits``)."""

    def __init__(self, dut, harness, res=None):
        self.dut, self.h, self.res = dut, harness, res
        self.idle: list[int] = []
        self.adc: list[tuple[int, int]] = []

    def drive(self):
        pass

    def sample(self):
        if not int(self.dut.busy.value):
            self.idle.append(self.h.cycle)
        while self.res is not None and len(self.adc) < len(self.res.received):
            self.adc.append((int(self.dut.adc_rows.value), int(self.dut.adc_bits.value)))

    def idle_after(self, cycle):
        return next((c for c in self.idle if c > cycle), None)


def _unpack(beats, n, config):
    return gc.unpack_outputs(beats, n, config) if beats else np.zeros((0, n), np.int64)


if cocotb is not None:

    @cocotb.test()
    async def cim_jobs(dut):
        from tb.common import (Harness, Scoreboard, StreamDriver, StreamMonitor, seeded_rng,
                               stall_probs, stall_profiles)

        rng = seeded_rng()
        no_stalls = os.environ.get("MOE_NO_STALLS") == "1"
        kind = os.environ.get("MOE_STALL_PROFILE") or None
        if kind is None or no_stalls:
            # classic: one uniform probability for both inputs, one for the output
            p_valid, p_ready = stall_probs(rng)
            prof = {"prog": p_valid, "act": p_valid, "res": p_ready}
        else:       # a profile of its own per stream (tb.common.stall_profiles)
            prof = stall_profiles(rng, ("prog", "act", "res"), kind)
            p_valid, p_ready = None, None
        config, jobs = load_jobs(os.environ["MOE_JOB"])
        h = Harness(dut, [])
        prog = _ProgDriver(StreamDriver(dut, "prog", rng, prof["prog"]), h)
        act = StreamDriver(dut, "act", rng, prof["act"])
        res = StreamMonitor(dut, "res", rng, prof["res"])   # also checks the stream rules
        status = _Status(dut, h, res)
        h.agents = [prog, act, res, status]
        dut.clear.value = 0
        await h.start()
        sb = Scoreboard("cim")
        rec = {"costs": [], "cost_ops": [], "offsets": [0], "total": [], "steps": [],
               "adc_rows": [], "adc_bits": []}

        async def pulse_clear():
            dut.clear.value = 1
            await h.step()
            dut.clear.value = 0
            await h.step()
            sb.check("clear", int(dut.error.value) == 0 and int(dut.busy.value) == 0,
                     "error/busy still set after clear")

        for j in jobs:
            if j.clear_before:
                await pulse_clear()
            words, beats, ys = job_program(j, config)
            exp = gc.execute(words, config, beats)
            if j.expect is not None:
                sb.check(j.name, exp.error == j.expect,
                         f"golden predicts {exp.error}, job expects {j.expect}")
            steps0 = int(dut.steps.value)
            prog.accepts.clear()
            res.received.clear()
            status.idle.clear()
            status.adc.clear()
            prog.base.push(words)
            act.push(beats)
            bad = exp.error != "OK"
            nbeats = sum(len(o) for o in exp.outputs) // config.lanes
            budget = 50 * (exp.total_cycles + len(words) + len(beats)) + 2000
            if bad:
                await h.run_until(lambda: prog.base.idle and act.idle and int(dut.error.value),
                                  budget, f"{j.name}: error state")
                for _ in range(20):     # it must stay in error and emit nothing more
                    await h.step()
                sb.check(j.name, int(dut.error.value) == 1, "error flag dropped")
                sb.check(j.name, int(dut.error_code.value) == exp.error_code,
                         f"error_code {int(dut.error_code.value)} != golden {exp.error_code} "
                         f"({exp.error})")
            else:
                done = lambda: (prog.base.idle and act.idle and len(res.received) >= nbeats
                                and not int(dut.busy.value))
                await h.run_until(done, budget, j.name)
                for _ in range(5):
                    await h.step()
                sb.check(j.name, int(dut.error.value) == 0,
                         f"unexpected error code {int(dut.error_code.value)}")
                sb.check(j.name, int(dut.steps.value) - steps0 == exp.steps,
                         f"steps {int(dut.steps.value) - steps0} != golden {exp.steps}")
            # data: every element against the interpreter, and the factored matmul
            n_out = len(exp.outputs[0]) if exp.outputs else (ys[0].size if ys else 1)
            got = _unpack(res.received, n_out, config)
            sb.compare(f"{j.name}: outputs vs golden.cim.execute", got,
                       np.array(exp.outputs, dtype=np.int64).reshape(-1, n_out))
            if ys is not None and not bad:
                b = j.monarchs[0].b
                y_rtl = got[:, gm.perm(b)] if len(got) else got
                sb.compare(f"{j.name}: outputs vs Monarch.matmul", y_rtl,
                           np.array([y.astype(np.int64) for y in ys]))
            # cycles: every instruction's cost against the cycle model
            costs = []
            if not bad and prog.accepts:
                heads = [idx for idx, _, _ in exp.cycles]
                acc = prog.accepts
                for k, idx in enumerate(heads):
                    nxt = (acc[heads[k + 1]] if k + 1 < len(heads)
                           else status.idle_after(acc[idx]))
                    costs.append(nxt - acc[idx] if nxt is not None else -1)
                if no_stalls:
                    want = [c for _, _, c in exp.cycles]
                    bad_i = [k for k, (a, b_) in enumerate(zip(costs, want)) if a != b_]
                    sb.check(f"{j.name}: cycles", not bad_i,
                             "instruction costs differ from the cycle model at "
                             + ", ".join(f"#{k} {exp.cycles[k][1]} rtl {costs[k]} model "
                                         f"{want[k]}" for k in bad_i[:5]))
            rec["costs"] += costs
            rec["cost_ops"] += [op for _, op, _ in exp.cycles][:len(costs)]
            rec["offsets"].append(len(rec["costs"]))
            rec["total"].append(sum(costs))
            rec["steps"].append(exp.steps)
            # exercised ADC range of every token against the golden's (per result beat)
            want = gc.program_activity(words, config, beats).tokens
            bpt = max(1, n_out // config.lanes)
            toks = [status.adc[k:k + bpt] for k in range(0, len(status.adc), bpt)]
            got_adc = [t[0] if len(set(t)) == 1 else None for t in toks]
            sb.check(f"{j.name}: ADC range", got_adc == [(r, gc.rows_bits(r)) for r in want],
                     f"adc_rows/adc_bits per token {got_adc} != golden "
                     f"{[(r, gc.rows_bits(r)) for r in want]}")
            # what the tile reported (the largest range over the job's result beats)
            seen = all(t is not None for t in got_adc)
            rec["adc_rows"].append(max((t[0] for t in got_adc), default=0) if seen else -1)
            rec["adc_bits"].append(max((t[1] for t in got_adc), default=0) if seen else -1)
            if bad or j.clear_after:
                await pulse_clear()

        out = os.environ.get("MOE_RESULT")
        if out:
            np.savez(out, meta=np.array(json.dumps({"p_valid": p_valid, "p_ready": p_ready,
                                                    "no_stalls": no_stalls,
                                                    "profiles": {
                                                        "prog": repr(prog.base.p_valid),
                                                        "act": repr(act.p_valid),
                                                        "res": repr(res.p_ready)},
                                                    "names": [j.name for j in jobs]})),
                     costs=np.array(rec["costs"], dtype=np.int64),
                     cost_ops=np.array(rec["cost_ops"], dtype=str),
                     offsets=np.array(rec["offsets"], dtype=np.int64),
                     total=np.array(rec["total"], dtype=np.int64),
                     steps=np.array(rec["steps"], dtype=np.int64),
                     adc_rows=np.array(rec["adc_rows"], dtype=np.int64),
                     adc_bits=np.array(rec["adc_bits"], dtype=np.int64))
        sb.assert_clean()
