"""Deterministic synthetic action videos: K action classes that are different *motions* of a shape.

Each video shows a slowly drifting textured background (a camera-pan-like crop of a periodic
noise texture), a few distractor shapes that pop in and out and drift slowly, and, at most one at
a time, action instances: for the frames of an instance one extra shape is drawn on top and moves
in its class's way. Shape, size, colour, position, speed and phase are drawn afresh per instance
from the same ranges for every class, so only the kind of motion tells the classes apart:

``translate``  back and forth along a straight line (within 35 degrees of horizontal), constant speed
``rotate``     spins about its fixed centre
``bounce``     vertical parabolic hops off a floor (a bouncing ball)
``scale``      grows and shrinks about its fixed centre
``flash``      fixed place and size, its colour pulses towards white
``orbit``      its centre circles a fixed point (not in the default class set)
``shake``      fast small oscillation along one direction (not in the default class set)

Distractors come from the same shape/colour/size ranges but only drift slowly (about ten times
slower than ``translate``, bouncing off the frame edges) and turn very slowly; each distractor
slot shows a shape for 4-20 s, then nothing for 0.5-6 s, then a new shape, so neither "a shape
that moves" nor "a shape that appears" is the action.

Time convention (frames and seconds). Frame ``i`` is shown at ``t = i / fps`` seconds (its
presentation time; the encoded stream has pts ``i`` in time base ``1 / fps``). An instance covers
the half-open frame range ``[f0, f1)``: the action shape is drawn in frames ``f0 .. f1 - 1`` and in
no other frame, and its ground truth is ``segment = [f0 / fps, f1 / fps]`` seconds (``round(s * fps)``
gives the frames back exactly). A video of ``N`` frames lasts ``duration = N / fps`` seconds.
Instances never overlap and are sorted by start.

Everything random is drawn once when a video is planned (:func:`render_frames`); frame ``i`` is
then a pure function of the plan, so frames can be rendered in any order and a plan is
reproduced exactly by its seed (bit for bit on one machine; another libm may round a sin or exp
differently and move a pixel by one level, never an instance). The timeline and the action shapes are drawn before the
background and the distractors, so the same seed with ``background=False, distractors=0`` shows
the same instances on a flat black background (what the ground-truth tests check). Geometric
ranges are given in frame heights (``H``) so a small test frame (e.g. 96 x 72) looks like a
scaled-down default one (320 x 240).

Outputs: :func:`render_video` encodes one H.264 ``.mp4`` (PyAV, libx264 or libopenh264);
:func:`render_dataset` writes ``videos/<video_id>.mp4`` and an ActivityNet-format
``annotations.json`` in the format of :func:`mse_rt.apps.synth.write_dataset` (readable by
:func:`mse_rt.eval.load_ground_truth`), with class names as labels.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..errors import BackendError, ConfigError, InputError
from ..io.files import atomic_output, atomic_write_text
from . import scene
from .scene import MOTIONS, cycles_per_s

__all__ = [
    "MOTIONS",
    "SyntheticVideo",
    "VideoSynthSpec",
    "h264_encoder",
    "render_dataset",
    "render_frames",
    "render_video",
]

_H264_ENCODERS = ("libx264", "libopenh264")
_X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")


def _range(spec: VideoSynthSpec, name: str, lo_min: float, hi_max: float = math.inf, positive: bool = False) -> None:
    val = getattr(spec, name)
    if not (isinstance(val, tuple) and len(val) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                              for v in val)):
        raise ConfigError(f"VideoSynthSpec.{name} must be a (low, high) tuple of numbers, got {val!r}")
    lo, hi = float(val[0]), float(val[1])
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi or lo < lo_min or hi > hi_max or (positive and lo <= 0):
        bound = f"> {lo_min}" if positive else f">= {lo_min}"
        raise ConfigError(f"VideoSynthSpec.{name} = {val!r}: need finite low <= high, low {bound}"
                          + (f", high <= {hi_max}" if math.isfinite(hi_max) else ""))


@dataclass(frozen=True)
class VideoSynthSpec:
    """Parameters of synthetic action videos (defaults: 320 x 240 at 30 fps, 30-60 s, 5 classes).

    Sizes and speeds marked ``H`` are in frame heights (so they scale with the frame).
    Lengths and gaps are in seconds and are rounded to whole frames.
    """

    width: int = 320  # pixels; even (H.264 4:2:0)
    height: int = 240  # pixels; even
    fps: float = 30.0  # frames per second
    classes: tuple[str, ...] = ("translate", "rotate", "bounce", "scale", "flash")  # label_id = index here
    min_duration_s: float = 30.0  # video length, uniform in [min, max] seconds
    max_duration_s: float = 60.0
    short_len_s: tuple[float, float] = (1.0, 4.0)  # instance length (seconds), short instances
    long_len_s: tuple[float, float] = (5.0, 12.0)  # long instances, drawn with probability long_prob
    long_prob: float = 0.25
    gap_s: tuple[float, float] = (0.5, 6.0)  # background-only gap before each instance (and the lead-in)
    idle_prob: float = 0.1  # chance that a gap is a long background-only stretch instead
    idle_s: tuple[float, float] = (6.0, 15.0)
    object_size: tuple[float, float] = (0.17, 0.375)  # H; long side of every shape (40-90 px at 240)
    object_aspect: tuple[float, float] = (0.35, 0.8)  # short side / long side
    speed: tuple[float, float] = (0.75, 1.35)  # multiplier of each motion's base rate, per instance
    background: bool = True  # False: flat black background (for ground-truth checks)
    background_drift: tuple[float, float] = (0.02, 0.08)  # H / s, the texture's pan speed
    distractors: int = 3  # distractor slots (each pops in and out)
    distractor_drift: tuple[float, float] = (0.02, 0.08)  # H / s
    crf: int = 23  # libx264 quality (0 lossless .. 51)
    preset: str = "veryfast"  # libx264 speed preset

    def __post_init__(self) -> None:
        for name in ("width", "height", "distractors", "crf"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise ConfigError(f"VideoSynthSpec.{name} must be an integer, got {v!r}")
        if self.width < 32 or self.height < 32 or self.width % 2 or self.height % 2:
            raise ConfigError(f"VideoSynthSpec frame size {self.width} x {self.height}: need even sizes >= 32 "
                              "(H.264 4:2:0 needs even width and height)")
        if self.width < self.height // 2:
            raise ConfigError(f"VideoSynthSpec width {self.width} < height / 2 ({self.height}): shapes would not fit")
        if isinstance(self.fps, bool) or not isinstance(self.fps, (int, float)) or not 1.0 <= self.fps <= 240.0:
            raise ConfigError(f"VideoSynthSpec.fps must be a number in [1, 240], got {self.fps!r}")
        if not isinstance(self.classes, tuple) or not self.classes:
            raise ConfigError(f"VideoSynthSpec.classes must be a non-empty tuple of motion names, got {self.classes!r}")
        unknown = [c for c in self.classes if c not in MOTIONS]
        if unknown:
            raise ConfigError(f"VideoSynthSpec.classes: unknown motion(s) {unknown}; known: {list(MOTIONS)}")
        if len(set(self.classes)) != len(self.classes):
            raise ConfigError(f"VideoSynthSpec.classes has duplicates: {self.classes!r}")
        for name in ("min_duration_s", "max_duration_s", "long_prob", "idle_prob"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ConfigError(f"VideoSynthSpec.{name} must be a finite number, got {v!r}")
        for name in ("long_prob", "idle_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"VideoSynthSpec.{name} must be in [0, 1], got {getattr(self, name)!r}")
        frame_s = 1.0 / self.fps
        _range(self, "short_len_s", frame_s)
        _range(self, "long_len_s", frame_s)
        _range(self, "gap_s", 0.0)
        _range(self, "idle_s", 0.0)
        _range(self, "object_size", 0.0, 0.4, positive=True)  # 0.4 H: a shape at full scale still fits
        _range(self, "object_aspect", 0.0, 1.0, positive=True)
        _range(self, "speed", 0.0, positive=True)
        for motion in self.classes:
            hz = cycles_per_s(motion, self.speed[1])
            if hz >= 0.5 * self.fps:  # faster would alias: a shake at 20 Hz shows as 10 Hz at 30 fps
                raise ConfigError(f"VideoSynthSpec: {motion} at speed {self.speed[1]} repeats {hz:g} times a second, "
                                  f"at or above half the frame rate ({self.fps:g} fps); lower speed[1] or raise fps")
        _range(self, "background_drift", 0.0)
        _range(self, "distractor_drift", 0.0)
        if self.distractors < 0:
            raise ConfigError(f"VideoSynthSpec.distractors must be >= 0, got {self.distractors}")
        if not 0 <= self.crf <= 51:
            raise ConfigError(f"VideoSynthSpec.crf must be in [0, 51], got {self.crf}")
        if self.preset not in _X264_PRESETS:
            raise ConfigError(f"VideoSynthSpec.preset must be a libx264 preset, one of {list(_X264_PRESETS)}; "
                              f"got {self.preset!r}")
        if self.min_duration_s > self.max_duration_s:
            raise ConfigError(f"VideoSynthSpec: min_duration_s {self.min_duration_s} > max_duration_s "
                              f"{self.max_duration_s}")
        # Every video must hold at least one instance (a subset without any breaks mAP): the
        # longest lead-in + the longest short instance + the shortest tail gap must fit.
        need = self.gap_s[1] + self.short_len_s[1] + self.gap_s[0] + 2.0 / self.fps
        if self.min_duration_s < need:
            raise ConfigError(f"VideoSynthSpec.min_duration_s {self.min_duration_s} s is shorter than "
                              f"gap_s[1] + short_len_s[1] + gap_s[0] = {need:.3f} s: a video might hold no instance")



class SyntheticVideo:
    """One planned synthetic video: ``frame(i)`` gives (H, W, 3) uint8 RGB; iterating gives (t_s, frame).

    Attributes: ``spec``; ``fps`` (float); ``num_frames`` N; ``duration`` = N / fps seconds;
    ``frame_segments`` (M, 2) int64 instance frame ranges [f0, f1); ``labels`` (M,) int64 label ids;
    ``annotations``: [{"segment": [f0 / fps, f1 / fps], "label_id", "label"}] (seconds, sorted).
    """

    def __init__(self, spec: VideoSynthSpec, rng: np.random.Generator) -> None:
        self.spec = spec
        self.fps = float(spec.fps)
        n, ranges = scene.plan_timeline(rng, spec)
        self.num_frames = n
        self.duration = n / self.fps
        instances = []
        for f0, f1 in ranges:
            label = int(rng.integers(len(spec.classes)))
            look = scene.random_look(rng, spec)
            motion = spec.classes[label]
            instances.append(scene.Instance(f0, f1, label, motion, look, scene.motion_params(rng, motion, look, spec)))
        self._instances = instances
        self._background = scene.plan_background(rng, spec) if spec.background else None
        self._distractors = scene.plan_distractors(rng, spec, n)
        self._active = np.full(n, -1, np.int64)  # frame -> index of the instance drawn there, -1: none
        for k, inst in enumerate(instances):
            self._active[inst.f0:inst.f1] = k
        self.frame_segments = np.asarray([(i.f0, i.f1) for i in instances], np.int64).reshape(-1, 2)
        self.labels = np.asarray([i.label for i in instances], np.int64)
        self.annotations = [{"segment": [i.f0 / self.fps, i.f1 / self.fps], "label_id": i.label,
                             "label": spec.classes[i.label]} for i in instances]

    def __len__(self) -> int:
        return self.num_frames

    def info(self) -> dict:
        """{"duration": s, "fps", "num_frames", "annotations": [...]} (a copy)."""
        return {"duration": self.duration, "fps": self.fps, "num_frames": self.num_frames,
                "annotations": [dict(a, segment=list(a["segment"])) for a in self.annotations]}

    def frame(self, i: int) -> np.ndarray:
        """Frame ``i`` (shown at i / fps seconds) as a new (H, W, 3) uint8 RGB array."""
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i < self.num_frames:
            raise InputError(f"frame index must be an integer in [0, {self.num_frames}), got {i!r}")
        i = int(i)
        spec = self.spec
        t = i / self.fps
        bg = self._background
        if bg is None:
            frame = np.full((spec.height, spec.width, 3), scene.BLANK, np.uint8)
        else:
            a = 2 * math.pi * t / bg.wobble_period + bg.wobble_phase
            ox = int(round(bg.vx * t + bg.wobble * math.cos(a))) % bg.tw
            oy = int(round(bg.vy * t + bg.wobble * math.sin(a))) % bg.th
            frame = bg.big[oy:oy + spec.height, ox:ox + spec.width].copy()
        W, H = float(spec.width), float(spec.height)
        for d in self._distractors:
            if d.f0 <= i < d.f1:
                tl = (i - d.f0) / self.fps
                R = d.look.radius
                x = R + scene.tri(d.x0 - R + d.vx * tl, W - 2 * R) if W > 2 * R else 0.5 * W
                y = R + scene.tri(d.y0 - R + d.vy * tl, H - 2 * R) if H > 2 * R else 0.5 * H
                scene.draw(frame, d.look, x, y, d.theta0 + d.omega * tl)
        k = int(self._active[i])
        if k >= 0:
            inst = self._instances[k]
            cx, cy, theta, scale, flash = scene.pose(inst, (i - inst.f0) / self.fps)
            scene.draw(frame, inst.look, cx, cy, theta, scale, flash)
        return frame

    def __iter__(self) -> Iterator[tuple[float, np.ndarray]]:
        for i in range(self.num_frames):
            yield i / self.fps, self.frame(i)


def _rng(seed) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    ints = (seed,) if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) else seed
    if (not isinstance(ints, Sequence) or not ints
            or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 0 for v in ints)):
        raise InputError(f"seed must be an integer >= 0, a tuple of them, or a numpy Generator; got {seed!r}")
    return np.random.default_rng([int(v) for v in ints])


def _check_spec(spec) -> VideoSynthSpec:
    if not isinstance(spec, VideoSynthSpec):
        raise InputError(f"spec must be a VideoSynthSpec, got {type(spec).__name__}")
    return spec


def render_frames(seed: int | Sequence[int] | np.random.Generator, spec: VideoSynthSpec = VideoSynthSpec()
                  ) -> SyntheticVideo:
    """Plan one video and return it unrendered: iterate it for (t_s, (H, W, 3) uint8) frames, in order.

    ``seed``: an int >= 0, a tuple of ints (video ``i`` of ``render_dataset(seed=s)`` is ``(s, i)``),
    or a numpy Generator (consumed). ``.annotations`` / ``.info()`` hold the ground truth (seconds).
    Nothing touches disk; frames are rendered on demand (``.frame(i)`` in any order).
    """
    return SyntheticVideo(_check_spec(spec), _rng(seed))


# ---------------------------------------------------------------------------------------------
# encoding


def h264_encoder() -> str:
    """Name of the H.264 encoder PyAV's FFmpeg provides ("libx264" preferred, else "libopenh264").

    Raises BackendError when PyAV is missing or its FFmpeg has neither software encoder.
    """
    try:
        import av
    except ImportError as exc:
        raise BackendError("rendering videos needs PyAV: pip install 'av>=14'") from exc
    for name in _H264_ENCODERS:
        try:
            av.codec.Codec(name, "w")
        except (ValueError, av.error.FFmpegError):
            continue
        return name
    raise BackendError(f"PyAV {av.__version__}'s FFmpeg has no software H.264 encoder ({' / '.join(_H264_ENCODERS)}); "
                       "install the PyPI wheel, which bundles libx264: pip install --force-reinstall 'av>=14'")


def _encode(video: SyntheticVideo, path: Path) -> None:
    import av

    spec = video.spec
    codec = h264_encoder()
    rate = Fraction(spec.fps).limit_denominator(1001)
    with av.open(str(path), mode="w", format="mp4") as container:  # the temp name has no .mp4 suffix
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height = spec.width, spec.height
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = 1 / rate
        if codec == "libx264":
            # one encoder thread: the same bytes whatever the machine (x264 output depends on the
            # thread count); datasets parallelise over videos instead
            stream.options = {"crf": str(spec.crf), "preset": spec.preset, "threads": "1"}
        else:  # libopenh264 has no constant-quality mode: about 0.1 bit per pixel
            stream.bit_rate = int(0.1 * spec.width * spec.height * float(rate))
        for i in range(video.num_frames):
            frame = av.VideoFrame.from_ndarray(video.frame(i), format="rgb24")
            frame.pts = i
            frame.time_base = stream.codec_context.time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def render_video(path: str | Path, seed: int | Sequence[int] | np.random.Generator,
                 spec: VideoSynthSpec = VideoSynthSpec()) -> dict:
    """Render one video to an H.264 ``.mp4`` at ``path`` (written atomically).

    Returns ``{"duration": s, "fps", "num_frames", "annotations": [{"segment": [s, e], "label_id", "label"}]}``
    with segments in seconds, ``[f0 / fps, f1 / fps]`` for the frames ``[f0, f1)`` that show the action.
    """
    video = render_frames(seed, spec)
    h264_encoder()  # fail on a missing encoder before creating any file
    with atomic_output(path, what="video") as tmp:
        _encode(video, tmp)
    return video.info()


def _render_one(job: tuple[str, tuple[int, int], VideoSynthSpec]) -> dict:
    path, seed, spec = job
    return render_video(path, seed, spec)


def render_dataset(out_dir: str | Path, num_videos: int, seed: int, subset: str = "training",
                   spec: VideoSynthSpec = VideoSynthSpec(), prefix: str = "video", overwrite: bool = False,
                   workers: int = 1) -> Path:
    """Write ``videos/<video_id>.mp4`` and ``annotations.json`` under ``out_dir``; returns that folder.

    Video ``i`` is ``<prefix>_<seed>_<i:04d>`` and equals ``render_frames((seed, i), spec)``.
    ``annotations.json`` is ActivityNet format, as :func:`mse_rt.apps.synth.write_dataset` writes it:
    ``{"database": {id: {"subset", "duration", "fps", "annotations": [{"segment", "label_id", "label"}]}}}``.
    A non-empty ``out_dir`` is refused (mixing two renders corrupts a dataset) unless
    ``overwrite=True``, which first deletes its ``annotations.json`` and ``videos/*.mp4`` (nothing
    else). ``annotations.json`` is written last, so an interrupted render leaves no annotations.
    ``workers`` > 1 renders videos in that many processes (the result is the same).
    """
    if isinstance(num_videos, bool) or not isinstance(num_videos, int) or num_videos < 1:
        raise InputError(f"num_videos must be an integer >= 1, got {num_videos!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InputError(f"seed must be an integer >= 0, got {seed!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InputError(f"workers must be an integer >= 1, got {workers!r}")
    if not isinstance(subset, str) or not subset:
        raise InputError(f"subset must be a non-empty string, got {subset!r}")
    spec = _check_spec(spec)
    h264_encoder()
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"output folder {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise InputError(f"output folder {out} is not empty; choose an empty or new folder, or pass "
                             "overwrite=True to replace its annotations.json and videos/*.mp4")
        (out / "annotations.json").unlink(missing_ok=True)
        if (out / "videos").is_dir():
            for old in (out / "videos").glob("*.mp4"):
                old.unlink()
    (out / "videos").mkdir(parents=True, exist_ok=True)
    ids = [f"{prefix}_{seed}_{i:04d}" for i in range(num_videos)]
    jobs = [(str(out / "videos" / f"{vid}.mp4"), (seed, i), spec) for i, vid in enumerate(ids)]
    if workers == 1 or num_videos == 1:
        infos = [_render_one(j) for j in jobs]
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawn, not fork: the parent may hold threads (torch, OpenMP) that a fork would copy mid-state
        with ProcessPoolExecutor(max_workers=min(workers, num_videos),
                                 mp_context=multiprocessing.get_context("spawn")) as pool:
            infos = list(pool.map(_render_one, jobs))
    database = {vid: {"subset": subset, "duration": info["duration"], "fps": info["fps"],
                      "annotations": info["annotations"]} for vid, info in zip(ids, infos)}
    atomic_write_text(out / "annotations.json", json.dumps({"database": database}, indent=1), what="annotations")
    return out
