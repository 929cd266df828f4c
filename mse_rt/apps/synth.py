"""Deterministic synthetic TAD data: feature videos (T x C) with K action classes.

Every video is background (a slow random walk plus noise) with action instances laid on top:
an instance of class c adds ``amplitude * ramp(t) * pattern_c`` where ``pattern_c`` is a fixed unit
direction per class and ``ramp`` rises over the first ``ramp_frac`` of the instance and falls
over the last, so boundaries are visible but soft. Lengths are THUMOS-like: many short
instances (4-24 steps), some long ones (40-120 steps), never overlapping within a video.

Written like a real dataset: ``features/<video_id>.npy`` (T, C) float32, and an ActivityNet-format
``annotations.json`` whose segments are in seconds: ``(step * feat_stride + 0.5 * num_frames) / fps``
(the inverse of what the runtime reports), label ids 0..K-1 and a ``subset`` per video.

The output folder must be new or empty: a dataset is never written over another one (its
annotations replaced, its feature files mixed with the new ones) unless asked (``overwrite``).
Overwriting replaces only what a dataset consists of: ``annotations.json`` is removed first and
written last, and the old ``features/*.npy`` that the new dataset does not have are removed, so a
folder holding ``annotations.json`` always holds exactly one dataset (an interrupted overwrite
leaves no annotations, which readers refuse, rather than a mix).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError, OutputError
from ..io.files import atomic_output, atomic_write_text
from ..pipeline.segments import to_seconds


@dataclass(frozen=True)
class SyntheticSpec:
    """Parameters of a synthetic dataset (defaults: the bundled demo's)."""

    num_classes: int = 4
    channels: int = 32
    min_len: int = 160
    max_len: int = 480
    fps: float = 30.0
    feat_stride: int = 4
    num_frames: int = 16
    amplitude: float = 2.5
    noise: float = 0.6
    ramp_frac: float = 0.2
    long_prob: float = 0.2
    pattern_seed: int = 1234

    def seconds(self, steps) -> np.ndarray:
        """Grid steps -> seconds (float64), the runtime's convention (docs/spec/units.md)."""
        return to_seconds(np.asarray(steps, dtype=np.float64), self.fps, self.feat_stride, self.num_frames)


def class_patterns(spec: SyntheticSpec) -> np.ndarray:
    """(K, C) unit pattern directions, one per class, fixed by ``pattern_seed``."""
    rng = np.random.default_rng(spec.pattern_seed)
    p = rng.standard_normal((spec.num_classes, spec.channels))
    return p / np.linalg.norm(p, axis=1, keepdims=True)


def make_video(rng: np.random.Generator, spec: SyntheticSpec, patterns: np.ndarray):
    """One video: (features (T, C) float32, segments (N, 2) grid steps, labels (N,) int)."""
    T = int(rng.integers(spec.min_len, spec.max_len + 1))
    drift = np.cumsum(rng.standard_normal((T, spec.channels)) * 0.05, axis=0)
    feats = drift + rng.standard_normal((T, spec.channels)) * spec.noise
    segs, labels = [], []
    t = int(rng.integers(2, 20))
    while True:
        length = int(rng.integers(40, 121)) if rng.random() < spec.long_prob else int(rng.integers(4, 25))
        if t + length >= T - 2:
            break
        c = int(rng.integers(spec.num_classes))
        ramp_n = max(1, int(round(length * spec.ramp_frac)))
        ramp = np.ones(length)
        ramp[:ramp_n] = np.linspace(1.0 / ramp_n, 1.0, ramp_n)
        ramp[-ramp_n:] = np.minimum(ramp[-ramp_n:], np.linspace(1.0, 1.0 / ramp_n, ramp_n))
        feats[t:t + length] += spec.amplitude * ramp[:, None] * patterns[c][None, :]
        segs.append((float(t), float(t + length)))
        labels.append(c)
        t += length + int(rng.integers(3, 40))
    return feats.astype(np.float32), np.asarray(segs, dtype=np.float32).reshape(-1, 2), np.asarray(labels, np.int64)


def _prepare_folder(out: Path, overwrite: bool, vids: set[str]) -> None:
    """Check ``out`` can take a new dataset (see the module docstring) and clear what it replaces."""
    if out.exists() and not out.is_dir():
        raise InputError(f"dataset folder {out} is a file; give a folder (new or empty) for the synthetic dataset")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise InputError(f"dataset folder {out} is not empty; choose a new or empty folder, or pass --overwrite "
                         "(overwrite=True) to replace the dataset there (annotations.json and features/*.npy)")
    feats = out / "features"
    if feats.exists() and not feats.is_dir():
        raise InputError(f"{feats} is a file; the dataset's feature files go into a folder of that name")
    try:
        feats.mkdir(parents=True, exist_ok=True)
        (out / "annotations.json").unlink(missing_ok=True)  # first: no dataset while the features change
        for stale in feats.glob("*.npy"):
            if stale.stem not in vids:
                stale.unlink()
    except OSError as exc:
        raise OutputError(f"cannot write dataset folder {out}: {exc.strerror or exc}") from exc


def write_dataset(out_dir: str | Path, num_videos: int, seed: int, subset: str = "training",
                  spec: SyntheticSpec = SyntheticSpec(), prefix: str = "video", overwrite: bool = False) -> Path:
    """Write ``num_videos`` videos (``features/<id>.npy``) and ``annotations.json`` under ``out_dir``;
    returns that folder. ``out_dir`` must be new or empty unless ``overwrite`` (see the module
    docstring); :class:`InputError` otherwise, :class:`OutputError` when it cannot be written."""
    if isinstance(num_videos, bool) or not isinstance(num_videos, int) or num_videos < 1:
        raise InputError(f"num_videos must be an integer >= 1, got {num_videos!r}")
    out = Path(out_dir)
    vids = [f"{prefix}_{seed}_{i:04d}" for i in range(num_videos)]
    _prepare_folder(out, overwrite, set(vids))
    rng = np.random.default_rng(seed)
    patterns = class_patterns(spec)
    database = {}
    for vid in vids:
        feats, segs, labels = make_video(rng, spec, patterns)
        with atomic_output(out / "features" / f"{vid}.npy", what="feature file") as tmp, open(tmp, "wb") as f:
            np.save(f, feats)
        secs = spec.seconds(segs)
        database[vid] = {
            "subset": subset,
            "duration": float((feats.shape[0] * spec.feat_stride + spec.num_frames) / spec.fps),
            "fps": spec.fps,
            "annotations": [{"segment": [float(s), float(e)], "label_id": int(c), "label": f"action_{c}"}
                            for (s, e), c in zip(secs, labels)],
        }
    atomic_write_text(out / "annotations.json", json.dumps({"database": database}, indent=1), what="annotations")
    return out
