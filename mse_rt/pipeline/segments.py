"""Segments: the one IoU every part of mse_rt uses, and grid steps <-> seconds (docs/spec/units.md).

Segments are (..., 2) arrays of (start, end), in feature-grid steps or in seconds; every
function here works on torch tensors and numpy arrays alike and keeps their type.
"""

from __future__ import annotations

import math

import numpy as np
import torch

# IoU lengths carry this epsilon in the reference NMS (docs/spec/nms.md; not in score voting).
NMS_LEN_EPS = 1e-6


def segment_iou(a, b, len_eps: float = 0.0):
    """IoU of segments ``a`` (..., 2) and ``b`` (..., 2), broadcast against each other.

    ``inter / (len_a + len_b - inter)`` with ``len = end - start + len_eps`` and ``inter =
    max(0, min(ends) - max(starts))`` (in that order of operations, which the NMS reference's
    tie-breaking relies on). 0 where the union is not positive (empty or swapped segments), with
    no NaN in values or gradients. Pairwise (N, M): ``segment_iou(a[:, None], b[None])``.
    """
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        inter = (torch.minimum(a[..., 1], b[..., 1]) - torch.maximum(a[..., 0], b[..., 0])).clamp(min=0)
        union = (a[..., 1] - a[..., 0] + len_eps) + (b[..., 1] - b[..., 0] + len_eps) - inter
        ok = union > 0
        return torch.where(ok, inter / torch.where(ok, union, torch.ones_like(union)), torch.zeros_like(union))
    a, b = np.asarray(a), np.asarray(b)
    inter = np.clip(np.minimum(a[..., 1], b[..., 1]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    union = (a[..., 1] - a[..., 0] + len_eps) + (b[..., 1] - b[..., 0] + len_eps) - inter
    ok = union > 0
    return np.where(ok, inter / np.where(ok, union, 1.0), 0.0)


def to_seconds(segs, fps: float, feat_stride: float, num_frames: float, duration: float | None = None):
    """Grid steps -> seconds: ``(steps * feat_stride + 0.5 * num_frames) / fps``, then clipped to
    ``[0, duration]`` when a duration is given (the runtime's rule; the centre of clip ``steps``)."""
    if not (fps > 0 and math.isfinite(fps)):
        raise ValueError(f"fps must be a positive number, got {fps}")
    out = (segs * feat_stride + 0.5 * num_frames) / fps
    if duration is None:
        return out
    if isinstance(out, torch.Tensor):
        out = torch.where(out <= 0.0, torch.zeros_like(out), out)
        return torch.where(out >= duration, torch.full_like(out, duration), out)
    return np.clip(out, 0.0, duration)


def seconds_to_steps(seconds, fps: float, feat_stride: float, num_frames: float):
    """Seconds -> grid steps, the inverse of :func:`to_seconds` (how training reads annotations)."""
    return (np.asarray(seconds, dtype=np.float64) * fps - 0.5 * num_frames) / feat_stride
