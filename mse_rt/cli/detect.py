"""``mse-rt detect``: feature files -> ActivityNet results JSON (in process, or as a Ray job)."""

from __future__ import annotations

import argparse
import sys
import time

from ..errors import MseRtError
from .args import nonneg_int, positive_float, positive_int


def _cmd_detect(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..io.features import collect_feature_files, video_ids_for
    from ..io.files import check_output_path
    from ..io.results import check_unique_ids, write_results_json
    from ..runtime import Detector
    from ..runtime.files import detect_files

    if args.ray:
        return _detect_ray(args)
    files = collect_feature_files(args.features)
    ids = video_ids_for(files, args.ids)
    try:
        check_unique_ids(ids)
    except MseRtError as exc:
        raise MseRtError(f"{exc}{' (try --ids relpath)' if args.ids == 'stem' else ''}") from None
    check_output_path(args.output, what="results file")  # before any work: a bad -o loses nothing
    if args.model:
        if args.config or args.ckpt:
            raise MseRtError("--model runs a deployable file on its own; drop --config / --ckpt")
        det = Detector.from_file(args.model, nms_impl=args.nms, allow_slow_int8=args.allow_slow_int8)
    else:
        if not (args.config and args.ckpt):
            raise MseRtError("detect needs --config and --ckpt, or --model FILE (.onnx)")
        det = Detector.from_checkpoint(args.config, args.ckpt, backend=args.backend, device=args.device,
                                       nms_impl=args.nms)
    results = []
    failed: list[tuple[str, str]] = []  # (video id, reason)
    done = 0
    t0 = time.perf_counter()
    interrupted = False
    try:
        with tqdm(total=len(files), unit="video", desc="detect", disable=args.quiet) as bar:
            for outcomes in detect_files(det, files, ids, fps=args.fps, batch=args.batch):
                for o in outcomes:
                    if o.result is not None:
                        results.append(o.result)
                    else:
                        failed.append((o.video_id, o.error))
                done += len(outcomes)
                bar.update(len(outcomes))
    except KeyboardInterrupt:
        interrupted = True
    out = write_results_json(results, args.output)
    missing = ids[done:]
    n_det = sum(len(r) for r in results)
    print(f"{len(results)} videos, {n_det} detections in {time.perf_counter() - t0:.2f} s -> {out}")
    for vid, why in failed:
        print(f"mse-rt: failed {vid}: {why}", file=sys.stderr)
    if interrupted:
        print(f"mse-rt: interrupted: wrote the {len(results)} finished videos to {out}; {len(missing)} not run"
              + (f" (first: {missing[0]})" if missing else ""), file=sys.stderr)
        return 130
    if failed:
        print(f"mse-rt: error: {len(failed)} of {len(files)} videos failed (listed above); the other "
              f"{len(results)} are in {out}", file=sys.stderr)
        return 1
    return 0


def _detect_ray(args: argparse.Namespace) -> int:
    """``detect --ray``: the Ray Data job of :mod:`mse_rt.serving.ray_job` (resumable through its journal)."""
    from ..serving import detect_corpus_ray, shutdown

    if args.model and (args.config or args.ckpt):
        raise MseRtError("--model runs a deployable file on its own; drop --config / --ckpt")
    last = [0.0]

    def progress(done, total):
        if not args.quiet and time.perf_counter() - last[0] > 2:
            last[0] = time.perf_counter()
            print(f"  {done}/{total} videos", file=sys.stderr, flush=True)

    try:
        r = detect_corpus_ray(args.features, args.output, config=args.config, ckpt=args.ckpt, model_file=args.model,
                              backend=args.backend, device=args.device, num_actors=args.actors,
                              gpus_per_actor=args.gpus_per_actor, batch_size=args.batch, fps=args.fps,
                              address=args.address, ids=args.ids, jsonl=args.jsonl, on_progress=progress,
                              actor_retries=args.actor_retries)
    finally:
        if not args.address:
            shutdown()
    print(f"{r['done']} videos run, {r['skipped']} already in {r['journal']}, {len(r['failed'])} failed in "
          f"{r['seconds']:.1f} s -> {r['output']}")
    for vid, why in r["failed"].items():
        print(f"mse-rt: failed {vid}: {why}", file=sys.stderr)
    return 1 if r["failed"] else 0


def register(sub) -> None:
    d = sub.add_parser("detect", help="detect actions in feature files (.npy, (T, C) time-first)")
    d.add_argument("--config", help="reference YAML config")
    d.add_argument("--ckpt", help="reference checkpoint (.pth.tar)")
    d.add_argument("--model", help="a deployable model file instead of config + checkpoint (.onnx, .engine)")
    d.add_argument("--allow-slow-int8", action="store_true",
                   help="run an int8 ONNX graph on a CPU without int8 dot-product instructions (VNNI)")
    d.add_argument("--fps", type=positive_float, default=None, help="video frame rate (default: dataset.default_fps)")
    d.add_argument("--backend", default="eager")
    d.add_argument("--device", default="cpu")
    d.add_argument("--nms", default="auto", choices=("auto", "native", "torch", "gpu"),
                   help="NMS implementation (auto: GPU NMS with the triton backend, C++ otherwise)")
    d.add_argument("--batch", type=positive_int, default=8, help="videos per detect_batch call (>= 1)")
    d.add_argument("--ids", default="stem", choices=("stem", "relpath"),
                   help="video ids: file name without .npy (default), or the path relative to the files' common folder")
    d.add_argument("-o", "--output", default="results.json", help="ActivityNet-format results JSON")
    d.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    d.add_argument("--ray", action="store_true", help="run as a Ray Data job (resumable; pip install 'mse-rt[ray]')")
    d.add_argument("--address", default=None, help="with --ray: an existing cluster (default: a local one on 127.0.0.1)")
    d.add_argument("--actors", type=positive_int, default=2, help="with --ray: detector actors")
    d.add_argument("--gpus-per-actor", type=float, default=0.0, help="with --ray: GPUs per actor")
    d.add_argument("--actor-retries", type=nonneg_int, default=2,
                   help="with --ray: restarts of a dead worker (and retries of its batch) before the batch is set aside")
    d.add_argument("--jsonl", action="store_true", help="with --ray: write JSON lines (huge corpora)")
    d.add_argument("features", nargs="+", help="feature files, one (T, C) .npy per video, or folders of them")
    d.set_defaults(fn=_cmd_detect)
