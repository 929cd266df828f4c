"""The I3D RGB backbone alone, every CPU variant in its own process: speed, share of the GEMM peak, accuracy vs fp32.

    python benchmarks/bench_backbone.py [--sizes 224 160] [--batch 1 4] [--threads 2] [--repeat 10] [--out DIR]

Variants (:func:`mse_rt.video.load_backbone`): eager fp32 (FastInceptionI3d), ONNX Runtime fp32,
OpenVINO fp32 / bf16 / int8 (int8 calibrated on 64 clips of rendered synthetic videos, seed 0).
Each runs in a fresh process (``OMP_WAIT_POLICY=PASSIVE`` for the ONNX Runtime / OpenVINO ones,
as the README recommends) with ``--threads`` threads, on uint8 clips of 16 x S x S; the parent
first fills the export cache (converted weights, ONNX graph per size, int8 IR) so the children only
load. Timing: ``--repeat`` calls per batch size after 2 warm-up calls, each call timed alone;
ms/clip from the minimum and the median call, clips/s from the median; CPU ms/clip: the process's
CPU time (all threads, warm-up included) per clip, which a busy machine inflates less than wall time
(on an idle one, wall time is about CPU time / threads when the threads are kept busy).

GFLOP per clip: counted by torch's FlopCounterMode on the reference module (2 per multiply-add;
55.6 at 224, the figure the issue uses). % of peak: GFLOP/s (median) over the measured GEMM peak of
the variant's precision (:func:`mse_rt.apps.benchmark.gemm_peak`: fp32 for fp32, bf16 for bf16, int8
for int8; torch matmul / _int_mm, same threads, own process) — a practical ceiling, not the
hardware's theoretical one.

Accuracy: features and (at 224) Kinetics logits of 16 held-out clips of rendered synthetic videos
(seed 1, never used for calibration) against eager fp32: max |feature difference|, mean cosine
similarity of the features (and the worst clip's), top-5 agreement (mean overlap of the top-5
class sets, %) and top-1 agreement (%). The reference-clip figures are in tests/video/test_backbone_accuracy.py.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import Report, add_out_argument, measure, use_source_tree

VARIANTS = {  # name -> (backend, precision, GEMM peak precision)
    "eager fp32": ("eager", "fp32", "fp32"),
    "onnxruntime fp32": ("onnxruntime", "fp32", "fp32"),
    "openvino fp32": ("openvino", "fp32", "fp32"),
    "openvino bf16": ("openvino", "bf16", "bf16"),
    "openvino int8": ("openvino", "int8", "int8"),
}
L = 16
EVAL_CLIPS = 16
CALIB_CLIPS = 64


def _load(variant: str, size: int, threads: int, cache: str):
    from mse_rt.video import load_backbone

    backend, precision, _ = VARIANTS[variant]
    kw = {"calib": "synthetic", "calib_clips": CALIB_CLIPS} if precision == "int8" else {}
    return load_backbone("i3d-rgb", backend=backend, precision=precision, threads=threads, clip_shape=(L, size, size),
                         cache_dir=cache, **kw)


def child(args) -> None:
    """One variant at one size: timings and outputs on the held-out clips, written as JSON + npz."""
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    if args.variant == "gemm peak":
        from mse_rt.apps.benchmark import gemm_peak

        peaks = {p: gemm_peak(p) for p in ("fp32", "bf16", "int8")}
        Path(args.result).write_text(json.dumps(peaks))
        return
    bb = _load(args.variant, args.size, args.threads, args.cache)
    from mse_rt.video.backbone_int8 import synthetic_clips

    clips = synthetic_clips(EVAL_CLIPS, (L, args.size, args.size), seed=1)
    out = {"features": bb.features(clips)}
    if bb.num_classes:
        out["logits"] = bb.logits(clips)
    np.savez(Path(args.result).with_suffix(".npz"), **out)
    rng = np.random.default_rng(0)
    timings = {}
    cpu = {}
    for b in args.batch:
        x = rng.integers(0, 256, (b, L, args.size, args.size, 3), dtype=np.uint8)
        c0 = time.process_time()
        t = measure(lambda x=x: bb.features(x), repeat=args.repeat, warmup=2)
        timings[str(b)] = [s / b for s in t.seconds]
        cpu[str(b)] = (time.process_time() - c0) / (b * (args.repeat + 2))  # CPU seconds (all threads) per clip
    Path(args.result).write_text(json.dumps({"timings": timings, "cpu": cpu, "describe": bb.describe(),
                                             "load": os.getloadavg()[0]}))


def run_child(variant: str, size: int, args, tmp: Path) -> dict | None:
    result = tmp / f"{variant.replace(' ', '_')}_{size}.json"
    cmd = [sys.executable, __file__, "--child", variant, "--size", str(size), "--threads", str(args.threads),
           "--repeat", str(args.repeat), "--cache", args.cache, "--result", str(result), "--batch",
           *map(str, args.batch)]
    env = dict(os.environ)
    if variant.startswith(("onnxruntime", "openvino")):
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
        return None
    res = json.loads(result.read_text())
    if result.with_suffix(".npz").is_file():
        import numpy as np

        with np.load(result.with_suffix(".npz")) as data:
            res["outputs"] = {k: data[k] for k in data.files}
    return res


def gflop_per_clip(size: int) -> float:
    """GFLOP of one 16 x size x size clip's features (and logits where defined), torch's flop counter."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from mse_rt.video.i3d import InceptionI3d, logits_defined

    with torch.device("meta"):
        model = InceptionI3d()
        x = torch.zeros(1, L, size, size, 3, dtype=torch.uint8)
    with FlopCounterMode(display=False) as counter:
        model.features_and_logits(x) if logits_defined(L, size, size) else model.features(x)
    return counter.get_total_flops() / 1e9


