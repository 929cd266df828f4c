"""The streaming interface: one stream of feature chunks in, detections out as they become final.

    stream = StreamingDetector(det, hop=128)          # windowed mode (lag=None)
    stream = StreamingDetector(det, hop=4, lag=8)     # lagged, low-latency mode
    final = stream.push(chunk)                        # (t, C) new steps -> DetectionResult
    tail = stream.flush()                             # end of stream

``StreamingDetector(...)`` builds the mode its arguments ask for: a
:class:`~mse_rt.streaming.windowed.WindowedStreamingDetector` (windows of max_seq_len steps every
``hop``, each owning the centre stretch of its span; detections final one hop after their window
ran) or a :class:`~mse_rt.streaming.lagged.LaggedStreamingDetector` (a trailing window every
``hop`` steps; a detection is final ``lag`` steps after its predicted end). Both subclass it, so
``isinstance(s, StreamingDetector)`` holds for either. Times are absolute seconds from the start
of the stream; steps are feature-grid steps.
"""

from __future__ import annotations

import abc
from collections import deque

import numpy as np
import torch

from ..errors import InputError
from ..io.results import DetectionResult
from ..pipeline.segments import to_seconds


def latency_summary(latencies: deque | list) -> dict[str, float]:
    """Per-push latency in seconds: count, mean, p50, p95, max of the recorded history."""
    if not latencies:
        return {"count": 0}
    a = np.asarray(latencies)
    return {"count": len(a), "mean": float(a.mean()), "p50": float(np.percentile(a, 50)),
            "p95": float(np.percentile(a, 95)), "max": float(a.max())}


def result_from_steps(video_id: str, segs: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, fps: float,
                      dataset_cfg: dict, steps: int) -> DetectionResult:
    """A DetectionResult of a stream that has received ``steps`` feature steps: segments (N, 2) in
    absolute grid steps -> seconds clipped to the stream's duration so far, sorted by score (stable)."""
    stride, nframes = dataset_cfg["feat_stride"], dataset_cfg["num_frames"]
    duration = (steps * stride + nframes) / fps
    if len(segs):
        segs = to_seconds(segs, fps, stride, nframes, duration)
    order = torch.sort(scores, descending=True, stable=True).indices
    return DetectionResult(video_id, segs[order].numpy().astype(np.float32).reshape(-1, 2),
                           scores[order].numpy().astype(np.float32), labels[order].numpy().astype(np.int64),
                           fps, duration)


def _number(name: str, v) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise InputError(f"{name} must be a number, got {v!r}")
    return float(v)


def check_rule_params(provisional_min_score, hold_iou, dup_iou) -> tuple[float, float | None, float | None]:
    """The emission rule's thresholds, validated: provisional_min_score in [0, 1]; hold_iou and
    dup_iou in (0, 1] or None (off). NaN fails every range. :class:`InputError` naming the value."""
    p = _number("provisional_min_score", provisional_min_score)
    if not 0 <= p <= 1:
        raise InputError(f"provisional_min_score must be in [0, 1], got {provisional_min_score}")
    out = [p]
    for name, v in (("hold_iou", hold_iou), ("dup_iou", dup_iou)):
        if v is None:
            out.append(None)
            continue
        f = _number(name, v)
        if not 0 < f <= 1:
            raise InputError(f"{name} must be in (0, 1] or None, got {v}")
        out.append(f)
    return out[0], out[1], out[2]


def check_detector(detector) -> None:
    """:class:`InputError` unless ``detector`` is a built Detector (something with ``cfg`` and ``nms``,
    as :class:`mse_rt.Detector` has): streams wrap a Detector, not a config path or None."""
    if not (isinstance(getattr(detector, "cfg", None), dict) and callable(getattr(detector, "nms", None))):
        raise InputError(f"a stream needs a built Detector (e.g. mse_rt.Detector.from_checkpoint(config, ckpt)), "
                         f"got {type(detector).__name__}")


class StreamingDetector(abc.ABC):
    """One stream through a :class:`~mse_rt.Detector`; see the module docstring.

    Arguments (steps are feature-grid steps): ``hop`` (steps between model runs; windowed default
    max_seq_len // 2, lagged default 4), ``window`` (must equal max_seq_len), ``fps`` (default
    ``dataset.default_fps``), ``video_id``, ``latency_history`` (pushes kept for
    :meth:`latency_stats`), ``lag`` (None: windowed mode; an integer: lagged mode, steps after a
    predicted end before a detection is final), and for the lagged mode
    ``provisional_min_score``, ``hold_iou``, ``dup_iou`` (see :mod:`mse_rt.streaming.lagged`).
    """

    window: int
    hop: int
    fps: float
    video_id: str

    _modes: dict[str, type] = {}  # "windowed" / "lagged" -> subclass (registered by __init_subclass__)

    def __init_subclass__(cls, mode: str | None = None, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if mode is not None:
            StreamingDetector._modes[mode] = cls

    def __new__(cls, detector=None, hop: int | None = None, window: int | None = None, fps: float | None = None,
                video_id: str = "stream", latency_history: int = 1000, lag: int | None = None, *args, **kwargs):
        check_detector(detector)
        if cls is StreamingDetector:  # the modes' modules are imported by the package's __init__
            cls = StreamingDetector._modes["windowed" if lag is None else "lagged"]
        return super().__new__(cls)

    @abc.abstractmethod
    def push(self, chunk: np.ndarray | torch.Tensor) -> DetectionResult:
        """Add (t, C) new feature steps; returns the detections that became final (seconds)."""

    @abc.abstractmethod
    def flush(self) -> DetectionResult:
        """End of stream: every detection not reported yet."""

    @abc.abstractmethod
    def latency_stats(self) -> dict[str, float]:
        """Per-push latency in seconds: count, mean, p50, p95, max over the recorded history."""
