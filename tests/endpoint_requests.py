"""The HTTP endpoint's request set (good and bad requests at once), shared by
tests/serving/test_endpoint.py (which checks the answers) and tests/serving/scale_scenario.py
(which sends them to a real endpoint on the Ray cluster it started)."""

from __future__ import annotations

import json

import numpy as np


def video(seed: int, t: int = 40) -> np.ndarray:
    """(t, 64) float32 random features: a video for the golden thumos_small model."""
    return np.random.default_rng(seed).standard_normal((t, 64)).astype(np.float32)


def bad_requests() -> list[tuple]:
    """(features, fps, video id, duration) of bad requests, each with what its error must say."""
    huge = video(11)
    huge[3, 2] = 3e38
    nan = video(12)
    nan[5, 1] = np.nan
    return [
        ((video(10), 1e-40, "tiny_fps", None), "fps must lie in [0.001, 10000]"),
        ((huge, 30.0, "huge", None), "feature values out of range"),
        ((nan, 30.0, "nan", None), "NaN or Inf"),
        ((np.zeros((20, 7), np.float32), 30.0, "channels", None), "expected 64 feature channels"),
        ((video(13), 30.0, "short", 0.5), "far shorter than its features"),
        ((video(14), "fast", "text_fps", None), "must be a number"),
    ]


def send_requests(port: int, config: str, ckpt: str) -> dict:
    """Start the endpoint on ``port`` (on the running Ray, or a new local one), send the good and
    bad requests at once; the answers ``{video_id: [status, body]}``. Serve is left running."""
    import urllib.error
    import urllib.request
    from concurrent.futures import ThreadPoolExecutor

    from mse_rt.serving.ray_serve import encode_npy_b64, serve_detector

    serve_detector(port=port, config=config, ckpt=ckpt, max_batch=16, batch_wait_s=0.5)
    url = f"http://127.0.0.1:{port}/detect"
    reqs = [{"video_id": f"good{i}", "fps": 30.0, "features_npy_b64": encode_npy_b64(video(i))} for i in range(6)]
    for (feats, fps, vid, duration), _ in bad_requests():
        body = {"video_id": vid, "fps": fps, "features_npy_b64": encode_npy_b64(np.asarray(feats, np.float32))}
        if duration is not None:
            body["duration"] = duration
        reqs.append(body)

    def post(body):
        r = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(r, timeout=120) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    with ThreadPoolExecutor(len(reqs)) as pool:  # bounded: one request each
        answers = list(pool.map(post, reqs))
    return {b["video_id"]: a for b, a in zip(reqs, answers)}
