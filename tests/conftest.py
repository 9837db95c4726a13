"""Shared pytest fixtures: simulator selection and per-test output directories."""
import os

import pytest

from sim import toolchain

# Icarus is the second simulator; tests that need it skip with this reason
# where it is absent (.ci/run installs it, so CI always runs them).
requires_icarus = pytest.mark.skipif(not toolchain.have_icarus(),
                                     reason="Icarus Verilog (iverilog) is not installed")

SIMULATORS = [pytest.param("verilator", id="verilator"),
              pytest.param("icarus", id="icarus", marks=requires_icarus)]


@pytest.fixture(params=SIMULATORS)
def simulator(request):
    return request.param


@pytest.fixture
def run_dir(tmp_path):
    return tmp_path


def pytest_configure(config):
    os.environ.setdefault("COCOTB_LOG_LEVEL", "WARNING")


def pytest_collection_modifyitems(config, items):
    """Tests marked ``slow`` run first. pytest-xdist hands tests out in collection
    order, so a minutes-long test collected late ran alone on one worker while the
    other sat idle at the end of `make test`. (A stable sort: every worker
    computes the same order, as xdist requires.)"""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
