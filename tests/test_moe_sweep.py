"""The MoE benchmark's sweep runner: process pool and Dask give the same rows as a
plain loop, and the benchmark rows carry the fields the issue asks for."""
import pytest

from sim import sweep
from sim.bench import moe as bench

JOBS = [dict(preset=p, skew=s, seed=0, steps=6) for p, s in
        (("mixtral-8x7b", "hot"), ("qwen2-moe", "zipf"), ("deepseek-moe-16b", "uniform"))]
FIELDS = {"preset", "skew", "capacity_policy", "dispatch", "cycles", "dropped_tokens",
          "padded_slots", "recompiles", "util_sptc", "util_pim"}


@pytest.fixture(scope="module")
def serial_rows():
    return sweep.run(bench.point, JOBS, workers=1)


def test_bench_rows(serial_rows):
    assert len(serial_rows) == len(JOBS) * 6
    for r in serial_rows:
        assert FIELDS <= set(r)
        assert r["cycles"] > 0 and 0 <= r["util_sptc"] <= 1 and 0 <= r["util_pim"] <= 1
        if r["capacity_policy"] == "dynamic":
            assert r["dropped_tokens"] == 0
        else:
            assert r["recompiles"] == 0
        if r["dispatch"] == "sptc_only":
            assert r["util_pim"] == 0
    summ = bench.summarize(serial_rows)
    assert [s["preset"] for s in summ[-3:]] == ["geomean", "max", "paper"]
    assert all(s["dynamoe"] > 0 and s["coprocess"] > 0 for s in summ)


def test_process_pool_matches_serial(serial_rows):
    assert sweep.run(bench.point, JOBS, workers=2) == serial_rows


def test_dask_local_cluster_matches_serial(serial_rows):
    if not sweep.have_dask():
        pytest.skip("dask.distributed is not installed (pip install 'dask[distributed]')")
    assert sweep.run(bench.point, JOBS, dask=True, workers=2) == serial_rows


def test_dask_client_argument(serial_rows):
    if not sweep.have_dask():
        pytest.skip("dask.distributed is not installed (pip install 'dask[distributed]')")
    from dask.distributed import Client, LocalCluster
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        assert sweep.run(bench.point, JOBS[:1], client=client) == serial_rows[:6]


def test_sweep_errors():
    with pytest.raises(ValueError, match="workers"):
        sweep.run(bench.point, JOBS, workers=0)
    with pytest.raises(TypeError, match="fn"):
        sweep.run(None, JOBS)
    assert sweep.run(bench.point, []) == []
