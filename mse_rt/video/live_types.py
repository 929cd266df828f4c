"""The parts of live video streams (:mod:`mse_rt.video.live`) that callers name: thread budgets,
updates, the overflow error, and the clip spec of a model with a ``video`` section."""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputError, MseRtError
from ..io.results import DetectionResult
from ..runtime.options import MAX_THREADS
from .clips import ClipSpec

__all__ = ["DEFAULT_THREADS", "TORCH_DEFAULTS", "LiveOverflow", "LiveUpdate", "SourceState", "StageThreads", "clip_spec_for",
           "concat_results", "set_torch_threads", "source_stats"]

class LiveOverflow(MseRtError):
    """A live source's clip queue overflowed under ``overflow="raise"`` (compute is behind the source)."""


@dataclass(frozen=True)
class StageThreads:
    """Thread budget per stage: ``decode`` FFmpeg decoder threads per source (0: FFmpeg's choice);
    ``backbone`` / ``tad`` torch intra-op threads of those stage threads (None: torch's default).
    An OpenVINO / ONNX Runtime backbone takes its thread count when loaded (``load_backbone(...,
    threads=)``; ``mse-rt stream`` passes ``--threads-backbone`` there)."""

    decode: int = 1
    backbone: int | None = 1
    tad: int | None = 1

    def __post_init__(self) -> None:
        for name, low, none_ok in (("decode", 0, False), ("backbone", 1, True), ("tad", 1, True)):
            v = getattr(self, name)
            if v is None and none_ok:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not low <= v <= MAX_THREADS:
                raise InputError(f"StageThreads.{name} must be an integer from {low} to {MAX_THREADS}"
                                 f"{' or None' if none_ok else ''}, got {v!r}")


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


# The backbone is the stage that falls behind: it gets every core, decode and TAD one thread each
# (two spinning TAD threads against a busy backbone cost more than they give). Measured in
# docs/video_latency.md section 4.
DEFAULT_THREADS = StageThreads(decode=1, backbone=usable_cores(), tad=1)
"""Per-stage defaults, from the live benchmark (docs/video_latency.md)."""
TORCH_DEFAULTS = StageThreads(decode=0, backbone=None, tad=None)
"""Every stage on its library's own default (the baseline the defaults are compared with)."""


def set_torch_threads(n: int | None) -> None:
    """Give the calling thread ``n`` torch intra-op threads (None: leave torch's default).

    torch keeps the count per thread, but a thread takes the process-wide value (the last one any
    thread set) when it first runs an op; so set, let the thread initialise, and set again: the
    second call sticks to this thread whatever other threads set later."""
    if n is None:
        return
    import torch

    torch.set_num_threads(n)
    torch.get_num_threads()  # initialises this thread's count
    torch.set_num_threads(n)
    if torch.get_num_threads() != n:  # pragma: no cover - a torch without per-thread counts
        raise MseRtError(f"torch did not take {n} threads in stage thread {threading.current_thread().name}")


def clip_spec_for(cfg: dict) -> ClipSpec:
    """The :class:`ClipSpec` of a TAD config with a ``video`` section (length / stride / fps from ``dataset``)."""
    video = cfg.get("video")
    if not isinstance(video, dict):
        raise InputError("the model's config has no 'video' section: it does not say how its features are cut "
                         "from frames (use a model trained on video features, e.g. the pixel demo)")
    return ClipSpec.from_tad_config(cfg, spatial=video["spatial"], size=video["size"],
                                    short_side=video.get("short_side"))


@dataclass
class LiveUpdate:
    """What one TAD step gave one stream.

    ``final``: detections that became final (seconds from the stream start; never revised);
    ``in_progress``: the newest window's view of actions still going on (provisional);
    ``video_s``: video seconds the stream's feature steps cover; ``wall_s``: ``time.perf_counter()``
    when the update was made; ``behind_s``: video seconds between the newest frame taken from the
    source and ``video_s``; ``ended``: the stream is closed (end of source or error);
    ``error``: why it ended early (None at a normal end).
    """

    stream: Hashable
    final: DetectionResult
    in_progress: DetectionResult
    video_s: float
    wall_s: float
    behind_s: float
    ended: bool = False
    error: BaseException | None = None


@dataclass
class SourceState:
    """The state of one source in a pool (internal; its stage threads write it)."""

    name: Hashable
    source: Any                      # FrameSource
    realtime: bool
    speed: float
    clips: deque = field(default_factory=deque)  # ("clip", index, frames) / ("end",) / ("error", exc)
    frames: int = 0                  # frames taken from the source
    clips_cut: int = 0
    dropped: int = 0
    rows: int = 0                    # feature rows handed to the TAD stage (dropped clips held included)
    next_index: int = 0              # the next clip index the backbone stage expects
    last_row: np.ndarray | None = None
    start_wall: float | None = None  # perf_counter when the first frame was taken
    ended: bool = False
    error: BaseException | None = None
    thread: threading.Thread | None = None


def concat_results(video_id: str, parts: list[DetectionResult], fps: float) -> DetectionResult:
    """The final detections of several updates of one stream as one result, sorted by score (stable)."""
    if not parts:
        return DetectionResult(video_id, np.zeros((0, 2), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64),
                               fps, 0.0)
    scores = np.concatenate([p.scores for p in parts])
    order = np.argsort(-scores, kind="stable")
    return DetectionResult(video_id, np.concatenate([p.segments for p in parts])[order], scores[order],
                           np.concatenate([p.labels for p in parts])[order], fps, max(p.duration for p in parts))


def source_stats(s: SourceState, stream: Any, spec: ClipSpec) -> dict[str, Any]:
    """The ``stats()`` entry of one source; ``stream`` its LiveStream (None once closed)."""
    steps = stream.received if stream is not None else s.rows
    video_s = ((steps - 1) * spec.stride + spec.num_frames) / spec.fps if steps else 0.0  # frames its steps cover
    wall = None
    if s.realtime and s.start_wall is not None and not s.ended:
        wall = max(0.0, (time.perf_counter() - s.start_wall) * s.speed - video_s)
    return {"frames": s.frames, "clips": s.clips_cut, "dropped_clips": s.dropped, "rows": s.rows, "steps": steps,
            "queued_clips": len(s.clips), "behind_s": max(0.0, s.frames / spec.fps - video_s), "wall_behind_s": wall,
            "ended": s.ended, "error": None if s.error is None else repr(s.error), "start_wall": s.start_wall}
