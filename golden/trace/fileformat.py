"""The routing-trace file: ``.npz`` with strict validation (schema_version 1).

An ``.npz`` with a ``meta`` JSON string (schema_version, preset, scale,
expert_scale, skew, skew_param, seed, num_experts, num_shared, top_k, hidden, ffn,
steps, gen) and flat arrays ``step_offsets`` (steps+1, int64), ``expert_ids``
(tokens x k, int16), ``gate`` (float32), ``gate_q`` (int8), ``is_prefill`` (bool,
tokens), ``request_id`` (int32, tokens). :func:`load` never unpickles and raises
:class:`FormatError` naming the field at the first defect; it also refuses a trace
without steps and ``gate_q`` rows that do not sum to 127 (steps with no tokens are
valid; the ``python -m sim run`` engines refuse to run one).

Recorded traces (routing recorded from a model run, imported by :mod:`sim.recorded`)
have ``preset = "recorded:<name>"``, ``skew = "recorded"`` (``skew_param`` 0,
``seed`` 0, ``expert_scale`` 1); their shapes come from the command line instead
of a preset, so ``gen`` records ``model`` (the full ``hidden`` and ``ffn``, which
``hidden``/``ffn`` must equal divided by ``scale``) and ``source`` (``file``,
``sha256``, ``format``, ``layer``, ``tokens_in_file``), which :func:`load` checks
(:func:`check_recorded_meta`).

The shipped default trace ``golden/trace/data/default_trace.npz`` was made with::

    python -m sim.traces gen --preset mixtral-8x7b --steps 64 --seed 0 --scale 64 \\
        --skew hot --imbalance 1.5 --decode 8 --prefill 1 --prompt-len 16 32 \\
        --gen-len 16 128 -o golden/trace/data/default_trace.npz
"""
from __future__ import annotations

import json
import math
import re
import zipfile
import zlib
from pathlib import Path

import numpy as np
from numpy.lib.npyio import NpzFile

from golden.errors import FormatError

from .model import PRESETS, SCHEMA_VERSION, SKEWS, Trace, preset_shape, scaled_dim

DEFAULT_PATH = Path(__file__).resolve().parent / "data" / "default_trace.npz"
#: A recorded trace's preset is PREFIX + a name matching NAME_RE.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
PREFIX = "recorded:"


def save(trace: Trace, path) -> None:
    """Write ``trace`` to exactly ``path`` (compressed ``.npz``, no pickles)."""
    arrays = {a: getattr(trace, a) for a in Trace.ARRAYS}
    with open(path, "wb") as f:
        np.savez_compressed(f, meta=np.array(json.dumps(trace.meta())), **arrays)


_META_INT = ("schema_version", "scale", "seed", "num_experts", "num_shared", "top_k",
             "hidden", "ffn", "steps")
_KINDS = dict(step_offsets="iu", expert_ids="iu", gate="f", gate_q="iu", is_prefill="b",
              request_id="iu")   # numpy dtype.kind accepted per array


def load(path) -> Trace:
    """Read and validate a trace; any defect raises FormatError naming the field."""
    path = Path(path)
    if not path.is_file():
        raise FormatError(f"{path}: no such trace file")
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, NpzFile):
            raise FormatError(f"{path}: not an .npz archive (a bare .npy array?)")
        with z:
            data = {name: z[name] for name in z.files}
    except (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError, KeyError) as e:
        if isinstance(e, FormatError):
            raise
        raise FormatError(f"{path}: cannot read as an .npz trace (truncated, corrupt or "
                          f"pickled): {e}") from None
    return from_arrays(data, str(path))


