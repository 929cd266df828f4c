"""Live video: camera-to-event latency, streamed mAP, real-time sources per backbone variant, thread defaults.

    python benchmarks/video_latency.py --heldout DIR [--videos 3] [--variants eager-fp32 openvino-bf16]
        [--lags 4 8] [--hop 4] [--live-lags 4] [--tput-seconds 10] [--threads default torch] [--out video_report]

``DIR`` holds the pixel demo's held-out rendered videos (``videos/<id>.mp4``, ``annotations.json``;
``features/<id>.npy`` fp32 features are used for the offline reference when present, else made
here): ``mse_rt.apps.pixel_demo.render_heldout(DIR)`` renders them. The model is the pixel demo
(``--ckpt`` overrides the checkpoint).

1. **Streamed mAP per lag, feature level** (all held-out videos, no wall clock): offline pixel mAP
   (tIoU 0.3:0.7) vs the lagged streaming of the same fp32 features, and the report delay in video
   seconds (first final detection of the true class with tIoU >= 0.5, minus the true end). The
   video layer adds no error (tests/video/test_live.py), so this is the live stream's mAP whenever
   no clip is dropped.
2. **Live, wall clock** (per variant x ``--live-lags``, each run in its own process): ``--videos``
   held-out videos, one after another, each played as a live source paced at its frame rate
   (``realtime``) through :class:`mse_rt.video.live.VideoStreamPool`. Camera-to-event latency = wall
   time of the update that returns the first matching final detection (class, tIoU >= 0.5) minus
   the wall time at which the frame where the action ends entered the pipeline (first frame's
   wall time + end / fps). Start -> first in-progress: the first update whose in-progress events
   hold the true class overlapping the true segment, minus the wall time of the start frame.
   p50 / p95 over the true actions found; missed ones counted. Streamed mAP of those videos vs
   their offline mAP; clips dropped; the most the stream fell behind (video seconds).
3. **Real-time sources per variant**: one video's first ``--tput-seconds`` seconds pushed as fast
   as the pipeline takes them (``overflow="block"``): pipeline clips / s over the clips a source
   brings per second (fps / feat_stride).
4. **Thread defaults**: rows 2 and 3 with ``StageThreads`` defaults (``default``), with every
   stage on its library's default (``torch``: torch's intra-op count, OpenVINO's own, FFmpeg's),
   ``passive``: the defaults with ``OMP_WAIT_POLICY=PASSIVE`` in the child's environment; ``bb2``:
   two backbone threads, one TAD thread (``bb2-passive``: with ``OMP_WAIT_POLICY=PASSIVE``).
5. **Memory**: ``--memory-video-s`` of one video looped, pushed faster than real time
   (``overflow="drop"``): RSS every 5 s, clips dropped.

Note the load average with every number (the rows carry it): other processes share the CPU.
Writes OUT/video_latency.md, .json and video_mAP-vs-delay.png.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from harness import Report, add_out_argument, percentile, use_source_tree

VARIANTS = {"eager-fp32": ("eager", "fp32"), "openvino-fp32": ("openvino", "fp32"),
            "openvino-bf16": ("openvino", "bf16"), "openvino-int8": ("openvino", "int8")}


def load_avg() -> float:
    return round(os.getloadavg()[0], 2)


def _gt(root: Path) -> dict:
    return json.loads((root / "annotations.json").read_text())["database"]


def _first_final(truth, finals):
    """Wall time of the first update returning a final detection matching ``truth`` (class, tIoU >= 0.5)."""
    (s, e), c = truth
    for wall, seg, lab in finals:
        inter = max(0.0, min(e, seg[1]) - max(s, seg[0]))
        union = max(e, seg[1]) - min(s, seg[0])
        if lab == c and union > 0 and inter / union >= 0.5:
            return wall
    return None


def _first_progress(truth, progress):
    (s, e), c = truth
    for wall, seg, lab in progress:
        if lab == c and min(e, seg[1]) > max(s, seg[0]):
            return wall
    return None


# ------------------------------------------------------------------------------------------ jobs (child process)
def _setup(job):
    use_source_tree()
    from mse_rt.apps.pixel_demo import PIXEL_CONFIG, load_pixel_backbone
    from mse_rt.runtime import Detector
    from mse_rt.video.live import DEFAULT_THREADS, TORCH_DEFAULTS, StageThreads

    threads = {"torch": TORCH_DEFAULTS, "bb2": StageThreads(decode=1, backbone=2, tad=1),
               "bb2-passive": StageThreads(decode=1, backbone=2, tad=1)}.get(job["threads"], DEFAULT_THREADS)
    det = Detector.from_checkpoint(PIXEL_CONFIG, job["ckpt"], max_batch=8,
                                   allow_unverified=job.get("allow_unverified", False))
    backend, precision = VARIANTS[job["variant"]]
    opts = {}
    if backend != "eager":
        opts["threads"] = threads.backbone
    if precision == "int8":
        opts["calib"] = [str(p) for p in sorted((Path(job["heldout"]) / "videos").glob("*.mp4"))[-2:]]
    bb = load_pixel_backbone(det.cfg, backend=backend, precision=precision, **opts)
    return det, bb, threads


def job_live(job) -> dict:
    det, bb, threads = _setup(job)
    from mse_rt.eval import THUMOS_TIOUS, evaluate
    from mse_rt.video.live import VideoStreamPool

    root = Path(job["heldout"])
    gt = _gt(root)
    out = {"latency": [], "progress": [], "missed": 0, "dropped": 0, "clips": 0, "behind_max": 0.0, "load": []}
    results = []
    for vid in job["videos"]:
        pool = VideoStreamPool(det, bb, hop=job["hop"], lag=job["lag"], threads=threads, overflow="drop",
                               queue_clips=job["queue_clips"])
        pool.add(vid, str(root / "videos" / f"{vid}.mp4"), realtime=True)
        finals, progress = [], []
        for upd in pool.updates():
            for seg, lab in zip(upd.final.segments.tolist(), upd.final.labels.tolist()):
                finals.append((upd.wall_s, seg, lab))
            for seg, lab in zip(upd.in_progress.segments.tolist(), upd.in_progress.labels.tolist()):
                progress.append((upd.wall_s, seg, lab))
            st = pool.stats()[vid]
            out["behind_max"] = max(out["behind_max"], st["behind_s"])
        st = pool.stats()[vid]
        pool.close()
        out["dropped"] += st["dropped_clips"]
        out["clips"] += st["clips"]
        out["load"].append(load_avg())
        start = st["start_wall"]
        for a in gt[vid]["annotations"]:
            truth = (tuple(a["segment"]), a["label_id"])
            w = _first_final(truth, finals)
            if w is None:
                out["missed"] += 1
            else:
                out["latency"].append(w - (start + a["segment"][1]))
            w = _first_progress(truth, progress)
            if w is not None:
                out["progress"].append(w - (start + a["segment"][0]))
        results.append(pool.results(vid))
    sub = {"database": {v: gt[v] for v in job["videos"]}}
    out["map"] = 100.0 * evaluate(results, sub, THUMOS_TIOUS).average
    return out


def job_tput(job) -> dict:
    det, bb, threads = _setup(job)
    from mse_rt.video.live import VideoStreamPool
    from mse_rt.video.sources import open_source

    vid = job["videos"][0]
    pool = VideoStreamPool(det, bb, hop=job["hop"], lag=job["lag"], threads=threads, overflow="block",
                           queue_clips=job["queue_clips"])
    src = open_source(str(Path(job["heldout"]) / "videos" / f"{vid}.mp4"), fps=pool.spec.fps,
                      resize=pool.spec.decode_size, decoder_threads=threads.decode)
    frames = itertools.takewhile(lambda tf: tf[0] < job["seconds"], src)
    warm = np.zeros((1, *pool.spec.clip_shape), np.uint8)  # first calls (lazy init, compilation) not timed
    bb.features(warm)
    det.detect_candidates([np.zeros((det.cfg["model"]["max_seq_len"], det.cfg["dataset"]["input_dim"]), np.float32)])
    t0 = time.perf_counter()
    pool.add(vid, frames)
    for _ in pool.updates():
        pass
    wall = time.perf_counter() - t0
    st = pool.stats()[vid]
    pool.close()
    src.close()
    clips_per_s = st["clips"] / wall
    need = pool.spec.fps / pool.spec.stride
    return {"clips": st["clips"], "wall": wall, "clips_per_s": clips_per_s, "sources": clips_per_s / need,
            "load": load_avg()}


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def job_memory(job) -> dict:
    """An hour (``video_s``) of one video looped, pushed faster than real time (overflow drop): RSS over time."""
    import threading

    det, bb, threads = _setup(job)
    from mse_rt.video.live import VideoStreamPool
    from mse_rt.video.sources import open_source

    vid = job["videos"][0]
    pool = VideoStreamPool(det, bb, hop=job["hop"], lag=job["lag"], threads=threads, overflow="drop",
                           queue_clips=job["queue_clips"])
    fps = pool.spec.fps
    with open_source(str(Path(job["heldout"]) / "videos" / f"{vid}.mp4"), fps=fps,
                     resize=pool.spec.decode_size) as src:
        frames = [f for _, f in src]
    total = int(job["video_s"] * fps)
    looped = ((k / fps, frames[k % len(frames)]) for k in range(total))
    samples, stop = [], threading.Event()
    t0 = time.perf_counter()

    def sample():
        while not stop.wait(job["every_s"]):
            st = pool.stats().get("loop", {})
            samples.append((time.perf_counter() - t0, _rss_mb(), st.get("frames", 0) / fps, st.get("dropped_clips", 0)))

    w = threading.Thread(target=sample, daemon=True)
    pool.add("loop", looped)
    samples.append((0.0, _rss_mb(), 0.0, 0))
    w.start()
    n_final = sum(len(u.final) for u in pool.updates())
    stop.set()
    w.join()
    st = pool.stats()["loop"]
    pool.close()
    return {"samples": samples, "clips": st["clips"], "dropped": st["dropped_clips"], "steps": st["steps"],
            "finals": n_final, "wall": time.perf_counter() - t0, "load": load_avg(), "error": st["error"]}


def run_child(job: dict, timeout: float) -> dict:
    """One job in a fresh process (torch / OpenMP thread state is per process)."""
    cmd = [sys.executable, __file__, "--job", json.dumps(job)]
    env = dict(os.environ)
    if job["threads"].endswith("passive"):  # idle OpenMP threads sleep instead of spinning (read at torch import)
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
    if p.returncode or not line:
        return {"error": (p.stderr or p.stdout)[-800:]}
    return json.loads(line[-1][len("RESULT "):])


# ------------------------------------------------------------------------------------------ parent
def offline_map(root: Path, ckpt: str, vids: list[str], allow_unverified: bool = False) -> float:
    """Offline mAP (tIoU 0.3:0.7, %) of ``vids`` from their fp32 features (``root/features``)."""
    import torch

    from mse_rt.apps.pixel_demo import PIXEL_CONFIG
    from mse_rt.eval import THUMOS_TIOUS, evaluate
    from mse_rt.runtime import Detector

    torch.set_num_threads(1)
    det = Detector.from_checkpoint(PIXEL_CONFIG, ckpt, allow_unverified=allow_unverified)
    gt = _gt(root)
    res = [det.detect(np.load(root / "features" / f"{v}.npy"), fps=float(gt[v]["fps"]), duration=gt[v]["duration"],
                      video_id=v) for v in vids]
    return 100.0 * evaluate(res, {"database": {v: gt[v] for v in vids}}, THUMOS_TIOUS).average


def feature_level(report, root: Path, ckpt: str, lags, hop, allow_unverified) -> list[tuple[int, float, float]]:
    use_source_tree()
    import torch

    from mse_rt.apps.pixel_demo import PIXEL_CONFIG
    from mse_rt.eval import THUMOS_TIOUS, evaluate
    from mse_rt.runtime import Detector
    from mse_rt.streaming import StreamingDetector

    torch.set_num_threads(1)
    det = Detector.from_checkpoint(PIXEL_CONFIG, ckpt, allow_unverified=allow_unverified)
    gt = _gt(root)
    feats = {v: np.load(root / "features" / f"{v}.npy") for v in sorted(gt)}
    fps = float(det.cfg["dataset"]["default_fps"])
    d = det.cfg["dataset"]
    off = [det.detect(x, fps=fps, duration=gt[v]["duration"], video_id=v) for v, x in feats.items()]
    m_off = 100.0 * evaluate(off, {"database": gt}, THUMOS_TIOUS).average
    t = report.table(f"Streamed mAP per lag, feature level ({len(feats)} held-out videos, fp32 features, hop {hop})",
                     ["lag (steps)", "lag (s)", "offline mAP", "streamed mAP", "delta", "delay p50 (video s)",
                      "delay p95", "missed"], formats={"lag (s)": ".2f", "offline mAP": ".2f", "streamed mAP": ".2f",
                                                       "delta": "+.2f", "delay p50 (video s)": ".2f", "delay p95": ".2f"})
    rows = []
    for lag in lags:
        res, delays, missed = [], [], 0
        for v, x in feats.items():
            s = StreamingDetector(det, hop=hop, lag=lag, fps=fps, video_id=v)
            finals = []
            for i in range(0, len(x), hop):
                r = s.push(x[i:i + hop])
                now = (min(i + hop, len(x)) * d["feat_stride"] + d["num_frames"]) / fps
                finals += [(now, seg, lab) for seg, lab in zip(r.segments.tolist(), r.labels.tolist())]
                res.append(r)
            r = s.flush()
            now = (len(x) * d["feat_stride"] + d["num_frames"]) / fps
            finals += [(now, seg, lab) for seg, lab in zip(r.segments.tolist(), r.labels.tolist())]
            res.append(r)
            for a in gt[v]["annotations"]:
                w = _first_final((tuple(a["segment"]), a["label_id"]), finals)
                if w is None:
                    missed += 1
                else:
                    delays.append(w - a["segment"][1])
        m = 100.0 * evaluate(res, {"database": gt}, THUMOS_TIOUS).average
        p50, p95 = percentile(delays, 50), percentile(delays, 95)
        t.add(lag, lag * d["feat_stride"] / fps, m_off, m, m - m_off, p50, p95, missed)
        rows.append((lag, m, p50))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--job", help=argparse.SUPPRESS)
    ap.add_argument("--heldout", type=Path)
    ap.add_argument("--ckpt", default=None, help="TAD checkpoint (default: the shipped pixel demo)")
    ap.add_argument("--allow-unverified", action="store_true")
    ap.add_argument("--videos", type=int, default=3)
    ap.add_argument("--variants", nargs="+", default=["eager-fp32", "openvino-bf16"], choices=sorted(VARIANTS))
    ap.add_argument("--lags", type=int, nargs="+", default=[0, 2, 4, 8, 16])
    ap.add_argument("--live-lags", type=int, nargs="+", default=[4])
    ap.add_argument("--hop", type=int, default=4)
    ap.add_argument("--queue-clips", type=int, default=16)
    ap.add_argument("--tput-seconds", type=float, default=20.0)
    ap.add_argument("--threads", nargs="+", default=["default", "torch"],
                    choices=("default", "torch", "passive", "bb2", "bb2-passive"))
    ap.add_argument("--memory-video-s", type=float, default=3600.0, help="video seconds of the looped memory run")
    ap.add_argument("--skip", nargs="*", default=[], choices=("feature", "live", "tput", "memory"))
    add_out_argument(ap)
    args = ap.parse_args()
    if args.job:
        job = json.loads(args.job)
        fn = {"live": job_live, "tput": job_tput, "memory": job_memory}[job["mode"]]
        print("RESULT " + json.dumps(fn(job)), flush=True)
        return
    use_source_tree()
    from mse_rt.apps.pixel_demo import PIXEL_CKPT

    ckpt = args.ckpt or str(PIXEL_CKPT)
    root = args.heldout
    vids = sorted(_gt(root))[:args.videos]
    report = Report("video_latency", args.out, title="Live video: camera-to-event latency, streamed mAP, sources")
    report.data["args"] = {k: str(v) for k, v in vars(args).items()}
    report.note(f"Held-out videos {root}; checkpoint {ckpt}; live videos {vids}; load average at start {load_avg()}.")
    feat_rows = [] if "feature" in args.skip else feature_level(report, root, ckpt, args.lags, args.hop,
                                                               args.allow_unverified)
    base = {"heldout": str(root), "ckpt": ckpt, "hop": args.hop, "queue_clips": args.queue_clips,
            "allow_unverified": args.allow_unverified}
    live_pts = []
    if "live" not in args.skip:
        report.note(f"Offline pixel mAP of the live videos (fp32 features): {offline_map(root, ckpt, vids):.2f}.")
        t = report.table(f"Live at real-time pace ({len(vids)} videos one after another, hop {args.hop})",
                         ["variant", "threads", "lag", "latency p50 (s)", "p95", "min", "start->in-progress p50",
                          "missed", "dropped clips", "behind max (s)", "streamed mAP", "load"],
                         formats={"latency p50 (s)": ".2f", "p95": ".2f", "min": ".2f",
                                  "start->in-progress p50": ".2f", "behind max (s)": ".2f", "streamed mAP": ".2f"})
        for variant, threads, lag in itertools.product(args.variants, args.threads, args.live_lags):
            r = run_child({**base, "mode": "live", "variant": variant, "threads": threads, "lag": lag,
                           "videos": vids}, timeout=3600)
            report.data.setdefault("live", []).append({"variant": variant, "threads": threads, "lag": lag, **r})
            if "error" in r:
                report.note(f"live {variant} {threads} lag {lag}: failed: {r['error']}")
                continue
            lat = r["latency"]
            t.add(variant, threads, lag, percentile(lat, 50) if lat else float("nan"),
                  percentile(lat, 95) if lat else float("nan"), min(lat) if lat else float("nan"),
                  percentile(r["progress"], 50) if r["progress"] else float("nan"), r["missed"],
                  f"{r['dropped']}/{r['clips']}", r["behind_max"], r["map"], max(r["load"]))
            if lat:
                live_pts.append((f"{variant} {threads} lag {lag}", r["map"], percentile(lat, 50)))
    if "tput" not in args.skip:
        t = report.table(f"Real-time sources: pipeline throughput on {args.tput_seconds:g} s of {vids[0]} "
                         "(as fast as it goes, all stages concurrent)",
                         ["variant", "threads", "clips", "wall (s)", "clips/s", "real-time sources", "load"],
                         formats={"wall (s)": ".1f", "clips/s": ".2f", "real-time sources": ".2f"})
        for variant, threads in itertools.product(args.variants, args.threads):
            r = run_child({**base, "mode": "tput", "variant": variant, "threads": threads, "lag": args.live_lags[0],
                           "videos": vids[:1], "seconds": args.tput_seconds}, timeout=3600)
            report.data.setdefault("tput", []).append({"variant": variant, "threads": threads, **r})
            if "error" in r:
                report.note(f"throughput {variant} {threads}: failed: {r['error']}")
                continue
            t.add(variant, threads, r["clips"], r["wall"], r["clips_per_s"], r["sources"], r["load"])
    if "memory" not in args.skip:
        variant = args.variants[-1]
        r = run_child({**base, "mode": "memory", "variant": variant, "threads": "default", "lag": args.live_lags[0],
                       "videos": vids[:1], "video_s": args.memory_video_s, "every_s": 5.0}, timeout=3600)
        report.data["memory"] = r
        if "error" in r and "samples" not in r:
            report.note(f"memory run failed: {r['error']}")
        else:
            t = report.table(f"Memory: {args.memory_video_s:g} s of {vids[0]} looped, faster than real time "
                             f"({variant}, overflow drop)", ["wall (s)", "RSS (MiB)", "video (s)", "dropped clips"],
                             formats={"wall (s)": ".0f", "RSS (MiB)": ".1f", "video (s)": ".0f"})
            sm = r["samples"]
            for row in sm[::max(1, len(sm) // 12)] + sm[-1:]:
                t.add(*row)
            report.note(f"Memory run: {r['clips']} clips cut, {r['dropped']} dropped, {r['steps']} TAD steps, "
                        f"{r['finals']} final detections, {r['wall']:.0f} s wall, error {r['error']}, load {r['load']}.")
    report.write()
    if args.out and (feat_rows or live_pts):
        plot(Path(args.out) / "video_mAP-vs-delay.png", feat_rows, live_pts)


def plot(path: Path, feat_rows, live_pts) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    if feat_rows:
        ax.plot([r[2] for r in feat_rows], [r[1] for r in feat_rows], "o-", label="feature level, per lag (video s)")
        for lag, m, x in feat_rows:
            ax.annotate(f"lag {lag}", (x, m), textcoords="offset points", xytext=(4, -10), fontsize=8)
    for name, m, x in live_pts:
        ax.plot([x], [m], "s", label=f"live: {name} (wall s)")
    ax.set_xlabel("median delay after the true action end (s)")
    ax.set_ylabel("mAP (tIoU 0.3:0.7), %")
    ax.set_title("Pixel demo, live: accuracy vs delay")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    from mse_rt.io.files import atomic_output

    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
