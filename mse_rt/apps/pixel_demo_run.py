"""The pixel part of ``mse-rt demo`` (``--pixels``): held-out rendered videos -> frames -> features -> actions.

For each backbone variant this machine can run (:func:`backbone_variants`: eager fp32, ONNX
Runtime fp32, OpenVINO fp32 / bf16 / int8 via :func:`mse_rt.video.load_backbone`) the first
``num_videos`` held-out videos of :mod:`mse_rt.apps.pixel_demo` are rendered once (and checked
against the shipped ground truth), decoded, cut into clips and turned into features; the shipped
pixel TAD model (eager fp32, checksum checked) detects actions on each variant's features. On the
first variant's features the TAD model also runs on every TAD backend / precision that needs no
calibration (ONNX Runtime, OpenVINO fp32 / bf16). Printed: per-video truth vs detections, one
table row per variant (load time, backbone time per clip, mAP at tIoU 0.3 / 0.5 / 0.7 and
averaged, difference to the first row); written: results JSON per variant and ``pixel_timeline.png``
(truth vs detections per video). Feature extraction dominates the time: ``num_videos`` and the
variant list keep the pixel part short (defaults :data:`DEFAULT_VIDEOS`, :data:`DEFAULT_VARIANTS`).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from ..errors import InputError
from . import pixel_demo as pd

BACKBONE_VARIANTS = ("openvino-fp32", "openvino-bf16", "openvino-int8", "eager-fp32", "onnxruntime-fp32")
# The default: OpenVINO's three CPU precisions (fp32 first: the reference row); eager and ONNX Runtime
# fp32 compute the same features more slowly (docs/pixel_demo.md has the times): ask for them by name.
DEFAULT_VARIANTS = ("openvino-fp32", "openvino-bf16", "openvino-int8")
DEFAULT_VIDEOS = 3
# int8 backbone calibration: clips of rendered videos of a seed used neither for training (1) nor held out (2)
CALIB_SEED = 3
CALIB_VIDEOS = 1
CALIB_CLIPS = 32
TAD_VARIANTS = ("onnxruntime", "openvino-fp32", "openvino-bf16")


def backbone_variants() -> dict[str, str]:
    """{variant: "" if this machine can run it, else why not}, for :data:`BACKBONE_VARIANTS`."""
    from .variants import available_variants

    tad = available_variants()
    out = {}
    for name in BACKBONE_VARIANTS:
        if name == "eager-fp32":
            out[name] = ""
        elif name == "onnxruntime-fp32":
            out[name] = tad["onnxruntime"]
        else:
            out[name] = tad.get(name, "openvino not installed (pip install 'mse-rt[openvino]')")
    return out


def _backbone(cfg: dict, variant: str, work: Path, threads: int | None):
    backend, precision = variant.rsplit("-", 1)
    options = {}
    if precision == "int8":
        from ..video.render import render_dataset

        calib = work / "calib"
        if not (calib / "annotations.json").is_file():
            render_dataset(calib, CALIB_VIDEOS, CALIB_SEED, subset="training", spec=pd.PIXEL_SPEC, prefix=pd.PREFIX)
        options = {"calib": sorted((calib / "videos").glob("*.mp4")), "calib_clips": CALIB_CLIPS}
    return pd.load_pixel_backbone(cfg, backend, precision, threads=threads, **options)


def _matched(v: dict, r, min_score: float = 0.1, min_tiou: float = 0.5) -> int:
    """How many true instances of ``v`` have a same-class detection (score >= min_score) at tIoU >= min_tiou."""
    from ..pipeline.segments import segment_iou

    keep = r.scores >= min_score
    hits = 0
    for seg, c in zip(v["segments"], v["labels"]):
        same = keep & (r.labels == c)
        if same.any() and segment_iou(np.asarray(seg, np.float64), r.segments[same].astype(np.float64)).max() >= min_tiou:
            hits += 1
    return hits


def run_pixel_demo(out_dir: str | Path, num_videos: int = DEFAULT_VIDEOS, variants: list[str] | None = None,
                   threads: int | None = None, tad_variants: bool = True) -> int:
    """Run the pixel demo (module docstring) into ``out_dir``; returns 0.

    ``variants``: backbone variants (:data:`BACKBONE_VARIANTS`; default :data:`DEFAULT_VARIANTS`,
    those this machine cannot run are listed as skipped); an unknown name or one this machine
    cannot run when asked by name is an :class:`InputError`. ``threads``: backbone CPU threads.
    """
    from ..config import load_config
    from ..eval import THUMOS_TIOUS, evaluate
    from ..io.results import write_results_json
    from .demo import plot_timeline

    if not 1 <= num_videos <= pd.HELDOUT_VIDEOS:
        raise InputError(f"the pixel demo has {pd.HELDOUT_VIDEOS} held-out videos; asked for {num_videos}")
    avail = backbone_variants()
    bad = [v for v in variants or () if v not in avail]
    if bad:
        raise InputError(f"unknown backbone variant(s) {bad}; known: {', '.join(BACKBONE_VARIANTS)}")
    cannot = {v: avail[v] for v in variants or () if avail[v]}
    if cannot:
        raise InputError("cannot run here: " + "; ".join(f"{k}: {v}" for k, v in cannot.items()))
    names = list(variants) if variants else [v for v in DEFAULT_VARIANTS if not avail[v]]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = load_config(pd.PIXEL_CONFIG)
    det = pd.load_pixel_detector()
    print(f"\nmse_rt pixel demo: I3D RGB ({cfg['video']['size']} x {cfg['video']['size']}, {cfg['dataset']['num_frames']}"
          f"-frame clips every {cfg['dataset']['feat_stride']} frames) + MSE-TAD ({cfg['dataset']['num_classes']} classes) "
          f"trained by mse_rt on rendered videos; {num_videos} of {pd.HELDOUT_VIDEOS} held-out videos, rendered here")
    for name in BACKBONE_VARIANTS:
        if avail[name]:
            print(f"  {name}: skipped, {avail[name]}")
        elif name not in names:
            print(f"  {name}: not asked for (--pixel-variants {name})")
    rows: dict[str, tuple] = {}
    ref = None
    with tempfile.TemporaryDirectory(prefix="mse_rt_pixel_demo_") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        pd.render_heldout(work / "heldout", num_videos=num_videos)
        print(f"rendered {num_videos} held-out videos in {time.perf_counter() - t0:.1f} s; "
              "ground truth reproduced (assets/pixel_demo/annotations.json)")
        for name in names:
            t0 = time.perf_counter()
            bb = _backbone(cfg, name, work, threads)
            t1 = time.perf_counter()
            videos = pd.heldout_videos(bb, work / "heldout", cfg, num_videos=num_videos)
            t2 = time.perf_counter()
            results = pd.detect_videos(det, videos)
            gt = pd.subset_ground_truth(videos)
            ev = evaluate(results, gt, THUMOS_TIOUS)
            write_results_json(results, out_dir / f"pixel_results_{name}.json")
            clips = sum(len(v["feats"]) for v in videos)
            rows[f"{name} / eager"] = (ev, t1 - t0, (t2 - t1) / clips * 1e3)
            print(f"  {name}: {clips} clips, {t2 - t1:.1f} s, avg mAP {ev.average * 100:.2f}", flush=True)
            if ref is None:
                ref = (name, videos, results, gt)
        name0, videos0, res0, gt0 = ref
        if tad_variants:
            from .variants import available_variants, build_variants

            tads = [t for t in TAD_VARIANTS if not available_variants().get(t, "not installed")]
            for tname, tdet in build_variants(tads, pd.PIXEL_CONFIG, pd.PIXEL_CKPT, work / "tad").items():
                ev = evaluate(pd.detect_videos(tdet, videos0), gt0, THUMOS_TIOUS)
                rows[f"{name0} / {tname}"] = (ev, None, None)
    print(f"\nDetections ({name0} features, eager TAD) vs ground truth (score >= 0.1, same class, tIoU >= 0.5):")
    for v, r in zip(videos0, res0):
        print(f"  {v['video_id']} ({v['duration']:.1f} s): {len(v['labels'])} actions in truth, "
              f"{_matched(v, r)} found; {(r.scores >= 0.1).sum()} detections")
    print(f"\n{'backbone / TAD':<32}{'load s':>8}{'ms/clip':>9}{'mAP@0.3':>9}{'@0.5':>8}{'@0.7':>8}{'avg mAP':>9}"
          f"{'vs first':>10}")
    first = None
    for name, (ev, load_s, ms) in rows.items():
        first = ev.average if first is None else first
        load = f"{load_s:>8.1f}" if load_s is not None else f"{'-':>8}"
        per = f"{ms:>9.0f}" if ms is not None else f"{'-':>9}"
        print(f"{name:<32}{load}{per}{ev.mAP[0] * 100:>9.2f}{ev.mAP[2] * 100:>8.2f}{ev.mAP[4] * 100:>8.2f}"
              f"{ev.average * 100:>9.2f}{(ev.average - first) * 100:>+10.2f}")
    png = plot_timeline(out_dir / "pixel_timeline.png", videos0, res0, cfg["dataset"]["num_classes"])
    print(f"\npixel results: {out_dir}/pixel_results_<variant>.json; timeline: {png}")
    print("load s: backbone load (export / compile / calibration, cached between runs); ms/clip: wall clock of "
          "decode + resize + backbone per clip; mAP over these videos only (docs/pixel_demo.md: all 10)")
    return 0
