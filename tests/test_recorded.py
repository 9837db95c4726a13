"""Recorded routing (sim.recorded, python -m sim.traces import): every accepted layout
gives the same trace, the loader accepts recorded:<name> traces and checks their
provenance, and every defect of a dump is refused naming the field and the value."""
import csv
import hashlib
import importlib.util
import io
import json
import sys

import numpy as np
import pytest

from golden.errors import FormatError
from sim import recorded as R
from golden import trace as T
from sim import traces as traces_cli

DIMS = dict(num_experts=8, top_k=2, hidden=4096, ffn=14336)


def sample_rows(layer=0):
    rows = list(csv.DictReader(io.StringIO(R.SAMPLE_PATH.read_text())))
    return [r for r in rows if int(r["layer"]) == layer]


def columns(layer=0):
    rows = sample_rows(layer)
    return dict(expert_ids=np.array([[int(r["expert_0"]), int(r["expert_1"])] for r in rows]),
                gate=np.array([[float(r["gate_0"]), float(r["gate_1"])] for r in rows]),
                step=np.array([int(r["step"]) for r in rows]),
                request_id=np.array([int(r["request_id"]) for r in rows]),
                is_prefill=np.array([r["is_prefill"] == "1" for r in rows]))


def same_routing(a, b):
    ma, mb = json.loads(json.dumps(a.meta())), json.loads(json.dumps(b.meta()))
    ma["gen"].pop("source"), mb["gen"].pop("source")
    return ma == mb and all(np.array_equal(getattr(a, n), getattr(b, n)) for n in T.Trace.ARRAYS)


def test_sample_is_reproducible():
    assert R.make_sample() == R.SAMPLE_PATH.read_text()
    assert R.SAMPLE_PATH.stat().st_size < 4096


def test_import_sample(tmp_path):
    tr = R.import_routing(R.SAMPLE_PATH, name="sample", layer=1, **DIMS)
    c = columns(1)
    assert tr.preset == "recorded:sample" and tr.skew == "recorded" and tr.scale == 64
    assert (tr.hidden, tr.ffn, tr.num_experts, tr.top_k) == (64, 224, 8, 2)
    assert tr.steps == 7 and tr.tokens == 32
    assert tr.step_offsets.tolist() == [0, 20] + list(range(22, 33, 2))
    np.testing.assert_array_equal(tr.expert_ids, c["expert_ids"])    # sample gates descend
    np.testing.assert_allclose(tr.gate, c["gate"], atol=1e-6)
    assert (tr.gate_q.astype(int).sum(axis=1) == 127).all()
    assert np.abs(tr.gate_q - 127 * tr.gate).max() < 1
    np.testing.assert_array_equal(tr.is_prefill, c["is_prefill"])
    np.testing.assert_array_equal(tr.request_id, c["request_id"])
    src = tr.gen["source"]
    assert src == dict(file="recorded_sample.csv", format="csv", tokens_in_file=64, layer=1,
                       sha256=hashlib.sha256(R.SAMPLE_PATH.read_bytes()).hexdigest())
    assert tr.gen["model"] == dict(hidden=4096, ffn=14336)
    T.save(tr, tmp_path / "t.npz")
    assert T.load(tmp_path / "t.npz") == tr
    # the trace drives the engines' models like a generated one
    from golden import schedule as S
    from sim.bench import moe
    r = S.run_trace(tr, policy=S.Policy("dropless"), dispatch="duplex_coprocess",
                    model=moe.model_for("mixtral-8x7b", tr))
    assert r["routed"] == 64 and r["dropped_tokens"] == 0 and r["cycles"] > 0


