"""Command line: ``mse-rt detect | demo | info``.

    mse-rt detect --config C.yaml --ckpt K.pth.tar [--fps 30] a.npy b.npy -o results.json
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from .errors import MseRtError


def _int_at_least(low: int):
    """argparse type: an integer >= ``low``, with a usage error naming the bound."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {v}")
        return v

    return parse


_positive_int = _int_at_least(1)
_nonneg_int = _int_at_least(0)


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text}")
    return v


def _unit_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None
    if not 0 <= v < 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text}")
    return v


def collect_feature_files(inputs: list[str]) -> list[Path]:
    """Feature files from files and folders (a folder gives its ``*.npy`` files, recursively, sorted)."""
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(p.rglob("*.npy"))
            if not found:
                raise MseRtError(f"folder {p} holds no .npy feature files")
            files += found
        else:
            files.append(p)
    return files


def video_ids_for(files: list[Path], scheme: str) -> list[str]:
    """Video ids of feature files: ``stem`` (file name without .npy, the reference's convention) or
    ``relpath`` (path relative to the files' common folder, without .npy: unique for distinct files)."""
    if scheme == "stem":
        return [f.stem for f in files]
    resolved = [f.resolve() for f in files]
    root = Path(os.path.commonpath([str(r.parent) for r in resolved]))
    return [r.relative_to(root).with_suffix("").as_posix() for r in resolved]


