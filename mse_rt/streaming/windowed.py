"""Windowed streaming: windows of exactly max_seq_len steps, each owning the centre of its span.

    stream = StreamingDetector(det, hop=128)          # lag=None: this mode; window = max_seq_len
    for chunk in feed:                                # chunk: (t, C) new feature steps
        for row in stream.push(chunk).to_list(): ...  # detections that just became final
    tail = stream.flush()                             # end of stream

Windows of exactly ``window`` = max_seq_len steps start every ``hop`` steps, so every window is
padded as the model was trained (not at all). Each window *owns* a stretch of the stream,
``[start + (W - hop) / 2, start + (W + hop) / 2)`` (the first from 0, the last to the end), and
contributes its pre-NMS candidates whose centre lies there: the stretches tile the stream, so
every candidate comes from the window that sees it with the most context. NMS (the config's)
runs over the candidates of two neighbouring stretches, and the detections of the earlier one
are emitted: duplicates across a stretch border are suppressed like any others, and nothing is
reported twice. Detections therefore become final one hop after their window ran. Windows
sized as in training do not lose accuracy against offline detection (docs/stream_latency.md).

Memory is bounded: the feature buffer holds at most ``window + chunk`` steps and the pending
candidates two stretches. A stream no longer than one window is one offline run at flush: exactly
the offline detections. Times are absolute seconds from the start of the stream.
"""

from __future__ import annotations

import time
from collections import deque

import numpy as np
import torch

from ..errors import InputError
from ..io.results import DetectionResult
from ..pipeline.candidates import Candidates
from ..pipeline.inputs import check_chunk, check_fps
from .base import StreamingDetector, latency_summary, result_from_steps


def _owned(c: Candidates, lo: float, hi: float | None) -> Candidates:
    """The candidates whose centre lies in [lo, hi) (hi None: no upper bound)."""
    centre = c.segments.mean(dim=1)
    m = centre >= lo
    if hi is not None:
        m &= centre < hi
    return c.select(m)


