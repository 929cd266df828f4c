"""ONNX export of the detector graph (network + dense decode), dynamic batch and length.

    from mse_rt.export import export_onnx
    export_onnx(("config.yaml", "ckpt.pth.tar"), "model.onnx")     # or export_onnx(model, ...)

Graph: inputs ``feats`` (B, C_in, T) float32 and ``lengths`` (B,) int64 (the mask is built
inside); outputs ``cls_prob``, ``seg_start``, ``seg_end`` (B, P, K) with P = sum_l T // 2^l
(see :mod:`mse_rt.model.detector_graph`). The file carries the full config and a description of its inputs
and outputs in ``metadata_props``, so the file alone is enough to run it. Before the file is
reported as written it passes ``onnx.checker``, strict shape inference and an ONNX Runtime run
compared with eager PyTorch at two lengths (one beyond ``max_seq_len`` when the buffer allows).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from mse_rt.config import config_to_json, load_config
from mse_rt.errors import ExportError
from mse_rt.io.files import atomic_output
from mse_rt.io.integrity import CHECKSUM_KEY, CHECKSUM_PLACEHOLDER
from mse_rt.model import MSETAD, build_model
from mse_rt.model.checkpoint import file_sha256, load_checkpoint
from mse_rt.model.detector_graph import INPUT_NAMES, OUTPUT_NAMES, DetectorGraph
from mse_rt.pipeline.padding import max_video_length, pad_policy_length
from mse_rt.version import __version__

from .formats import DEFAULT_OPSET, SUPPORTED_OPSETS

log = logging.getLogger("mse_rt.export")

ONNX_FORMAT_TAG = "mse_rt.onnx/1"
INPUTS_DOC = {
    "feats": "(B, C_in, T) float32 zero-padded clip features, channels first; T = the reference padded length",
    "lengths": "(B,) int64 valid steps of each video (mask = step < length)",
}
OUTPUTS_DOC = {
    "cls_prob": "(B, P, K) float32 sigmoid(cls) * mask, levels concatenated along P = sum_l T // 2^l",
    "seg_start": "(B, P, K) float32 segment start per (point, class), level-0 feature-grid steps",
    "seg_end": "(B, P, K) float32 segment end per (point, class), level-0 feature-grid steps",
}
# ONNX Runtime vs eager: max |diff| <= VALIDATE_TOL * max(1, max |eager|) per output.
VALIDATE_TOL = 1e-3


def _require_onnx():
    try:
        import onnx
    except ImportError as exc:
        raise ExportError("ONNX export needs the 'onnx' package: pip install 'mse-rt[onnx]'") from exc
    return onnx


def _resolve_model(model_or_paths, checkpoint_sha256: str | None = None,
                   allow_unverified: bool = False) -> tuple[MSETAD, str | None]:
    if isinstance(model_or_paths, MSETAD):
        # a private float32 CPU copy: exporting never moves or casts the caller's model (a CUDA
        # model used by an eager backend stays on the GPU)
        return copy.deepcopy(model_or_paths).cpu().float().eval(), checkpoint_sha256
    if isinstance(model_or_paths, (tuple, list)) and len(model_or_paths) == 2:
        cfg_path, ckpt_path = model_or_paths
        model = build_model(load_config(cfg_path))
        load_checkpoint(model, ckpt_path, sha256=checkpoint_sha256, allow_unverified=allow_unverified)
        return model, file_sha256(ckpt_path)
    raise ExportError("export needs an MSETAD model or a (config_path, checkpoint_path) pair, "
                      f"got {type(model_or_paths).__name__}")


def _example(cfg: dict, batch: int, T: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(batch, cfg["model"]["input_dim"], T, generator=g)
    lengths = torch.full((batch,), T, dtype=torch.int64)
    if batch > 1:  # padded videos in the batch exercise the mask
        lengths[1:] = torch.randint(1, T + 1, (batch - 1,), generator=g)
    return feats, lengths


def validation_lengths(cfg: dict, max_len: int | None) -> list[int]:
    """Padded lengths to check the exported graph at: max_seq_len, the example length, and one
    beyond max_seq_len when the point buffer allows."""
    m = cfg["model"]
    lens = [m["max_seq_len"], max_len or m["max_seq_len"]]
    longest = max_video_length(cfg)
    if longest > m["max_seq_len"]:
        lens.append(pad_policy_length(min(longest, m["max_seq_len"] + 1), cfg))
    return sorted(set(lens))


def compare_outputs(got: list[np.ndarray], ref: list[np.ndarray], tol: float = VALIDATE_TOL) -> dict[str, float]:
    """Relative max error per output: max |got - ref| / max(1, max |ref|)."""
    errs = {}
    for name, g, r in zip(OUTPUT_NAMES, got, ref):
        if g.shape != r.shape:
            raise ExportError(f"output {name}: ONNX shape {g.shape} vs eager {r.shape}")
        errs[name] = float(np.abs(g - r).max() / max(1.0, float(np.abs(r).max()))) if r.size else 0.0
    return errs


# fp16 graph vs eager fp32: looser, it measures the precision cost rather than a bug
VALIDATE_TOL_FP16 = 3e-2


def export_onnx(model_or_paths, path: str | Path, *, opset: int | None = None, dynamic: bool = True,
                batch: int = 1, max_len: int | None = None, validate: bool = True, precision: str = "fp32",
                checkpoint_sha256: str | None = None, allow_unverified: bool = False) -> Path:
    """Export the detector graph to ONNX and validate it; returns the written path.

    ``model_or_paths``: an :class:`~mse_rt.model.MSETAD`, or a (config path, checkpoint path)
    pair loaded with :func:`~mse_rt.model.checkpoint.load_checkpoint`. The file records the
    checkpoint's sha256 (``mse_rt.checkpoint_sha256``): for a pair, that of the checkpoint file,
    which must equal ``checkpoint_sha256`` when given (the way to accept a legacy, non-zip
    checkpoint; ``allow_unverified=True`` accepts one unchecked); for a model, ``checkpoint_sha256``
    itself (the export cache records the checkpoint it loaded the model from), else empty.

    ``opset``: one of ``SUPPORTED_OPSETS`` (default 17). ``dynamic``: batch and length axes
    dynamic (default); with ``dynamic=False`` the graph is fixed to (``batch``, ``max_len``).
    ``max_len``: the example padded length (default ``max_seq_len``). ``precision``: "fp32", or
    "fp16" (weights and activations in half precision; inputs / outputs stay float32 and the
    numerically sensitive parts, softmax, LayerNorm / GroupNorm statistics and decode, run in
    float32 inside the graph: the input of TensorRT strongly typed fp16 engines).
    """
    if precision not in ("fp32", "fp16"):
        raise ExportError(f"precision must be 'fp32' or 'fp16', got {precision!r}")
    onnx = _require_onnx()
    opset = DEFAULT_OPSET if opset is None else opset
    if opset not in SUPPORTED_OPSETS:
        raise ExportError(f"unsupported opset {opset}; supported: {', '.join(map(str, SUPPORTED_OPSETS))}")
    if batch < 1:
        raise ExportError(f"batch must be >= 1, got {batch}")
    path = Path(path)
    model, ckpt_sha = _resolve_model(model_or_paths, checkpoint_sha256, allow_unverified)
    cfg = model.cfg
    T = max_len or cfg["model"]["max_seq_len"]
    if pad_policy_length(T, cfg) != T:
        raise ExportError(f"max_len {T} is not a padded length the reference uses "
                          f"(next one: {pad_policy_length(T, cfg)})")
    ref_graph = DetectorGraph(model).eval()
    graph = DetectorGraph(copy.deepcopy(model).half()).eval() if precision == "fp16" else ref_graph
    # The trace only needs a valid length: with dynamic axes a short one gives the same graph
    # (validation below runs it at the real lengths). It matters for fp16, whose trace runs the
    # half-precision forward on the CPU: 65 s at THUMOS size and T = 2304, 4 s at T = 128.
    trace_T = T
    if precision == "fp16" and dynamic:
        trace_T = min(T, 4 * cfg["model"]["scale_factor"] ** cfg["model"]["backbone_arch"][2])
    feats, lengths = _example(cfg, batch, trace_T)
    dynamic_axes = None
    if dynamic:
        dynamic_axes = {"feats": {0: "batch", 2: "time"}, "lengths": {0: "batch"}}
        dynamic_axes.update({name: {0: "batch", 1: "points"} for name in OUTPUT_NAMES})
    if path.is_dir():
        raise ExportError(f"output {path} is a directory; give a file name such as {path / 'model.onnx'}")
    with atomic_output(path, what="ONNX file") as tmp:
        t0 = time.perf_counter()
        try:
            with torch.no_grad(), warnings.catch_warnings():
                # the tracer's notes on shape arithmetic and slice folding are expected here:
                # every traced length is checked against eager below
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                warnings.filterwarnings("ignore", message="Constant folding")
                warnings.filterwarnings("ignore", category=DeprecationWarning)
                torch.onnx.export(graph, (feats, lengths), str(tmp), input_names=list(INPUT_NAMES),
                                  output_names=list(OUTPUT_NAMES), dynamic_axes=dynamic_axes,
                                  opset_version=opset, do_constant_folding=True, dynamo=False)
        except Exception as exc:
            raise ExportError(f"torch.onnx.export failed (opset {opset}): {type(exc).__name__}: {exc}") from exc
        log.info("traced and exported in %.1f s (opset %d, dynamic=%s)", time.perf_counter() - t0, opset, dynamic)
        proto = onnx.load(str(tmp))
        meta = {
            "mse_rt.format": ONNX_FORMAT_TAG,
            "mse_rt.version": __version__,
            "mse_rt.config": config_to_json(cfg),
            "mse_rt.inputs": json.dumps(INPUTS_DOC),
            "mse_rt.outputs": json.dumps(OUTPUTS_DOC),
            "mse_rt.precision": precision,
            "mse_rt.dynamic": json.dumps(dynamic),
            "mse_rt.static_shape": json.dumps([batch, T]),
            "mse_rt.checkpoint_sha256": ckpt_sha or "",
        }
        meta[CHECKSUM_KEY] = CHECKSUM_PLACEHOLDER
        for key, value in meta.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        proto.doc_string = "MSE-TAD detector graph exported by mse_rt " + __version__
        onnx.save(proto, str(tmp))
        _seal(tmp)
        if validate:
            validate_onnx(tmp, ref_graph, cfg, batch=batch if not dynamic else 2,
                          lengths=validation_lengths(cfg, max_len) if dynamic else [T],
                          tol=VALIDATE_TOL if precision == "fp32" else VALIDATE_TOL_FP16)
    log.info("wrote %s (%.1f MB)", path, path.stat().st_size / 1e6)
    return path


def _seal(path: Path) -> None:
    """Replace the checksum placeholder in the written file by the sha256 of the whole file
    (computed with the placeholder in place): same length, so the protobuf stays valid."""
    data = path.read_bytes()
    if data.count(CHECKSUM_PLACEHOLDER.encode()) != 1:
        raise ExportError(f"{path}: cannot place the integrity checksum (placeholder not found exactly once)")
    digest = hashlib.sha256(data).hexdigest()
    path.write_bytes(data.replace(CHECKSUM_PLACEHOLDER.encode(), digest.encode()))


def validate_onnx(path: str | Path, graph: DetectorGraph, cfg: dict, batch: int = 2,
                  lengths: list[int] | None = None, tol: float = VALIDATE_TOL) -> dict[str, float]:
    """checker + strict shape inference + ONNX Runtime vs eager at each padded length; returns errors.

    When ONNX Runtime's CPU provider lacks a kernel the graph needs (fp16 graphs), the run is
    skipped with a log line and an empty dict is returned."""
    onnx = _require_onnx()
    t0 = time.perf_counter()
    try:
        onnx.checker.check_model(str(path), full_check=True)
        onnx.shape_inference.infer_shapes(onnx.load(str(path)), check_type=True, strict_mode=True)
    except Exception as exc:
        raise ExportError(f"exported graph {path} is invalid: {type(exc).__name__}: {exc}") from exc
    try:
        import onnxruntime as ort

        from mse_rt.runtime.backends.onnxruntime import session_options
    except ImportError as exc:
        raise ExportError("validating the export needs onnxruntime: pip install 'mse-rt[onnx]' "
                          "(or pass validate=False)") from exc
    try:
        sess = ort.InferenceSession(str(path), session_options(), providers=["CPUExecutionProvider"])
    except Exception as exc:
        if "NOT_IMPLEMENTED" in str(exc) or "Could not find an implementation" in str(exc):
            log.warning("ONNX Runtime (CPU) has no kernel for part of %s (%s); validated by checker and shape "
                        "inference only", path, str(exc).splitlines()[0][:160])
            return {}
        raise ExportError(f"ONNX Runtime cannot load the exported graph: {exc}") from exc
    worst: dict[str, float] = {}
    for T in lengths or [cfg["model"]["max_seq_len"]]:
        feats, lens = _example(cfg, batch, T, seed=T)
        got = sess.run(list(OUTPUT_NAMES), {"feats": feats.numpy(), "lengths": lens.numpy()})
        with torch.inference_mode():
            ref = [t.numpy() for t in graph(feats, lens)]
        errs = compare_outputs(got, ref)
        for k, v in errs.items():
            worst[k] = max(worst.get(k, 0.0), v)
        bad = {k: v for k, v in errs.items() if v > tol}
        if bad:
            raise ExportError(f"ONNX Runtime disagrees with eager at (B={batch}, T={T}): " +
                              ", ".join(f"{k} rel err {v:.2e} > {tol:.0e}" for k, v in bad.items()))
    log.info("validated in %.1f s: checker, shape inference, ONNX Runtime vs eager at T=%s, max rel err %s",
             time.perf_counter() - t0, lengths, {k: f"{v:.1e}" for k, v in worst.items()})
    return worst


def read_onnx_metadata(path: str | Path) -> dict[str, str]:
    """The mse_rt metadata_props of an exported file (empty dict for a foreign graph)."""
    onnx = _require_onnx()
    proto = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props if p.key.startswith("mse_rt.")}
