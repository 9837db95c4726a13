"""Golden model of the Logic-PIM unit (Engine 2): configuration, HBM3 timing, ISA,
bit-exact functional model and the cycle model the RTL is checked against.

Past 500 lines: config, ISA, functional and timing models in one module until its
split along those seams (open work; the HBM3 timing is already in golden.hbm3).

The unit sits on the HBM logic die beside one pseudo-channel (pCH). It executes a
stream of 64-bit instructions (:data:`OPCODES`); ``LOAD_TOKENS`` and ``WRITE``
take their operands from a data stream of ``bundle_bits``-wide words; ``GEMM``
streams weight rows out of the DRAM bank bundles against the token vectors held
in its buffer and emits one output value per (row, token).

Everything here is defined once and shared by the RTL bench (tb/pim.py) and the
benchmarks (sim/bench/pim.py):

* :class:`HBM3Timing` (from :mod:`golden.hbm3`) - the HBM3 5.2 Gbps preset of
  DESIGN.md in cycles of tCK = 0.769 ns, the ns values converted by JEDEC rounding;
* :class:`PIMConfig` - every parameter of the unit (the RTL takes the same object);
* :class:`Program` - builds instruction words and the data-stream words;
* :func:`execute` - the functional golden model (outputs, sticky error bits,
  DRAM contents), bit-exact with the RTL;
* :func:`predict` / :func:`predict_cycles` - the cycle model: the DRAM command
  scheduler of the RTL replayed command by command (event driven), the MAC
  pipeline and the instruction sequencer, giving the exact cycle count and the
  exact DRAM command trace of an instruction stream with no stream stalls.

Address map: a linear *word address* ``a`` (one word = one bundle burst of
``bundle_bits``) is ``((row * bundles) + bundle) * cols + col``: consecutive DRAM
rows of a long stream alternate bank bundles, so the controller can open the
next bundle while it reads the current one.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

from .errors import FormatError
# HBM3Timing (the 5.2 Gbps preset in cycles, the ns table, JEDEC rounding) is
# defined in golden.hbm3 and re-exported here.
from .hbm3 import HBM3_5G2, TCK_PS, TIMING_NS, HBM3Timing, jedec_cycles  # noqa: F401
from .numerics import MAX_K, OutMode, apply_out, parse_out

# --------------------------------------------------------------------------- config

def _pow2(v: int) -> bool:
    return v >= 1 and (v & (v - 1)) == 0


@dataclass(frozen=True)
class PIMConfig:
    """Every parameter of the Logic-PIM unit; the RTL generator takes this object.

    bank_groups x banks_per_group banks per pCH; a *bank bundle* is
    ``banks_per_bundle`` banks (whole bank groups) opened by one ACT, and has one
    open row; ``rows`` rows per bundle are modelled (a slice of a real die);
    ``cols`` bundle words per bundle row; a word is ``bundle_bits`` wide
    (512 in Duplex). The GEMM module multiplies one weight word by one token
    slice per cycle (``bundle_bits / 8`` int8 MACs), holds up to ``max_tokens``
    token vectors of up to ``max_k_words`` words, accumulates in int32.
    """

    bank_groups: int = 4
    banks_per_group: int = 4
    banks_per_bundle: int = 8
    rows: int = 128
    cols: int = 128
    bundle_bits: int = 512
    max_tokens: int = 32
    max_k_words: int = 64
    instr_depth: int = 8
    wfifo_depth: int = 16
    out_depth: int = 16
    timing: HBM3Timing = field(default_factory=HBM3Timing)

    def __post_init__(self):
        for f in fields(self):
            if f.name == "timing":
                continue
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise FormatError(f"{f.name}: must be an integer >= 1, got {v!r}")
        if not isinstance(self.timing, HBM3Timing):
            raise FormatError(f"timing: expected HBM3Timing, got {self.timing!r}")
        if self.banks_per_bundle % self.banks_per_group:
            raise FormatError(f"banks_per_bundle: {self.banks_per_bundle} is not a multiple of "
                              f"banks_per_group {self.banks_per_group} (bundles are whole bank groups)")
        if (self.bank_groups * self.banks_per_group) % self.banks_per_bundle:
            raise FormatError(f"banks_per_bundle: {self.banks_per_bundle} does not divide the "
                              f"{self.bank_groups * self.banks_per_group} banks of the pCH")
        if not _pow2(self.bundles) or self.bundles > 8:
            raise FormatError(f"bundles: {self.bundles} bundles; must be a power of two <= 8")
        if not _pow2(self.cols):
            raise FormatError(f"cols: {self.cols} must be a power of two")
        if self.bundle_bits % 8 or not _pow2(self.bundle_bits // 8):
            raise FormatError(f"bundle_bits: {self.bundle_bits} must be 8 x a power of two")
        if self.max_tokens > 255:
            raise FormatError(f"max_tokens: {self.max_tokens} > 255 (8-bit instruction field)")
        if self.max_k_words > 4095:
            raise FormatError(f"max_k_words: {self.max_k_words} > 4095 (12-bit field)")
        if self.max_k_words * self.elems > MAX_K:
            raise FormatError(f"max_k_words: K = {self.max_k_words * self.elems} exceeds "
                              f"MAX_K = {MAX_K}")
        if self.words >= 1 << 32:
            raise FormatError(f"rows: {self.words} words exceed the 32-bit address field")
        if self.wfifo_depth < 2 or self.out_depth < 8 or self.instr_depth < 4:
            raise FormatError("wfifo_depth >= 2, out_depth >= 8, instr_depth >= 4 required, got "
                              f"{self.wfifo_depth}, {self.out_depth}, {self.instr_depth}")

    @property
    def bundles(self) -> int:
        return self.bank_groups * self.banks_per_group // self.banks_per_bundle

    @property
    def groups_per_bundle(self) -> int:
        return self.banks_per_bundle // self.banks_per_group

    @property
    def elems(self) -> int:
        """int8 elements per word = MACs per cycle."""
        return self.bundle_bits // 8

    @property
    def words(self) -> int:
        return self.rows * self.bundles * self.cols

    @property
    def peak_bytes_per_cycle(self) -> float:
        return self.elems / max(self.timing.tCCD_L, self.timing.tBUS)

    def word_addr(self, bundle: int, row: int, col: int) -> int:
        return (row * self.bundles + bundle) * self.cols + col

    def split_addr(self, addr: int) -> tuple[int, int, int]:
        """word address -> (bundle, row, col)."""
        col = addr % self.cols
        bundle = (addr // self.cols) % self.bundles
        return bundle, addr // (self.cols * self.bundles), col


CONFIG_DEFAULT = PIMConfig()
#: The simulation/CI config: 2 bundles x 64 rows x 16 cols of 128-bit words, 8 tokens.
CONFIG_SMALL = PIMConfig(bank_groups=4, banks_per_group=2, banks_per_bundle=4, rows=64, cols=16,
                         bundle_bits=128, max_tokens=8, max_k_words=16, instr_depth=8,
                         wfifo_depth=16, out_depth=16)
#: The ECP5-85k build (``python -m synth flow`` takes it for ``--config default``): the
#: default's 512-bit bundles (64 MACs per cycle), 2 bundles, HBM3 timing and field
#: widths, with a 32-row x 64-column slice of each bundle (4096 words, 2 Mbit) and a
#: 16-token buffer (512 kbit). The default's 128 x 128 slice is 16 Mbit of bank
#: storage; the ECP5-85k has 3.7 Mbit of block RAM (208 DP16KD).
CONFIG_FPGA = PIMConfig(rows=32, cols=64, max_tokens=16)

# --------------------------------------------------------------------------- ISA

OPCODES = {"NOP": 0, "LOAD_TOKENS": 1, "WRITE": 2, "GEMM": 3, "SET_OUT": 4, "FENCE": 5}
OP_NAMES = {v: k for k, v in OPCODES.items()}
ERR_OPCODE, ERR_ADDR, ERR_TOKENS, ERR_FIELD = 1, 2, 4, 8
ERR_NAMES = {ERR_OPCODE: "illegal opcode", ERR_ADDR: "address out of range",
             ERR_TOKENS: "token count / K out of range or no tokens loaded",
             ERR_FIELD: "bad field"}
INSTR_BITS = 64
#: DRAM command codes on the command-bus port.
CMD_ACT, CMD_PRE, CMD_RD, CMD_WR, CMD_REF = 1, 2, 3, 4, 5
CMD_NAMES = {CMD_ACT: "ACT", CMD_PRE: "PRE", CMD_RD: "RD", CMD_WR: "WR", CMD_REF: "REF"}

# field (lo, width) per opcode
F_OP = (0, 4)
F_T, F_KW = (4, 8), (12, 12)            # LOAD_TOKENS
F_ADDR, F_COUNT, F_N = (4, 32), (36, 24), (36, 16)   # WRITE / GEMM
F_MODE, F_SHIFT, F_MULT = (4, 2), (6, 5), (11, 16)   # SET_OUT


def _put(word: int, f: tuple[int, int], v: int, name: str) -> int:
    lo, w = f
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 0 <= v < 1 << w:
        raise FormatError(f"{name}: {v!r} does not fit the {w}-bit field")
    return word | (int(v) << lo)


def _get(word: int, f: tuple[int, int]) -> int:
    lo, w = f
    return (word >> lo) & ((1 << w) - 1)


def encode(op: str, **fields_) -> int:
    """Encode one instruction; fields: t, kw (LOAD_TOKENS), addr, count (WRITE),
    addr, n (GEMM), mode, shift, mult (SET_OUT). Unchecked against a config (so a
    test can build bad instructions); :class:`Program` checks."""
    if op not in OPCODES:
        raise FormatError(f"op: unknown opcode {op!r} (expected one of {sorted(OPCODES)})")
    spec = {"LOAD_TOKENS": {"t": F_T, "kw": F_KW}, "WRITE": {"addr": F_ADDR, "count": F_COUNT},
            "GEMM": {"addr": F_ADDR, "n": F_N},
            "SET_OUT": {"mode": F_MODE, "shift": F_SHIFT, "mult": F_MULT}}.get(op, {})
    w = OPCODES[op]
    for k, v in fields_.items():
        if k not in spec:
            raise FormatError(f"{k}: not a field of {op}")
        w = _put(w, spec[k], v, k)
    return w


def decode(word: int) -> dict:
    """Fields of an instruction word (all of them, whatever the opcode)."""
    op = _get(word, F_OP)
    return dict(op=op, name=OP_NAMES.get(op, f"ILLEGAL_{op}"), t=_get(word, F_T),
                kw=_get(word, F_KW), addr=_get(word, F_ADDR), count=_get(word, F_COUNT),
                n=_get(word, F_N), mode=_get(word, F_MODE), shift=_get(word, F_SHIFT),
                mult=_get(word, F_MULT))


# --------------------------------------------------------------------------- packing

def pack_rows(cfg: PIMConfig, mat) -> list[int]:
    """int8 (rows, K) -> bundle words, each row zero-padded to whole words.

    Element e of a word is byte e (little end first): the RTL's lane e.
    """
    a = np.asarray(mat)
    if a.ndim != 2 or a.dtype != np.int8:
        raise FormatError(f"mat: expected a 2-D int8 array, got {a.dtype} shape {a.shape}")
    w = cfg.elems
    kw = max(1, -(-a.shape[1] // w))
    pad = np.zeros((a.shape[0], kw * w), np.int8)
    pad[:, :a.shape[1]] = a
    raw = pad.view(np.uint8).reshape(-1, w)
    return [int.from_bytes(r.tobytes(), "little") for r in raw]


def unpack_words(cfg: PIMConfig, words) -> np.ndarray:
    """bundle words -> int8 (len, elems)."""
    nb = cfg.elems
    buf = b"".join(int(x).to_bytes(nb, "little") for x in words)
    return np.frombuffer(buf, np.int8).reshape(-1, nb).copy()


# --------------------------------------------------------------------------- programs

class Program:
    """Instruction words plus the data-stream words they consume, checked against a config."""

    def __init__(self, cfg: PIMConfig):
        self.cfg = cfg
        self.words: list[int] = []
        self.din: list[int] = []

    def raw(self, word: int, din=()) -> "Program":
        """Append any 64-bit word (also illegal ones) and the data words it should consume."""
        if not 0 <= int(word) < 1 << INSTR_BITS:
            raise FormatError(f"word: {word!r} is not a 64-bit instruction")
        self.words.append(int(word))
        self.din.extend(int(x) for x in din)
        return self

    def nop(self):
        return self.raw(encode("NOP"))

    def fence(self):
        return self.raw(encode("FENCE"))

    def set_out(self, out):
        m = parse_out(out)
        return self.raw(encode("SET_OUT", mode=m.code, shift=m.shift, mult=m.mult))

    def load_tokens(self, x):
        """x: int8 (t, K) token vectors."""
        x = np.asarray(x)
        if x.ndim != 2 or x.dtype != np.int8:
            raise FormatError(f"x: expected int8 (tokens, K), got {x.dtype} {x.shape}")
        t, k = x.shape
        kw = -(-k // self.cfg.elems)
        if not 1 <= t <= self.cfg.max_tokens:
            raise FormatError(f"tokens: {t} out of range 1..{self.cfg.max_tokens}")
        if not 1 <= kw <= self.cfg.max_k_words:
            raise FormatError(f"K: {k} needs {kw} words, range 1..{self.cfg.max_k_words}")
        return self.raw(encode("LOAD_TOKENS", t=t, kw=kw), pack_rows(self.cfg, x))

    def write(self, addr: int, words):
        words = list(words)
        if not words or addr < 0 or addr + len(words) > self.cfg.words:
            raise FormatError(f"addr: WRITE of {len(words)} words at {addr} outside "
                              f"0..{self.cfg.words}")
        return self.raw(encode("WRITE", addr=addr, count=len(words)), words)

    def write_matrix(self, addr: int, w):
        """Store int8 (rows, K) weights row-major, each row padded to whole words."""
        return self.write(addr, pack_rows(self.cfg, w))

    def gemm(self, addr: int, n: int):
        if not 1 <= n < 1 << 16 or addr < 0:
            raise FormatError(f"n: GEMM rows {n} out of range 1..65535 (addr {addr})")
        return self.raw(encode("GEMM", addr=addr, n=n))


# --------------------------------------------------------------------------- functional golden

@dataclass
class PIMResult:
    values: np.ndarray          # int64, every output-stream value in order
    last: np.ndarray            # bool, the 'last' flag of each output (end of a GEMM)
    err: int                    # sticky error bits after the stream
    dram: list                  # word contents (python ints), length cfg.words
    gemms: list = field(default_factory=list)   # per GEMM: (n, t) array in the out dtype
    din_used: int = 0
    state: "UnitState | None" = None


def _check_gemm(cfg, f, have, kw) -> int:
    e = 0
    if f["n"] == 0:
        e |= ERR_FIELD
    if not have:
        e |= ERR_TOKENS
    if f["addr"] + f["n"] * kw > cfg.words:
        e |= ERR_ADDR
    return e


def instr_errors(cfg: PIMConfig, word: int, have_tokens: bool, kw: int) -> int:
    """The error bits the unit raises for one instruction (0 = executes)."""
    f = decode(word)
    name = f["name"]
    if name == "LOAD_TOKENS":
        return ERR_TOKENS if not (1 <= f["t"] <= cfg.max_tokens and
                                  1 <= f["kw"] <= cfg.max_k_words) else 0
    if name == "WRITE":
        e = ERR_FIELD if f["count"] == 0 else 0
        return e | (ERR_ADDR if f["addr"] + f["count"] > cfg.words else 0)
    if name == "GEMM":
        return _check_gemm(cfg, f, have_tokens, kw)
    if name == "SET_OUT":
        if f["mode"] == 3 or (f["mode"] == 2 and f["shift"] == 0) or \
                (f["mode"] < 2 and (f["shift"] or f["mult"])):
            return ERR_FIELD
        return 0
    if name in ("NOP", "FENCE"):
        return 0
    return ERR_OPCODE


def _mode_of(code, shift, mult) -> OutMode:
    return {0: OutMode("int32"), 1: OutMode("int8_sat")}.get(code) or \
        OutMode("requant", mult, shift)


@dataclass
class UnitState:
    """Architectural state that survives between instruction streams (reset values)."""
    dram: list
    mode: OutMode = field(default_factory=lambda: OutMode("int32"))
    buf: np.ndarray | None = None     # (t, kw * elems) int8, None until a LOAD_TOKENS
    kw: int = 0

    @classmethod
    def reset(cls, cfg: PIMConfig) -> "UnitState":
        return cls([0] * cfg.words)

    @property
    def loaded(self):
        """(t, kw) of the token buffer, or None (what :func:`predict` needs)."""
        return None if self.buf is None else (self.buf.shape[0], self.kw)


def execute(cfg: PIMConfig, words, din=(), dram=None, state: UnitState | None = None) -> PIMResult:
    """Run an instruction stream functionally, bit-exact with the RTL.

    ``dram``: initial word contents (default all zero, as after reset), or
    ``state``: a :class:`UnitState` to continue from (it is updated in place and
    also returned as ``result.state``). A rejected instruction sets its error
    bits and consumes no data words.
    """
    if state is None:
        state = UnitState.reset(cfg) if dram is None else UnitState([int(x) for x in dram])
    mem = state.dram
    if len(mem) != cfg.words:
        raise FormatError(f"dram: {len(mem)} words, expected {cfg.words}")
    din = [int(x) for x in din]
    pos, err = 0, 0
    mode, buf, kw = state.mode, state.buf, state.kw
    vals, lasts, gemms = [], [], []

    def take(n, what):
        nonlocal pos
        if pos + n > len(din):
            raise FormatError(f"din: {what} needs {n} data words, only {len(din) - pos} left")
        out = din[pos:pos + n]
        pos += n
        return out

    for i, word in enumerate(words):
        word = int(word)
        if not 0 <= word < 1 << INSTR_BITS:
            raise FormatError(f"words[{i}]: {word!r} is not a 64-bit instruction")
        e = instr_errors(cfg, word, buf is not None, kw)
        if e:
            err |= e
            continue
        f = decode(word)
        name = f["name"]
        if name == "SET_OUT":
            mode = _mode_of(f["mode"], f["shift"], f["mult"])
        elif name == "LOAD_TOKENS":
            data = take(f["t"] * f["kw"], f"LOAD_TOKENS (instruction {i})")
            buf = unpack_words(cfg, data).reshape(f["t"], f["kw"] * cfg.elems)
            kw = f["kw"]
        elif name == "WRITE":
            data = take(f["count"], f"WRITE (instruction {i})")
            mem[f["addr"]:f["addr"] + f["count"]] = data
        elif name == "GEMM":
            n = f["n"]
            wts = unpack_words(cfg, mem[f["addr"]:f["addr"] + n * kw]).reshape(n, kw * cfg.elems)
            acc = wts.astype(np.int64) @ buf.astype(np.int64).T      # (n, t)
            out = apply_out(acc, mode)
            gemms.append(out)
            vals.extend(int(v) for v in out.ravel())
            lasts.extend([False] * (out.size - 1) + [True])
    state.mode, state.buf, state.kw = mode, buf, kw
    return PIMResult(np.array(vals, np.int64), np.array(lasts, bool), err, mem, gemms, pos, state)


# --------------------------------------------------------------------------- cycle model

#: Pipeline constants of the RTL (hdl/pim), in cycles; see docs/pim.md.
FIFO_LAT = 2        # SyncFIFOBuffered: written at c -> readable at c + 2
MAC_DONE = 5        # last MAC issue at c -> sequencer fetches the next instruction at c + 5
OUT_LAT = 6         # last MAC issue at c -> last output beat leaves at c + 6 (ready = 1)
IFETCH = FIFO_LAT   # instruction accepted at c -> first fetch at c + 2


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
            loaded: tuple[int, int] | None = None) -> Timing:
    """Cycle model of an instruction stream with no stream stalls.

    Assumptions (the RTL bench reproduces them): every instruction and data word
    is offered from the first cycle on (valid held high), the output is always
    ready, the DRAM is idle with every timing constraint satisfied and no refresh
    in progress, and the refresh timer reads ``ref_phase`` in the cycle the first
    instruction word is accepted (cycle 0 of the returned command trace).
    ``loaded`` = (t, kw) of the token buffer at the start (None: empty, as after
    reset). Returns the busy-cycle count the RTL's ``perf_cycles`` counter reports.
    """
    T = cfg.timing
    if not 0 <= ref_phase < T.tREFI:
        raise FormatError(f"ref_phase: {ref_phase} out of range 0..{T.tREFI - 1}")
    ctl = _Ctrl(cfg, due_at=T.tREFI - ref_phase, trace=trace)
    f = IFETCH                      # fetch cycle of the current instruction
    last_out = None                 # cycle the last output beat leaves
    have, (t, kw) = loaded is not None, (loaded or (0, 0))
    starts, spans = [], []
    for word in words:
        word = int(word)
        starts.append(f)
        e = instr_errors(cfg, word, have, kw)
        d = decode(word)
        name = d["name"]
        if e or name in ("NOP", "SET_OUT"):
            f += 1
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
    end = f if last_out is None else max(f, last_out + 1)
    ctl.advance(end)
    return Timing(cycles=end - 1, commands=ctl.cmds if trace else [],
                  reads=ctl.counts["rd"], writes=ctl.counts["wr"], acts=ctl.counts["act"],
                  refs=ctl.counts["ref"], instr_start=starts, gemm_spans=spans)


def predict_cycles(cfg: PIMConfig, words, *, ref_phase: int = 0,
                   loaded: tuple[int, int] | None = None) -> int:
    """Busy cycles of an instruction stream (see :func:`predict`)."""
    return predict(cfg, words, ref_phase=ref_phase, trace=False, loaded=loaded).cycles


def config_to_dict(cfg: PIMConfig) -> dict:
    from dataclasses import asdict
    return asdict(cfg)


def config_from_dict(d: dict) -> PIMConfig:
    d = dict(d)
    t = d.pop("timing", {})
    return PIMConfig(**d, timing=HBM3Timing(**t))


# --------------------------------------------------------------------------- analytic helpers

def gemm_program(cfg: PIMConfig, n: int, k: int, tokens: int, addr: int = 0) -> list[int]:
    """Instruction words of LOAD_TOKENS(tokens x k) + GEMM(n rows) (data irrelevant for timing)."""
    kw = -(-k // cfg.elems)
    return [encode("LOAD_TOKENS", t=tokens, kw=kw), encode("GEMM", addr=addr, n=n)]


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