def test_every_layout_gives_the_same_trace(tmp_path):
    ref = R.import_routing(R.SAMPLE_PATH, name="s", layer=0, **DIMS)
    c = columns(0)
    np.savez(tmp_path / "a.npz", **c)
    lists = {k: v.tolist() for k, v in c.items()}
    (tmp_path / "b.json").write_text(json.dumps(lists))
    tokens = [dict(zip(lists, vals)) for vals in zip(*lists.values())]
    (tmp_path / "c.json").write_text(json.dumps(tokens))
    (tmp_path / "d.json").write_text(json.dumps({"tokens": tokens}))
    paths = ["a.npz", "b.json", "c.json", "d.json"]
    try:                     # the sim extra installs safetensors; numpy-only installs
        from safetensors.numpy import save_file      # get the error tested below
        save_file({k: np.ascontiguousarray(v) for k, v in c.items()},
                  str(tmp_path / "e.safetensors"))
        paths.append("e.safetensors")
    except ImportError:
        pass
    for p in paths:
        assert same_routing(R.import_routing(tmp_path / p, name="s", **DIMS), ref), p
    # router logits (tokens x experts, or layers x tokens x experts): softmax, then top-k
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(2, 5, 8)).astype(np.float32)
    np.savez(tmp_path / "l.npz", router_logits=logits)
    tr = R.import_routing(tmp_path / "l.npz", layer=1, phase="decode", **DIMS)
    p = np.exp(logits[1].astype(np.float64))
    p /= p.sum(axis=1, keepdims=True)
    top = np.argsort(-p, axis=1)[:, :2]
    np.testing.assert_array_equal(tr.expert_ids, top)
    g = np.take_along_axis(p, top, axis=1)
    np.testing.assert_allclose(tr.gate, g / g.sum(axis=1, keepdims=True), rtol=1e-6)
    assert tr.gen["source"]["layer"] == 1 and tr.gen["source"]["tokens_in_file"] == 5
    assert not tr.is_prefill.any()
    assert len(set(tr.request_id.tolist())) == 5


def test_safetensors_missing_or_corrupt(tmp_path, monkeypatch):
    f = tmp_path / "x.safetensors"
    f.write_bytes(b"not a safetensors file")
    if "safetensors" in sys.modules or importlib.util.find_spec("safetensors"):
        with pytest.raises(FormatError, match="cannot read as .safetensors"):
            R.import_routing(f, **DIMS)
    monkeypatch.setitem(sys.modules, "safetensors.numpy", None)   # as if not installed
    with pytest.raises(FormatError, match=r"needs the safetensors package \(pip install "):
        R.import_routing(f, **DIMS)


def test_defaults_without_step_and_phase(tmp_path):
    f = tmp_path / "r.csv"
    f.write_text("expert_0,expert_1,gate_0,gate_1\n" + "1,2,0.25,0.5\n" * 4 + "3,4,0.6,0.4\n")
    tr = R.import_routing(f, tokens_per_step=4, **DIMS)
    assert tr.step_offsets.tolist() == [0, 4, 5]
    assert tr.expert_ids[0].tolist() == [2, 1]                 # sorted by gate, descending
    np.testing.assert_allclose(tr.gate[0], [2 / 3, 1 / 3], rtol=1e-6)
    assert tr.gen["gate_sum_mean"] == round((0.75 * 4 + 1) / 5, 6)
    assert tr.is_prefill.tolist() == [True] * 4 + [False]      # auto: 4 tokens, one request
    assert tr.request_id.tolist() == [0, 0, 0, 0, 1]
    assert R.import_routing(f, phase="decode", **DIMS).request_id.tolist() == [0, 1, 2, 3, 4]
    assert tr.preset == "recorded:r"


