"""Unit cost model of the MoE layer: per-expert cycles and weight bytes on the SpTC
(the xPU) and the Logic-PIM, their roofline ridges, and the shared-HBM budget.

Split from :mod:`golden.schedule` (which re-exports everything here) along the seam
between *what a job costs* (this module) and *which jobs a step runs* (the schedule
compiler), to keep both under ~500 lines.

Bytes are the formats' real sizes (``weight_bytes``): dense int8 ``m*k``; NVIDIA 2:4
``m*k/2`` values + one 4-bit nibble per group of 4 (= 0.625 m k); Samoyeds (N, M, V)
``m*N/M`` kept sub-rows in 2:4 form + one ``ceil(log2 M)``-bit index per kept sub-row
and V columns. The Logic-PIM streams dense int8 rows (``m * ceil(k/elems)`` bundle
words of ``elems`` bytes).

Shared HBM (``shared_bytes_per_cycle``): the SpTC reads its weights through the stack's
ordinary interface (``xpu_bytes_per_cycle``), the Logic-PIM through its extra TSVs, but
both read the *same banks*. With the budget set, a step's makespan is at least the
bytes both units stream divided by the banks' internal rate (the Logic-PIM bundle
rate, which the Logic-PIM alone saturates): ``max(t_sptc, t_pim, (B_sptc + B_pim) / bw)``.
Duplex does not say how the two share the banks; this cap is our decision (docs/moe.md).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from . import duplex, pim as gp, sptc as gs
from .errors import FormatError

SPTC, PIM = "sptc", "pim"
SPTC_MODES = ("dense", "2:4", "samoyeds")


def weight_bytes(mode: str, m: int, k: int, nmv: tuple = (1, 2, 32)) -> int:
    """Bytes of an (m x k) int8 weight stored in ``mode`` (rounded up to whole bytes)."""
    if mode == "dense":
        return m * k
    if mode == "2:4":
        g = -(-k // 4)
        return m * 2 * g + -(-(m * g * 4) // 8)
    if mode == "samoyeds":
        n, mm, v = nmv
        if not (isinstance(n, int) and isinstance(mm, int) and isinstance(v, int)
                and 1 <= n <= mm and v >= 4):
            raise FormatError(f"nmv: expected (N, M, V) with 1 <= N <= M and V >= 4, got {nmv!r}")
        r = -(-m // mm) * n
        g = -(-k // 4)
        bits = r * g * 4 + r * -(-k // v) * max(1, math.ceil(math.log2(mm)))
        return r * 2 * g + -(-bits // 8)
    raise FormatError(f"mode: {mode!r} (expected one of {SPTC_MODES})")


# The cycle models are pure functions of hashable configs: cached across TimeModels (a
# benchmark builds one per sweep point with the same shapes).
def sptc_k(mode: str, k: int, nmv: tuple = (1, 2, 32)) -> int:
    """K as the SpTC runs a GEMM: zero-padded to a multiple of 4, in Samoyeds mode of V."""
    q = nmv[2] if mode == "samoyeds" else 4
    return -(-k // q) * q


@lru_cache(maxsize=65536)
def _sptc_gemm(cfg, mode: str, m: int, k: int, n: int, nmv: tuple) -> int:
    return gs.predict_cycles(cfg, mode, m, sptc_k(mode, k, nmv), n, nmv)


@lru_cache(maxsize=65536)
def _pim_program(cfg, words: tuple) -> int:
    return gp.predict_cycles(cfg, list(words))


@dataclass(frozen=True)
class ExpertShape:
    """The GEMMs of one expert, in order: (m, k) each (a gated FFN: gate, up, down)."""

    gemms: tuple

    @classmethod
    def projection(cls, hidden: int) -> "ExpertShape":
        return cls(((hidden, hidden),))

    @classmethod
    def gated_ffn(cls, hidden: int, ffn: int) -> "ExpertShape":
        return cls(((ffn, hidden), (ffn, hidden), (hidden, ffn)))

    @property
    def hidden(self) -> int:
        return self.gemms[0][1]

    @property
    def is_gated_ffn(self) -> bool:
        g = self.gemms
        return len(g) == 3 and g[0] == g[1] and g[2] == (g[0][1], g[0][0])


class TimeModel:
    """Per-unit cycles (and weight bytes) of one expert with n token slots.

    SpTC: ``golden.sptc.predict_cycles`` per GEMM and per job of at most
    ``sptc_tile`` slots; with ``xpu_bytes_per_cycle`` set, no GEMM is faster than
    streaming its weights, in the SpTC's format (:func:`weight_bytes`), at that rate.
    Logic-PIM: ``golden.pim.predict_cycles`` of the job's instruction stream
    (LOAD_TOKENS, GEMM per input, per job of at most ``pim_tile`` slots).
    ``pim_lanes`` > 1 models a GEMM module with that many token lanes (``lanes *
    elems`` MACs per cycle, the same weight stream): a job of n slots costs what the
    one-lane unit needs for ``ceil(n / lanes)`` (a model-only variant: the RTL unit has
    one lane). ``shared_bytes_per_cycle``: the shared-HBM budget (module docstring).
    A step's SpTC time also includes the activation LOAD. ``h_reload``: a gated FFN's
    h goes back into the SpTC's activation buffer with a LOAD before the down GEMM (the
    RTL top does; :meth:`for_config` sets it).
    """

    def __init__(self, shape: ExpertShape, sptc_cfg: gs.SpTCConfig, pim_cfg: gp.PIMConfig,
                 sptc_mode: str = "dense", xpu_bytes_per_cycle: float | None = None,
                 sptc_tile: int | None = None, pim_tile: int | None = None, *,
                 nmv: tuple = (1, 2, 32), shared_bytes_per_cycle: float | None = None,
                 pim_lanes: int = 1, h_reload: bool = False):
        if sptc_mode not in SPTC_MODES:
            raise FormatError(f"sptc_mode: {sptc_mode!r} (expected one of {SPTC_MODES})")
        for name, v in (("xpu_bytes_per_cycle", xpu_bytes_per_cycle),
                        ("shared_bytes_per_cycle", shared_bytes_per_cycle)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))
                                  or not math.isfinite(v) or v <= 0):
                raise FormatError(f"{name}: expected a positive number or None, got {v!r}")
        if isinstance(pim_lanes, bool) or not isinstance(pim_lanes, int) or pim_lanes < 1:
            raise FormatError(f"pim_lanes: expected an integer >= 1, got {pim_lanes!r}")
        self.shape, self.sptc_cfg, self.pim_cfg = shape, sptc_cfg, pim_cfg
        self.sptc_mode, self.xbw, self.nmv = sptc_mode, xpu_bytes_per_cycle, nmv
        self.shared_bw, self.pim_lanes = shared_bytes_per_cycle, pim_lanes
        self.h_reload = bool(h_reload)
        self.sptc_tile = sptc_tile or sptc_cfg.max_sel
        self.pim_tile = pim_tile or pim_cfg.max_tokens
        self._wb = [weight_bytes(sptc_mode, m, k, nmv) for m, k in shape.gemms]
        self._sptc = lru_cache(maxsize=None)(self._sptc_job)
        self._pim = lru_cache(maxsize=None)(self._pim_job)

    @classmethod
    def for_config(cls, mcfg, hidden: int, ffn: int, sptc_mode: str = "dense",
                   nmv: tuple = (1, 2, 32)) -> "TimeModel":
        """The model of the RTL top (``golden.moe.MoEConfig``): a gated FFN per expert,
        no weight-bandwidth floor and no shared budget (the top's SpTC weights arrive on
        a stream, the Logic-PIM's sit in its own banks)."""
        return cls(ExpertShape.gated_ffn(hidden, ffn), mcfg.sptc, mcfg.pim, sptc_mode,
                   sptc_tile=mcfg.sptc_max_slots, pim_tile=mcfg.pim_max_slots, nmv=nmv,
                   h_reload=True)

    # ----------------------------------------------------------------- cycles
    def sptc_phases(self, n: int) -> list[int]:
        """SpTC cycles of each part of one job of n slots: the GEMMs in order, and for a
        gated FFN with ``h_reload`` the LOAD of h (ffn x n, K padded as the down GEMM
        runs it) before the down projection: [gate, up, load h, down]."""
        out = []
        for i, ((m, k), wb) in enumerate(zip(self.shape.gemms, self._wb)):
            if i == 2 and self.h_reload and self.shape.is_gated_ffn:
                out.append(gs.predict_load_cycles((sptc_k(self.sptc_mode, k, self.nmv), n)))
            g = _sptc_gemm(self.sptc_cfg, self.sptc_mode, m, k, n, self.nmv)
            if self.xbw:
                g = max(g, math.ceil(wb / self.xbw))
            out.append(g)
        return out

    def _sptc_job(self, n: int) -> int:
        return sum(self.sptc_phases(n))

    def pim_program(self, n: int, addr: int = 0, rqs=None) -> list[int]:
        """The Logic-PIM instruction words of one job of n slots: per GEMM a SET_OUT (its
        output scale; ``rqs``: (mult, shift) per GEMM, default (1, 1)), a LOAD_TOKENS
        where K changes, the GEMM (weights from ``addr`` on, GEMM after GEMM)."""
        t = -(-n // self.pim_lanes)
        words, prev_k = [], None
        for i, (m, k) in enumerate(self.shape.gemms):
            mult, shift = rqs[i] if rqs else (1, 1)
            words.append(gp.encode("SET_OUT", mode=2, mult=mult, shift=shift))
            kw = -(-k // self.pim_cfg.elems)
            if k != prev_k:
                words.append(gp.encode("LOAD_TOKENS", t=t, kw=kw))
                prev_k = k
            words.append(gp.encode("GEMM", addr=addr, n=m))
            addr += m * kw
        return words

    def _pim_job(self, n: int) -> int:
        return _pim_program(self.pim_cfg, tuple(self.pim_program(n)))

    @staticmethod
    def chunks(n: int, tile: int) -> list[int]:
        return [tile] * (n // tile) + ([n % tile] if n % tile else [])

    def sptc(self, n: int) -> int:
        """SpTC cycles of an expert with n slots (0 for n = 0)."""
        return sum(self._sptc(c) for c in self.chunks(int(n), self.sptc_tile))

    def pim(self, n: int) -> int:
        return sum(self._pim(c) for c in self.chunks(int(n), self.pim_tile))

    def unit(self, unit: str, n: int) -> int:
        return self.sptc(n) if unit == SPTC else self.pim(n)

    def load(self, T: int) -> int:
        return gs.predict_load_cycles((sptc_k(self.sptc_mode, self.shape.hidden, self.nmv), T)) \
            if T else 0

    # ----------------------------------------------------------------- bytes and rooflines
    def expert_bytes(self, unit: str) -> int:
        """Weight bytes one job of an expert streams on ``unit``."""
        if unit == SPTC:
            return sum(self._wb)
        e = self.pim_cfg.elems
        return sum(m * -(-k // e) * e for m, k in self.shape.gemms)

    def bytes(self, unit: str, n: int) -> int:
        """Weight bytes of an expert with n slots on ``unit`` (each tile re-streams them)."""
        tile = self.sptc_tile if unit == SPTC else self.pim_tile
        return len(self.chunks(int(n), tile)) * self.expert_bytes(unit)

    def peak_ops(self, unit: str) -> float:
        """Dense-equivalent ops (2 per MAC of the dense GEMM) per cycle at full speed."""
        if unit == SPTC:
            density = {"dense": 1.0, "2:4": 0.5}.get(self.sptc_mode, self.nmv[0] / self.nmv[1] / 2)
            return 2 * self.sptc_cfg.peak_macs / density
        return 2.0 * self.pim_cfg.elems * self.pim_lanes

    def bandwidth(self, unit: str) -> float:
        """Weight bytes per cycle the unit reads (SpTC without a floor: unbounded)."""
        if unit == SPTC:
            return self.xbw or math.inf
        return self.pim_cfg.peak_bytes_per_cycle

    def ridge(self, unit: str) -> float:
        """Roofline ridge in ops per byte: peak ops / bandwidth."""
        return self.peak_ops(unit) / self.bandwidth(unit)

    def op_per_byte(self, unit: str, n: int) -> float:
        """Op/B of one expert with n tokens on ``unit`` (``golden.duplex.op_per_byte`` with
        the unit's bytes per weight)."""
        wb = self.expert_bytes(unit) / sum(m * k for m, k in self.shape.gemms)
        if self.shape.is_gated_ffn:
            f, h = self.shape.gemms[0]
            return duplex.op_per_byte("expert_ffn", tokens=n, hidden=h, ffn=f, weight_bytes=wb)
        m, k = self.shape.gemms[0]
        return duplex.op_per_byte("linear", tokens=n, m=m, k=k, weight_bytes=wb)

    def opb_unit(self, n: int) -> str:
        """The unit an expert with n tokens' Op/B favours: the higher roofline
        ``min(peak_ops, Op/B * bandwidth)`` (ties: the SpTC)."""
        if n <= 0:
            return SPTC
        att = {u: min(self.peak_ops(u), self.op_per_byte(u, n) * self.bandwidth(u))
               for u in (SPTC, PIM)}
        return PIM if att[PIM] > att[SPTC] else SPTC
