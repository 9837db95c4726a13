"""Sparse Tensor Core (Engine 1): configuration, job tiling and cycle model.

One :class:`SpTCConfig` describes the hardware; the Amaranth component
(``hdl.sptc``) and every model here take the same object. :func:`plan` is the
one tiling/program API: it turns (weight, activations, SEL, output mode) into
the register values and the weight-beat stream the RTL consumes. The RTL
testbench sends exactly those beats; the scoreboard then compares the RTL's
output against :func:`golden.ssmm`, which computes from the compressed formats
without going through this tiling, so a tiling mistake cannot hide.

Dataflow (see docs/sptc.md): an output-stationary ``rows x cols`` PE array.
PE (r, c) holds the accumulator of weight row r and selected token c of the
current tile. Each cycle every PE row receives one compressed weight pair (two
int8 values + a 2:4 nibble) and every PE column one 4-wide activation group read
from its private copy of the activation buffer at the SEL-gathered token. The
PE selects two of the four activations with the nibble and does 2 MACs. Dense
mode feeds plain pairs (nibble forced to lanes 0,1 or 2,3): K/2 cycles per
tile; 2:4 and Samoyeds modes: K/4 cycles per tile, hence the 2x.

Samoyeds mode: each PE row holds a *kept sub-row slot*; every V columns the
PE partial sums are flushed into an accumulator store of ``rows * M / N`` rows,
each landing on output row ``(r // N) * M + indices[r, j]`` (data-stationary
accumulation, re-targeted by ``indices`` every V columns).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import FormatError
from .formats import SamoyedsWeight, Sparse24, check_sel
from .numerics import OutMode, check_k, parse_out

MODES = ("dense", "2:4", "samoyeds")
# The control ports of the RTL, in the order Job.regs / load_regs() values are sent.
# ``tok_base``: a LOAD writes its n_tokens tokens at activation-buffer token indices
# tok_base .. tok_base + n_tokens - 1 (the CHECK cycle refuses tok_base + n_tokens >
# max_tokens); a MATMUL ignores it (SEL indices are buffer token indices < n_tokens).
REG_NAMES = ("op", "mode", "out_mode", "mult", "shift", "k_words", "v_steps", "m_rows",
             "n_row_tiles", "n_sel", "n_tokens", "sam_n", "sam_m", "tok_base")
MODE_CODES = {"dense": 0, "2:4": 1, "samoyeds": 2}
OP_LOAD, OP_MATMUL = 0, 1

# Sticky error bits of the status register.
ERR_CONFIG = 1 << 0  # a job parameter the hardware cannot run
ERR_META = 1 << 1    # an invalid 2:4 metadata nibble in a weight beat
ERR_SEL = 1 << 2     # SEL index >= n_tokens, or SEL not strictly increasing
ERR_INDEX = 1 << 3   # Samoyeds sub-row index >= M, or not increasing within a block
ERROR_NAMES = {ERR_CONFIG: "config", ERR_META: "meta", ERR_SEL: "sel", ERR_INDEX: "index"}

DENSE_NIBBLES = (0b0100, 0b1110)  # dense pair p reads lanes (0,1) if p even else (2,3)


def _pow2(v: int) -> bool:
    return v >= 1 and (v & (v - 1)) == 0


@dataclass(frozen=True)
class SpTCConfig:
    """Parameters of one Sparse Tensor Core build.

    rows, cols
        PE array shape: weight rows x token columns per tile (powers of two).
    max_k
        K capacity of the activation buffer (multiple of 4, K/4 a power of two).
    max_tokens
        Batch capacity of the activation buffer (tokens), a power of two.
    max_sel
        Largest SEL list (tokens routed to one expert), a multiple of ``cols``.
    samoyeds_nm
        The (N, M) pairs the accumulator-store crossbar is built for. The store
        has ``rows * max(M/N)`` rows; each store row muxes only the PE rows that
        can reach it under one of these pairs, so the list sets the area.
    sel_lanes
        SEL indices per beat of the ``sel`` stream (a power of two dividing
        ``cols``; default ``cols``: one token tile per beat, so loading SEL costs
        ceil(n_sel / sel_lanes) cycles instead of n_sel).
    drain_rows
        Output rows per beat of the ``res`` stream (1, 2 or 4). The last tile of
        a job drains after its last beat, so this is a per-job overhead: 2 halves
        it. Each lane has its own requantizer.
    pe_stages, route_stages, out_stages, ctrl_lag
        Pipeline depths of the RTL (``hdl.sptc``) the cycle model counts:
        ``pe_stages`` from the issue register to the accumulator (s1, s1b, s1c,
        s1d, s2, s3, s4), ``route_stages`` from the flush registers to the store
        (a copy per part of the store, the OR onto each store row),
        ``out_stages`` of each output lane (``hdl.outstage.OutputStage``'s SpTC
        schedule), ``ctrl_lag`` the register levels between the store/drain
        controller's decision (taken at s3) and the store, drain and lanes.
        The RTL is built for these values and rejects others.
    out_fifo_depth, out_skid_depth
        Entries of the output FIFO (the controller's credits for drain beats)
        and of the skid buffer behind its read register (full rate needs 3: a
        beat holds its place from the FIFO read until ``res`` takes it, plus one).
    """

    rows: int = 8
    cols: int = 8
    max_k: int = 256
    max_tokens: int = 64
    max_sel: int = 64
    samoyeds_nm: tuple = ((1, 2), (2, 4), (4, 8))
    sel_lanes: int | None = None
    drain_rows: int = 2
    pe_stages: int = 7
    route_stages: int = 2
    out_stages: int = 7
    ctrl_lag: int = 4
    out_fifo_depth: int = 16
    out_skid_depth: int = 3

    def __post_init__(self):
        if self.sel_lanes is None:
            object.__setattr__(self, "sel_lanes", self.cols)
        for name in ("rows", "cols", "max_tokens"):
            if not _pow2(getattr(self, name)):
                raise FormatError(f"{name}: {getattr(self, name)} must be a power of two")
        if self.max_k % 4 or not _pow2(self.max_k // 4):
            raise FormatError(f"max_k: {self.max_k} must be 4 x a power of two")
        check_k(self.max_k, "max_k")
        if self.max_sel < self.cols or self.max_sel % self.cols:
            raise FormatError(f"max_sel: {self.max_sel} must be a positive multiple of cols={self.cols}")
        if not (isinstance(self.sel_lanes, int) and _pow2(self.sel_lanes)
                and self.sel_lanes <= self.cols):
            raise FormatError(f"sel_lanes: {self.sel_lanes} must be a power of two <= "
                              f"cols={self.cols}")
        if self.drain_rows not in (1, 2, 4):
            raise FormatError(f"drain_rows: {self.drain_rows} must be 1, 2 or 4")
        object.__setattr__(self, "samoyeds_nm", tuple(tuple(p) for p in self.samoyeds_nm))
        for name in ("pe_stages", "route_stages", "out_stages", "ctrl_lag", "out_fifo_depth",
                     "out_skid_depth"):
            v = getattr(self, name)
            if not (isinstance(v, int) and v >= 1):
                raise FormatError(f"{name}: {v!r} must be a positive integer")
        if self.pe_stages + self.route_stages < self.ctrl_lag:
            raise FormatError(f"ctrl_lag: {self.ctrl_lag} exceeds pe_stages + route_stages")
        for n, m in self.samoyeds_nm:
            if not (_pow2(n) and _pow2(m) and n < m and m <= 16 and self.rows % n == 0):
                raise FormatError(f"samoyeds_nm: ({n}, {m}) unsupported: need N < M <= 16, powers "
                                  f"of two, N dividing rows={self.rows}")

    @property
    def ratio(self) -> int:
        return max([m // n for n, m in self.samoyeds_nm], default=1)

    @property
    def store_rows(self) -> int:
        return self.rows * self.ratio

    @property
    def max_kw(self) -> int:  # 32-bit activation words (K groups) per token
        return self.max_k // 4

    @property
    def peak_macs(self) -> int:
        return 2 * self.rows * self.cols

    @property
    def acc_bits(self) -> int:
        """Signed width that holds every accumulator and store value: each output
        element sums at most ``max_k`` int8 x int8 products (|p| <= 2**14), in
        every mode (Samoyeds' store adds contributions of distinct K positions)."""
        return (self.max_k * (1 << 14)).bit_length() + 1


@dataclass
class Job:
    """Everything the RTL needs for one matmul job, plus what checking needs.

    ``regs`` are the control-port values; ``beats`` is the weight stream in
    order, one entry per PE-row lane: (v0, v1, nibble, idx) arrays of shape
    (n_beats, rows).
    """

    mode: str
    out: OutMode
    m: int                 # output rows
    k: int                 # true K (before padding)
    k_words: int           # K / 4 after padding
    n_tokens: int
    sel: np.ndarray
    regs: dict
    v0: np.ndarray = field(repr=False)
    v1: np.ndarray = field(repr=False)
    nib: np.ndarray = field(repr=False)
    idx: np.ndarray = field(repr=False)

    @property
    def n_beats(self) -> int:
        return len(self.v0)


def _lanes_for_tiles(vals, meta, idxs, rows, k_steps, pad_idx):
    """Tile row-major arrays (R x k_steps) into beats of `rows` lanes, row tile by row tile."""
    R = vals[0].shape[0]
    n_rt = -(-R // rows)
    pad = n_rt * rows - R

    def padded(a, fill):
        if pad:
            a = np.concatenate([a, np.broadcast_to(fill, (pad, a.shape[1])).astype(a.dtype)])
        # (n_rt, rows, k_steps) -> (n_rt, k_steps, rows) -> beats
        return a.reshape(n_rt, rows, k_steps).transpose(0, 2, 1).reshape(-1, rows)

    return (padded(vals[0], 0), padded(vals[1], 0), padded(meta, 0b0100),
            padded(idxs, pad_idx), n_rt)


def plan(cfg: SpTCConfig, weight, x_shape, sel=None, out="int32") -> Job:
    """Tile one job for the hardware: register values and the weight-beat stream.

    Validates like the golden does (FormatError naming the field) plus the
    limits of this hardware build (``cfg``).
    """
    out = parse_out(out)
    if not (isinstance(x_shape, tuple) and len(x_shape) == 2):
        raise FormatError(f"x: expected a k x T matrix, got shape {x_shape!r}")
    k, T = x_shape
    check_k(k, "k")
    if isinstance(weight, Sparse24):
        mode, (m, kw_) = "2:4", weight.shape
    elif isinstance(weight, SamoyedsWeight):
        mode, (m, kw_) = "samoyeds", weight.shape
    elif isinstance(weight, np.ndarray):
        if weight.dtype != np.int8 or weight.ndim != 2:
            raise FormatError(f"weight: expected a 2-D int8 array, got {weight.dtype} "
                              f"with shape {weight.shape}")
        mode, (m, kw_) = "dense", weight.shape
    else:
        raise FormatError(f"weight: expected an int8 array, Sparse24 or SamoyedsWeight, "
                          f"got {type(weight).__name__}")
    if kw_ != k:
        raise FormatError(f"x: has {k} rows but the weight has K = {kw_}")
    if k > cfg.max_k:
        raise FormatError(f"k: K = {k} exceeds this build's max_k = {cfg.max_k}")
    if T > cfg.max_tokens:
        raise FormatError(f"x: {T} tokens exceed this build's max_tokens = {cfg.max_tokens}")
    if k == 0:
        raise FormatError("k: K = 0: nothing to compute")
    if m == 0:
        raise FormatError("weight: has no rows")
    if m >= 1 << 16:
        raise FormatError(f"weight: {m} rows exceed the 16-bit row counter")
    sel = np.arange(T, dtype=np.int64) if sel is None else check_sel(sel, T)
    if len(sel) > cfg.max_sel:
        raise FormatError(f"sel: {len(sel)} tokens exceed this build's max_sel = {cfg.max_sel}")
    k_words = -(-k // 4)
    kp = 4 * k_words
    n, mm, v = 1, 1, 0
    if mode == "dense":
        w = np.zeros((m, kp), np.int8)
        w[:, :k] = weight
        k_steps = kp // 2
        vals = (w[:, 0::2], w[:, 1::2])
        meta = np.tile(np.array(DENSE_NIBBLES, np.uint8), (m, k_words))
        idxs = np.zeros((m, k_steps), np.uint8)
        lanes = _lanes_for_tiles(vals, meta, idxs, cfg.rows, k_steps, 0)
        v_steps = k_steps
    elif mode == "2:4":
        k_steps = k_words
        vals = (weight.values[:, 0::2], weight.values[:, 1::2])
        idxs = np.zeros((m, k_steps), np.uint8)
        lanes = _lanes_for_tiles(vals, weight.meta, idxs, cfg.rows, k_steps, 0)
        v_steps = k_steps
    else:
        n, mm, v = weight.n, weight.m, weight.v
        if (n, mm) not in cfg.samoyeds_nm:
            raise FormatError(f"weight: Samoyeds (N, M) = ({n}, {mm}) not in this build's "
                              f"samoyeds_nm = {cfg.samoyeds_nm}")
        k_steps, v_steps = k_words, v // 4
        vals = (weight.data[:, 0::2], weight.data[:, 1::2])
        idxs = np.repeat(weight.indices.astype(np.uint8), v_steps, axis=1)
        lanes = _lanes_for_tiles(vals, weight.meta, idxs, cfg.rows, k_steps, 0)
        # Padded data rows form whole blocks of N rows: give them indices 0..N-1.
        R = weight.data.shape[0]
        v0, v1, nib, idx, n_rt = lanes
        if n_rt * cfg.rows > R:
            idx = idx.reshape(n_rt, k_steps, cfg.rows)
            idx[-1, :, R - (n_rt - 1) * cfg.rows:] = np.arange(n_rt * cfg.rows - R) % n
            lanes = (v0, v1, nib, idx.reshape(-1, cfg.rows), n_rt)
    v0, v1, nib, idx, n_rt = lanes
    n_tt = -(-len(sel) // cfg.cols)
    # The weight tile stream is re-sent for every token tile (token tiles outer).
    reps = lambda a: np.tile(a, (n_tt, 1)) if n_tt else a[:0]
    regs = dict(op=OP_MATMUL, mode=MODE_CODES[mode], out_mode=out.code, mult=out.mult,
                shift=out.shift, k_words=k_words, v_steps=v_steps, m_rows=m, n_row_tiles=n_rt,
                n_sel=len(sel), n_tokens=T, sam_n=n, sam_m=mm, tok_base=0)
    return Job(mode, out, m, k, k_words, T, sel, regs, reps(v0.astype(np.int8)),
               reps(v1.astype(np.int8)), reps(nib.astype(np.uint8)), reps(idx.astype(np.uint8)))


def act_words(x: np.ndarray) -> np.ndarray:
    """The LOAD stream for activations: per token, K/4 little-endian words of 4 int8."""
    if not isinstance(x, np.ndarray) or x.dtype != np.int8 or x.ndim != 2:
        raise FormatError(f"x: expected a 2-D int8 array, got {getattr(x, 'dtype', type(x))}")
    k, T = x.shape
    kp = 4 * -(-k // 4)
    xp = np.zeros((kp, T), np.int8)
    xp[:k] = x
    b = xp.T.reshape(T, kp // 4, 4).astype(np.uint8).astype(np.uint32)
    return (b[..., 0] | (b[..., 1] << 8) | (b[..., 2] << 16) | (b[..., 3] << 24)).reshape(-1)


def load_regs(x_shape, tok_base: int = 0) -> dict:
    """The control-port values of a LOAD of a k x T matrix (``act_words``' stream) into
    activation-buffer tokens ``tok_base .. tok_base + T - 1``; a later MATMUL's SEL
    addresses them by those indices (its ``n_tokens`` must exceed them). The RTL
    refuses ``tok_base + T > max_tokens`` in its CHECK cycle (``ERR_CONFIG``)."""
    k, T = x_shape
    if isinstance(tok_base, bool) or not isinstance(tok_base, (int, np.integer)) \
            or tok_base < 0:
        raise FormatError(f"tok_base: {tok_base!r} must be a non-negative integer")
    return dict(op=OP_LOAD, mode=0, out_mode=0, mult=0, shift=0, k_words=-(-k // 4), v_steps=1,
                m_rows=1, n_row_tiles=1, n_sel=0, n_tokens=T, sam_n=1, sam_m=1,
                tok_base=int(tok_base))


class ActBuffer:
    """The activation buffer as LOAD jobs leave it: ``max_tokens`` tokens of
    ``max_kw`` words, each word unknown until a LOAD writes it (the RTL's buffer
    has no reset). :meth:`operand` is the k x n_tokens matrix a MATMUL reads."""

    def __init__(self, cfg: SpTCConfig):
        self.cfg = cfg
        self.words = np.zeros((cfg.max_tokens, cfg.max_kw), np.uint32)
        self.known = np.zeros((cfg.max_tokens, cfg.max_kw), bool)

    def load(self, x: np.ndarray, tok_base: int = 0) -> None:
        """A LOAD of ``x`` (k x T int8) at tokens tok_base .. tok_base + T - 1."""
        words = act_words(x)
        regs = load_regs(x.shape, tok_base)
        kw, T = regs["k_words"], x.shape[1]
        if kw > self.cfg.max_kw:
            raise FormatError(f"x: K = {x.shape[0]} exceeds this build's max_k = "
                              f"{self.cfg.max_k}")
        if tok_base + T > self.cfg.max_tokens:
            raise FormatError(f"tok_base: {tok_base} + {T} tokens exceed this build's "
                              f"max_tokens = {self.cfg.max_tokens}")
        self.words[tok_base:tok_base + T, :kw] = words.reshape(T, kw)
        self.known[tok_base:tok_base + T, :kw] = True

    def operand(self, k: int, n_tokens: int, sel) -> np.ndarray:
        """The k x n_tokens int8 matrix a MATMUL of K = k reads (columns outside SEL
        are 0); a selected token whose first ceil(k / 4) words no LOAD wrote is refused."""
        kw = -(-k // 4)
        if kw > self.cfg.max_kw or n_tokens > self.cfg.max_tokens:
            raise FormatError(f"k, n_tokens: ({k}, {n_tokens}) exceed this build's "
                              f"({self.cfg.max_k}, {self.cfg.max_tokens})")
        sel = check_sel(sel, n_tokens)
        unknown = ~self.known[sel, :kw].all(axis=1)
        if unknown.any():
            raise FormatError(f"sel: token {int(sel[np.argmax(unknown)])} was not loaded "
                              f"with K >= {k}")
        b = self.words[sel, :kw].astype(np.uint32)
        vals = np.stack([(b >> (8 * i)) & 0xFF for i in range(4)], axis=-1)
        out = np.zeros((4 * kw, n_tokens), np.int8)
        out[:, sel] = vals.astype(np.uint8).view(np.int8).reshape(len(sel), 4 * kw).T
        return out[:k]


# --------------------------------------------------------------------------- cycle model

CHECK_CYCLES = 1      # after start: the job registers are checked, the counters' ends derived
LOAD_OVERHEAD = 1     # the cycle that notices the last beat and raises done

def store_rows_per_tile(cfg: SpTCConfig, mode: str, n: int = 1, mm: int = 1) -> int:
    return cfg.rows * mm // n if mode == "samoyeds" else cfg.rows


def predict_load_cycles(x_shape) -> int:
    k, T = x_shape
    return CHECK_CYCLES + T * -(-k // 4) + LOAD_OVERHEAD


def predict_job_cycles(cfg: SpTCConfig, job: Job) -> int:
    """Exact RTL cycle count of a planned matmul job with no stalls on any stream."""
    r = job.regs
    k_steps = 2 * r["k_words"] if job.mode == "dense" else r["k_words"]
    v_steps = r["v_steps"] if job.mode == "samoyeds" else k_steps
    spr = store_rows_per_tile(cfg, job.mode, r["sam_n"], r["sam_m"])
    drains = [min(spr, r["m_rows"] - rt * spr) for rt in range(r["n_row_tiles"])]
    return step_model(cfg, k_steps, v_steps, r["n_row_tiles"], r["n_sel"], drains)


def predict_cycles(cfg: SpTCConfig, mode: str, m: int, k: int, tokens: int,
                   nmv: tuple = (1, 2, 32)) -> int:
    """Cycles of an (m x k) @ (k x tokens-selected) job, without building the operands.

    The xPU time table used by Duplex co-processing (``golden.duplex``) calls this.
    For ``mode="samoyeds"`` the weight format is ``nmv = (N, M, V)``.
    """
    if mode not in MODES:
        raise FormatError(f"mode: unknown mode {mode!r} (expected one of {MODES})")
    k_words = -(-k // 4)
    k_steps = 2 * k_words if mode == "dense" else k_words
    n, mm, v = nmv if mode == "samoyeds" else (1, 1, 4 * k_words)
    v_steps = v // 4 if mode == "samoyeds" else k_steps
    data_rows = m * n // mm if mode == "samoyeds" else m
    n_rt = -(-data_rows // cfg.rows)
    spr = store_rows_per_tile(cfg, mode, n, mm)
    drains = [min(spr, m - rt * spr) for rt in range(n_rt)]
    return step_model(cfg, k_steps, v_steps, n_rt, tokens, drains)


def ideal_cycles(cfg: SpTCConfig, mode: str, m: int, k: int, tokens: int,
                 nmv: tuple = (1, 2, 32)) -> float:
    """Useful MACs / peak MACs per cycle: the bound no schedule can beat.

    Useful MACs are those the array must do for the stored operands: m*k per
    token dense, m*k/2 for 2:4 (the zeros are skipped), m*N/M*k/2 for Samoyeds.
    """
    density = {"dense": 1.0, "2:4": 0.5}.get(mode)
    if density is None:
        density = nmv[0] / nmv[1] / 2
    return m * k * tokens * density / cfg.peak_macs


def step_model(cfg: SpTCConfig, k_steps: int, v_steps: int, n_rt: int, n_sel: int,
               drains: list[int]) -> int:
    """Cycle-level model of the RTL's control and pipeline with no stream stalls.

    It steps the same stages as the hardware (docs/sptc.md): SEL load
    (``sel_lanes`` indices per cycle), one weight beat per cycle (the next
    token tile's SEL entries are read while the last beat of a tile issues, so
    tiles follow back to back), PE -> flush register -> route -> accumulator store, copy
    into the drain bank once the previous tile has drained, ``drain_rows``
    output rows per cycle out of the drain bank, and the one stall the array
    has (a flush that finds the store still holding a finished tile the drain
    bank cannot take). It counts what the RTL's ``cycles`` register counts
    (the CHECK cycle after start, then the job):
    every cycle from start until done. The pipeline depths are ``cfg``'s.
    """
    cols, sel_lanes, drain_rows = cfg.cols, cfg.sel_lanes, cfg.drain_rows
    if k_steps < 1 or v_steps < 1 or k_steps % v_steps or n_rt < 1 or len(drains) != n_rt \
            or min(drains) < 1:
        raise FormatError(f"cycle model: inconsistent job (k_steps={k_steps}, v_steps={v_steps}, "
                          f"n_rt={n_rt}, drains={drains})")
    n_tt = -(-n_sel // cols)
    sel_beats = -(-n_sel // sel_lanes)
    state = "SEL" if n_sel else "WAIT"
    cnt = beat = vb = rt = tt = 0
    # (blast, tlast, rt) per stage before the store controller takes the flush
    pe = [None] * (cfg.pe_stages + cfg.route_stages - cfg.ctrl_lag)
    f = None                    # the flush register
    out = [False] * (cfg.ctrl_lag + cfg.out_stages)  # drain beats on their way to the output FIFO
    store_full, store_rt, drain_left, skid_o = False, 0, 0, False
    fifo_v = rd_v = False       # a beat in the output FIFO / in its read register
    pend = 0                    # tiles started and not yet drained
    cyc = 0
    while True:
        cyc += 1
        drain_busy = drain_left > 0
        copy = store_full and not drain_busy
        if state == "WAIT" and not any(pe) and f is None and not store_full \
                and not drain_busy and not any(out) and not fifo_v and not rd_v \
                and not skid_o:
            return CHECK_CYCLES + cyc
        # the issue gate: a tile starts only when at most one older tile is in the unit
        issue = state == "RUN" and (beat != 0 or pend <= 1)
        if f is not None and store_full and not copy:  # the gate makes this impossible
            raise AssertionError("cycle model: a flush met a full store")
        # drain: drain_rows rows per cycle into the output pipeline (the sink never stalls)
        skid_o = rd_v
        rd_v = fifo_v
        fifo_v = out[-1]
        out = [drain_busy] + out[:-1]
        drain_done = drain_left == 1
        if drain_left:
            drain_left -= 1
        new_full = store_full and not copy
        if copy:
            drain_left = -(-drains[store_rt] // drain_rows)
        if f is not None and f[1]:          # a tile's last flush: the tile waits in the store
            new_full, store_rt = True, f[2]
        f = pe[-1] if pe[-1] is not None and pe[-1][0] else None
        last = beat == k_steps - 1
        pe = [(vb == v_steps - 1 or last, last, rt) if issue else None] + pe[:-1]
        store_full = new_full
        pend += (issue and beat == 0) - drain_done
        if state == "SEL":
            cnt += 1
            if cnt == sel_beats:
                state = "RUN"
        elif issue:
            if beat == k_steps - 1:
                beat = vb = 0
                if rt == n_rt - 1:
                    rt, tt = 0, tt + 1
                    state = "WAIT" if tt == n_tt else "RUN"
                else:
                    rt += 1
            else:
                beat, vb = beat + 1, (0 if vb == v_steps - 1 else vb + 1)