HEAD = "step,expert_0,expert_1,gate_0,gate_1\n"
BAD = [  # (file name, text, dims override, message)
    ("k.csv", "expert_0,expert_1,expert_2,gate_0,gate_1,gate_2\n1,2,3,0.5,0.3,0.2\n", {},
     "expert_ids: 3 experts per token, expected top_k 2"),
    ("e.csv", HEAD + "0,1,8,0.5,0.5\n", {}, "expert_ids[0, 1] = 8 out of range 0..7"),
    ("n.csv", HEAD + "0,1,2,0.5,0.5\n0,1,2,0.5,nan\n", {}, "gate[1, 1] = nan is not a finite"),
    ("g.csv", HEAD + "0,1,2,-0.5,0.5\n", {}, "gate[0, 0] = -0.5"),
    ("z.csv", HEAD + "0,1,2,0,0\n", {}, "gate[0] = [0.0, 0.0]: the weights sum to 0"),
    ("r.csv", HEAD + "0,1,2,0.5,0.5\n0,1,2,0.5\n", {}, "line 3: 4 fields, the header has 5"),
    ("d.csv", HEAD + "0,3,3,0.5,0.5\n", {}, "expert_ids[0] = [3, 3]: duplicate expert"),
    ("s.csv", HEAD + "1,1,2,0.5,0.5\n0,1,2,0.5,0.5\n", {}, "step[1] = 0 after 1"),
    ("x.csv", HEAD + "0,one,2,0.5,0.5\n", {}, "line 2, expert_0: 'one' is not an integer"),
    ("u.csv", "expert_0,expert_1,gate_0,gate_1,tok\n1,2,0.5,0.5,0\n", {},
     "header: unknown column 'tok'"),
    ("l.csv", "layer,expert_0,expert_1,gate_0,gate_1\n0,1,2,.5,.5\n1,1,2,.5,.5\n", {},
     "layer: the file holds layers [0, 1]; choose one"),
    ("m.csv", "layer,expert_0,expert_1,gate_0,gate_1\n0,1,2,.5,.5\n", {"layer": 3},
     "layer: 3 not in the file"),
    ("i.json", '{"expert_ids": [[1, 2], [1, 2, 3]], "gate": [[0.5, 0.5], [0.5, 0.5]]}', {},
     "expert_ids[1]: 3 entries, but token 0 has 2 (ragged rows)"),
    ("f.json", '{"expert_ids": [[1, 2]], "gate": [[0.5, Infinity]]}', {},
     "gate[0, 1] = inf is not a finite"),
    ("b.json", '[{"expert_ids": [1, true], "gate": [0.5, 0.5]}]', {},
     "expert_ids[0][1] = True is not an integer"),
    ("t.json", '[{"expert_ids": [1, 2], "gate": [0.5, 0.5], "stp": 0}]', {},
     "token 0: unknown field 'stp'"),
    ("q.json", '{"expert_ids": [[1, 2]]}', {}, "gate: missing"),
    ("k.json", '{"expert_ids": [[1, 2]], "gate": [[0.5, 0.5]]}', {"top_k": 3},
     "expert_ids: 2 experts per token, expected top_k 3"),
    ("p.json", '{"expert_ids": [[1, 2]], "gate": [[0.5, 0.5]], "is_prefill": [1]}',
     {"phase": "decode"}, "phase: 'decode' given, but the file has an is_prefill column"),
    ("y.txt", "", {}, "format: 'txt' unknown"),
]


@pytest.mark.parametrize("name, text, over, msg", BAD, ids=[b[0] for b in BAD])
def test_bad_dumps_name_the_field(tmp_path, name, text, over, msg):
    f = tmp_path / name
    f.write_text(text)
    with pytest.raises(FormatError) as e:
        R.import_routing(f, **{**DIMS, **over})
    assert msg in str(e.value)


