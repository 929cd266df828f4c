"""Lagged (low-latency) streaming: trailing windows, a final line ``lag`` steps behind the newest
step, and many live streams in one forward pass.

    pool = StreamPool(det, hop=4, lag=8)            # lag and hop in feature steps
    pool.add("cam1", fps=30.0); pool.add("cam2", fps=25.0)
    pool.push("cam1", chunk1); pool.push("cam2", chunk2)  # (t, C) new steps, buffered
    out = pool.step()        # {stream id: LiveResult}: every due window of every stream, one batch
    tail = pool.close("cam1")                              # end of that stream: the rest

    s = StreamingDetector(det, hop=4, lag=8)        # one stream, same rule (LaggedStreamingDetector)

How a detection becomes final (per stream):

- Every ``hop`` new steps the model runs on the *trailing window*: the last ``window`` =
  max_seq_len steps, or everything so far while the stream is shorter (padded exactly as offline,
  so early windows equal the offline input of that prefix).
- The run at step tau (the stream has tau steps) sets the *final line* F = tau - lag. Its
  candidates whose end lies in (previous F, F] *cross* the line: they are the only ones this run
  decides, each candidate is decided once, by the newest window, which sees at least ``lag``
  steps after its end.
- *Hold* (``hold_iou``, default 0.3): a crossing candidate that overlaps (IoU >= hold_iou) a
  still-open candidate of the same class with a higher score waits until that one is decided
  (at most a window), so NMS sees them in score order as offline soft-NMS does. Without it,
  pieces of an action that is still going on cross first and suppress the whole action later.
- The deciding candidates go through the config's NMS together; then each is decayed by the
  already emitted detections that score higher, or that it nearly repeats (IoU >= ``dup_iou``,
  default 0.7: the same segment re-estimated by a later window) (soft-NMS: score *
  exp(-IoU^2 / sigma) per such detection of the same class, as if picked first; hard NMS:
  dropped at IoU >= iou_threshold) and kept when its score is still >= min_score. Lower-scored
  alternative segments of an action stay (they help mAP at high tIoU) instead of every later
  duplicate being dropped.
- ``flush`` / ``close`` runs a last window on the newest steps and decides everything left.

What a consumer may rely on: a final detection is never revised or repeated; its times are
absolute seconds from the stream start; it is returned by the push whose steps made it final:
``lag`` to ``lag + hop`` steps after its *predicted* end, or later while a higher-scored
overlapping candidate holds it (at most one window). In-progress events (``LiveResult.in_progress``)
are a view of the newest window only: candidates ending after the final line with score >=
``provisional_min_score``, after NMS; they may change or vanish on the next push, and the final
detection of the same action may differ from them. The delay and accuracy of each lag are
measured by ``benchmarks/stream_latency.py`` (docs/stream_latency.md).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import InputError
from ..io.results import DetectionResult
from ..pipeline.candidates import Candidates
from ..pipeline.inputs import check_chunk, check_fps
from ..pipeline.segments import NMS_LEN_EPS, segment_iou
from .base import StreamingDetector, check_detector, check_rule_params, latency_summary, result_from_steps


def _blocked(c: Candidates, pending: Candidates, hold_iou: float) -> torch.Tensor:
    """(N,) True where a still-open candidate of the same class with a higher score overlaps."""
    if not len(pending.scores):
        return torch.zeros(len(c.scores), dtype=torch.bool)
    iou = segment_iou(c.segments[:, None], pending.segments[None], NMS_LEN_EPS)
    hit = (iou >= hold_iou) & (c.labels[:, None] == pending.labels[None, :]) & (pending.scores[None, :] > c.scores[:, None])
    return hit.any(dim=1)


@dataclass
class LiveResult:
    """What a push / step returned for one stream.

    ``final``: detections that became final (seconds, sorted by score; never revised later).
    ``in_progress``: actions the newest window sees still going on (seconds; provisional).
    ``steps``: steps received so far; ``runs``: windows run by this call.
    """

    final: DetectionResult
    in_progress: DetectionResult
    steps: int
    runs: int


def check_lag_hop(lag, hop, window: int) -> tuple[int, int]:
    """Validated (lag, hop) in steps: integers, 0 <= lag < window, 1 <= hop <= window."""
    for name, v in (("lag", lag), ("hop", hop)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise InputError(f"{name} must be an integer number of feature steps, got {v!r}")
    if not 0 <= lag < window:
        raise InputError(f"lag must be in [0, window={window}) steps, got {lag}")
    if not 1 <= hop <= window:
        raise InputError(f"hop must be an integer in [1, window={window}] steps, got {hop}")
    return int(lag), int(hop)


class LiveStream:
    """The state of one low-latency stream (see the module docstring); the model runs outside.

    ``add(chunk)`` buffers validated steps and queues the run times (tau, in steps) now due in
    ``due``;
    ``window(tau)`` gives the (C, n) window for a run; ``decide(tau, candidates)`` applies the
    emission rule to that run's candidates (absolute grid steps) and returns the final ones.
    """

    def __init__(self, cfg: dict, nms, hop: int, lag: int, fps: float, video_id: str = "stream",
                 provisional_min_score: float = 0.3, latency_history: int = 1000, hold_iou: float | None = 0.3,
                 dup_iou: float | None = 0.7) -> None:
        self.cfg = cfg
        self.window_len = int(cfg["model"]["max_seq_len"])
        self.lag, self.hop = check_lag_hop(lag, hop, self.window_len)
        self.fps = check_fps(fps, "fps")
        self.provisional_min_score, self.hold_iou, self.dup_iou = check_rule_params(provisional_min_score, hold_iou,
                                                                                    dup_iou)
        self.video_id = video_id
        self._nms = nms  # Detector.nms: list[Candidates] -> [(segs, scores, labels, seconds)]
        t = cfg["test_cfg"]
        self._soft = t["nms_method"] == "soft"
        self._none = t["nms_method"] == "none"
        self._sigma, self._iou_thr = float(t["nms_sigma"]), float(t["iou_threshold"])
        self._min_score, self._multiclass = float(t["min_score"]), bool(t["multiclass_nms"])
        d = cfg["dataset"]
        self.stride, self.nframes = d["feat_stride"], d["num_frames"]
        self._chunks: list[torch.Tensor] = []
        self._buf_start = 0
        self.received = 0
        self._next_run = self.hop
        self._last_run = 0
        self._final_line = -math.inf
        self._held = Candidates.empty()  # crossed, but a higher-scored overlapping candidate is still open
        self._emitted = Candidates.empty()  # recent final detections (absolute steps), for cross-time NMS
        self._in_progress = Candidates.empty()
        self.closed = False
        self.due: list[int] = []
        self.latencies: deque[float] = deque(maxlen=latency_history)

    # ------------------------------------------------------------------ buffer
    def _buffer(self) -> torch.Tensor:
        if len(self._chunks) > 1:
            self._chunks = [torch.cat(self._chunks, dim=1)]
        return self._chunks[0]

    def add(self, chunk) -> None:
        """Validate and buffer (t, C) steps (all checked before any is taken); queue due runs."""
        if self.closed:
            raise InputError(f"stream {self.video_id!r} is closed")
        pieces = check_chunk(chunk, self.cfg, self.window_len)
        for x in pieces:
            self._chunks.append(x)
            self.received += x.shape[1]
        while self._next_run <= self.received:
            self.due.append(self._next_run)
            self._next_run += self.hop

    def window(self, tau: int) -> tuple[torch.Tensor, int]:
        """(C, n) features of the run at tau (the last ``window`` steps before tau) and its start."""
        start = max(0, tau - self.window_len)
        buf = self._buffer()
        return buf[:, start - self._buf_start:tau - self._buf_start], start

    def trim(self) -> None:
        """Drop buffered steps no future run can need (bounded memory: window + one chunk)."""
        keep_from = max(0, min(self._next_run, self.received) - self.window_len)
        if keep_from > self._buf_start and self._chunks:
            self._chunks = [self._buffer()[:, keep_from - self._buf_start:]]
            self._buf_start = keep_from
        if len(self._emitted.scores):  # emitted detections older than a window overlap nothing new
            keep = self._emitted.segments[:, 1] > self.received - 2 * self.window_len
            self._emitted = self._emitted.select(keep)

    # ------------------------------------------------------------------ emission rule
    def _decay_by_emitted(self, c: Candidates) -> Candidates:
        if self._none or not len(c.scores) or not len(self._emitted.scores):
            return c
        iou = segment_iou(c.segments[:, None], self._emitted.segments[None], NMS_LEN_EPS)
        if self._multiclass:
            iou = iou * (c.labels[:, None] == self._emitted.labels[None, :])
        # soft-NMS order: only detections that would have been picked first (higher scores) decay,
        # and near-duplicates (IoU >= dup_iou: the same segment re-estimated by a later window)
        earlier = self._emitted.scores[None, :] >= c.scores[:, None]
        if self.dup_iou is not None:
            earlier = earlier | (iou >= self.dup_iou)
        iou = iou * earlier
        if self._soft:
            scores = c.scores * torch.exp(-(iou ** 2).sum(dim=1) / self._sigma)
            keep = scores >= self._min_score
            return Candidates(c.segments[keep], scores[keep], c.labels[keep])
        keep = (iou < self._iou_thr).all(dim=1)
        return c.select(keep)

    def decide(self, tau: int, cands: Candidates, final_line: float | None = None) -> Candidates:
        """Apply the emission rule to the run at tau (candidates in absolute steps); returns the
        detections that became final (absolute steps), and updates the in-progress view."""
        line = tau - self.lag if final_line is None else final_line
        ends = cands.segments[:, 1]
        crossing = (ends <= line) & (ends > self._final_line)
        cross = Candidates.cat([self._held, cands.select(crossing)])
        if self.hold_iou is not None and len(cross.scores) and math.isfinite(line):
            pend = ends > line
            blocked = _blocked(cross, cands.select(pend),
                               self.hold_iou)
            blocked &= cross.segments[:, 1] > line - self.window_len  # held at most a window
            self._held = cross.select(blocked)
            cross = cross.select(~blocked)
        else:
            self._held = Candidates.empty()
        out = Candidates.empty()
        if len(cross.scores):
            segs, scores, labels, _ = self._nms([cross])[0]
            out = self._decay_by_emitted(Candidates(segs, scores, labels))
            self._emitted = Candidates.cat([self._emitted, out])
        later = (ends > line) & (cands.scores >= self.provisional_min_score)
        prov = cands.select(later)
        if len(prov.scores):
            segs, scores, labels, _ = self._nms([prov])[0]
            keep = scores >= self.provisional_min_score
            prov = Candidates(segs[keep], scores[keep], labels[keep])
        self._in_progress = prov
        self._final_line = max(self._final_line, line)
        self._last_run = tau
        return out

    # ------------------------------------------------------------------ results
    def to_result(self, c: Candidates) -> DetectionResult:
        return result_from_steps(self.video_id, c.segments, c.scores, c.labels, self.fps, self.cfg["dataset"],
                                 self.received)

    def result(self, final: Candidates, runs: int) -> LiveResult:
        return LiveResult(self.to_result(final), self.to_result(self._in_progress), self.received, runs)

    def latency_stats(self) -> dict[str, float]:
        """Per-push latency in seconds: count, mean, p50, p95, max over the recorded history."""
        return latency_summary(self.latencies)


def run_windows(det, jobs: list[tuple[LiveStream, int]]) -> list[Candidates]:
    """One batched forward for the windows of many (stream, tau) runs: absolute-step candidates.

    All windows are at most max_seq_len long, so they share the padded length max_seq_len and
    :meth:`Detector.detect_candidates` runs them as batches of ``max_batch``.
    """
    if not jobs:
        return []
    views = [s.window(tau) for s, tau in jobs]
    cands = det.detect_candidates([x.T for x, _ in views])
    return [c.shifted(start) for c, (_, start) in zip(cands, views)]


class StreamPool:
    """Many live streams through one detector: the due windows of all streams run as one batch.

    ``add(stream_id, fps=None, video_id=None)`` opens a stream; ``push(stream_id, chunk)`` buffers
    (t, C) steps (validated first: a bad chunk leaves the stream as it was); ``step()`` runs every
    due window of every stream in batched forward passes and returns ``{stream_id: LiveResult}``
    for the streams that ran; ``push_and_step({id: chunk, ...})`` does both; ``close(stream_id)``
    ends a stream and returns the rest. Results per stream equal those of the stream run alone
    (up to the batching guarantee of :meth:`Detector.detect_batch`).
    """

    def __init__(self, detector, hop: int = 4, lag: int = 8, provisional_min_score: float = 0.3,
                 hold_iou: float | None = 0.3, dup_iou: float | None = 0.7, latency_history: int = 1000) -> None:
        check_detector(detector)
        self.det = detector
        window = int(detector.cfg["model"]["max_seq_len"])
        self.lag, self.hop = check_lag_hop(lag, hop, window)
        check_rule_params(provisional_min_score, hold_iou, dup_iou)  # now, not at the first add()
        if isinstance(latency_history, bool) or not isinstance(latency_history, int) or latency_history < 1:
            raise InputError(f"latency_history must be a positive int (runs kept per stream), got {latency_history!r}")
        self.latency_history = latency_history
        self.provisional_min_score = provisional_min_score
        self.hold_iou, self.dup_iou = hold_iou, dup_iou
        self.streams: dict[Hashable, LiveStream] = {}

    def add(self, stream_id: Hashable, fps: float | None = None, video_id: str | None = None) -> LiveStream:
        if stream_id in self.streams:
            raise InputError(f"stream {stream_id!r} is already open")
        if fps is None:
            fps = self.det.cfg["dataset"]["default_fps"]
            if fps is None:
                raise InputError("fps is required (the config has no dataset.default_fps)")
        s = LiveStream(self.det.cfg, self.det.nms, self.hop, self.lag, fps, str(video_id or stream_id),
                       self.provisional_min_score, latency_history=self.latency_history, hold_iou=self.hold_iou,
                       dup_iou=self.dup_iou)
        self.streams[stream_id] = s
        return s

    def _get(self, stream_id: Hashable) -> LiveStream:
        if stream_id not in self.streams:
            raise InputError(f"unknown or closed stream {stream_id!r}; open it with add()")
        return self.streams[stream_id]

    def push(self, stream_id: Hashable, chunk) -> None:
        """Buffer (t, C) steps of one stream; nothing runs until :meth:`step`."""
        self._get(stream_id).add(chunk)

    def step(self) -> dict[Hashable, LiveResult]:
        """Run every due window of every stream (batched) and apply the emission rule."""
        t0 = time.perf_counter()
        jobs = [(sid, s, tau) for sid, s in self.streams.items() for tau in s.due]
        cands = run_windows(self.det, [(s, tau) for _, s, tau in jobs])
        finals: dict[Hashable, list[Candidates]] = {}
        for (sid, s, tau), c in zip(jobs, cands):
            finals.setdefault(sid, []).append(s.decide(tau, c))
        out = {}
        for sid, parts in finals.items():
            s = self.streams[sid]
            s.due = []
            s.trim()
            s.latencies.append(time.perf_counter() - t0)
            out[sid] = s.result(Candidates.cat(parts), len(parts))
        return out

    def push_and_step(self, chunks: dict) -> dict[Hashable, LiveResult]:
        """Push a chunk to each named stream (all validated before any is taken), then step."""
        for sid in chunks:
            self._get(sid)
        staged = {sid: check_chunk(c, self.det.cfg, self.streams[sid].window_len) for sid, c in chunks.items()}
        for sid, pieces in staged.items():
            for x in pieces:
                self.push(sid, x.T)
        return self.step()

    def close(self, stream_id: Hashable) -> LiveResult:
        """End a stream: pending runs, a last window at its newest step, every remaining candidate."""
        s = self._get(stream_id)
        parts = [s.decide(tau, c) for tau, c in zip(s.due, run_windows(self.det, [(s, tau) for tau in s.due]))]
        s.due = []
        if s.received > 0:  # a last window on the newest steps decides everything left
            (c,) = run_windows(self.det, [(s, s.received)])
            parts.append(s.decide(s.received, c, final_line=math.inf))
        s.closed = True
        del self.streams[stream_id]
        s._in_progress = Candidates.empty()
        return s.result(Candidates.cat(parts), len(parts))


class LaggedStreamingDetector(StreamingDetector, mode="lagged"):
    """One low-latency stream: a :class:`StreamPool` of one (same emission rule, same results).

    ``push`` returns the detections that became final; :attr:`in_progress` holds the newest
    window's view of actions still going on (provisional; None before the first run).
    """

    def __init__(self, detector, hop: int | None = None, window: int | None = None, fps: float | None = None,
                 video_id: str = "stream", latency_history: int = 1000, lag: int | None = 8,
                 provisional_min_score: float = 0.3, hold_iou: float | None = 0.3, dup_iou: float | None = 0.7) -> None:
        cfg = detector.cfg
        if window is not None and window != cfg["model"]["max_seq_len"]:
            raise InputError(f"window must equal max_seq_len ({cfg['model']['max_seq_len']})")
        self.det = detector
        self.lag = lag
        self._pool = StreamPool(detector, hop=4 if hop is None else hop, lag=lag,
                                provisional_min_score=provisional_min_score, hold_iou=hold_iou, dup_iou=dup_iou,
                                latency_history=latency_history)
        self._pool.add(video_id, fps=fps)
        self.window, self.hop, self.video_id = int(cfg["model"]["max_seq_len"]), self._pool.hop, video_id
        self.fps = self._pool.streams[video_id].fps
        self.in_progress: DetectionResult | None = None
        self._flushed = False

    def push(self, chunk) -> DetectionResult:
        if self._flushed:
            raise InputError("stream already flushed; start a new StreamingDetector")
        res = self._pool.push_and_step({self.video_id: chunk}).get(self.video_id)
        if res is None:  # no window was due: nothing became final
            return self._pool.streams[self.video_id].to_result(Candidates.empty())
        self.in_progress = res.in_progress
        return res.final

    def flush(self) -> DetectionResult:
        if self._flushed:
            raise InputError("stream already flushed")
        self._flushed = True
        self.in_progress = None
        return self._pool.close(self.video_id).final

    def latency_stats(self) -> dict[str, float]:
        s = self._pool.streams.get(self.video_id)
        return s.latency_stats() if s is not None else {"count": 0}
