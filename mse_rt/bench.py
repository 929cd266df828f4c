"""``mse-rt benchmark``: latency and throughput of deployment variants, like trtexec / benchmark_app.

For each variant (:data:`mse_rt.variants.VARIANTS`) and each (T, B) of the grid: warm-up runs,
then ``repeat`` timed ``Detector.detect_batch`` calls on B random videos of T steps (the whole
pipeline: padding, forward, decode, NMS). Reported: median and p95 latency per call, videos/s,
and GFLOP/s achieved (network FLOPs counted once with torch's FlopCounterMode on the eager model)
next to the measured fp32 GEMM peak of this machine. Variants run one after the other in this
process; ``benchmarks/bench_cpu_precisions.py`` runs each in its own process. For ONNX Runtime /
OpenVINO, run with ``OMP_WAIT_POLICY=PASSIVE`` in the environment: torch's idle OpenMP threads
(this harness runs an eager forward to count FLOPs) otherwise spin beside the engine's threads
and cost up to a quarter of their speed in some processes.
"""

from __future__ import annotations

import json
import statistics
import time

import numpy as np
import torch


def network_gflop(model, T: int) -> float:
    """GFLOP of one forward pass of ``model`` on one video of padded length T (eager, counted)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from .graph import DetectorGraph

    cfg = model.cfg
    x = torch.zeros(1, cfg["model"]["input_dim"], T)
    counter = FlopCounterMode(display=False)
    # attention on the math path: its matmuls are counted there, the CPU flash kernel is not
    # known to the counter (which then left out the 2 x 2 T^2 C of every attention layer)
    with counter, torch.inference_mode(), sdpa_kernel(SDPBackend.MATH):
        DetectorGraph(model).eval()(x, torch.tensor([T]))
    return counter.get_total_flops() / 1e9


def fp32_gemm_peak(n: int = 2048, repeat: int = 5) -> float:
    """Measured float32 GEMM GFLOP/s with torch's threads (the machine's practical fp32 peak)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * n ** 3 / min(times) / 1e9


def benchmark_detector(det, T: int, B: int, warmup: int = 2, repeat: int = 5, seed: int = 0) -> dict:
    """Timings of ``det.detect_batch`` on B random (T, C) videos: ms median / p95, videos/s."""
    rng = np.random.default_rng(seed)
    c = det.cfg["model"]["input_dim"]
    videos = [rng.standard_normal((T, c)).astype(np.float32) for _ in range(B)]
    fps = det.cfg["dataset"]["default_fps"] or 30.0
    for _ in range(warmup):
        det.detect_batch(videos, fps=fps)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        det.detect_batch(videos, fps=fps)
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    return {"T": T, "B": B, "ms_median": med * 1e3, "ms_p95": float(np.percentile(times, 95)) * 1e3,
            "videos_per_s": B / med}


def run_benchmark(variants: list[str], config, ckpt=None, Ts=(2304,), Bs=(1, 4), warmup: int = 2, repeat: int = 5,
                  calib=None, threads: int | None = None, workdir=None, hint: str = "latency") -> dict:
    """Rows for every (variant, T, B) plus the machine's fp32 peak; see the module docstring."""
    import tempfile
    from pathlib import Path

    from . import build_model, load_checkpoint, load_config
    from .model import build_random_model
    from .variants import build_variants

    if threads is not None:
        torch.set_num_threads(threads)
    cfg = load_config(config)
    if ckpt is not None:
        model = build_model(cfg)
        load_checkpoint(model, ckpt)
    else:
        model = build_random_model(cfg)
    gflop = {T: network_gflop(model, T) for T in Ts}
    peak = fp32_gemm_peak()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        if calib is None and any(v.endswith("int8") for v in variants):  # random weights: random calibration
            rng = np.random.default_rng(1)
            calib = [rng.standard_normal((max(Ts), cfg["model"]["input_dim"])).astype(np.float32) for _ in range(4)]
        dets = build_variants(variants, None, None, workdir or Path(tmp), calib=calib, threads=threads, hint=hint,
                              max_batch=max(Bs), model=model)
        for name, det in dets.items():
            for T in Ts:
                for B in Bs:
                    r = benchmark_detector(det, T, B, warmup, repeat)
                    r.update({"variant": name, "gflop_per_video": gflop[T],
                              "gflops": gflop[T] * r["videos_per_s"]})
                    rows.append(r)
    return {"rows": rows, "fp32_gemm_peak_gflops": peak, "threads": torch.get_num_threads(),
            "torch": torch.__version__}


def markdown(result: dict) -> str:
    lines = [f"fp32 GEMM peak here: {result['fp32_gemm_peak_gflops']:.0f} GFLOP/s ({result['threads']} threads)", "",
             "| variant | T | B | median ms | p95 ms | videos/s | GFLOP/s | % of fp32 peak |",
             "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['variant']} | {r['T']} | {r['B']} | {r['ms_median']:.1f} | {r['ms_p95']:.1f} | "
                     f"{r['videos_per_s']:.2f} | {r['gflops']:.0f} | "
                     f"{100 * r['gflops'] / result['fp32_gemm_peak_gflops']:.0f} |")
    return "\n".join(lines)


def to_json(result: dict) -> str:
    return json.dumps(result, indent=1)