def test_bad_arrays_and_dims(tmp_path):
    ok = dict(expert_ids=np.array([[0, 1]]), gate=np.array([[0.6, 0.4]]))
    for arrays, msg in (
            (dict(ok, extra=np.zeros(1)), "extra: unknown array"),
            (dict(ok, gate=np.array([["a", "b"]])), "gate: expected numbers"),
            (dict(ok, expert_ids=np.array([[0.0, 1.0]])), "expert_ids: expected integers"),
            (dict(ok, step=np.array([0, 0])), "step: shape (2,), expected (1,)"),
            (dict(router_logits=np.zeros((2, 7), np.float32)), "router_logits: 7 experts"),
            (dict(router_logits=np.zeros((2, 3, 8), np.float32)), "layer: router_logits holds 2"),
            (dict(object=np.array([{}], dtype=object)), "cannot read as .npz")):
        np.savez(tmp_path / "a.npz", **arrays)
        with pytest.raises(FormatError) as e:
            R.import_routing(tmp_path / "a.npz", **DIMS)
        assert msg in str(e.value), (msg, str(e.value))
    np.savez(tmp_path / "a.npz", **ok)
    for over, msg in (({"top_k": 9}, "top_k: 9 exceeds num_experts 8"),
                      ({"hidden": 0}, "hidden: expected an integer >= 1, got 0"),
                      ({"name": "a b"}, "name: 'a b'"),
                      ({"layer": 0}, "layer: 0 given, but the file has no layer column")):
        with pytest.raises(FormatError) as e:
            R.import_routing(tmp_path / "a.npz", **{**DIMS, **over})
        assert msg in str(e.value)


def _tamper(tr, path, **changes):
    arrays = {a: getattr(tr, a) for a in T.Trace.ARRAYS}
    meta = tr.meta()
    for key, v in changes.items():
        if key.startswith("gen."):
            meta["gen"][key[4:]] = v
        else:
            meta[key] = v
    np.savez(path, meta=np.array(json.dumps(meta)), **arrays)


@pytest.mark.parametrize("changes, msg", [
    (dict(hidden=128), "meta.hidden: 128 does not match the model's 4096 at scale 64"),
    (dict(scale=32), "meta.hidden: 64 does not match the model's 4096 at scale 32"),
    (dict(skew="hot"), "meta.skew: a recorded trace has skew 'recorded'"),
    (dict(preset="recorded:a b"), "meta.preset: 'recorded:a b'"),
    ({"gen.source": {"file": "x.csv"}}, "meta.gen.source: expected the recorded file"),
    ({"gen.model": {"hidden": 4096}}, "meta.gen.model.ffn"),
    (dict(top_k=9), "meta.top_k: 9 not in 1..num_experts 8"),
    (dict(preset="recordedx"), "meta.preset: unknown 'recordedx'"),
])
def test_loader_checks_recorded_meta(tmp_path, changes, msg):
    tr = R.import_routing(R.SAMPLE_PATH, layer=0, **DIMS)
    _tamper(tr, tmp_path / "t.npz", **changes)
    with pytest.raises(FormatError) as e:
        T.load(tmp_path / "t.npz")
    assert msg in str(e.value)


def test_cli_import(tmp_path, capsys):
    out = tmp_path / "r.npz"
    argv = ["import", str(R.SAMPLE_PATH), "--layer", "0", "--experts", "8", "--top-k", "2",
            "--hidden", "4096", "--ffn", "14336", "--scale", "128", "--name", "mix",
            "-o", str(out)]
    assert traces_cli.main(argv) == 0
    assert "recorded:mix" in capsys.readouterr().out
    tr = T.load(out)
    assert (tr.preset, tr.scale, tr.hidden, tr.ffn) == ("recorded:mix", 128, 32, 112)
    assert traces_cli.main(["show", str(out)]) == 0
    assert "recorded from recorded_sample.csv, layer 0" in capsys.readouterr().out
    before = out.read_bytes()
    assert traces_cli.main(argv) == 2 and "exists" in capsys.readouterr().err
    assert out.read_bytes() == before
    bad = tmp_path / "bad.csv"
    bad.write_text(HEAD + "0,1,9,0.5,0.5\n")
    argv[1], argv[-1] = str(bad), str(tmp_path / "o.npz")
    assert traces_cli.main(argv[:2] + argv[4:]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "expert_ids[0, 1] = 9 out of range 0..7" in err
    assert "Traceback" not in err and not (tmp_path / "o.npz").exists()
