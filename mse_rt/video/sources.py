"""Frame sources: a video file, a network stream, a capture device or an iterable, as ``(t, frame)`` pairs.

    with open_source("match.mp4", fps=30.0, resize=(224, 224)) as src:
        for t, frame in src:          # t: seconds (float), frame: (224, 224, 3) uint8 RGB
            ...

What a source yields: ``(timestamp_s, frame)`` with ``frame`` a C-contiguous ``(H, W, 3)`` uint8 RGB
array (any pixel format is converted to rgb24; grayscale gives R = G = B) and ``timestamp_s`` in
seconds from the first frame (the first frame is t = 0; the absolute time of that frame in the
stream's own clock is :attr:`FrameSource.start_time_s`).

**Resampling** (``fps`` given): output frame ``k`` has ``timestamp_s = k / fps`` exactly and shows
the *latest source frame whose time is <= k / fps* (sample and hold: the picture on screen at that
instant). A 60 fps input gives every second frame, a 25 fps input repeats some frames, a
variable-frame-rate input gives the right picture at every grid time. Container timestamps are
rounded to their time base (e.g. 1 ms in Matroska, so a frame due at 66.67 ms is stamped 67 ms);
a source frame therefore counts as shown at ``k / fps`` when its time is ``<= k / fps + tol``, with
``tol`` = one tick of the stream's time base, clamped to [1 us, a quarter of an output period]
(``tolerance_s`` overrides it). The last source frame is held for its own duration (the decoder's
``frame.duration`` when known, else the last interval between frames, else one output period), so
a file of duration D gives the grid times ``k / fps < D``: N frames at 30 fps give N output frames
at 30 fps and N / 2 at 15 fps. FFmpeg's ``fps`` filter rounds each frame to the *nearest* grid time
instead; the two rules can differ by one source frame where a frame lands between grid times.
Without ``fps`` every decoded frame is yielded once, with its own time.

**Colour and orientation**: swscale converts with the frame's own colour matrix and range
(limited or full); a stream's display rotation (phone videos) is applied (``autorotate``), as
players and the ``ffmpeg`` tool do. The sample aspect ratio is ignored (pixels are taken as square).

**Decoder-side resizing** (``resize``): ``(height, width)``, or a callable ``(height, width) ->
(out_height, out_width)`` called with each new source size (e.g. :meth:`ClipSpec.decode_size`
of :mod:`mse_rt.video.clips`). Files and streams are resized by FFmpeg's swscale in the same call
that converts to RGB (bilinear; swscale widens its filter when it shrinks, so it antialiases),
only for the frames the resampling keeps. Iterable sources are resized with
:func:`mse_rt.video.resize.resize_frames` (bilinear, antialiased).

**Read-ahead**: a reader thread decodes, converts and resizes into a bounded queue of
``queue_size`` frames (memory: ``queue_size`` output frames plus the decoder's own buffers); when
the consumer is slower the thread waits (``overflow="block"``, every frame kept) or drops the
oldest queued frame (``overflow="drop_oldest"``, for live sources that must not fall behind: the
grid times then repeat the previous picture, counted in ``stats["dropped"]``). With ``timeout``
set, a consumer that waits more than ``timeout`` seconds for the next frame gets
:class:`SourceStalled` (it may call ``next`` again to keep waiting, or close the source).

**Closing** (``close()``, the ``with`` block, or garbage collection) stops the reader thread and
closes the container. A thread blocked inside a network read ends when FFmpeg's read timeout fires
(the same ``timeout``); one blocked inside a user iterable ends when the iterable returns (the
thread is a daemon, so it never keeps the process alive).

**Sources** (``src``):

- a file path (``str`` or ``os.PathLike``);
- a URL: anything with ``scheme://`` (``rtsp://``, ``rtmp://``, ``srt://``, ``udp://``,
  ``http(s)://``, ...); treated as live (default stall timeout ``LIVE_TIMEOUT_S``, no length
  check); credentials in the URL are hidden in messages;
- a capture device: ``"/dev/videoN"`` (Video4Linux2), or ``"<device format>:<device name>"`` with
  the device format one of :data:`DEVICE_FORMATS`, e.g. ``"v4l2:/dev/video0"``,
  ``"avfoundation:0"``, ``"dshow:video=USB Camera"``, ``"x11grab::0.0"``, or FFmpeg's
  test pattern ``"lavfi:testsrc2=size=320x240:rate=30"``; device settings go in ``options``
  (``{"video_size": "640x480", "framerate": "30", "input_format": "mjpeg"}``);
- any iterable of ``(t, frame)`` pairs: ``t`` seconds (real, non-decreasing), ``frame`` an
  ``(H, W, 3)`` or ``(H, W)`` uint8 array (grayscale is repeated into 3 channels).

Errors: :class:`SourceError` (an :class:`~mse_rt.errors.InputError`) for a source that cannot be
read or gives unusable frames (missing / empty / truncated / non-video file, no video stream, no
frames, resolution over ``max_pixels``, timestamps going backwards, a bad iterable item), always
naming the source; :class:`SourceStalled` for the stall timeout; :class:`~mse_rt.errors.BackendError`
when PyAV is missing or its FFmpeg lacks the requested device.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Literal

import numpy as np

from ..errors import InputError, SourceError, SourceStalled
from .pyav_input import DEVICE_FORMATS, LIVE_TIMEOUT_S, open_av
from .readahead import FrameSource, RawFrame, Reader, SourceInfo, as_real, check_size, size_function
from .resize import resize_frames

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DEVICE_FORMATS",
    "LIVE_TIMEOUT_S",
    "FrameSource",
    "SourceError",
    "SourceInfo",
    "SourceStalled",
    "open_source",
]

# 8K UHD. A bound on decoded frame size: a corrupt or hostile header can claim a resolution whose
# RGB frames (x queue size) would exhaust memory.
DEFAULT_MAX_PIXELS = 7680 * 4320


def open_source(src: str | os.PathLike | Iterable[tuple[float, np.ndarray]], *, fps: float | None = None,
                resize: tuple[int, int] | Callable[[int, int], tuple[int, int]] | None = None,
                queue_size: int = 8, timeout: float | None | Literal["auto"] = "auto",
                max_pixels: int = DEFAULT_MAX_PIXELS, overflow: Literal["block", "drop_oldest"] = "block",
                on_backwards: Literal["error", "drop"] = "error", tolerance_s: float | None = None,
                check_length: bool = True, autorotate: bool = True, interpolation: str = "BILINEAR",
                decoder_threads: int = 0, stream_index: int | None = None, format: str | None = None,
                options: dict[str, str] | None = None, name: str | None = None) -> FrameSource:
    """Open ``src`` as a :class:`FrameSource` of ``(timestamp_s, (H, W, 3) uint8 RGB)`` pairs.

    Args:
        src: file path, URL, capture device or iterable of ``(t_seconds, frame)`` (module docstring).
        fps: output frame rate (frames / s): resample by timestamp (sample and hold, module
            docstring); ``None`` yields every source frame with its own time.
        resize: output frame size ``(height, width)`` in pixels, or a callable
            ``(src_height, src_width) -> (height, width)`` (source size after rotation);
            ``None`` keeps the source size.
        queue_size: read-ahead bound, in output frames (>= 1).
        timeout: stall timeout in seconds (no frame for that long -> :class:`SourceStalled`);
            also FFmpeg's open / read timeout for URLs and devices. ``"auto"``:
            :data:`LIVE_TIMEOUT_S` for URLs and devices, none for files and iterables.
        max_pixels: refuse sources whose frames have more pixels (width * height) than this.
        overflow: ``"block"`` (keep every frame) or ``"drop_oldest"`` (live sources) when the
            read-ahead queue is full.
        on_backwards: a frame whose time is before the previous one: ``"error"`` or ``"drop"`` it.
        tolerance_s: timestamp tolerance of the resampling rule (default: module docstring).
        check_length: at the end of a file, raise :class:`SourceError` when the decoded video
            ends well before the length the container declares (a truncated file): more than
            ``max(0.5 s, 1 %)`` short.
        autorotate: apply the stream's display rotation (multiples of 90 degrees), as players do.
        interpolation: swscale algorithm for decoder-side resizing (``"BILINEAR"``, ``"AREA"``,
            ``"BICUBIC"``, ...).
        decoder_threads: FFmpeg decoder threads (0: FFmpeg's choice).
        stream_index: which video stream (index among the video streams); default the first that
            is not a cover picture.
        format: force FFmpeg's container / device format.
        options: FFmpeg demuxer / device / protocol options (strings), e.g.
            ``{"rtsp_transport": "tcp"}`` or ``{"video_size": "640x480"}``.
        name: how messages name the source (default: the path, the URL without credentials).

    Raises:
        SourceError: the source cannot be opened or is not a usable video (message names it).
        BackendError: PyAV is missing, or its FFmpeg lacks the requested device format.
        InputError: a bad argument value.
    """
    if fps is not None:
        fps = as_real(fps, "fps")
        if not (math.isfinite(fps) and fps > 0):
            raise InputError(f"fps must be a positive finite number, got {fps}")
    if isinstance(queue_size, bool) or not isinstance(queue_size, (int, np.integer)) or queue_size < 1:
        raise InputError(f"queue_size must be an integer >= 1, got {queue_size!r}")
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer)) or max_pixels < 1:
        raise InputError(f"max_pixels must be an integer >= 1, got {max_pixels!r}")
    if overflow not in ("block", "drop_oldest"):
        raise InputError(f"overflow must be 'block' or 'drop_oldest', got {overflow!r}")
    if on_backwards not in ("error", "drop"):
        raise InputError(f"on_backwards must be 'error' or 'drop', got {on_backwards!r}")
    if timeout != "auto" and timeout is not None:
        timeout = as_real(timeout, "timeout")
        if not (math.isfinite(timeout) and timeout > 0):
            raise InputError(f"timeout must be a positive number of seconds or None, got {timeout}")
    if tolerance_s is not None:
        tolerance_s = as_real(tolerance_s, "tolerance_s")
        if not (math.isfinite(tolerance_s) and tolerance_s >= 0):
            raise InputError(f"tolerance_s must be a finite number >= 0, got {tolerance_s}")
    if resize is not None and not callable(resize):
        resize = check_size(resize, "resize")
    if isinstance(decoder_threads, bool) or not isinstance(decoder_threads, (int, np.integer)) or decoder_threads < 0:
        raise InputError(f"decoder_threads must be an integer >= 0, got {decoder_threads!r}")
    common = {"fps": fps, "queue_size": int(queue_size), "overflow": overflow, "on_backwards": on_backwards,
              "max_pixels": int(max_pixels)}

    if isinstance(src, (str, os.PathLike)):
        return open_av(os.fspath(src), resize=resize, timeout=timeout, tolerance_s=tolerance_s,
                       check_length=check_length, autorotate=autorotate, interpolation=interpolation,
                       decoder_threads=decoder_threads, stream_index=stream_index, format=format,
                       options=options, name=name, **common)
    if isinstance(src, (bytes, bytearray)) or not hasattr(src, "__iter__"):
        raise InputError(f"src must be a file path, URL, device or an iterable of (t, frame), got {type(src).__name__}")
    return _open_iterable(src, resize=resize, timeout=None if timeout == "auto" else timeout,
                          tolerance_s=1e-6 if tolerance_s is None else tolerance_s, name=name or "<iterable>",
                          **common)


def _open_iterable(it: Iterable, *, fps, resize, timeout, tolerance_s, name, queue_size, overflow,
                   on_backwards, max_pixels) -> FrameSource:
    size_fn = size_function(resize)
    info = SourceInfo(name=name, kind="iterable", live=False)
    iterator = iter(it)

    def raw_frames() -> Iterator[RawFrame]:
        for j, item in enumerate(iterator):
            try:
                t, frame = item
            except (TypeError, ValueError):
                raise SourceError(f"{name}: item {j} is not a (t, frame) pair: {type(item).__name__}", name) from None
            if isinstance(t, (bool, np.bool_)) or not isinstance(t, (int, float, np.integer, np.floating)) \
                    or not math.isfinite(float(t)):
                raise SourceError(f"{name}: item {j}: time must be a finite number of seconds, got {t!r}", name)
            yield RawFrame(float(t), None, _check_frame(frame, j, name, max_pixels))

    def convert(frame: np.ndarray) -> np.ndarray:
        if size_fn is None:
            return frame
        out_h, out_w = size_fn(frame.shape[0], frame.shape[1])
        return resize_frames(frame, out_h, out_w)

    def cleanup() -> None:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()

    reader = Reader(name=name, fps=fps, queue_size=queue_size, overflow=overflow, tolerance_s=tolerance_s,
                     on_backwards=on_backwards, raw_frames=raw_frames, convert=convert,
                     finish=lambda first_t, end: None, cleanup=cleanup)
    return FrameSource(reader, info, timeout)


def _check_frame(frame: object, j: int, name: str, max_pixels: int) -> np.ndarray:
    if not isinstance(frame, np.ndarray):
        raise SourceError(f"{name}: item {j}: frame must be a numpy array, got {type(frame).__name__}", name)
    if frame.dtype != np.uint8:
        raise SourceError(f"{name}: item {j}: frame dtype must be uint8, got {frame.dtype}", name)
    if frame.ndim == 2:
        frame = np.repeat(frame[:, :, None], 3, axis=2)
    elif frame.ndim == 3 and frame.shape[2] == 1:
        frame = np.repeat(frame, 3, axis=2)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.shape[0] < 1 or frame.shape[1] < 1:
        raise SourceError(f"{name}: item {j}: frame must be (H, W, 3) or (H, W) uint8, got shape {frame.shape}", name)
    if frame.shape[0] * frame.shape[1] > max_pixels:
        raise SourceError(f"{name}: item {j}: frame of {frame.shape[1]}x{frame.shape[0]} exceeds "
                          f"max_pixels={max_pixels}", name)
    return np.ascontiguousarray(frame)
