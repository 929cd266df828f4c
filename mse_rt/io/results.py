"""Detection results and the ActivityNet JSON format (docs/spec/units.md)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from .files import atomic_write_text


@dataclass
class DetectionResult:
    """Final detections of one video.

    ``segments`` (M, 2) float32 seconds, ``scores`` (M,) float32, ``labels`` (M,) int64 class ids,
    sorted by descending score. ``timings`` holds per-stage seconds (forward, decode, nms) of the
    call that produced it (shared stages of a batch are split evenly).
    """

    video_id: str
    segments: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    fps: float
    duration: float
    timings: dict = field(default_factory=dict)
    candidates: object = None  # pre-NMS Candidates (grid steps) when asked for

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def to_list(self) -> list[dict]:
        """ActivityNet entries: ``[{"segment": [s, e], "score": p, "label": id}, ...]``."""
        return [
            {"segment": [float(s), float(e)], "score": float(p), "label": int(c)}
            for (s, e), p, c in zip(self.segments.tolist(), self.scores.tolist(), self.labels.tolist())
        ]


def write_results_json(results: list[DetectionResult], path: str | Path,
                       label_names: list[str] | None = None) -> Path:
    """Write ``{"version": ..., "results": {video_id: [...]}, "external_data": {}}`` to ``path``.

    With ``label_names``, each entry's ``label`` is the class name instead of the id. Video ids
    must be unique (a JSON object keeps one entry per key: a duplicate would silently drop a
    video), so duplicates raise :class:`InputError`. The file is written atomically.
    """
    check_unique_ids([r.video_id for r in results])
    out: dict[str, list] = {}
    for r in results:
        # last guard: NaN / Infinity are not JSON (json.dumps would write them anyway) and no
        # evaluator can score them; the Detector's range checks should make this unreachable
        if not (np.isfinite(r.segments).all() and np.isfinite(r.scores).all()):
            raise InputError(f"video {r.video_id!r}: non-finite segment or score (NaN / Infinity) in its results; "
                             "refusing to write them (check fps and duration)")
        entries = r.to_list()
        if label_names is not None:
            for e in entries:
                e["label"] = label_names[e["label"]]
        out[r.video_id] = entries
    return atomic_write_text(path, json.dumps({"version": "mse_rt", "results": out, "external_data": {}}),
                             what="results JSON")


def check_unique_ids(ids: list) -> list[str]:
    """Video ids as strings; :class:`InputError` naming every id given more than once.

    Ids are compared as the strings they become in the results JSON, so ``1`` and ``"1"`` clash.
    """
    as_str = [str(i) for i in ids]
    seen: dict[str, int] = {}
    for i in as_str:
        seen[i] = seen.get(i, 0) + 1
    dups = sorted(i for i, n in seen.items() if n > 1)
    if dups:
        shown = ", ".join(repr(d) for d in dups[:10]) + (f" and {len(dups) - 10} more" if len(dups) > 10 else "")
        raise InputError(f"duplicate video ids: {shown}; each video needs its own id (results are keyed by id; "
                         "the CLI's --ids relpath derives ids from the files' relative paths)")
    return as_str
