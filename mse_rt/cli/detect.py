"""``mse-rt detect``: feature files or videos -> ActivityNet results JSON (in process, or as a Ray job)."""

from __future__ import annotations

import argparse
import sys
import time

from ..errors import MseRtError
from .args import add_model_arguments, frame_rate, nonneg_int, positive_int


def _cmd_detect(args: argparse.Namespace) -> int:
    """In process: every finished batch goes to the run journal (``OUTPUT.journal.jsonl``,
    :mod:`mse_rt.io.journal`); the results file is written, atomically, only once every video has an
    outcome, and only when at least one succeeded. An interrupt (SIGINT, or SIGTERM through
    :func:`mse_rt.cli.main`) leaves the results file as it was and the finished videos in the journal;
    rerunning the same command resumes (journaled videos whose files did not change are not run again)."""
    from ..io.features import collect_inputs, video_ids_for
    from ..io.files import check_not_an_input, check_output_path
    from ..io.journal import Journal, check_journal_path, file_stamp, run_key
    from ..io.results import check_unique_ids

    if args.model and (args.config or args.ckpt):
        raise MseRtError("--model runs a deployable file on its own; drop --config / --ckpt")
    if not args.model and not (args.config and args.ckpt):
        raise MseRtError("detect needs --config and --ckpt, or --model FILE (.onnx)")
    files, kind = collect_inputs(args.features)
    if args.ray:
        if kind == "video":
            raise MseRtError("detect --ray takes feature files; turn the videos into features first "
                             "(mse-rt extract-features)")
        return _detect_ray(args)
    if kind == "video" and args.model:
        raise MseRtError("video inputs need --config and --ckpt (the clip spec and backbone come from the config)")
    ids = video_ids_for(files, args.ids)
    try:
        check_unique_ids(ids)
    except MseRtError as exc:
        raise MseRtError(f"{exc}{' (try --ids relpath)' if args.ids == 'stem' else ''}") from None
    # before any work: a bad -o loses nothing, and -o never overwrites an input
    output = check_output_path(args.output, what="results file")
    model_files = [p for p in (args.model, args.config, args.ckpt) if p]
    check_not_an_input(output, [*files, *model_files], what="results file")
    check_journal_path(output, [*files, *model_files])
    key = run_key(config=args.config, ckpt=args.ckpt, model_file=args.model, backend=args.backend, fps=args.fps,
                  ids=args.ids)
    video = None
    if kind == "video":
        # the features depend on the clip spec and the backbone: both are in the run key, so a resume
        # never mixes detections from features of two backbones
        video = _video_front_end(args)
        key["video"] = video["identity"]
    with Journal.open(output, key) as journal:
        return _run_journaled(args, journal, output, files, ids, [file_stamp(f) for f in files], video)


def _video_front_end(args: argparse.Namespace) -> dict:
    """Clip spec and backbone for video inputs (from the TAD config), and their identity (JSON-able)."""
    import json

    from ..config import load_config
    from ..video.pipeline import backbone_identity, clip_spec_for_config
    from .video import load_video_backbone

    cfg = load_config(args.config)
    spec = clip_spec_for_config(cfg, fps=args.fps)
    backbone = load_video_backbone(args, (cfg.get("video") or {}).get("backbone", "i3d-rgb"), spec)
    if backbone.dim != cfg["model"]["input_dim"]:  # before any journal or work (VideoDetector checks it too)
        raise MseRtError(f"backbone {backbone.name} gives {backbone.dim}-wide features, the TAD config's "
                         f"model.input_dim is {cfg['model']['input_dim']} (its 'video' section names the backbone)")
    identity = json.loads(json.dumps({"clip_spec": spec.to_dict(), "backbone": backbone_identity(backbone)}))
    return {"spec": spec, "backbone": backbone, "identity": identity}


def _run_journaled(args, journal, output, files, ids, stamps, video=None) -> int:
    from tqdm import tqdm

    from ..runtime import Detector
    from ..runtime.files import detect_files

    ok = {v for v, s in zip(ids, stamps) if journal.reusable(v, s)}
    reused = len(ok)
    todo = [i for i, v in enumerate(ids) if v not in ok]
    failed: list[tuple[str, str]] = []  # (video id, reason)
    done = 0
    t0 = time.perf_counter()
    try:
        if todo:
            if args.model:
                det = Detector.from_file(args.model, nms_impl=args.nms, allow_slow_int8=args.allow_slow_int8,
                                         **({"allow_unverified": True} if args.allow_unverified_model else {}))
            else:
                det = Detector.from_checkpoint(args.config, args.ckpt, backend=args.backend, device=args.device,
                                               nms_impl=args.nms, allow_unverified=args.allow_unverified_checkpoint)
            fps, load = args.fps, {}
            if video is not None:  # frames -> features in the same files loop (VideoFeatures carry the duration)
                from ..video.pipeline import VideoDetector
                from .video import source_options

                vd = VideoDetector(det, video["backbone"], video["spec"], clip_batch=args.clip_batch,
                                   source_options=source_options(args))
                fps, load = vd.spec.fps, {"load": vd.extract}
            with tqdm(total=len(todo), unit="video", desc="detect", disable=args.quiet) as bar:
                for outcomes in detect_files(det, [files[i] for i in todo], [ids[i] for i in todo], fps=fps,
                                             batch=args.batch, **load):
                    rows = []
                    for o, i in zip(outcomes, todo[done:done + len(outcomes)]):
                        if o.result is not None:
                            rows.append((o.video_id, o.result.to_list(), stamps[i]))
                        else:
                            failed.append((o.video_id, o.error))
                    journal.append(rows)  # an interrupt lands before or after it, never inside
                    done += len(outcomes)
                    bar.update(len(outcomes))
    except KeyboardInterrupt:
        for vid, why in failed:
            print(f"mse-rt: failed {vid}: {why}", file=sys.stderr)
        failed_ids = {v for v, _ in failed}
        missing = [ids[i] for i in todo if ids[i] not in journal.new and ids[i] not in failed_ids]
        kept = (f"the {len(journal.done)} finished videos are kept in {journal.path}" if journal.done
                else "no video had finished")
        print(f"mse-rt: interrupted: {output} was not changed; {kept}; {len(missing)} not run"
              + (f" (first: {missing[0]})" if missing else "") + "; rerun the same command to resume", file=sys.stderr)
        return 130
    ok |= journal.new
    finished = [v for v in ids if v in ok]
    settled = journal.complete(output, finished, any_failed=bool(failed))
    for vid, why in failed:
        print(f"mse-rt: failed {vid}: {why}", file=sys.stderr)
    n_det = sum(len(journal.done[v]) for v in finished)
    from_journal = f" ({reused} from the journal)" if reused else ""
    if settled.output is None:
        print(f"mse-rt: error: all {len(files)} videos failed (listed above); nothing written"
              + (f" ({output} was not changed)" if output.exists() else ""), file=sys.stderr)
        return 1
    print(f"{len(finished)} videos{from_journal}, {n_det} detections in {time.perf_counter() - t0:.2f} s -> {output}")
    if settled.others:
        print(f"mse-rt: {journal.path} also keeps {settled.others} finished videos that are not among these inputs",
              file=sys.stderr)
    if failed:
        print(f"mse-rt: error: {len(failed)} of {len(files)} videos failed (listed above); the other "
              f"{len(finished)} are in {output}; rerunning the same command runs only the failed ones "
              f"(the finished ones stay in {journal.path})", file=sys.stderr)
        return 1
    return 0


