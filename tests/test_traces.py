"""Routing traces: generation statistics (golden.trace), .npz round trip, loader errors,
the CLI (python -m sim.traces)."""
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from golden import trace as T
from golden.errors import FormatError
from sim import traces as cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def small():
    return T.generate("mixtral-8x7b", steps=24, seed=3, skew="hot", skew_param=1.5)


def _arrays(trace):
    return {"meta": np.array(json.dumps(trace.meta())),
            **{a: getattr(trace, a) for a in T.Trace.ARRAYS}}


def _write(path, arrays):
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


# --------------------------------------------------------------------------- generation

def test_deterministic_by_seed():
    a = T.generate("deepseek-moe-16b", steps=8, seed=7, skew="zipf")
    b = T.generate("deepseek-moe-16b", steps=8, seed=7, skew="zipf")
    c = T.generate("deepseek-moe-16b", steps=8, seed=8, skew="zipf")
    assert a == b
    assert a != c


@pytest.mark.parametrize("preset", list(T.PRESETS))
@pytest.mark.parametrize("skew", T.SKEWS)
def test_every_preset_generates_valid_traces(preset, skew, tmp_path):
    p = T.PRESETS[preset]
    tr = T.generate(preset, steps=6, seed=1, skew=skew)
    assert (tr.num_experts, tr.num_shared, tr.top_k) == (p.num_experts, p.num_shared, p.top_k)
    assert tr.hidden % 16 == 0 and tr.ffn % 16 == 0 and min(tr.hidden, tr.ffn) >= 16
    assert tr.steps == 6 and tr.step_offsets[-1] == tr.tokens
    assert tr.expert_ids.dtype == np.int16 and tr.gate.dtype == np.float32
    assert tr.gate_q.dtype == np.int8 and tr.request_id.dtype == np.int32
    T.save(tr, tmp_path / "t.npz")
    assert T.load(tmp_path / "t.npz") == tr          # load() runs every validation


def test_round_trip(small, tmp_path):
    T.save(small, tmp_path / "a.npz")
    back = T.load(tmp_path / "a.npz")
    assert back == small
    assert back.gen == small.gen and back.skew_param == small.skew_param


def test_scaled_dims():
    assert T.PRESETS["mixtral-8x7b"].dims(64) == (64, 224)
    assert T.PRESETS["deepseek-v3"].dims(64) == (112, 32)
    assert T.PRESETS["qwen3-30b-a3b"].dims(64) == (32, 16)    # 12 -> at least 16
    assert T.PRESETS["mixtral-8x7b"].dims(1) == (4096, 14336)
    tr = T.generate("deepseek-v3", steps=2, seed=0, scale=1, expert_scale=16)
    assert (tr.hidden, tr.ffn, tr.num_experts) == (7168, 2048, 16)


def test_topk_distinct_and_gates(small):
    ids = np.sort(small.expert_ids, axis=1)
    assert (ids[:, 1:] != ids[:, :-1]).all()
    assert np.allclose(small.gate.sum(axis=1), 1, atol=1e-5)
    assert (np.diff(small.gate, axis=1) <= 0).all()                  # column 0 = top-1
    assert (small.gate_q >= 0).all() and (small.gate_q.astype(int).sum(axis=1) == 127).all()
    assert np.abs(small.gate_q - 127 * small.gate.astype(np.float64)).max() < 1


def test_step_api(small):
    for st in small:
        tpe = st.tokens_per_expert()
        assert tpe.shape == (small.num_experts,) and tpe.sum() == st.tokens * small.top_k
        for e in range(small.num_experts):
            sel = st.sel(e)
            assert sel.dtype == np.int64 and len(sel) == tpe[e]
            assert (np.diff(sel) > 0).all()
            assert np.array_equal(st.gates_for(e), st.gate_q[st.expert_ids == e])
        assert st.is_decode_only == (not st.is_prefill.any())
        # decode tokens first, one per request; each prompt contiguous and unique to the step
        npre = int(st.is_prefill.sum())
        assert not st.is_prefill[:st.tokens - npre].any()
        dec = st.request_id[~st.is_prefill]
        assert len(dec) == small.gen["decode"] == len(set(dec.tolist()))
        assert not set(dec.tolist()) & set(st.request_id[st.is_prefill].tolist())
    with pytest.raises(FormatError, match="expert"):
        small.step(0).sel(small.num_experts)
    assert any(st.is_decode_only for st in small) and not all(st.is_decode_only for st in small)


