# Two entry points (README quick start): `make demo` runs the main job, `make test` the tests.
# Both create the virtual environment first; every dependency comes from pyproject.toml.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml CMakeLists.txt kernels/nms_cpu.cpp
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/mse-rt demo

test: $(STAMP)
	$(VENV)/bin/ruff check mse_rt kernels export benchmarks tests
	$(VENV)/bin/pytest -q

bench: $(STAMP)
	$(PY) benchmarks/bench_eager_stages.py

clean:
	rm -rf $(VENV) build
