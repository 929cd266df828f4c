"""The main job (``mse-rt demo``): the bundled demo model on its held-out videos, every backend.

The demo model is a small MSE-TAD trained by mse_rt itself (``make demo-model``: synthetic data
from :mod:`mse_rt.apps.synth`, the reference recipe in :mod:`mse_rt.apps.train`). For each backend that
this machine can run (eager always; onnxruntime when installed; triton when a CUDA GPU and
Triton are present) it detects the held-out videos, scores them against their ground truth
(ActivityNet mAP, tIoU 0.3:0.7) and times them; it prints detections vs ground truth, the mAP
per backend and a latency table, and writes the results JSON and a PNG timeline.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from ..io.files import atomic_output

ASSETS = Path(__file__).resolve().parents[1] / "assets"
DEMO = ASSETS / "demo"
DEMO_CONFIG = ASSETS / "demo_config.yaml"
DEMO_CKPT = DEMO / "ckpt.pth.tar"


def available_backends() -> dict[str, str]:
    """Backends this machine can run, each with a reason when it cannot: {name: '' | why not}."""
    import torch

    out = {"eager": ""}
    try:
        import onnxruntime  # noqa: F401

        out["onnxruntime"] = ""
    except ImportError:
        out["onnxruntime"] = "onnxruntime not installed (pip install 'mse-rt[onnx]')"
    gpu = torch.cuda.is_available()
    try:
        import triton  # noqa: F401

        out["triton"] = "" if gpu else "needs a CUDA GPU"
    except ImportError:
        out["triton"] = "triton not installed (pip install 'mse-rt[triton]')"
    try:
        import tensorrt  # noqa: F401

        out["tensorrt"] = "" if gpu else "needs a CUDA GPU"
    except ImportError:
        out["tensorrt"] = "tensorrt not installed (GPU machines: pip install tensorrt)"
    return out


def _detectors(tmp: Path) -> dict:
    from ..runtime import Detector

    dets = {}
    onnx: list[Path] = []  # the one ONNX export, shared by ONNX Runtime and the OpenVINO float variants

    def exported() -> Path:
        if not onnx:
            from ..export import export_onnx

            onnx.append(export_onnx((DEMO_CONFIG, DEMO_CKPT), tmp / "demo.onnx"))
        return onnx[0]

    for name, why in available_backends().items():
        if why:
            continue
        if name == "eager":
            dets[name] = Detector.from_checkpoint(DEMO_CONFIG, DEMO_CKPT)
        elif name in ("triton", "tensorrt"):
            dets[name] = Detector.from_checkpoint(DEMO_CONFIG, DEMO_CKPT, backend=name, device="cuda", cache_dir=tmp)
        elif name == "onnxruntime":
            dets[name] = Detector.from_onnx(exported())
        elif name == "openvino":
            continue  # its precisions are the openvino-fp32 / bf16 / int8 variants below (fp32 = this backend)
        else:
            dets[name] = Detector.from_checkpoint(DEMO_CONFIG, DEMO_CKPT, backend=name, cache_dir=tmp)
    # every CPU precision this machine supports; the int8 models were quantized once and ship with
    # the demo (shipped_int8: no calibration here, checksums verified)
    from .variants import available_variants, build_variants

    for name in [v for v, why in available_variants().items() if not why and v not in dets]:
        if name in DEMO_INT8:
            dets[name] = shipped_int8(name)
        elif name.startswith("openvino-"):
            dets[name] = Detector.from_openvino(exported(), precision=name.split("-", 1)[1])
        else:
            dets.update(build_variants([name], DEMO_CONFIG, DEMO_CKPT, tmp / "variants"))
    return dets


# The demo's int8 models, written by `make demo-model` from the bundled checkpoint: calibrated on 32
# synthetic videos of seed 3 (another seed than the demo's training (1) and test (2) sets; with 16
# the int8 mAP moved by ~0.7 point with the seed alone), OpenVINO's with NNCF's full bias correction
# (over 7 calibration sets 0.25 point below fp32 on average, all within 0.45; the fast one averaged
# 0.41 below, up to 0.63: docs/cpu_precisions.md).
DEMO_INT8 = {"onnxruntime-int8": DEMO / "int8_onnxruntime.onnx", "openvino-int8": DEMO / "int8_openvino.xml"}


def shipped_int8(name: str):
    """The Detector of the demo's shipped int8 model ``name`` (a key of :data:`DEMO_INT8`): the file's
    checksum verified on load, and its recorded checkpoint sha256 that of the bundled checkpoint;
    :class:`ModelFileError` naming the file otherwise (rebuild with ``make demo-model``)."""
    from ..errors import ModelFileError
    from ..model.checkpoint import file_sha256
    from ..runtime import Detector

    path = DEMO_INT8[name]
    if not path.is_file():
        raise ModelFileError(f"the demo's int8 model {path} is missing; rebuild the demo's models with `make demo-model`")
    det = Detector.from_file(path)
    if name == "openvino-int8":
        recorded = det.backend.meta.get("checkpoint_sha256", "")
    else:
        recorded = det.backend.session.get_modelmeta().custom_metadata_map.get("mse_rt.checkpoint_sha256", "")
    if recorded != file_sha256(DEMO_CKPT):
        raise ModelFileError(f"{path} was quantized from another checkpoint than {DEMO_CKPT}; rebuild the demo's "
                             "models with `make demo-model`")
    return det


def plot_timeline(path: Path, videos: list[dict], results, num_classes: int, min_score: float = 0.1) -> Path:
    """PNG: per video, ground truth (top row) vs detections scoring >= min_score (bottom row)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = plt.get_cmap("tab10")
    fig, axes = plt.subplots(len(videos), 1, figsize=(11, 1.2 * len(videos) + 0.6), squeeze=False)
    for ax, v, r in zip(axes[:, 0], videos, results):
        for (s, e), c in zip(v["segments"], v["labels"]):
            ax.barh(1, e - s, left=s, height=0.8, color=colors(int(c) % 10))
        keep = r.scores >= min_score
        for (s, e), c, p in zip(r.segments[keep], r.labels[keep], r.scores[keep]):
            ax.barh(0, e - s, left=s, height=0.8 * float(p), color=colors(int(c) % 10), alpha=0.8)
        ax.set_yticks([0, 1], ["detected", "truth"])
        ax.set_xlim(0, v["duration"])
        ax.set_title(v["video_id"], fontsize=8, loc="left")
    axes[-1, 0].set_xlabel("seconds (colour = class; detection bar height = score)")
    fig.tight_layout()
    with atomic_output(path, what="timeline plot") as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return path


