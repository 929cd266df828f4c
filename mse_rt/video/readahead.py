"""The read-ahead side of a frame source: a reader thread, the resampling schedule, the consumer's iterator.

Every source kind (:mod:`.pyav_input` for files, URLs and devices; iterables in :mod:`.sources`)
gives :class:`Reader` two functions: ``raw_frames()`` (decoded frames with their times) and
``convert(payload)`` (one frame to (H, W, 3) uint8 RGB, resized). The reader thread schedules the
raw frames onto the output grid ``k / fps`` (sample and hold, docs/spec/video.md), converts only
the frames the grid keeps and queues ``(k0, k1, t, frame)`` runs; :class:`FrameSource`, the
iterator the user holds, expands the runs into one ``(t, frame)`` per grid index. The full
contract (resampling rule, overflow, stall timeout, closing) is the docstring of
:mod:`mse_rt.video.sources`.
"""

from __future__ import annotations

import math
import queue
import re
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..errors import InputError, MseRtError, SourceError, SourceStalled

# How often (s) the reader thread rechecks the stop flag while it waits for queue space.
_POLL_S = 0.05
# How long close() waits for the reader thread to end.
_JOIN_S = 5.0
_CRED_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/@\s'\"]*@")


@dataclass(frozen=True)
class SourceInfo:
    """What is known about a source when it is opened (``None``: unknown until frames arrive).

    ``width`` / ``height``: coded frame size in pixels (before rotation and resizing);
    ``nominal_fps``: the container's average frame rate (frames / s), informative only, the
    timestamps decide; ``declared_duration_s``: the video stream's length as the container
    states it; ``declared_frames``: the frame count the container states (0 or ``None``: unknown).
    """

    name: str
    kind: Literal["file", "url", "device", "iterable"]
    live: bool
    width: int | None = None
    height: int | None = None
    codec: str | None = None
    pix_fmt: str | None = None
    nominal_fps: float | None = None
    declared_duration_s: float | None = None
    declared_frames: int | None = None


def redact(text: str) -> str:
    """``text`` with every URL's ``user:password@`` replaced by ``***@`` (never print credentials)."""
    return _CRED_RE.sub(r"\1***@", text)


