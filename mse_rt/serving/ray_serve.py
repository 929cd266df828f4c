"""Ray Serve endpoint (:func:`serve_detector`): POST JSON ``{"video_id": str, "fps": float,
"features": [[...], ...]}`` (T rows of C numbers) or ``"features_npy_b64"`` (a base64 .npy of a
(T, C) array), optionally ``"duration"`` (seconds), to ``http://127.0.0.1:PORT/detect``; the answer
is ``{"video_id", "duration", "detections": [{"segment": [s, e], "score", "label"}]}``.

Each request is validated on its own (features, fps, duration: the Detector's checks) before
requests are gathered by ``@serve.batch`` and run through one ``detect_batch``; should a batch
still fail, its requests are run again one at a time, so a bad request fails alone. Errors come
back as HTTP 400 with ``{"error": ...}``. :func:`serve_detector` builds the Detector once in the
calling process before Ray starts, so a missing or damaged model file, a bad config or a bad port
is a one-line error there rather than a replica's traceback.
"""

from __future__ import annotations

import base64
import io
import json
import math
import socket

import numpy as np

from ..errors import BackendError, InputError, MseRtError
from .ray_cluster import init_ray


# ---------------------------------------------------------------------------------------------- Serve
def decode_request(payload: dict, c_in: int) -> tuple[np.ndarray, float | None, str]:
    """(features (T, C), fps, video id) of a request body; :class:`InputError` otherwise (the
    values are checked by :func:`check_request`)."""
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


def check_request(det, feats, fps, duration, vid: str) -> tuple:
    """One request's (features (C, T) float32 tensor, fps, duration or None), checked as
    ``detect_batch`` checks them; :class:`InputError` naming the video otherwise."""
    from ..pipeline.inputs import check_duration, check_features, check_fps

    name = f"video {vid!r}"
    x = check_features(feats, det.cfg, name=name)
    d = det.cfg["dataset"]
    if fps is None:
        fps = d["default_fps"]
        if fps is None:
            raise InputError(f"{name}: fps is required (the model's config has no default_fps)")
    fps = check_fps(fps, f"{name}: fps")
    if duration is not None:
        duration = check_duration(duration, x.shape[1], fps, d, name)
    return x, fps, duration


def answer(result, video_id: str) -> dict:
    """The JSON answer for one DetectionResult; :class:`InputError` if a value is not finite
    (NaN / Infinity are not JSON: the response would fail as a server error)."""
    body = {"video_id": video_id, "duration": float(result.duration), "detections": result.to_list()}
    if not math.isfinite(body["duration"]) or not all(
            math.isfinite(v) for e in body["detections"] for v in (*e["segment"], e["score"])):
        raise InputError(f"video {video_id!r}: non-finite results (check fps and duration)")
    return body


def detect_requests(det, items: list[tuple]) -> list[dict]:
    """Answers for ``items`` = [(features, fps, video id, duration)], in order: each request is
    checked alone (:func:`check_request`), the valid ones run as one ``detect_batch``; if that
    batch fails, they run again one at a time so that only the failing request gets an error."""
    out: list[dict | None] = [None] * len(items)
    ok: list[int] = []
    checked: dict[int, tuple] = {}
    for i, (feats, fps, vid, duration) in enumerate(items):
        try:
            checked[i] = check_request(det, feats, fps, duration, vid)
            ok.append(i)
        except MseRtError as exc:
            out[i] = {"error": str(exc)}

    def run(idx: list[int]) -> list[dict]:
        # ids are request positions: clients may send the same video_id twice in one batch
        rs = det.detect_batch([checked[i][0].T for i in idx], fps=[checked[i][1] for i in idx],
                              durations=[checked[i][2] for i in idx], video_ids=[str(i) for i in idx])
        return [answer(r, items[i][2]) for i, r in zip(idx, rs)]

    if ok:
        try:
            for i, a in zip(ok, run(ok)):
                out[i] = a
        except Exception:  # noqa: BLE001 - any failure: isolate the request that caused it
            for i in ok:
                try:
                    out[i] = run([i])[0]
                except MseRtError as exc:
                    out[i] = {"error": str(exc)}
                except Exception as exc:  # noqa: BLE001 - an unexpected failure of this request only
                    out[i] = {"error": f"video {items[i][2]!r}: detection failed: {type(exc).__name__}: {exc}",
                              "status": 500}
    return out  # type: ignore[return-value]


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


