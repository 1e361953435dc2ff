# Two entry points on a fresh machine: `make demo` and `make test`.
# Both create (or reuse) .venv and install detforge with the pinned torch build.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TORCH := torch==2.14.1 torchvision==0.29.1

.PHONY: demo test lint install clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH) -e '.[dev,export]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/detforge demo

test: $(STAMP)
	$(PY) -m pytest -n 2 --durations=15

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench

clean:
	rm -rf $(VENV) .pytest_cache runs .demo
