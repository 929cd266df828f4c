"""``mse-rt stream``: play feature files as simultaneous live streams (lagged streaming)."""

from __future__ import annotations

import argparse
import sys
import time

from ..errors import MseRtError
from ..video.live_types import DEFAULT_THREADS
from .args import (
    add_model_arguments,
    float_in,
    frame_rate,
    nonneg_int,
    positive_float,
    positive_int,
    thread_count,
    thread_count_or_auto,
    unit_float,
)

# --speed: playback speed factor of --realtime (beyond it the waits overflow or vanish)
SPEED_RANGE = (1e-3, 1e3)


def _video_detector(args: argparse.Namespace):
    """The TAD detector of ``--source``: --model / --config + --ckpt, or the bundled pixel demo."""
    from ..runtime import Detector

    if args.model:
        return Detector.from_file(args.model, max_batch=args.max_batch, allow_slow_int8=args.allow_slow_int8,
                                  **({"allow_unverified": True} if args.allow_unverified_model else {}))
    if args.config and args.ckpt:
        return Detector.from_checkpoint(args.config, args.ckpt, backend=args.backend, device=args.device,
                                        max_batch=args.max_batch, allow_unverified=args.allow_unverified_checkpoint)
    from ..apps.pixel_demo import PIXEL_CKPT, PIXEL_CONFIG

    if not PIXEL_CKPT.is_file():
        raise MseRtError(f"no model given and the pixel demo checkpoint {PIXEL_CKPT} is missing "
                         "(make pixel-demo-model, or pass --config/--ckpt of a model with a 'video' section)")
    print("no model given: the bundled pixel demo model", file=sys.stderr)
    return Detector.from_checkpoint(PIXEL_CONFIG, PIXEL_CKPT, max_batch=args.max_batch)