def test_prefilled_requests_decode_later():
    tr = T.generate("mixtral-8x7b", steps=60, seed=2, decode=4, prefill=0.5, gen_len=(2, 4))
    prefilled = set(tr.request_id[tr.is_prefill].tolist())
    decoded = set(tr.request_id[~tr.is_prefill].tolist())
    assert len(prefilled & decoded) > 5


# --------------------------------------------------------------------------- skew

def test_hot_calibration_deepseek_v3():
    tr = T.generate("deepseek-v3", steps=24, seed=5, skew="hot", skew_param=11,
                    decode=512, prefill=0)
    assert tr.skew_param == 11
    assert abs(tr.imbalances().mean() - 11) <= 0.2 * 11


def test_hot_calibration_other_target():
    tr = T.generate("qwen3-30b-a3b", steps=16, seed=1, skew="hot", skew_param=4,
                    decode=128, prefill=2, prompt_len=(32, 64))
    assert abs(tr.imbalances().mean() - 4) <= 0.2 * 4


def test_hot_experts_persist():
    tr = T.generate("deepseek-v3", steps=40, seed=4, skew="hot", skew_param=11,
                    decode=256, prefill=0, hot_experts=1)
    top = [int(st.tokens_per_expert().argmax()) for st in tr]
    changes = sum(a != b for a, b in zip(top, top[1:]))
    assert changes <= 6                 # dwell is 10..100 steps


def test_hot_target_clamped_with_warning():
    with pytest.warns(UserWarning, match="E/k-1"):
        tr = T.generate("mixtral-8x7b", steps=4, seed=0, skew="hot", skew_param=11)
    assert tr.skew_param == 3.0


def test_hot_default_target_is_r1_fraction():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tr = T.generate("deepseek-v3", steps=1, seed=0, skew="hot", decode=64, prefill=0)
    assert tr.skew_param == pytest.approx(11)


def test_uniform_small_and_zipf_grows():
    kw = dict(steps=8, seed=0, decode=512, prefill=0)
    uni = T.generate("mixtral-8x7b", skew="uniform", **kw).imbalances().mean()
    z1 = T.generate("mixtral-8x7b", skew="zipf", skew_param=1, **kw).imbalances().mean()
    z2 = T.generate("mixtral-8x7b", skew="zipf", skew_param=2, **kw).imbalances().mean()
    assert uni < 0.2 < z1 < z2


@pytest.mark.parametrize("kw", [dict(steps=0), dict(scale=0), dict(skew="nope"),
                                dict(skew="hot", hot_experts=3), dict(decode=0, prefill=0),
                                dict(prompt_len=(5, 2)), dict(skew_param=-1.0)])
def test_generate_rejects_bad_arguments(kw):
    with pytest.raises(ValueError):
        T.generate("mixtral-8x7b", **{"steps": 2, **kw})


# --------------------------------------------------------------------------- loader errors

def _corrupt(small, meta=None, drop=(), **arrays):
    """The arrays of ``small`` with meta keys changed/dropped and arrays replaced/removed."""
    a = _arrays(small)
    m = {**small.meta(), **(meta or {})}
    for key in drop:
        m.pop(key)
    a["meta"] = np.array(json.dumps(m))
    a.update(arrays)
    return {k: v for k, v in a.items() if v is not None}


