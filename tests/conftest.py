"""Shared pytest fixtures: simulator selection and per-test output directories."""
import os

import pytest

from tb import toolchain

# Icarus is the second simulator; tests that need it skip with this reason
# where it is absent (.ci/run installs it, so CI always runs them), and the
# terminal summary says in one line how many did (pytest_terminal_summary).
ICARUS_MISSING = "Icarus Verilog (iverilog) is not installed"
requires_icarus = pytest.mark.skipif(not toolchain.have_icarus(), reason=ICARUS_MISSING)

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


def icarus_skips(stats) -> int:
    """How many of a session's skipped tests skipped because Icarus is missing."""
    n = 0
    for rep in stats.get("skipped", []):
        longrepr = getattr(rep, "longrepr", None)
        if isinstance(longrepr, tuple) and len(longrepr) == 3 and ICARUS_MISSING in str(longrepr[2]):
            n += 1
    return n


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    n = icarus_skips(terminalreporter.stats)
    if n:
        terminalreporter.write_line(f"{n} test{'s' if n != 1 else ''} skipped: {ICARUS_MISSING} "
                                    f"(Debian: apt-get install iverilog; .ci/run installs it)",
                                    yellow=True, bold=True)
