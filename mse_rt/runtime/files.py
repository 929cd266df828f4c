"""Detect a list of files: load, check, detect in batches; a bad file is reported, the rest go on.

The one loop behind ``mse-rt detect`` and every Ray actor of the corpus job
(:mod:`mse_rt.serving.ray_job`): a file that cannot be read or fails the input checks, or whose
results are not finite, becomes a failed outcome with its reason, and the batch's other videos
are detected as usual.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import MseRtError
from ..io.features import load_feature_file
from ..io.results import DetectionResult
from ..pipeline.inputs import check_features


@dataclass
class FileOutcome:
    """One video's outcome: ``result`` when it was detected, else ``error`` (a one-line reason)."""

    video_id: str
    path: str
    result: DetectionResult | None = None
    error: str | None = None


def detect_file_batch(det, files: Sequence[str | Path], ids: Sequence[str], fps=None,
                      load: Callable[[Path], np.ndarray] = load_feature_file) -> list[FileOutcome]:
    """Outcomes of one batch of files, in input order. ``load(path)`` returns a video's (T, C)
    features (default: a feature .npy), or ``(features, duration_s)`` when it knows the video's
    real duration (a video decoded to features: :class:`mse_rt.video.pipeline.VideoFeatures`); the
    videos that load and pass the checks share one :meth:`~mse_rt.Detector.detect_batch` call
    (grouped by padded length inside)."""
    out = [FileOutcome(str(v), str(f)) for f, v in zip(files, ids)]
    good, feats, durations = [], [], []
    for i, f in enumerate(files):
        try:
            x = load(Path(f))
            duration = None
            if isinstance(x, tuple):
                x, duration = x[0], x[-1]
            check_features(x, det.cfg, name=str(f))
        except MseRtError as exc:
            out[i].error = str(exc)
            continue
        good.append(i)
        feats.append(x)
        durations.append(duration)
    if feats:
        try:
            # durations only when a loader knew them: a detector_factory object of the Ray job may
            # implement the older detect_batch(feats, fps, video_ids) contract
            extra = {"durations": durations} if any(d is not None for d in durations) else {}
            results = det.detect_batch(feats, fps=fps, video_ids=[out[i].video_id for i in good], **extra)
        except MseRtError as exc:
            for i in good:
                out[i].error = str(exc)
        else:
            for i, r in zip(good, results):
                # last guard: NaN / Infinity cannot go into a results file (not JSON, no evaluator
                # scores them); the Detector's range checks should make this unreachable
                if np.isfinite(r.segments).all() and np.isfinite(r.scores).all():
                    out[i].result = r
                else:
                    out[i].error = f"{files[i]}: non-finite segment or score (NaN / Infinity) in its results"
    return out


def detect_files(det, files: Sequence[str | Path], ids: Sequence[str], fps=None, batch: int = 8,
                 load: Callable[[Path], np.ndarray] = load_feature_file) -> Iterator[list[FileOutcome]]:
    """:func:`detect_file_batch` over ``files`` in batches of ``batch``; yields each batch's outcomes."""
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    for start in range(0, len(files), batch):
        yield detect_file_batch(det, files[start:start + batch], ids[start:start + batch], fps, load)