def _cmd_stream_video(args: argparse.Namespace) -> int:
    """Video sources as live streams: frames -> clips -> backbone -> lagged TAD; print events as they happen."""
    from .video import backbone_calib_options

    calib = backbone_calib_options(args)  # a flag that does not fit fails before any model is built
    from ..video.live import StageThreads, VideoStreamPool, clip_spec_for

    det = _video_detector(args)
    clip_spec_for(det.cfg)  # the model must say how its features are cut from frames
    from ..apps.pixel_demo import load_pixel_backbone
    bb = load_pixel_backbone(det.cfg, backend=args.backbone_backend, precision=args.backbone_precision,
                             **({"threads": args.threads_backbone} if args.backbone_backend != "eager" else {}),
                             **calib)
    threads = StageThreads(decode=args.threads_decode, backbone=args.threads_backbone, tad=args.threads_tad)
    overflow = args.overflow or ("drop" if args.realtime else "block")
    pool = VideoStreamPool(det, bb, hop=args.hop, lag=args.lag, threads=threads, queue_clips=args.queue_clips,
                           overflow=overflow, provisional_min_score=args.show_in_progress or 0.3)
    names = []
    for i, src in enumerate(args.source):
        name = f"{i}:{src}" if len(args.source) > 1 else str(src)
        names.append(name)
        pool.add(name, src, realtime=args.realtime, speed=args.speed,
                 timeout=args.timeout if args.timeout is not None else "auto")
    shown: dict = {}
    n_final = 0
    t_start = time.perf_counter()
    try:
        for upd in pool.updates():
            st = pool.stats()[upd.stream]
            now = upd.video_s
            start = st["start_wall"]
            for (s, e), c, p in zip(upd.final.segments, upd.final.labels, upd.final.scores):
                if p < args.min_score:
                    continue
                n_final += 1
                wall = "" if start is None or not args.realtime else \
                    f", {upd.wall_s - start - e / args.speed:.2f} s wall"
                print(f"[{now:8.2f} s] {upd.stream}: FINAL class {int(c)} {s:.2f}-{e:.2f} s score {p:.3f} "
                      f"(reported {now - e:.2f} s of video after its end{wall}"
                      f"{', at close' if upd.ended else ''})", flush=True)
            if args.show_in_progress and not upd.ended:
                cur = {(int(c), round(float(s), 1)) for (s, _), c in zip(upd.in_progress.segments, upd.in_progress.labels)}
                for c, s in sorted(cur - shown.get(upd.stream, set())):
                    print(f"[{now:8.2f} s] {upd.stream}: in progress: class {c} since {s:.1f} s", flush=True)
                shown[upd.stream] = cur
            if upd.error is not None:
                print(f"mse-rt: {upd.stream}: ended early: {upd.error}", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        print(f"mse-rt: stream interrupted after {n_final} final detections", file=sys.stderr)
        return 130
    finally:
        pool.close()
    stats = pool.stats()
    dropped = sum(v["dropped_clips"] for v in stats.values())
    print(f"{len(names)} sources, {n_final} final detections (score >= {args.min_score}); {dropped} clips dropped; "
          f"{time.perf_counter() - t_start:.1f} s wall", flush=True)
    errors = pool.errors()
    if errors:  # events so far were printed; the first error is the command's
        raise next(iter(errors.values()))
    return 0


def _cmd_stream(args: argparse.Namespace) -> int:
    """Play feature files as simultaneous live streams; print detections as they become final."""
    if args.source:
        if args.features:
            raise MseRtError("give either feature files or --source video sources, not both")
        return _cmd_stream_video(args)
    if not args.features:
        raise MseRtError("nothing to stream: give feature files or --source FILE|URL|DEVICE")
    from ..io.features import collect_feature_files, load_feature_file, video_ids_for
    from ..pipeline.inputs import check_features
    from ..runtime import Detector
    from ..streaming.lagged import StreamPool

    files = collect_feature_files(args.features)
    ids = video_ids_for(files, args.ids)
    from ..io.results import check_unique_ids

    check_unique_ids(ids)
    if args.model:
        det = Detector.from_file(args.model, max_batch=args.max_batch, allow_slow_int8=args.allow_slow_int8,
                                 **({"allow_unverified": True} if args.allow_unverified_model else {}))
    elif args.config and args.ckpt:
        det = Detector.from_checkpoint(args.config, args.ckpt, backend=args.backend, device=args.device,
                                       max_batch=args.max_batch, allow_unverified=args.allow_unverified_checkpoint)
    else:
        from ..apps.demo import DEMO_CKPT, DEMO_CONFIG

        det = Detector.from_checkpoint(DEMO_CONFIG, DEMO_CKPT, max_batch=args.max_batch)
        print("no model given: the bundled demo model", file=sys.stderr)
    feats = {v: load_feature_file(f) for v, f in zip(ids, files)}
    for f, x in zip(files, feats.values()):  # whole files checked up front: errors name the file, not a chunk
        check_features(x, det.cfg, name=f"feature file {f}")
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
    add_model_arguments(st)
    st.add_argument("--fps", type=frame_rate, default=None, help="video frame rate (default: dataset.default_fps)")
    st.add_argument("--lag", type=nonneg_int, default=8, help="steps after a predicted end before it is final")
    st.add_argument("--hop", type=positive_int, default=4, help="steps between model runs (and per push)")
    st.add_argument("--max-batch", type=positive_int, default=16, help="windows per forward pass")
    st.add_argument("--min-score", type=unit_float, default=0.2, help="print final detections from this score")
    st.add_argument("--show-in-progress", type=unit_float, default=None, metavar="SCORE",
                    help="also print actions in progress with at least this score")
    st.add_argument("--realtime", action="store_true", help="play at the video's pace (default: as fast as possible)")
    st.add_argument("--speed", type=float_in(*SPEED_RANGE, what="a speed factor"), default=1.0,
                    help=f"with --realtime: playback speed factor, in [{SPEED_RANGE[0]:g}, {SPEED_RANGE[1]:g}]")
    st.add_argument("--ids", default="stem", choices=("stem", "relpath"))
    st.add_argument("features", nargs="*", help="feature files (one stream each) or folders of them")
    vid = st.add_argument_group("video sources (--source; the model's config needs a 'video' section)")
    vid.add_argument("--source", action="append", default=[], metavar="FILE|URL|DEVICE",
                     help="a video file, stream URL or capture device (repeatable: one stream each, batched)")
    vid.add_argument("--backbone-backend", default="eager", choices=("eager", "onnxruntime", "openvino"))
    vid.add_argument("--backbone-precision", default=None, choices=("fp32", "bf16", "int8"))
    from .video import add_backbone_calib

    add_backbone_calib(vid)
    vid.add_argument("--threads-decode", type=thread_count_or_auto, default=DEFAULT_THREADS.decode,
                     help="FFmpeg decoder threads per source (0: FFmpeg's choice)")
    vid.add_argument("--threads-backbone", type=thread_count, default=DEFAULT_THREADS.backbone,
                     help="threads of the backbone stage (torch, or the OpenVINO / ONNX Runtime backbone's own; "
                          "default: every core this process may use, %(default)s here)")
    vid.add_argument("--threads-tad", type=thread_count, default=DEFAULT_THREADS.tad,
                     help="torch threads of the TAD stage")
    vid.add_argument("--queue-clips", type=positive_int, default=16, help="clips queued per source")
    vid.add_argument("--overflow", choices=("drop", "block", "raise"), default=None,
                     help="when compute falls behind: drop (default with --realtime), block (default), raise")
    vid.add_argument("--timeout", type=positive_float, default=None,
                     help="stall timeout in seconds (default: 10 s for URLs / devices, none for files)")
    st.set_defaults(fn=_cmd_stream)
