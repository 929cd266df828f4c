"""int8 for the I3D backbone in OpenVINO: calibration clips, the NNCF recipe, and the saved IR that spares recalibrating.

**Calibration clips** (:func:`calibration_clips`): uint8 clips (n, L, S, S, 3) from

- video files or folders of videos (``.mp4``, ``.mkv``, ...): clips cut as the features are cut
  (:func:`mse_rt.video.clips.iter_clips`, short-side resize and centre crop), every other clip
  (stride 2 L, so the set spans more of each video), an equal share of ``max_clips`` per video;
- ``"synthetic"``: clips of rendered synthetic action videos (:mod:`mse_rt.video.render`, fixed
  seeds: the same clips on every machine), for a start without the user's own videos;
- an array (n, L, S, S, 3) or (L, S, S, 3) uint8, or an iterable of such arrays.

Their identity (:func:`clips_sha256`: sha256 over count, shape and bytes) keys the cached int8 IR.

**Recipe** (:func:`int8_recipe`): NNCF post-training quantization of the fp32 backbone graph,
default (CNN) model type, the ``mixed`` preset (symmetric weights, asymmetric activations; with the
first convolution float every quantized activation is a ReLU output, where it equals ``performance``),
fast bias correction; the layers in :data:`INT8_IGNORED` stay float (measured choice: docs/video.md).
On a CPU with BF16 the remaining float layers run in bf16.

**Saved IR**: ``NAME.xml`` + ``NAME.bin`` written by :func:`mse_rt.runtime.backends.openvino.ir.write_ir`
(the TAD IR's writer: both files atomically, the xml holding the bin's sha256 and its own seal)
with the metadata in ``rt_info/mse_rt``: ``format`` (:data:`BACKBONE_IR_FORMAT`), ``version``,
``config`` (JSON: backbone, clip shape, outputs, feature_dim, num_classes, weights_sha256),
``precision`` ("int8"), ``recipe`` (JSON), ``calibration`` (JSON: clips, sha256, source),
``source_onnx_sha256``. :func:`read_backbone_ir` verifies both digests before OpenVINO reads it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendError, InputError, ModelFileError
from ..version import __version__

__all__ = ["BACKBONE_IR_FORMAT", "INT8_IGNORED", "calibration_clips", "int8_recipe", "clips_sha256",
           "quantize_backbone", "read_backbone_ir", "synthetic_clips", "write_backbone_ir"]

BACKBONE_IR_FORMAT = "mse_rt.backbone_ir/1"
# NNCF ignored scope (regular expressions over OpenVINO node names, which keep the ONNX exporter's
# names). Float: the first convolution (its signed [-1, 1] input quantized cost Kinetics top-5
# agreement, docs/video.md), the two means over Mixed_5c (the features' ReduceMean, the head's
# average pool) and the Kinetics head (MatMul, bias Add, mean over time): NNCF otherwise quantizes
# the head's output, which OpenVINO's CPU plugin then cannot compile in bf16 ("No suitable implementations").
INT8_IGNORED: list[str] = [r"^/Conv3d_1a_7x7/.*", r"^features$", r"^/AveragePool$", r"^/MatMul.*", r"^/Add$",
                           r"^logits$"]
INT8_PRESET = "mixed"
INT8_FAST_BIAS_CORRECTION = True


def int8_recipe() -> dict:
    """The int8 recipe's settings, as recorded in a saved IR and hashed into the cache key."""
    return {"tool": "nncf.quantize", "model_type": "default (CNN)", "preset": INT8_PRESET,
            "fast_bias_correction": INT8_FAST_BIAS_CORRECTION, "ignored_scope": list(INT8_IGNORED)}
