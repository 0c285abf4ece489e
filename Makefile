# Two entry points that work on a fresh machine with Python 3.11+:
#   make demo   set up .venv and run the example pipeline
#   make test   set up .venv and run lint, layer contracts and the tests
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: demo test lint pytest clean-demo bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	cd examples/demo && ../../$(BIN)/stagewise check && ../../$(BIN)/stagewise run
	@echo "demo outputs are in examples/demo/out/ (try: cd examples/demo && ../../$(BIN)/stagewise list)"

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/lint-imports

pytest: $(STAMP)
	@# the tests start many processes: compiled bytecode saves each one ~0.3 s of compiling
	$(BIN)/python -m compileall -q src > /dev/null
	$(BIN)/python -m pytest -q

test: lint pytest

clean-demo:
	rm -rf examples/demo/out
