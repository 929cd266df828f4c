# ruff: noqa: B023  (timing lambdas are called at once, inside their loop iteration)
"""Low-latency streaming: accuracy vs report delay per lag, and how many live streams fit.

    python benchmarks/stream_latency.py [--videos 8] [--lags 0 2 4 8 16 32 64] [--hop 4] [--out stream_report]

Accuracy: long synthetic streams (``mse_rt.apps.synth``, seed 31, 600-1024 steps by default: the demo
config's point buffer caps an offline run at 1024 steps = max_seq_len x max_buffer_len_factor, and
the streams are compared with offline; the demo model trained on seed 1) are played through ``StreamPool`` (all streams
batched) in chunks of ``hop`` steps, for every lag and for today's windowed mode (hop 128). Each
final detection is stamped with the push that returned it. Reported: mAP (tIoU 0.3:0.7) of the
streamed detections vs the offline detections of the same videos, and the report delay: for
each true action, the first final detection of its class with tIoU >= 0.5, delay = video time
covered when it was returned - the action's true end (seconds of video; median and p95).

Throughput: forward + decode time of one hop (windows of max_seq_len steps) for 1, 4 and 16
streams batched, per CPU variant (eager, ONNX Runtime fp32 and int8, OpenVINO bf16 and int8;
the reduced precisions loaded from saved files: the demo's shipped int8 models, or for the
THUMOS-size model files quantized here on random features), with the demo model and a
THUMOS-size model (random weights), and the number of streams each keeps in real time: a stream
brings fps / feat_stride steps per second (demo: 7.5; THUMOS: 30 / 4 = 7.5), so one run per hop
every hop / 7.5 s. ``--backends`` limits the rows.

Writes OUT/stream_latency.md, .json and mAP-vs-delay.png; prints the tables.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from harness import median_seconds

import mse_rt
from mse_rt.apps.demo import DEMO_CKPT, DEMO_CONFIG
from mse_rt.apps.synth import SyntheticSpec, class_patterns, make_video
from mse_rt.eval import THUMOS_TIOUS, evaluate
from mse_rt.io.files import atomic_output, atomic_write_text
from mse_rt.io.results import DetectionResult
from mse_rt.streaming.lagged import StreamPool

CONFIGS = Path(__file__).resolve().parents[1] / "mse_rt" / "assets" / "configs"


def make_streams(n: int, seed: int, lo: int, hi: int):
    spec = SyntheticSpec(min_len=lo, max_len=hi)
    rng = np.random.default_rng(seed)
    pats = class_patterns(spec)
    vids, gt = [], {"database": {}}
    for i in range(n):
        feats, segs, labels = make_video(rng, spec, pats)
        vid = f"stream_{seed}_{i}"
        vids.append((vid, feats, segs, labels))
        secs = spec.seconds(segs)
        gt["database"][vid] = {"subset": "test", "annotations": [
            {"segment": [float(s), float(e)], "label_id": int(c)} for (s, e), c in zip(secs, labels)]}
    return vids, gt, spec


def _merge(vid, parts, fps, duration):
    if not parts:
        return DetectionResult(vid, np.zeros((0, 2), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64),
                               fps, duration)
    segs = np.concatenate([p[0] for p in parts])
    scores = np.concatenate([p[1] for p in parts])
    labels = np.concatenate([p[2] for p in parts])
    o = np.argsort(-scores, kind="stable")
    return DetectionResult(vid, segs[o], scores[o], labels[o], fps, duration)


def play_lag(det, vids, spec, hop: int, lag: int, rule: str = "default"):
    """All streams through one StreamPool, hop steps per push. Returns results, stamps, push latencies.
    ``rule``: "default" (hold 0.3, dup 0.7) or "plain" (no hold, no duplicate decay)."""
    pool = StreamPool(det, hop=hop, lag=lag, **({} if rule == "default" else {"hold_iou": None, "dup_iou": None}))
    parts = {v: [] for v, *_ in vids}
    stamps = {v: [] for v, *_ in vids}  # (seg start s, end s, label, video seconds when returned)
    for v, *_ in vids:
        pool.add(v, fps=spec.fps)
    longest = max(len(f) for _, f, *_ in vids)
    lat = []
    for t in range(0, longest, hop):
        chunks = {v: f[t:t + hop] for v, f, *_ in vids if t < len(f)}
        t0 = time.perf_counter()
        out = pool.push_and_step(chunks)
        lat.append(time.perf_counter() - t0)
        for v, r in out.items():
            _record(parts[v], stamps[v], r.final, r.steps, spec)
        for v, f, *_ in vids:
            if t + hop >= len(f) and v in pool.streams:
                r = pool.close(v)
                _record(parts[v], stamps[v], r.final, r.steps, spec)
    results = [_merge(v, parts[v], spec.fps, (len(f) * spec.feat_stride + spec.num_frames) / spec.fps)
               for v, f, *_ in vids]
    return results, stamps, lat


def _record(parts, stamps, final, steps, spec):
    if len(final):
        parts.append((final.segments, final.scores, final.labels))
        now = (steps * spec.feat_stride + spec.num_frames) / spec.fps
        stamps.extend((float(s), float(e), int(c), now) for (s, e), c in zip(final.segments, final.labels))


def play_windowed(det, vids, spec, hop: int = 128, chunk: int = 4):
    results, stamps = [], {}
    for v, feats, *_ in vids:
        s = mse_rt.StreamingDetector(det, hop=hop, fps=spec.fps, video_id=v)
        parts, st = [], []
        for t in range(0, len(feats), chunk):
            r = s.push(feats[t:t + chunk])
            _record(parts, st, r, min(t + chunk, len(feats)), spec)
        _record(parts, st, s.flush(), len(feats), spec)
        results.append(_merge(v, parts, spec.fps, (len(feats) * spec.feat_stride + spec.num_frames) / spec.fps))
        stamps[v] = st
    return results, stamps


def delays(vids, stamps, spec, min_tiou: float = 0.5) -> np.ndarray:
    out = []
    for v, _, segs, labels in vids:
        st = stamps[v]
        for (s, e), c in zip(spec.seconds(segs), labels):
            best = None
            for ds, de, dc, when in st:
                if dc != c:
                    continue
                inter = max(0.0, min(de, e) - max(ds, s))
                tiou = inter / ((de - ds) + (e - s) - inter)
                if tiou >= min_tiou and (best is None or when < best):
                    best = when
            if best is not None:
                out.append(best - e)
    return np.asarray(out)


def accuracy_rows(det, args):
    vids, gt, spec = make_streams(args.videos, args.seed, args.min_len, args.max_len)
    off = [det.detect(f, fps=spec.fps, video_id=v) for v, f, *_ in vids]
    m_off = evaluate(off, gt, THUMOS_TIOUS, split="test")
    rows = [{"mode": "offline", "lag": None, "mAP": m_off.average * 100, "delta": 0.0, "p50": None, "p95": None,
             "found": None}]
    n_actions = sum(len(x[3]) for x in vids)
    print(f"{len(vids)} streams, {sum(len(x[1]) for x in vids)} steps, {n_actions} actions; offline mAP "
          f"{m_off.average * 100:.2f}", flush=True)
    t0 = time.perf_counter()
    res, st = play_windowed(det, vids, spec)
    d = delays(vids, st, spec)
    m = evaluate(res, gt, THUMOS_TIOUS, split="test").average * 100
    rows.append({"mode": "windowed (hop 128, today)", "lag": None, "mAP": m, "delta": m - rows[0]["mAP"],
                 "p50": float(np.median(d)), "p95": float(np.percentile(d, 95)), "found": len(d) / n_actions})
    print(f"windowed: mAP {m:.2f}, delay p50 {np.median(d):.2f} s ({time.perf_counter() - t0:.0f} s)", flush=True)
    runs = [(lag, "default") for lag in args.lags] + [(lag, "plain") for lag in args.plain_lags]
    for lag, rule in runs:
        t0 = time.perf_counter()
        res, st, lat = play_lag(det, vids, spec, args.hop, lag, rule)
        d = delays(vids, st, spec)
        m = evaluate(res, gt, THUMOS_TIOUS, split="test").average * 100
        mode = f"lag {lag} (hop {args.hop}{'' if rule == 'default' else ', plain rule: no hold, no dup decay'})"
        rows.append({"mode": mode, "lag": lag, "rule": rule, "mAP": m, "delta": m - rows[0]["mAP"],
                     "p50": float(np.median(d)), "p95": float(np.percentile(d, 95)), "found": len(d) / n_actions,
                     "push_ms_p50": float(np.median(lat) * 1e3)})
        print(f"lag {lag}: mAP {m:.2f}, delay p50 {np.median(d):.2f} s p95 {np.percentile(d, 95):.2f} s "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    return rows, spec


def _cpu_variants(name: str, model, work: Path) -> dict:
    """Detectors of the reduced-precision CPU variants, each loaded from a saved file: the demo's
    shipped int8 models (``make demo-model``), or for the THUMOS-size model files written here
    (int8 calibrated on 4 random videos with fast bias correction: timing does not depend on the
    calibration data). {variant: Detector or the reason it is skipped}."""
    from mse_rt.apps.variants import available_variants

    avail = available_variants()
    out: dict = {}
    try:
        from mse_rt.export import export_onnx

        onnx = export_onnx(model, work / "m.onnx", validate=False)
    except Exception as exc:  # noqa: BLE001 - reported in the table
        return {"onnxruntime": f"skipped: {exc}"}
    out["onnxruntime"] = mse_rt.Detector.from_onnx(onnx, max_batch=16)
    calib = None
    if name != "demo":
        C, T = model.cfg["model"]["input_dim"], model.cfg["model"]["max_seq_len"]
        calib = [np.random.default_rng(100 + i).standard_normal((T // (i + 1), C)).astype(np.float32) for i in range(4)]
    for variant in ("onnxruntime-int8", "openvino-bf16", "openvino-int8"):
        if avail.get(variant):
            out[variant] = f"skipped: {avail[variant]}"
            continue
        if name == "demo" and variant.endswith("int8"):
            from mse_rt.apps.demo import DEMO_INT8

            path = DEMO_INT8[variant]
        elif variant == "onnxruntime-int8":
            from mse_rt.export.quantize import quantize_onnx

            path = quantize_onnx(onnx, work / "int8.onnx", calib, max_videos=len(calib))
        else:
            from mse_rt.export.openvino import quantize_openvino

            prec = variant.split("-")[1]
            path = quantize_openvino(onnx, work / f"{prec}.xml", calib if prec == "int8" else None, precision=prec,
                                     max_videos=4, bias_correction="fast")
        out[variant] = mse_rt.Detector.from_file(path, max_batch=16)
    return out


def throughput_rows(args):
    import tempfile

    from mse_rt.model import build_random_model

    rows = []
    models = {"demo": mse_rt.load_config(DEMO_CONFIG), "THUMOS (random weights)":
              mse_rt.load_config(CONFIGS / "thumos_i3d.yaml")}
    for name, cfg in models.items():
        if name == "demo":
            base = mse_rt.Detector.from_checkpoint(DEMO_CONFIG, DEMO_CKPT, max_batch=16)
            model = base.backend.model
        else:
            model = build_random_model(cfg)
            base = mse_rt.Detector.from_model(cfg, model, max_batch=16)
        backends = {"eager": base}
        for bname, det in _cpu_variants(name, model, Path(tempfile.mkdtemp())).items():
            if isinstance(det, str):
                print(f"{name} {bname}: {det}", flush=True)
                rows.append({"model": name, "backend": bname, "skipped": det})
            elif not args.backends or bname in args.backends:
                backends[bname] = det
        backends = {k: v for k, v in backends.items() if not args.backends or k in args.backends}
        W, C = cfg["model"]["max_seq_len"], cfg["model"]["input_dim"]
        rate = cfg["dataset"]["default_fps"] or 30.0
        steps_per_s = rate / cfg["dataset"]["feat_stride"]
        for bname, det in backends.items():
            for n in (1, 4, 16):
                if name != "demo" and n == 16 and args.quick:
                    continue
                wins = [np.random.default_rng(i).standard_normal((W, C)).astype(np.float32) for i in range(n)]
                t = median_seconds(lambda: det.detect_candidates(wins), args.repeat if name == "demo" else 1)
                # a stream needs one run every hop / steps_per_s seconds of video
                realtime = {h: int((h / steps_per_s) / (t / n)) for h in (args.hop, 16, 64)}
                rows.append({"model": name, "backend": bname, "streams": n, "ms_per_hop": t * 1e3,
                             "ms_per_stream": t * 1e3 / n, "realtime_streams": realtime})
                print(f"{name} {bname} {n} streams: {t * 1e3:.1f} ms per run -> streams in real time per hop "
                      f"{realtime}", flush=True)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=8)
    ap.add_argument("--seed", type=int, default=31)
    ap.add_argument("--min-len", type=int, default=600)
    ap.add_argument("--max-len", type=int, default=1024)
    ap.add_argument("--lags", type=int, nargs="+", default=[0, 2, 4, 8, 16, 32, 64])
    ap.add_argument("--hop", type=int, default=4)
    ap.add_argument("--plain-lags", type=int, nargs="*", default=[0, 8],
                    help="lags also run with the plain rule (hold_iou=None, dup_iou=None) for comparison")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="skip THUMOS-size batch 16")
    ap.add_argument("--no-throughput", action="store_true")
    ap.add_argument("--no-accuracy", action="store_true")
    ap.add_argument("--backends", nargs="+", default=None,
                    help="throughput rows only for these (eager, onnxruntime, onnxruntime-int8, openvino-bf16, "
                         "openvino-int8; default all this machine runs)")
    ap.add_argument("--out", default="stream_report")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    det = mse_rt.Detector.from_checkpoint(DEMO_CONFIG, DEMO_CKPT, max_batch=16)
    acc = [] if args.no_accuracy else accuracy_rows(det, args)[0]
    thr = [] if args.no_throughput else throughput_rows(args)
    out = Path(args.out)
    md = [f"# Streaming latency vs accuracy ({platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__})", "",
          f"{args.videos} synthetic streams (seed {args.seed}, {args.min_len}-{args.max_len} steps), demo model, "
          f"chunks of {args.hop} steps; delay in seconds of video after the action's true end.", "",
          "| mode | mAP | vs offline | delay p50 s | delay p95 s | actions reported (tIoU >= 0.5) |",
          "|---|---|---|---|---|---|"]
    for r in acc:
        f = lambda v, p=2: "-" if v is None else f"{v:.{p}f}"  # noqa: E731
        found = "-" if r["found"] is None else f"{100 * r['found']:.0f} %"
        md.append(f"| {r['mode']} | {r['mAP']:.2f} | {r['delta']:+.2f} | {f(r['p50'])} | {f(r['p95'])} | {found} |")
    if thr:
        md += ["", "Forward + decode of one run (windows of max_seq_len steps), streams batched; streams in real "
               "time = how many streams' runs fit the video time of one hop at 7.5 steps/s, at that batch size.", "",
               f"| model | backend | streams batched | ms per run | ms per stream | real-time streams, hop {args.hop} "
               "| hop 16 | hop 64 |", "|---|---|---|---|---|---|---|---|"]
        md += [f"| {r['model']} | {r['backend']} | {r['streams']} | {r['ms_per_hop']:.1f} | {r['ms_per_stream']:.1f} | "
               + " | ".join(str(v) for v in r["realtime_streams"].values()) + " |" for r in thr if "skipped" not in r]
    atomic_write_text(out / "stream_latency.md", "\n".join(md) + "\n", what="report")
    atomic_write_text(out / "stream_latency.json", json.dumps({"accuracy": acc, "throughput": thr}, indent=1),
                      what="report")
    if not acc:
        print("\n".join(md))
        return 0
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    lag_rows = [r for r in acc if r["lag"] is not None and r.get("rule") == "default"]
    ax.plot([r["p50"] for r in lag_rows], [r["mAP"] for r in lag_rows], "o-", label=f"lag mode (hop {args.hop})")
    for r in lag_rows:
        ax.annotate(f"lag {r['lag']}", (r["p50"], r["mAP"]), fontsize=7, xytext=(3, -8), textcoords="offset points")
    win = acc[1]
    ax.plot([win["p50"]], [win["mAP"]], "s", label="windowed (today)")
    ax.axhline(acc[0]["mAP"], color="gray", ls="--", label="offline")
    ax.set_xscale("log")
    ax.set_xlabel("median report delay after the action's end (s of video, log)")
    ax.set_ylabel("mAP tIoU 0.3:0.7 (%)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_output(out / "mAP-vs-delay.png", what="plot") as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    print("\n".join(md))
    print(f"\nwrote {out}/stream_latency.md, .json, mAP-vs-delay.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
