"""ONNX Runtime backend: runs a graph written by :func:`mse_rt.export.export_onnx`.

CPU execution provider by default. With ``onnxruntime-gpu`` installed, pass
``providers=["CUDAExecutionProvider", "CPUExecutionProvider"]`` (or ``("CUDAExecutionProvider",
{"device_id": 0, ...})`` tuples); CUDA inputs are then bound by address through IO binding
(zero copy from torch CUDA tensors) and outputs stay on the GPU.

On CPU, start the process with ``OMP_WAIT_POLICY=PASSIVE`` (before torch is imported): torch's
idle OpenMP threads (decode runs in torch) otherwise spin beside ONNX Runtime's own thread pool
(see :mod:`mse_rt.runtime.backends.openvino` for the measurement).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ...config import config_from_json
from ...errors import BackendError, InputError, ModelFileError
from ...io.integrity import CHECKSUM_KEY, verify_onnx_checksum
from ...model.detector_graph import INPUT_NAMES, OUTPUT_NAMES
from .base import Backend

_OPT_LEVELS = ("disable", "basic", "extended", "all")
GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")


def _import_ort():
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise BackendError("the onnxruntime backend needs ONNX Runtime: pip install 'mse-rt[onnx]' "
                           "(onnxruntime, or onnxruntime-gpu for CUDA)") from exc
    return ort


def session_options(intra_op_threads: int | None = None, inter_op_threads: int | None = None,
                    graph_optimization: str = "all"):
    """ONNX Runtime SessionOptions from plain values (intra-op threads: None = ``MSE_RT_THREADS``,
    else ORT's default: :func:`mse_rt.runtime.options.default_threads`)."""
    from ..options import default_threads

    ort = _import_ort()
    intra_op_threads = default_threads(intra_op_threads)
    if graph_optimization not in _OPT_LEVELS:
        raise BackendError(f"graph_optimization must be one of {_OPT_LEVELS}, got {graph_optimization!r}")
    so = ort.SessionOptions()
    if intra_op_threads is not None:
        so.intra_op_num_threads = int(intra_op_threads)
    if inter_op_threads is not None:
        so.inter_op_num_threads = int(inter_op_threads)
    so.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[graph_optimization]
    return so


def is_mse_rt_meta(meta: dict) -> bool:
    """True when an ONNX file's metadata map is that of an mse_rt export."""
    return "mse_rt.config" in meta and meta.get("mse_rt.format", "").startswith("mse_rt.onnx/")


def read_session_config(sess, path: str | Path = "the ONNX file") -> dict:
    """The mse_rt config stored in a session's model metadata; :class:`ModelFileError` naming
    ``path`` for a foreign graph or an invalid config."""
    meta = sess.get_modelmeta().custom_metadata_map
    if not is_mse_rt_meta(meta):
        raise ModelFileError(f"{path} is not an mse_rt ONNX graph (no mse_rt metadata): export one with "
                             "`mse-rt export --format onnx` or mse_rt.export.export_onnx")
    try:
        return config_from_json(meta["mse_rt.config"])
    except ValueError as exc:  # json.JSONDecodeError, ConfigError
        raise ModelFileError(f"{path}: the mse_rt.config metadata is not a valid config: {exc}") from exc


class OnnxRuntimeBackend(Backend):
    """``OnnxRuntimeBackend(path, providers=None, intra_op_threads=None, inter_op_threads=None,
    graph_optimization="all", allow_slow_int8=False, allow_unverified=False)``; the config comes
    from the file's metadata (:attr:`cfg`). The file's integrity checksum is verified
    (:mod:`mse_rt.io.integrity`; a file without one is refused unless ``allow_unverified=True``;
    :attr:`verified` says whether it was checked). An int8 graph (``mse-rt quantize``) on a CPU
    without int8 dot-product instructions (VNNI, :mod:`mse_rt.runtime.cpu`) raises unless
    ``allow_slow_int8=True``."""

    name = "onnxruntime"

    def __init__(self, path: str | Path, providers: list | None = None, intra_op_threads: int | None = None,
                 inter_op_threads: int | None = None, graph_optimization: str = "all",
                 allow_slow_int8: bool = False, allow_unverified: bool = False) -> None:
        ort = _import_ort()
        path = Path(path)
        if not path.is_file():
            raise BackendError(f"ONNX file not found: {path}")
        providers = providers or ["CPUExecutionProvider"]
        available = ort.get_available_providers()
        for p in providers:
            pname = p[0] if isinstance(p, (tuple, list)) else p
            if pname not in available:
                hint = " (install onnxruntime-gpu)" if pname == "CUDAExecutionProvider" else ""
                raise BackendError(f"ONNX Runtime provider {pname} is not available here{hint}; available: {available}")
        so = session_options(intra_op_threads, inter_op_threads, graph_optimization)
        try:
            self.session = ort.InferenceSession(str(path), sess_options=so, providers=providers)
        except Exception as exc:
            raise ModelFileError(f"ONNX Runtime cannot load {path}: {type(exc).__name__}: {exc}") from exc
        meta = self.session.get_modelmeta().custom_metadata_map
        if not is_mse_rt_meta(meta):
            read_session_config(self.session, path)  # raises, naming the file
        # integrity first: a changed byte may sit in the config metadata as well as in a weight
        self.verified = verify_onnx_checksum(path, meta.get(CHECKSUM_KEY), allow_unverified=allow_unverified)
        cfg = read_session_config(self.session, path)
        self.checkpoint_sha256 = meta.get("mse_rt.checkpoint_sha256", "")
        names_in = [i.name for i in self.session.get_inputs()]
        names_out = [o.name for o in self.session.get_outputs()]
        if names_in != list(INPUT_NAMES) or names_out != list(OUTPUT_NAMES):
            raise BackendError(f"{path}: inputs {names_in} / outputs {names_out} are not those of an mse_rt graph")
        try:
            dynamic = json.loads(meta.get("mse_rt.dynamic", "true"))
            self.static_shape = None if dynamic else [int(v) for v in json.loads(meta["mse_rt.static_shape"])]
        except (ValueError, KeyError, TypeError) as exc:
            raise BackendError(f"{path}: invalid mse_rt shape metadata (mse_rt.dynamic / mse_rt.static_shape): "
                               f"{exc}") from exc
        # outputs of the TensorRT EP live on the GPU like the CUDA EP's: bind by address for both
        self.use_cuda = any(p in GPU_PROVIDERS for p in self.session.get_providers())
        self.precision = meta.get("mse_rt.precision", "fp32")
        if self.precision == "int8" and not self.use_cuda:
            from ..cpu import int8_dot_support

            dot, why = int8_dot_support()
            if dot is False and not allow_slow_int8:
                raise BackendError(f"{path} is an int8 graph and {why}; run the fp32 export here, or pass "
                                   "allow_slow_int8=True (CLI: --allow-slow-int8) to run it anyway")
        super().__init__(cfg, "cuda" if self.use_cuda else "cpu")
        self.path = path

    def check_inputs(self, feats: torch.Tensor, lengths: torch.Tensor) -> None:
        super().check_inputs(feats, lengths)
        if self.static_shape is not None and [feats.shape[0], feats.shape[2]] != self.static_shape:
            raise InputError(f"{self.path} was exported with a static shape (B, T) = {tuple(self.static_shape)}, "
                             f"got ({feats.shape[0]}, {feats.shape[2]}); re-export with dynamic axes")

    def _infer_impl(self, feats: torch.Tensor, lengths: torch.Tensor) -> dict:
        if self.use_cuda and feats.is_cuda:
            return self._infer_iobinding(feats, lengths)
        outs = self.session.run(list(OUTPUT_NAMES), {"feats": feats.detach().cpu().numpy(),
                                                     "lengths": lengths.cpu().numpy().astype(np.int64)})
        return {name: torch.from_numpy(o) for name, o in zip(OUTPUT_NAMES, outs)}

    def _infer_iobinding(self, feats: torch.Tensor, lengths: torch.Tensor) -> dict:  # pragma: no cover - GPU
        feats = feats.contiguous()
        lengths = lengths.to(feats.device).contiguous()
        # ONNX Runtime runs on its own CUDA stream: what torch's stream wrote (the padded batch,
        # the lengths copy) must be complete before ORT reads it
        torch.cuda.current_stream(feats.device).synchronize()
        binding = self.session.io_binding()
        dev_id = feats.device.index or 0
        binding.bind_input("feats", "cuda", dev_id, np.float32, tuple(feats.shape), feats.data_ptr())
        binding.bind_input("lengths", "cuda", dev_id, np.int64, tuple(lengths.shape), lengths.data_ptr())
        B, T = feats.shape[0], feats.shape[2]
        P = sum(T // (self.cfg["model"]["scale_factor"] ** l) for l in range(self.cfg["model"]["backbone_arch"][2] + 1))
        K = self.cfg["model"]["num_classes"]
        outs = {}
        for name in OUTPUT_NAMES:
            t = torch.empty(B, P, K, dtype=torch.float32, device=feats.device)
            binding.bind_output(name, "cuda", dev_id, np.float32, tuple(t.shape), t.data_ptr())
            outs[name] = t
        self.session.run_with_iobinding(binding)
        return outs
