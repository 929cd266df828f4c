"""Saved OpenVINO models (``mse-rt quantize --engine openvino``): quantize once, ship the file.

    from mse_rt.export.openvino import quantize_openvino
    quantize_openvino("model.onnx", "model_int8.xml", calib=["feats/"])      # writes model_int8.xml + .bin

The int8 IR is the OpenVINO backend's in-process int8 model (:mod:`mse_rt.runtime.backends.openvino`):
the LayerNorm-mean rewrite, then NNCF's transformer preset with SmoothQuant off and the recipe's
ignored scope, calibrated on the user's feature files (padded as the reference pads), bias
correction "full" by default here (a one-off cost; the in-process default is "fast" because it
is paid at every start; accuracy of both: docs/cpu_precisions.md). The bf16 body marks are not
in the file: the backend applies them when it compiles a shape, as for an ONNX file.
``precision="fp32"`` / ``"bf16"`` save the rewritten float model instead (no calibration).

The file format, metadata and checksums: :mod:`mse_rt.runtime.backends.openvino.ir`. Running an
int8 IR needs no calibration data: ``Detector.from_file("model_int8.xml")``.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from mse_rt.errors import ExportError
from mse_rt.version import __version__

log = logging.getLogger("mse_rt.export")

DEFAULT_BIAS_CORRECTION = "full"


def quantize_openvino(model_path: str | Path, out_path: str | Path, calib=None, precision: str = "int8",
                      max_videos: int = 32, bias_correction: str = DEFAULT_BIAS_CORRECTION,
                      allow_unverified: bool = False) -> Path:
    """Write the mse_rt OpenVINO IR (``out_path`` = NAME.xml, plus NAME.bin) of the fp32 mse_rt ONNX
    file ``model_path``; returns ``out_path``.

    ``precision``: "int8" (calibrated on ``calib``: feature files, folders of them, or (T, C)
    arrays, the first ``max_videos`` used; ``bias_correction`` "full" or "fast"), or "fp32" /
    "bf16" (the float model; ``calib`` must be None). Before any work: the output may not be one
    of the inputs (the model, a calibration file), and the source is checked as ``detect`` checks
    it (:func:`mse_rt.export.quantize.read_fp32_source`). Written atomically, checksummed, read back.
    """
    from mse_rt.io.files import check_not_an_input, check_output_path
    from mse_rt.model.detector_graph import INPUT_NAMES
    from mse_rt.runtime.backends.openvino.ir import IR_PRECISIONS, bin_path, read_ir, write_ir
    from mse_rt.runtime.backends.openvino.loader import import_openvino
    from mse_rt.runtime.backends.openvino.quantize import BIAS_CORRECTIONS, quantize_model
    from mse_rt.runtime.backends.openvino.rewrites import layernorm_means_as_convs

    from .quantize import calibration_files, read_fp32_source

    model_path, out_path = Path(model_path), Path(out_path)
    if precision not in IR_PRECISIONS:
        raise ExportError(f"precision must be one of {IR_PRECISIONS}, got {precision!r}")
    if bias_correction not in BIAS_CORRECTIONS:
        raise ExportError(f"bias_correction must be one of {BIAS_CORRECTIONS}, got {bias_correction!r}")
    if out_path.suffix != ".xml":
        raise ExportError(f"an OpenVINO IR is written as NAME.xml + NAME.bin: give -o NAME.xml, got {out_path}")
    if precision == "int8" and calib is None:
        raise ExportError("an int8 IR needs calibration data: calib=[feature files or folders] (--calib)")
    if precision != "int8" and calib is not None:
        raise ExportError(f"a {precision} IR is not calibrated: drop calib (--calib)")
    inputs = [model_path, *(calibration_files(calib) if calib is not None else [])]
    for out in (out_path, bin_path(out_path)):
        check_not_an_input(out, inputs, what="OpenVINO IR output")
        check_output_path(out, what="OpenVINO IR output")
    cfg, meta = read_fp32_source(model_path, allow_unverified)
    ov = import_openvino()
    t0 = time.perf_counter()
    core = ov.Core()
    try:
        model = core.read_model(str(model_path))
    except Exception as exc:  # noqa: BLE001 - OpenVINO raises RuntimeError subclasses
        raise ExportError(f"OpenVINO cannot read {model_path}: {type(exc).__name__}: {exc}") from exc
    if [i.get_any_name() for i in model.inputs] != list(INPUT_NAMES):
        raise ExportError(f"{model_path}: inputs {[i.get_any_name() for i in model.inputs]} are not those of an "
                          "mse_rt graph")
    n_convs = layernorm_means_as_convs(model)
    summary = None
    if precision == "int8":
        model, summary = quantize_model(model, cfg, calib, max_videos, bias_correction)
    write_ir(model, out_path, _ir_meta(meta, precision, n_convs, summary))
    read_ir(core, out_path)  # verified and readable, or the error names the file now
    log.info("wrote %s + %s (%s) in %.1f s", out_path, bin_path(out_path).name, precision, time.perf_counter() - t0)
    return out_path


def _ir_meta(onnx_meta: dict[str, str], precision: str, layernorm_mean_convs: int, calibration: dict | None) -> dict:
    """The IR's mse_rt metadata (:mod:`mse_rt.runtime.backends.openvino.ir`) from the source ONNX
    file's metadata and what was done to it."""
    from mse_rt.io.integrity import CHECKSUM_KEY
    from mse_rt.runtime.backends.openvino.ir import IR_FORMAT_TAG
    from mse_rt.runtime.backends.openvino.quantize import recipe

    meta = {"format": IR_FORMAT_TAG, "version": __version__, "config": onnx_meta["mse_rt.config"],
            "precision": precision, "checkpoint_sha256": onnx_meta.get("mse_rt.checkpoint_sha256", ""),
            "source_onnx_sha256": onnx_meta.get(CHECKSUM_KEY, ""), "layernorm_mean_convs": str(layernorm_mean_convs)}
    if calibration is not None:
        meta["recipe"] = json.dumps(recipe(calibration["bias_correction"]))
        meta["calibration"] = json.dumps(calibration)
    return meta


