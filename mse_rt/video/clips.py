"""Clips of a frame stream: what a feature step sees, and the spatial preprocessing of its frames.

    spec = ClipSpec.from_tad_config(cfg, spatial="short_side_crop", size=224, short_side=256)
    clips = iter_clips("match.mp4", spec)      # Clip(index, frames (16, 224, 224, 3) uint8, time_s), ...
    batches = batch_clips(clips, 8)            # ClipBatch(indices, frames (N, L, S, S, 3) uint8, times_s), ...

Conventions (the TAD runtime's, docs/spec/video.md): frames are counted on the grid of the resampled
stream, frame ``k`` at ``k / fps`` seconds (:mod:`mse_rt.video.sources`). Clip ``i`` covers frames
``[stride * i, stride * i + num_frames)`` and stands for its centre, ``(i * stride + num_frames / 2) / fps``
seconds: the runtime's ``(step * feat_stride + 0.5 * num_frames) / fps`` with ``step = i``.

Tail policy (``ClipSpec.tail``):

- ``"drop"`` (default, as the reference feature extractors): only complete clips. A video of
  ``n`` frames gives ``T = floor((n - L) / stride) + 1`` clips (0 when ``n < L``). Then the
  runtime's default duration ``(T * stride + L) / fps`` is the video's own length ``n / fps`` plus
  at most one stride: ``n < T * stride + L <= n + stride`` frames (the closest any whole number of
  clips can come; every clip lies inside the video).
- ``"pad"``: one more clip when frames remain after the last complete clip, or when the video is
  shorter than one clip: it repeats the last frame to fill up ``L`` frames, so every frame is in
  some clip (stride <= L) and a video of at least one frame gives at least one clip. Then
  ``T = ceil((n - L) / stride) + 1`` for ``n >= L >= stride``; the runtime's default duration can
  exceed the video by up to ``L`` frames: pass the real duration ``n / fps`` to the detector.

Spatial preprocessing (``ClipSpec.spatial``, :func:`preprocess_frames`): ``"resize"`` to
``size x size`` or ``"short_side_crop"`` (short side to ``short_side``, then the centre
``size x size`` crop), bilinear, antialiased when shrinking (:mod:`mse_rt.video.resize`). Each step
is skipped when the frame already has its output size, so frames resized by the decoder to
:meth:`ClipSpec.decode_size` only get cropped. Values stay uint8; the backbone scales them
(``x * 2 / 255 - 1``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, fields
from typing import Any, NamedTuple

import numpy as np

from ..errors import ConfigError, InputError
from .resize import center_crop, check_rgb_frames, resize_frames, short_side_size

__all__ = [
    "SPATIAL_MODES",
    "TAIL_POLICIES",
    "Clip",
    "ClipBatch",
    "ClipSampler",
    "ClipSpec",
    "batch_clips",
    "center_crop",
    "iter_clips",
    "preprocess_frames",
    "resize_frames",
    "short_side_size",
]

SPATIAL_MODES = ("resize", "short_side_crop")
TAIL_POLICIES = ("drop", "pad")
# Frame sizes beyond this are refused by ClipSpec (a typo guard, not a hardware limit).
_MAX_SIZE = 4096


def _int_value(value: object, name: str, low: int) -> int:
    """An integer >= low; integral floats (YAML's 4.0) are accepted; ConfigError otherwise."""
    if isinstance(value, (bool, np.bool_)):
        raise ConfigError(f"ClipSpec.{name} must be an integer >= {low}, got {value!r}")
    if isinstance(value, (int, np.integer)):
        v = int(value)
    elif isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer():
        v = int(value)
    else:
        raise ConfigError(f"ClipSpec.{name} must be an integer >= {low}, got {value!r}")
    if v < low:
        raise ConfigError(f"ClipSpec.{name} must be an integer >= {low}, got {v}")
    return v


@dataclass(frozen=True)
class ClipSpec:
    """How features are cut from a video: clip length and stride (frames), frame rate, spatial size.

    Fields:
        num_frames: L, frames per clip (the TAD config's ``dataset.num_frames``).
        stride: frames between the starts of consecutive clips (``dataset.feat_stride``).
        fps: frame rate (frames / s) the video is resampled to before cutting clips.
        spatial: ``"resize"`` or ``"short_side_crop"`` (module docstring).
        size: output frame side S in pixels: clips are (L, S, S, 3) uint8.
        short_side: the short side before the centre crop (``"short_side_crop"`` only; must be
            >= size). ``None`` there means ``round(size * 8 / 7)`` (256 for 224, 128 for 112, the
            Kinetics ratio); it must stay ``None`` for ``"resize"``.
        antialias: antialiased bilinear downscaling (module docstring).
        tail: ``"drop"`` or ``"pad"``: the last, incomplete clip (module docstring).

    Invalid values raise :class:`~mse_rt.errors.ConfigError` naming the field.
    """

    num_frames: int = 16
    stride: int = 4
    fps: float = 30.0
    spatial: str = "short_side_crop"
    size: int = 224
    short_side: int | None = None
    antialias: bool = True
    tail: str = "drop"

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "num_frames", _int_value(self.num_frames, "num_frames", 1))
        set_(self, "stride", _int_value(self.stride, "stride", 1))
        fps = self.fps
        if isinstance(fps, (bool, np.bool_)) or not isinstance(fps, (int, float, np.integer, np.floating)) \
                or not (math.isfinite(fps) and fps > 0):
            raise ConfigError(f"ClipSpec.fps must be a positive finite number (frames / s), got {fps!r}")
        set_(self, "fps", float(fps))
        if self.spatial not in SPATIAL_MODES:
            raise ConfigError(f"ClipSpec.spatial must be one of {SPATIAL_MODES}, got {self.spatial!r}")
        size = _int_value(self.size, "size", 1)
        if size > _MAX_SIZE:
            raise ConfigError(f"ClipSpec.size must be <= {_MAX_SIZE}, got {size}")
        set_(self, "size", size)
        if self.spatial == "resize":
            if self.short_side is not None:
                raise ConfigError("ClipSpec.short_side is only used with spatial='short_side_crop'; "
                                  f"leave it None for spatial='resize' (got {self.short_side!r})")
        else:
            short = round(size * 8 / 7) if self.short_side is None else _int_value(self.short_side, "short_side", 1)
            if not size <= short <= _MAX_SIZE:
                raise ConfigError(f"ClipSpec.short_side must be in [size={size}, {_MAX_SIZE}] (the crop must fit), "
                                  f"got {short}")
            set_(self, "short_side", short)
        if not isinstance(self.antialias, (bool, np.bool_)):
            raise ConfigError(f"ClipSpec.antialias must be a bool, got {self.antialias!r}")
        set_(self, "antialias", bool(self.antialias))
        if self.tail not in TAIL_POLICIES:
            raise ConfigError(f"ClipSpec.tail must be one of {TAIL_POLICIES}, got {self.tail!r}")

    # ---- construction / serialisation

    @classmethod
    def from_tad_config(cls, cfg: dict, *, fps: float | None = None, spatial: str = "short_side_crop",
                        size: int = 224, short_side: int | None = None, antialias: bool = True,
                        tail: str = "drop") -> ClipSpec:
        """Clip length / stride / fps from a TAD config dict; spatial settings from the arguments.

        Reads ``cfg["dataset"]["num_frames"]``, ``["feat_stride"]`` and ``["default_fps"]``
        (``fps`` overrides it; one of them is required).
        """
        if not isinstance(cfg, dict) or not isinstance(cfg.get("dataset"), dict):
            raise ConfigError("TAD config must be a dict with a 'dataset' section")
        d = cfg["dataset"]
        for key in ("num_frames", "feat_stride"):
            if key not in d:
                raise ConfigError(f"TAD config lacks 'dataset.{key}'")
        if fps is None:
            fps = d.get("default_fps")
            if fps is None:
                raise ConfigError("no frame rate: the TAD config has no 'dataset.default_fps'; pass fps=")
        return cls(num_frames=d["num_frames"], stride=d["feat_stride"], fps=fps, spatial=spatial, size=size,
                   short_side=short_side, antialias=antialias, tail=tail)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of every field (the resolved ``short_side`` included)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClipSpec:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`ConfigError` (a typo must not pass)."""
        if not isinstance(d, dict):
            raise ConfigError(f"ClipSpec.from_dict needs a dict, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"ClipSpec: unknown key(s) {unknown}; known: {sorted(known)}")
        return cls(**d)

    # ---- geometry in time

    @property
    def clip_shape(self) -> tuple[int, int, int, int]:
        """(L, S, S, 3): the shape of one clip."""
        return (self.num_frames, self.size, self.size, 3)

    def frame_range(self, i: int) -> tuple[int, int]:
        """Frames ``[start, stop)`` of clip ``i`` on the resampled grid (stop exclusive)."""
        return self.stride * i, self.stride * i + self.num_frames

    def clip_time(self, i):
        """Seconds of clip ``i``'s centre, ``(i * stride + num_frames / 2) / fps``.

        ``i`` an int gives a float; an array of indices gives a float64 array.
        """
        if isinstance(i, (int, np.integer)) and not isinstance(i, bool):
            return (int(i) * self.stride + 0.5 * self.num_frames) / self.fps
        return (np.asarray(i, dtype=np.float64) * self.stride + 0.5 * self.num_frames) / self.fps

    def num_clips(self, n_frames: int) -> int:
        """T, the number of clips a stream of ``n_frames`` resampled frames gives under ``tail``."""
        n = int(n_frames)
        if n < 0:
            raise InputError(f"n_frames must be >= 0, got {n}")
        L, s = self.num_frames, self.stride
        full = (n - L) // s + 1 if n >= L else 0
        if self.tail == "pad" and _pad_clip_needed(n, full, L, s):
            full += 1
        return full

    def tad_duration(self, num_clips: int) -> float:
        """The TAD runtime's default duration (s) for ``num_clips`` feature steps: ``(T * stride + L) / fps``."""
        return (int(num_clips) * self.stride + self.num_frames) / self.fps

    # ---- geometry in space

    def decode_size(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) the decoder should resize a ``height x width`` frame to.

        ``"resize"``: (size, size). ``"short_side_crop"``: the short-side resize; the crop is left
        to :func:`preprocess_frames`. Pass as ``open_source(..., resize=spec.decode_size)``.
        """
        if self.spatial == "resize":
            return self.size, self.size
        return short_side_size(height, width, self.short_side)


# --------------------------------------------------------------------------------------------
# spatial preprocessing


def preprocess_frames(frames: np.ndarray, spec: ClipSpec) -> np.ndarray:
    """Frames of any size -> (..., S, S, 3) uint8 by ``spec``'s spatial mode (module docstring).

    Steps whose output size the frames already have are skipped, so frames the decoder resized to
    ``spec.decode_size`` only get cropped. The result may be a view of the input.
    """
    frames = check_rgb_frames(frames, "preprocess_frames")
    if spec.spatial == "resize":
        return resize_frames(frames, spec.size, spec.size, antialias=spec.antialias)
    h, w = frames.shape[-3], frames.shape[-2]
    nh, nw = short_side_size(h, w, spec.short_side)
    return center_crop(resize_frames(frames, nh, nw, antialias=spec.antialias), spec.size)


# --------------------------------------------------------------------------------------------
# clips


def _pad_clip_needed(n: int, full: int, L: int, s: int) -> bool:
    """Whether ``tail="pad"`` adds clip ``full`` to the ``full`` complete clips of an n-frame stream:
    frames are left after the last complete clip (none when it ends at frame n) and the next clip
    starts before the end (frames between clips, when stride > L, belong to no clip)."""
    return n > 0 and s * full < n and (full == 0 or s * (full - 1) + L < n)


class Clip(NamedTuple):
    """One clip: ``index`` i, ``frames`` (L, S, S, 3) uint8 RGB (a new array), ``time_s`` its centre (s)."""

    index: int
    frames: np.ndarray
    time_s: float


class ClipBatch(NamedTuple):
    """Consecutive clips: ``indices`` (N,) int64, ``frames`` (N, L, S, S, 3) uint8, ``times_s`` (N,) float64."""

    indices: np.ndarray
    frames: np.ndarray
    times_s: np.ndarray


class ClipSampler:
    """Cuts a resampled frame stream into clips, holding only the last L frames (a ring buffer).

    Feed it frame ``k`` (``k = 0, 1, ...``) with :meth:`push`, or a whole stream with :meth:`clips`.
    Frame ``k`` must have time ``k / spec.fps`` (the output of ``open_source(..., fps=spec.fps)``);
    otherwise :class:`~mse_rt.errors.InputError` (``check_times=False`` skips the check, e.g. for
    frames already on the grid without times). Frames may have any size: each is preprocessed to
    S x S (:func:`preprocess_frames`) unless no clip uses it (``stride > num_frames``).
    Memory: L preprocessed frames plus the clip being returned.
    """

    def __init__(self, spec: ClipSpec, *, check_times: bool = True):
        if not isinstance(spec, ClipSpec):
            raise InputError(f"ClipSampler needs a ClipSpec, got {type(spec).__name__}")
        self.spec = spec
        self.check_times = check_times
        self._ring = np.empty(spec.clip_shape, dtype=np.uint8)
        self.reset()

    def reset(self) -> None:
        """Forget the stream: the next pushed frame is frame 0."""
        self.frames_seen = 0     # frames pushed
        self.clips_emitted = 0   # clips returned (the next clip's index)
        self._finished = False

    def push(self, t: float | None, frame: np.ndarray) -> Clip | None:
        """Add the next frame (time ``t`` s, (H, W, 3) uint8); returns the clip it completes, if any."""
        if self._finished:
            raise InputError("ClipSampler: push after finish(); call reset() to start a new stream")
        spec, k = self.spec, self.frames_seen
        if self.check_times:
            expect = k / spec.fps
            if t is None or not math.isfinite(float(t)) or abs(float(t) - expect) > 1e-3 / spec.fps:
                raise InputError(f"ClipSampler: frame {k} has time {t} s, expected {expect:.6f} s = {k} / fps "
                                 f"(fps={spec.fps}): feed frames resampled to the spec's rate "
                                 "(open_source(..., fps=spec.fps)), in order, from the start")
        frame = check_rgb_frames(frame, f"ClipSampler frame {k}")
        if frame.ndim != 3:
            raise InputError(f"ClipSampler frame {k}: one (H, W, 3) frame expected, got shape {frame.shape}")
        L, s = spec.num_frames, spec.stride
        if k % s < L:  # some clip uses frame k
            self._ring[k % L] = preprocess_frames(frame, spec)
        self.frames_seen = k + 1
        if k + 1 >= L and (k + 1 - L) % s == 0:
            return self._make_clip(k + 1 - L, k + 1, k + 1)
        return None

    def _make_clip(self, start: int, stop: int, have: int) -> Clip:
        """Clip of frames [start, stop); frames >= ``have`` (beyond the stream) repeat frame have - 1."""
        L = self.spec.num_frames
        idx = [(min(f, have - 1)) % L for f in range(start, stop)]
        first = idx[0]
        if stop <= have and first != 0:
            frames = np.concatenate([self._ring[first:], self._ring[:first]])
        elif stop <= have:
            frames = self._ring.copy()
        else:
            frames = self._ring[idx]  # fancy indexing copies
        i = self.clips_emitted
        self.clips_emitted += 1
        return Clip(i, frames, self.spec.clip_time(i))

    def finish(self) -> Clip | None:
        """End of stream: with ``tail="pad"``, the padded last clip (if any frames are left over)."""
        if self._finished:
            return None
        self._finished = True
        spec, n = self.spec, self.frames_seen
        if spec.tail != "pad" or not _pad_clip_needed(n, self.clips_emitted, spec.num_frames, spec.stride):
            return None
        start = spec.stride * self.clips_emitted
        return self._make_clip(start, start + spec.num_frames, n)

    def clips(self, frames: Iterable[tuple[float, np.ndarray]]) -> Iterator[Clip]:
        """Every clip of a whole stream of ``(t, frame)`` pairs, the tail included (then ``finish``)."""
        for t, frame in frames:
            clip = self.push(t, frame)
            if clip is not None:
                yield clip
        clip = self.finish()
        if clip is not None:
            yield clip


def batch_clips(clips: Iterable[Clip], batch_size: int) -> Iterator[ClipBatch]:
    """Group clips into :class:`ClipBatch` es of ``batch_size`` (the last one may be smaller).

    Each batch is a new (N, L, S, S, 3) uint8 array; memory: one batch.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise InputError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    buf: np.ndarray | None = None
    idx: list[int] = []
    times: list[float] = []
    for clip in clips:
        if buf is None:
            buf = np.empty((batch_size, *clip.frames.shape), dtype=np.uint8)
        elif clip.frames.shape != buf.shape[1:]:
            raise InputError(f"batch_clips: clip {clip.index} has shape {clip.frames.shape}, "
                             f"the batch {buf.shape[1:]}")
        buf[len(idx)] = clip.frames
        idx.append(clip.index)
        times.append(clip.time_s)
        if len(idx) == batch_size:
            yield ClipBatch(np.asarray(idx, dtype=np.int64), buf, np.asarray(times, dtype=np.float64))
            buf, idx, times = None, [], []
    if idx:
        yield ClipBatch(np.asarray(idx, dtype=np.int64), buf[:len(idx)], np.asarray(times, dtype=np.float64))


def iter_clips(src: str | os.PathLike | Iterable[tuple[float, np.ndarray]], spec: ClipSpec,
               **source_kwargs: Any) -> Iterator[Clip]:
    """Clips of a video: :func:`~mse_rt.video.sources.open_source` at ``spec.fps``, then :class:`ClipSampler`.

    The decoder resizes to ``spec.decode_size`` when ``spec.antialias`` (swscale's bilinear
    antialiases like :func:`resize_frames`); with ``antialias=False`` it only converts to RGB and
    :func:`resize_frames` does all the resizing. ``source_kwargs`` go to ``open_source``
    (``timeout``, ``queue_size``, ...; not ``fps`` / ``resize``). The source is closed when the
    iterator ends or is closed.
    """
    from .sources import open_source  # lazy: PyAV's module is only imported when a video is read

    for key in ("fps", "resize"):
        if key in source_kwargs:
            raise InputError(f"iter_clips: '{key}' comes from the ClipSpec; do not pass it")
    resize = spec.decode_size if spec.antialias else None
    with open_source(src, fps=spec.fps, resize=resize, **source_kwargs) as source:
        yield from ClipSampler(spec).clips(source)