def load_detector(config=None, ckpt=None, model_file=None, backend: str = "eager", device: str = "cpu",
                  max_batch: int = 8, allow_unverified: bool = False):
    """The endpoint's Detector: ``model_file`` (.onnx, ...) or ``config`` + ``ckpt``;
    ``allow_unverified`` accepts a model file without a checksum / a legacy checkpoint."""
    from ..runtime import Detector

    if model_file:
        return Detector.from_file(model_file, max_batch=max_batch,
                                  **({"allow_unverified": True} if allow_unverified else {}))
    if not (config and ckpt):
        raise InputError("the endpoint needs config and ckpt, or model_file")
    return Detector.from_checkpoint(config, ckpt, backend=backend, device=device, max_batch=max_batch,
                                    allow_unverified=allow_unverified)


def build_serve_app(config=None, ckpt=None, model_file=None, backend: str = "eager", device: str = "cpu",
                    replicas: int = 1, max_batch: int = 8, batch_wait_s: float = 0.01, threads: int = 1,
                    allow_unverified: bool = False):
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

            torch.set_num_threads(threads)
            self.det = load_detector(config, ckpt, model_file, backend, device, max_batch, allow_unverified)

        @serve.batch(max_batch_size=max_batch, batch_wait_timeout_s=batch_wait_s)
        async def _detect(self, items: list[tuple]) -> list[dict]:
            return detect_requests(self.det, items)

        async def __call__(self, request: Request):
            try:
                payload = await request.json()
            except Exception:  # noqa: BLE001
                return JSONResponse({"error": "request body is not JSON"}, status_code=400)
            try:
                feats, fps, vid = decode_request(payload, self.det.cfg["model"]["input_dim"])
            except MseRtError as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            res = await self._detect((feats, fps, vid, payload.get("duration")))
            if "error" in res:
                return JSONResponse({"error": res["error"]}, status_code=res.get("status", 400))
            return JSONResponse(res, status_code=200)

    return MseRtEndpoint.bind()


def check_port_free(host: str, port: int) -> None:
    """:class:`InputError` unless ``port`` is a TCP port number that can be bound on ``host`` now."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise InputError(f"port must be an integer in [1, 65535], got {port!r}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise InputError(f"cannot listen on host {host!r}: {exc}") from exc
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(addr)
        except OSError as exc:
            raise InputError(f"cannot listen on {host}:{port}: {exc.strerror or exc} (another server there? choose "
                             "another --port)") from exc


def serve_detector(host: str = "127.0.0.1", port: int = 8000, route: str = "/detect", blocking: bool = False,
                   check_model: bool = True, **app_kwargs):
    """Start the endpoint on ``host:port`` (loopback by default); returns the handle.

    Before Ray starts, the port is checked and (``check_model``) the Detector is built once here
    from ``app_kwargs`` (config / ckpt / model_file / backend / device / max_batch /
    allow_unverified), so bad model files, configs and ports fail with a one-line typed error.
    """
    check_port_free(host, port)
    if check_model:
        keys = ("config", "ckpt", "model_file", "backend", "device", "max_batch", "allow_unverified")
        load_detector(**{k: app_kwargs[k] for k in keys if k in app_kwargs})
    init_ray()
    from ray import serve

    try:
        serve.start(http_options={"host": host, "port": port}, detached=False)
        return serve.run(build_serve_app(**app_kwargs), route_prefix=route, name="mse_rt", blocking=blocking)
    except MseRtError:
        raise
    except Exception as exc:  # noqa: BLE001 - Ray's errors carry a replica's whole traceback
        lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
        raise BackendError(f"the endpoint did not start: {type(exc).__name__}: {lines[-1] if lines else ''}") from exc
