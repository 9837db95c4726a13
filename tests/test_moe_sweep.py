"""The MoE benchmark's sweep runner: process pool and Dask give the same rows as a
plain loop, and the benchmark rows carry the fields the issue asks for."""
import pytest

from sim import sweep
from sim.bench import moe as bench

JOBS = [dict(preset=p, skew=s, seed=0, steps=6) for p, s in
        (("mixtral-8x7b", "hot"), ("qwen2-moe", "zipf"), ("deepseek-moe-16b", "uniform"))]
FIELDS = {"preset", "skew", "capacity_policy", "dispatch", "cycles", "dropped_tokens",
          "dropped_fraction", "padded_slots", "recompiles", "util_sptc", "util_pim",
          "paper_figure", "definition", "baseline"}
RUNS = len(bench.POLICIES) * 4 + len(bench.RECOMPILE_BASES) - 1


@pytest.fixture(scope="module")
def serial_rows():
    return sweep.run(bench.point, JOBS, workers=1)


def test_bench_rows(serial_rows):
    assert len(serial_rows) == len(JOBS) * RUNS
    assert {r["dispatch"] for r in serial_rows} == {"sptc_only", "duplex", "duplex_opb",
                                                    "duplex_coprocess"}
    for r in serial_rows:
        assert FIELDS <= set(r)
        assert r["cycles"] > 0 and 0 <= r["util_sptc"] <= 1 and 0 <= r["util_pim"] <= 1
        assert r["dropped_fraction"] == round(r["dropped_tokens"] / r["routed"], 5)
        if r["capacity_policy"] in ("dropless", "static_dropfree"):
            assert r["dropped_tokens"] == 0
        if r["capacity_policy"] == "dropless":
            assert r["padded_slots"] == 0
        if r["capacity_policy"] != "dynamic":
            assert r["recompiles"] == 0
        if r["dispatch"] == "sptc_only":
            assert r["util_pim"] == 0
    roles = {(r["capacity_policy"], r["dispatch"]): r["paper_figure"] for r in serial_rows
             if r["recompile_base"] == 0}
    assert roles[("dropless", "duplex_coprocess")].startswith("Duplex 2.07x")
    assert roles[("dynamic", "sptc_only")].startswith("DynaMoE 1.7x")
    summ = bench.summarize(serial_rows)
    got = {(s["ratio"], s["setup"]) for s in summ}
    assert {("dynamoe", "kit"), ("duplex_mean", "kit"), ("duplex_max", "kit"),
            ("coprocess", "kit"), ("coprocess_vs_opb", "kit"), ("stage_rule", "kit")} <= got
    for s in summ:
        assert s["ours"] > 0 and {"paper_figure", "definition", "baseline",
                                  "dropped_fraction"} <= set(s)
        if s["ratio"] == "duplex_mean":
            assert s["paper"] == 2.07 and s["diff"] == round(s["ours"] - 2.07, 4)
        if s["ratio"] == "stage_rule":
            assert s["paper"] is None and s["paper_figure"] == "no paper figure"


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
        assert sweep.run(bench.point, JOBS[:1], client=client) == serial_rows[:RUNS]


def test_sweep_errors():
    with pytest.raises(ValueError, match="workers"):
        sweep.run(bench.point, JOBS, workers=0)
    with pytest.raises(TypeError, match="fn"):
        sweep.run(None, JOBS)
    assert sweep.run(bench.point, []) == []
