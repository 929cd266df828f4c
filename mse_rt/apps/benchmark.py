"""``mse-rt benchmark``: latency and throughput of deployment variants, like trtexec / benchmark_app.

For each variant (:data:`mse_rt.apps.variants.VARIANTS`) and each (T, B) of the grid: warm-up runs,
then ``repeat`` timed ``Detector.detect_batch`` calls on B random videos of T steps (the whole
pipeline: padding, forward, decode, NMS). T is a video length in feature steps, 1 up to the
config's longest video (:func:`mse_rt.pipeline.padding.max_video_length`); the network runs at
the reference padded length of T (``T_padded``: max_seq_len for T <= max_seq_len, else the next
multiple of the downsampling factor). Reported: median and p95 latency per call, videos/s,
and GFLOP/s achieved (network FLOPs at T_padded counted once with torch's FlopCounterMode on the eager model)
next to the measured GEMM peak of this machine for the variant's precision (fp32, bf16 or int8:
torch's own GEMMs, :func:`gemm_peak`; int8 variants keep some float work, so theirs is a bound).
Variants run one after the other in this process; ``benchmarks/bench_cpu_precisions.py`` runs
each in its own process. For ONNX Runtime / OpenVINO, run with ``OMP_WAIT_POLICY=PASSIVE`` in the
environment: torch's idle OpenMP threads (this harness runs an eager forward to count FLOPs)
otherwise spin beside the engine's threads and cost up to a quarter of their speed in some
processes.
"""

from __future__ import annotations

import json
import statistics
import time

import numpy as np
import torch


def check_lengths(Ts, cfg: dict) -> list[int]:
    """The benchmark's video lengths (steps) as ints; :class:`InputError` for one outside
    [1, longest video of the config], before anything is allocated."""
    from ..config import max_div_factor
    from ..errors import InputError
    from ..pipeline.padding import max_video_length

    longest = max_video_length(cfg)
    out = []
    for T in Ts:
        if isinstance(T, bool) or not isinstance(T, (int, np.integer)) or not 1 <= T <= longest:
            m = cfg["model"]
            raise InputError(
                f"T = {T!r}: benchmark lengths are video lengths in feature steps, 1 to {longest} for this config "
                f"(the longest video: max_seq_len {m['max_seq_len']} x max_buffer_len_factor "
                f"{m['max_buffer_len_factor']}, rounded down to a multiple of {max_div_factor(cfg)}); lengths up to "
                f"{m['max_seq_len']} run padded to {m['max_seq_len']}, longer ones padded to a multiple of "
                f"{max_div_factor(cfg)}")
        out.append(int(T))
    return out


def network_gflop(model, T: int) -> float:
    """GFLOP of one forward pass of ``model`` on one video of T steps, run (as the Detector runs
    it) at its reference padded length (eager, counted)."""
    from ..pipeline.padding import pad_policy_length

    T = pad_policy_length(T, model.cfg)
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from ..model.detector_graph import DetectorGraph

    cfg = model.cfg
    x = torch.zeros(1, cfg["model"]["input_dim"], T)
    counter = FlopCounterMode(display=False)
    # attention on the math path: its matmuls are counted there, the CPU flash kernel is not
    # known to the counter (which then left out the 2 x 2 T^2 C of every attention layer)
    with counter, torch.inference_mode(), sdpa_kernel(SDPBackend.MATH):
        DetectorGraph(model).eval()(x, torch.tensor([T]))
    return counter.get_total_flops() / 1e9


def gemm_peak(precision: str = "fp32", n: int = 2048, repeat: int = 5) -> float | None:
    """Measured GEMM throughput (1e9 ops/s, 2 per multiply-add) of an n x n x n product with torch's
    threads: "fp32", "bf16" (oneDNN uses AVX512-BF16 / AMX where the CPU has them) or "int8"
    (``torch._int_mm``, int8 x int8 -> int32, VNNI / AMX where present); None where torch cannot
    run that product here. The machine's practical peak for the variants of that precision."""
    g = torch.Generator().manual_seed(0)
    if precision == "int8":
        a = torch.randint(-128, 128, (n, n), dtype=torch.int8, generator=g)
        b = torch.randint(-128, 128, (n, n), dtype=torch.int8, generator=g)
        fn = getattr(torch, "_int_mm", None)
        if fn is None:
            return None
    elif precision in ("fp32", "bf16"):
        dt = torch.float32 if precision == "fp32" else torch.bfloat16
        a, b = torch.randn(n, n, generator=g).to(dt), torch.randn(n, n, generator=g).to(dt)
        fn = torch.matmul
    else:
        raise ValueError(f"precision must be fp32, bf16 or int8, got {precision!r}")
    try:
        fn(a, b)
    except RuntimeError:
        return None
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(a, b)
        times.append(time.perf_counter() - t0)
    return 2 * n ** 3 / min(times) / 1e9


