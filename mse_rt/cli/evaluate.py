"""Scoring and comparing: ``mse-rt eval | compare | benchmark`` (the TAD model's variants, or with
``--backbone`` the video backbone's)."""

from __future__ import annotations

import argparse
import sys
import time
import warnings

import numpy as np

from ..errors import MseRtError
from .args import frame_rate, int_in, nonneg_int, positive_int, thread_count

# a benchmark batch is held in memory at once: B x T x C floats (THUMOS: 64 x 2304 x 2048 = 1.2 GB)
# or B x 16 x S x S x 3 bytes of clips (224: 64 x 2.4 MB)
MAX_BENCH_BATCH = 64


def _cmd_eval(args: argparse.Namespace) -> int:
    from ..eval import ANET_TIOUS, THUMOS_TIOUS, evaluate

    if args.tious == "thumos":
        tious = THUMOS_TIOUS
    elif args.tious == "anet":
        tious = ANET_TIOUS
    else:
        try:
            tious = np.array([float(t) for t in args.tious.split(",")])
        except ValueError:
            raise MseRtError(f"--tious: 'thumos', 'anet' or comma-separated numbers, got {args.tious!r}") from None
    with warnings.catch_warnings():  # the partial-overlap warning is printed below as one line
        warnings.simplefilter("ignore", UserWarning)
        r = evaluate(args.results, args.gt, tious, split=args.split, strict=args.strict)
    print(f"{args.results}: {len(r.classes)} classes, ground-truth subset(s) scored: {', '.join(r.subsets)}")
    if r.unmatched:
        print(f"mse-rt: warning: {r.unmatched}", file=sys.stderr)
    if r.swapped:
        print(f"mse-rt: warning: {r.swapped} predictions have end < start; scored as false positives "
              "(as the reference does; --strict refuses them)", file=sys.stderr)
    print(r.table())
    return 0


def _tad_variants(args: argparse.Namespace, default: list[str]) -> list[str]:
    """The TAD variants asked for (``--config`` needed), checked."""
    from ..apps.variants import VARIANTS

    if not args.config:
        raise MseRtError(f"{args.command}: --config is required (or --backbone NAME for the video backbone)")
    names = args.variants or default
    bad = [n for n in [*names, getattr(args, "reference", None) or "eager"] if n not in VARIANTS]
    if bad:
        raise MseRtError(f"unknown TAD variant(s) {bad}; available: {', '.join(VARIANTS)}")
    return names


def _check_backbone_mode(args: argparse.Namespace) -> None:
    """--backbone: a registered backbone name; the TAD-only flags are refused, not ignored."""
    from ..video.registry import BACKBONES

    if args.backbone not in BACKBONES:
        raise MseRtError(f"--backbone: unknown backbone {args.backbone!r}; registered: {', '.join(sorted(BACKBONES))}")
    for flag in ("config", "ckpt", "T", "hint", "gt"):
        if getattr(args, flag, None) not in (None, "latency"):
            raise MseRtError(f"--backbone times / compares the video backbone alone: drop --{flag}")


def _backbones(args: argparse.Namespace, names: list[str]) -> dict:
    from ..apps.backbone_variants import check_variants, load_variants

    check_variants(names)
    return load_variants(names, args.backbone, size=args.size, threads=args.threads, calib=args.calib)


def _backbone_compare(args: argparse.Namespace) -> int:
    from ..apps.backbone_variants import agreement_markdown, compare_backbones, held_out_clips
    from ..video.clips import ClipSpec, iter_clips

    _check_backbone_mode(args)
    names = list(dict.fromkeys([args.reference, *(args.variants or [])]))
    if len(names) < 2:
        raise MseRtError("--variants: name at least one backbone variant besides the reference")
    bbs = _backbones(args, names)
    if args.features:  # videos: their first --clips non-overlapping clips (short side, centre crop)
        spec = ClipSpec(num_frames=16, stride=16, fps=30.0, size=args.size)
        frames: list[np.ndarray] = []
        for video in args.features:
            it = iter_clips(video, spec)
            try:
                for clip in it:
                    frames.append(clip.frames)
                    if len(frames) >= args.clips:
                        break
            finally:
                it.close()
            if len(frames) >= args.clips:
                break
        if not frames:
            raise MseRtError(f"no clip of 16 frames in {', '.join(map(str, args.features))}")
        clips = np.stack(frames)
        what = f"{len(clips)} clips of {', '.join(map(str, args.features))}"
    else:
        clips = held_out_clips(args.clips, args.size)
        what = f"{len(clips)} rendered synthetic clips (seed 1)"
    print(f"{args.backbone}: {what}, 16 x {args.size} x {args.size}")
    print(agreement_markdown(compare_backbones(args.reference, bbs, clips), args.reference))
    return 0


