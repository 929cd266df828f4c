"""Checks of what users pass in: features, stream chunks and scalar values (fps, durations).

Features are time first: a video is a (T, C) array of T clip features of C channels (e.g. I3D:
C = 2048, one step every ``feat_stride`` frames); :func:`check_features` returns them channels
first, (C, T) float32, as the network takes them (docs/spec/units.md).

Scalars are accepted as numbers when they are Python int / float, NumPy scalars
(``np.float32(30)``, ``np.int64(30)``), 0-d NumPy arrays or 0-d torch tensors; bool and strings
are refused. Physical values have sane ranges (docs/spec/units.md): fps in
:data:`~mse_rt.config.schema.FPS_RANGE`, durations finite and > 0, feature values within
+-:data:`FEATURE_ABS_LIMIT`.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch

from ..config.schema import FPS_RANGE
from ..errors import InputError
from .padding import max_video_length

# A given duration may be this much shorter than the time the features' windows start in
# (frame-rate rounding, features padded at the end); beyond it the segments would be clipped.
DURATION_SLACK = 0.1

# Largest |feature value| accepted. Real clip features (I3D, TSP, SlowFast) are O(1)-O(100); far
# above this bound the network's float32 arithmetic breaks down (LayerNorm squares its inputs:
# float32 overflows near 1.8e19, and a 3e38 input gives NaN everywhere), so a larger value is a
# unit or file mistake. The bound leaves ten orders of magnitude on both sides.
FEATURE_ABS_LIMIT = 1e8


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


def check_fps(value: object, name: str = "fps") -> float:
    """A frame rate in :data:`~mse_rt.config.schema.FPS_RANGE` (frames per second), as float;
    :class:`InputError` naming ``name`` and the range otherwise (a 1e-40 or 1e300 fps would turn
    segments infinite or collapse them to 0)."""
    v = as_float(value, name)
    lo, hi = FPS_RANGE
    if not lo <= v <= hi:  # NaN fails too
        raise InputError(f"{name} must lie in [{lo:g}, {hi:g}] frames per second, got {v:g}")
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
    :class:`InputError` for a non-array, a meta tensor, wrong rank, wrong channel count (with a
    hint when a (C, T) array was passed), a non-float dtype, T = 0, NaN/Inf, a value beyond
    +-:data:`FEATURE_ABS_LIMIT`, or T beyond the point buffer.
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
    if t.device.type == "meta":
        raise InputError(f"{name}: a tensor on the 'meta' device holds no values; pass real features")
    # one reduction screens both: the min / max are NaN whenever an element is (NaN propagates
    # through aminmax), +-inf when one is, and bound the magnitude otherwise; only a failed
    # screen pays for the element-wise search that locates the bad value. Checked before the
    # float32 cast, so a float64 value beyond the float32 range is reported as out of range.
    lo, hi = (float(v) for v in torch.aminmax(t))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        bad = (~torch.isfinite(t)).nonzero()[0].tolist()
        raise InputError(f"{name}: contains NaN or Inf (first at step {bad[0]}, channel {bad[1]})")
    if max(-lo, hi) > FEATURE_ABS_LIMIT:
        bad = (t.abs() > FEATURE_ABS_LIMIT).nonzero()[0].tolist()
        raise InputError(f"{name}: feature values out of range: |x| = {max(-lo, hi):.3g} (first at step {bad[0]}, "
                         f"channel {bad[1]}) exceeds {FEATURE_ABS_LIMIT:g}; clip features are O(1)-O(100): check "
                         "the file's scale and dtype")
    return t.to(device="cpu", dtype=torch.float32).T


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


def as_video_list(value, name: str) -> list:
    """Any iterable with one entry per video (list, tuple, generator, rows of an array) as a
    list; :class:`InputError` naming ``name`` for a number, a string or a non-iterable."""
    if isinstance(value, list):
        return value
    if not isinstance(value, (str, bytes, dict)) and not is_scalar(value):
        try:
            return list(value)
        except TypeError:
            pass
    raise InputError(f"{name} must be a list (or any iterable) with one entry per video, got {type(value).__name__}")


def per_video(value, n: int, name: str) -> list:
    """One number for all ``n`` videos, or an iterable of ``n`` (None: ``n`` Nones); :class:`InputError`
    otherwise. The entries are checked by the caller."""
    if value is None or is_scalar(value):
        return [value] * n
    try:
        values = as_video_list(value, name)
    except InputError:
        raise InputError(f"{name} must be a number or one number per video, got {value!r}") from None
    if len(values) != n:
        raise InputError(f"{name} has {len(values)} entries for {n} videos")
    return values


HEAD_OUTPUTS = ("cls_prob", "seg_start", "seg_end")


def check_head_outputs(heads: dict, names: list[str]) -> None:
    """:class:`InputError` naming the videos whose network outputs ``heads`` (each (B, P, K), row
    b = ``names[b]``) hold NaN / Inf.

    Finite features within the input bound can still overflow inside a backend (an fp16 engine,
    unusual weights); NaN scores would silently give no detections. One sum per output, small next
    to the forward pass; the per-row search runs only when a sum is not finite.
    """
    if all(bool(torch.isfinite(heads[k].sum())) for k in HEAD_OUTPUTS):
        return
    bad = torch.zeros(len(names), dtype=torch.bool, device=heads["cls_prob"].device)
    for k in HEAD_OUTPUTS:
        bad |= ~torch.isfinite(heads[k].flatten(1)).all(dim=1)
    if not bool(bad.any()):  # only a sum overflowed: every value is finite
        return
    which = [names[i] for i in bad.nonzero().flatten().tolist()]
    raise InputError(f"{', '.join(which)}: the network's outputs are NaN or Inf: the features are out of range for "
                     "this model (check their scale), or the model file is broken")
