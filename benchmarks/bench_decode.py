"""Decode + resample + resize throughput of mse_rt.video.sources (and clip cutting) on a generated video.

    python benchmarks/bench_decode.py [--seconds 20] [--repeat 3] [--threads 2] [--out DIR]

Writes a 320x240 H.264 video (30 fps, and a 60 fps twin for the resampling row) with moving,
textured content into a temp folder, then times reading it through ``open_source`` in several
settings: native size, decoder-side resize (swscale) to 224x224 / 112x112 / short side 256, the
numpy-side path (RGB at native size, then ``resize_frames``), and whole clips (``iter_clips``).
Output frames / s is frames delivered to the consumer per wall-clock second (median of
``--repeat`` runs after one warm-up); ``real-time x`` divides it by the video's 30 fps.
``--out DIR`` writes DIR/decode.md / .json.
"""

from __future__ import annotations

import argparse
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from harness import Report, add_out_argument, median_seconds, use_source_tree

use_source_tree()

from mse_rt.video.clips import ClipSpec, iter_clips, resize_frames  # noqa: E402
from mse_rt.video.sources import open_source  # noqa: E402


def make_video(path: Path, seconds: float, fps: int, h: int = 240, w: int = 320) -> int:
    """Moving gradients and blocks with mild noise (H.264-friendly, not static); returns the frame count."""
    import av

    n = int(seconds * fps)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 6, (8, h, w, 1)).astype(np.float32)
    codec = "libx264" if "libx264" in av.codecs_available else "h264"
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.codec_context.time_base = Fraction(1, fps)
        for k in range(n):
            t = k / fps
            r = 128 + 100 * np.sin(xx / 23 + 2 * t)
            g = 128 + 100 * np.cos(yy / 17 - 3 * t)
            b = 128 + 80 * np.sin((xx + yy) / 31 + t)
            img = np.stack([r, g, b], axis=-1) + noise[k % 8]
            x0 = int(40 + 30 * t * 4) % (w - 60)
            img[60:120, x0:x0 + 60] = (240, 30, 30)
            f = av.VideoFrame.from_ndarray(np.clip(img, 0, 255).astype(np.uint8), format="rgb24")
            f.pts = k
            f.time_base = Fraction(1, fps)
            c.mux(s.encode(f))
        c.mux(s.encode(None))
    return n


def count_frames(src, **kw) -> int:
    with open_source(src, **kw) as s:
        return sum(1 for _ in s)


def count_numpy_resized(src, size: int) -> int:
    n = 0
    with open_source(src, fps=30) as s:
        for _, f in s:
            resize_frames(f, size, size)
            n += 1
    return n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads (the numpy-side resize)")
    add_out_argument(ap)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        v30, v60 = Path(tmp) / "v30.mp4", Path(tmp) / "v60.mp4"
        n30 = make_video(v30, args.seconds, 30)
        make_video(v60, args.seconds, 60)
        crop = ClipSpec(spatial="short_side_crop", size=224, short_side=256)
        rows = [
            ("native 320x240, no resampling", lambda: count_frames(v30)),
            ("native 320x240, resample 30 -> 30", lambda: count_frames(v30, fps=30)),
            ("decoder resize 224x224", lambda: count_frames(v30, fps=30, resize=(224, 224))),
            ("decoder resize 112x112", lambda: count_frames(v30, fps=30, resize=(112, 112))),
            ("decoder short side 256 (341x256)", lambda: count_frames(v30, fps=30, resize=crop.decode_size)),
            ("60 fps source -> 30, resize 224x224", lambda: count_frames(v60, fps=30, resize=(224, 224))),
            ("RGB native + resize_frames 224x224", lambda: count_numpy_resized(v30, 224)),
            ("RGB native + resize_frames 112x112", lambda: count_numpy_resized(v30, 112)),
        ]
        report = Report("decode", args.out, title=__doc__.splitlines()[0])
        table = report.table(f"video: 320x240 H.264, {args.seconds:g} s at 30 fps ({n30} frames); torch threads "
                             f"{args.threads}; median of {args.repeat}",
                             ["path", "output frames", "frames / s", "ms / frame", "real-time x"],
                             formats={"frames / s": ".0f", "ms / frame": ".3f", "real-time x": ".1f"})
        for label, fn in rows:
            frames = fn()
            sec = median_seconds(fn, args.repeat)
            table.add(label, frames, frames / sec, 1e3 * sec / frames, frames / sec / 30)
        for spec_label, spec in [("clips 16x224x224 (short side 256 + crop), stride 4", crop),
                                 ("clips 16x112x112 (resize), stride 4", ClipSpec(spatial="resize", size=112))]:
            def clips(spec=spec) -> int:
                return sum(1 for _ in iter_clips(v30, spec))

            n_clips = clips()
            sec = median_seconds(clips, args.repeat)
            table.add(spec_label, f"{n_clips} clips", f"{n30 / sec:.0f} (video frames)", 1e3 * sec / n30, n30 / sec / 30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
