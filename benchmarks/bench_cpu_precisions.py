"""CPU precisions at THUMOS size: each variant in its own process, eager fp32 timed before and after.

    python benchmarks/bench_cpu_precisions.py [--variants ...] [--threads 2] [--out cpu_report]

Timing: ``mse-rt benchmark`` per variant in a fresh process (THUMOS config, random weights,
T = 2304, B = 1 latency and B = 4 throughput through ``Detector.detect_batch``; the OpenVINO
bf16 / int8 variants once more with the throughput hint, where the 4 videos run as parallel
single-video requests on OpenVINO's streams; the ONNX Runtime / OpenVINO processes run with
``OMP_WAIT_POLICY=PASSIVE``, as the README recommends for them: torch's idle OpenMP threads
otherwise spin beside the engine's own threads, which cost OpenVINO bf16 up to 25 % in some
processes (514 vs 412 ms); eager keeps the default, which is 9 % faster for it; int8 variants are
calibrated on random features since the weights are random). Accuracy: the bundled demo model
on its 8 held-out videos, each variant's mAP (tIoU 0.3:0.7), int8 calibrated on 32 synthetic
videos of another seed (3; OpenVINO int8 with NNCF's full bias correction, the recipe its 0.5-point
tolerance is documented for; the timing runs use the fast default: same speed), and the
detection agreement with eager fp32 on the golden videos of thumos_small (top-10 matched, score
and segment differences). Writes OUT/cpu_precisions.md / .json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from harness import REPO, THUMOS_CONFIG, Report, add_out_argument, use_source_tree

CONFIG = THUMOS_CONFIG
GOLDEN = REPO / "tests" / "data" / "golden" / "thumos_small"  # vendored reference vectors (data, not code)


def time_variant(variant: str, threads: int, repeat: int, tmp: Path, hint: str = "latency",
                 batches: tuple = (1, 4), passive: bool = True) -> dict:
    out = tmp / f"{variant}-{hint}.json"
    cmd = [sys.executable, "-m", "mse_rt.cli", "benchmark", "--config", str(CONFIG), "--variants", variant,
           "--T", "2304", "--B", *map(str, batches), "--repeat", str(repeat), "--threads", str(threads),
           "--hint", hint, "--json", str(out)]
    env = dict(os.environ)
    if passive and variant != "eager":
        env["OMP_WAIT_POLICY"] = "PASSIVE"  # torch's idle OpenMP threads must not spin beside the engine's
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"rc {proc.returncode}"}
    return json.loads(out.read_text())


def accuracy(variants: list[str], threads: int) -> dict:
    import numpy as np
    import torch

    from mse_rt.apps.demo import DEMO, DEMO_CKPT, DEMO_CONFIG
    from mse_rt.apps.synth import write_dataset
    from mse_rt.apps.variants import build_variants, compare_results
    from mse_rt.eval import THUMOS_TIOUS, evaluate
    from mse_rt.io.dataset import read_dataset

    torch.set_num_threads(threads)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        calib = write_dataset(Path(tmp) / "calib", 32, seed=3) / "features"
        dets = build_variants(["eager", *[v for v in variants if v != "eager"]], DEMO_CONFIG, DEMO_CKPT,
                              Path(tmp) / "demo", calib=[calib], threads=threads, bias_correction="full")
        vids = read_dataset(DEMO)
        for name, det in dets.items():
            rs = [det.detect(v["feats"], fps=v["fps"], video_id=v["video_id"]) for v in vids]
            out[name] = {"demo_mAP": 100 * evaluate(rs, DEMO / "annotations.json", THUMOS_TIOUS,
                                                    split="validation").average}
        gold_calib = [np.load(p)["feats"].T for p in sorted((GOLDEN / "videos").glob("*.npz"))]
        gdets = build_variants(["eager", *[v for v in variants if v != "eager"]], GOLDEN / "config.yaml",
                               GOLDEN / "ckpt.pth.tar", Path(tmp) / "golden", calib=gold_calib, threads=threads)
        feats = gold_calib
        ref = gdets["eager"].detect_batch(feats, fps=30.0)
        for name, det in gdets.items():
            if name != "eager":
                out[name]["golden_agreement"] = compare_results(ref, det.detect_batch(feats, fps=30.0)).line()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", nargs="+", default=["onnxruntime", "onnxruntime-int8", "openvino-fp32",
                                                      "openvino-bf16", "openvino-int8"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    add_out_argument(ap, default="cpu_report")
    ap.add_argument("--no-accuracy", action="store_true")
    ap.add_argument("--omp-active", action="store_true",
                    help="leave OMP_WAIT_POLICY unset for the ONNX Runtime / OpenVINO processes too")
    args = ap.parse_args()
    use_source_tree()
    report = Report("cpu_precisions", args.out, title=__doc__.splitlines()[0])
    results = report.data["timing"] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        runs = [("eager", "eager", "latency")]
        for v in args.variants:
            runs.append((v, v, "latency"))
            if v.startswith("openvino") and v != "openvino-fp32":  # B = 4 as parallel requests on streams
                runs.append((f"{v} (throughput hint)", v, "throughput"))
        runs.append(("eager (after)", "eager", "latency"))
        for key, v, hint in runs:
            print(f"timing {key} ...", flush=True)
            results[key] = time_variant(v, args.threads, args.repeat, tmp, hint, passive=not args.omp_active)
            print(json.dumps(results[key].get("rows", results[key]))[:300], flush=True)
            report.write()  # the raw timings so far survive a kill (the accuracy runs take minutes)
    acc = report.data["accuracy"] = {} if args.no_accuracy else accuracy(args.variants, args.threads)

    def ms(key, B):
        r = results.get(key, {})
        return next((x for x in r.get("rows", []) if x["B"] == B), None)

    base1 = [ms(k, 1)["ms_median"] for k in ("eager", "eager (after)") if ms(k, 1)]
    base4 = [ms(k, 4)["videos_per_s"] for k in ("eager", "eager (after)") if ms(k, 4)]
    b1, b4 = sum(base1) / len(base1), sum(base4) / len(base4)
    peaks = {}
    for r in results.values():
        peaks.update({k: v for k, v in r.get("gemm_peaks_gops", {}).items() if v})
    peak_line = ", ".join(f"{k} {v:.0f}" for k, v in sorted(peaks.items()))
    report.note(f"THUMOS size (random weights, T = 2304), {args.threads} threads, each variant in its own process; "
                f"eager fp32 before / after: {base1[0]:.0f} / {base1[-1]:.0f} ms at B = 1; GEMM peaks (torch, 1e9 "
                f"ops/s): {peak_line}; OMP_WAIT_POLICY={'default' if args.omp_active else 'PASSIVE'} for the "
                "non-eager variants.")
    rows = []
    for key in results:
        r1, r4 = ms(key, 1), ms(key, 4)
        if r1 is None:
            rows.append((key, f"error: {results[key].get('error', '?')}"))
            continue
        a = acc.get(key.split(" ")[0], {})
        share = f"{100 * r4['gflops'] / r4['peak_gops']:.0f} % ({r4['precision']})" if r4.get("peak_gops") else "-"
        rows.append((key, r1["ms_median"], b1 / r1["ms_median"], r4["videos_per_s"], r4["videos_per_s"] / b4,
                     r4["gflops"], share, a.get("demo_mAP", float("nan")), a.get("golden_agreement", "-")))
    report.table("CPU precisions vs eager fp32",
                 ["variant", "B=1 ms", "vs eager", "B=4 videos/s", "vs eager (B=4)", "GFLOP/s (B=4)", "% of peak",
                  "demo mAP", "golden agreement vs eager"], rows,
                 formats={"B=1 ms": ".0f", "vs eager": "{:.2f}x", "B=4 videos/s": ".2f", "vs eager (B=4)": "{:.2f}x",
                          "GFLOP/s (B=4)": ".0f", "demo mAP": ".2f"})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
