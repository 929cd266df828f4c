"""Per-stage CPU times of the eager pipeline on a THUMOS-size model (random weights).

    python benchmarks/bench_eager_stages.py [--config mse_rt/assets/configs/thumos_i3d.yaml] [--T 2304] [--out DIR]

Stages: backbone (embedding + MSE blocks), heads (neck + cls/start/end/reg on all levels + the
dense trident expectation), decode (threshold, per-level top-k, duration filter), NMS (C++ and
the PyTorch reference). The stages are those of ``Detector.detect`` with the eager backend. Prints the
median of --repeat runs next to the reference code's numbers measured on a machine like ours
(2 cores, torch 2.13 CPU, 2 threads: backbone 1.71 s, heads 0.98 s, decode 0.04 s, NMS 0.06 s).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from harness import THUMOS_CONFIG, Report, add_out_argument, measure, use_source_tree

use_source_tree()

from mse_rt import load_config  # noqa: E402
from mse_rt.config import fpn_strides  # noqa: E402
from mse_rt.model import build_random_model  # noqa: E402
from mse_rt.model.detector_graph import DetectorGraph, level_lengths  # noqa: E402
from mse_rt.pipeline.decode import decode_dense  # noqa: E402
from mse_rt.pipeline.nms import nms_video  # noqa: E402
from mse_rt.pipeline.padding import make_mask  # noqa: E402

REFERENCE_S = {"backbone": 1.71, "heads": 0.98, "decode": 0.04, "nms": 0.06}


def _time(fn, repeat: int) -> tuple[float, object]:
    """Median seconds of ``repeat`` calls (no warm-up: the model ran once before) and the last output."""
    t = measure(fn, repeat, warmup=0)
    return t.median, t.result


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(THUMOS_CONFIG))
    ap.add_argument("--T", type=int, default=2304, help="video length in feature steps")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    add_out_argument(ap)
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
    report = Report("eager_stages", args.out, title=__doc__.splitlines()[0])
    report.data["seconds"] = {**times, "nms-torch": t_torch_nms}
    rows = [(k, times[k], REFERENCE_S.get(k, ref_total), REFERENCE_S.get(k, ref_total) / times[k])
            for k in (*REFERENCE_S, "total")]
    rows.append(("nms-torch", t_torch_nms, None, "plain PyTorch NMS reference, same candidates"))
    report.table(f"eager pipeline, {Path(args.config).name}, T={args.T}, threads={args.threads}, "
                 f"{len(c.scores)} candidates -> {len(dets[1])} detections, median of {args.repeat}",
                 ["stage", "mse_rt (s)", "reference (s)", "speed-up"], rows,
                 formats={"mse_rt (s)": ".3f", "reference (s)": ".2f", "speed-up": "{:.1f}x"})
    return times


if __name__ == "__main__":
    main()
