"""Checks of scalar values users pass (fps, durations): numbers of any numeric type, validated by range.

Accepted as numbers: Python int / float, NumPy scalars (``np.float32(30)``, ``np.int64(30)``),
0-d NumPy arrays and 0-d torch tensors. bool and strings are refused.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch

from .errors import InputError

# A given duration may be this much shorter than the time the features' windows start in
# (frame-rate rounding, features padded at the end); beyond it the segments would be clipped.
DURATION_SLACK = 0.1


def is_scalar(value: object) -> bool:
    """True for a real number of any numeric type (see the module docstring); False for bool."""
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, numbers.Real):
        return True
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "iuf":
        return True
    return isinstance(value, torch.Tensor) and value.dim() == 0 and not value.dtype.is_complex \
        and value.dtype != torch.bool


def as_float(value: object, name: str) -> float:
    """``value`` as a Python float; :class:`InputError` naming ``name`` when it is not a number."""
    if not is_scalar(value):
        raise InputError(f"{name} must be a number, got {type(value).__name__} ({value!r})")
    return float(value.item() if isinstance(value, (np.ndarray, torch.Tensor)) else value)


def positive_number(value: object, name: str) -> float:
    """A finite number > 0, as float; :class:`InputError` otherwise."""
    v = as_float(value, name)
    if not (math.isfinite(v) and v > 0):
        raise InputError(f"{name} must be a positive finite number (> 0), got {v}")
    return v


def check_duration(duration: object, steps: int, fps: float, dataset_cfg: dict, name: str) -> float:
    """Validate a video duration in seconds against its ``steps`` feature steps.

    Must be finite and > 0, and not (much) shorter than the time at which the last feature's
    window starts, ``(steps - 1) * feat_stride / fps``: features cannot start after the video
    ends, so a shorter duration means a wrong fps or duration and would clip every segment.
    """
    d = positive_number(duration, f"{name}: duration (seconds)")
    last_start = (steps - 1) * dataset_cfg["feat_stride"] / fps
    if d < (1.0 - DURATION_SLACK) * last_start:
        span = (steps * dataset_cfg["feat_stride"] + dataset_cfg["num_frames"]) / fps
        raise InputError(
            f"{name}: duration {d:g} s is far shorter than its features: {steps} steps every "
            f"{dataset_cfg['feat_stride']} frames at {fps:g} fps span {span:.2f} s (the last window starts at "
            f"{last_start:.2f} s); check fps and duration, or pass duration=None to derive it from the features"
        )
    return d
