"""Benchmark report: latency vs T per backend and throughput vs batch, as markdown + PNG plots.

    .venv/bin/python benchmarks/report.py [--config demo|thumos|PATH] [--out bench_report]
    .venv/bin/python benchmarks/report.py --from-json bench.json    # a pytest-benchmark run as a table

Measures end-to-end ``Detector.detect_batch`` (checks, forward, decode, NMS) on random features for
every backend available here (a progress bar shows the sweep), writes ``report.md`` / ``report.json``,
``latency_vs_T.png`` and ``throughput_vs_batch.png``. Times are medians of --repeat runs on this
machine; compare backends within one report only. ``--from-json`` prints its table and writes
``pytest_benchmark.md`` / ``.json`` only when ``--out`` is given.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch
from harness import CONFIGS, Report, add_out_argument, median_seconds, use_source_tree
from tqdm import tqdm

use_source_tree()

from mse_rt.io.files import atomic_output  # noqa: E402


def table_from_pytest_benchmark(report: Report, path: Path) -> None:
    """A pytest-benchmark JSON file as one table (times in ms)."""
    data = json.loads(path.read_text())
    rows = [(b.get("group") or "", b["name"], b["stats"]["median"] * 1e3, b["stats"]["min"] * 1e3, b["stats"]["rounds"])
            for b in sorted(data["benchmarks"], key=lambda b: (b.get("group") or "", b["name"]))]
    report.table(f"pytest-benchmark: {path.name}", ["group", "test", "median (ms)", "min (ms)", "rounds"], rows,
                 formats={"median (ms)": ".2f", "min (ms)": ".2f"})


def _detectors(config: Path, ckpt: Path | None, tmp: Path) -> dict:
    from mse_rt import Detector, load_config
    from mse_rt.apps.demo import available_backends
    from mse_rt.model import build_random_model

    cfg = load_config(config)
    model = build_random_model(cfg)
    if ckpt is not None:
        from mse_rt import load_checkpoint

        load_checkpoint(model, ckpt)
    dets = {"eager": Detector.from_model(cfg, model)}
    if not available_backends().get("onnxruntime"):
        from mse_rt.export import export_onnx

        dets["onnxruntime"] = Detector.from_onnx(export_onnx(model, tmp / "m.onnx"))
    return cfg, dets


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="demo", help="demo | thumos | a config path (random weights)")
    add_out_argument(ap, help="report folder (default bench_report; with --from-json: print only unless given)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--from-json", help="only turn a pytest-benchmark JSON into a markdown table")
    args = ap.parse_args(argv)
    if args.from_json:
        table_from_pytest_benchmark(Report("pytest_benchmark", args.out), Path(args.from_json))
        return 0
    from mse_rt.apps.demo import DEMO_CKPT, DEMO_CONFIG
    from mse_rt.pipeline.padding import max_video_length

    if args.config == "demo":
        config, ckpt = DEMO_CONFIG, DEMO_CKPT
    elif args.config == "thumos":
        config, ckpt = CONFIGS / "thumos_i3d.yaml", None
    else:
        config, ckpt = Path(args.config), None
    out = Path(args.out or "bench_report")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cfg, dets = _detectors(config, ckpt, Path(tmp))
        m = cfg["model"]
        L = m["max_seq_len"]
        lengths = sorted({L // 4, L // 2, L, min(2 * L, max_video_length(cfg)), max_video_length(cfg)})
        batches = [1, 2, 4, 8]
        rng = np.random.default_rng(0)
        lat = {b: [] for b in dets}
        thr = {b: [] for b in dets}
        jobs = [(b, "T", T) for b in dets for T in lengths] + [(b, "B", B) for b in dets for B in batches]
        for backend, kind, val in tqdm(jobs, desc="benchmark", unit="case"):
            det = dets[backend]
            if kind == "T":
                x = [rng.standard_normal((val, m["input_dim"])).astype(np.float32)]
                lat[backend].append(median_seconds(lambda x=x, d=det: d.detect_batch(x, fps=30.0), args.repeat) * 1e3)
            else:
                xs = [rng.standard_normal((L, m["input_dim"])).astype(np.float32) for _ in range(val)]
                t = median_seconds(lambda xs=xs, d=det: d.detect_batch(xs, fps=30.0), args.repeat)
                thr[backend].append(val / t)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for name, xs, data, xlabel, ylabel in (("latency_vs_T", lengths, lat, "T (feature steps)", "latency (ms)"),
                                           ("throughput_vs_batch", batches, thr, "batch (videos of max_seq_len)",
                                            "videos / s")):
        fig, ax = plt.subplots(figsize=(6, 4))
        for b, ys in data.items():
            ax.plot(xs, ys, marker="o", label=b)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(f"{Path(config).name}, {platform.machine()}, torch {torch.__version__}", fontsize=9)
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        with atomic_output(out / f"{name}.png", what="plot") as tmp:
            fig.savefig(tmp, dpi=100, format="png")
        plt.close(fig)
    report = Report("report", out, title=f"mse_rt benchmark: {Path(config).name}")
    report.data.update({"latency_ms": lat, "videos_per_s": thr, "T": lengths, "B": batches})
    report.note(f"End-to-end `detect_batch` (forward, decode, NMS), median of {args.repeat}.", write=False)
    fmt = {b: ".1f" for b in dets}
    report.table("Latency vs T (B = 1, ms)", ["T", *dets], [(T, *(lat[b][i] for b in dets)) for i, T in
                                                           enumerate(lengths)], formats=fmt)
    report.table(f"Throughput vs batch (T = {L}, videos/s)", ["B", *dets],
                 [(B, *(thr[b][i] for b in dets)) for i, B in enumerate(batches)], formats=fmt)
    if len(dets) > 1:
        ref = next(iter(dets))
        report.note("Ratios vs " + ref + " (this run): " + ", ".join(
            f"{b} {statistics.median(lat[ref][i] / lat[b][i] for i in range(len(lengths))):.2f}x latency"
            for b in dets if b != ref), write=False)
    report.note("![latency](latency_vs_T.png) ![throughput](throughput_vs_batch.png)")
    print(f"\nwrote {out}/report.md and PNGs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