def run_demo(out_dir: Path, quiet: bool = False) -> int:
    from ..config import load_config
    from ..eval import THUMOS_TIOUS, evaluate
    from ..io.dataset import read_dataset
    from ..io.results import write_results_json

    cfg = load_config(DEMO_CONFIG)
    videos = read_dataset(DEMO, subset="validation")
    gt = DEMO / "annotations.json"
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"mse_rt demo: MSE-TAD ({cfg['model']['num_classes']} classes, {cfg['model']['input_dim']}-d features) "
          f"trained by mse_rt on synthetic data; {len(videos)} held-out videos")
    from .variants import available_variants

    for name, why in {**available_backends(), **available_variants()}.items():
        if why:
            print(f"  {name}: skipped, {why}")
    rows, first = {}, None
    with tempfile.TemporaryDirectory() as tmp:
        for name, det in _detectors(Path(tmp)).items():
            feats = [v["feats"] for v in videos]
            ids = [v["video_id"] for v in videos]
            det.detect_batch(feats[:1], fps=30.0)  # warm-up
            lat = []
            results = []
            for f, vid in zip(feats, ids):
                t0 = time.perf_counter()
                results.append(det.detect(f, fps=30.0, video_id=vid))
                lat.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            det.detect_batch(feats, fps=30.0, video_ids=ids)
            batch_s = time.perf_counter() - t0
            ev = evaluate(results, gt, THUMOS_TIOUS)
            write_results_json(results, out_dir / f"results_{name}.json")
            rows[name] = (ev, statistics.median(lat) * 1e3, len(videos) / batch_s)
            first = first or (name, results)
    name0, res0 = first
    print(f"\nDetections ({name0}) vs ground truth, first 3 videos (score >= 0.1):")
    for v, r in list(zip(videos, res0))[:3]:
        print(f"  {v['video_id']}: {len(v['labels'])} actions in truth, {(r.scores >= 0.1).sum()} detections")
        for (s, e), c in list(zip(v["segments"], v["labels"]))[:4]:
            hit = np.nonzero((r.labels == c) & (r.scores >= 0.1))[0]
            best = max(hit, key=lambda i: _iou(r.segments[i], (s, e)), default=None)
            if best is not None and _iou(r.segments[best], (s, e)) < 0.3:
                best = None
            got = (f"[{r.segments[best][0]:6.1f}, {r.segments[best][1]:6.1f}] p={r.scores[best]:.2f} "
                   f"IoU={_iou(r.segments[best], (s, e)):.2f}") if best is not None else "missed"
            print(f"    truth [{s:6.1f}, {e:6.1f}] class {c}  ->  {got}")
    print(f"\n{'backend':<17}{'mAP@0.3':>9}{'@0.5':>8}{'@0.7':>8}{'avg mAP':>9}{'ms/video':>10}{'videos/s':>10}")
    for name, (ev, ms, vps) in rows.items():
        print(f"{name:<17}{ev.mAP[0] * 100:>9.2f}{ev.mAP[2] * 100:>8.2f}{ev.mAP[4] * 100:>8.2f}"
              f"{ev.average * 100:>9.2f}{ms:>10.1f}{vps:>10.1f}")
    png = plot_timeline(out_dir / "timeline.png", videos[:6], res0[:6], cfg["model"]["num_classes"])
    print(f"\nresults: {out_dir}/results_<backend>.json; timeline: {png}")
    print("latency: median of one-video detect() calls; videos/s: one detect_batch over all videos (CPU here)")
    return 0


def _iou(a, b) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (a[1] - a[0]) + (b[1] - b[0]) - inter
    return inter / union if union > 0 else 0.0
