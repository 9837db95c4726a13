"""Import routing recorded from a real model run as a routing trace.

One file past 500 lines: every accepted dump layout's reader sits beside the one
validation they share, so the contract of an import reads in one place.

A recorded dump holds, per token, the top-k expert ids and gate weights a MoE
layer's router chose (for instance the ``router_logits`` a Hugging Face MoE model
returns with ``output_router_logits=True``, or ids/weights hooked out of its
router). :func:`import_routing` reads one, validates every value, and returns a
:class:`golden.trace.Trace` (schema 1) that every engine runs like a generated one.
The model's dimensions are not in the dump and are given by the caller.

Accepted layouts (T tokens, k = ``top_k``, in file order; one MoE layer is
imported at a time):

``.npz`` / ``.safetensors``
    Arrays ``expert_ids`` (T x k, integer) and ``gate`` (T x k, float), or instead
    ``router_logits`` (T x E or L x T x E, float: softmax over the E experts, then
    the top k, as Mixtral/Qwen-MoE routers do; with L layers, ``--layer`` picks
    one). Optional per-token 1-D arrays ``step`` (integer), ``layer`` (integer),
    ``is_prefill`` (bool or 0/1), ``request_id`` (integer). Other arrays are
    refused. ``.npz`` is read with ``allow_pickle=False``; ``.safetensors`` needs the
    ``safetensors`` package (``pip install safetensors``).
``.csv``
    A header row, then one row per token: ``expert_0 .. expert_{k-1}``,
    ``gate_0 .. gate_{k-1}`` and optionally ``step``, ``layer``, ``is_prefill``
    (0/1/true/false), ``request_id``; a ``token`` column is allowed and ignored.
``.json``
    Either the columns as an object (``{"expert_ids": [[...], ...], "gate":
    [[...], ...], "step": [...], ...}``, the same names as ``.npz``) or a list of
    token objects (``[{"expert_ids": [...], "gate": [...], "step": 0, ...}, ...]``,
    also accepted under a top-level ``"tokens"`` key).

Rules: expert ids in 0..E-1 and distinct per token; gate weights finite and
>= 0 with a positive sum. Each token's gates are sorted descending (ids follow)
and normalized to sum 1 over its k experts, as the kit's engines apply them
(``gate_q`` is the int8 copy summing to 127); the mean of the recorded sums is
kept in ``gen.gate_sum_mean`` (below 1 for routers that do not renormalize, such
as Qwen2-MoE's). ``step`` must be non-decreasing in file order; distinct step
values become consecutive steps (without a ``step`` column, ``tokens_per_step``
tokens per step, default all in one). With a ``layer`` column holding several
layers, ``layer`` must be chosen. Without ``is_prefill``, ``phase`` says what the
tokens are: "prefill", "decode", or "auto" (a step's tokens sharing a request id
are prefill if there are several of them; without request ids a step with more
than one token is one prefill request). Without ``request_id``, a step's prefill
tokens get one new id and each decode token its own.

The trace: ``preset = "recorded:<name>"``, ``skew = "recorded"``, ``skew_param =
0``, ``seed = 0``, ``expert_scale = 1``; ``hidden``/``ffn`` are the model's divided
by ``scale`` as for generated traces (``golden.trace.scaled_dim``); ``gen`` holds
``source`` (file name, sha256, format, layer, tokens in the file), ``model``
(full hidden and ffn) and ``gate_sum_mean``. Any defect raises ``FormatError``
naming the field and the value.

The shipped sample ``sim/data/recorded_sample.csv`` is synthetic (no model
weights can be fetched here): :func:`make_sample` runs a randomly initialised
Mixtral-style router (8 experts, top-2, softmax then renormalized over the top
2) on random hidden states for two layers, a prefill step of two prompts and
decode steps. Recreate it with ``python -m sim.recorded sample OUT.csv``.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import sys
from pathlib import Path

import numpy as np

from golden.errors import FormatError
from golden.trace.fileformat import NAME_RE, PREFIX

FORMATS = ("npz", "safetensors", "csv", "json")
PHASES = ("auto", "prefill", "decode")
OPTIONAL = ("step", "layer", "is_prefill", "request_id")
SAMPLE_PATH = Path(__file__).resolve().parent / "data" / "recorded_sample.csv"
SAMPLE_DIMS = dict(num_experts=8, top_k=2, hidden=4096, ffn=14336, num_shared=0)
_I32 = int(np.iinfo(np.int32).max)


def _bad(where, msg):
    return FormatError(f"{where}: {msg}")


# --------------------------------------------------------------------------- readers

def _read_arrays(arrays: dict, where: str) -> dict:
    extra = sorted(set(arrays) - {"expert_ids", "gate", "router_logits", *OPTIONAL})
    if extra:
        raise _bad(where, f"{extra[0]}: unknown array (expected expert_ids, gate or "
                          f"router_logits, and optionally {', '.join(OPTIONAL)})")
    return dict(arrays)


def _read_npz(path: Path, where: str) -> dict:
    import zipfile
    try:
        with np.load(path, allow_pickle=False) as z:
            if not hasattr(z, "files"):
                raise _bad(where, "not an .npz archive (a bare .npy array?)")
            return _read_arrays({n: z[n] for n in z.files}, where)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise _bad(where, f"cannot read as .npz (truncated, corrupt or pickled): {e}") from None


def _read_safetensors(path: Path, where: str) -> dict:
    try:
        from safetensors.numpy import load_file
    except ImportError:
        raise _bad(where, "reading .safetensors needs the safetensors package "
                          "(pip install safetensors); .npz, .csv and .json need only numpy") \
            from None
    try:
        return _read_arrays(load_file(str(path)), where)
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
        if isinstance(e, FormatError):
            raise
        raise _bad(where, f"cannot read as .safetensors: {e}") from None


def _matrix(rows, name: str, where: str, integer: bool) -> np.ndarray:
    """A JSON list of equal-length number lists -> 2-D array (ragged rows refused)."""
    if not isinstance(rows, list) or not rows:
        raise _bad(where, f"{name}: expected a non-empty list of per-token lists")
    width = None
    for t, r in enumerate(rows):
        if not isinstance(r, list):
            raise _bad(where, f"{name}[{t}]: expected a list, got {r!r}")
        if width is None:
            width = len(r)
        elif len(r) != width:
            raise _bad(where, f"{name}[{t}]: {len(r)} entries, but token 0 has {width} "
                              f"(ragged rows)")
        for j, v in enumerate(r):
            ok = isinstance(v, int) if integer else isinstance(v, (int, float))
            if not ok or isinstance(v, bool):
                raise _bad(where, f"{name}[{t}][{j}] = {v!r} is not "
                                  f"{'an integer' if integer else 'a number'}")
    return np.array(rows, dtype=np.int64 if integer else np.float64)


def _vector(vals, name: str, where: str) -> np.ndarray:
    if not isinstance(vals, list):
        raise _bad(where, f"{name}: expected a list, got {type(vals).__name__}")
    for t, v in enumerate(vals):
        if name == "is_prefill":
            if not (isinstance(v, bool) or v in (0, 1)):
                raise _bad(where, f"is_prefill[{t}] = {v!r} is not a bool or 0/1")
        elif not isinstance(v, int) or isinstance(v, bool):
            raise _bad(where, f"{name}[{t}] = {v!r} is not an integer")
    return np.array(vals, dtype=bool if name == "is_prefill" else np.int64)


def _read_json(path: Path, where: str) -> dict:
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise _bad(where, f"not valid JSON ({e})") from None
    if isinstance(doc, dict) and "tokens" in doc and "expert_ids" not in doc:
        doc = doc["tokens"]
    if isinstance(doc, list):            # one object per token -> columns
        cols: dict = {}
        for t, tok in enumerate(doc):
            if not isinstance(tok, dict):
                raise _bad(where, f"token {t}: expected an object, got {tok!r}")
            unknown = sorted(set(tok) - {"expert_ids", "gate", *OPTIONAL})
            if unknown:
                raise _bad(where, f"token {t}: unknown field {unknown[0]!r}")
            for key in ("expert_ids", "gate"):
                if key not in tok:
                    raise _bad(where, f"token {t}: {key} missing")
            if t and set(tok) != set(doc[0]):
                raise _bad(where, f"token {t}: fields {sorted(tok)} differ from token 0's "
                                  f"{sorted(doc[0])}")
            for key, v in tok.items():
                cols.setdefault(key, []).append(v)
        doc = cols
    if not isinstance(doc, dict):
        raise _bad(where, "expected an object of columns or a list of token objects")
    unknown = sorted(set(doc) - {"expert_ids", "gate", *OPTIONAL})
    if unknown:
        raise _bad(where, f"{unknown[0]}: unknown field")
    for key in ("expert_ids", "gate"):
        if key not in doc:
            raise _bad(where, f"{key}: missing")
    out = {"expert_ids": _matrix(doc["expert_ids"], "expert_ids", where, True),
           "gate": _matrix(doc["gate"], "gate", where, False)}
    for key in OPTIONAL:
        if key in doc:
            out[key] = _vector(doc[key], key, where)
    return out


def _parse_cell(text: str, col: str, line: int, where: str, kind: str):
    s = text.strip()
    try:
        if kind == "bool":
            v = {"0": False, "1": True, "false": False, "true": True}.get(s.lower())
            if v is None:
                raise ValueError
            return v
        return int(s) if kind == "int" else float(s)
    except ValueError:
        what = {"int": "an integer", "float": "a number", "bool": "0/1/true/false"}[kind]
        raise _bad(where, f"line {line}, {col}: {text!r} is not {what}") from None


def _read_csv(path: Path, where: str) -> dict:
    try:
        text = path.read_text()
    except UnicodeDecodeError as e:
        raise _bad(where, f"not a text file ({e})") from None
    rows = [(i + 1, r) for i, r in enumerate(csv.reader(io.StringIO(text))) if r]
    if len(rows) < 2:
        raise _bad(where, "expected a header row and at least one token row")
    _, header = rows[0]
    header = [h.strip() for h in header]
    if len(set(header)) != len(header):
        raise _bad(where, f"header: duplicate column in {header}")
    exp = sorted((int(h[7:]), h) for h in header if re.fullmatch(r"expert_\d+", h))
    gat = sorted((int(h[5:]), h) for h in header if re.fullmatch(r"gate_\d+", h))
    k = len(exp)
    for cols, stem in ((exp, "expert"), (gat, "gate")):
        if [i for i, _ in cols] != list(range(k)) or not cols:
            raise _bad(where, f"header: {stem} columns {[h for _, h in cols]}; expected "
                              f"expert_0..expert_{{k-1}} and gate_0..gate_{{k-1}}, the same k")
    unknown = [h for h in header
               if h not in {c for _, c in exp + gat} and h not in (*OPTIONAL, "token")]
    if unknown:
        raise _bad(where, f"header: unknown column {unknown[0]!r}")
    idx = {h: i for i, h in enumerate(header)}
    T = len(rows) - 1
    ids = np.empty((T, k), np.int64)
    gate = np.empty((T, k), np.float64)
    opt = {c: [] for c in OPTIONAL if c in idx}
    for t, (line, r) in enumerate(rows[1:]):
        if len(r) != len(header):
            raise _bad(where, f"line {line}: {len(r)} fields, the header has {len(header)} "
                              f"(ragged row)")
        for j in range(k):
            ids[t, j] = _parse_cell(r[idx[f"expert_{j}"]], f"expert_{j}", line, where, "int")
            gate[t, j] = _parse_cell(r[idx[f"gate_{j}"]], f"gate_{j}", line, where, "float")
        for c in opt:
            opt[c].append(_parse_cell(r[idx[c]], c, line, where,
                                      "bool" if c == "is_prefill" else "int"))
    out = {"expert_ids": ids, "gate": gate}
    out.update({c: np.array(v, dtype=bool if c == "is_prefill" else np.int64)
                for c, v in opt.items()})
    return out


_READERS = {"npz": _read_npz, "safetensors": _read_safetensors, "json": _read_json,
            "csv": _read_csv}


# --------------------------------------------------------------------------- import

def _from_logits(logits: np.ndarray, k: int, layer, where: str):
    if logits.dtype.kind != "f" or logits.ndim not in (2, 3):
        raise _bad(where, f"router_logits: expected a float T x E or L x T x E array, got "
                          f"{logits.dtype} {logits.shape}")
    if logits.ndim == 3:
        if layer is None and logits.shape[0] != 1:
            raise _bad(where, f"layer: router_logits holds {logits.shape[0]} layers; choose "
                              f"one (layer 0..{logits.shape[0] - 1})")
        li = 0 if layer is None else layer
        if not 0 <= li < logits.shape[0]:
            raise _bad(where, f"layer: {li} out of range 0..{logits.shape[0] - 1}")
        logits = logits[li]
    logits = logits.astype(np.float64)
    badv = np.argwhere(~np.isfinite(logits))
    if len(badv):
        t, e = badv[0]
        raise _bad(where, f"router_logits[{t}, {e}] = {logits[t, e]} is not finite")
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    ids = np.argsort(-p, axis=1, kind="stable")[:, :k]
    return ids, np.take_along_axis(p, ids, axis=1)


def _check_ints(a: np.ndarray, name: str, where: str, lo: int, hi: int):
    if a.dtype.kind not in "iu":
        raise _bad(where, f"{name}: expected integers, got dtype {a.dtype}")
    badv = np.argwhere((a < lo) | (a > hi))
    if len(badv):
        pos = tuple(int(i) for i in badv[0])
        ix = ", ".join(map(str, pos))
        raise _bad(where, f"{name}[{ix}] = {int(a[pos])} out of range {lo}..{hi}")
    return a.astype(np.int64)


def import_arrays(cols: dict, *, name: str, num_experts: int, top_k: int, hidden: int,
                  ffn: int, num_shared: int = 0, scale: int = 64, layer: int | None = None,
                  tokens_per_step: int | None = None, phase: str = "auto",
                  source: dict | None = None, where: str = "recorded"):
    """Columns as read from a dump (see the module docstring) -> validated Trace."""
    from golden import trace as traces
    for key, v, lo in (("num_experts", num_experts, 1), ("top_k", top_k, 1),
                       ("hidden", hidden, 1), ("ffn", ffn, 1), ("num_shared", num_shared, 0),
                       ("scale", scale, 1)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < lo:
            raise FormatError(f"{key}: expected an integer >= {lo}, got {v!r}")
    if top_k > num_experts:
        raise FormatError(f"top_k: {top_k} exceeds num_experts {num_experts}")
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise FormatError(f"name: {name!r} must be 1-64 of A-Z a-z 0-9 . _ - (starting "
                          f"with a letter or digit)")
    if phase not in PHASES:
        raise FormatError(f"phase: unknown {phase!r} (one of {', '.join(PHASES)})")
    if tokens_per_step is not None and (not isinstance(tokens_per_step, int)
                                        or tokens_per_step < 1):
        raise FormatError(f"tokens_per_step: expected an integer >= 1, got {tokens_per_step!r}")
    if layer is not None and (not isinstance(layer, int) or layer < 0):
        raise FormatError(f"layer: expected an integer >= 0, got {layer!r}")
    E, k = num_experts, top_k
    cols, layer_used = dict(cols), None
    if "router_logits" in cols:
        if "expert_ids" in cols or "gate" in cols:
            raise _bad(where, "router_logits: give either router_logits or expert_ids + gate")
        lg = cols.pop("router_logits")
        if lg.ndim == 3 and "layer" in cols:
            raise _bad(where, "layer: a layer array goes with 2-D router_logits only")
        if lg.ndim in (2, 3) and lg.shape[-1] != E:
            raise _bad(where, f"router_logits: {lg.shape[-1]} experts per row, expected "
                              f"num_experts {E}")
        ids, gate = _from_logits(lg, k, layer if "layer" not in cols else None, where)
        if lg.ndim == 3:
            layer_used, layer = (0 if layer is None else layer), None
        cols["expert_ids"], cols["gate"] = ids, gate
    for key in ("expert_ids", "gate"):
        if key not in cols:
            raise _bad(where, f"{key}: missing")
    ids, gate = np.asarray(cols["expert_ids"]), np.asarray(cols["gate"])
    if ids.ndim != 2 or ids.shape[0] == 0:
        raise _bad(where, f"expert_ids: expected a tokens x k array with >= 1 token, got "
                          f"shape {ids.shape}")
    if ids.shape[1] != k:
        raise _bad(where, f"expert_ids: {ids.shape[1]} experts per token, expected top_k {k}")
    T = ids.shape[0]
    if gate.shape != ids.shape:
        raise _bad(where, f"gate: shape {gate.shape}, expected {ids.shape} like expert_ids")
    ids = _check_ints(ids, "expert_ids", where, 0, E - 1)
    if gate.dtype.kind not in "fiu":
        raise _bad(where, f"gate: expected numbers, got dtype {gate.dtype}")
    gate = gate.astype(np.float64)
    badv = np.argwhere(~np.isfinite(gate) | (gate < 0))
    if len(badv):
        t, j = badv[0]
        raise _bad(where, f"gate[{t}, {j}] = {gate[t, j]} is not a finite number >= 0")
    opt = {}
    for key in OPTIONAL:
        if key in cols:
            a = np.asarray(cols[key])
            if a.shape != (T,):
                raise _bad(where, f"{key}: shape {a.shape}, expected ({T},) (one per token)")
            if key == "is_prefill":
                if a.dtype.kind != "b" and not (a.dtype.kind in "iu" and np.isin(a, (0, 1)).all()):
                    raise _bad(where, f"is_prefill: expected bools or 0/1, got {a.dtype} "
                                      f"{a[:4].tolist()}...")
                opt[key] = a.astype(bool)
            else:
                opt[key] = _check_ints(a, key, where, 0, _I32)
    if "layer" in opt:
        present = np.unique(opt["layer"])
        if layer is None and len(present) > 1:
            raise _bad(where, f"layer: the file holds layers {present.tolist()}; choose one")
        layer_used = int(present[0]) if layer is None else layer
        keep = opt.pop("layer") == layer_used
        if not keep.any():
            raise _bad(where, f"layer: {layer_used} not in the file (layers "
                              f"{present.tolist()})")
        ids, gate = ids[keep], gate[keep]
        opt = {c: v[keep] for c, v in opt.items()}
        T = len(ids)
    elif layer is not None and layer_used is None:
        raise _bad(where, f"layer: {layer} given, but the file has no layer column")
    srt = np.sort(ids, axis=1)
    dup = np.flatnonzero((srt[:, 1:] == srt[:, :-1]).any(axis=1))
    if len(dup):
        raise _bad(where, f"expert_ids[{dup[0]}] = {ids[dup[0]].tolist()}: duplicate expert")
    sums = gate.sum(axis=1)
    zero = np.flatnonzero(sums <= 0)
    if len(zero):
        raise _bad(where, f"gate[{zero[0]}] = {gate[zero[0]].tolist()}: the weights sum to 0")
    order = np.argsort(-gate, axis=1, kind="stable")
    ids = np.take_along_axis(ids, order, axis=1)
    gate = np.take_along_axis(gate, order, axis=1) / sums[:, None]

    # steps
    if "step" in opt:
        if tokens_per_step is not None:
            raise FormatError("tokens_per_step: the file has a step column; give one or the other")
        st = opt.pop("step")
        back = np.flatnonzero(np.diff(st) < 0)
        if len(back):
            i = int(back[0]) + 1
            raise _bad(where, f"step[{i}] = {int(st[i])} after {int(st[i - 1])}: tokens must "
                              f"be in step order")
        starts = np.flatnonzero(np.r_[True, np.diff(st) != 0])
    else:
        starts = np.arange(0, T, tokens_per_step or T)
    offsets = np.r_[starts, T].astype(np.int64)

    # phases and request ids
    if "is_prefill" in opt:
        if phase != "auto":
            raise FormatError(f"phase: {phase!r} given, but the file has an is_prefill column")
        pre = opt["is_prefill"]
    elif phase != "auto":
        pre = np.full(T, phase == "prefill")
    else:
        pre = np.zeros(T, bool)
        for a, b in zip(offsets[:-1], offsets[1:]):
            if "request_id" in opt:
                r = opt["request_id"][a:b]
                u, n = np.unique(r, return_counts=True)
                pre[a:b] = np.isin(r, u[n > 1])
            else:
                pre[a:b] = b - a > 1
    if "request_id" in opt:
        rid = opt["request_id"]
    else:
        rid, nxt = np.empty(T, np.int64), 0
        for a, b in zip(offsets[:-1], offsets[1:]):
            p = pre[a:b]
            if p.any():
                rid[a:b][p] = nxt
                nxt += 1
            nd = int((~p).sum())
            rid[a:b][~p] = np.arange(nxt, nxt + nd)
            nxt += nd

    full = dict(hidden=int(hidden), ffn=int(ffn))
    gen = dict(source=dict(source or {}, layer=layer_used), model=full,
               gate_sum_mean=round(float(sums.mean()), 6))
    meta = dict(schema_version=traces.SCHEMA_VERSION, preset=PREFIX + name, scale=int(scale),
                expert_scale=1, skew="recorded", skew_param=0.0, seed=0, num_experts=int(E),
                num_shared=int(num_shared), top_k=int(k),
                hidden=traces.scaled_dim(hidden, scale), ffn=traces.scaled_dim(ffn, scale),
                steps=len(offsets) - 1, gen=gen)
    data = dict(meta=np.array(json.dumps(meta)), step_offsets=offsets,
                expert_ids=ids.astype(np.int16), gate=gate.astype(np.float32),
                gate_q=traces.quantize_gate(gate), is_prefill=pre,
                request_id=rid.astype(np.int32))
    return traces.from_arrays(data, where)


def import_routing(path, *, fmt: str | None = None, name: str | None = None, **dims):
    """Read a recorded dump (format from ``fmt`` or the file suffix) -> validated Trace.

    ``dims``: ``num_experts``, ``top_k``, ``hidden``, ``ffn`` (required), ``num_shared``,
    ``scale``, ``layer``, ``tokens_per_step``, ``phase`` as in :func:`import_arrays`.
    ``name`` defaults to the file's stem (characters outside A-Z a-z 0-9 . _ - become -).
    """
    path = Path(path)
    where = str(path)
    fmt = fmt or path.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise FormatError(f"format: {fmt!r} unknown for {path.name} (one of "
                          f"{', '.join(FORMATS)}; give it explicitly)")
    if not path.is_file():
        raise FormatError(f"{path}: no such file")
    raw = path.read_bytes()
    cols = _READERS[fmt](path, where)
    if name is None:
        name = re.sub(r"[^A-Za-z0-9._-]", "-", path.stem).lstrip("._-")[:64] or "trace"
    source = dict(file=path.name, sha256=hashlib.sha256(raw).hexdigest(), format=fmt,
                  tokens_in_file=int(cols["router_logits"].shape[-2] if "router_logits" in cols
                                     else len(cols.get("expert_ids", ()))))
    return import_arrays(cols, name=name, source=source, where=where, **dims)


# --------------------------------------------------------------------------- sample

def make_sample() -> str:
    """The shipped synthetic sample (CSV text): see the module docstring."""
    rng = np.random.default_rng(2024)
    E, k, d, layers = 8, 2, 32, 2
    routers = rng.normal(size=(layers, E, d)) / np.sqrt(d)
    # step 0: prompts of 12 and 8 tokens (requests 0, 1); steps 1..6: both decode
    toks = [(0, 0, True)] * 12 + [(0, 1, True)] * 8
    toks += [(s, r, False) for s in range(1, 7) for r in (0, 1)]
    h = rng.normal(size=(len(toks), d))
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["layer", "step", "request_id", "is_prefill", "expert_0", "expert_1",
                "gate_0", "gate_1"])
    for li in range(layers):
        logits = h @ routers[li].T
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        top = np.argsort(-p, axis=1, kind="stable")[:, :k]
        g = np.take_along_axis(p, top, axis=1)
        g /= g.sum(axis=1, keepdims=True)
        for (s, r, pre), e, gg in zip(toks, top, g):
            w.writerow([li, s, r, int(pre), *map(int, e), *(f"{x:.6f}" for x in gg)])
    return out.getvalue()


def main(argv=None) -> int:
    import argparse
    ap = argparse.ArgumentParser(prog="python -m sim.recorded",
                                 description="Write the synthetic recorded-routing sample.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sample", help="write the sample CSV (sim/data/recorded_sample.csv)")
    s.add_argument("output", help="output .csv path (refused if it exists)")
    args = ap.parse_args(argv)
    out = Path(args.output)
    if out.exists():
        print(f"error: {out} exists; not overwritten", file=sys.stderr)
        return 2
    out.write_text(make_sample())
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
