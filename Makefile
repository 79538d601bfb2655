# The two commands of the README: `make demo` (main job on generated fake data) and
# `make test` (the whole test suite). Both create the virtual environment they need.
# `make test-quick`: the suite without the tests marked `slow` (-m "not slow"), same install.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# NVIDIA DALI wheel flavour: cuda130 (default) or cuda120, matching your CUDA driver.
DALI ?= cuda130
DEMO_DIR ?= demo

GPU_RESULTS ?= benchmarks/results

.PHONY: install demo test test-quick lint bench gpu-check clean

install: $(BIN)/.installed

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[$(DALI),test,bench,export]'
	touch $@

demo: install
	PATH="$(CURDIR)/$(BIN):$$PATH" bash tools/demo.sh $(DEMO_DIR)

test: install
	$(BIN)/python -m pytest tests

test-quick: install
	$(BIN)/python -m pytest -m "not slow" tests

lint: install
	$(BIN)/ruff check vireid tests benchmarks tools

bench: install
	$(BIN)/python -m benchmarks

# On a CUDA machine (docs/gpu-check.md): the GPU plan — install the .gpuw* wheels, probe the
# machine, the gpu tests by group, the GPU benchmark rows — each step in its own process
# group under its own budget (GPU_BUDGET seconds in all, installs included), results written
# into $(GPU_RESULTS) as they come. No network, no install of vireid. On the lent GPU
# machine: bring .gpuw1 … .gpuwN-1 in one `run` each (carry), then in the last run, with
# carry .gpuwN and timeout_s 540: PYTHONUNBUFFERED=1 python3 tools/gpu_check.py --out $OUT
# (this target with GPU_RESULTS=$OUT where make exists). Without CUDA: one line, exit code 2.
GPU_BUDGET ?= 480
gpu-check:
	@$(PYTHON) tools/gpu_check.py --out $(GPU_RESULTS) --budget $(GPU_BUDGET)

clean:
	rm -rf $(VENV) $(DEMO_DIR)
