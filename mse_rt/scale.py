"""Beyond one process: a Ray Data job over feature files and a Ray Serve HTTP endpoint.

    from mse_rt.scale import detect_corpus_ray
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

Ray Serve endpoint (:func:`serve_detector`): POST JSON ``{"video_id": str, "fps": float,
"features": [[...], ...]}`` (T rows of C numbers) or ``"features_npy_b64"`` (a base64 .npy of a
(T, C) array) to ``http://127.0.0.1:PORT/detect``; the answer is
``{"video_id", "duration", "detections": [{"segment": [s, e], "score", "label"}]}``. Requests
are gathered by ``@serve.batch`` and run through one ``detect_batch``; errors come back as HTTP 400
with ``{"error": ...}``.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .errors import BackendError, InputError, MseRtError

# Ray and Serve: no usage statistics, no dashboard, everything on the loopback address.
_RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_DISABLE_DOCKER_CPU_WARNING": "1"}


def _import_ray():
    try:
        import ray
    except ImportError as exc:
        raise BackendError("the Ray job needs Ray: pip install 'mse-rt[ray]'") from exc
    return ray


def init_ray(address: str | None = None, num_cpus: int | None = None):
    """Connect to ``address`` (e.g. "auto" or "ray://host:10001"), or start a local cluster bound
    to 127.0.0.1 with usage statistics and the dashboard off."""
    for k, v in _RAY_ENV.items():
        os.environ.setdefault(k, v)
    ray = _import_ray()
    if ray.is_initialized():
        return ray
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
                 configure_logging=False)
    return ray


class _DetectActor:
    """One Detector per Ray actor; ``__call__`` maps a batch of rows to result rows."""

    def __init__(self, spec: dict) -> None:
        import torch

        from .runtime import Detector

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
        from .features import load_feature_file
        from .preprocess import check_features

        ids, paths = list(batch["video_id"]), list(batch["path"])
        out_ids, out_json, out_err = [], [], []
        good, feats = [], []
        for vid, path in zip(ids, paths):
            try:
                x = load_feature_file(path)
                check_features(x, self.det.cfg, name=str(path))
                good.append(vid)
                feats.append(x)
            except MseRtError as exc:
                out_ids.append(vid)
                out_json.append("")
                out_err.append(str(exc))
        if feats:
            try:
                results = self.det.detect_batch(feats, fps=self.fps, video_ids=good)
                for r in results:
                    out_ids.append(r.video_id)
                    out_json.append(json.dumps(r.to_list()))
                    out_err.append("")
            except MseRtError as exc:
                for vid in good:
                    out_ids.append(vid)
                    out_json.append("")
                    out_err.append(str(exc))
        return {"video_id": np.array(out_ids, dtype=object), "detections": np.array(out_json, dtype=object),
                "error": np.array(out_err, dtype=object)}


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
    from .cli import collect_feature_files, video_ids_for
    from .fileio import atomic_write_text, check_output_path
    from .results import check_unique_ids

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


# ---------------------------------------------------------------------------------------------- Serve
def decode_request(payload: dict, c_in: int) -> tuple[np.ndarray, float | None, str]:
    """(features (T, C) float32, fps, video id) of a request body; :class:`InputError` otherwise."""
    if not isinstance(payload, dict):
        raise InputError("request body must be a JSON object")
    vid = str(payload.get("video_id", "video"))
    fps = payload.get("fps")
    if "features_npy_b64" in payload:
        try:
            arr = np.load(io.BytesIO(base64.b64decode(payload["features_npy_b64"])), allow_pickle=False)
        except Exception as exc:  # noqa: BLE001 - any decoding problem is the client's
            raise InputError(f"features_npy_b64 is not a base64 .npy array: {exc}") from exc
    elif "features" in payload:
        try:
            arr = np.asarray(payload["features"], dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise InputError(f"features must be a (T, {c_in}) list of numbers: {exc}") from exc
    else:
        raise InputError("request needs 'features' (T x C numbers) or 'features_npy_b64'")
    return arr, fps, vid


def encode_npy_b64(feats: np.ndarray) -> str:
    """A (T, C) array as the base64 .npy string the endpoint accepts."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(feats, dtype=np.float32))
    return base64.b64encode(buf.getvalue()).decode()


