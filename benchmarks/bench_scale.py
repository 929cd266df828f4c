"""Scale-out throughput on this machine: plain loop, detect_batch, Ray Data (1 and 2 actors), Ray Serve.

    python benchmarks/bench_scale.py [--videos 200] [--out scale_report]
    (as root it re-runs itself inside a private network namespace: unshare --net, loopback up)

Corpus: synthetic videos (mse_rt.apps.synth, seed 5, demo sizes), the bundled demo model, eager
backend, 1 torch thread per worker. Reported: videos/s of one process calling ``detect`` per
video, of ``detect_batch`` (batches of 8), of the Ray Data job with 1 and 2 actors (start-up of
the local cluster excluded, reported apart), and requests/s with p50 / p95 latency of the Serve
endpoint at 1 and 4 concurrent clients (each request one video, base64 .npy). On a 2-core box
two actors cannot beat one process by much: the point is the numbers, not the gain. Writes
OUT/scale.md / .json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from harness import Report, add_out_argument, percentile, use_source_tree


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=200)
    add_out_argument(ap, default="scale_report")
    ap.add_argument("--in-netns", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if os.geteuid() == 0 and not args.in_netns and shutil.which("unshare"):
        cmd = " ".join([sys.executable, *sys.argv, "--in-netns"])
        return subprocess.call(["unshare", "--net", "bash", "-c", f"ip link set lo up && exec {cmd}"])
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    use_source_tree()
    import torch

    import mse_rt
    from mse_rt.apps.demo import DEMO_CKPT, DEMO_CONFIG
    from mse_rt.apps.synth import write_dataset
    from mse_rt.serving.ray_cluster import init_ray, shutdown
    from mse_rt.serving.ray_job import detect_corpus_ray
    from mse_rt.serving.ray_serve import encode_npy_b64, serve_detector

    torch.set_num_threads(1)
    report = Report("scale", args.out,
                    title=f"Scale-out on this machine ({os.cpu_count()} cores), {args.videos} synthetic videos, demo model")
    table = report.table("Throughput per path", ["path", "videos (requests) / s", "notes"],
                         formats={"videos (requests) / s": ".1f"})  # rows written as they come: a kill keeps them
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        feats_dir = write_dataset(tmp / "c", args.videos, seed=5, subset="test") / "features"
        files = sorted(feats_dir.glob("*.npy"))
        feats = [np.load(f) for f in files]
        det = mse_rt.Detector.from_checkpoint(DEMO_CONFIG, DEMO_CKPT)
        t0 = time.perf_counter()
        for x in feats:
            det.detect(x, fps=30.0)
        table.add("plain loop, detect() per video", args.videos / (time.perf_counter() - t0), "")
        t0 = time.perf_counter()
        for i in range(0, len(feats), 8):
            det.detect_batch(feats[i:i + 8], fps=30.0)
        table.add("detect_batch, 8 per call", args.videos / (time.perf_counter() - t0), "")
        t0 = time.perf_counter()
        init_ray(num_cpus=2)
        startup = time.perf_counter() - t0
        for actors in (1, 2):
            r = detect_corpus_ray([feats_dir], tmp / f"ray{actors}.json", config=DEMO_CONFIG, ckpt=DEMO_CKPT,
                                  num_actors=actors, batch_size=8)
            table.add(f"Ray Data, {actors} actor(s)", args.videos / r["seconds"],
                      f"cluster start {startup:.1f} s not included; actor start-up included")
        port = 18432
        serve_detector(port=port, config=str(DEMO_CONFIG), ckpt=str(DEMO_CKPT), max_batch=8)
        url = f"http://127.0.0.1:{port}/detect"
        bodies = [json.dumps({"video_id": f.stem, "fps": 30.0, "features_npy_b64": encode_npy_b64(x)}).encode()
                  for f, x in zip(files, feats)]

        def post(body):
            t = time.perf_counter()
            req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=60) as resp:
                resp.read()
            return time.perf_counter() - t

        post(bodies[0])  # warm-up
        for clients in (1, 4):
            t0 = time.perf_counter()
            with ThreadPoolExecutor(clients) as pool:
                lat = list(pool.map(post, bodies))
            wall = time.perf_counter() - t0
            table.add(f"Ray Serve, {clients} concurrent client(s)", len(bodies) / wall,
                      f"p50 {percentile(lat, 50) * 1e3:.0f} ms, p95 {percentile(lat, 95) * 1e3:.0f} ms")
        shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
