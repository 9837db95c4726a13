"""The grid sweep CLI (python -m sim.sweep --grid ...) and RTL jobs on Dask workers, each
worker building in a folder of its own, once."""
import hashlib
import json
import os
import socket

import pytest

import golden
from golden.errors import FormatError
from sim import sweep


def test_grid_parsing(tmp_path):
    assert sweep.parse_grid(["preset=mixtral-8x7b,qwen2-moe", "seed=0,1", "mode=dense,2:4",
                             "stalls=true"]) == {
        "preset": ["mixtral-8x7b", "qwen2-moe"], "seed": [0, 1], "mode": ["dense", "2:4"],
        "stalls": [True]}
    jobs = sweep.expand("sptc", {"preset": ["mixtral-8x7b", "qwen2-moe"], "seed": [0, 1]})
    assert [(j["preset"], j["seed"]) for j in jobs] == [
        ("mixtral-8x7b", 0), ("mixtral-8x7b", 1), ("qwen2-moe", 0), ("qwen2-moe", 1)]
    assert all(j["lane"] == "fast" and j["config"] == "small" for j in jobs)
    f = tmp_path / "grid.toml"
    f.write_text('job = "moe"\n[grid]\npreset = ["qwen2-moe"]\nseed = [0, 1]\nskew = "zipf"\n')
    assert sweep.read_grid_file(f) == ("moe", {"preset": ["qwen2-moe"], "seed": [0, 1],
                                               "skew": ["zipf"]})
    for bad, field in ((["preset"], "grid"), (["seed=0", "seed=1"], "seed")):
        with pytest.raises(FormatError, match=field):
            sweep.parse_grid(bad)
    for kind, grid, field in (("sptc", {"mdoe": ["dense"]}, "mdoe"),
                              ("sptc", {"mode": ["4:8"]}, "mode"),
                              ("sptc", {"preset": ["gpt-5"]}, "preset"),
                              ("sptc", {"seed": [-1]}, "seed"),
                              ("sptc", {"lane": ["fast"], "simulator": ["icarus"]}, "simulator"),
                              ("moe", {"skew": ["flat"]}, "skew"),
                              ("rtl", {}, "job")):
        with pytest.raises(FormatError, match=field):
            sweep.expand(kind, grid)
    f.write_text("[grid]\nseed = [[0]]\n")
    with pytest.raises(FormatError, match="grid.seed"):
        sweep.read_grid_file(f)


def test_cli_bad_options(tmp_path, capsys):
    out = tmp_path / "r.json"
    for argv, msg in ((["--grid", "mode=4:8", "-o", str(out)], "mode: unknown '4:8'"),
                      (["--grid", "seed=0"], "-o/--output is required"),
                      (["--grid", "seed=0", "--quick", "-o", str(out)], "--quick"),
                      (["-o", str(out)], "go with --grid")):
        with pytest.raises(SystemExit) as e:
            sweep.main(argv)
        assert e.value.code == 2
        assert msg in capsys.readouterr().err
    out.write_text("mine")
    with pytest.raises(SystemExit) as e:
        sweep.main(["--grid", "seed=0", "-o", str(out)])
    assert e.value.code == 2 and "exists" in capsys.readouterr().err
    assert out.read_text() == "mine"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if not sweep.have_dask():
        pytest.skip("dask.distributed is not installed (pip install 'dask[distributed]')")
    from dask.distributed import Client, LocalCluster
    root = tmp_path_factory.mktemp("workers")
    saved = os.environ.get("MOE_WORKER_BUILD_ROOT")
    os.environ["MOE_WORKER_BUILD_ROOT"] = str(root)   # inherited by the worker processes
    try:
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                          dashboard_address=":0") as c, Client(c) as client:
            yield c, client, root
    finally:
        if saved is None:
            os.environ.pop("MOE_WORKER_BUILD_ROOT")
        else:
            os.environ["MOE_WORKER_BUILD_ROOT"] = saved


