"""A Ray Data job over feature files: one Detector per actor, resumable through a journal.

    from mse_rt.serving import detect_corpus_ray
    detect_corpus_ray(["feats/"], "results.json", config="c.yaml", ckpt="k.pth.tar", num_actors=2)
    mse-rt detect --ray [--address auto] [--actors 2] --config c.yaml --ckpt k.pth.tar feats/ -o results.json

Ray Data job: the files become a dataset of (video id, path) rows; ``map_batches`` runs an actor
class holding one Detector per actor (any backend; ``gpus_per_actor`` for GPU backends), which
loads each batch's files and calls ``detect_batch`` (it groups videos by padded length, so
batching stays exact). Each finished video is appended to the run journal
(``OUTPUT.journal.jsonl``, :mod:`mse_rt.io.journal`: the same file and rules as the in-process
``mse-rt detect``, flushed as results arrive), so a rerun skips videos already done (resumable),
a crash or an interrupt loses nothing finished and leaves an earlier results file as it was, and
a journal of another model is refused, never mixed in. When every video has an outcome the
results are written atomically as ActivityNet JSON (or JSON lines with ``jsonl=True`` for huge
corpora); when none succeeded nothing is written. A file that fails (unreadable, wrong shape,
NaN) is reported with its reason and does not stop the job (the journal then stays, so a rerun
retries only the failed videos). A worker that dies (a crash in native code, out of memory, a killed process) is
restarted and its batch retried up to ``actor_retries`` times (Ray Data's own default is to
retry forever, so a batch that kills its worker every time would hang the job); a batch that
still fails is set aside, the job goes on, and its videos are retried one per batch in further
passes (fresh actors, while a pass still brings results), so only the video that kills its
worker is reported failed ("worker ... kept dying") and every other result is kept. Ray is
optional: ``pip install 'mse-rt[ray]'``.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import BackendError, InputError, MseRtError
from ..io.journal import read_journal  # noqa: F401 - re-exported by mse_rt.serving
from .ray_cluster import init_ray


def _build_detector(spec: dict):
    """The Detector a worker runs (``spec``: the job's model fields); the driver builds one first, so
    a missing, corrupt or unverified model fails before Ray starts, with the same error."""
    from ..runtime import Detector

    if spec.get("model_file"):
        return Detector.from_file(spec["model_file"], max_batch=spec["batch_size"],
                                  **({"allow_unverified": True} if spec.get("allow_unverified") else {}))
    return Detector.from_checkpoint(spec["config"], spec["ckpt"], backend=spec["backend"], device=spec["device"],
                                    max_batch=spec["batch_size"], allow_unverified=bool(spec.get("allow_unverified")))


class _DetectActor:
    """One Detector per Ray actor; ``__call__`` maps a batch of rows to result rows."""

    def __init__(self, spec: dict) -> None:
        import torch

        torch.set_num_threads(spec.get("threads") or 1)
        self.det = spec["factory"]() if spec.get("factory") is not None else _build_detector(spec)
        self.fps = spec.get("fps")

    def __call__(self, batch: dict) -> dict:
        from ..runtime.files import detect_file_batch

        outcomes = detect_file_batch(self.det, list(batch["path"]), list(batch["video_id"]), fps=self.fps)
        return {"video_id": np.array([o.video_id for o in outcomes], dtype=object),
                "detections": np.array([json.dumps(o.result.to_list()) if o.result else "" for o in outcomes],
                                       dtype=object),
                "error": np.array([o.error or "" for o in outcomes], dtype=object)}


@contextlib.contextmanager
def _job_errors(journal):
    """A Ray failure that stops the job (cluster gone) as a BackendError that says where the
    finished videos are; MseRtError passes through (an interrupt too: the CLI reports it)."""
    try:
        yield
    except MseRtError:
        raise
    except Exception as exc:  # noqa: BLE001 - Ray raises many types; all end the job the same way
        first = (str(exc).strip().splitlines() or [""])[0]
        raise BackendError(f"the Ray job stopped: {type(exc).__name__}: {first}; "
                           f"the {len(journal.done)} finished videos are kept in {journal.path}: rerun the same command to "
                           "resume") from exc


def _run_pass(ray, rows: list[dict], spec: dict, batch_size: int, num_actors: int, gpus_per_actor: float,
              actor_retries: int):
    """Result rows of one Ray Data pass over ``rows``; batches whose worker kept dying are skipped
    (their videos simply have no row)."""
    from ray.data import DataContext

    ctx = DataContext.get_current()
    saved = ctx.max_errored_blocks
    ctx.max_errored_blocks = -1  # a batch that failed all its retries is set aside, the job goes on
    try:
        # one block per batch: a Ray task runs a whole block, and a worker that dies loses every
        # row of its block, not only those of the batch that killed it
        ds = ray.data.from_items(rows, override_num_blocks=max(1, -(-len(rows) // batch_size)))
        # single-video passes: one task in flight per actor, so a video that kills its worker
        # does not take the tasks queued beside it on the same actor down with it
        pool = ray.data.ActorPoolStrategy(size=num_actors,
                                          max_tasks_in_flight_per_actor=1 if batch_size == 1 else None)
        ds = ds.map_batches(_DetectActor, fn_constructor_kwargs={"spec": spec}, batch_size=batch_size,
                            compute=pool, num_gpus=gpus_per_actor or None, batch_format="numpy",
                            max_restarts=actor_retries, max_task_retries=actor_retries)
        yield from ds.iter_rows()
    finally:
        ctx.max_errored_blocks = saved


def detect_corpus_ray(inputs, output: str | Path, config=None, ckpt=None, model_file=None, backend: str = "eager",
                      device: str = "cpu", num_actors: int = 2, gpus_per_actor: float = 0.0, batch_size: int = 8,
                      threads_per_actor: int = 1, fps: float | None = None, address: str | None = None,
                      ids: str = "stem", jsonl: bool = False, on_progress: Callable | None = None,
                      actor_retries: int = 2, detector_factory: Callable | None = None,
                      allow_unverified: bool = False) -> dict:
    """Run a detector over feature files on Ray (see the module docstring).

    ``detector_factory``: a picklable callable returning the Detector each actor uses (instead of
    config + ckpt / model_file). ``actor_retries``: restarts of a dead worker and retries of its
    batch before the batch is set aside. Returns ``{"done": n, "skipped": n already in the
    journal, "failed": {video id: reason}, "output": path, "seconds": wall time}``.
    """
    from ..io.features import collect_feature_files, video_ids_for
    from ..io.files import check_not_an_input, check_output_path
    from ..io.journal import Journal, check_journal_path, file_stamp, run_key
    from ..io.results import check_unique_ids

    if num_actors < 1 or batch_size < 1 or actor_retries < 0:
        raise InputError(f"num_actors and batch_size must be >= 1 and actor_retries >= 0, got {num_actors}, "
                         f"{batch_size} and {actor_retries}")
    if model_file is None and not (config and ckpt) and detector_factory is None:
        raise InputError("give config + ckpt, or model_file (.onnx / .engine), or detector_factory")
    output = check_output_path(output, what="results file")
    files = collect_feature_files([str(i) for i in inputs])
    vid_ids = check_unique_ids(video_ids_for(files, ids))
    model_files = [p for p in (config, ckpt, model_file) if p]
    check_not_an_input(output, [*files, *model_files], what="results file")
    check_journal_path(output, [*files, *model_files])
    key = run_key(config=config, ckpt=ckpt, model_file=model_file, factory=detector_factory, backend=backend, fps=fps,
                  ids=ids)
    stamps = {v: file_stamp(f) for v, f in zip(vid_ids, files)}
    t0 = time.perf_counter()
    failed: dict[str, str] = {}
    with Journal.open(output, key) as journal:
        ok = {v for v in vid_ids if journal.reusable(v, stamps[v])}
        todo = [(v, str(f)) for v, f in zip(vid_ids, files) if v not in ok]
        if todo:
            spec = {"config": str(config) if config else None, "ckpt": str(ckpt) if ckpt else None,
                    "model_file": str(model_file) if model_file else None, "backend": backend, "device": device,
                    "batch_size": batch_size, "fps": fps, "threads": threads_per_actor, "factory": detector_factory,
                    "allow_unverified": allow_unverified}
            if detector_factory is None:
                _build_detector(spec)
            ray = init_ray(address)
            pending = [{"video_id": v, "path": p} for v, p in todo]
            # pass 1 in batches; then passes of one video per batch (fresh actors each) for the videos
            # of batches whose worker died, while a pass still brings results (at most actor_retries + 1)
            sizes = [batch_size] + [1] * (actor_retries + 1)
            for k, bs in enumerate(sizes):
                seen = set()
                with _job_errors(journal):
                    for row in _run_pass(ray, pending, spec, bs, num_actors, gpus_per_actor, actor_retries):
                        vid = str(row["video_id"])
                        seen.add(vid)
                        if row["error"]:
                            failed[vid] = str(row["error"])
                            continue
                        journal.append([(vid, json.loads(row["detections"]), stamps[vid])])
                        ok.add(vid)
                        failed.pop(vid, None)
                        if on_progress:
                            on_progress(len(ok), len(vid_ids))
                pending = [r for r in pending if r["video_id"] not in seen]
                if not pending or (k > 0 and not seen):
                    break
            for r in pending:
                failed[r["video_id"]] = (f"{r['path']}: no result, the Ray worker running it kept dying "
                                         f"({actor_retries + 1} tries per pass; a crash in native code, out of memory "
                                         "or a killed process)")
        settled = journal.complete(output, [v for v in vid_ids if v in ok], any_failed=bool(failed), jsonl=jsonl)
    return {"done": len(todo) - len(failed), "skipped": len(vid_ids) - len(todo), "failed": failed,
            "output": str(output), "written": settled.output is not None, "seconds": time.perf_counter() - t0,
            "journal": str(journal.path)}