def _backbone_benchmark(args: argparse.Namespace) -> int:
    from ..apps.backbone_variants import benchmark_backbones, timing_markdown, to_dicts
    from ..io.files import atomic_write_text

    _check_backbone_mode(args)
    rows = benchmark_backbones(_backbones(args, args.variants or ["eager", "openvino-bf16"]), args.size, args.B,
                               warmup=args.warmup, repeat=args.repeat)
    md = timing_markdown(rows, args.size)
    print(md)
    if args.json:
        import json

        atomic_write_text(args.json, json.dumps({"backbone": args.backbone, "size": args.size,
                                                 "rows": to_dicts(rows)}, indent=1), what="benchmark JSON")
    if args.md:
        atomic_write_text(args.md, md + "\n", what="benchmark report")
    return 0


def _check_report_outputs(args: argparse.Namespace) -> None:
    """--json / --md: refused before any work when one is an input (config, checkpoint, a calibration
    file, also inside a given folder, through links too), when both name one file, or when the
    folder cannot receive it."""
    from pathlib import Path

    from ..io.files import check_not_an_input, check_output_path

    outs = [o for o in (args.json, args.md) if o]
    if len(outs) == 2 and Path(outs[0]).absolute() == Path(outs[1]).absolute():
        raise MseRtError(f"--json and --md name the same file {outs[0]}: give two paths")
    inputs: list[Path] = [Path(p) for p in (getattr(args, "config", None), getattr(args, "ckpt", None)) if p]
    for c in args.calib or []:
        c = Path(c)
        inputs += sorted(f for f in c.rglob("*") if f.is_file())[:100_000] if c.is_dir() else [c]
    for o in outs:
        check_not_an_input(o, inputs, what="benchmark report")
        check_output_path(o, what="benchmark report")


def _cmd_compare(args: argparse.Namespace) -> int:
    import tempfile

    from ..apps.variants import build_variants, compare_results
    from ..eval import THUMOS_TIOUS, evaluate, load_ground_truth
    from ..io.features import collect_feature_files, load_feature_file, video_ids_for

    if args.backbone:
        return _backbone_compare(args)
    if not args.variants:
        raise MseRtError("compare: --variants is required")
    _tad_variants(args, [])
    if not args.ckpt:
        raise MseRtError("compare: --ckpt is required")
    if not args.features:
        raise MseRtError("compare: give feature files or folders")
    if args.gt:  # a missing or malformed ground truth fails now, not after every variant is built and run
        load_ground_truth(args.gt, args.split)
    files = collect_feature_files(args.features)
    ids = video_ids_for(files, args.ids)
    from ..io.results import check_unique_ids

    check_unique_ids(ids)
    feats = [load_feature_file(f) for f in files]
    names = [args.reference, *args.variants]
    with tempfile.TemporaryDirectory() as tmp:
        dets = build_variants(names, args.config, args.ckpt, tmp, calib=args.calib, threads=args.threads,
                              allow_unverified=args.allow_unverified_checkpoint)
        results = {}
        for n, det in dets.items():
            t0 = time.perf_counter()
            results[n] = det.detect_batch(feats, fps=args.fps, video_ids=ids)
            results[n + "_s"] = time.perf_counter() - t0
    print(f"{len(files)} videos; reference {args.reference}")
    for n in names:
        line = f"{n:>18}: {results[n + '_s']:.2f} s"
        if n != args.reference:
            line += "  " + compare_results(results[args.reference], results[n], k=args.top_k).line()
        if args.gt:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                m = evaluate(results[n], args.gt, THUMOS_TIOUS, split=args.split)
            line += f"  mAP {100 * m.average:.2f}"
        print(line)
    if args.gt and m.unmatched:
        print(f"mse-rt: warning: {m.unmatched}", file=sys.stderr)
    return 0


def _cmd_benchmark(args: argparse.Namespace) -> int:
    from ..apps.benchmark import markdown, run_benchmark, to_json
    from ..io.files import atomic_write_text

    _check_report_outputs(args)
    if args.backbone:
        return _backbone_benchmark(args)
    variants = _tad_variants(args, ["eager", "onnxruntime"])
    res = run_benchmark(variants, args.config, args.ckpt, Ts=args.T, Bs=args.B, warmup=args.warmup,
                        repeat=args.repeat, calib=args.calib, threads=args.threads, hint=args.hint,
                        allow_unverified=args.allow_unverified_checkpoint)
    md = markdown(res)
    print(md)
    if args.json:
        atomic_write_text(args.json, to_json(res), what="benchmark JSON")
    if args.md:
        atomic_write_text(args.md, md + "\n", what="benchmark report")
    return 0