def agreement(ref: dict, got: dict) -> dict:
    """Max |feature diff|, mean / worst cosine of features, top-5 / top-1 agreement (%) of logits."""
    import numpy as np

    f0, f1 = ref["features"].astype(np.float64), got["features"].astype(np.float64)
    cos = (f0 * f1).sum(1) / (np.linalg.norm(f0, axis=1) * np.linalg.norm(f1, axis=1))
    out = {"max_abs": float(np.abs(f0 - f1).max()), "cos_mean": float(cos.mean()), "cos_min": float(cos.min())}
    if "logits" in ref and "logits" in got:
        t0 = np.argsort(-ref["logits"], axis=1)[:, :5]
        t1 = np.argsort(-got["logits"], axis=1)[:, :5]
        out["top5"] = 100.0 * float(np.mean([len(set(a) & set(b)) / 5 for a, b in zip(t0, t1)]))
        out["top1"] = 100.0 * float(np.mean(t0[:, 0] == t1[:, 0]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[224, 160])
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--cache", default=None, help="export cache folder (default: a temporary one)")
    add_out_argument(ap)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--variant", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, default=224, help=argparse.SUPPRESS)
    ap.add_argument("--result", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    use_source_tree()
    if args.child:
        args.variant = args.child
        child(args)
        return
    with tempfile.TemporaryDirectory(prefix="bench_backbone_") as tmp_name:
        tmp = Path(tmp_name)
        args.cache = args.cache or str(tmp / "cache")
        report = Report("backbone", args.out, title="I3D RGB backbone alone: variants, speed and accuracy vs fp32")
        report.note(f"{args.threads} threads, each variant in its own process, uint8 clips of {L} x S x S, "
                    f"{args.repeat} timed calls per batch after 2 warm-up calls; int8 calibrated on "
                    f"{CALIB_CLIPS} synthetic clips (seed 0); accuracy on {EVAL_CLIPS} held-out synthetic clips "
                    "(seed 1) against eager fp32. Load average at the start: "
                    f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs.")
        peaks = run_child("gemm peak", 0, args, tmp) or {}
        report.note("Measured GEMM peaks (GFLOP/s or GOP/s, 2048^3, torch, same threads): "
                    + ", ".join(f"{k} {v:.0f}" for k, v in peaks.items() if v))
        for size in args.sizes:
            # fill the cache once (weights, ONNX graph, int8 IR) so the timed children only load
            for variant in args.variants:
                if VARIANTS[variant][0] != "eager":
                    _load(variant, size, args.threads, args.cache)
            gflop = gflop_per_clip(size)
            table = report.table(f"{L} x {size} x {size} clips ({gflop:.1f} GFLOP per clip)",
                                 ["variant", "batch", "ms/clip min", "ms/clip median", "clips/s", "CPU ms/clip",
                                  "GFLOP/s", "% of peak", "max abs dfeat", "cos mean", "cos min", "top-5 %", "top-1 %",
                                  "load"],
                                 formats={"ms/clip min": ".1f", "ms/clip median": ".1f", "clips/s": ".2f",
                                          "CPU ms/clip": ".0f",
                                          "GFLOP/s": ".0f", "% of peak": ".0f", "max abs dfeat": ".1e",
                                          "cos mean": ".5f", "cos min": ".5f", "top-5 %": ".0f", "top-1 %": ".0f",
                                          "load": ".1f"})
            ref = None
            for variant in args.variants:
                res = run_child(variant, size, args, tmp)
                if res is None:
                    table.add(variant, "failed (see stderr)")
                    continue
                if variant == "eager fp32":
                    ref = res["outputs"]
                acc = agreement(ref, res["outputs"]) if ref is not None else {}
                import statistics

                for b, secs in res["timings"].items():
                    med = statistics.median(secs)
                    peak = peaks.get(VARIANTS[variant][2])
                    table.add(variant, int(b), 1e3 * min(secs), 1e3 * med, 1 / med, 1e3 * res["cpu"][b], gflop / med,
                              100 * gflop / med / peak if peak else None, acc.get("max_abs"), acc.get("cos_mean"),
                              acc.get("cos_min"), acc.get("top5"), acc.get("top1"), res["load"])
                report.data.setdefault("describe", {})[f"{variant} {size}"] = res["describe"]
        report.write()


if __name__ == "__main__":
    main()