def as_real(value: object, what: str) -> float:
    """``value`` as a float when it is a real number (not a bool); :class:`InputError` naming ``what`` otherwise."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InputError(f"{what} must be a number, got {type(value).__name__} ({value!r})")
    return float(value)


def check_size(value: object, what: str) -> tuple[int, int]:
    """A (height, width) pair of positive ints."""
    try:
        h, w = value  # type: ignore[misc]
    except (TypeError, ValueError):
        raise InputError(f"{what} must be (height, width), got {value!r}") from None
    for v in (h, w):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < 1:
            raise InputError(f"{what} must be (height, width) with positive integers, got {value!r}")
    return int(h), int(w)


def size_function(resize) -> Callable[[int, int], tuple[int, int]] | None:
    """``resize`` as a cached (h, w) -> (out_h, out_w) function that validates what it returns."""
    if resize is None:
        return None
    cache: dict[tuple[int, int], tuple[int, int]] = {}

    def target(h: int, w: int) -> tuple[int, int]:
        key = (h, w)
        if key not in cache:
            cache[key] = check_size(resize(h, w) if callable(resize) else resize, "resize")
        return cache[key]

    return target


# --------------------------------------------------------------------------------------------
# the reader thread: raw frames from PyAV or an iterable, then the resampling schedule


class RawFrame:
    """A decoded but not yet converted frame: its time and duration (s), whether the decoder flagged it."""

    __slots__ = ("t", "dur", "payload", "corrupt")

    def __init__(self, t: float, dur: float | None, payload: Any, corrupt: bool = False):
        self.t = t
        self.dur = dur
        self.payload = payload
        self.corrupt = corrupt


class Reader:
    """The reader thread's side: decode, schedule onto the output grid, convert, queue.

    Kept apart from :class:`FrameSource` so that the thread holds no reference to the object the
    user holds: an abandoned source is garbage collected, and its finaliser stops the thread.
    """

    def __init__(self, *, name: str, fps: float | None, queue_size: int, overflow: str, tolerance_s: float,
                 on_backwards: str, raw_frames: Callable[[], Iterator[RawFrame]], convert: Callable[[Any], np.ndarray],
                 finish: Callable[[float, float], None], cleanup: Callable[[], None]):
        self.name = name
        self.fps = fps
        self.start_time_s: float | None = None
        self.stats = {"decoded": 0, "converted": 0, "emitted": 0, "dropped": 0, "corrupt": 0}
        self.queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self.stop = threading.Event()
        self._overflow = overflow
        self._tol = tolerance_s
        self._on_backwards = on_backwards
        self._raw_frames = raw_frames
        self._convert = convert
        self._finish = finish
        self._cleanup = cleanup

    def _put(self, item: tuple, droppable: bool) -> bool:
        """Queue ``item``; False when the source was closed meanwhile."""
        drop = droppable and self._overflow == "drop_oldest"
        while not self.stop.is_set():
            try:
                if drop:
                    self.queue.put_nowait(item)
                else:
                    self.queue.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                if drop:
                    try:
                        old = self.queue.get_nowait()
                    except queue.Empty:
                        continue
                    # only frame items can be queued before this one (end / error come last)
                    self.stats["dropped"] += old[2] - old[1]
        return False

    def _emit(self, k0: int, k1: int, raw: RawFrame) -> bool:
        arr = self._convert(raw.payload)
        self.stats["converted"] += 1
        return self._put(("frames", k0, k1, raw.t, arr), droppable=True)

    def run(self) -> None:
        try:
            self._read_all()
        except MseRtError as exc:
            self._put(("error", exc), droppable=False)
        except Exception as exc:  # any failure inside decoding becomes a typed error
            err = SourceError(f"{self.name}: reading failed after {self.stats['decoded']} frames (damaged or "
                              f"truncated data, or a dropped stream): {type(exc).__name__}: {redact(str(exc))}",
                              self.name)
            err.__cause__ = exc
            self._put(("error", err), droppable=False)
        finally:
            try:
                self._cleanup()
            except Exception:  # closing a broken container must not mask the real error
                pass

    def _read_all(self) -> None:
        fps, tol = self.fps, self._tol
        pending: RawFrame | None = None
        t0: float | None = None
        prev_t: float | None = None    # time of the frame before ``pending``
        k_next = 0                     # first output index not yet given a frame
        seq = 0
        for raw in self._raw_frames():
            if self.stop.is_set():
                return
            self.stats["decoded"] += 1
            if raw.corrupt:
                self.stats["corrupt"] += 1
            if t0 is None:
                t0 = raw.t
                self.start_time_s = t0
            raw.t -= t0
            if pending is not None and raw.t < pending.t:
                if self._on_backwards == "drop":
                    continue
                raise SourceError(f"{self.name}: frame {self.stats['decoded'] - 1} has time {raw.t + t0:.6f} s, "
                                  f"before the previous frame's {pending.t + t0:.6f} s (timestamps go backwards: "
                                  "a damaged or concatenated stream; on_backwards='drop' skips such frames)", self.name)
            if fps is None:
                if not self._emit(seq, seq + 1, raw):
                    return
                seq += 1
                pending = raw
                continue
            if pending is not None:
                # ``pending`` is the latest frame shown at the grid times k / fps with k / fps + tol < raw.t
                n = _grid_count(k_next, raw.t, fps, tol)
                if n and not self._emit(k_next, k_next + n, pending):
                    return
                k_next += n
                prev_t = pending.t
            pending = raw
        if self.stop.is_set():
            return
        if pending is None:
            raise SourceError(f"{self.name}: no video frames could be decoded (empty or damaged video stream)",
                              self.name)
        dur = pending.dur
        if not dur or dur <= 0:
            dur = pending.t - prev_t if prev_t is not None and pending.t > prev_t else None
        if fps is not None:
            end = pending.t + (dur if dur else 1.0 / fps)
            n = _grid_count(k_next, end, fps, tol)
            if n and not self._emit(k_next, k_next + n, pending):
                return
        if self.stop.is_set():
            return
        self._finish(t0, t0 + pending.t + (dur or 0.0))
        self._put(("end",), droppable=False)


class FrameSource:
    """Iterator of ``(timestamp_s: float, frame: (H, W, 3) uint8 RGB)``; use as a context manager.

    Made by :func:`open_source`. Attributes: ``info`` (:class:`SourceInfo`), ``name``, ``fps``
    (output frame rate, ``None`` when not resampling), ``start_time_s`` (the first frame's time in
    the source's own clock, seconds; ``None`` until it is decoded), ``stats`` (counters: ``decoded``
    source frames read, ``converted`` frames converted to RGB, ``emitted`` frames yielded,
    ``dropped`` output frames lost to ``overflow="drop_oldest"`` and filled by holding the previous
    picture, ``corrupt`` frames the decoder flagged as corrupt).
    """

    def __init__(self, reader: Reader, info: SourceInfo, timeout: float | None):
        self.name = reader.name
        self.info = info
        self.fps = reader.fps
        self.stats = reader.stats
        self._r = reader
        self._timeout = timeout
        self._done = False          # end or error seen
        self._closed = False
        self._runs: deque = deque()  # (frame, stop_k) runs of the output grid still to yield
        self._k = 0                 # next output index
        self._last: np.ndarray | None = None
        self._thread = threading.Thread(target=reader.run, name=f"mse_rt-source:{reader.name}", daemon=True)
        self._thread.start()

    @property
    def start_time_s(self) -> float | None:
        return self._r.start_time_s

    def __iter__(self) -> FrameSource:
        return self

    def __next__(self) -> tuple[float, np.ndarray]:
        while True:
            if self._closed:
                raise StopIteration
            if self._runs:
                frame, stop = self._runs[0]
                if self._k < stop:
                    t = self._k / self.fps
                    self._k += 1
                    self.stats["emitted"] += 1
                    return t, frame
                self._runs.popleft()
                continue
            if self._done:
                raise StopIteration
            try:
                item = self._r.queue.get(timeout=self._timeout)
            except queue.Empty:
                raise SourceStalled(f"{self.name}: no frame within {self._timeout} s (stalled source; "
                                    "call next() again to keep waiting, or close it)", self.name,
                                    self._timeout) from None
            kind = item[0]
            if kind == "frames":
                _, k0, k1, t, arr = item
                if self.fps is None:
                    self.stats["emitted"] += 1
                    return t, arr
                if k0 > self._k:  # frames dropped on overflow: hold the previous picture over the gap
                    self._runs.append((self._last if self._last is not None else arr, k0))
                self._runs.append((arr, k1))
                self._last = arr
            elif kind == "end":
                self._done = True
                self._thread.join(timeout=_JOIN_S)
            else:
                self._done = True
                raise item[1]

    def close(self) -> None:
        """Stop the reader thread (waits up to a few seconds for it to end) and release the container."""
        if self._closed:
            return
        self._closed = True
        self._r.stop.set()
        self._runs.clear()
        self._last = None
        # empty the queue so a reader blocked on a full queue sees the stop flag at once
        while True:
            try:
                self._r.queue.get_nowait()
            except queue.Empty:
                break
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=_JOIN_S)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def reader_alive(self) -> bool:
        """True while the reader thread runs (after close: until it has ended)."""
        return self._thread.is_alive()

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        # no join here: a finaliser must not wait; the thread sees the flag within _POLL_S
        r = getattr(self, "_r", None)
        if r is not None:
            r.stop.set()

    def __repr__(self) -> str:
        return f"FrameSource({self.name!r}, kind={self.info.kind}, fps={self.fps}, closed={self._closed})"


def _grid_count(k_next: int, until: float, fps: float, tol: float) -> int:
    """How many grid indices k >= k_next satisfy k / fps + tol < until."""
    n = max(0, math.ceil((until - tol) * fps) - k_next)
    # the ceil above is float arithmetic: settle the boundary with the exact comparison
    while n > 0 and (k_next + n - 1) / fps + tol >= until:
        n -= 1
    while (k_next + n) / fps + tol < until:
        n += 1
    return n
