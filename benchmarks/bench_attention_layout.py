"""Eager CPU forward at THUMOS size: attention on SDPA's fused kernel vs its MATH path.

    python benchmarks/bench_attention_layout.py [--T 2304 4608] [--repeat 3]

Before q / k / v were made contiguous (issue: GPU paths, finding 1), their last-dim stride of T
ruled out every fused SDPA kernel, so attention always took the MATH path, which materialises
(B, heads, T, T) float32 scores. The MATH rows force that path on today's model, the default
rows let the dispatcher choose (flash on this CPU): the ratio is the gain of the layout fix.
Random weights, thumos_i3d.yaml, B = 1, 2 threads unless --threads.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from timing import median_seconds
from torch.nn.attention import SDPBackend, sdpa_kernel

from mse_rt import load_config
from mse_rt.model import build_random_model
from mse_rt.model.detector_graph import DetectorGraph

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "mse_rt" / "assets" / "configs" / "thumos_i3d.yaml"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(DEFAULT_CONFIG))
    ap.add_argument("--T", type=int, nargs="+", default=[2304, 4608])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    graph = DetectorGraph(build_random_model(cfg)).eval()
    c = cfg["model"]["input_dim"]
    print("| T | SDPA MATH path (old layout) s | fused SDPA (contiguous) s | speed-up | max rel diff |")
    print("|---|---|---|---|---|")
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
        print(f"| {T} | {t_math:.3f} | {t_fused:.3f} | {t_math / t_fused:.2f}x | {diff:.1e} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
