"""The Ray scenario of tests/serving (``ray_scenario`` in its conftest.py), run in its own process
(inside a private network namespace when the tests run as root): a corpus through the plain CLI,
the Ray Data job (with a resume, a bad file and dying workers), the Serve endpoint; then on the
same Ray cluster the demo's saved OpenVINO int8 IR (a Ray job with 2 actors and a Serve endpoint,
no calibration data given) and the good-and-bad request set of tests/serving/test_endpoint.py.
Prints one JSON summary line. One Ray start for all of it: a start costs tens of seconds.

    python tests/serving/scale_scenario.py WORKDIR N_VIDEOS
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: golden_utils, endpoint_requests


class CrashingDetector:
    """A Detector whose process dies on the video "poison" (always) and "flaky" (the first time)."""

    def __init__(self, config: str, ckpt: str, marker: str) -> None:
        from mse_rt import Detector

        self.det = Detector.from_checkpoint(config, ckpt)
        self.cfg = self.det.cfg
        self.marker = marker

    def detect_batch(self, feats, fps=None, video_ids=None):
        if "poison" in video_ids:
            os._exit(3)
        if "flaky" in video_ids and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os._exit(3)
        return self.det.detect_batch(feats, fps=fps, video_ids=video_ids)


def one_padded_length(files: list[Path], n: int) -> list[Path]:
    """Up to ``n`` of ``files`` that pad to the same length: each int8 worker compiles once (~2 s a length)."""
    from collections import defaultdict

    from mse_rt import load_config
    from mse_rt.apps.demo import DEMO_CONFIG
    from mse_rt.pipeline.padding import pad_policy_length

    cfg, groups = load_config(DEMO_CONFIG), defaultdict(list)
    for f in files:
        groups[pad_policy_length(np.load(f, mmap_mode="r").shape[0], cfg)].append(f)
    return max(groups.values(), key=len)[:n]


def saved_int8_ir(work: Path, files: list[Path]) -> dict | None:
    """The demo's shipped int8 IR through a Ray job (2 actors) and a Serve endpoint on the running
    cluster: what each returned, and what a worker that loaded the file imported (None when this
    CPU cannot run OpenVINO int8)."""
    import ray
    from ray import serve

    import mse_rt
    from mse_rt.apps.demo import DEMO_INT8
    from mse_rt.runtime.backends.openvino.loader import int8_support
    from mse_rt.serving.ray_job import detect_corpus_ray
    from mse_rt.serving.ray_serve import request_detection, serve_detector

    if not int8_support()[0]:
        return None
    xml = str(DEMO_INT8["openvino-int8"])
    sub = work / "ir_feats"
    sub.mkdir()
    for f in files:
        (sub / f.name).write_bytes(f.read_bytes())
    r = detect_corpus_ray([sub], work / "ray_ir.json", model_file=xml, num_actors=2, batch_size=2)
    out = {"ray": {"done": r["done"], "failed": r["failed"]}}

    @ray.remote
    def probe(path):
        det = mse_rt.Detector.from_file(path)
        return {"nncf_imported": "nncf" in sys.modules, "calibrated_here": det.backend.calibrated_here,
                "source": det.backend.source}

    out["worker"] = ray.get(probe.remote(xml))
    serve.shutdown()  # the checkpoint's endpoint; Ray stays up
    serve_detector(port=18432, model_file=xml, max_batch=4)
    out["serve"] = {f.stem: request_detection("http://127.0.0.1:18432/detect", np.load(f), fps=30.0,
                                              video_id=f.stem)["detections"] for f in files}
    out["files"] = [str(f) for f in files]
    return out


def main(work: Path, n: int) -> dict:
    from endpoint_requests import send_requests
    from ray import serve

    from mse_rt import BackendError, InputError
    from mse_rt.apps.demo import DEMO_CKPT, DEMO_CONFIG
    from mse_rt.apps.synth import write_dataset
    from mse_rt.cli import main as cli
    from mse_rt.serving.ray_cluster import shutdown
    from mse_rt.serving.ray_job import detect_corpus_ray
    from mse_rt.serving.ray_serve import request_detection, serve_detector

    from golden_utils import GOLDEN

    data = write_dataset(work / "corpus", n, seed=5, subset="test")
    feats = data / "features"
    out = {"n_videos": n}
    t0 = time.perf_counter()
    assert cli(["detect", "--config", str(DEMO_CONFIG), "--ckpt", str(DEMO_CKPT), "-q", "-o", str(work / "plain.json"),
                str(feats)]) == 0
    out["plain_s"] = time.perf_counter() - t0
    bad = work / "bad"
    bad.mkdir()
    x = np.load(next(feats.glob("*.npy")))
    x[3, 2] = np.nan
    np.save(bad / "broken.npy", x)
    r = detect_corpus_ray([feats, bad], work / "ray.json", config=DEMO_CONFIG, ckpt=DEMO_CKPT, num_actors=2,
                          batch_size=4)
    out["ray"] = {k: r[k] for k in ("done", "skipped", "seconds")}
    out["ray_failed"] = r["failed"]
    r2 = detect_corpus_ray([feats], work / "ray.json", config=DEMO_CONFIG, ckpt=DEMO_CKPT, num_actors=2)
    out["ray_rerun"] = {k: r2[k] for k in ("done", "skipped")}
    # dead workers: "poison" kills its worker every time, "flaky" once; 6 good videos beside them
    crash = work / "crash"
    crash.mkdir()
    good = sorted(feats.glob("*.npy"))[:6]
    for f in good:
        (crash / f.name).write_bytes(f.read_bytes())
    (crash / "poison.npy").write_bytes(good[0].read_bytes())
    (crash / "flaky.npy").write_bytes(good[1].read_bytes())
    factory = functools.partial(CrashingDetector, str(DEMO_CONFIG), str(DEMO_CKPT), str(work / "flaky.marker"))
    t0 = time.perf_counter()
    r3 = detect_corpus_ray([crash], work / "crash.json", detector_factory=factory, num_actors=2, batch_size=4,
                           actor_retries=1)
    out["crash"] = {"done": r3["done"], "failed": r3["failed"], "seconds": time.perf_counter() - t0,
                    "flaky_of": good[1].stem}
    port = 18431
    serve_detector(port=port, config=str(DEMO_CONFIG), ckpt=str(DEMO_CKPT), max_batch=8)
    url = f"http://127.0.0.1:{port}/detect"

    def post(path):
        return request_detection(url, np.load(path), fps=30.0, video_id=path.stem)

    files = sorted(feats.glob("*.npy"))
    t0 = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:  # bounded: one request per file, 4 at a time
        answers = list(pool.map(post, files))
    out["serve_s"] = time.perf_counter() - t0
    serve_results = {a["video_id"]: a["detections"] for a in answers}
    bad_req = urllib.request.Request(url, data=b'{"features": [[1, 2]], "fps": 30}',
                                     headers={"Content-Type": "application/json"})
    try:
        urllib.request.urlopen(bad_req, timeout=60)
        out["bad_request"] = "accepted"
    except urllib.error.HTTPError as exc:
        out["bad_request"] = f"{exc.code}: {json.loads(exc.read())['error']}"
    try:  # the client's error for a refused request (wrong feature dim)
        request_detection(url, np.zeros((10, 3), np.float32), fps=30.0)
    except InputError as exc:
        out["client_bad_request"] = str(exc)
    out["saved_ir"] = saved_int8_ir(work, one_padded_length(sorted(feats.glob("*.npy")), 6))
    serve.shutdown()  # the IR's endpoint; Ray stays up
    golden = GOLDEN / "thumos_small"
    out["endpoint"] = send_requests(18433, str(golden / "config.yaml"), str(golden / "ckpt.pth.tar"))
    shutdown()
    try:  # server down
        request_detection(url, np.load(files[0]), fps=30.0, timeout=5)
        out["server_down"] = "answered"
    except BackendError as exc:
        out["server_down"] = str(exc)
    (work / "serve.json").write_text(json.dumps({"results": serve_results}))
    return out


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), int(sys.argv[2]))), flush=True)
