"""A backbone in TensorRT (CUDA GPU, fp16): an engine built from the exported backbone ONNX graph.

The engine is built once per (weights, clip shape, max batch, GPU, TensorRT version) into the
export cache as an mse_rt engine file (:func:`mse_rt.export.tensorrt.write_engine_file`: header,
JSON metadata, plan, plan sha256; another GPU or TensorRT version is refused and rebuilt). The
TAD engine builder (:func:`mse_rt.export.tensorrt.build_engine`) is specific to the detector graph
(its config, its ``feats`` / ``lengths`` profiles), so the backbone is built here: one optimisation
profile with the batch from 1 to ``max_batch`` and the static clip shape; the uint8 ``frames``
input stays uint8 (the graph casts it). fp16 uses TensorRT's FP16 builder flag on the fp32 graph,
which TensorRT 11 removed: there a :class:`BackendError` says so (a strongly typed fp16 backbone
graph is not exported yet).

Not run in this repository's CPU test suite (no GPU there): only the error paths are tested.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from ..errors import BackendError, ExportError
from .backbone import I3dBackbone
from .export import INPUT_NAME, read_backbone_onnx

__all__ = ["TensorRTBackbone", "build_backbone_engine", "check_tensorrt"]


def _tensorrt_and_gpu():
    from ..export.tensorrt import gpu_identity, import_tensorrt

    trt = import_tensorrt()
    return trt, gpu_identity()


def check_tensorrt() -> None:
    """:class:`BackendError` (saying what is missing) unless TensorRT imports and torch sees a CUDA GPU."""
    _tensorrt_and_gpu()


def build_backbone_engine(onnx_path: Path, engine_path: Path, info: dict, max_batch: int,
                          workspace: int = 4 << 30) -> Path:  # pragma: no cover - needs TensorRT and a GPU
    """Build an fp16 engine of the backbone graph ``onnx_path`` (batch 1..``max_batch``) into ``engine_path``."""
    from ..export.tensorrt import write_engine_file
    from ..model.checkpoint import file_sha256
    from ..version import __version__

    trt, gpu = _tensorrt_and_gpu()
    if int(trt.__version__.split(".")[0]) >= 11:
        raise BackendError(f"TensorRT {trt.__version__} builds fp16 only from strongly typed fp16 graphs, which the "
                           "backbone export does not write yet; use TensorRT 10, or the OpenVINO / ONNX Runtime backends")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [f"  {i}: {parser.get_error(i).desc()}" for i in range(parser.num_errors)]
        raise ExportError(f"TensorRT cannot parse {onnx_path}:\n" + "\n".join(errors))
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace))
    config.set_flag(trt.BuilderFlag.FP16)
    clip = list(info["clip_shape"])
    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT_NAME, [1, *clip], [max_batch, *clip], [max_batch, *clip])
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise ExportError(f"TensorRT failed to build an engine from {onnx_path} (see its log above)")
    meta = {"format": "mse_rt.backbone_engine/1", "mse_rt_version": __version__, "tensorrt_version": trt.__version__,
            "config": {k: info[k] for k in ("backbone", "clip_shape", "outputs", "feature_dim", "num_classes",
                                             "weights_sha256")},
            "profiles": [{INPUT_NAME: {"min": [1, *clip], "max": [max_batch, *clip]}}], "precision": "fp16",
            "onnx_sha256": file_sha256(onnx_path), **gpu}
    return write_engine_file(engine_path, bytes(plan), meta)


class TensorRTBackbone(I3dBackbone):
    """``TensorRTBackbone(path, precision="fp16", max_batch=8)``: ``path`` an exported backbone ``.onnx``."""

    def __init__(self, path: str | Path, *, precision: str = "fp16", cache_dir: str | Path | None = None,
                 max_batch: int = 8, allow_unverified: bool = False) -> None:
        if precision != "fp16":
            raise BackendError(f"the tensorrt backend runs the backbone in fp16, not {precision!r}")
        trt, gpu = _tensorrt_and_gpu()  # BackendError without TensorRT or a GPU: before any work
        self._init_engine(trt, gpu, Path(path), cache_dir, max_batch, allow_unverified)  # pragma: no cover

    def _init_engine(self, trt, gpu: dict, path: Path, cache_dir, max_batch: int,
                     allow_unverified: bool) -> None:  # pragma: no cover - needs TensorRT and a GPU
        import torch

        from ..export.tensorrt import check_engine_compatible, read_engine_file
        from ..runtime.cache import cached, export_cache_dir

        info = read_backbone_onnx(path, allow_unverified=allow_unverified)
        L, S = info["clip_shape"][0], info["clip_shape"][1]
        super().__init__(num_frames=L, size=S, backend="tensorrt", precision="fp16",
                         weights_sha256=info["weights_sha256"], max_batch=max_batch)
        self.num_classes = info["num_classes"]
        key = hashlib.sha256(f"{info['weights_sha256']}|{L}x{S}|{max_batch}|{gpu['gpu']}|{trt.__version__}"
                             .encode()).hexdigest()[:20]
        entry = export_cache_dir(cache_dir) / "video" / f"i3d-rgb-fp16-{key}.engine"

        def load(p: Path):
            meta, plan = read_engine_file(p)
            check_engine_compatible(meta, p)
            return plan

        plan = cached(entry, lambda p: build_backbone_engine(path, p, info, max_batch), load)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(plan)
        if self.engine is None:
            raise BackendError(f"TensorRT could not deserialize the backbone engine {entry}; delete it to rebuild")
        self.context = self.engine.create_execution_context()
        self._torch = torch

    def _run(self, clips: np.ndarray, outputs: tuple[str, ...]) -> dict[str, np.ndarray]:  # pragma: no cover
        torch = self._torch
        x = torch.from_numpy(clips).to("cuda", non_blocking=True)
        if not self.context.set_input_shape(INPUT_NAME, tuple(x.shape)):
            raise BackendError(f"TensorRT rejected the clip batch shape {tuple(x.shape)}")
        self.context.set_tensor_address(INPUT_NAME, x.data_ptr())
        outs = {}
        for name in self.info_outputs():
            t = torch.empty(tuple(self.context.get_tensor_shape(name)), dtype=torch.float32, device="cuda")
            self.context.set_tensor_address(name, t.data_ptr())
            outs[name] = t
        stream = torch.cuda.current_stream()
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise BackendError("TensorRT execute_async_v3 failed")
        stream.synchronize()
        return {name: outs[name].cpu().numpy() for name in outputs}

    def info_outputs(self) -> list[str]:  # pragma: no cover
        return ["features", "logits"] if self.num_classes else ["features"]
