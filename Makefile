# Two commands on a fresh machine:  make demo   and   make test
VENV   ?= .venv
PYTHON ?= python3
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.themesift-installed

.PHONY: setup demo test clean

setup: $(STAMP)

# torch first, pinned to the CPU build this project is tested with (pip takes it from local disk where
# it lies there); then Themesift itself with its test extras. setuptools' notice that an editable
# install is one is silenced (PYTHONWARNINGS reaches the build backend); errors still show.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "torch==2.13.0"
	PYTHONWARNINGS=ignore $(BIN)/python -m pip install -q -e ".[test,bench]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/themesift suggest examples/ipt-study/transcripts --study ipt-example

test: $(STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) themesift-work
