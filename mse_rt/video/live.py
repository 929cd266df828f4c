"""Live video: sources -> frames -> clips -> backbone -> lagged streaming -> events, for many sources at once.

    pool = VideoStreamPool(det, bb, hop=4, lag=8, threads=StageThreads(decode=1, backbone=2, tad=1))
    pool.add("cam1", "rtsp://cam1/stream"); pool.add("cam2", "match.mp4", realtime=True)
    for upd in pool.updates():          # LiveUpdate per stream and TAD step, in arrival order
        print(upd.stream, upd.final.to_list(), upd.in_progress.to_list(), upd.behind_s)
    pool.close()

Stages (each its own thread, joined by bounded queues; docs/spec/video.md for frames and clips):

- **decode**, one thread per source: frames from :func:`~mse_rt.video.sources.open_source`
  resampled to the TAD config's fps (the source's own reader thread decodes ahead), optionally
  paced to the wall clock (``realtime``: frame ``k`` is taken no earlier than ``k / fps / speed``
  seconds after the first), cut into clips by :class:`~mse_rt.video.clips.ClipSampler` (the
  config's ``num_frames`` / ``feat_stride``, the ``video`` section's spatial mode and size) and
  put into that source's clip queue (at most ``queue_clips`` clips).
- **backbone**, one thread: takes queued clips of every source round-robin, at most
  ``batch_clips`` per call, through ``backbone.features`` ((N, L, S, S, 3) uint8 -> (N, C)),
  and hands each source's rows, in clip order, to the TAD stage.
- **tad**, one thread: pushes the rows into a :class:`~mse_rt.streaming.lagged.StreamPool`
  (hop / lag in feature steps, its emission rule: final detections are never revised) and runs
  all due windows of all sources as one batch; each stream that ran gives a :class:`LiveUpdate`.

The video layer adds no error: the rows a stream receives are exactly ``backbone.features`` of
the clips :func:`~mse_rt.video.clips.iter_clips` cuts offline (rows of one call are independent
of the batch, the backbone contract), so a stream's events equal those of
:class:`~mse_rt.streaming.lagged.LaggedStreamingDetector` on the offline features (tested).

**Backpressure** (``overflow``, when a source's clip queue is full because compute is behind):
``"drop"`` drops the oldest queued clip (counted in ``stats()["dropped_clips"]``); the stream keeps
its time grid, each dropped clip's feature row is the previous row held (sample and hold, as the
frame source does with dropped frames); ``"block"`` makes the decode thread wait (every clip kept;
for files read as fast as possible); ``"raise"`` ends that source with :class:`LiveOverflow`.
Memory per source is bounded by ``queue_clips`` clips plus the source's read-ahead frames and
the TAD window; ``stats()["behind_s"]`` says how many video seconds the newest frame taken from the
source is ahead of the newest feature step the TAD stage has.

**Thread budgets** (:class:`StageThreads`): ``decode`` is FFmpeg's decoder thread count per file /
URL / device source; ``backbone`` and ``tad`` are torch intra-op thread counts set inside those
stage threads (torch keeps the count per thread once a thread has run an op; a backbone or TAD
model on OpenVINO / ONNX Runtime takes its threads when it is loaded, e.g.
``load_backbone(..., threads=1)``). ``None`` leaves torch's default. The defaults are chosen from
the live benchmark (docs/video_latency.md, ``benchmarks/video_latency.py``).

**Errors**: a source that cannot be read, stalls (no frame within ``timeout`` s: ``SourceStalled``)
or overflows under ``"raise"`` ends *that* stream as at its end (the rest decided and returned);
its last update carries the error (``LiveUpdate.error``, ``errors()``); other streams go on.
"""

from __future__ import annotations

import math
import os
import queue
import threading
import time
from collections.abc import Hashable, Iterable, Iterator
from typing import Any, Literal

import numpy as np

from ..errors import InputError
from ..io.results import DetectionResult
from ..streaming.lagged import LiveResult, StreamPool
from .clips import ClipSampler, ClipSpec
from .live_types import (
    DEFAULT_THREADS,
    TORCH_DEFAULTS,
    LiveOverflow,
    LiveUpdate,
    SourceState,
    StageThreads,
    clip_spec_for,
    concat_results,
    set_torch_threads,
    source_stats,
)

__all__ = ["DEFAULT_THREADS", "TORCH_DEFAULTS", "LiveOverflow", "LiveUpdate", "StageThreads", "VideoStreamPool",
           "clip_spec_for"]

OVERFLOW_POLICIES = ("drop", "block", "raise")
_POLL_S = 0.05  # how often waiting stage threads look at the stop flag


