"""The cycle model of the Logic-PIM unit: the DRAM command scheduler of the RTL replayed
command by command (event driven), the MAC pipeline and the instruction sequencer,
giving the exact cycle count and DRAM command trace of an instruction stream with no
stream stalls (:func:`predict`), and the analytic helpers built on it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import FormatError
from ..softmax import unit_schedule
from .config import PIMConfig
from .execute import instr_errors
from .isa import CMD_ACT, CMD_PRE, CMD_RD, CMD_REF, CMD_WR, decode, encode
from .program import gemm_program


#: Pipeline constants of the RTL (hdl/pim), in cycles; see docs/pim.md.
FIFO_LAT = 2        # SyncFIFOBuffered: written at c -> readable at c + 2
MAC_DONE = 5        # last MAC issue at c -> sequencer fetches the next instruction at c + 5
OUT_LAT = 6         # last MAC issue at c -> last output beat leaves at c + 6 (ready = 1)
IFETCH = FIFO_LAT   # instruction accepted at c -> first fetch at c + 2
#: ATTN (docs/attention.md, "Timing"): last score-pass MAC issue at c -> the softmax
#: job is handed over at c + 4 (``ATTN_SM_START``; it starts then or when the previous
#: one has written its last probability, whichever is later) and its first score
#: goes in 2 cycles after the start (``ATTN_SM_FEED``); the sequencer moves on at c + 5.
#: Value pass: last issue at c -> first output issue at c + 3; an output issued at c
#: leaves at c + 4; the last leaves at c -> next fetch c + 2.
ATTN_SM_START = 4
ATTN_SM_FEED = 2
ATTN_DRAIN = 3
ATTN_OUT_LAT = 4
ATTN_DONE = 2
#: Instructions that leave a pending ATTN tail (its value pass and output) pending.
ATTN_KEEPS_TAIL = ("LOAD_TOKENS", "NOP", "ATTN")


@dataclass
class Timing:
    """Result of :func:`predict`."""
    cycles: int                  # busy cycles (what the RTL's perf counter reports)
    commands: list               # (cycle, cmd, bundle, row, col) from the first accept = 0
    reads: int
    writes: int
    acts: int
    refs: int
    instr_start: list            # fetch cycle of each instruction
    gemm_spans: list             # (first command cycle, last MAC issue) per GEMM
    attn_spans: list = field(default_factory=list)   # per ATTN: dict of phase cycles


class _Ctrl:
    """Event-driven replay of the RTL DRAM scheduler (hdl/pim/ctrl.py).

    Each ``*_ok`` is the first cycle the command is legal; the RTL keeps the same
    information as down-counters. Decisions follow the RTL's fixed priority:
    refresh (PRE open bundles, then REF) > RD/WR of the current word > ACT of the
    current segment, else of the next segment > PRE of bundles no longer needed.
    """

    def __init__(self, cfg: PIMConfig, due_at: int, trace: bool):
        self.cfg, self.T = cfg, cfg.timing
        B = cfg.bundles
        self.open, self.row = [False] * B, [0] * B
        neg = -(1 << 40)
        self.act_ok, self.rd_ok, self.wr_ok, self.pre_ok = [neg] * B, [neg] * B, [neg] * B, [neg] * B
        self.ref_ok = neg
        self.faw, self.faw_i = [neg] * 4, 0
        self.due_at = due_at
        self.now = 0
        self.cmds = [] if trace else None
        self.counts = dict(rd=0, wr=0, act=0, ref=0)
        self.rem = 0
        self.write = False
        self.cur = (0, 0, 0)
        self.k = 0
        self.pops: list[int] = []
        self.mac_t = 1
        self.mac_start = 0
        self.s_prev = None
        self.first_cmd = None

    # ---- command effects
    def _log(self, n, c, b=0, r=0, col=0):
        if self.cmds is not None:
            self.cmds.append((n, c, b, r, col))

    def _act(self, n, b, r):
        T, B = self.T, self.cfg.bundles
        self.open[b], self.row[b] = True, r
        for x in range(B):      # tACT: the two-cycle ACT holds off any ACT/PRE/REF
            d = max(T.tRC, T.tRRD_L) if x == b else T.tRRD_S
            self.act_ok[x] = max(self.act_ok[x], n + max(d, T.tACT))
            self.pre_ok[x] = max(self.pre_ok[x], n + max(T.tACT, T.tRAS if x == b else 0))
        self.rd_ok[b] = max(self.rd_ok[b], n + T.tRCD)
        self.wr_ok[b] = max(self.wr_ok[b], n + T.tRCD)
        self.ref_ok = max(self.ref_ok, n + max(T.tRC, T.tACT))
        self.faw[self.faw_i] = n
        self.faw_i = (self.faw_i + 1) % 4
        self.counts["act"] += 1
        self._log(n, CMD_ACT, b, r)

    def _pre(self, n, b):
        self.open[b] = False
        self.act_ok[b] = max(self.act_ok[b], n + self.T.tRP)
        self.ref_ok = max(self.ref_ok, n + self.T.tRP)
        self._log(n, CMD_PRE, b)

    def _ref(self, n):
        for x in range(self.cfg.bundles):
            self.act_ok[x] = max(self.act_ok[x], n + self.T.tRFC)
        self.due_at += self.T.tREFI
        self.counts["ref"] += 1
        self._log(n, CMD_REF)

    def _rdwr(self, n):
        T, B, C = self.T, self.cfg.bundles, self.cfg.cols
        cb, cr, cc = self.cur
        if self.first_cmd is None:
            self.first_cmd = n
        if self.write:
            for x in range(B):
                self.wr_ok[x] = max(self.wr_ok[x], n + max(T.tCCD_L if x == cb else T.tCCD_S, T.tBUS))
                self.rd_ok[x] = max(self.rd_ok[x], n + (T.wr_to_rd_l if x == cb else T.wr_to_rd_s))
            self.pre_ok[cb] = max(self.pre_ok[cb], n + T.wr_to_pre)
            self.counts["wr"] += 1
            self._log(n, CMD_WR, cb, cr, cc)
        else:
            for x in range(B):
                self.rd_ok[x] = max(self.rd_ok[x], n + max(T.tCCD_L if x == cb else T.tCCD_S, T.tBUS))
                self.wr_ok[x] = max(self.wr_ok[x], n + T.rd_to_wr)
            self.pre_ok[cb] = max(self.pre_ok[cb], n + T.tRTP)
            self.counts["rd"] += 1
            self._log(n, CMD_RD, cb, cr, cc)
            avail = n + T.tCL + FIFO_LAT
            s = max(avail, self.mac_start if self.s_prev is None else self.s_prev + self.mac_t)
            self.s_prev = s
            self.pops.append(s + self.mac_t - 1)
        self.k += 1
        self.rem -= 1
        cc += 1
        if cc == C:
            cc = 0
            cb += 1
            if cb == B:
                cb, cr = 0, cr + 1
        self.cur = (cb, cr, cc)

    # ---- one scheduling decision at cycle n: None if a command issued, else the
    # earliest later cycle at which the decision could change.
    def _step(self, n):
        B, C = self.cfg.bundles, self.cfg.cols
        INF = 1 << 62
        if n >= self.due_at:
            cand = INF
            any_open = False
            for b in range(B):
                if self.open[b]:
                    any_open = True
                    if self.pre_ok[b] <= n:
                        self._pre(n, b)
                        return None
                    cand = min(cand, self.pre_ok[b])
            if not any_open:
                if self.ref_ok <= n:
                    self._ref(n)
                    return None
                cand = min(cand, self.ref_ok)
            return cand
        cand = self.due_at
        need_c = need_n = -1
        if self.rem > 0:
            cb, cr, cc = self.cur
            hit = self.open[cb] and self.row[cb] == cr
            has_nxt = self.rem > C - cc
            nb, nr = (cb + 1, cr) if cb + 1 < B else (0, cr + 1)
            if hit:
                need_c = cb
                if self.write:
                    ok = self.wr_ok[cb]
                else:
                    ok = self.rd_ok[cb]
                    if self.k >= self.cfg.wfifo_depth:
                        ok = max(ok, self.pops[self.k - self.cfg.wfifo_depth] + 1)
                if ok <= n:
                    self._rdwr(n)
                    return None
                cand = min(cand, ok)
            if has_nxt and self.open[nb] and self.row[nb] == nr:
                need_n = nb
            target = None
            if not hit:
                if not self.open[cb]:
                    target, trow = cb, cr
            elif has_nxt and not self.open[nb]:
                target, trow = nb, nr
            if target is not None:
                ok = max(self.act_ok[target], self.faw[self.faw_i] + self.T.tFAW)
                if ok <= n:
                    self._act(n, target, trow)
                    return None
                cand = min(cand, ok)
        for b in range(B):
            if self.open[b] and b != need_c and b != need_n:
                if self.pre_ok[b] <= n:
                    self._pre(n, b)
                    return None
                cand = min(cand, self.pre_ok[b])
        return cand

    def advance(self, until: int) -> None:
        """Make every decision for cycles now .. until-1."""
        n = self.now
        while n < until:
            r = self._step(n)
            n = n + 1 if r is None else min(max(r, n + 1), until)
        self.now = max(self.now, until)


def _run_job(ctl: _Ctrl, start, write, addr, count, mac_t=1) -> int:
    """Drive the controller through one job; returns the cycle of the last RD/WR."""
    ctl.advance(start)
    ctl.rem, ctl.write, ctl.k = count, write, 0
    ctl.cur = ctl.cfg.split_addr(addr)
    ctl.pops, ctl.s_prev, ctl.mac_t, ctl.mac_start = [], None, mac_t, start
    ctl.first_cmd = None
    n = ctl.now
    last = start
    while ctl.rem > 0:
        before = ctl.k
        r = ctl._step(n)
        if r is None:
            if ctl.k != before:
                last = n
            n += 1
        else:
            n = max(r, n + 1)
    ctl.now = n
    return last


def predict(cfg: PIMConfig, words, *, ref_phase: int = 0, trace: bool = True,
            loaded: tuple[int, int] | None = None, kv: tuple | None = None) -> Timing:
    """Cycle model of an instruction stream with no stream stalls.

    Assumptions (the RTL bench reproduces them): every instruction and data word
    is offered from the first cycle on (valid held high), the output is always
    ready, the DRAM is idle with every timing constraint satisfied and no refresh
    in progress, and the refresh timer reads ``ref_phase`` in the cycle the first
    instruction word is accepted (cycle 0 of the returned command trace).
    ``loaded`` = (t, kw) of the token buffer at the start (None: empty, as after
    reset). ``kv`` = (base, capacity, kw) of the KV-cache registers (None: no
    SET_KV yet). Returns the busy-cycle count the RTL's ``perf_cycles`` counter reports.
    """
    T = cfg.timing
    if not 0 <= ref_phase < T.tREFI:
        raise FormatError(f"ref_phase: {ref_phase} out of range 0..{T.tREFI - 1}")
    ctl = _Ctrl(cfg, due_at=T.tREFI - ref_phase, trace=trace)
    f = IFETCH                      # fetch cycle of the current instruction
    last_out = None                 # cycle the last output beat leaves
    have, (t, kw) = loaded is not None, (loaded or (0, 0))
    starts, spans, aspans = [], [], []
    pend, sm_free = None, -(1 << 40)    # the ATTN whose tail is pending; last softmax end
    for word in words:
        word = int(word)
        e = instr_errors(cfg, word, have, kw, t=t, kv=kv)
        d = decode(word)
        name = d["name"]
        if pend is not None and name not in ATTN_KEEPS_TAIL:
            last_out = _attn_tail(ctl, cfg, pend, f + 1)
            pend, f = None, last_out + ATTN_DONE
        starts.append(f)
        if e and name in ("APPEND_KV", "ATTN") and cfg.attn_heads:
            f += 2                  # checked in the cycle after the fetch
        elif e or name in ("NOP", "SET_OUT"):
            f += 1
        elif name == "SET_KV":
            kv = (d["kv_base"], d["kv_cap"], d["kv_kw"])
            f += 1
        elif name == "APPEND_KV":
            base, cap, kvkw = kv
            a = base + (d["slot"] * 2 * cap + d["pos"]) * kvkw
            last = _run_job(ctl, f + 2, True, a, kvkw)
            last = _run_job(ctl, last + 2, True, a + cap * kvkw, kvkw)
            f = last + 2
        elif name == "ATTN":
            c = f + 1 if last_out is None else max(f + 1, last_out + 1)
            new = _attn_head(ctl, cfg, kv, d, t, c, sm_free)
            aspans.append(new)
            sm_free = new["softmax_done"]
            done = new["k_last_issue"] + ATTN_SM_START + 1
            if pend is not None:
                last_out = _attn_tail(ctl, cfg, pend, done)
                done = last_out + ATTN_DONE
            pend, f = new, done
        elif name == "LOAD_TOKENS":
            have, t, kw = True, d["t"], d["kw"]
            f += 1 + t * kw
        elif name == "FENCE":
            drained = f + 1 if last_out is None else max(f + 1, last_out + 1)
            f = drained + 1
        elif name == "WRITE":
            last = _run_job(ctl, f + 1, True, d["addr"], d["count"])
            f = last + 2
        elif name == "GEMM":
            count = d["n"] * kw
            _run_job(ctl, f + 1, False, d["addr"], count, mac_t=t)
            pop = ctl.pops[-1]
            spans.append((ctl.first_cmd, pop))
            last_out = pop + OUT_LAT
            f = pop + MAC_DONE
    if pend is not None:
        last_out = _attn_tail(ctl, cfg, pend, f + 1)
        f = last_out + ATTN_DONE
    end = f if last_out is None else max(f, last_out + 1)
    ctl.advance(end)
    return Timing(cycles=end - 1, commands=ctl.cmds if trace else [],
                  reads=ctl.counts["rd"], writes=ctl.counts["wr"], acts=ctl.counts["act"],
                  refs=ctl.counts["ref"], instr_start=starts, gemm_spans=spans,
                  attn_spans=aspans)


def _attn_head(ctl: _Ctrl, cfg: PIMConfig, kv, d: dict, g: int, c: int, sm_free: int) -> dict:
    """An ATTN's score pass (K job and GEMM started in cycle ``c``) and its softmax
    (after the previous softmax, which ended at ``sm_free``); its phase cycles."""
    base, cap, kvkw = kv
    a = base + d["slot"] * 2 * cap * kvkw
    n = d["len"]
    _run_job(ctl, c + 1, False, a, n * kvkw, mac_t=g)
    k_first, k_last = ctl.first_cmd, ctl.pops[-1]
    sm_first = max(k_last + ATTN_SM_START, sm_free) + ATTN_SM_FEED
    sm_done = sm_first + unit_schedule([n] * g)[-1][1]
    return dict(start=c, k_first_cmd=k_first, k_last_issue=k_last, softmax_first=sm_first,
                softmax_done=sm_done, words=2 * n * kvkw, v_addr=a + cap * kvkw, n=n, g=g,
                kw=kvkw)


def _attn_tail(ctl: _Ctrl, cfg: PIMConfig, sp: dict, z: int) -> int:
    """The value pass and output of a pending ATTN (``sp``, filled in), the sequencer
    waiting for them from cycle ``z``; returns the cycle its last output leaves."""
    v0 = max(z, sp["softmax_done"] + 1)
    _run_job(ctl, v0 + 1, False, sp["v_addr"], sp["n"] * sp["kw"], mac_t=sp["g"])
    v_last = ctl.pops[-1]
    outs = sp["g"] * sp["kw"] * cfg.elems
    sp.update(v_first_cmd=ctl.first_cmd, v_last_issue=v_last,
              out_first=v_last + ATTN_DRAIN + ATTN_OUT_LAT,
              out_last=v_last + ATTN_DRAIN + outs - 1 + ATTN_OUT_LAT)
    return sp["out_last"]


def predict_cycles(cfg: PIMConfig, words, *, ref_phase: int = 0,
                   loaded: tuple[int, int] | None = None, kv: tuple | None = None) -> int:
    """Busy cycles of an instruction stream (see :func:`predict`)."""
    return predict(cfg, words, ref_phase=ref_phase, trace=False, loaded=loaded, kv=kv).cycles


# --------------------------------------------------------------------------- analytic helpers


def expert_ffn_cycles(cfg: PIMConfig, hidden: int, ffn: int, tokens: int,
                      ref_phase: int = 0) -> int:
    """Cycles of one expert's FFN on Logic-PIM: x -> gate, up (ffn x hidden), then the
    activated intermediate is loaded back and down (hidden x ffn) runs. The
    elementwise SiLU/product between the layers is outside this unit (0 cycles here).

    Tokens beyond ``max_tokens`` run in several token tiles; K beyond the buffer
    is refused (tile K on the host)."""
    if tokens <= 0:
        return 0
    kh, kf = -(-hidden // cfg.elems), -(-ffn // cfg.elems)
    if max(kh, kf) > cfg.max_k_words:
        raise FormatError(f"hidden/ffn: K words {kh}/{kf} exceed max_k_words {cfg.max_k_words}")
    if kh * ffn * 2 + kf * hidden > cfg.words:
        raise FormatError(f"hidden/ffn: expert needs {kh * ffn * 2 + kf * hidden} words, "
                          f"the pCH model holds {cfg.words}")
    words = []
    left = tokens
    while left > 0:
        t = min(left, cfg.max_tokens)
        left -= t
        words += [encode("LOAD_TOKENS", t=t, kw=kh), encode("GEMM", addr=0, n=ffn),
                  encode("GEMM", addr=kh * ffn, n=ffn), encode("LOAD_TOKENS", t=t, kw=kf),
                  encode("GEMM", addr=2 * kh * ffn, n=hidden)]
    return predict_cycles(cfg, words, ref_phase=ref_phase)


def stream_bandwidth(cfg: PIMConfig, words: int, tokens: int = 1, ref_phase: int = 0) -> dict:
    """Sustained fraction of the peak bundle bandwidth of one long GEMM (cycle model).

    Window: from the GEMM's first ACT to one burst after its last RD.
    ``fraction`` = words x tBUS / window (raw fraction of peak, refresh included);
    ``attainable`` = 1 - (REFs in the window) x tRFC / window;
    ``fraction_of_attainable`` = fraction / attainable. Same definitions as
    tb.pim.stream_stats, which measures the RTL's command trace.
    """
    if not 1 <= words <= cfg.words:
        raise FormatError(f"words: {words} outside 1..{cfg.words} (the pCH model's size)")
    if not 1 <= tokens <= cfg.max_tokens:
        raise FormatError(f"tokens: {tokens} outside 1..{cfg.max_tokens}")
    k_words = min(cfg.max_k_words, words)
    n = max(1, words // k_words)
    prog = gemm_program(cfg, n, k_words * cfg.elems, tokens)
    tm = predict(cfg, prog, ref_phase=ref_phase)
    cmds = [c for c in tm.commands if c[0] >= tm.instr_start[1]]
    rds = [c[0] for c in cmds if c[1] == CMD_RD]
    burst = max(cfg.timing.tCCD_L, cfg.timing.tBUS)
    first = min(c[0] for c in cmds if c[1] in (CMD_ACT, CMD_RD))
    last = rds[-1] + burst
    span = last - first
    refs = sum(1 for c in cmds if c[1] == CMD_REF and first <= c[0] < last)
    frac = len(rds) * burst / span
    attain = 1 - refs * cfg.timing.tRFC / span
    return dict(words=len(rds), span=span, refs=refs, fraction=frac, attainable=attain,
                fraction_of_attainable=frac / attain, cycles=tm.cycles)