VIDEO_SUFFIXES = (".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".wmv")


def synthetic_clips(n: int, clip_shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """``n`` uint8 clips (n, L, S, S, 3) of rendered synthetic action videos (deterministic in ``seed``).

    Consecutive non-overlapping clips of 12-second 320 x 240 videos (:func:`~mse_rt.video.render.render_frames`
    with seeds ``(seed, 0), (seed, 1), ...``), short side resized to S and centre-cropped."""
    from .clips import ClipSpec, preprocess_frames
    from .render import VideoSynthSpec, render_frames

    L, S, _ = clip_shape
    spec = ClipSpec(num_frames=L, size=S)
    synth = VideoSynthSpec(min_duration_s=12.0, max_duration_s=12.0)
    out = np.empty((n, L, S, S, 3), np.uint8)
    k, video = 0, 0
    while k < n:
        v = render_frames((seed, video), synth)
        for start in range(0, v.num_frames - L + 1, L):
            if k == n:
                break
            frames = np.stack([v.frame(i) for i in range(start, start + L)])
            out[k] = preprocess_frames(frames, spec)
            k += 1
        video += 1
    return out


def _video_files(items: list) -> list[Path]:
    files: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix.lower() in VIDEO_SUFFIXES)
            if not found:
                raise InputError(f"calibration folder {p} holds no videos ({', '.join(VIDEO_SUFFIXES)})")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise InputError(f"calibration video not found: {p}")
    return files


def _clips_of_videos(files: list[Path], clip_shape: tuple[int, int, int], max_clips: int) -> np.ndarray:
    from .clips import ClipSpec, iter_clips

    L, S, _ = clip_shape
    spec = ClipSpec(num_frames=L, size=S, stride=2 * L)
    share = -(-max_clips // len(files))
    clips: list[np.ndarray] = []
    for f in files:
        it = iter_clips(f, spec)
        try:
            for clip in it:
                clips.append(clip.frames)
                if len(clips) % share == 0 or len(clips) == max_clips:
                    break
        finally:
            it.close()
        if len(clips) >= max_clips:
            break
    if not clips:
        raise InputError(f"the calibration videos give no clip of {L} frames: {[str(f) for f in files]}")
    return np.stack(clips)


def calibration_clips(calib: Any, clip_shape: tuple[int, int, int], max_clips: int = 64) -> np.ndarray:
    """Calibration clips (n, L, S, S, 3) uint8, n <= ``max_clips``, from ``calib`` (module docstring).

    Raises :class:`InputError` for missing videos, no clips, or arrays of another shape or dtype.
    """
    L, S, _ = clip_shape
    if isinstance(calib, str) and calib == "synthetic":
        return synthetic_clips(max_clips, clip_shape)
    if isinstance(calib, (str, os.PathLike)):
        calib = [calib]
    if isinstance(calib, np.ndarray):
        calib = [calib]
    if not isinstance(calib, Iterable):
        raise InputError(f"calib must be video paths, 'synthetic', or uint8 clip arrays; got {type(calib).__name__}")
    items = list(calib)
    if not items:
        raise InputError("calib is empty: give video paths, 'synthetic', or uint8 clip arrays")
    if all(isinstance(i, (str, os.PathLike)) for i in items):
        return _clips_of_videos(_video_files(items), clip_shape, max_clips)
    arrays = []
    for i, a in enumerate(items):
        a = np.asarray(a) if not isinstance(a, np.ndarray) else a
        a = a[None] if a.ndim == 4 else a
        if a.dtype != np.uint8 or a.ndim != 5 or tuple(a.shape[1:]) != (L, S, S, 3):
            raise InputError(f"calibration item {i}: clips must be (n, {L}, {S}, {S}, 3) or ({L}, {S}, {S}, 3) uint8 "
                             f"for this backbone, got {a.shape} {a.dtype}")
        arrays.append(a)
    clips = np.concatenate(arrays)[:max_clips]
    if len(clips) == 0:
        raise InputError("calib holds no clips")
    return np.ascontiguousarray(clips)


def clips_sha256(clips: np.ndarray) -> str:
    """sha256 over the number, shape and bytes of uint8 clips (n, L, S, S, 3), in order."""
    h = hashlib.sha256(f"{clips.shape}".encode())
    h.update(memoryview(np.ascontiguousarray(clips)).cast("B"))
    return h.hexdigest()


def quantize_backbone(model, clips: np.ndarray, input_name: str = "frames"):
    """The int8 OpenVINO model of the fp32 backbone ``model`` calibrated on ``clips`` (:func:`int8_recipe`)."""
    try:
        import nncf
    except ImportError as exc:
        raise BackendError("precision='int8' with OpenVINO needs NNCF: pip install 'mse-rt[openvino]'") from exc
    from ..logs import quiet_third_party

    quiet_third_party()  # NNCF sets its logger to INFO when imported
    data = nncf.Dataset([{input_name: c[None]} for c in clips])
    preset = {"mixed": nncf.QuantizationPreset.MIXED, "performance": nncf.QuantizationPreset.PERFORMANCE}[INT8_PRESET]
    return nncf.quantize(model, data, preset=preset, subset_size=len(clips),
                         fast_bias_correction=INT8_FAST_BIAS_CORRECTION,
                         ignored_scope=nncf.IgnoredScope(patterns=list(INT8_IGNORED), validate=False))


def write_backbone_ir(model, xml_path: str | Path, config: dict, calibration: dict, source_onnx_sha256: str) -> Path:
    """Save the int8 ``model`` as an mse_rt backbone IR (module docstring); returns ``xml_path``."""
    from ..runtime.backends.openvino.ir import write_ir

    meta = {"format": BACKBONE_IR_FORMAT, "version": __version__, "config": json.dumps(config, sort_keys=True),
            "precision": "int8", "recipe": json.dumps(int8_recipe(), sort_keys=True),
            "calibration": json.dumps(calibration, sort_keys=True), "source_onnx_sha256": source_onnx_sha256}
    return write_ir(model, xml_path, meta)


def read_backbone_ir(core, xml_path: str | Path, allow_unverified: bool = False):
    """(openvino.Model, config dict, metadata) of a backbone IR, both files checked against the digests
    in the xml first; :class:`ModelFileError` naming the file for a missing bin, a foreign IR, edited or
    damaged bytes, or no checksum (unless ``allow_unverified``)."""
    from ..model.checkpoint import file_sha256
    from ..runtime.backends.openvino.ir import (
        BIN_FIELD,
        CHECKSUM_FIELD,
        CHECKSUM_PLACEHOLDER,
        bin_path,
        read_ir_meta,
    )

    xml_path = Path(xml_path)
    weights = bin_path(xml_path)
    if not xml_path.is_file():
        raise ModelFileError(f"backbone IR not found: {xml_path}")
    if not weights.is_file():
        raise ModelFileError(f"{xml_path}: its weights file {weights.name} is missing (an IR is NAME.xml + NAME.bin)")
    meta = read_ir_meta(xml_path)
    if meta.get("format") != BACKBONE_IR_FORMAT:
        raise ModelFileError(f"{xml_path} is not an mse_rt backbone IR (format {meta.get('format') or 'missing'!r}; "
                             f"expected {BACKBONE_IR_FORMAT!r})")
    recorded = meta.get(CHECKSUM_FIELD, "")
    if recorded or not allow_unverified:
        data = xml_path.read_bytes()
        if len(recorded) != 64 or data.count(recorded.encode()) != 1:
            raise ModelFileError(f"{xml_path}: no valid integrity checksum in its metadata; write it again "
                                 "(or pass allow_unverified=True)")
        actual = hashlib.sha256(data.replace(recorded.encode(), CHECKSUM_PLACEHOLDER.encode())).hexdigest()
        if actual != recorded:
            raise ModelFileError(f"{xml_path}: corrupt backbone IR: the xml's sha256 {actual[:16]}... differs from "
                                 f"the {recorded[:16]}... recorded when it was written")
        if file_sha256(weights) != meta.get(BIN_FIELD):
            raise ModelFileError(f"{weights}: weights of another model or damaged (sha256 differs from the one "
                                 f"{xml_path.name} records); write the IR again")
    try:
        config = json.loads(meta["config"])
        calibration = json.loads(meta.get("calibration", "{}"))
    except (KeyError, ValueError) as exc:
        raise ModelFileError(f"{xml_path}: damaged backbone IR metadata ({exc})") from exc
    if meta.get("precision") != "int8" or not isinstance(config, dict) or "clip_shape" not in config:
        raise ModelFileError(f"{xml_path}: backbone IR metadata without an int8 precision or a clip shape")
    try:
        model = core.read_model(str(xml_path), str(weights))
    except Exception as exc:  # noqa: BLE001 - OpenVINO raises RuntimeError subclasses for any bad file
        raise ModelFileError(f"OpenVINO cannot read {xml_path}: {type(exc).__name__}: {exc}") from exc
    return model, config, {**meta, "calibration": calibration}