def register(sub) -> None:
    v = sub.add_parser("eval", help="ActivityNet detection mAP of a results JSON")
    v.add_argument("--gt", required=True, help="ground truth, ActivityNet JSON ('database')")
    v.add_argument("--tious", default="thumos", help="thumos (0.3:0.7), anet (0.5:0.95) or e.g. 0.3,0.5")
    v.add_argument("--split", default=None,
                   help="ground-truth subset to score (e.g. validation, test; 'all' for every subset); "
                        "required when the ground truth holds several")
    v.add_argument("--strict", action="store_true", help="refuse predictions with end < start")
    v.add_argument("results", help="results JSON written by mse-rt detect")
    v.set_defaults(fn=_cmd_eval)
    from ..apps.backbone_variants import BACKBONE_VARIANTS
    from ..apps.variants import VARIANTS

    variants_help = (f"TAD variants: {', '.join(VARIANTS)}; with --backbone: {', '.join(BACKBONE_VARIANTS)}")
    cp = sub.add_parser("compare", help="detection agreement (and mAP) of deployment variants vs a reference; "
                                        "--backbone: feature / logit agreement of the video backbone's variants")
    cp.add_argument("--config", default=None, help="TAD config (required without --backbone)")
    cp.add_argument("--ckpt", default=None, help="TAD checkpoint (required without --backbone)")
    cp.add_argument("--backbone", default=None, metavar="NAME",
                    help="compare the video backbone NAME (i3d-rgb) instead: features and Kinetics logits vs the "
                         "reference on --clips clips of the given videos (none: rendered synthetic clips)")
    cp.add_argument("--size", type=positive_int, default=224, help="--backbone: frame side in pixels")
    cp.add_argument("--clips", type=int_in(1, 256), default=16, help="--backbone: clips compared (up to 256)")
    cp.add_argument("--reference", default="eager", help="the variant the others are compared with (eager)")
    cp.add_argument("--variants", nargs="+", default=None, help=variants_help)
    cp.add_argument("--calib", nargs="+", default=None,
                    help="calibration feature files / folders (int8 variants; --backbone: videos)")
    cp.add_argument("--gt", default=None, help="ground truth (ActivityNet JSON): also print each variant's mAP")
    cp.add_argument("--split", default=None)
    cp.add_argument("--fps", type=frame_rate, default=None)
    cp.add_argument("--threads", type=thread_count, default=None)
    cp.add_argument("--top-k", type=positive_int, default=10)
    cp.add_argument("--ids", default="stem", choices=("stem", "relpath"))
    cp.add_argument("--allow-unverified-checkpoint", action="store_true",
                    help="accept a legacy (non-zip) checkpoint, which carries no checksum")
    cp.add_argument("features", nargs="*", help="feature files / folders (--backbone: videos, optional)")
    cp.set_defaults(fn=_cmd_compare)

    bm = sub.add_parser("benchmark", help="latency / throughput of deployment variants over a grid of T and B; "
                                          "--backbone: clips/s of the video backbone's variants")
    bm.add_argument("--config", default=None, help="TAD config (required without --backbone)")
    bm.add_argument("--ckpt", default=None, help="default: random weights (timing only)")
    bm.add_argument("--backbone", default=None, metavar="NAME",
                    help="time the video backbone NAME (i3d-rgb) on uint8 clips of 16 x SIZE x SIZE instead")
    bm.add_argument("--size", type=positive_int, default=224, help="--backbone: frame side in pixels")
    bm.add_argument("--variants", nargs="+", default=None,
                    help=variants_help + " (default: eager onnxruntime; --backbone: eager openvino-bf16)")
    bm.add_argument("--T", type=positive_int, nargs="+", default=None,
                    help="video lengths in feature steps, up to the config's longest video (default: max_seq_len)")
    bm.add_argument("--allow-unverified-checkpoint", action="store_true",
                    help="accept a legacy (non-zip) checkpoint, which carries no checksum")
    bm.add_argument("--B", type=int_in(1, MAX_BENCH_BATCH, " (videos or clips per call)"), nargs="+", default=[1, 4],
                    help=f"batch sizes, up to {MAX_BENCH_BATCH} (--backbone: clips per call)")
    bm.add_argument("--warmup", type=nonneg_int, default=2)
    bm.add_argument("--repeat", type=positive_int, default=5)
    bm.add_argument("--calib", nargs="+", default=None)
    bm.add_argument("--threads", type=thread_count, default=None)
    bm.add_argument("--hint", default="latency", choices=("latency", "throughput"), help="OpenVINO performance hint")
    bm.add_argument("--json", default=None)
    bm.add_argument("--md", default=None)
    bm.set_defaults(fn=_cmd_benchmark)
