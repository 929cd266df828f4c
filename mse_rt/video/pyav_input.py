"""Opening files, URLs and capture devices with PyAV (FFmpeg): container checks, decoding, RGB conversion.

:func:`open_av` is what :func:`mse_rt.video.sources.open_source` calls for a path, URL or device
string (the contract is that module's docstring). PyAV is imported only here, when a source is
opened (``import mse_rt.video`` never imports it).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..errors import BackendError, InputError, SourceError
from .readahead import FrameSource, RawFrame, Reader, SourceInfo, redact, size_function

# Device formats accepted in "<format>:<device>" sources (FFmpeg libavdevice names; which ones a
# PyAV build has depends on its platform: check av.formats_available).
DEVICE_FORMATS = ("v4l2", "video4linux2", "avfoundation", "dshow", "vfwcap", "gdigrab", "x11grab", "kmsgrab",
                  "fbdev", "lavfi", "android_camera")
# Default stall timeout (s) of URLs and devices; files and iterables have none unless given.
LIVE_TIMEOUT_S = 10.0

_INSTALL_HINT = "pip install 'mse-rt[video]'"


def _import_av():
    try:
        import av
    except ImportError as exc:
        raise BackendError(f"reading videos needs PyAV (FFmpeg bindings): {_INSTALL_HINT}") from exc
    return av


_URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def _classify(src: str) -> tuple[str, str, str | None]:
    """(kind, target passed to av.open, forced container format) of a string source."""
    if _URL_RE.match(src):
        if src.lower().startswith("file://"):
            return "file", src[len("file://"):], None
        return "url", src, None
    if src.startswith("/dev/video"):
        return "device", src, "v4l2"
    head, sep, rest = src.partition(":")
    if sep and head.lower() in DEVICE_FORMATS:
        return "device", rest, head.lower()
    return "file", src, None


def open_av(target: str, *, fps, resize, timeout, tolerance_s, check_length, autorotate, interpolation,
            decoder_threads, stream_index, format, options, name, queue_size, overflow, on_backwards,
            max_pixels) -> FrameSource:
    """A :class:`FrameSource` reading ``target`` (file path, URL or device string) through PyAV.

    Arguments as :func:`mse_rt.video.sources.open_source` (already validated there). Checks the file
    (exists, not a folder, not empty), opens the container, picks the video stream, refuses
    resolutions over ``max_pixels``; the reader thread then decodes and converts.
    """
    av = _import_av()
    from av.video.reformatter import Interpolation, VideoReformatter

    if not isinstance(interpolation, str) or interpolation.upper() not in Interpolation.__members__:
        raise InputError(f"interpolation must be one of {sorted(Interpolation.__members__)}, got {interpolation!r}")
    interpolation = interpolation.upper()
    kind, av_target, fmt = _classify(target)
    label = name or (redact(target) if kind == "url" else target)
    live = kind in ("url", "device")
    if timeout == "auto":
        timeout = LIVE_TIMEOUT_S if live else None
    if format is not None:
        fmt = format
    if kind == "device" and fmt not in av.formats_available and not any(
            fmt in f.split(",") for f in av.formats_available):
        raise BackendError(f"{label}: this PyAV build's FFmpeg has no '{fmt}' capture device "
                           f"(its devices depend on the platform; see av.formats_available)")
    if kind == "file":
        if not os.path.exists(av_target):
            raise SourceError(f"video file not found: {label}", label)
        if os.path.isdir(av_target):
            raise SourceError(f"video source is a folder, not a file: {label}", label)
        if os.path.getsize(av_target) == 0:
            raise SourceError(f"video file is empty (0 bytes): {label}", label)
    open_kwargs: dict[str, Any] = {}
    if fmt is not None:
        open_kwargs["format"] = fmt
    if options:
        open_kwargs["options"] = {str(k): str(v) for k, v in options.items()}
    if timeout is not None:
        open_kwargs["timeout"] = (timeout, timeout)
    try:
        container = av.open(av_target, mode="r", **open_kwargs)
    except (av.FFmpegError, OSError, ValueError, UnicodeError) as exc:
        detail = redact(str(exc))  # FFmpeg's message repeats the URL, credentials included
        raise SourceError(f"cannot open video {label}: {detail} (not a video file, damaged, truncated, or an "
                          "unreachable stream / device)", label) from exc
    try:
        videos = [s for s in container.streams.video
                  if not (int(s.disposition) & int(av.stream.Disposition.attached_pic))]
        if not videos:
            kinds = sorted({s.type for s in container.streams}) or ["none"]
            raise SourceError(f"{label} has no video stream (streams: {', '.join(kinds)})", label)
        if stream_index is not None:
            if not 0 <= stream_index < len(videos):
                raise SourceError(f"{label}: stream_index {stream_index} out of range; it has {len(videos)} "
                                  "video stream(s)", label)
            stream = videos[stream_index]
        else:
            stream = videos[0]
        cc = stream.codec_context
        width, height = int(cc.width or 0), int(cc.height or 0)
        if width * height > max_pixels:
            raise SourceError(f"{label}: resolution {width}x{height} exceeds max_pixels={max_pixels} "
                              "(raise max_pixels to accept it)", label)
        cc.thread_type = "AUTO"
        cc.thread_count = int(decoder_threads)
        tb = stream.time_base
        rate = stream.average_rate or stream.guessed_rate
        info = SourceInfo(
            name=label, kind=kind, live=live, width=width or None, height=height or None,
            codec=cc.name, pix_fmt=cc.pix_fmt, nominal_fps=float(rate) if rate else None,
            declared_duration_s=float(stream.duration * tb) if stream.duration and tb else None,
            declared_frames=int(stream.frames) if stream.frames else None)
        declared_end = _declared_end(container, stream) if check_length and not live else None
    except BaseException:
        container.close()
        raise
    if tolerance_s is None:
        tick = float(tb) if tb else 0.0
        tolerance_s = min(max(tick, 1e-6), 0.25 / fps) if fps else 1e-6
    nominal_period = 1.0 / float(rate) if rate else None
    size_fn = size_function(resize)
    reformatter = VideoReformatter()

    def raw_frames() -> Iterator[RawFrame]:
        last_t: float | None = None
        for frame in container.decode(stream):
            if frame.pts is not None and frame.time_base is not None:
                t = float(frame.pts * frame.time_base)
            elif last_t is None:
                t = 0.0
            elif nominal_period is not None:
                t = last_t + nominal_period
            else:
                raise SourceError(f"{label}: frames without timestamps and no nominal frame rate", label)
            last_t = t
            dur = float(frame.duration * frame.time_base) if frame.duration and frame.time_base else None
            yield RawFrame(t, dur, frame, bool(frame.is_corrupt))

    def convert(frame) -> np.ndarray:
        w, h = frame.width, frame.height
        if w * h > max_pixels:
            raise SourceError(f"{label}: frame of {w}x{h} exceeds max_pixels={max_pixels}", label)
        quarter = 0
        if autorotate:
            rot = frame.rotation or 0
            if rot % 90:
                raise SourceError(f"{label}: display rotation {rot} degrees is not a multiple of 90 "
                                  "(pass autorotate=False to read the frames as stored)", label)
            quarter = (rot // 90) % 4
        disp_h, disp_w = (w, h) if quarter % 2 else (h, w)
        out_h, out_w = size_fn(disp_h, disp_w) if size_fn is not None else (disp_h, disp_w)
        coded_w, coded_h = (out_h, out_w) if quarter % 2 else (out_w, out_h)
        rng = frame.color_range if frame.color_range in (1, 2) else None
        rgb = reformatter.reformat(frame, width=coded_w, height=coded_h, format="rgb24",
                                   interpolation=interpolation, src_color_range=rng)
        arr = rgb.to_ndarray()
        if quarter:
            # rotation is counter-clockwise (FFmpeg's display matrix); np.rot90 turns counter-clockwise
            arr = np.rot90(arr, quarter)
        return np.ascontiguousarray(arr)

    def finish(first_t: float, decoded_end: float) -> None:
        if declared_end is None:
            return
        length = declared_end - first_t
        if decoded_end < declared_end - max(0.5, 0.01 * length):
            raise SourceError(f"{label}: the video ends at {decoded_end:.3f} s but the file declares "
                              f"{declared_end:.3f} s: truncated or damaged file (check_length=False accepts it)",
                              label)

    reader = Reader(name=label, fps=fps, queue_size=queue_size, overflow=overflow, tolerance_s=tolerance_s,
                     on_backwards=on_backwards, raw_frames=raw_frames, convert=convert, finish=finish,
                     cleanup=container.close)
    return FrameSource(reader, info, timeout)


_DURATION_TAG = re.compile(r"^(\d+):(\d{2}):(\d{2}(?:\.\d*)?)$")


def _declared_end(container, stream) -> float | None:
    """End time (s, the stream's clock) of the video as the container declares it; None if unknown."""
    tb = stream.time_base
    start = float(stream.start_time * tb) if stream.start_time is not None and tb else 0.0
    if stream.duration and tb:
        return start + float(stream.duration * tb)
    tag = (stream.metadata or {}).get("DURATION")  # Matroska's per-track length
    if tag:
        m = _DURATION_TAG.match(tag.strip())
        if m:
            return int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
    if len(container.streams) == 1 and container.duration:
        # the container's length covers all streams: only meaningful when the video is alone
        c_start = container.start_time / 1e6 if container.start_time is not None else 0.0
        return c_start + container.duration / 1e6
    return None