def save_openvino_ir(backend, out_path: str | Path) -> Path:
    """Write the model an :class:`~mse_rt.runtime.backends.openvino.OpenVinoBackend` built from an
    mse_rt ONNX file runs (its int8 model when it quantized in process, else the rewritten float
    model with the precision it runs) as an mse_rt IR: the in-process model, saved as it is, so
    the file gives the same detections without calibrating again. Returns ``out_path``."""
    from mse_rt.io.files import check_not_an_input
    from mse_rt.runtime.backends.openvino.ir import bin_path, read_ir, write_ir

    if getattr(backend, "source", None) != "onnx":
        raise ExportError("save_openvino_ir saves a backend built from an mse_rt ONNX file (a saved IR is already "
                          "a file: copy it)")
    out_path = Path(out_path)
    for out in (out_path, bin_path(out_path)):
        check_not_an_input(out, [backend.path], what="OpenVINO IR output")
    precision = "int8" if backend.calibration is not None else backend.precision
    write_ir(backend.model, out_path, _ir_meta(backend.meta, precision, backend.layernorm_mean_convs,
                                                  backend.calibration))
    read_ir(backend.core, out_path)
    log.info("wrote %s + %s (%s)", out_path, bin_path(out_path).name, precision)
    return out_path


def ir_cache_key(ckpt_sha256: str, cfg_json: str, precision: str, calib=None, max_videos: int = 32,
                 bias_correction: str = DEFAULT_BIAS_CORRECTION) -> str:
    """Export-cache key of a saved IR made from a checkpoint: the checkpoint's sha256, the config,
    the mse_rt version, the recipe (its ignored scope, bias correction, calibration videos) and
    the calibration files' content (:func:`mse_rt.export.quantize.calibration_digest`)."""
    import hashlib

    from mse_rt.runtime.backends.openvino.quantize import recipe

    parts = [ckpt_sha256, cfg_json, __version__, precision]
    if precision == "int8":
        from .quantize import calibration_digest

        parts += [json.dumps(recipe(bias_correction), sort_keys=True), str(max_videos),
                  calibration_digest(calib, max_videos)]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]
