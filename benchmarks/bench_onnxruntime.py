"""ONNX Runtime (CPU) vs eager PyTorch (CPU), end to end, THUMOS-size model (random weights).

    python benchmarks/bench_onnxruntime.py [--config mse_rt/assets/configs/thumos_i3d.yaml] [--T 2304] [--out DIR]

End to end = ``Detector.detect_batch`` on B videos of T steps (checks, padding, forward, decode,
NMS). Each backend is timed in its own fresh worker process, as it would run in production, with
``--threads`` compute threads: eager uses them for torch; onnxruntime uses them for the ORT session
and leaves torch (which only decodes) at 1 thread, so that torch's OpenMP pool does not spin
against ORT's threads between calls (measured here: that contention alone costs ORT ~15% at B = 1).
Prints medians and the eager / onnxruntime ratio of this one run; ``--out DIR`` writes
DIR/onnxruntime.md / .json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from harness import THUMOS_CONFIG, Report, add_out_argument, median_seconds, use_source_tree


def worker(args: argparse.Namespace) -> None:
    from mse_rt import Detector, build_model, load_config

    cfg = load_config(args.config)
    if args.worker == "eager":
        torch.set_num_threads(args.threads)
        model = build_model(cfg)
        model.load_state_dict(torch.load(Path(args.tmp) / "weights.pt", weights_only=True))
        det = Detector.from_model(cfg, model)
    else:
        torch.set_num_threads(1)
        det = Detector.from_onnx(Path(args.tmp) / "model.onnx", intra_op_threads=args.threads, inter_op_threads=1)
    rng = np.random.default_rng(0)
    out = {}
    for B in (int(b) for b in args.batches.split(",")):
        vids = [rng.standard_normal((args.T, cfg["model"]["input_dim"])).astype(np.float32) for _ in range(B)]
        t = median_seconds(lambda v=vids: det.detect_batch(v, fps=30.0), args.repeat)
        dets = det.detect_batch(vids[:1], fps=30.0)[0]
        out[B] = {"seconds": t, "detections": len(dets)}
    print(json.dumps(out))


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(THUMOS_CONFIG))
    ap.add_argument("--T", type=int, default=2304)
    ap.add_argument("--batches", default="1,4")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--worker", choices=("eager", "onnxruntime"), help=argparse.SUPPRESS)
    ap.add_argument("--tmp", help=argparse.SUPPRESS)
    add_out_argument(ap)
    args = ap.parse_args(argv)
    use_source_tree()
    if args.worker:
        worker(args)
        return {}
    from mse_rt import load_config
    from mse_rt.export import export_onnx
    from mse_rt.model import build_random_model

    cfg = load_config(args.config)
    model = build_random_model(cfg)  # random weights that give a realistic number of candidates
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        torch.save(model.state_dict(), Path(tmp) / "weights.pt")
        t0 = time.perf_counter()
        export_onnx(model, Path(tmp) / "model.onnx")
        t_export = time.perf_counter() - t0
        for backend in ("eager", "onnxruntime"):
            cmd = [sys.executable, __file__, "--worker", backend, "--tmp", tmp, "--config", args.config,
                   "--T", str(args.T), "--batches", args.batches, "--repeat", str(args.repeat),
                   "--threads", str(args.threads)]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
            results[backend] = {int(k): v for k, v in json.loads(proc.stdout.strip().splitlines()[-1]).items()}
    report = Report("onnxruntime", args.out, title=__doc__.splitlines()[0])
    report.data.update({"results": results, "export_s": t_export})
    rows = []
    for B in results["eager"]:
        e, o = results["eager"][B], results["onnxruntime"][B]
        rows.append((B, e["seconds"], o["seconds"], e["seconds"] / o["seconds"], f"{e['detections']}/{o['detections']}"))
    report.table(f"ONNX Runtime vs eager, CPU, {Path(args.config).name}, T={args.T}, {args.threads} threads, "
                 f"median of {args.repeat}; export + validation {t_export:.1f} s",
                 ["B", "eager (s)", "onnxrt (s)", "ratio", "dets eager/onnx"], rows,
                 formats={"eager (s)": ".3f", "onnxrt (s)": ".3f", "ratio": "{:.2f}x"})
    return results


if __name__ == "__main__":
    main()
