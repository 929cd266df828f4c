"""The video backbone's deployment variants for ``mse-rt benchmark --backbone`` and
``mse-rt compare --backbone``: load each, time it on uint8 clips, and measure its agreement with a
reference variant (features: max |difference|, cosine similarity; Kinetics logits: top-5 / top-1
agreement).

Units: clips are (N, L, S, S, 3) uint8 frames; times in ms per call of N clips and clips/s.
The per-process benchmark with % of the GEMM peak is ``benchmarks/bench_backbone.py``; this
module runs every variant in the calling process (one command, one table).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError, InputError

# variant -> (backend, precision) of :func:`mse_rt.video.load_backbone`
BACKBONE_VARIANTS: dict[str, tuple[str, str]] = {
    "eager": ("eager", "fp32"),
    "onnxruntime": ("onnxruntime", "fp32"),
    "openvino-fp32": ("openvino", "fp32"),
    "openvino-bf16": ("openvino", "bf16"),
    "openvino-int8": ("openvino", "int8"),
    "tensorrt-fp16": ("tensorrt", "fp16"),
}
NUM_FRAMES = 16
CALIB_CLIPS = 64  # int8 calibration: rendered synthetic clips, seed 0 (the held-out clips below use seed 1)


def check_variants(names: list[str]) -> None:
    bad = [n for n in names if n not in BACKBONE_VARIANTS]
    if bad:
        raise ConfigError(f"unknown backbone variant(s) {bad}; available: {', '.join(BACKBONE_VARIANTS)}")


def load_variants(names: list[str], backbone: str = "i3d-rgb", size: int = 224, threads: int | None = None,
                  calib: Any = None, cache_dir=None) -> dict:
    """{variant: Backbone} at clip shape (16, size, size). int8 is calibrated on ``calib`` (video
    paths or clips; None: CALIB_CLIPS rendered synthetic clips) unless the export cache holds it."""
    from ..video import load_backbone

    check_variants(names)
    out = {}
    for n in names:
        backend, precision = BACKBONE_VARIANTS[n]
        kw: dict[str, Any] = {}
        if precision == "int8":
            kw = {"calib": "synthetic" if calib is None else calib, "calib_clips": CALIB_CLIPS}
        out[n] = load_backbone(backbone, backend=backend, precision=precision, threads=threads,
                               clip_shape=(NUM_FRAMES, size, size), cache_dir=cache_dir, **kw)
    return out


def held_out_clips(n: int, size: int) -> np.ndarray:
    """(n, 16, size, size, 3) uint8 clips of rendered synthetic videos (seed 1, never calibrated on)."""
    from ..video.backbone_int8 import synthetic_clips

    return synthetic_clips(n, (NUM_FRAMES, size, size), seed=1)


@dataclass
class BackboneTiming:
    variant: str
    batch: int
    ms_median: float
    ms_min: float
    clips_per_s: float


def benchmark_backbones(backbones: dict, size: int, batches: list[int], warmup: int = 1,
                        repeat: int = 5) -> list[BackboneTiming]:
    """Each backbone's ``features`` on B clips per call: median / min ms per call after ``warmup``
    calls, clips/s from the median."""
    if repeat < 1 or warmup < 0 or not batches or min(batches) < 1:
        raise InputError("repeat >= 1, warmup >= 0 and batch sizes >= 1 are needed")
    rows = []
    for name, bb in backbones.items():
        for b in batches:
            clips = held_out_clips(b, size)
            for _ in range(warmup):
                bb.features(clips)
            times = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                bb.features(clips)
                times.append(time.perf_counter() - t0)
            med = float(np.median(times))
            rows.append(BackboneTiming(name, b, med * 1e3, min(times) * 1e3, b / med))
    return rows


@dataclass
class BackboneAgreement:
    variant: str
    clips: int
    feature_max_abs: float
    cosine_mean: float
    cosine_min: float
    top5_agreement: float | None  # mean overlap of the top-5 class sets, 0..1 (None: no logits)
    top1_agreement: float | None


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    den = np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1)
    return np.where(den > 0, (a64 * b64).sum(1) / np.maximum(den, 1e-300), 1.0)


def compare_backbones(reference: str, backbones: dict, clips: np.ndarray) -> list[BackboneAgreement]:
    """Every backbone but ``reference`` against it on ``clips``."""
    if reference not in backbones:
        raise ConfigError(f"the reference {reference!r} is not among the loaded variants")
    ref = backbones[reference]
    with_logits = all(bb.num_classes for bb in backbones.values())
    if with_logits:
        ref_f, ref_l = ref.features_and_logits(clips)
    else:
        ref_f, ref_l = ref.features(clips), None
    rows = []
    for name, bb in backbones.items():
        if name == reference:
            continue
        if with_logits:
            f, lg = bb.features_and_logits(clips)
        else:
            f, lg = bb.features(clips), None
        cos = _cosine(f, ref_f)
        top5 = top1 = None
        if lg is not None:
            a5, b5 = np.argsort(-lg, 1)[:, :5], np.argsort(-ref_l, 1)[:, :5]
            top5 = float(np.mean([len(set(x) & set(y)) / 5 for x, y in zip(a5, b5)]))
            top1 = float(np.mean(a5[:, 0] == b5[:, 0]))
        rows.append(BackboneAgreement(name, len(clips), float(np.abs(f - ref_f).max()), float(cos.mean()),
                                      float(cos.min()), top5, top1))
    return rows


def timing_markdown(rows: list[BackboneTiming], size: int) -> str:
    lines = [f"| backbone variant (16 x {size} x {size}) | clips per call | ms per call (median) | ms (min) "
             "| clips/s |", "|---|---|---|---|---|"]
    lines += [f"| {r.variant} | {r.batch} | {r.ms_median:.1f} | {r.ms_min:.1f} | {r.clips_per_s:.2f} |" for r in rows]
    return "\n".join(lines)


def agreement_markdown(rows: list[BackboneAgreement], reference: str) -> str:
    def pct(x):
        return "-" if x is None else f"{100 * x:.1f} %"

    lines = [f"| variant vs {reference} | clips | max abs feature diff | cosine mean | cosine min | top-5 | top-1 |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r.variant} | {r.clips} | {r.feature_max_abs:.2e} | {r.cosine_mean:.6f} | {r.cosine_min:.6f} "
              f"| {pct(r.top5_agreement)} | {pct(r.top1_agreement)} |" for r in rows]
    return "\n".join(lines)


def to_dicts(rows: list) -> list[dict]:
    return [asdict(r) for r in rows]
