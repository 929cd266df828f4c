"""Pytest setup: makes tests/ importable (helpers in golden_utils.py) and checks the golden folder."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# `make test` runs two pytest-xdist workers on a 2-core machine: one torch / OpenMP thread each,
# no OpenMP spin-waiting, and one ONNX Runtime / OpenVINO thread per session (MSE_RT_THREADS; their
# own default is a spinning thread per core, which doubled the other worker's test times). A
# spinning worker starves the other one (docs/decisions.md#threads-env). Set before torch is imported and
# inherited by the processes tests start; a test that measures threads sets its own.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("MSE_RT_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

# Triton kernels run in Triton's CPU interpreter unless a CUDA GPU is present (set before any
# test module imports triton).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))

from golden_utils import GOLDEN  # noqa: E402


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    if not GOLDEN.is_dir():
        pytest.fail(f"golden vectors not found at {GOLDEN} (vendored in tests/data/golden; MSE_RT_GOLDEN overrides)")
    return GOLDEN


@pytest.fixture(scope="session")
def onnx_files(tmp_path_factory, golden_dir):
    """Each golden config exported once to ONNX (dynamic batch and length): {name: path}."""
    pytest.importorskip("onnxruntime")
    from mse_rt.export import export_onnx

    out = tmp_path_factory.mktemp("onnx")
    return {name: export_onnx((golden_dir / name / "config.yaml", golden_dir / name / "ckpt.pth.tar"),
                              out / f"{name}.onnx")
            for name in ("thumos_small", "anet_small")}


@pytest.fixture(scope="session")
def golden_onnx(onnx_files):
    """The golden thumos_small config exported to ONNX (fp32, dynamic axes)."""
    return onnx_files["thumos_small"]


@pytest.fixture(scope="session")
def demo_onnx(tmp_path_factory):
    """The bundled demo model exported once to ONNX (fp32, dynamic axes)."""
    pytest.importorskip("onnxruntime")
    from mse_rt.apps.demo import DEMO_CKPT, DEMO_CONFIG
    from mse_rt.export import export_onnx

    return export_onnx((DEMO_CONFIG, DEMO_CKPT), tmp_path_factory.mktemp("demo") / "demo.onnx")


@pytest.fixture(scope="session")
def calib(tmp_path_factory):
    """32 synthetic videos (the default ``calib_videos``) of another seed than the demo's training
    (1) and test (2) sets: the calibration set of every int8 test. With 16 the OpenVINO int8 demo
    mAP moved with the calibration set alone across the 0.5-point bar (docs/cpu_precisions.md)."""
    from mse_rt.apps.synth import write_dataset

    return write_dataset(tmp_path_factory.mktemp("calib"), 32, seed=3) / "features"


@pytest.fixture(scope="session")
def fp32_map(demo_onnx):
    """The demo mAP of the fp32 ONNX graph (equal to eager's)."""
    import mse_rt

    from golden_utils import demo_map

    return demo_map(mse_rt.Detector.from_onnx(demo_onnx))
