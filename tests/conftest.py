"""Pytest setup: makes tests/ importable (helpers in golden_utils.py) and checks the golden folder."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

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
