"""The applications: ``mse-rt demo | synth | train``."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import MseRtError
from .args import nonneg_int, positive_float, positive_int, thread_count, unit_float


def _cmd_demo(args: argparse.Namespace) -> int:
    rc = 0
    if not args.pixels_only:
        from ..apps.demo import run_demo

        rc = run_demo(out_dir=Path(args.out), quiet=args.quiet)
    if rc == 0 and (args.pixels or args.pixels_only):
        from ..apps.pixel_demo_run import run_pixel_demo

        variants = [v.strip() for v in args.pixel_variants.split(",") if v.strip()] if args.pixel_variants else None
        rc = run_pixel_demo(Path(args.out), num_videos=args.pixel_videos, variants=variants,
                            threads=args.pixel_threads)
    return rc


def _cmd_synth(args: argparse.Namespace) -> int:
    if args.video:
        from ..apps.pixel_demo import PIXEL_SPEC
        from ..video.render import VideoSynthSpec, render_dataset

        spec = PIXEL_SPEC if args.video == "pixel-demo" else VideoSynthSpec()
        out = render_dataset(args.out, args.videos, args.seed, subset=args.subset, spec=spec, overwrite=args.overwrite,
                             workers=args.workers)
        print(f"rendered {args.videos} videos ({args.subset}, seed {args.seed}, {args.video} world) to {out}: "
              "videos/*.mp4 + annotations.json")
        return 0
    from ..apps.synth import write_dataset

    out = write_dataset(args.out, args.videos, args.seed, subset=args.subset, overwrite=args.overwrite)
    print(f"wrote {args.videos} synthetic videos ({args.subset}, seed {args.seed}) to {out}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    import torch

    from ..apps.train import TrainOptions, train
    from ..config import load_config
    from ..io.dataset import read_dataset

    torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    videos = read_dataset(args.data, subset=args.subset)
    if not videos:
        raise MseRtError(f"no videos of subset {args.subset!r} in {args.data}")
    opts = TrainOptions(epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr,
                        ema_decay=args.ema_decay, seed=args.seed)
    print(f"training on {len(videos)} videos from {args.data}")
    train(cfg, videos, opts, out_path=args.out)
    return 0


def register(sub) -> None:
    m = sub.add_parser("demo", help="the main job: run the bundled example end to end")
    m.add_argument("--out", default="demo_out", help="folder for results JSON and plots")
    m.add_argument("-q", "--quiet", action="store_true")
    m.add_argument("--pixels", action="store_true",
                   help="also the pixel part: rendered held-out videos -> I3D features (every backbone variant) -> actions")
    m.add_argument("--pixels-only", action="store_true", help="only the pixel part")
    m.add_argument("--pixel-videos", type=positive_int, default=3, help="held-out videos in the pixel part (1-10)")
    m.add_argument("--pixel-variants", default=None,
                   help="comma-separated backbone variants (default: openvino-fp32,openvino-bf16,openvino-int8; "
                        "also eager-fp32, onnxruntime-fp32)")
    m.add_argument("--pixel-threads", type=thread_count, default=None, help="backbone CPU threads (default: the backend's)")
    m.set_defaults(fn=_cmd_demo)
    y = sub.add_parser("synth", help="write a synthetic TAD dataset (features, or rendered videos with --video; "
                                      "ActivityNet JSON)")
    y.add_argument("--out", required=True)
    y.add_argument("--videos", type=positive_int, default=64)
    y.add_argument("--seed", type=nonneg_int, default=0)
    y.add_argument("--subset", default="training")
    y.add_argument("--overwrite", action="store_true",
                   help="replace the dataset in a non-empty --out folder (its annotations.json and features/*.npy)")
    y.add_argument("--video", nargs="?", const="default", default=None, choices=("default", "pixel-demo"),
                   help="render H.264 videos (320x240, 30 fps; five motion classes) instead of features: the "
                        "renderer's default world, or the pixel demo's (larger shapes, one distractor)")
    y.add_argument("--workers", type=positive_int, default=1, help="with --video: render processes")
    y.set_defaults(fn=_cmd_synth)

    t = sub.add_parser("train", help="train MSE-TAD with the reference recipe (small scale, CPU)")
    t.add_argument("--config", required=True)
    t.add_argument("--data", required=True, help="dataset folder: annotations.json + features/*.npy")
    t.add_argument("--subset", default="training")
    t.add_argument("--out", required=True, help="checkpoint path (reference layout)")
    t.add_argument("--epochs", type=positive_int, default=None)
    t.add_argument("--batch-size", type=positive_int, default=None)
    t.add_argument("--lr", type=positive_float, default=None)
    t.add_argument("--ema-decay", type=unit_float, default=0.999)
    t.add_argument("--seed", type=nonneg_int, default=0)
    t.add_argument("--threads", type=thread_count, default=2)
    t.set_defaults(fn=_cmd_train)
