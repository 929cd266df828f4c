"""Scoring and comparing: ``mse-rt eval | compare | benchmark``."""

from __future__ import annotations

import argparse
import sys
import time
import warnings

import numpy as np

from ..errors import MseRtError
from .args import frame_rate, nonneg_int, positive_int


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


def _cmd_compare(args: argparse.Namespace) -> int:
    import tempfile

    from ..apps.variants import build_variants, compare_results
    from ..eval import THUMOS_TIOUS, evaluate, load_ground_truth
    from ..io.features import collect_feature_files, load_feature_file, video_ids_for

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

    res = run_benchmark(args.variants, args.config, args.ckpt, Ts=args.T, Bs=args.B, warmup=args.warmup,
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
    from ..apps.variants import VARIANTS

    cp = sub.add_parser("compare", help="detection agreement (and mAP) of deployment variants vs a reference")
    cp.add_argument("--config", required=True)
    cp.add_argument("--ckpt", required=True)
    cp.add_argument("--reference", default="eager", choices=VARIANTS)
    cp.add_argument("--variants", nargs="+", required=True, choices=VARIANTS)
    cp.add_argument("--calib", nargs="+", default=None, help="calibration feature files / folders (int8 variants)")
    cp.add_argument("--gt", default=None, help="ground truth (ActivityNet JSON): also print each variant's mAP")
    cp.add_argument("--split", default=None)
    cp.add_argument("--fps", type=frame_rate, default=None)
    cp.add_argument("--threads", type=positive_int, default=None)
    cp.add_argument("--top-k", type=positive_int, default=10)
    cp.add_argument("--ids", default="stem", choices=("stem", "relpath"))
    cp.add_argument("--allow-unverified-checkpoint", action="store_true",
                    help="accept a legacy (non-zip) checkpoint, which carries no checksum")
    cp.add_argument("features", nargs="+")
    cp.set_defaults(fn=_cmd_compare)

    bm = sub.add_parser("benchmark", help="latency / throughput of deployment variants over a grid of T and B")
    bm.add_argument("--config", required=True)
    bm.add_argument("--ckpt", default=None, help="default: random weights (timing only)")
    bm.add_argument("--variants", nargs="+", default=["eager", "onnxruntime"], choices=VARIANTS)
    bm.add_argument("--T", type=positive_int, nargs="+", default=None,
                    help="video lengths in feature steps, up to the config's longest video (default: max_seq_len)")
    bm.add_argument("--allow-unverified-checkpoint", action="store_true",
                    help="accept a legacy (non-zip) checkpoint, which carries no checksum")
    bm.add_argument("--B", type=positive_int, nargs="+", default=[1, 4])
    bm.add_argument("--warmup", type=nonneg_int, default=2)
    bm.add_argument("--repeat", type=positive_int, default=5)
    bm.add_argument("--calib", nargs="+", default=None)
    bm.add_argument("--threads", type=positive_int, default=None)
    bm.add_argument("--hint", default="latency", choices=("latency", "throughput"), help="OpenVINO performance hint")
    bm.add_argument("--json", default=None)
    bm.add_argument("--md", default=None)
    bm.set_defaults(fn=_cmd_benchmark)