def _cases(small):
    off = small.step_offsets.copy()
    off[3], off[4] = off[4], off[3]
    short = small.step_offsets.copy()
    short[-1] -= 1
    ids_hi, ids_neg, dup = (small.expert_ids.copy() for _ in range(3))
    ids_hi[7, 1], ids_neg[2, 0], dup[9, 1] = 8, -1, dup[9, 0]
    gq = small.gate_q.copy()
    gq[5, 1] = -3
    return {  # case: (arrays, text the message must contain)
        "meta_missing": (_corrupt(small, meta=None) | {"meta": None}, "meta: missing"),
        "meta_not_json": (_corrupt(small) | {"meta": np.array("{oops")}, "meta"),
        "schema": (_corrupt(small, {"schema_version": 2}), "schema_version"),
        "preset": (_corrupt(small, {"preset": "gpt-5"}), "preset"),
        "dims": (_corrupt(small, {"hidden": 63}), "hidden"),
        "steps_missing": (_corrupt(small, drop=["steps"]), "steps"),
        "array_missing": (_corrupt(small, gate_q=None), "gate_q"),
        "shape": (_corrupt(small, gate=small.gate[:-1]), "gate"),
        "offsets_monotone": (_corrupt(small, step_offsets=off), "step_offsets"),
        "offsets_total": (_corrupt(small, step_offsets=short), "step_offsets[-1]"),
        "expert_high": (_corrupt(small, expert_ids=ids_hi), "expert_ids[7, 1] = 8"),
        "expert_neg": (_corrupt(small, expert_ids=ids_neg), "expert_ids[2, 0] = -1"),
        "duplicate": (_corrupt(small, expert_ids=dup), "expert_ids[9]"),
        "gate_q": (_corrupt(small, gate_q=gq), "gate_q[5, 1] = -3"),
        "gate_dtype": (_corrupt(small, gate=small.gate_q), "gate"),
    }


CASES = ["meta_missing", "meta_not_json", "schema", "preset", "dims", "steps_missing",
         "array_missing", "shape", "offsets_monotone", "offsets_total", "expert_high",
         "expert_neg", "duplicate", "gate_q", "gate_dtype"]


@pytest.mark.parametrize("case", CASES)
def test_loader_errors_name_the_field(small, tmp_path, case):
    arrays, text = _cases(small)[case]
    path = _write(tmp_path / f"{case}.npz", {k: v for k, v in arrays.items() if v is not None})
    with pytest.raises(FormatError) as ei:
        T.load(path)
    assert text in str(ei.value)


def test_loader_file_level_errors(small, tmp_path):
    good = tmp_path / "good.npz"
    T.save(small, good)
    raw = good.read_bytes()
    (tmp_path / "trunc.npz").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "random.npz").write_bytes(np.random.default_rng(0).bytes(4096))
    np.save(tmp_path / "bare.npy", np.arange(4))
    np.savez(tmp_path / "pickled.npz", meta=np.array([{"a": 1}], dtype=object))
    for name, why in [("missing.npz", "no such"), ("trunc.npz", "cannot read"),
                      ("random.npz", "cannot read"), ("bare.npy", "not an .npz"),
                      ("pickled.npz", "pickled")]:
        with pytest.raises(FormatError, match=why):
            T.load(tmp_path / name)


# --------------------------------------------------------------------------- CLI, default

def test_cli_gen_show(tmp_path, capsys):
    out = tmp_path / "t.npz"
    assert cli.main(["gen", "--preset", "qwen2-moe", "--steps", "5", "--seed", "1",
                   "--imbalance", "3", "-o", str(out)]) == 0
    tr = T.load(out)
    assert (tr.preset, tr.skew, tr.skew_param, tr.steps) == ("qwen2-moe", "hot", 3.0, 5)
    capsys.readouterr()
    assert cli.main(["show", str(out)]) == 0
    text = capsys.readouterr().out
    for s in ("qwen2-moe", "60 routed + 4 shared, top-4", "per-expert load", "mean imbalance"):
        assert s in text


