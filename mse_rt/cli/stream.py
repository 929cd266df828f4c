"""``mse-rt stream``: play feature files as simultaneous live streams (lagged streaming)."""

from __future__ import annotations

import argparse
import sys
import time

from ..errors import MseRtError
from .args import nonneg_int, positive_float, positive_int, unit_float


def _cmd_stream(args: argparse.Namespace) -> int:
    """Play feature files as simultaneous live streams; print detections as they become final."""
    from ..io.features import collect_feature_files, load_feature_file, video_ids_for
    from ..runtime import Detector
    from ..streaming.lagged import StreamPool

    files = collect_feature_files(args.features)
    ids = video_ids_for(files, args.ids)
    from ..io.results import check_unique_ids

    check_unique_ids(ids)
    if args.model:
        det = Detector.from_file(args.model, max_batch=args.max_batch, allow_slow_int8=args.allow_slow_int8)
    elif args.config and args.ckpt:
        det = Detector.from_checkpoint(args.config, args.ckpt, backend=args.backend, device=args.device,
                                       max_batch=args.max_batch)
    else:
        from ..apps.demo import DEMO_CKPT, DEMO_CONFIG

        det = Detector.from_checkpoint(DEMO_CONFIG, DEMO_CKPT, max_batch=args.max_batch)
        print("no model given: the bundled demo model", file=sys.stderr)
    feats = {v: load_feature_file(f) for v, f in zip(ids, files)}
    pool = StreamPool(det, hop=args.hop, lag=args.lag, provisional_min_score=args.show_in_progress or 0.3)
    d = det.cfg["dataset"]
    fps = args.fps or d["default_fps"]
    if fps is None:
        raise MseRtError("--fps is required (the config has no dataset.default_fps)")
    for v in ids:
        pool.add(v, fps=fps)
    shown: dict = {}  # stream -> in-progress events already printed
    step_s = d["feat_stride"] / fps  # video seconds per feature step
    longest = max(len(x) for x in feats.values())
    t_start = time.perf_counter()
    n_final = 0

    def show(v, res, closing=False):
        nonlocal n_final
        now = (res.steps * d["feat_stride"] + d["num_frames"]) / fps
        for (s, e), c, p in zip(res.final.segments, res.final.labels, res.final.scores):
            if p < args.min_score:
                continue
            n_final += 1
            print(f"[{now:8.2f} s] {v}: FINAL class {int(c)} {s:.2f}-{e:.2f} s score {p:.3f} "
                  f"(reported {now - e:.2f} s after its end{', at close' if closing else ''})", flush=True)
        if args.show_in_progress and not closing:
            cur = {(int(c), round(float(s), 1)) for (s, _), c in zip(res.in_progress.segments, res.in_progress.labels)}
            for c, s in sorted(cur - shown.get(v, set())):
                print(f"[{now:8.2f} s] {v}: in progress: class {c} since {s:.1f} s", flush=True)
            shown[v] = cur

    try:
        for t in range(0, longest, args.hop):
            chunks = {v: x[t:t + args.hop] for v, x in feats.items() if t < len(x) and v in pool.streams}
            for v, res in pool.push_and_step(chunks).items():
                show(v, res)
            for v, x in feats.items():
                if v in pool.streams and t + args.hop >= len(x):
                    show(v, pool.close(v), closing=True)
            if args.realtime:  # wait until the video time of these steps has passed
                lag = (t + args.hop) * step_s / args.speed - (time.perf_counter() - t_start)
                if lag > 0:
                    time.sleep(lag)
    except KeyboardInterrupt:
        print(f"mse-rt: stream interrupted after {n_final} final detections", file=sys.stderr)
        return 130
    print(f"{len(ids)} streams, {n_final} final detections (score >= {args.min_score}); "
          f"{time.perf_counter() - t_start:.1f} s wall", flush=True)
    return 0


def register(sub) -> None:
    st = sub.add_parser("stream", help="play feature files as live streams; print detections as they become final")
    st.add_argument("--config")
    st.add_argument("--ckpt")
    st.add_argument("--model", help="a deployable model file (.onnx, .engine)")
    st.add_argument("--allow-slow-int8", action="store_true",
                   help="run an int8 ONNX graph on a CPU without int8 dot-product instructions (VNNI)")
    st.add_argument("--backend", default="eager")
    st.add_argument("--device", default="cpu")
    st.add_argument("--fps", type=positive_float, default=None)
    st.add_argument("--lag", type=nonneg_int, default=8, help="steps after a predicted end before it is final")
    st.add_argument("--hop", type=positive_int, default=4, help="steps between model runs (and per push)")
    st.add_argument("--max-batch", type=positive_int, default=16, help="windows per forward pass")
    st.add_argument("--min-score", type=unit_float, default=0.2, help="print final detections from this score")
    st.add_argument("--show-in-progress", type=unit_float, default=None, metavar="SCORE",
                    help="also print actions in progress with at least this score")
    st.add_argument("--realtime", action="store_true", help="play at the video's pace (default: as fast as possible)")
    st.add_argument("--speed", type=positive_float, default=1.0, help="with --realtime: playback speed factor")
    st.add_argument("--ids", default="stem", choices=("stem", "relpath"))
    st.add_argument("features", nargs="+", help="feature files (one stream each) or folders of them")
    st.set_defaults(fn=_cmd_stream)
