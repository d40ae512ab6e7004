# Every target sets itself up on a fresh clone: a Python 3.10 venv in .venv with the locked stack.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo-output
# The demo trains the CPU-sized ResNet50V2 behind the real gate (about 14 minutes on 2 cores, README). For the
# chain alone in about 3 minutes: make demo DEMO_PROFILE=smoke DEMO_STUDIES=40 DEMO_GATE="--kappa-floor -1 --auc-floor 0"
# (the smoke model learns nothing, so only opened floors let it through).
DEMO_PROFILE ?= demo
# Train studies per body part in the synthetic sample (the test split gets a quarter as many).
DEMO_STUDIES ?= 250
DEMO_GATE ?=

.PHONY: install test test-fast lint demo bench bench-quick clean

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@python3.10 -c 'import sys' 2>/dev/null || { \
	  echo "error: Python 3.10 is required (TFX 1.16 supports Python < 3.11) and python3.10 was not found." >&2; \
	  echo "  With pyenv: 'pyenv install 3.10' (this repo's .python-version then selects it)." >&2; \
	  echo "  On Ubuntu: 'sudo add-apt-repository ppa:deadsnakes/ppa && sudo apt install python3.10 python3.10-venv'." >&2; \
	  exit 1; }
	@test -x $(BIN)/python || python3.10 -m venv $(VENV)
	@echo "Installing the locked TFX 1.16 stack into $(VENV) (a few minutes, once)..."
	@$(BIN)/pip install --quiet --quiet --disable-pip-version-check -r requirements.lock
	@$(BIN)/pip install --quiet --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Everything, the end-to-end runs included (what CI runs).
test: lint
	$(BIN)/pytest

# Without the end-to-end runs (pytest -m "not e2e"): the pipeline, the tfx CLI, Kubeflow compile and serving a
# trained model are left out.
test-fast: lint
	$(BIN)/pytest -m "not e2e"

demo: $(STAMP)
	$(BIN)/mura sample --out $(DEMO_DIR)/data --studies-per-part $(DEMO_STUDIES) --max-side 256 --force
	$(BIN)/mura audit $(DEMO_DIR)/data
	@# Exit code 3 is the gate refusing the model: the report then says why, and nothing is served.
	$(BIN)/mura pipeline run --data-root $(DEMO_DIR)/data --profile $(DEMO_PROFILE) --pipeline-root $(DEMO_DIR)/pipeline \
	  $(DEMO_GATE) || [ $$? -eq 3 ]
	$(BIN)/mura report --pipeline-root $(DEMO_DIR)/pipeline --out $(DEMO_DIR)/report
	@TF_CPP_MIN_LOG_LEVEL=3 $(BIN)/python -W ignore -m serving.demo \
	  --model-base-path $(DEMO_DIR)/pipeline/serving/mura --data-root $(DEMO_DIR)/data

# Every benchmark against its baseline, measured side by side; writes docs/PERFORMANCE.md (about 35 minutes on
# 2 cores, a whole make demo included). One alone: $(BIN)/python -m bench.serving (--help says what it measures).
bench: $(STAMP)
	$(BIN)/python -m bench

# Tiny sizes, to check that every benchmark runs; writes nothing.
bench-quick: $(STAMP)
	$(BIN)/python -m bench --quick

clean:
	rm -rf $(DEMO_DIR) .pytest_cache .ruff_cache