def from_arrays(data: dict, where: str) -> Trace:
    def bad(msg):
        return FormatError(f"{where}: {msg}")

    if "meta" not in data:
        raise bad("meta: missing")
    m = data["meta"]
    if m.shape != () or m.dtype.kind != "U":
        raise bad(f"meta: expected a JSON string, got {m.dtype} array of shape {m.shape}")
    try:
        meta = json.loads(str(m))
    except json.JSONDecodeError as e:
        raise bad(f"meta: not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise bad("meta: not a JSON object")
    for key in _META_INT + ("preset", "skew", "skew_param"):
        if key not in meta:
            raise bad(f"meta.{key}: missing")
    for key in _META_INT + ("expert_scale",):
        v = meta.get(key, 1)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise bad(f"meta.{key}: expected a non-negative integer, got {v!r}")
    if meta["schema_version"] != SCHEMA_VERSION:
        raise bad(f"meta.schema_version: {meta['schema_version']} unsupported "
                  f"(this reader knows {SCHEMA_VERSION})")
    recorded = isinstance(meta["preset"], str) and meta["preset"].startswith("recorded:")
    if meta["preset"] not in PRESETS and not recorded:
        raise bad(f"meta.preset: unknown {meta['preset']!r}")
    if meta["skew"] not in SKEWS and not recorded:
        raise bad(f"meta.skew: unknown {meta['skew']!r}")
    sp = meta["skew_param"]
    if not isinstance(sp, (int, float)) or isinstance(sp, bool) or not math.isfinite(sp) or sp < 0:
        raise bad(f"meta.skew_param: expected a finite number >= 0, got {sp!r}")
    if meta["steps"] < 1:
        raise bad(f"meta.steps: {meta['steps']}; a trace has at least one step")
    if meta["scale"] < 1 or meta.get("expert_scale", 1) < 1:
        raise bad(f"meta.scale: scales must be >= 1, got {meta['scale']}, "
                  f"{meta.get('expert_scale', 1)}")
    gen = meta.get("gen", {})
    if not isinstance(gen, dict):
        raise bad("meta.gen: not a JSON object")
    if recorded:                 # dimensions given at import (sim.recorded), not a preset
        check_recorded_meta(meta, bad)
    shape = {} if recorded else preset_shape(meta["preset"], meta["scale"],
                                             meta.get("expert_scale", 1))
    for key, want in shape.items():
        if meta[key] != want:
            raise bad(f"meta.{key}: {meta[key]} does not match preset {meta['preset']} at "
                      f"scale {meta['scale']} (expected {want})")

    for name in Trace.ARRAYS:
        if name not in data:
            raise bad(f"{name}: missing array")
        if data[name].dtype.kind not in _KINDS[name]:
            raise bad(f"{name}: wrong dtype {data[name].dtype}")
    steps, k = meta["steps"], meta["top_k"]
    off = data["step_offsets"]
    if off.shape != (steps + 1,):
        raise bad(f"step_offsets: shape {off.shape}, expected ({steps + 1},) for {steps} steps")
    n = len(data["expert_ids"])
    for name, want in (("expert_ids", (n, k)), ("gate", (n, k)), ("gate_q", (n, k)),
                       ("is_prefill", (n,)), ("request_id", (n,))):
        if data[name].shape != want:
            raise bad(f"{name}: shape {data[name].shape}, expected {want}")
    # Range checks on the arrays as stored (an unsigned value above the int64 range
    # must be reported as it is, not wrapped to a negative number by a cast).
    n_bad = np.flatnonzero((off < 0) | (off > n))
    if len(n_bad):
        i = int(n_bad[0])
        raise bad(f"step_offsets[{i}] = {int(off[i])} out of range 0..{n}")
    off = off.astype(np.int64)
    if off[0] != 0:
        raise bad(f"step_offsets[0] = {off[0]}, expected 0")
    dec = np.flatnonzero(np.diff(off) < 0)
    if len(dec):
        raise bad(f"step_offsets: not monotone at index {dec[0] + 1} "
                  f"({off[dec[0]]} -> {off[dec[0] + 1]})")
    if off[-1] != n:
        raise bad(f"step_offsets[-1] = {off[-1]} does not match the token count {n}")

    raw = data["expert_ids"]
    E = meta["num_experts"]
    oob = np.argwhere((raw < 0) | (raw >= E))
    if len(oob):
        t, j = oob[0]
        raise bad(f"expert_ids[{t}, {j}] = {int(raw[t, j])} out of range 0..{E - 1}")
    ids = raw.astype(np.int64)
    srt = np.sort(ids, axis=1)
    dup = np.flatnonzero((srt[:, 1:] == srt[:, :-1]).any(axis=1))
    if len(dup):
        raise bad(f"expert_ids[{dup[0]}]: duplicate expert in top-{k} {ids[dup[0]].tolist()}")
    gate = data["gate"].astype(np.float32)
    badg = np.argwhere(~(np.isfinite(gate) & (gate >= 0) & (gate <= 1)))
    if len(badg):
        t, j = badg[0]
        raise bad(f"gate[{t}, {j}] = {gate[t, j]} not in [0, 1]")
    raw = data["gate_q"]
    badq = np.argwhere((raw < 0) | (raw > 127))
    if len(badq):
        t, j = badq[0]
        raise bad(f"gate_q[{t}, {j}] = {int(raw[t, j])} out of range 0..127")
    gq = raw.astype(np.int64)
    sums = gq.sum(axis=1)
    bad_sum = np.flatnonzero(sums != 127)
    if len(bad_sum):
        t = int(bad_sum[0])
        raise bad(f"gate_q[{t}] = {gq[t].tolist()} sums to {int(sums[t])}; every token's "
                  f"int8 gates sum to exactly 127")
    raw = data["request_id"]
    i32 = int(np.iinfo(np.int32).max)
    bad_rid = np.flatnonzero((raw < 0) | (raw > i32))
    if len(bad_rid):
        i = int(bad_rid[0])
        raise bad(f"request_id[{i}] = {int(raw[i])} out of range 0..{i32}")
    rid = raw.astype(np.int64)

    return Trace(SCHEMA_VERSION, meta["preset"], meta["scale"], meta["skew"], float(sp),
                 meta["seed"], E, meta["num_shared"], k, meta["hidden"], meta["ffn"],
                 step_offsets=off, expert_ids=ids.astype(np.int16), gate=gate,
                 gate_q=gq.astype(np.int8), is_prefill=data["is_prefill"].astype(bool),
                 request_id=rid.astype(np.int32), expert_scale=meta.get("expert_scale", 1),
                 gen=gen)


def load_default() -> Trace:
    """The small trace shipped with the package (see the module docstring)."""
    return load(DEFAULT_PATH)


def check_recorded_meta(meta: dict, bad) -> None:
    """The loader's checks of a ``recorded:`` trace's metadata (``bad(msg)`` -> error)."""
    if not NAME_RE.fullmatch(meta["preset"][len(PREFIX):]):
        raise bad(f"meta.preset: {meta['preset']!r}: the name after 'recorded:' must be "
                  f"1-64 of A-Z a-z 0-9 . _ -")
    if meta["skew"] != "recorded" or meta["skew_param"] != 0:
        raise bad(f"meta.skew: a recorded trace has skew 'recorded' with skew_param 0, got "
                  f"{meta['skew']!r} {meta['skew_param']!r}")
    if meta.get("expert_scale", 1) != 1:
        raise bad(f"meta.expert_scale: {meta['expert_scale']}; recorded traces are not "
                  f"expert-scaled")
    if not 1 <= meta["top_k"] <= meta["num_experts"]:
        raise bad(f"meta.top_k: {meta['top_k']} not in 1..num_experts {meta['num_experts']}")
    gen = meta.get("gen", {})
    src, model = gen.get("source") if isinstance(gen, dict) else None, gen.get("model") \
        if isinstance(gen, dict) else None
    if not isinstance(src, dict) or not isinstance(src.get("file"), str) or \
            not re.fullmatch(r"[0-9a-f]{64}", str(src.get("sha256"))):
        raise bad(f"meta.gen.source: expected the recorded file's name and sha256, got {src!r}")
    for key in ("hidden", "ffn"):
        v = model.get(key) if isinstance(model, dict) else None
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise bad(f"meta.gen.model.{key}: expected the model's full size, got {v!r}")
        want = scaled_dim(v, meta["scale"])
        if meta[key] != want:
            raise bad(f"meta.{key}: {meta[key]} does not match the model's {v} at scale "
                      f"{meta['scale']} (expected {want})")