def test_worker_build_folders(cluster):
    _, client, root = cluster
    infos = {}
    for addr, w in client.scheduler_info()["workers"].items():
        infos[addr] = client.submit(sweep.worker_info, addr, workers=[addr],
                                    allow_other_workers=False, pure=False).result()
    assert len(infos) == 2
    keys = set()
    for addr, info in infos.items():
        key = f"{socket.gethostname()}-{info['worker']}".replace("/", "_").replace(":", "_")
        assert info["build_root"] == str(root / key)
        assert info["fastlane"] == str(root / key / "fastlane")
        assert info["sim_build"] == str(root / key / "sim_build")
        keys.add(key)
    assert len(keys) == 2
    assert sweep.worker_info()["build_root"] is None     # not a worker: shared caches


def test_rtl_grid_on_two_workers(cluster, tmp_path, capsys):
    """cocotb (Icarus) SpTC jobs of the small build through the CLI on a two-worker cluster:
    rows in job order, RTL cycles equal to the cycle model, outputs equal to the golden
    (the bench also checks every element), each worker builds once in its own folder."""
    c, _, root = cluster
    out = tmp_path / "results.json"
    rc = sweep.main(["--grid", "preset=qwen2-moe,deepseek-moe-16b", "mode=dense,2:4",
                     "lane=cocotb", "simulator=icarus", "--scheduler", c.scheduler_address,
                     "-o", str(out)])
    assert rc == 0
    assert "4/4" in capsys.readouterr().err                 # the tqdm bar reached the end
    res = json.loads(out.read_text())
    assert (res["jobs"], res["failed"], res["errors"]) == (4, 0, [])
    rows = res["rows"]
    assert [(r["job_index"], r["preset"], r["mode"]) for r in rows] == [
        (0, "qwen2-moe", "dense"), (1, "qwen2-moe", "2:4"),
        (2, "deepseek-moe-16b", "dense"), (3, "deepseek-moe-16b", "2:4")]
    for r in rows:
        job = {k: r[k] for k in sweep.SPTC_DEFAULTS}
        _, spec, _ = sweep.sptc_spec(job)
        want = golden.ssmm(spec.weight, spec.x, spec.sel, "int32").astype("<i8")
        assert r["out_sha256"] == hashlib.sha256(want.tobytes()).hexdigest()
        assert r["out_shape"] == list(want.shape) and r["routed"] == len(spec.sel) > 0
        assert r["cycles"] == r["model_cycles"] > 0
    by_worker = {}
    for r in rows:
        by_worker.setdefault(r["worker"], []).append(r)
    for w, rs in by_worker.items():
        folder = {r["build_root"] for r in rs}
        assert len(folder) == 1 and folder.pop().startswith(str(root))
        assert [r["build"] for r in rs].count("fresh") == 1, rs
        built = list((root / os.path.basename(rs[0]["build_root"]) / "sim_build").glob("*/.built"))
        assert len(built) == 1
    assert len({rs[0]["build_root"] for rs in by_worker.values()}) == len(by_worker)


def _fails(job):
    raise RuntimeError(f"job {job['seed']} broke")


def test_failed_jobs_are_reported(tmp_path, monkeypatch, capsys):
    assert isinstance(sweep.run_jobs(int, [{}], workers=1, keep_going=True)[0], TypeError)
    with pytest.raises(TypeError):
        sweep.run(int, [{}], workers=1)
    monkeypatch.setitem(sweep.JOB_KINDS, "sptc", (_fails, sweep.SPTC_DEFAULTS))
    out = tmp_path / "r.json"
    assert sweep.main(["--grid", "seed=0,1", "--workers", "1", "--no-progress",
                       "-o", str(out)]) == 1
    res = json.loads(out.read_text())
    assert (res["jobs"], res["failed"], res["rows"]) == (2, 2, [])
    assert [e["error"] for e in res["errors"]] == ["RuntimeError: job 0 broke",
                                                   "RuntimeError: job 1 broke"]
    assert "job 1 broke" in capsys.readouterr().err
