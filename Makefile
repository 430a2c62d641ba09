# Two commands: `make demo` (the main job) and `make test` (the whole suite).
# Each creates .venv when missing and installs the package into it.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.installed-demo

.PHONY: demo test bench docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# the demo needs only the plots extra (matplotlib), not the test and web tooling
$(DEMO_STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[plots]"
	touch $(DEMO_STAMP)

# out/ is git-ignored, so a fresh clone has none: make it before the report writes its charts there
demo: $(DEMO_STAMP)
	mkdir -p out
	$(BIN)/tokenmath report --plots out/plots

test: $(STAMP)
	$(BIN)/python -m pytest

# the documentation site (docs/ as chapters + the API reference from the docstrings), warnings as errors
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir out/site  # (no Material end-of-life banner)

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_roofline.py
	$(BIN)/python benchmarks/bench_plan.py
	$(BIN)/python benchmarks/bench_wide_ep.py
	$(BIN)/python benchmarks/bench_simulate.py
	$(BIN)/python benchmarks/bench_fleet.py
	$(BIN)/python benchmarks/bench_explore.py
	$(BIN)/python benchmarks/bench_startup.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
