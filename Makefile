# perfdash: `make run` starts the whole system; `make test` runs the whole suite.
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: run test bench lint

$(STAMP): requirements.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements.txt
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/python -m perfdash.run

# The style check first: it takes seconds, and CI runs this target.
test: lint
	$(VENV)/bin/python -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check perfdash collectors tests bench
	$(VENV)/bin/ruff format --check perfdash collectors tests bench
