# Two entry points (see README): `make demo` runs the main job, `make test` runs every test.
# Both set up .venv first, from this project's own files only.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
DATA_DIR ?= ../shared/data/LLMRouter

.PHONY: setup demo test lint bench-store clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, pinned to the CPU wheel on this machine's disk (any other specifier pulls a CUDA build)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

setup: $(BIN)/.installed

demo: setup
	$(BIN)/graphrouter import dcrouter --data-dir $(DATA_DIR)
	$(BIN)/graphrouter stats

test: setup
	$(BIN)/ruff check .
	HF_HUB_OFFLINE=1 $(BIN)/pytest

bench-store: setup
	$(BIN)/python experiments/bench_store.py --data-dir $(DATA_DIR)

clean:
	rm -rf $(VENV) .graphrouter
