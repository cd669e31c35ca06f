# The two commands of the README: `make demo` and `make test`. Each creates .venv on first use.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test typecheck clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/exitgate demo

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q tests

typecheck: $(STAMP)
	$(VENV)/bin/python -m mypy src

clean:
	rm -rf $(VENV) .exitgate
