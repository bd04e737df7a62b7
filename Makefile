# Two commands for a new user: `make serve` (install + start the router) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
INTENTS ?= intents
STAMP := $(VENV)/.installed

.PHONY: install serve test lint bench clean chromium

# Torch is installed first and pinned: left to sentence-transformers' resolution, pip
# would fetch a CUDA build of several GB. The check below keeps it that way.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@if $(BIN)/python -m pip list 2>/dev/null | grep -i '^nvidia-'; then \
		echo "error: CUDA packages were installed; install the CPU build of torch first" >&2; \
		exit 1; \
	fi
	touch $(STAMP)

install: $(STAMP)

serve: install
	HF_HUB_OFFLINE=1 $(BIN)/modeltriage serve --intents $(INTENTS) --host $(HOST) --port $(PORT)

# The browser tests (tests/browser) drive Debian's chromium; Playwright's own browser
# download cannot work here. Installed quietly, only when missing and apt-get can.
chromium:
	@if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1; then \
		$(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -qq chromium >/dev/null || \
		echo "warning: could not install chromium; the browser tests will be skipped" >&2; \
	fi

test: install chromium
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check src tests scripts benchmarks
	$(BIN)/ruff format --check src tests scripts
	$(BIN)/mypy

bench: install
	$(BIN)/python benchmarks/latency.py
	$(BIN)/python benchmarks/clinc_accuracy.py
	$(BIN)/python benchmarks/cascade_routerbench.py

clean:
	rm -rf $(VENV) $(INTENTS)/.index
