"""CPU deployment variants by name, and their agreement with a reference (``mse-rt compare``).

Variants: ``eager`` (fp32 PyTorch, the reference), ``onnxruntime`` (fp32), ``onnxruntime-int8``
(static QDQ, :mod:`mse_rt.export.quantize`), ``openvino-fp32``, ``openvino-bf16``,
``openvino-int8`` (NNCF PTQ). int8 variants need calibration feature files (``calib``).

    dets = build_variants(["eager", "openvino-int8"], cfg_path, ckpt_path, calib=["feats/"], workdir=tmp)
    report = compare_results(reference_results, other_results)      # agreement, per video and overall
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import BackendError, InputError

VARIANTS = ("eager", "onnxruntime", "onnxruntime-int8", "openvino-fp32", "openvino-bf16", "openvino-int8")


def available_variants() -> dict[str, str]:
    """{variant: "" if this machine can run it, else why not}."""
    from ..runtime.cpu import int8_dot_support

    out = {"eager": ""}
    dot, dot_why = int8_dot_support()
    try:
        import onnxruntime  # noqa: F401

        out["onnxruntime"] = ""
        out["onnxruntime-int8"] = dot_why if dot is False else ""
    except ImportError:
        out["onnxruntime"] = out["onnxruntime-int8"] = "onnxruntime not installed (pip install 'mse-rt[onnx]')"
    try:
        from ..runtime.backends.openvino import cpu_capabilities

        caps = cpu_capabilities()
        out["openvino-fp32"] = ""
        out["openvino-bf16"] = "" if "BF16" in caps else f"this CPU has no BF16 (OpenVINO: {caps})"
        try:
            import nncf  # noqa: F401

            out["openvino-int8"] = (dot_why if dot is False else
                                    "" if "INT8" in caps else f"this CPU has no INT8 (OpenVINO: {caps})")
        except ImportError:
            out["openvino-int8"] = "nncf not installed (pip install 'mse-rt[openvino]')"
    except BackendError as exc:
        for v in ("openvino-fp32", "openvino-bf16", "openvino-int8"):
            out[v] = str(exc)
    return out


def build_variants(names: list[str], config, ckpt, workdir: str | Path, calib=None, threads: int | None = None,
                   hint: str = "latency", max_batch: int = 8, model=None, bias_correction: str = "fast",
                   allow_unverified: bool = False) -> dict:
    """Detectors for ``names`` from one config + checkpoint (or a built ``model``): the ONNX export
    and the int8 graph are made once into ``workdir``. Unknown / unavailable variants raise.
    ``bias_correction``: NNCF's for the OpenVINO int8 variant ("fast" or "full").
    ``allow_unverified``: accept a legacy (non-zip) checkpoint without a checksum."""
    from .. import Detector, build_model, load_checkpoint, load_config

    bad = [n for n in names if n not in VARIANTS]
    if bad:
        raise BackendError(f"unknown variant(s) {bad}; available: {', '.join(VARIANTS)}")
    avail = available_variants()
    missing = {n: avail[n] for n in names if avail.get(n)}
    if missing:
        raise BackendError("cannot run here: " + "; ".join(f"{k}: {v}" for k, v in missing.items()))
    if any(n.endswith("int8") for n in names) and not calib:
        raise InputError("int8 variants need calibration feature files (calib / --calib)")
    workdir = Path(workdir)
    if model is None:
        cfg = load_config(config)
        model = build_model(cfg)
        load_checkpoint(model, ckpt, allow_unverified=allow_unverified)
    cfg = model.cfg
    out, onnx_path, int8_path = {}, None, None
    for name in names:
        if name == "eager":
            out[name] = Detector.from_model(cfg, model, max_batch=max_batch)
            continue
        if onnx_path is None:
            from ..export import export_onnx

            onnx_path = export_onnx(model, workdir / "model.onnx")
        if name == "onnxruntime":
            out[name] = Detector.from_onnx(onnx_path, intra_op_threads=threads, max_batch=max_batch)
        elif name == "onnxruntime-int8":
            if int8_path is None:
                from ..export.quantize import quantize_onnx

                int8_path = quantize_onnx(onnx_path, workdir / "model.int8.onnx", calib)
            out[name] = Detector.from_onnx(int8_path, intra_op_threads=threads, max_batch=max_batch)
        else:
            prec = name.split("-", 1)[1]
            out[name] = Detector.from_openvino(onnx_path, precision=prec, hint=hint, threads=threads,
                                               calib=calib if prec == "int8" else None, max_batch=max_batch,
                                               bias_correction=bias_correction)
    return out


def _tiou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    inter = np.clip(np.minimum(a[:, None, 1], b[None, :, 1]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    union = (a[:, 1] - a[:, 0])[:, None] + (b[:, 1] - b[:, 0])[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


@dataclass
class Agreement:
    """Detection agreement of a variant with the reference, over all videos.

    ``matched``: fraction of the reference's top-``k`` detections (per video) with a partner of the
    same label at tIoU >= ``min_tiou`` (one-to-one, greedy by reference score); ``score_diff`` /
    ``segment_diff`` (seconds): median and max over those pairs; ``count_ratio``: detections of the
    variant / of the reference.
    """

    k: int
    matched: float
    score_diff_median: float
    score_diff_max: float
    segment_diff_median: float
    segment_diff_max: float
    count_ratio: float
    per_video: dict = field(default_factory=dict)

    def line(self) -> str:
        return (f"top-{self.k} matched {100 * self.matched:.1f} %, |score diff| median {self.score_diff_median:.1e} "
                f"max {self.score_diff_max:.1e}, |segment diff| median {self.segment_diff_median:.1e} s max "
                f"{self.segment_diff_max:.1e} s, detections x{self.count_ratio:.3f}")


def compare_results(reference, other, k: int = 10, min_tiou: float = 0.5) -> Agreement:
    """Agreement of ``other`` with ``reference`` (lists of DetectionResult with the same video ids)."""
    ref = {r.video_id: r for r in reference}
    oth = {r.video_id: r for r in other}
    if set(ref) != set(oth):
        raise InputError(f"the two result sets hold different videos: {sorted(set(ref) ^ set(oth))[:5]}")
    n_ref = n_match = 0
    sdiff, gdiff, per = [], [], {}
    for vid, a in ref.items():
        b = oth[vid]
        top = min(k, len(a))
        used = np.zeros(len(b), dtype=bool)
        tiou = _tiou(a.segments[:top].astype(np.float64), b.segments.astype(np.float64)) if len(b) else None
        m = 0
        for i in range(top):
            if tiou is None:
                break
            cand = np.where((b.labels == a.labels[i]) & ~used & (tiou[i] >= min_tiou))[0]
            if len(cand):
                j = cand[np.argmax(tiou[i, cand])]
                used[j] = True
                m += 1
                sdiff.append(abs(float(a.scores[i]) - float(b.scores[j])))
                gdiff.append(float(np.abs(a.segments[i] - b.segments[j]).max()))
        per[vid] = {"top": top, "matched": m, "count": (len(a), len(b))}
        n_ref += top
        n_match += m
    f = lambda xs, fn: float(fn(xs)) if xs else 0.0  # noqa: E731
    total_a = sum(len(r) for r in reference)
    return Agreement(k, n_match / n_ref if n_ref else 1.0, f(sdiff, np.median), f(sdiff, np.max), f(gdiff, np.median),
                     f(gdiff, np.max), (sum(len(r) for r in other) / total_a) if total_a else 1.0, per)
