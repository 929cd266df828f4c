"""The int8 recipe for OpenVINO: NNCF post-training quantization of the mse_rt graph.

Transformer preset without SmoothQuant; the LayerNorm-statistic MatMuls and the heads' last
convs stay float (``INT8_IGNORED``: the default preset quantizes the LayerNorm arithmetic and
loses several mAP points); calibrated on the user's feature files, padded as the reference pads.
Accuracy per recipe and calibration set: docs/cpu_precisions.md.
"""

from __future__ import annotations

from ....errors import BackendError

BIAS_CORRECTIONS = ("fast", "full")


# NNCF ignored scope of the int8 recipe (regular expressions over OpenVINO node names, which keep
# the ONNX exporter's module paths): LayerNorm statistics and the heads' last convs
INT8_IGNORED = [r".*norm[^/]*/MatMul.*", r".*/ln(_1)?/MatMul.*", r".*_head/cls_head/conv/Conv.*",
                r".*offset_head/cls_head/conv/Conv.*"]


def recipe(bias_correction: str) -> dict:
    """The int8 recipe's settings, as recorded in a saved IR's metadata."""
    return {"tool": "nncf.quantize", "preset": "transformer (ModelType.TRANSFORMER)", "smooth_quant": "off",
            "ignored_scope": list(INT8_IGNORED), "bias_correction": bias_correction,
            "layernorm_means": "1x1 channel-sum convs, float (rewrites.layernorm_means_as_convs)",
            "bf16_body": "marked at compile time on BF16 CPUs (rewrites.mark_body_reduced_precision)"}


def quantize_model(model, cfg: dict, calib, calib_videos: int = 32, bias_correction: str = "fast"):
    """(int8 OpenVINO model, calibration summary) of an OpenVINO ``model`` of the mse_rt graph.

    ``calib``: feature files / folders (or (T, C) arrays), the first ``calib_videos`` used;
    ``bias_correction``: NNCF's "fast" or "full" (same speed, full costs calibration time). The
    summary: ``videos``, ``padded_lengths``, ``bias_correction``, ``calib_sha256`` (digest of the
    calibration files' content, in the order used: :func:`mse_rt.export.quantize.calibration_digest`).
    """
    try:
        import nncf
    except ImportError as exc:
        raise BackendError("precision='int8' with OpenVINO needs NNCF: pip install 'mse-rt[openvino]'") from exc
    from ....logs import quiet_third_party

    quiet_third_party()  # NNCF sets its logger to INFO when imported: one line per float node otherwise
    if calib is None:
        raise BackendError("precision='int8' needs calibration data: calib=[feature files or folders]")
    if bias_correction not in BIAS_CORRECTIONS:
        raise BackendError(f"bias_correction must be one of {BIAS_CORRECTIONS}, got {bias_correction!r}")
    from ....export.quantize import calibration_digest, calibration_inputs

    feeds = calibration_inputs(calib, cfg, calib_videos)
    summary = {"videos": len(feeds), "padded_lengths": sorted({int(f["feats"].shape[2]) for f in feeds}),
               "bias_correction": bias_correction, "calib_sha256": calibration_digest(calib, calib_videos)}
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters

    # SmoothQuant off: on the q / v projection MatMuls it cost demo mAP (docs/cpu_precisions.md)
    advanced = AdvancedQuantizationParameters(smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=-1))
    quantized = nncf.quantize(model, nncf.Dataset(feeds), model_type=nncf.ModelType.TRANSFORMER,
                              subset_size=len(feeds), fast_bias_correction=bias_correction == "fast",
                              advanced_parameters=advanced,
                              ignored_scope=nncf.IgnoredScope(patterns=INT8_IGNORED, validate=False))
    return quantized, summary