class VideoStreamPool:
    """Many live video sources through one backbone and one TAD detector (module docstring).

    Args:
        detector: a :class:`~mse_rt.runtime.Detector` whose config has a ``video`` section (or pass ``spec``).
        backbone: a :class:`~mse_rt.video.backbone.Backbone` (``features``: (N, L, S, S, 3) uint8 ->
            (N, C) float32) taking the spec's clip shape; C must equal the config's ``input_dim``.
        hop, lag: the lagged streaming's hop and lag, in feature steps.
        threads: :class:`StageThreads`.
        queue_clips: clips queued per source before ``overflow`` applies (>= 1).
        overflow: ``"drop"``, ``"block"`` or ``"raise"`` (module docstring).
        batch_clips: most clips per backbone call (all sources together).
        spec: the clip spec (default: from the config's ``video`` section).
        provisional_min_score: in-progress events from this score.
        keep_results: keep every stream's final detections for :meth:`results`.
    """

    def __init__(self, detector, backbone, *, hop: int = 4, lag: int = 8, threads: StageThreads = DEFAULT_THREADS,
                 queue_clips: int = 16, overflow: Literal["drop", "block", "raise"] = "drop", batch_clips: int = 8,
                 spec: ClipSpec | None = None, provisional_min_score: float = 0.3, keep_results: bool = True) -> None:
        self.spec = clip_spec_for(detector.cfg) if spec is None else spec
        if not isinstance(threads, StageThreads):
            raise InputError(f"threads must be a StageThreads, got {type(threads).__name__}")
        if overflow not in OVERFLOW_POLICIES:
            raise InputError(f"overflow must be one of {OVERFLOW_POLICIES}, got {overflow!r}")
        for name, v in (("queue_clips", queue_clips), ("batch_clips", batch_clips)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise InputError(f"{name} must be an integer >= 1, got {v!r}")
        dim = int(detector.cfg["dataset"]["input_dim"])
        if getattr(backbone, "dim", dim) != dim:
            raise InputError(f"the backbone gives {backbone.dim}-wide features, the TAD model takes {dim}")
        shape = getattr(backbone, "clip_shape", self.spec.clip_shape)
        if tuple(shape) != self.spec.clip_shape:
            raise InputError(f"the backbone takes clips {tuple(shape)}, the model's clips are {self.spec.clip_shape}")
        self.det, self.backbone, self.threads = detector, backbone, threads
        self.queue_clips, self.overflow, self.batch_clips = int(queue_clips), overflow, int(batch_clips)
        self.keep_results = keep_results
        self.pool = StreamPool(detector, hop=hop, lag=lag, provisional_min_score=provisional_min_score)
        self._sources: dict[Hashable, SourceState] = {}
        self._finals: dict[Hashable, list[DetectionResult]] = {}
        self._cv = threading.Condition()                # guards every clip deque
        self._tad_q: queue.Queue = queue.Queue(maxsize=4 * self.batch_clips)
        self._out: queue.Queue = queue.Queue()          # LiveUpdate; small, drained by updates()
        self._stop = threading.Event()
        self._pool_lock = threading.Lock()             # the StreamPool: TAD stage vs add()
        self._stage_error: BaseException | None = None
        self._threads = [threading.Thread(target=self._guard, args=(fn,), name=f"mse_rt-live:{fn.__name__}", daemon=True)
                         for fn in (self._backbone_stage, self._tad_stage)]
        for t in self._threads:
            t.start()

    # ------------------------------------------------------------------ sources
    def add(self, name: Hashable, source: str | os.PathLike | Iterable[tuple[float, np.ndarray]] | Any, *,
            realtime: bool = False, speed: float = 1.0, timeout: float | None | Literal["auto"] = "auto",
            **source_options: Any) -> None:
        """Open ``source`` (path, URL, device, iterable of ``(t, frame)`` or an opened FrameSource) as stream ``name``.

        ``realtime``: pace frames to the wall clock (``speed`` x real time), as a live camera
        delivers them. ``timeout``: the stall timeout (s) of :func:`~mse_rt.video.sources.open_source`
        (``"auto"``: its default for URLs / devices, none for files). ``source_options`` go to
        ``open_source`` (not ``fps`` / ``resize``: they come from the clip spec).
        """
        from .readahead import FrameSource
        from .sources import open_source

        if self._stop.is_set():
            raise InputError("the pool is closed")
        if name in self._sources:
            raise InputError(f"stream {name!r} is already open")
        if not (isinstance(speed, (int, float)) and math.isfinite(speed) and speed > 0):
            raise InputError(f"speed must be a positive number, got {speed!r}")
        for key in ("fps", "resize"):
            if key in source_options:
                raise InputError(f"'{key}' comes from the model's clip spec; do not pass it")
        spec = self.spec
        if isinstance(source, FrameSource):
            if source.fps is None or abs(source.fps - spec.fps) > 1e-9:
                raise InputError(f"an opened FrameSource must be resampled to the model's {spec.fps:g} fps")
            src = source
        else:
            if not isinstance(source, (str, os.PathLike)):
                source_options.setdefault("name", str(name))
            else:
                source_options.setdefault("decoder_threads", self.threads.decode)
            src = open_source(source, fps=spec.fps, resize=spec.decode_size if spec.antialias else None,
                              timeout=timeout, **source_options)
        s = SourceState(name, src, bool(realtime), float(speed))
        with self._pool_lock, self._cv:
            self.pool.add(name, fps=spec.fps, video_id=str(name))
            self._finals[name] = []
            self._sources[name] = s
        s.thread = threading.Thread(target=self._decode_stage, args=(s,), name=f"mse_rt-live:decode:{name}", daemon=True)
        s.thread.start()

    def _put(self, s: SourceState, item: tuple) -> bool:
        """Queue a clip of ``s`` under the overflow policy; False when the source must stop."""
        with self._cv:
            if item[0] == "clip":
                while len(s.clips) >= self.queue_clips and not self._stop.is_set():
                    if self.overflow == "drop":
                        i = next((j for j, it in enumerate(s.clips) if it[0] == "clip"), None)
                        if i is not None:
                            del s.clips[i]
                            s.dropped += 1
                            break
                    if self.overflow == "raise":
                        s.clips.append(("error", LiveOverflow(
                            f"{s.name}: more than {self.queue_clips} clips queued: compute is behind the source "
                            f"({s.dropped} dropped before); use overflow='drop' or a faster backbone")))
                        self._cv.notify_all()
                        return False
                    self._cv.wait(_POLL_S)
            s.clips.append(item)
            self._cv.notify_all()
        return not self._stop.is_set()

    def _decode_stage(self, s: SourceState) -> None:
        sampler = ClipSampler(self.spec)
        try:
            for t, frame in s.source:
                now = time.perf_counter()
                if s.start_wall is None:
                    s.start_wall = now
                if s.realtime:
                    wait = s.start_wall + t / s.speed - now
                    if wait > 0:
                        time.sleep(wait)
                s.frames += 1
                clip = sampler.push(t, frame)
                if clip is not None:
                    s.clips_cut += 1
                    if not self._put(s, ("clip", clip.index, clip.frames)):
                        return
                if self._stop.is_set():
                    return
            clip = sampler.finish()
            if clip is not None:
                s.clips_cut += 1
                self._put(s, ("clip", clip.index, clip.frames))
            self._put(s, ("end",))
        except Exception as e:  # noqa: BLE001 - the stream ends with the error; others go on
            self._put(s, ("error", e))
        finally:
            s.source.close()

    # ------------------------------------------------------------------ compute stages
    def _guard(self, fn) -> None:
        try:
            fn()
        except BaseException as e:  # noqa: BLE001 - a stage bug must reach the consumer, not vanish
            self._stage_error = e
            self._stop.set()
            self._out.put(None)

    def _take(self) -> list[tuple[SourceState, tuple]]:
        """Up to ``batch_clips`` queued clips, round-robin over sources, plus the end / error markers met."""
        out: list[tuple[SourceState, tuple]] = []
        with self._cv:
            while not self._stop.is_set() and not any(s.clips for s in self._sources.values()):
                self._cv.wait(_POLL_S)
            n, progress = 0, True
            while progress and n < self.batch_clips:
                progress = False
                for s in list(self._sources.values()):
                    if s.clips and n < self.batch_clips:
                        item = s.clips.popleft()
                        out.append((s, item))
                        n += item[0] == "clip"
                        progress = True
            self._cv.notify_all()
        return out

    def _backbone_stage(self) -> None:
        set_torch_threads(self.threads.backbone)
        while not self._stop.is_set():
            items = self._take()
            clips = [it[2] for _, it in items if it[0] == "clip"]
            rows = np.asarray(self.backbone.features(np.stack(clips)), dtype=np.float32) if clips else None
            j = 0
            per: dict[Hashable, list[tuple[np.ndarray, int]]] = {}  # (row, times): dropped clips stay compact
            order: list[tuple[SourceState, tuple | None]] = []
            for s, it in items:
                if it[0] == "clip":
                    row = rows[j]
                    j += 1
                    gap = it[1] - s.next_index  # clips dropped under overflow: hold the previous row
                    if gap:
                        per.setdefault(s.name, []).append((s.last_row if s.last_row is not None else row, gap))
                    per.setdefault(s.name, []).append((row, 1))
                    s.next_index, s.last_row = it[1] + 1, row
                else:
                    order.append((s, it))
            for name, rs in per.items():
                self._sources[name].rows += sum(n for _, n in rs)
                self._tad_put(("rows", name, rs))
            for s, it in order:
                self._tad_put((it[0], s.name, it[1] if it[0] == "error" else None))

    def _tad_put(self, msg: tuple) -> None:
        while not self._stop.is_set():
            try:
                self._tad_q.put(msg, timeout=_POLL_S)
                return
            except queue.Full:
                continue

    def _tad_stage(self) -> None:
        set_torch_threads(self.threads.tad)
        while not self._stop.is_set():
            try:
                msgs = [self._tad_q.get(timeout=_POLL_S)]
            except queue.Empty:
                continue
            while True:
                try:
                    msgs.append(self._tad_q.get_nowait())
                except queue.Empty:
                    break
            with self._pool_lock:
                self._tad_step(msgs)

    def _tad_step(self, msgs: list[tuple]) -> None:
        # at most `piece` steps per stream between TAD steps: a long run of held rows (a backlog
        # dropped at once) never becomes one huge batch of windows
        piece = self.pool.hop * max(1, int(getattr(self.det, "max_batch", 8)))
        ending: list[tuple[Hashable, BaseException | None]] = []
        pending = 0
        for kind, name, payload in msgs:
            if kind != "rows":
                ending.append((name, payload))
                continue
            for row, n in payload:
                while n > 0:
                    k = min(n, piece - pending)
                    self.pool.push(name, np.repeat(row[None], k, axis=0))
                    n, pending = n - k, pending + k
                    if pending >= piece:
                        self._step()
                        pending = 0
        self._step()
        for name, err in ending:
            s = self._sources[name]
            s.error = err
            self._emit(name, self.pool.close(name), ended=True, error=err)
            s.ended = True  # after the update is queued: updates() returns once every stream ended

    def _step(self) -> None:
        for name, res in self.pool.step().items():
            self._emit(name, res)

    def _emit(self, name: Hashable, res: LiveResult, ended: bool = False, error: BaseException | None = None) -> None:
        s = self._sources[name]
        video_s = res.final.duration if res.steps else 0.0
        if self.keep_results and len(res.final):
            self._finals[name].append(res.final)
        behind = source_stats(s, self.pool.streams.get(name), self.spec)["behind_s"]
        self._out.put(LiveUpdate(name, res.final, res.in_progress, video_s, time.perf_counter(), behind, ended, error))

    # ------------------------------------------------------------------ consumer side
    def updates(self, timeout: float | None = None) -> Iterator[LiveUpdate]:
        """Updates as the TAD stage makes them, until every stream added so far has ended.

        ``timeout``: give up (return) when no update came for that many seconds. A failure inside
        a compute stage is raised here.
        """
        while True:
            if self._sources and all(s.ended for s in self._sources.values()) and self._out.empty():
                return
            try:
                upd = self._out.get(timeout=_POLL_S if timeout is None else min(timeout, _POLL_S))
            except queue.Empty:
                if self._stage_error is not None:
                    raise self._stage_error from None
                if timeout is not None:
                    timeout -= _POLL_S
                    if timeout <= 0:
                        return
                continue
            if upd is None:
                raise self._stage_error  # type: ignore[misc]
            yield upd

    def results(self, name: Hashable) -> DetectionResult:
        """Every final detection of stream ``name`` so far, sorted by score (``keep_results``)."""
        parts = self._finals.get(name)
        if parts is None:
            raise InputError(f"unknown stream {name!r}")
        return concat_results(str(name), parts, self.spec.fps)

    def errors(self) -> dict[Hashable, BaseException]:
        """Streams that ended early, with the error."""
        return {n: s.error for n, s in self._sources.items() if s.error is not None}

    def stats(self) -> dict[Hashable, dict[str, Any]]:
        """Per stream: frames taken, clips cut, dropped_clips, feature rows, TAD steps, queued clips, behind_s /
        wall_behind_s (video / wall seconds not yet through TAD; wall: realtime sources only), ended, error."""
        return {n: source_stats(s, self.pool.streams.get(n), self.spec) for n, s in list(self._sources.items())}

    def close(self) -> None:
        """Stop every stage and source (streams not ended lose their undecided candidates)."""
        self._stop.set()
        with self._cv:
            self._cv.notify_all()
        for s in self._sources.values():
            if s.thread is not None:
                s.thread.join(timeout=1.0)
            s.source.close()
        for t in self._threads:
            t.join(timeout=5.0)

    def __enter__(self) -> VideoStreamPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