class WindowedStreamingDetector(StreamingDetector, mode="windowed"):
    """Sliding-window detection over an endless feature stream (see the module docstring);
    build it as ``StreamingDetector(det, hop=...)`` (``lag=None``). The lagged mode's arguments
    (``provisional_min_score``, ``hold_iou``, ``dup_iou``) are accepted and not used here."""

    def __init__(self, detector, hop: int | None = None, window: int | None = None,
                 fps: float | None = None, video_id: str = "stream", latency_history: int = 1000,
                 lag: int | None = None, provisional_min_score: float = 0.3, hold_iou: float | None = 0.3,
                 dup_iou: float | None = 0.7) -> None:
        cfg = detector.cfg
        self.det = detector
        self.lag = None
        self.window = int(cfg["model"]["max_seq_len"] if window is None else window)
        if hop is None:
            hop = self.window // 2
        if isinstance(hop, bool) or not isinstance(hop, (int, np.integer)) or not 0 < hop <= self.window:
            raise InputError(f"hop must be an integer in [1, window={self.window}] steps, got {hop!r}")
        self.hop = int(hop)
        if self.window != cfg["model"]["max_seq_len"]:
            raise InputError(f"window must equal max_seq_len ({cfg['model']['max_seq_len']}) so that every window "
                             "is padded as in training")
        d = cfg["dataset"]
        if fps is None:
            fps = d["default_fps"]
            if fps is None:
                raise InputError("fps is required (the config has no dataset.default_fps)")
        self.fps = check_fps(fps, "fps")
        self.stride, self.nframes = d["feat_stride"], d["num_frames"]
        self.video_id = video_id
        self.latencies: deque[float] = deque(maxlen=latency_history)
        self._chunks: list[torch.Tensor] = []  # (C, t) pieces of the buffer
        self._buf_start = 0  # absolute step of the buffer's first column
        self._received = 0
        self._next_start = 0  # absolute start of the next window
        self._owned_hi: float | None = None  # end (steps) of the last window's stretch
        self._last: Candidates | None = None  # all candidates of the last window (absolute steps)
        self._pending: Candidates | None = None  # owned candidates of the last stretch, not yet final
        self._pending_lo = 0.0  # where the last window's stretch starts (steps)
        self._flushed = False

    # ------------------------------------------------------------------ helpers
    def _buffer(self) -> torch.Tensor:
        if len(self._chunks) > 1:
            self._chunks = [torch.cat(self._chunks, dim=1)]
        return self._chunks[0]

    def _candidates(self, start: int, length: int) -> Candidates:
        """Pre-NMS candidates of the buffer's [start, start + length), absolute grid steps."""
        x = self._buffer()[:, start - self._buf_start:start - self._buf_start + length].T
        c = self.det.detect_candidates([x])[0]
        return c.shifted(start)

    def _final(self, cands: Candidates, emit_below: float | None) -> DetectionResult:
        """NMS over ``cands``; detections with centre < emit_below (all when None) are returned."""
        segs, scores, labels, _ = self.det.nms([cands])[0]
        if emit_below is not None:
            m = segs.mean(dim=1) < emit_below if len(segs) else torch.zeros(0, dtype=torch.bool)
            segs, scores, labels = segs[m], scores[m], labels[m]
        return result_from_steps(self.video_id, segs, scores, labels, self.fps, self.det.cfg["dataset"], self._received)

    # ------------------------------------------------------------------ public API
    def push(self, chunk: np.ndarray | torch.Tensor) -> DetectionResult:
        """Add (t, C) new feature steps; returns the detections that became final (seconds)."""
        if self._flushed:
            raise InputError("stream already flushed; start a new StreamingDetector")
        t0 = time.perf_counter()
        pieces = check_chunk(chunk, self.det.cfg, self.window)  # all checked before the state changes
        out = []
        for x in pieces:
            out += self._push_checked(x)
        if pieces:
            self.latencies.append(time.perf_counter() - t0)
        return self._merge(out)

    def _push_checked(self, x: torch.Tensor) -> list[DetectionResult]:
        self._chunks.append(x)
        self._received += x.shape[1]
        out = []
        while self._received >= self._next_start + self.window:
            start = self._next_start
            cands = self._candidates(start, self.window)
            lo = -float("inf") if start == 0 else start + (self.window - self.hop) / 2
            hi = start + (self.window + self.hop) / 2
            owned = _owned(cands, lo, hi)
            if self._pending is not None:  # the previous stretch is final now
                res = self._final(Candidates.cat([self._pending, owned]), emit_below=lo)
                out.append(res)
            self._pending, self._last, self._owned_hi, self._pending_lo = owned, cands, hi, lo
            self._next_start += self.hop
        # bounded memory: keep what the next window or a final window at flush can still need
        # (the last `window` steps), at most window + chunk steps in all
        keep_from = min(self._next_start, self._received - self.window)
        if keep_from > self._buf_start:
            self._chunks = [self._buffer()[:, keep_from - self._buf_start:]]
            self._buf_start = keep_from
        return out

    def flush(self) -> DetectionResult:
        """End of stream: every detection not emitted yet."""
        if self._flushed:
            raise InputError("stream already flushed")
        self._flushed = True
        if self._received == 0:
            return self._merge([])
        if self._pending is None:  # never filled a window: one offline run over everything
            return self._final(self._candidates(0, self._received), None)
        last_start = self._next_start - self.hop
        if self._received > last_start + self.window:  # new data: a final, full window at the end
            tail = _owned(self._candidates(self._received - self.window, self.window), self._owned_hi, None)
            return self._final(Candidates.cat([self._pending, tail]), None)
        # no new data: the last window owns the rest of the stream; its candidates keep their
        # original order (soft-NMS breaks exact score ties by order), so a stream of exactly one
        # window reproduces the offline result
        return self._final(_owned(self._last, self._pending_lo, None), None)

    def latency_stats(self) -> dict[str, float]:
        return latency_summary(self.latencies)

    def _merge(self, results: list[DetectionResult]) -> DetectionResult:
        duration = (self._received * self.stride + self.nframes) / self.fps
        if not results:
            return DetectionResult(self.video_id, np.zeros((0, 2), np.float32), np.zeros(0, np.float32),
                                   np.zeros(0, np.int64), self.fps, duration)
        segs = np.concatenate([r.segments for r in results])
        scores = np.concatenate([r.scores for r in results])
        labels = np.concatenate([r.labels for r in results])
        order = np.argsort(-scores, kind="stable")
        return DetectionResult(self.video_id, segs[order], scores[order], labels[order], self.fps, duration)
