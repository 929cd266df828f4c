"""A Ray Data job over feature files: one Detector per actor, resumable through a journal.

    from mse_rt.serving import detect_corpus_ray
    detect_corpus_ray(["feats/"], "results.json", config="c.yaml", ckpt="k.pth.tar", num_actors=2)
    mse-rt detect --ray [--address auto] [--actors 2] --config c.yaml --ckpt k.pth.tar feats/ -o results.json

Ray Data job: the files become a dataset of (video id, path) rows; ``map_batches`` runs an actor
class holding one Detector per actor (any backend; ``gpus_per_actor`` for GPU backends), which
loads each batch's files and calls ``detect_batch`` (it groups videos by padded length, so
batching stays exact). Each finished video is appended to a journal (``OUTPUT.journal.jsonl``,
one JSON line per video, flushed as results arrive), so a rerun skips videos already done
(resumable) and a crash loses nothing finished; at the end the journal becomes the ActivityNet
results JSON, written atomically (or stays JSON lines with ``jsonl=True`` for huge corpora).
A file that fails (unreadable, wrong shape, NaN) is reported with its reason and does not stop
the job. A worker that dies (a crash in native code, out of memory, a killed process) is
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
from .ray_cluster import init_ray


class _DetectActor:
    """One Detector per Ray actor; ``__call__`` maps a batch of rows to result rows."""

    def __init__(self, spec: dict) -> None:
        import torch

        from ..runtime import Detector

        torch.set_num_threads(spec.get("threads") or 1)
        if spec.get("factory") is not None:
            self.det = spec["factory"]()
        elif spec.get("model_file"):
            self.det = Detector.from_file(spec["model_file"], max_batch=spec["batch_size"])
        else:
            self.det = Detector.from_checkpoint(spec["config"], spec["ckpt"], backend=spec["backend"],
                                                device=spec["device"], max_batch=spec["batch_size"])
        self.fps = spec.get("fps")

    def __call__(self, batch: dict) -> dict:
        from ..runtime.files import detect_file_batch

        outcomes = detect_file_batch(self.det, list(batch["path"]), list(batch["video_id"]), fps=self.fps)
        return {"video_id": np.array([o.video_id for o in outcomes], dtype=object),
                "detections": np.array([json.dumps(o.result.to_list()) if o.result else "" for o in outcomes],
                                       dtype=object),
                "error": np.array([o.error or "" for o in outcomes], dtype=object)}


def read_journal(path: Path) -> dict[str, list]:
    """{video id: detections} of a journal (JSON lines); a torn last line (crash) is ignored."""
    done: dict[str, list] = {}
    if not path.is_file():
        return done
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        done[row["video_id"]] = row["detections"]
    return done


@contextlib.contextmanager
def _job_errors(journal: Path, done: dict):
    """A Ray failure that stops the job (cluster gone, driver interrupted) as a BackendError that
    says where the finished videos are; MseRtError passes through."""
    try:
        yield
    except MseRtError:
        raise
    except Exception as exc:  # noqa: BLE001 - Ray raises many types; all end the job the same way
        first = (str(exc).strip().splitlines() or [""])[0]
        raise BackendError(f"the Ray job stopped: {type(exc).__name__}: {first}; "
                           f"the {len(done)} finished videos are kept in {journal}: rerun the same command to "
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
                      actor_retries: int = 2, detector_factory: Callable | None = None) -> dict:
    """Run a detector over feature files on Ray (see the module docstring).

    ``detector_factory``: a picklable callable returning the Detector each actor uses (instead of
    config + ckpt / model_file). ``actor_retries``: restarts of a dead worker and retries of its
    batch before the batch is set aside. Returns ``{"done": n, "skipped": n already in the
    journal, "failed": {video id: reason}, "output": path, "seconds": wall time}``.
    """
    from ..io.features import collect_feature_files, video_ids_for
    from ..io.files import atomic_write_text, check_output_path
    from ..io.results import check_unique_ids

    if num_actors < 1 or batch_size < 1 or actor_retries < 0:
        raise InputError(f"num_actors and batch_size must be >= 1 and actor_retries >= 0, got {num_actors}, "
                         f"{batch_size} and {actor_retries}")
    if model_file is None and not (config and ckpt) and detector_factory is None:
        raise InputError("give config + ckpt, or model_file (.onnx / .engine), or detector_factory")
    output = check_output_path(output, what="results file")
    files = collect_feature_files([str(i) for i in inputs])
    vid_ids = check_unique_ids(video_ids_for(files, ids))
    journal = output.with_name(output.name + ".journal.jsonl")
    done = read_journal(journal)
    todo = [(v, str(f)) for v, f in zip(vid_ids, files) if v not in done]
    t0 = time.perf_counter()
    failed: dict[str, str] = {}
    if todo:
        ray = init_ray(address)
        spec = {"config": str(config) if config else None, "ckpt": str(ckpt) if ckpt else None,
                "model_file": str(model_file) if model_file else None, "backend": backend, "device": device,
                "batch_size": batch_size, "fps": fps, "threads": threads_per_actor, "factory": detector_factory}
        pending = [{"video_id": v, "path": p} for v, p in todo]
        # pass 1 in batches; then passes of one video per batch (fresh actors each) for the videos
        # of batches whose worker died, while a pass still brings results (at most actor_retries + 1)
        sizes = [batch_size] + [1] * (actor_retries + 1)
        for k, bs in enumerate(sizes):
            seen = set()
            with open(journal, "a") as j, _job_errors(journal, done):
                for row in _run_pass(ray, pending, spec, bs, num_actors, gpus_per_actor, actor_retries):
                    vid = str(row["video_id"])
                    seen.add(vid)
                    if row["error"]:
                        failed[vid] = str(row["error"])
                        continue
                    dets = json.loads(row["detections"])
                    j.write(json.dumps({"video_id": vid, "detections": dets}) + "\n")
                    j.flush()
                    done[vid] = dets
                    if on_progress:
                        on_progress(len(done), len(vid_ids))
            pending = [r for r in pending if r["video_id"] not in seen]
            if not pending or (k > 0 and not seen):
                break
        for r in pending:
            failed[r["video_id"]] = (f"{r['path']}: no result, the Ray worker running it kept dying ({actor_retries + 1} "
                                     "tries per pass; a crash in native code, out of memory or a killed process)")
    n_new = len(todo) - len(failed)
    if jsonl:
        lines = "".join(json.dumps({"video_id": v, "detections": d}) + "\n" for v, d in done.items())
        atomic_write_text(output, lines, what="results JSON lines")
    else:
        atomic_write_text(output, json.dumps({"version": "mse_rt", "results": done, "external_data": {}}),
                          what="results JSON")
    return {"done": n_new, "skipped": len(vid_ids) - len(todo), "failed": failed, "output": str(output),
            "seconds": time.perf_counter() - t0, "journal": str(journal)}
