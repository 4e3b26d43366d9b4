# Two entry points (see README): `make demo` runs the main job, `make test` runs every test.
# Both set up .venv first, from this project's own files only.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
DATA_DIR ?= ../shared/data/LLMRouter
CHECKPOINT ?= .graphrouter/checkpoint.pt
# the key writes need (POST /v1/llms, ...); the demo binds 127.0.0.1 only. Set your own: make demo GRAPHROUTER_API_KEY=…
GRAPHROUTER_API_KEY ?= demo-key
PORT ?= $(or $(GRAPHROUTER_PORT),8000)

.PHONY: setup demo test lint bench-store bench-scorer bench-api experiments clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, pinned to the CPU wheel on this machine's disk (any other specifier pulls a CUDA build)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

setup: $(BIN)/.installed

# import the real data (idempotent), train once (a checkpoint already there is reused), then serve on :$(PORT)
demo: setup
	$(BIN)/graphrouter import dcrouter --data-dir $(DATA_DIR)
	$(BIN)/graphrouter stats
	test -f $(CHECKPOINT) || $(BIN)/graphrouter train --checkpoint $(CHECKPOINT)
	@echo "serving on http://127.0.0.1:$(PORT) (OpenAPI docs: /docs); $(if $(GRAPHROUTER_API_KEY),writes need: Authorization: Bearer $(GRAPHROUTER_API_KEY),writes are off: no GRAPHROUTER_API_KEY given)"
	GRAPHROUTER_API_KEY='$(GRAPHROUTER_API_KEY)' $(BIN)/graphrouter serve --checkpoint $(CHECKPOINT) --port $(PORT)

test: setup
	$(BIN)/ruff check .
	HF_HUB_OFFLINE=1 $(BIN)/pytest

bench-store: setup
	$(BIN)/python experiments/bench_store.py --data-dir $(DATA_DIR)

bench-scorer: setup
	$(BIN)/python experiments/bench_scorer.py

# needs the store and checkpoint of `make demo`
bench-api: setup
	$(BIN)/python experiments/bench_api.py --checkpoint $(CHECKPOINT)

# the quality tables (several hours on 2 cores: every router, official split and 5-fold CV, new-LLM protocol)
experiments: setup
	$(BIN)/python experiments/dcrouter.py
	$(BIN)/python experiments/dcrouter_new_llm.py

clean:
	rm -rf $(VENV) .graphrouter
