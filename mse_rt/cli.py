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


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {v}")
    return v


def _nonneg_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {v}")
    return v


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
        det = Detector.from_file(args.model, nms_impl=args.nms)
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


def _cmd_export(args: argparse.Namespace) -> int:
    import logging

    from .export import export_onnx, get_format
    from .fileio import check_output_path

    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    fmt = get_format(args.format)
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
    d.add_argument("features", nargs="+", help="feature files, one (T, C) .npy per video, or folders of them")
    d.set_defaults(fn=_cmd_detect)

    e = sub.add_parser("export", help="export a checkpoint to a deployable format")
    e.add_argument("--config", required=True)
    e.add_argument("--ckpt", required=True)
    e.add_argument("--format", default="onnx", help="onnx | engine (TensorRT, needs a GPU and tensorrt)")
    e.add_argument("--precision", default="fp32", choices=("fp32", "fp16"),
                   help="graph precision (fp16: half network, float32 I/O, softmax / norms / decode in float32)")
    e.add_argument("--max-batch", type=_positive_int, default=8, help="engine profile: largest batch")
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
