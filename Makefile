# rfmap: the two commands a fresh clone needs (see README.md):
#   make gallery   set up .venv and write the seed notebook's gallery to gallery/
#   make test      set up .venv with the test dependencies (PyTorch, torchvision, Chromium) and run the tests
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
ARCH   := $(shell uname -m)

# PyTorch + torchvision builds that work together here (x86_64: CUDA build, runs on CPU).
ifeq ($(ARCH),aarch64)
TORCH := torch==2.9.1 torchvision==0.24.1
else
TORCH := torch==2.14.1 torchvision==0.29.1
endif

.PHONY: gallery test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.base: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.test: $(VENV)/.base
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[test,images,dev]'
	command -v chromium >/dev/null 2>&1 || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; }
	touch $@

gallery: $(VENV)/.base
	$(BIN)/rfmap gallery --out gallery

test: $(VENV)/.test
	@$(BIN)/python -m pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests" >&2; exit 1; fi; exit $$rc

lint: $(VENV)/.test
	$(BIN)/ruff check src tests benchmarks docs/make_images.py
	$(BIN)/ruff format --check src tests benchmarks docs/make_images.py
	$(BIN)/mypy

bench: $(VENV)/.test
	for script in benchmarks/bench_*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) gallery .pytest_cache .hypothesis
