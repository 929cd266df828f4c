"""Eager CPU forward at THUMOS size: attention on SDPA's fused kernel vs its MATH path.

    python benchmarks/bench_attention_layout.py [--T 2304 4608] [--repeat 3] [--out DIR]

Before q / k / v were made contiguous (issue: GPU paths, finding 1), their last-dim stride of T
ruled out every fused SDPA kernel, so attention always took the MATH path, which materialises
(B, heads, T, T) float32 scores. The MATH rows force that path on today's model, the default
rows let the dispatcher choose (flash on this CPU): the ratio is the gain of the layout fix.
Random weights, thumos_i3d.yaml, B = 1, 2 threads unless --threads. ``--out DIR`` writes
DIR/attention_layout.md / .json.
"""

from __future__ import annotations

import argparse

import torch
from harness import THUMOS_CONFIG, Report, add_out_argument, median_seconds, use_source_tree
from torch.nn.attention import SDPBackend, sdpa_kernel

use_source_tree()

from mse_rt import load_config  # noqa: E402
from mse_rt.model import build_random_model  # noqa: E402
from mse_rt.model.detector_graph import DetectorGraph  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(THUMOS_CONFIG))
    ap.add_argument("--T", type=int, nargs="+", default=[2304, 4608])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    add_out_argument(ap)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    graph = DetectorGraph(build_random_model(cfg)).eval()
    c = cfg["model"]["input_dim"]
    report = Report("attention_layout", args.out, title=__doc__.splitlines()[0])
    table = report.table(f"Eager forward, B = 1, {args.threads} threads, median of {args.repeat}",
                         ["T", "SDPA MATH path (old layout) s", "fused SDPA (contiguous) s", "speed-up", "max rel diff"],
                         formats={"SDPA MATH path (old layout) s": ".3f", "fused SDPA (contiguous) s": ".3f",
                                  "speed-up": "{:.2f}x", "max rel diff": ".1e"})
    for T in args.T:
        x, lengths = torch.randn(1, c, T), torch.tensor([T])

        def run(x=x, lengths=lengths):
            with torch.inference_mode():
                return graph(x, lengths)

        with sdpa_kernel([SDPBackend.MATH]):
            t_math = median_seconds(run, args.repeat)
            ref = run()
        t_fused = median_seconds(run, args.repeat)
        got = run()
        diff = max(float((a - b).abs().max() / max(1.0, float(b.abs().max()))) for a, b in zip(got, ref))
        table.add(T, t_math, t_fused, t_math / t_fused, diff)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
