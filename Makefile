# sevlm-course: every target sets itself up from nothing (it creates .venv when missing).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Tests and CI never touch the network for models: a failing hub call would wait ~28 s.
OFFLINE := HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
TEST_RUNS := $(CURDIR)/.test-runs

.PHONY: setup course test lint data lab student readme figures bench clean help

help:
	@echo "make course   set up, then run every notebook in order, headless, on the built-in data"
	@echo "make test     set up, then run the unit tests and every notebook under pytest --nbval"
	@echo "make lab      set up, then open the course in JupyterLab"
	@echo "make data     fetch the Warriner VAD lexicon (the only download), generate ArtEmis-mini, pre-train the tiny tower"
	@echo "make student  write student/ copies: outputs cleared, exercise solutions replaced by stubs"
	@echo "make figures  redraw docs/architecture.svg (the README's model diagram) from the code"
	@echo "make bench    speed and memory benchmarks against the reference approach (CPU set)"
	@echo "make lint     ruff over the library, tests and notebooks"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m ipykernel install --sys-prefix --name sevlm-course --display-name "SEVLM course (.venv)" >/dev/null
	touch $@

setup: $(STAMP)

data: setup
	$(BIN)/python -m sevlm_lib.data.prepare
	$(OFFLINE) $(BIN)/python -m sevlm_lib.cli.tower

course: setup
	$(BIN)/python -m sevlm_lib.course run

test: setup
	rm -rf $(TEST_RUNS)
	$(OFFLINE) SEVLM_QUIET=1 SEVLM_RUNS_DIR=$(TEST_RUNS) \
	  $(BIN)/python -m pytest tests notebooks --nbval --nbval-current-env \
	  --nbval-sanitize-with notebooks/nbval_sanitize.cfg --nbval-cell-timeout=7200 -p no:randomly

student: setup
	$(BIN)/python -m sevlm_lib.student copies

readme: setup figures
	$(BIN)/python -m sevlm_lib.student readme

figures: setup
	$(OFFLINE) $(BIN)/python -m sevlm_lib.viz architecture docs/architecture.svg

lint: setup
	$(BIN)/ruff check sevlm_lib tests benchmarks notebooks

lab: setup
	$(BIN)/jupyter lab notebooks

bench: setup
	$(OFFLINE) $(BIN)/python benchmarks/bench_decoding.py --threads $(or $(BENCH_THREADS),1)
	$(OFFLINE) $(BIN)/python benchmarks/bench_data.py --threads $(or $(BENCH_THREADS),1)
	$(OFFLINE) $(BIN)/python benchmarks/bench_train_step.py --threads $(or $(BENCH_THREADS),1)
	$(OFFLINE) $(BIN)/python benchmarks/bench_memory.py --threads $(or $(BENCH_THREADS),1)
	$(BIN)/python benchmarks/report.py

clean:
	rm -rf $(TEST_RUNS) runs student
