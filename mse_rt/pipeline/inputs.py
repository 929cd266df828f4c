"""Checks of what users pass in: features, stream chunks and scalar values (fps, durations).

Features are time first: a video is a (T, C) array of T clip features of C channels (e.g. I3D:
C = 2048, one step every ``feat_stride`` frames); :func:`check_features` returns them channels
first, (C, T) float32, as the network takes them (docs/spec/units.md).

Scalars are accepted as numbers when they are Python int / float, NumPy scalars
(``np.float32(30)``, ``np.int64(30)``), 0-d NumPy arrays or 0-d torch tensors; bool and strings
are refused.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch

from ..errors import InputError
from .padding import max_video_length

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


_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_features(feats: np.ndarray | torch.Tensor, cfg: dict, name: str = "features") -> torch.Tensor:
    """Validate one video's features and return them channels-first, float32, CPU: (C, T).

    ``feats``: (T, C) numpy array or torch tensor, time first as in feature files. Raises
    :class:`InputError` for a non-array, wrong rank, wrong channel count (with a hint when a
    (C, T) array was passed), a non-float dtype, T = 0, NaN/Inf, or T beyond the point buffer.
    """
    c_in = cfg["model"]["input_dim"]
    if isinstance(feats, np.ndarray):
        if feats.dtype.kind != "f":
            raise InputError(f"{name}: dtype {feats.dtype} is not floating point; pass float32 features")
        if not feats.dtype.isnative:  # big-endian .npy files: same values in native byte order
            feats = feats.astype(feats.dtype.newbyteorder("="))
        t = torch.from_numpy(np.ascontiguousarray(feats))
    elif isinstance(feats, torch.Tensor):
        if feats.dtype not in _FLOAT_DTYPES:
            raise InputError(f"{name}: dtype {feats.dtype} is not floating point; pass float32 features")
        t = feats.detach()
    else:
        raise InputError(f"{name}: expected a numpy array or torch tensor, got {type(feats).__name__}")
    if t.ndim != 2:
        raise InputError(f"{name}: expected a 2-D (T, C) array, got shape {tuple(t.shape)}")
    if t.shape[1] != c_in:
        if t.shape[0] == c_in:
            raise InputError(
                f"{name}: shape {tuple(t.shape)} looks channels-first (C, T); features are time-first "
                f"(T, C={c_in}): pass feats.T"
            )
        raise InputError(f"{name}: expected {c_in} feature channels (T, {c_in}), got shape {tuple(t.shape)}")
    T = t.shape[0]
    if T == 0:
        raise InputError(f"{name}: empty sequence (T = 0)")
    limit = max_video_length(cfg)
    if T > limit:
        raise InputError(
            f"{name}: T = {T} steps exceeds the longest supported video ({limit} steps = "
            f"max_seq_len * max_buffer_len_factor, rounded to the padding multiple); split it or use streaming"
        )
    t = t.to(device="cpu", dtype=torch.float32)
    # fast screen: the sum is NaN/Inf whenever an element is (IEEE propagation); a finite sum
    # proves all elements finite. A non-finite sum (NaN/Inf inside, or a float32 overflow of
    # huge finite values) falls back to the exact element-wise test.
    if not bool(torch.isfinite(t.sum())) and not bool((finite := torch.isfinite(t)).all()):
        bad = (~finite).nonzero()[0].tolist()
        raise InputError(f"{name}: contains NaN or Inf (first at step {bad[0]}, channel {bad[1]})")
    return t.T


def check_chunk(chunk: np.ndarray | torch.Tensor, cfg: dict, piece: int) -> list[torch.Tensor]:
    """Validate a (t, C) chunk of a stream and split it into (C, <= piece) float32 tensors.

    A chunk of 0 steps (right channel count) gives no pieces: a no-op. Any length is accepted
    (long chunks are split). Raises :class:`InputError` as :func:`check_features` does.
    """
    shape = getattr(chunk, "shape", None)
    c_in = cfg["model"]["input_dim"]
    if shape is not None and len(shape) == 2 and shape[0] == 0:
        if shape[1] != c_in:
            raise InputError(f"chunk: expected {c_in} feature channels (t, {c_in}), got shape {tuple(shape)}")
        return []
    if shape is not None and len(shape) == 2 and shape[0] > piece:
        return [check_features(chunk[i:i + piece], cfg, name=f"chunk[{i}:{min(i + piece, shape[0])}]")
                for i in range(0, shape[0], piece)]
    return [check_features(chunk, cfg, name="chunk")]
