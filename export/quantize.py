"""Static int8 quantization of an mse_rt ONNX graph for ONNX Runtime (``mse-rt quantize``).

    from mse_rt.export.quantize import quantize_onnx
    quantize_onnx("model.onnx", "model.int8.onnx", calib=["a.npy", "b.npy", ...])

QDQ format, U8 activations and S8 per-channel weights: the combination ONNX Runtime runs with
VNNI int8 kernels (S8 activations and dynamic quantization were slower: docs/cpu_precisions.md).
What stays float was decided by measurement (demo mAP, same page):

- only dense convolutions and the weight GEMMs are quantized (embedding, q / k / v / projection
  1x1 convs, the q / v ones exported as MatMuls with a weight, MLP, head towers): they hold
  nearly all the FLOPs;
- every other MatMul stays float: the LayerNorm statistics (means as GEMMs with a constant
  1/C row) and the attention products (activation x activation, softmax probabilities);
- depthwise convolutions (the LDM branches, the AFM gates ``fc`` / ``global_fc``, the attention's
  depthwise q / k / v convs) stay float: few FLOPs, and the gates multiply whole feature maps;
- the last conv of every head (classification, start, end, offsets) stays float: its output is
  the score / boundary itself.

Calibration uses the user's own feature files, padded by the reference policy, run at their
padded length. The recipe, the calibration summary and the source file's checksum travel in the
metadata (``mse_rt.quantization``); the output is an ordinary mse_rt ONNX file (checksummed) that
``Detector.from_onnx`` runs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from mse_rt.errors import ExportError, InputError, ModelFileError

log = logging.getLogger("mse_rt.export")

RECIPE = "mse_rt.int8/2: QDQ, U8 activations (MinMax), S8 per-channel weights; dense Conv and weight MatMul " \
         "only; LayerNorm / attention MatMul, depthwise Conv and the heads' last convs in float32"
_HEAD_LAST = ("cls_head/cls_head", "start_head/cls_head", "end_head/cls_head", "offset_head/cls_head",
              "reg_head/offset")


def _require_ort_quant():
    try:
        import onnx  # noqa: F401
        from onnxruntime import quantization
    except ImportError as exc:
        raise ExportError("int8 quantization needs onnx and onnxruntime: pip install 'mse-rt[onnx]'") from exc
    return quantization


def calibration_items(calib) -> list[tuple[str, Path | np.ndarray]]:
    """(name, file or (T, C) array) of every calibration video, in the order used: the given
    files / arrays in order, a folder's .npy files sorted by path. :class:`InputError` for a
    folder without .npy files or an empty set."""
    items: list = []
    for c in ([calib] if isinstance(calib, (str, Path, np.ndarray)) else list(calib)):
        if isinstance(c, np.ndarray):
            items.append(("array", c))
            continue
        p = Path(c)
        if p.is_dir():
            files = sorted(p.rglob("*.npy"))
            if not files:
                raise InputError(f"calibration folder {p} holds no .npy feature files")
            items += [(str(f), f) for f in files]
        else:
            items.append((str(p), p))
    if not items:
        raise InputError("no calibration data: give feature files or folders of them")
    return items


def calibration_digest(calib, max_videos: int = 32) -> str:
    """sha256 over the content of the first ``max_videos`` calibration videos, in the order used
    (a file's bytes; an array's dtype, shape and bytes): the same data gives the same digest
    whatever the paths, and any changed, added or reordered video changes it."""
    h = hashlib.sha256()
    for name, src in calibration_items(calib)[:max_videos]:
        if isinstance(src, np.ndarray):
            a = np.ascontiguousarray(src)
            part = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode() + a.tobytes()).hexdigest()
        else:
            try:
                part = hashlib.sha256(src.read_bytes()).hexdigest()
            except OSError as exc:
                raise InputError(f"cannot read calibration file {name}: {exc.strerror or exc}") from exc
        h.update(part.encode())
    return h.hexdigest()


def calibration_inputs(calib, cfg: dict, max_videos: int = 32) -> list[dict[str, np.ndarray]]:
    """Feeds {feats (1, C, T_pad), lengths (1,)} from feature files / folders / (T, C) arrays.

    Raises :class:`InputError` for an empty set, wrong channel count, NaN / Inf (named per file).
    """
    from mse_rt.io.features import load_feature_file
    from mse_rt.pipeline.inputs import check_features
    from mse_rt.pipeline.padding import pad_batch, pad_policy_length

    feeds = []
    for name, src in calibration_items(calib)[:max_videos]:
        arr = src if isinstance(src, np.ndarray) else load_feature_file(src)
        x = check_features(arr, cfg, name=f"calibration {name}")
        T = pad_policy_length(x.shape[1], cfg)
        feats, lengths = pad_batch([x], T)
        feeds.append({"feats": feats.numpy(), "lengths": lengths.numpy()})
    return feeds


def calibration_files(calib) -> list[Path]:
    """Every calibration file a ``calib`` argument names (folders expanded; arrays skipped): the
    paths an output must not overwrite."""
    out = []
    for c in ([calib] if isinstance(calib, (str, Path, np.ndarray)) else list(calib)):
        if isinstance(c, np.ndarray):
            continue
        p = Path(c)
        out += sorted(p.rglob("*.npy")) if p.is_dir() else [p]
    return out


def read_fp32_source(model_path: str | Path, allow_unverified: bool = False) -> tuple[dict, dict[str, str]]:
    """(config, mse_rt metadata) of the fp32 mse_rt ONNX file to quantize, checked as ``detect``
    checks a model file before any work: readable (a truncated file gives a one-line
    :class:`ModelFileError`), mse_rt metadata, its integrity checksum (a file without one is
    refused unless ``allow_unverified``), fp32 and not yet quantized."""
    from mse_rt.config import config_from_json
    from mse_rt.io.integrity import CHECKSUM_KEY, verify_onnx_checksum

    from .onnx import _require_onnx

    onnx = _require_onnx()
    model_path = Path(model_path)
    if not model_path.is_file():
        raise ModelFileError(f"model to quantize not found: {model_path}")
    try:
        proto = onnx.load(str(model_path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError and friends
        raise ModelFileError(f"cannot read {model_path} as ONNX: truncated, damaged or not an ONNX file "
                             "(the protobuf does not parse)") from exc
    meta = {p.key: p.value for p in proto.metadata_props if p.key.startswith("mse_rt.")}
    if "mse_rt.config" not in meta:
        raise ExportError(f"{model_path} is not an mse_rt ONNX graph (no metadata); export it with mse-rt export")
    verify_onnx_checksum(model_path, meta.get(CHECKSUM_KEY), allow_unverified=allow_unverified)
    if meta.get("mse_rt.precision", "fp32") != "fp32":
        raise ExportError(f"{model_path} is already a {meta['mse_rt.precision']} graph; quantize the fp32 export")
    if "mse_rt.quantization" in meta:
        raise ExportError(f"{model_path} is already quantized")
    try:
        cfg = config_from_json(meta["mse_rt.config"])
    except ValueError as exc:
        raise ModelFileError(f"{model_path}: its mse_rt.config metadata is not a valid config: {exc}") from exc
    return cfg, meta


def nodes_kept_float(model) -> list[str]:
    """Names of the Conv / MatMul nodes the recipe leaves in float32 (see the module docstring)."""
    groups = {}
    for n in model.graph.node:
        if n.op_type == "Conv":
            groups[n.name] = next((a.i for a in n.attribute if a.name == "group"), 1)
    weights = {i.name for i in model.graph.initializer}
    keep = []
    for n in model.graph.node:
        if n.op_type == "MatMul":
            # a projection: a weight initializer as right operand, outside the LayerNorms
            projection = n.input[1] in weights and "norm" not in n.name and "/ln" not in n.name
            if not projection:
                keep.append(n.name)
        elif n.op_type == "Conv" and (groups[n.name] > 1 or any(h in n.name for h in _HEAD_LAST)):
            keep.append(n.name)
    return keep


def quantize_onnx(model_path: str | Path, out_path: str | Path, calib, max_videos: int = 32,
                  allow_unverified: bool = False) -> Path:
    """Quantize an mse_rt fp32 ONNX graph to int8 QDQ with calibration from ``calib`` (feature
    files, folders of them, or (T, C) arrays); returns the written path (atomic, checksummed).
    The source is checked first (:func:`read_fp32_source`); an output that is one of the inputs
    is refused before any work."""
    q = _require_ort_quant()
    import onnx
    import onnxruntime as ort

    from mse_rt.io.files import atomic_output, check_not_an_input
    from mse_rt.io.integrity import CHECKSUM_KEY, CHECKSUM_PLACEHOLDER

    from .onnx import _seal

    model_path, out_path = Path(model_path), Path(out_path)
    if out_path.is_dir():
        raise ExportError(f"output {out_path} is a directory; give a file name")
    check_not_an_input(out_path, [model_path, *calibration_files(calib)], what="quantized model")
    cfg, meta = read_fp32_source(model_path, allow_unverified)
    t0 = time.perf_counter()
    feeds = calibration_inputs(calib, cfg, max_videos)

    class _Reader(q.CalibrationDataReader):
        def __init__(self):
            self._it = iter(feeds)

        def get_next(self):
            return next(self._it, None)

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        q.quant_pre_process(str(model_path), str(pre), skip_symbolic_shape=True)
        model = onnx.load(str(pre))
        exclude = nodes_kept_float(model)
        quantized = Path(tmp) / "q.onnx"
        q.quantize_static(str(pre), str(quantized), _Reader(), quant_format=q.QuantFormat.QDQ,
                          op_types_to_quantize=["Conv", "MatMul"], per_channel=True,
                          activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8,
                          nodes_to_exclude=exclude, calibrate_method=q.CalibrationMethod.MinMax,
                          extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
        proto = onnx.load(str(quantized))
        n_q = sum(1 for n in proto.graph.node if n.op_type == "QuantizeLinear")
        lengths = sorted({int(f["feats"].shape[2]) for f in feeds})
        summary = {"recipe": RECIPE, "calibration_videos": len(feeds), "padded_lengths": lengths,
                   "calib_sha256": calibration_digest(calib, max_videos), "quantize_nodes": n_q,
                   "float_nodes": len(exclude), "source_sha256": meta.get(CHECKSUM_KEY, "")}
        for p in list(proto.metadata_props):
            if p.key == CHECKSUM_KEY:
                proto.metadata_props.remove(p)
        for key, value in {**meta, "mse_rt.precision": "int8", "mse_rt.quantization": json.dumps(summary),
                           CHECKSUM_KEY: CHECKSUM_PLACEHOLDER}.items():
            if key == CHECKSUM_KEY and value != CHECKSUM_PLACEHOLDER:
                continue
            found = [p for p in proto.metadata_props if p.key == key]
            if found:
                found[0].value = value
            else:
                e = proto.metadata_props.add()
                e.key, e.value = key, value
        with atomic_output(out_path, what="quantized ONNX file") as tmp_out:
            onnx.save(proto, str(tmp_out))
            _seal(tmp_out)
            ort.InferenceSession(str(tmp_out), providers=["CPUExecutionProvider"])  # loads: refuse a broken file
    log.info("quantized %s -> %s in %.1f s (%d calibration videos, %d quantized tensors, %d nodes kept float)",
             model_path, out_path, time.perf_counter() - t0, len(feeds), n_q, len(exclude))
    return out_path
