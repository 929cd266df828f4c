"""A simulated live feed: features arrive in real time, detections print as they become final.

    .venv/bin/python benchmarks/stream_live.py [--speed 8] [--hop 128] [--chunk 8] [--out DIR]

Plays a long synthetic video (1000 steps = 133 s at 30 fps, stride 4) through the bundled demo
model, ``--chunk`` steps at a time, ``--speed`` times faster than real time, and prints every
detection the moment StreamingDetector finalises it, then the per-push latency and the mAP of
the streamed result against ground truth next to the offline one. ``--out DIR`` writes
DIR/stream_live.md / .json (the two tables and every final detection).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from harness import Report, add_out_argument, use_source_tree

use_source_tree()

import mse_rt  # noqa: E402
from mse_rt.apps.demo import DEMO_CKPT, DEMO_CONFIG  # noqa: E402
from mse_rt.apps.synth import SyntheticSpec, class_patterns, make_video  # noqa: E402
from mse_rt.eval import evaluate  # noqa: E402
from mse_rt.streaming import StreamingDetector  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--speed", type=float, default=8.0, help="times faster than real time (0: as fast as possible)")
    ap.add_argument("--hop", type=int, default=128)
    ap.add_argument("--chunk", type=int, default=8, help="feature steps per push")
    ap.add_argument("--min-score", type=float, default=0.2, help="print detections at or above this score")
    add_out_argument(ap)
    args = ap.parse_args()
    spec = SyntheticSpec(min_len=1000, max_len=1000)
    feats, segs, labels = make_video(np.random.default_rng(42), spec, class_patterns(spec))
    det = mse_rt.Detector.from_checkpoint(DEMO_CONFIG, DEMO_CKPT)
    stream = StreamingDetector(det, hop=args.hop, fps=spec.fps, video_id="live")
    step_s = spec.feat_stride / spec.fps
    got, events = [], []
    t_start = time.perf_counter()
    for i in range(0, len(feats), args.chunk):
        if args.speed > 0:  # wait until these steps would have been captured
            time.sleep(max(0.0, t_start + (i + args.chunk) * step_s / args.speed - time.perf_counter()))
        r = stream.push(feats[i:i + args.chunk])
        got.append(r)
        now = (i + args.chunk) * step_s
        for (s, e), p, c in zip(r.segments, r.scores, r.labels):
            if p >= args.min_score:
                print(f"[stream t={now:6.1f} s] action {c} at [{s:6.1f}, {e:6.1f}] s, score {p:.2f} "
                      f"(final {now - e:4.1f} s after it ended)")
                events.append((now, int(c), float(s), float(e), float(p), now - float(e)))
    got.append(stream.flush())
    stats = stream.latency_stats()
    report = Report("stream_live", args.out, title=__doc__.splitlines()[0])
    report.data.update({"latency_s": stats, "args": vars(args)})
    report.table(f"Final detections with score >= {args.min_score} (as printed above)",
                 ["stream time s", "class", "start s", "end s", "score", "final after end s"], events, echo=False,
                 formats={"stream time s": ".1f", "start s": ".1f", "end s": ".1f", "score": ".2f",
                          "final after end s": ".1f"})
    ms = {k: stats[k] * 1e3 for k in ("p50", "p95", "max")}
    report.table(f"Per-push latency (hop {args.hop}, chunk {args.chunk}, speed {args.speed:g}x)",
                 ["pushes", "p50 ms", "p95 ms", "max ms"], [(stats["count"], ms["p50"], ms["p95"], ms["max"])],
                 formats={"p50 ms": ".1f", "p95 ms": ".1f", "max ms": ".1f"})
    gt = {"database": {"live": {"annotations": [{"segment": [float(s), float(e)], "label_id": int(c)}
                                                for (s, e), c in zip(spec.seconds(segs), labels)]}}}
    streamed = mse_rt.DetectionResult("live", np.concatenate([r.segments for r in got]),
                                      np.concatenate([r.scores for r in got]), np.concatenate([r.labels for r in got]),
                                      spec.fps, 0.0)
    offline = det.detect(feats, fps=spec.fps, video_id="live")
    report.table("mAP (tIoU 0.3:0.7) against ground truth", ["streamed", "offline"],
                 [(evaluate([streamed], gt).average * 100, evaluate([offline], gt).average * 100)],
                 formats={"streamed": ".1f", "offline": ".1f"})


if __name__ == "__main__":
    main()
