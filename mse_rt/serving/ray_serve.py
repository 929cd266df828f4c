"""Ray Serve endpoint (:func:`serve_detector`): POST JSON ``{"video_id": str, "fps": float,
"features": [[...], ...]}`` (T rows of C numbers) or ``"features_npy_b64"`` (a base64 .npy of a
(T, C) array) to ``http://127.0.0.1:PORT/detect``; the answer is
``{"video_id", "duration", "detections": [{"segment": [s, e], "score", "label"}]}``. Requests
are gathered by ``@serve.batch`` and run through one ``detect_batch``; errors come back as HTTP 400
with ``{"error": ...}``.
"""

from __future__ import annotations

import base64
import io
import json

import numpy as np

from ..errors import BackendError, InputError, MseRtError
from .ray_cluster import init_ray


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

            from ..runtime import Detector

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
                    from ..pipeline.inputs import check_features, positive_number

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