def request_detection(url: str, feats: np.ndarray, fps: float | None = None, video_id: str = "video",
                      timeout: float = 60.0) -> dict:
    """POST one video's (T, C) features to a running endpoint; returns its JSON answer
    (``{"video_id", "duration", "detections"}``). Raises :class:`BackendError` when the endpoint
    cannot be reached (server down, wrong port), answers with a server error or times out, and
    :class:`InputError` with the server's message when it refuses the request (HTTP 400)."""
    import urllib.error
    import urllib.request

    body = {"video_id": str(video_id), "features_npy_b64": encode_npy_b64(feats)}
    if fps is not None:
        body["fps"] = float(fps)
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            msg = json.loads(exc.read()).get("error", "")
        except ValueError:
            msg = ""
        if exc.code == 400:
            raise InputError(f"{url} refused video {video_id!r}: {msg or exc.reason}") from exc
        raise BackendError(f"{url} answered HTTP {exc.code} for video {video_id!r}: {msg or exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise BackendError(f"endpoint {url} is not reachable ({exc.reason}): is `mse-rt serve` running there?") from exc
    except TimeoutError as exc:
        raise BackendError(f"endpoint {url} did not answer within {timeout:g} s (video {video_id!r})") from exc


def build_serve_app(config=None, ckpt=None, model_file=None, backend: str = "eager", device: str = "cpu",
                    replicas: int = 1, max_batch: int = 8, batch_wait_s: float = 0.01, threads: int = 1):
    """A Ray Serve application (bind it with ``serve.run``) around one Detector per replica."""
    init_ray()
    try:
        from ray import serve
        from starlette.requests import Request
        from starlette.responses import JSONResponse
    except ImportError as exc:
        raise BackendError("the endpoint needs Ray Serve: pip install 'mse-rt[ray]'") from exc

    @serve.deployment(num_replicas=replicas, ray_actor_options={"num_cpus": 0})
    class MseRtEndpoint:
        def __init__(self) -> None:
            import torch

            from .runtime import Detector

            torch.set_num_threads(threads)
            if model_file:
                self.det = Detector.from_file(model_file, max_batch=max_batch)
            else:
                self.det = Detector.from_checkpoint(config, ckpt, backend=backend, device=device, max_batch=max_batch)

        @serve.batch(max_batch_size=max_batch, batch_wait_timeout_s=batch_wait_s)
        async def _detect(self, items: list[tuple]) -> list[dict]:
            out: list[dict | None] = [None] * len(items)
            ok = []
            for i, (feats, fps, vid) in enumerate(items):
                try:  # check each request alone: one bad request must not fail the others of its batch
                    from .preprocess import check_features
                    from .values import positive_number

                    check_features(feats, self.det.cfg, name=f"video {vid!r}")
                    if fps is None and self.det.cfg["dataset"]["default_fps"] is None:
                        raise InputError("fps is required (the model's config has no default_fps)")
                    if fps is not None:
                        positive_number(fps, "fps")
                    ok.append(i)
                except MseRtError as exc:
                    out[i] = {"error": str(exc)}
            if ok:
                try:
                    rs = self.det.detect_batch([items[i][0] for i in ok], fps=[items[i][1] for i in ok],
                                               video_ids=[f"{i}" for i in ok])
                    for i, r in zip(ok, rs):
                        out[i] = {"video_id": items[i][2], "duration": r.duration, "detections": r.to_list()}
                except MseRtError as exc:
                    for i in ok:
                        out[i] = {"error": str(exc)}
            return out  # type: ignore[return-value]

        async def __call__(self, request: Request):
            try:
                payload = await request.json()
            except Exception:  # noqa: BLE001
                return JSONResponse({"error": "request body is not JSON"}, status_code=400)
            try:
                item = decode_request(payload, self.det.cfg["model"]["input_dim"])
            except MseRtError as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            res = await self._detect(item)
            return JSONResponse(res, status_code=400 if "error" in res else 200)

    return MseRtEndpoint.bind()


def serve_detector(host: str = "127.0.0.1", port: int = 8000, route: str = "/detect", blocking: bool = False,
                   **app_kwargs):
    """Start the endpoint on ``host:port`` (loopback by default); returns the handle."""
    init_ray()
    from ray import serve

    serve.start(http_options={"host": host, "port": port}, detached=False)
    handle = serve.run(build_serve_app(**app_kwargs), route_prefix=route, name="mse_rt", blocking=blocking)
    return handle


def shutdown() -> None:
    """Stop Serve (if running) and Ray."""
    ray = _import_ray()
    try:
        from ray import serve

        serve.shutdown()
    except Exception:  # noqa: BLE001 - nothing to stop
        pass
    if ray.is_initialized():
        ray.shutdown()