def _detect_ray(args: argparse.Namespace) -> int:
    """``detect --ray``: the Ray Data job of :mod:`mse_rt.serving.ray_job` (resumable through the same
    journal as the in-process run)."""
    from ..io.journal import journal_path
    from ..serving import detect_corpus_ray, shutdown

    last = [0.0]

    def progress(done, total):
        if not args.quiet and time.perf_counter() - last[0] > 2:
            last[0] = time.perf_counter()
            print(f"  {done}/{total} videos", file=sys.stderr, flush=True)

    try:
        r = detect_corpus_ray(args.features, args.output, config=args.config, ckpt=args.ckpt, model_file=args.model,
                              backend=args.backend, device=args.device, num_actors=args.actors,
                              gpus_per_actor=args.gpus_per_actor, batch_size=args.batch, fps=args.fps,
                              address=args.address, ids=args.ids, jsonl=args.jsonl, on_progress=progress,
                              actor_retries=args.actor_retries,
                              allow_unverified=args.allow_unverified_model if args.model
                              else args.allow_unverified_checkpoint)
    except KeyboardInterrupt:
        print(f"mse-rt: interrupted: {args.output} was not changed; the finished videos are kept in "
              f"{journal_path(args.output)}; rerun the same command to resume", file=sys.stderr)
        return 130
    finally:
        if not args.address:
            shutdown()
    for vid, why in r["failed"].items():
        print(f"mse-rt: failed {vid}: {why}", file=sys.stderr)
    if not r["written"]:
        print(f"mse-rt: error: all {len(r['failed'])} videos failed (listed above); nothing written", file=sys.stderr)
        return 1
    print(f"{r['done']} videos run, {r['skipped']} already in {r['journal']}, {len(r['failed'])} failed in "
          f"{r['seconds']:.1f} s -> {r['output']}")
    return 1 if r["failed"] else 0


def register(sub) -> None:
    d = sub.add_parser("detect", help="detect actions in feature files (.npy, (T, C) time-first)")
    add_model_arguments(d, runtime=False)
    d.add_argument("--fps", type=frame_rate, default=None, help="video frame rate (default: dataset.default_fps)")
    d.add_argument("--backend", default="eager")
    d.add_argument("--device", default="cpu")
    d.add_argument("--nms", default="auto", choices=("auto", "native", "torch", "gpu"),
                   help="NMS implementation (auto: GPU NMS with the triton backend, C++ otherwise)")
    d.add_argument("--batch", type=positive_int, default=8, help="videos per detect_batch call (>= 1)")
    d.add_argument("--ids", default="stem", choices=("stem", "relpath"),
                   help="video ids: file name without .npy (default), or the path relative to the files' common folder")
    d.add_argument("-o", "--output", default="results.json", help="ActivityNet-format results JSON")
    d.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    d.add_argument("--ray", action="store_true", help="run as a Ray Data job (resumable; pip install 'mse-rt[ray]')")
    d.add_argument("--address", default=None, help="with --ray: an existing cluster (default: a local one on 127.0.0.1)")
    d.add_argument("--actors", type=positive_int, default=2, help="with --ray: detector actors")
    d.add_argument("--gpus-per-actor", type=float, default=0.0, help="with --ray: GPUs per actor")
    d.add_argument("--actor-retries", type=nonneg_int, default=2,
                   help="with --ray: restarts of a dead worker (and retries of its batch) before the batch is set aside")
    d.add_argument("--jsonl", action="store_true", help="with --ray: write JSON lines (huge corpora)")
    from .video import add_backbone_options

    add_backbone_options(d)  # video inputs only
    d.add_argument("features", nargs="+", help="feature files, one (T, C) .npy per video, or folders of them; or "
                   "videos (by extension or content; not both kinds in one call), or folders of them")
    d.set_defaults(fn=_cmd_detect)