def _cmd_detect(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .features import load_feature_file
    from .fileio import check_output_path
    from .preprocess import check_features
    from .results import check_unique_ids, write_results_json
    from .runtime import Detector

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
    done: set[int] = set()
    t0 = time.perf_counter()
    interrupted = False
    try:
        with tqdm(total=len(files), unit="video", desc="detect", disable=args.quiet) as bar:
            for start in range(0, len(files), args.batch):
                chunk, chunk_ids, feats = [], [], []
                for i in range(start, min(start + args.batch, len(files))):
                    try:  # a bad file is reported and skipped; the others go on
                        x = load_feature_file(files[i])
                        check_features(x, det.cfg, name=str(files[i]))
                    except MseRtError as exc:
                        failed.append((ids[i], str(exc)))
                        done.add(i)
                        continue
                    chunk.append(i)
                    chunk_ids.append(ids[i])
                    feats.append(x)
                if feats:
                    try:
                        results += det.detect_batch(feats, fps=args.fps, video_ids=chunk_ids)
                    except MseRtError as exc:
                        failed += [(v, str(exc)) for v in chunk_ids]
                done.update(range(start, min(start + args.batch, len(files))))
                bar.update(min(start + args.batch, len(files)) - start)
    except KeyboardInterrupt:
        interrupted = True
    out = write_results_json(results, args.output)
    missing = [ids[i] for i in range(len(files)) if i not in done]
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
    """``detect --ray``: the Ray Data job of mse_rt.scale (resumable through its journal)."""
    from .scale import detect_corpus_ray, shutdown

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


def _cmd_serve(args: argparse.Namespace) -> int:
    from .scale import serve_detector, shutdown

    if not (args.model or (args.config and args.ckpt)):
        raise MseRtError("serve needs --config and --ckpt, or --model FILE")
    serve_detector(host=args.host, port=args.port, config=args.config, ckpt=args.ckpt, model_file=args.model,
                   backend=args.backend, device=args.device, replicas=args.replicas, max_batch=args.max_batch)
    print(f"serving on http://{args.host}:{args.port}/detect (Ctrl-C stops)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        shutdown()
        return 0


def _cmd_stream(args: argparse.Namespace) -> int:
    """Play feature files as simultaneous live streams; print detections as they become final."""
    from .features import load_feature_file
    from .live import StreamPool
    from .runtime import Detector

    files = collect_feature_files(args.features)
    ids = video_ids_for(files, args.ids)
    from .results import check_unique_ids

    check_unique_ids(ids)
    if args.model:
        det = Detector.from_file(args.model, max_batch=args.max_batch, allow_slow_int8=args.allow_slow_int8)
    elif args.config and args.ckpt:
        det = Detector.from_checkpoint(args.config, args.ckpt, backend=args.backend, device=args.device,
                                       max_batch=args.max_batch)
    else:
        from .demo import DEMO_CKPT, DEMO_CONFIG

        det = Detector.from_checkpoint(DEMO_CONFIG, DEMO_CKPT, max_batch=args.max_batch)
        print("no model given: the bundled demo model", file=sys.stderr)
    feats = {v: load_feature_file(f) for v, f in zip(ids, files)}
    pool = StreamPool(det, hop=args.hop, lag=args.lag, provisional_min_score=args.show_in_progress or 0.3)
    d = det.cfg["dataset"]
    fps = args.fps or d["default_fps"]
    if fps is None:
        raise MseRtError("--fps is required (the config has no dataset.default_fps)")
    for v in ids:
        pool.add(v, fps=fps)
    shown: dict = {}  # stream -> in-progress events already printed
    step_s = d["feat_stride"] / fps  # video seconds per feature step
    longest = max(len(x) for x in feats.values())
    t_start = time.perf_counter()
    n_final = 0

    def show(v, res, closing=False):
        nonlocal n_final
        now = (res.steps * d["feat_stride"] + d["num_frames"]) / fps
        for (s, e), c, p in zip(res.final.segments, res.final.labels, res.final.scores):
            if p < args.min_score:
                continue
            n_final += 1
            print(f"[{now:8.2f} s] {v}: FINAL class {int(c)} {s:.2f}-{e:.2f} s score {p:.3f} "
                  f"(reported {now - e:.2f} s after its end{', at close' if closing else ''})", flush=True)
        if args.show_in_progress and not closing:
            cur = {(int(c), round(float(s), 1)) for (s, _), c in zip(res.in_progress.segments, res.in_progress.labels)}
            for c, s in sorted(cur - shown.get(v, set())):
                print(f"[{now:8.2f} s] {v}: in progress: class {c} since {s:.1f} s", flush=True)
            shown[v] = cur

    try:
        for t in range(0, longest, args.hop):
            chunks = {v: x[t:t + args.hop] for v, x in feats.items() if t < len(x) and v in pool.streams}
            for v, res in pool.push_and_step(chunks).items():
                show(v, res)
            for v, x in feats.items():
                if v in pool.streams and t + args.hop >= len(x):
                    show(v, pool.close(v), closing=True)
            if args.realtime:  # wait until the video time of these steps has passed
                lag = (t + args.hop) * step_s / args.speed - (time.perf_counter() - t_start)
                if lag > 0:
                    time.sleep(lag)
    except KeyboardInterrupt:
        print(f"mse-rt: stream interrupted after {n_final} final detections", file=sys.stderr)
        return 130
    print(f"{len(ids)} streams, {n_final} final detections (score >= {args.min_score}); "
          f"{time.perf_counter() - t_start:.1f} s wall", flush=True)
    return 0


def _cmd_quantize(args: argparse.Namespace) -> int:
    import logging

    from .export.quantize import quantize_onnx
    from .fileio import check_output_path

    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    check_output_path(args.output, what="quantized model")
    out = quantize_onnx(args.model, args.output, args.calib, max_videos=args.max_videos)
    print(f"wrote {out}")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    import tempfile

    from .eval import THUMOS_TIOUS, evaluate
    from .features import load_feature_file
    from .variants import build_variants, compare_results

    files = collect_feature_files(args.features)
    ids = video_ids_for(files, args.ids)
    from .results import check_unique_ids

    check_unique_ids(ids)
    feats = [load_feature_file(f) for f in files]
    names = [args.reference, *args.variants]
    with tempfile.TemporaryDirectory() as tmp:
        dets = build_variants(names, args.config, args.ckpt, tmp, calib=args.calib, threads=args.threads)
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
            m = evaluate(results[n], args.gt, THUMOS_TIOUS, split=args.split)
            line += f"  mAP {100 * m.average:.2f}"
        print(line)
    return 0


def _cmd_benchmark(args: argparse.Namespace) -> int:
    from .bench import markdown, run_benchmark, to_json
    from .fileio import atomic_write_text

    res = run_benchmark(args.variants, args.config, args.ckpt, Ts=args.T, Bs=args.B, warmup=args.warmup,
                        repeat=args.repeat, calib=args.calib, threads=args.threads, hint=args.hint)
    md = markdown(res)
    print(md)
    if args.json:
        atomic_write_text(args.json, to_json(res), what="benchmark JSON")
    if args.md:
        atomic_write_text(args.md, md + "\n", what="benchmark report")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    import logging

    from .export import export_onnx, get_format
    from .fileio import check_output_path

    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    fmt = get_format(args.format)
    if fmt.name == "triton-repo":
        from .export.triton_repo import export_triton_repo

        out = export_triton_repo((args.config, args.ckpt), args.output, max_batch=args.max_batch,
                                 net_backend=args.triton_net)
        print(f"exported {out}")
        return 0
    check_output_path(args.output, what="export output")
    if fmt.name == "onnx":
        out = export_onnx((args.config, args.ckpt), args.output, opset=args.opset, dynamic=not args.static,
                          batch=args.batch, max_len=args.max_len, precision=args.precision)
    else:
        import tempfile

        from .export import build_engine

        fp16 = args.precision == "fp16"
        with tempfile.TemporaryDirectory() as tmp:
            onnx_path = export_onnx((args.config, args.ckpt), Path(tmp) / "model.onnx", opset=args.opset,
                                    precision=args.precision)
            out = build_engine(onnx_path, args.output, fp16=fp16, max_batch=args.max_batch)
    print(f"exported {out}")
    return 0


def _cmd_check_onnx(args: argparse.Namespace) -> int:
    from .export import check_onnx_for_tensorrt

    ok = True
    for path in args.models:
        report = check_onnx_for_tensorrt(path)
        print(report.summary())
        ok &= report.ok
    return 0 if ok else 1


def _cmd_eval(args: argparse.Namespace) -> int:
    from .eval import ANET_TIOUS, THUMOS_TIOUS, evaluate

    if args.tious == "thumos":
        tious = THUMOS_TIOUS
    elif args.tious == "anet":
        tious = ANET_TIOUS
    else:
        try:
            tious = np.array([float(t) for t in args.tious.split(",")])
        except ValueError:
            raise MseRtError(f"--tious: 'thumos', 'anet' or comma-separated numbers, got {args.tious!r}") from None
    r = evaluate(args.results, args.gt, tious, split=args.split, strict=args.strict)
    print(f"{args.results}: {len(r.classes)} classes, ground-truth subset(s) scored: {', '.join(r.subsets)}")
    if r.swapped:
        print(f"mse-rt: warning: {r.swapped} predictions have end < start; scored as false positives "
              "(as the reference does; --strict refuses them)", file=sys.stderr)
    print(r.table())
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(out_dir=Path(args.out), quiet=args.quiet)


def _cmd_synth(args: argparse.Namespace) -> int:
    from .data import write_dataset

    out = write_dataset(args.out, args.videos, args.seed, subset=args.subset)
    print(f"wrote {args.videos} synthetic videos ({args.subset}, seed {args.seed}) to {out}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    import torch

    from .config import load_config
    from .data import read_dataset
    from .train import TrainOptions, train

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


def _cmd_info(args: argparse.Namespace) -> int:
    import torch

    from . import __version__
    from .postprocess import native_available
    from .runtime import BACKENDS

    print(f"mse_rt {__version__}, torch {torch.__version__}, numpy {np.__version__}")
    print(f"backends: {', '.join(BACKENDS)}; native C++ NMS: {'yes' if native_available() else 'NO'}")
    print(f"CUDA available: {torch.cuda.is_available()}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="mse-rt", description="MSE-TAD temporal action detection runtime")
    sub = ap.add_subparsers(dest="command", required=True)

    d = sub.add_parser("detect", help="detect actions in feature files (.npy, (T, C) time-first)")
    d.add_argument("--config", help="reference YAML config")
    d.add_argument("--ckpt", help="reference checkpoint (.pth.tar)")
    d.add_argument("--model", help="a deployable model file instead of config + checkpoint (.onnx, .engine)")
    d.add_argument("--allow-slow-int8", action="store_true",
                   help="run an int8 ONNX graph on a CPU without int8 dot-product instructions (VNNI)")
    d.add_argument("--fps", type=_positive_float, default=None, help="video frame rate (default: dataset.default_fps)")
    d.add_argument("--backend", default="eager")
    d.add_argument("--device", default="cpu")
    d.add_argument("--nms", default="auto", choices=("auto", "native", "torch", "gpu"),
                   help="NMS implementation (auto: GPU NMS with the triton backend, C++ otherwise)")
    d.add_argument("--batch", type=_positive_int, default=8, help="videos per detect_batch call (>= 1)")
    d.add_argument("--ids", default="stem", choices=("stem", "relpath"),
                   help="video ids: file name without .npy (default), or the path relative to the files' common folder")
    d.add_argument("-o", "--output", default="results.json", help="ActivityNet-format results JSON")
    d.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    d.add_argument("--ray", action="store_true", help="run as a Ray Data job (resumable; pip install 'mse-rt[ray]')")
    d.add_argument("--address", default=None, help="with --ray: an existing cluster (default: a local one on 127.0.0.1)")
    d.add_argument("--actors", type=_positive_int, default=2, help="with --ray: detector actors")
    d.add_argument("--gpus-per-actor", type=float, default=0.0, help="with --ray: GPUs per actor")
    d.add_argument("--actor-retries", type=_nonneg_int, default=2,
                   help="with --ray: restarts of a dead worker (and retries of its batch) before the batch is set aside")
    d.add_argument("--jsonl", action="store_true", help="with --ray: write JSON lines (huge corpora)")
    d.add_argument("features", nargs="+", help="feature files, one (T, C) .npy per video, or folders of them")
    d.set_defaults(fn=_cmd_detect)

    sv = sub.add_parser("serve", help="HTTP endpoint (Ray Serve) on 127.0.0.1: POST features, get detections")
    sv.add_argument("--config")
    sv.add_argument("--ckpt")
    sv.add_argument("--model")
    sv.add_argument("--backend", default="eager")
    sv.add_argument("--device", default="cpu")
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=_positive_int, default=8000)
    sv.add_argument("--replicas", type=_positive_int, default=1)
    sv.add_argument("--max-batch", type=_positive_int, default=8)
    sv.set_defaults(fn=_cmd_serve)

    st = sub.add_parser("stream", help="play feature files as live streams; print detections as they become final")
    st.add_argument("--config")
    st.add_argument("--ckpt")
    st.add_argument("--model", help="a deployable model file (.onnx, .engine)")
    st.add_argument("--allow-slow-int8", action="store_true",
                   help="run an int8 ONNX graph on a CPU without int8 dot-product instructions (VNNI)")
    st.add_argument("--backend", default="eager")
    st.add_argument("--device", default="cpu")
    st.add_argument("--fps", type=_positive_float, default=None)
    st.add_argument("--lag", type=_nonneg_int, default=8, help="steps after a predicted end before it is final")
    st.add_argument("--hop", type=_positive_int, default=4, help="steps between model runs (and per push)")
    st.add_argument("--max-batch", type=_positive_int, default=16, help="windows per forward pass")
    st.add_argument("--min-score", type=_unit_float, default=0.2, help="print final detections from this score")
    st.add_argument("--show-in-progress", type=_unit_float, default=None, metavar="SCORE",
                    help="also print actions in progress with at least this score")
    st.add_argument("--realtime", action="store_true", help="play at the video's pace (default: as fast as possible)")
    st.add_argument("--speed", type=_positive_float, default=1.0, help="with --realtime: playback speed factor")
    st.add_argument("--ids", default="stem", choices=("stem", "relpath"))
    st.add_argument("features", nargs="+", help="feature files (one stream each) or folders of them")
    st.set_defaults(fn=_cmd_stream)

    qz = sub.add_parser("quantize", help="static int8 (QDQ) ONNX for ONNX Runtime, calibrated on your feature files")
    qz.add_argument("--model", required=True, help="fp32 ONNX written by mse-rt export")
    qz.add_argument("--calib", nargs="+", required=True, help="calibration feature files or folders (.npy, (T, C))")
    qz.add_argument("--max-videos", type=_positive_int, default=32)
    qz.add_argument("-o", "--output", required=True)
    qz.set_defaults(fn=_cmd_quantize)

    from .variants import VARIANTS

    cp = sub.add_parser("compare", help="detection agreement (and mAP) of deployment variants vs a reference")
    cp.add_argument("--config", required=True)
    cp.add_argument("--ckpt", required=True)
    cp.add_argument("--reference", default="eager", choices=VARIANTS)
    cp.add_argument("--variants", nargs="+", required=True, choices=VARIANTS)
    cp.add_argument("--calib", nargs="+", default=None, help="calibration feature files / folders (int8 variants)")
    cp.add_argument("--gt", default=None, help="ground truth (ActivityNet JSON): also print each variant's mAP")
    cp.add_argument("--split", default=None)
    cp.add_argument("--fps", type=_positive_float, default=None)
    cp.add_argument("--threads", type=_positive_int, default=None)
    cp.add_argument("--top-k", type=_positive_int, default=10)
    cp.add_argument("--ids", default="stem", choices=("stem", "relpath"))
    cp.add_argument("features", nargs="+")
    cp.set_defaults(fn=_cmd_compare)

    bm = sub.add_parser("benchmark", help="latency / throughput of deployment variants over a grid of T and B")
    bm.add_argument("--config", required=True)
    bm.add_argument("--ckpt", default=None, help="default: random weights (timing only)")
    bm.add_argument("--variants", nargs="+", default=["eager", "onnxruntime"], choices=VARIANTS)
    bm.add_argument("--T", type=_positive_int, nargs="+", default=[2304])
    bm.add_argument("--B", type=_positive_int, nargs="+", default=[1, 4])
    bm.add_argument("--warmup", type=_nonneg_int, default=2)
    bm.add_argument("--repeat", type=_positive_int, default=5)
    bm.add_argument("--calib", nargs="+", default=None)
    bm.add_argument("--threads", type=_positive_int, default=None)
    bm.add_argument("--hint", default="latency", choices=("latency", "throughput"), help="OpenVINO performance hint")
    bm.add_argument("--json", default=None)
    bm.add_argument("--md", default=None)
    bm.set_defaults(fn=_cmd_benchmark)

    e = sub.add_parser("export", help="export a checkpoint to a deployable format")
    e.add_argument("--config", required=True)
    e.add_argument("--ckpt", required=True)
    e.add_argument("--format", default="onnx",
                   help="onnx | engine (TensorRT, needs a GPU and tensorrt) | triton-repo (a folder)")
    e.add_argument("--precision", default="fp32", choices=("fp32", "fp16"),
                   help="graph precision (fp16: half network, float32 I/O, softmax / norms / decode in float32)")
    e.add_argument("--max-batch", type=_positive_int, default=8, help="engine profile: largest batch")
    e.add_argument("--triton-net", default="onnxruntime", choices=("onnxruntime", "python"),
                   help="triton-repo: the network on Triton's ONNX Runtime backend, or on the Python backend "
                        "(ONNX Runtime inside; for servers without the ONNX Runtime backend)")
    e.add_argument("--opset", type=int, default=None, help="ONNX opset (default 17)")
    e.add_argument("--static", action="store_true", help="fixed (batch, max-len) instead of dynamic axes")
    e.add_argument("--batch", type=_positive_int, default=1, help="example / static batch size")
    e.add_argument("--max-len", type=_positive_int, default=None, help="example / static padded length")
    e.add_argument("-o", "--output", required=True)
    e.set_defaults(fn=_cmd_export)

    k = sub.add_parser("check-onnx", help="static TensorRT 10 compatibility check of ONNX graphs (no GPU needed)")
    k.add_argument("models", nargs="+")
    k.set_defaults(fn=_cmd_check_onnx)

    v = sub.add_parser("eval", help="ActivityNet detection mAP of a results JSON")
    v.add_argument("--gt", required=True, help="ground truth, ActivityNet JSON ('database')")
    v.add_argument("--tious", default="thumos", help="thumos (0.3:0.7), anet (0.5:0.95) or e.g. 0.3,0.5")
    v.add_argument("--split", default=None,
                   help="ground-truth subset to score (e.g. validation, test; 'all' for every subset); "
                        "required when the ground truth holds several")
    v.add_argument("--strict", action="store_true", help="refuse predictions with end < start")
    v.add_argument("results", help="results JSON written by mse-rt detect")
    v.set_defaults(fn=_cmd_eval)

    y = sub.add_parser("synth", help="write a synthetic TAD dataset (features + ActivityNet JSON)")
    y.add_argument("--out", required=True)
    y.add_argument("--videos", type=_positive_int, default=64)
    y.add_argument("--seed", type=_nonneg_int, default=0)
    y.add_argument("--subset", default="training")
    y.set_defaults(fn=_cmd_synth)

    t = sub.add_parser("train", help="train MSE-TAD with the reference recipe (small scale, CPU)")
    t.add_argument("--config", required=True)
    t.add_argument("--data", required=True, help="dataset folder: annotations.json + features/*.npy")
    t.add_argument("--subset", default="training")
    t.add_argument("--out", required=True, help="checkpoint path (reference layout)")
    t.add_argument("--epochs", type=_positive_int, default=None)
    t.add_argument("--batch-size", type=_positive_int, default=None)
    t.add_argument("--lr", type=_positive_float, default=None)
    t.add_argument("--ema-decay", type=_unit_float, default=0.999)
    t.add_argument("--seed", type=_nonneg_int, default=0)
    t.add_argument("--threads", type=_positive_int, default=2)
    t.set_defaults(fn=_cmd_train)

    m = sub.add_parser("demo", help="the main job: run the bundled example end to end")
    m.add_argument("--out", default="demo_out", help="folder for results JSON and plots")
    m.add_argument("-q", "--quiet", action="store_true")
    m.set_defaults(fn=_cmd_demo)

    i = sub.add_parser("info", help="versions, backends and native modules available here")
    i.set_defaults(fn=_cmd_info)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except MseRtError as exc:
        print(f"mse-rt: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mse-rt: {args.command} interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
