"""Per-stage CPU times of the eager pipeline on a THUMOS-size model (random weights).

    python benchmarks/bench_eager_stages.py [--config mse_rt/assets/configs/thumos_i3d.yaml] [--T 2304]

Stages: backbone (embedding + MSE blocks), heads (neck + cls/start/end/reg on all levels + the
dense trident expectation), decode (threshold, per-level top-k, duration filter), NMS (C++ and
the PyTorch reference). The stages are those of ``Detector.detect`` with the eager backend. Prints the
median of --repeat runs next to the reference code's numbers measured on a machine like ours
(2 cores, torch 2.13 CPU, 2 threads: backbone 1.71 s, heads 0.98 s, decode 0.04 s, NMS 0.06 s).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from mse_rt import load_config
from mse_rt.config import fpn_strides
from mse_rt.model import build_random_model
from mse_rt.model.detector_graph import DetectorGraph, level_lengths
from mse_rt.pipeline.decode import decode_dense
from mse_rt.pipeline.nms import nms_video
from mse_rt.pipeline.padding import make_mask

REFERENCE_S = {"backbone": 1.71, "heads": 0.98, "decode": 0.04, "nms": 0.06}
DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "mse_rt" / "assets" / "configs" / "thumos_i3d.yaml"


def _time(fn, repeat: int) -> tuple[float, object]:
    out, times = None, []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(DEFAULT_CONFIG))
    ap.add_argument("--T", type=int, default=2304, help="video length in feature steps")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    model = build_random_model(cfg)  # random weights that give a realistic number of candidates
    graph = DetectorGraph(model).eval()
    m = cfg["model"]
    x = torch.randn(1, m["input_dim"], args.T)
    mask = make_mask(torch.tensor([args.T]), args.T)
    times = {}
    with torch.inference_mode():
        model(x, mask)  # warm-up
        times["backbone"], (feats, masks) = _time(lambda: model.backbone(x, mask), args.repeat)

        def heads():
            return graph.dense_outputs(model.forward_heads(*model.neck(feats, masks)))

        times["heads"], dense = _time(heads, args.repeat)
        sizes = level_lengths(args.T, fpn_strides(cfg))
        times["decode"], cands = _time(lambda: decode_dense(*dense, sizes, cfg["test_cfg"]), args.repeat)
    c = cands[0]
    times["nms"], dets = _time(lambda: nms_video(c.segments, c.scores, c.labels, cfg["test_cfg"], "native"),
                               args.repeat)
    t_torch_nms, _ = _time(lambda: nms_video(c.segments, c.scores, c.labels, cfg["test_cfg"], "torch"), 1)
    times["total"] = sum(times[k] for k in REFERENCE_S)
    ref_total = sum(REFERENCE_S.values())
    print(f"eager pipeline, {Path(args.config).name}, T={args.T}, threads={args.threads}, "
          f"{len(c.scores)} candidates -> {len(dets[1])} detections")
    print(f"{'stage':<10}{'mse_rt (s)':>12}{'reference (s)':>15}{'speed-up':>10}")
    for k in (*REFERENCE_S, "total"):
        ref = REFERENCE_S.get(k, ref_total)
        print(f"{k:<10}{times[k]:>12.3f}{ref:>15.2f}{ref / times[k]:>9.1f}x")
    print(f"{'nms-torch':<10}{t_torch_nms:>12.3f}   (plain PyTorch NMS reference, same candidates)")
    return times


if __name__ == "__main__":
    main()
