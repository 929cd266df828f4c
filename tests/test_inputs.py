"""Bad input to the Detector raises typed errors that name the problem."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mse_rt
from mse_rt import BackendError, InputError

from golden_utils import GOLDEN


@pytest.fixture(scope="module")
def det():
    return mse_rt.Detector.from_checkpoint(GOLDEN / "thumos_small" / "config.yaml",
                                           GOLDEN / "thumos_small" / "ckpt.pth.tar")


def test_channels_first_hint(det):
    with pytest.raises(InputError, match=r"channels-first.*feats\.T"):
        det.detect(np.zeros((64, 50), np.float32), fps=30)


@pytest.mark.parametrize("x,match", [
    (np.zeros((50, 63), np.float32), "expected 64 feature channels"),
    (np.zeros((0, 64), np.float32), r"empty sequence"),
    (np.zeros((50,), np.float32), "2-D"),
    (np.zeros((50, 64), np.int64), "not floating point"),
    (torch.zeros(50, 64, dtype=torch.int32), "not floating point"),
    ([[0.0] * 64], "numpy array or torch tensor"),
    (np.zeros((256 * 6 + 1, 64), np.float32), "exceeds the longest supported"),
])
def test_bad_features(det, x, match):
    with pytest.raises(InputError, match=match):
        det.detect(x, fps=30)


def test_nan_and_inf(det):
    x = np.zeros((20, 64), np.float32)
    x[7, 3] = np.nan
    with pytest.raises(InputError, match=r"NaN or Inf \(first at step 7, channel 3\)"):
        det.detect(x, fps=30)
    x[7, 3] = np.inf
    with pytest.raises(InputError, match="NaN or Inf"):
        det.detect(x, fps=30)


def test_fps_required_and_positive(det):
    with pytest.raises(InputError, match="fps is required"):
        det.detect(np.zeros((20, 64), np.float32))
    with pytest.raises(InputError, match="positive"):
        det.detect(np.zeros((20, 64), np.float32), fps=0)
    with pytest.raises(InputError, match="2 entries for 3 videos"):
        det.detect_batch([np.zeros((20, 64), np.float32)] * 3, fps=[30, 30])


def test_longest_video_is_accepted(det):
    r = det.detect(np.random.default_rng(0).standard_normal((256 * 6, 64)).astype(np.float32), fps=30)
    assert r.segments.shape[1] == 2


def test_float64_and_torch_inputs_equal_float32(det):
    x = np.random.default_rng(1).standard_normal((40, 64)).astype(np.float32)
    a = det.detect(x, fps=30)
    b = det.detect(x.astype(np.float64), fps=30)
    c = det.detect(torch.from_numpy(x), fps=30)
    for r in (b, c):
        np.testing.assert_array_equal(a.scores, r.scores)
        np.testing.assert_array_equal(a.segments, r.segments)


def test_unknown_backend_and_nms():
    with pytest.raises(BackendError, match="unknown backend 'tpu'"):
        mse_rt.Detector.from_checkpoint(GOLDEN / "thumos_small" / "config.yaml",
                                        GOLDEN / "thumos_small" / "ckpt.pth.tar", backend="tpu")


def test_backend_checks_raw_infer(det):
    with pytest.raises(InputError, match="float32"):
        det.backend.infer(torch.zeros(1, 64, 256, dtype=torch.float64), torch.tensor([10]))
    with pytest.raises(InputError, match="lengths must lie"):
        det.backend.infer(torch.zeros(1, 64, 256), torch.tensor([0]))