def test_cli_errors(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 definitely not a zip")
    assert cli.main(["show", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and "bad.npz" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as ei:
        cli.main(["gen", "--preset", "nope", "-o", str(tmp_path / "x.npz")])
    assert ei.value.code == 2
    with pytest.raises(SystemExit) as ei:
        cli.main(["gen", "--preset", "mixtral-8x7b", "--skew", "hot", "--hot-experts", "9",
                "-o", str(tmp_path / "x.npz")])
    assert ei.value.code == 2 and "hot_experts" in capsys.readouterr().err


def test_cli_as_module(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (os.environ.get("PYTHONPATH"), str(ROOT)) if p)}
    run = lambda *a: subprocess.run([sys.executable, "-m", "sim.traces", *a], cwd=tmp_path,  # noqa: E731
                                    env=env, capture_output=True, text=True, timeout=60)
    assert "--imbalance" in run("gen", "--help").stdout
    r = run("show", "missing.npz")
    assert r.returncode == 1 and "no such trace file" in r.stderr and "Traceback" not in r.stderr


def test_default_trace_ships_and_reproduces():
    tr = T.load_default()
    assert T.DEFAULT_PATH.stat().st_size < 50_000
    assert (tr.preset, tr.scale, tr.hidden, tr.ffn) == ("mixtral-8x7b", 64, 64, 224)
    g = tr.gen
    again = T.generate(tr.preset, tr.steps, tr.seed, scale=tr.scale, skew=tr.skew,
                       skew_param=1.5, decode=g["decode"], prefill=g["prefill"],
                       prompt_len=tuple(g["prompt_len"]), gen_len=tuple(g["gen_len"]),
                       hot_experts=g["hot_experts"])
    assert again == tr        # the command in golden/trace/fileformat.py made this file


# --------------------------------------------------------------------------- hardening

def test_loader_refuses_zero_steps(small, tmp_path):
    k = small.top_k
    arrays = _corrupt(small, {"steps": 0}, step_offsets=np.zeros(1, np.int64),
                      expert_ids=np.zeros((0, k), np.int16), gate=np.zeros((0, k), np.float32),
                      gate_q=np.zeros((0, k), np.int8), is_prefill=np.zeros(0, bool),
                      request_id=np.zeros(0, np.int32))
    with pytest.raises(FormatError, match="meta.steps: 0"):
        T.load(_write(tmp_path / "zero.npz", arrays))


def test_loader_refuses_gate_q_rows_not_summing_to_127(small, tmp_path):
    gq = small.gate_q.copy()
    gq[4, 0] -= 1                                 # still in 0..127, the row sums to 126
    assert 0 <= gq[4, 0] <= 127
    with pytest.raises(FormatError) as ei:
        T.load(_write(tmp_path / "sum.npz", _corrupt(small, gate_q=gq)))
    assert "gate_q[4]" in str(ei.value) and "sums to 126" in str(ei.value)


@pytest.mark.parametrize("name", ["step_offsets", "expert_ids", "gate_q", "request_id"])
def test_loader_prints_huge_unsigned_values_as_stored(small, tmp_path, name):
    """A uint64 2**63 + 1 is reported as 9223372036854775809, not as a negative number."""
    big = 2 ** 63 + 1
    a = getattr(small, name).astype(np.uint64)
    a[(1,) * a.ndim] = big
    with pytest.raises(FormatError) as ei:
        T.load(_write(tmp_path / f"{name}.npz", _corrupt(small, **{name: a})))
    msg = str(ei.value)
    assert name in msg and str(big) in msg and "-9223372036854775807" not in msg


@pytest.mark.parametrize("argv, text", [
    (["--skew-param", "2"], "--skew-param"),
    (["--skew", "uniform", "--skew-param", "0.5"], "--skew-param"),
    (["--skew", "zipf", "--hot-experts", "1"], "--hot-experts"),
    (["--hot-experts", "1"], "--hot-experts"),
])
def test_cli_gen_refuses_parameters_the_skew_ignores(argv, text, tmp_path, capsys):
    out = tmp_path / "t.npz"
    with pytest.raises(SystemExit) as ei:
        cli.main(["gen", "--preset", "mixtral-8x7b", "--steps", "2", *argv, "-o", str(out)])
    assert ei.value.code == 2 and text in capsys.readouterr().err and not out.exists()
    assert cli.main(["gen", "--preset", "mixtral-8x7b", "--steps", "2", "--skew", "hot",
                   "--hot-experts", "1", "--skew-param", "1", "-o", str(out)]) == 0


@pytest.mark.parametrize("kw", [dict(skew="zipf", hot_experts=1), dict(skew_param=0.5),
                                dict(skew="uniform", hot_experts=1)])
def test_generate_refuses_parameters_the_skew_ignores(kw):
    with pytest.raises(ValueError, match="hot_experts|skew_param"):
        T.generate("mixtral-8x7b", steps=2, **kw)
