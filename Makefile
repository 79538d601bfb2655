# The two commands of the README: `make demo` (main job on generated fake data) and
# `make test` (the whole test suite). Both create the virtual environment they need.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# NVIDIA DALI wheel flavour: cuda130 (default) or cuda120, matching your CUDA driver.
DALI ?= cuda130
DEMO_DIR ?= demo

GPU_RESULTS ?= benchmarks/results

.PHONY: install demo test lint bench gpu-check clean

install: $(BIN)/.installed

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[$(DALI),test,bench]'
	touch $@

demo: install
	PATH="$(CURDIR)/$(BIN):$$PATH" bash tools/demo.sh $(DEMO_DIR)

test: install
	$(BIN)/python -m pytest tests

lint: install
	$(BIN)/ruff check vireid tests benchmarks tools

bench: install
	$(BIN)/python -m benchmarks

# On a CUDA machine: every gpu-marked test and the GPU benchmark rows, results into
# $(GPU_RESULTS). Needs no install or network (DALI importable); without CUDA: exit code 2.
gpu-check:
	@PYTHONPATH="$(CURDIR):$$PYTHONPATH" $(PYTHON) tools/gpu_check.py --out $(GPU_RESULTS)

clean:
	rm -rf $(VENV) $(DEMO_DIR)
