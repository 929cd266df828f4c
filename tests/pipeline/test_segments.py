"""The one segment IoU (torch and numpy alike) against a float64 brute force, and grid steps <-> seconds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mse_rt.pipeline.segments import NMS_LEN_EPS, seconds_to_steps, segment_iou, to_seconds


def _iou_ref(a, b, eps):
    """Plain Python, float64, one pair at a time."""
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (a[1] - a[0] + eps) + (b[1] - b[0] + eps) - inter
    return inter / union if union > 0 else 0.0


@pytest.mark.parametrize("eps", [0.0, NMS_LEN_EPS])
def test_pairwise_iou_matches_a_float64_reference(eps):
    rng = np.random.default_rng(0)
    a = np.sort(rng.uniform(-5, 20, (17, 2)), axis=1)
    b = np.sort(rng.uniform(-5, 20, (11, 2)), axis=1)
    b[3] = a[2]  # identical segments: IoU 1
    b[4] = [a[0, 1], a[0, 1] + 2.0]  # touching: IoU 0
    ref = np.array([[_iou_ref(x, y, eps) for y in b] for x in a])
    got_np = segment_iou(a[:, None], b[None], eps)
    got_t = segment_iou(torch.from_numpy(a)[:, None], torch.from_numpy(b)[None], eps)
    np.testing.assert_allclose(got_np, ref, rtol=1e-12, atol=0)
    np.testing.assert_allclose(got_t.numpy(), ref, rtol=1e-12, atol=0)
    assert isinstance(got_np, np.ndarray) and isinstance(got_t, torch.Tensor)
    assert got_np[2, 3] == pytest.approx(1.0) and got_np[0, 4] == 0.0


def test_empty_or_swapped_segments_give_zero_without_nan_gradients():
    a = torch.tensor([[1.0, 1.0], [3.0, 2.0], [0.0, 2.0]], requires_grad=True)
    b = torch.tensor([[1.0, 1.0], [0.0, 1.0], [1.0, 3.0]])
    iou = segment_iou(a, b)
    assert iou[0].item() == 0.0 and iou[1].item() == 0.0 and iou[2].item() == pytest.approx(1 / 3)
    iou.sum().backward()
    assert torch.isfinite(a.grad).all()


def test_seconds_are_clip_centres_and_invert():
    # step g covers frames [g * 4, g * 4 + 16) at 30 fps: its centre is (4 g + 8) / 30 s
    steps = np.array([0.0, 1.0, 10.5, 99.0])
    secs = to_seconds(steps, 30.0, 4, 16)
    np.testing.assert_allclose(secs, (4 * steps + 8) / 30, rtol=1e-15)
    np.testing.assert_allclose(seconds_to_steps(secs, 30.0, 4, 16), steps, rtol=1e-12, atol=1e-12)
    clipped = to_seconds(torch.tensor([[-5.0, 1000.0]]), 30.0, 4, 16, duration=10.0)
    assert clipped.tolist() == [[0.0, 10.0]]
    with pytest.raises(ValueError, match="fps"):
        to_seconds(steps, float("nan"), 4, 16)
