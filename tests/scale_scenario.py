"""Ray scenario for tests/test_scale.py, run in its own process (inside a private network
namespace when the tests run as root): a corpus through the plain CLI, the Ray Data job (with a
resume and a bad file) and the Serve endpoint; prints one JSON summary line.

    python tests/scale_scenario.py WORKDIR N_VIDEOS
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np


def main(work: Path, n: int) -> dict:
    from mse_rt.cli import main as cli
    from mse_rt.data import write_dataset
    from mse_rt.demo import DEMO_CKPT, DEMO_CONFIG
    from mse_rt.scale import detect_corpus_ray, encode_npy_b64, serve_detector, shutdown

    data = write_dataset(work / "corpus", n, seed=5, subset="test")
    feats = data / "features"
    out = {}
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
                          batch_size=8)
    out["ray"] = {k: r[k] for k in ("done", "skipped", "seconds")}
    out["ray_failed"] = r["failed"]
    r2 = detect_corpus_ray([feats], work / "ray.json", config=DEMO_CONFIG, ckpt=DEMO_CKPT, num_actors=2)
    out["ray_rerun"] = {k: r2[k] for k in ("done", "skipped")}
    port = 18431
    serve_detector(port=port, config=str(DEMO_CONFIG), ckpt=str(DEMO_CKPT), max_batch=8)
    url = f"http://127.0.0.1:{port}/detect"

    def post(path):
        body = json.dumps({"video_id": path.stem, "fps": 30.0, "features_npy_b64": encode_npy_b64(np.load(path))})
        req = urllib.request.Request(url, data=body.encode(), headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            return json.loads(resp.read())

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
    shutdown()
    (work / "serve.json").write_text(json.dumps({"results": serve_results}))
    return out


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), int(sys.argv[2]))), flush=True)
