"""``mse-rt extract-features``: videos -> one (T, C) float32 ``.npy`` per video (resumable), and the
backbone options ``detect`` shares for video inputs."""

from __future__ import annotations

import argparse
import sys
import time

from ..errors import ConfigError
from .args import frame_rate, positive_int, thread_count

_SPEC_OPTIONS = ("num_frames", "stride", "spatial", "size", "short_side", "backbone")


def add_backbone_options(p: argparse.ArgumentParser) -> None:
    """--backbone-backend / --backbone-precision / --backbone-threads / --clip-batch / --frame-timeout."""
    p.add_argument("--backbone-backend", default="eager", choices=("eager", "onnxruntime", "openvino", "tensorrt"),
                   help="backend of the frame backbone (default eager)")
    p.add_argument("--backbone-precision", default=None,
                   help="fp32 (default), bf16 / int8 (openvino), fp16 (tensorrt)")
    add_backbone_calib(p)
    p.add_argument("--backbone-threads", type=thread_count, default=None, help="backbone CPU threads")
    p.add_argument("--clip-batch", type=positive_int, default=8, help="clips per backbone call")
    p.add_argument("--frame-timeout", type=float, default=None,
                   help="seconds without a frame before a video is given up as stalled (URLs default to 10)")


def add_backbone_calib(p) -> None:
    p.add_argument("--backbone-calib", nargs="+", default=None, metavar="VIDEO|synthetic",
                   help="int8 backbone (openvino): calibration videos or folders, or 'synthetic' (rendered clips); "
                        "the quantized IR is kept in the export cache, so later runs load it")


def backbone_calib_options(args: argparse.Namespace) -> dict:
    """``{"calib": ...}`` for an int8 backbone given --backbone-calib; {} without it (load_backbone then
    names what is missing); a ConfigError for --backbone-calib with another precision."""
    calib = getattr(args, "backbone_calib", None)
    if calib is None:
        return {}
    if args.backbone_precision != "int8":
        raise ConfigError("--backbone-calib calibrates an int8 backbone (--backbone-precision int8); drop it")
    return {"calib": "synthetic" if calib == ["synthetic"] else calib}


def load_video_backbone(args: argparse.Namespace, name: str, spec):
    """The backbone ``args`` ask for, at ``spec``'s clip shape."""
    from ..video.registry import load_backbone

    return load_backbone(name, backend=args.backbone_backend, precision=args.backbone_precision,
                         threads=args.backbone_threads, clip_shape=(spec.num_frames, spec.size, spec.size),
                         **backbone_calib_options(args))


def source_options(args: argparse.Namespace) -> dict:
    return {} if args.frame_timeout is None else {"timeout": args.frame_timeout}


def _spec_from_args(args: argparse.Namespace):
    """(clip spec, backbone name): from --config (its dataset and video sections), or the spec options."""
    from ..video.clips import ClipSpec

    given = [o for o in _SPEC_OPTIONS if getattr(args, o) is not None]
    if args.config:
        if given:
            raise ConfigError(f"--config fixes the clip spec and backbone; drop --{given[0].replace('_', '-')}")
        from ..config import load_config
        from ..video.pipeline import clip_spec_for_config

        cfg = load_config(args.config)
        return clip_spec_for_config(cfg, fps=args.fps), (cfg.get("video") or {}).get("backbone", "i3d-rgb")
    from ..config.schema import VIDEO_DEFAULTS

    d = ClipSpec()
    spec = ClipSpec(num_frames=args.num_frames or d.num_frames, stride=args.stride or d.stride, fps=args.fps or d.fps,
                    spatial=args.spatial or VIDEO_DEFAULTS["spatial"], size=args.size or VIDEO_DEFAULTS["size"],
                    short_side=args.short_side)
    return spec, args.backbone or VIDEO_DEFAULTS["backbone"]


def _cmd_extract(args: argparse.Namespace) -> int:
    """Exit 0: every video has its features; 1: some failed (one ``mse-rt: failed FILE: why`` line
    each, the others written); 2: a usage / config error before any work; 130 / 143: interrupted
    (SIGINT / SIGTERM), every file in the folder whole, a rerun does the rest."""
    from tqdm import tqdm

    from ..io.features import collect_video_files, video_ids_for
    from ..io.results import check_unique_ids
    from ..video.extract import extract_to_folder

    spec, name = _spec_from_args(args)
    videos = collect_video_files(args.videos)
    ids = video_ids_for(videos, args.ids)
    check_unique_ids(ids)
    backbone = load_video_backbone(args, name, spec)
    t0 = time.perf_counter()
    failed_lines: list[str] = []
    with tqdm(unit="clip", desc="extract", disable=args.quiet, dynamic_ncols=True) as bar:
        done = [0]

        def on_video(vid: str, error: str | None) -> None:
            done[0] += 1
            bar.set_postfix_str(f"{done[0]}/{len(videos)} videos")

        try:
            report = extract_to_folder(videos, args.output, backbone, spec, ids=ids, clip_batch=args.clip_batch,
                                       overwrite=args.overwrite,
                                       on_clips=bar.update, on_video=on_video, **source_options(args))
        except KeyboardInterrupt:
            bar.close()
            print(f"mse-rt: interrupted after {done[0]} of {len(videos)} videos; every file in {args.output} is whole; "
                  "rerun the same command to do the rest", file=sys.stderr)
            return 130
    for path, why in report.failed:
        failed_lines.append(f"mse-rt: failed {path}: {why}")
    for line in failed_lines:
        print(line, file=sys.stderr)
    dt = time.perf_counter() - t0
    rate = f", {report.clips / dt:.1f} clips/s" if report.clips and dt > 0 else ""
    print(f"{len(report.written)} videos extracted, {len(report.skipped)} already done, {len(report.failed)} failed "
          f"({report.clips} clips in {dt:.1f} s{rate}) -> {args.output}")
    return 1 if report.failed else 0


def register(sub) -> None:
    p = sub.add_parser("extract-features", help="videos -> one (T, C) float32 .npy of clip features per video")
    p.add_argument("videos", nargs="+", help="video files, or folders (their video files, recursively)")
    p.add_argument("-o", "--output", required=True, help="output folder: <video_id>.npy and <video_id>.json each")
    p.add_argument("--overwrite", action="store_true",
                   help="replace <video_id>.npy files that extract-features did not write (refused by default)")
    p.add_argument("--config", help="TAD config: clip length / stride / fps and its 'video' section fix the spec")
    p.add_argument("--fps", type=frame_rate, default=None, help="frame rate clips are cut at (default 30, or the "
                   "config's dataset.default_fps)")
    p.add_argument("--num-frames", type=positive_int, default=None, help="frames per clip (default 16)")
    p.add_argument("--stride", type=positive_int, default=None, help="frames between clip starts (default 4)")
    p.add_argument("--spatial", choices=("resize", "short_side_crop"), default=None, help="default resize")
    p.add_argument("--size", type=positive_int, default=None, help="clip frame side in pixels (default 224)")
    p.add_argument("--short-side", type=positive_int, default=None, help="short_side_crop: side before the crop")
    p.add_argument("--backbone", default=None, help="backbone name or exported file (default i3d-rgb)")
    add_backbone_options(p)
    p.add_argument("--ids", default="stem", choices=("stem", "relpath"),
                   help="output names: file name without extension (default), or the path relative to the common folder")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(fn=_cmd_extract)
