"""Where OpenVINO spends a forward pass: per-node timing of the THUMOS-size network, per precision.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/ov_profile.py [--precisions int8 bf16 fp32]
        [--T 2304] [--threads 2] [--top 15] [--out ov_profile]

THUMOS config, random weights (int8 calibrated on 4 random videos, as in ``mse-rt benchmark``),
one (1, C, T) video, OpenVINO's latency hint. For each precision: the median of 3 profiled passes
(:meth:`OpenVinoBackend.profile`), split into GEMM work (Convolution / GroupConvolution / MatMul /
FullyConnected nodes and the fused MHA Subgraphs, softmax included: time, 1e9 ops, achieved
GOP/s) and the rest by node type (Reorder = layout / precision conversions, Subgraph = fused
element-wise ops, Softmax, ...), then the slowest nodes with their GOP/s. This is the network
alone; decode and NMS are not in it. Writes OUT/ov_profile.md / .json.
"""

from __future__ import annotations

import argparse
import collections
import tempfile
from pathlib import Path

import numpy as np
import torch
from harness import THUMOS_CONFIG, Report, add_out_argument, use_source_tree

CONFIG = THUMOS_CONFIG


def summarize(nodes: list[dict]) -> dict:
    """Totals of :meth:`OpenVinoBackend.profile` rows: pass ms, GEMM ms / GOP / GOP/s, ms per other type."""
    gemm = [n for n in nodes if n["gop"] > 0]
    rest = collections.Counter()
    for n in nodes:
        if n["gop"] <= 0:
            rest[n["type"]] += n["ms"]
    gemm_ms = sum(n["ms"] for n in gemm)
    gemm_gop = sum(n["gop"] for n in gemm)
    return {"pass_ms": sum(n["ms"] for n in nodes), "gemm_ms": gemm_ms, "gemm_gop": gemm_gop,
            "gemm_gops": gemm_gop / (gemm_ms / 1e3) if gemm_ms else 0.0, "other_ms": dict(rest.most_common())}


def add_tables(report: Report, results: dict, top: int) -> None:
    """One summary row per precision, then the ``top`` slowest nodes of each."""
    rows = []
    for prec, r in results.items():
        s, o = r["summary"], dict(r["summary"]["other_ms"])
        named = [o.pop(k, 0.0) for k in ("Reorder", "Subgraph", "Softmax")]
        rows.append((prec, s["pass_ms"], s["gemm_ms"], s["gemm_gop"], s["gemm_gops"], *named, sum(o.values())))
    ms_cols = ["pass ms", "GEMM ms", "Reorder ms", "Subgraph ms", "Softmax ms", "other ms"]
    report.table("Per precision", ["precision", "pass ms", "GEMM ms", "GEMM GOP", "GEMM GOP/s", "Reorder ms",
                                   "Subgraph ms", "Softmax ms", "other ms"], rows,
                 formats={**{c: ".1f" for c in ms_cols}, "GEMM GOP": ".1f", "GEMM GOP/s": ".0f"})
    for prec, r in results.items():
        slow = sorted(r["nodes"], key=lambda n: -n["ms"])[:top]
        report.table(f"Slowest nodes, {prec}", ["ms", "GOP/s", "type", "kernel", "node"],
                     [(n["ms"], n["gop"] / (n["ms"] / 1e3) if n["gop"] else "-", n["type"], n["exec"], n["name"])
                      for n in slow], formats={"ms": ".2f", "GOP/s": ".0f"})


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--precisions", nargs="+", default=["int8", "bf16", "fp32"])
    ap.add_argument("--T", type=int, default=2304)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--config", default=str(CONFIG))
    add_out_argument(ap, default="ov_profile")
    args = ap.parse_args(argv)
    use_source_tree()

    from mse_rt import load_config
    from mse_rt.export import export_onnx
    from mse_rt.model import build_random_model
    from mse_rt.runtime.backends.openvino import OpenVinoBackend

    torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    c_in = cfg["model"]["input_dim"]
    rng = np.random.default_rng(0)
    feats = torch.from_numpy(rng.standard_normal((1, c_in, args.T)).astype(np.float32))
    lengths = torch.tensor([args.T])
    calib = [np.random.default_rng(1).standard_normal((args.T, c_in)).astype(np.float32) for _ in range(4)]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = export_onnx(build_random_model(cfg), Path(tmp) / "model.onnx")
        for prec in args.precisions:
            be = OpenVinoBackend(onnx_path, precision=prec, threads=args.threads,
                                 calib=calib if prec == "int8" else None)
            nodes = be.profile(feats, lengths)
            results[prec] = {"summary": summarize(nodes), "nodes": nodes}
    report = Report("ov_profile", args.out, title=__doc__.splitlines()[0])
    report.data["results"] = results
    report.note(f"OpenVINO per-node profile, {Path(args.config).name}, random weights, T = {args.T}, B = 1, "
                f"{args.threads} threads, latency hint (network only).", write=False)
    add_tables(report, results, args.top)
    return results


if __name__ == "__main__":
    main()