def fp32_gemm_peak(n: int = 2048, repeat: int = 5) -> float:
    """Measured float32 GEMM GFLOP/s with torch's threads (the machine's practical fp32 peak)."""
    return gemm_peak("fp32", n, repeat)


def variant_precision(variant: str) -> str:
    """The GEMM precision of a variant's bulk work: int8 (int8 variants), bf16 or fp32."""
    return "int8" if variant.endswith("int8") else "bf16" if variant.endswith("bf16") else "fp32"


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
    from ..pipeline.padding import pad_policy_length

    return {"T": T, "T_padded": pad_policy_length(T, det.cfg), "B": B, "ms_median": med * 1e3,
            "ms_p95": float(np.percentile(times, 95)) * 1e3, "videos_per_s": B / med}


def run_benchmark(variants: list[str], config, ckpt=None, Ts=None, Bs=(1, 4), warmup: int = 2, repeat: int = 5,
                  calib=None, threads: int | None = None, workdir=None, hint: str = "latency",
                  allow_unverified: bool = False) -> dict:
    """Rows for every (variant, T, B) plus the machine's fp32 peak; see the module docstring.
    ``Ts``: video lengths in steps (default: the config's max_seq_len). ``allow_unverified``:
    accept a legacy (non-zip) checkpoint without a checksum."""
    import tempfile
    from pathlib import Path

    from .. import build_model, load_checkpoint, load_config
    from ..model import build_random_model
    from .variants import build_variants

    if threads is not None:
        torch.set_num_threads(threads)
    cfg = load_config(config)
    Ts = check_lengths([cfg["model"]["max_seq_len"]] if Ts is None else Ts, cfg)
    if ckpt is not None:
        model = build_model(cfg)
        load_checkpoint(model, ckpt, allow_unverified=allow_unverified)
    else:
        model = build_random_model(cfg)
    gflop = {T: network_gflop(model, T) for T in Ts}
    peaks = {p: gemm_peak(p) for p in sorted({variant_precision(v) for v in variants} | {"fp32"})}
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
                    prec = variant_precision(name)
                    r.update({"variant": name, "gflop_per_video": gflop[T], "gflops": gflop[T] * r["videos_per_s"],
                              "precision": prec, "peak_gops": peaks.get(prec)})
                    rows.append(r)
    return {"rows": rows, "fp32_gemm_peak_gflops": peaks["fp32"], "gemm_peaks_gops": peaks,
            "threads": torch.get_num_threads(), "torch": torch.__version__}


def markdown(result: dict) -> str:
    peaks = result.get("gemm_peaks_gops") or {"fp32": result["fp32_gemm_peak_gflops"]}
    line = ", ".join(f"{p} {v:.0f}" if v else f"{p} n/a" for p, v in peaks.items())
    lines = [f"GEMM peaks here (torch, {result['threads']} threads, 1e9 ops/s): {line}; "
             f"fp32 GEMM peak here: {result['fp32_gemm_peak_gflops']:.0f} GFLOP/s", "",
             "| variant | T | B | median ms | p95 ms | videos/s | GFLOP/s | % of its precision's peak |",
             "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        peak = r.get("peak_gops", result["fp32_gemm_peak_gflops"])
        share = f"{100 * r['gflops'] / peak:.0f} ({r.get('precision', 'fp32')})" if peak else "-"
        padded = r.get("T_padded", r["T"])
        t = f"{r['T']}" if padded == r["T"] else f"{r['T']} (run at {padded})"
        lines.append(f"| {r['variant']} | {t} | {r['B']} | {r['ms_median']:.1f} | {r['ms_p95']:.1f} | "
                     f"{r['videos_per_s']:.2f} | {r['gflops']:.0f} | {share} |")
    return "\n".join(lines)


def to_json(result: dict) -> str:
    return json.dumps(result, indent=1)
