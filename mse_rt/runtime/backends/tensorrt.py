"""TensorRT backend: runs an mse_rt engine file (:mod:`mse_rt.export.tensorrt`).

torch CUDA tensors are bound by address (``set_tensor_address``; no host copies), the input shape
is set per call within the engine's profile, and ``execute_async_v3`` runs on torch's current
stream. Optional CUDA graph per (B, T) (``cuda_graph=True``). Decode and NMS run on the GPU
through the shared runtime stages (the Detector uses the batched GPU NMS with this backend).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ...config import finalize_config
from ...errors import BackendError, InputError
from ...graph import OUTPUT_NAMES
from .base import Backend, CudaGraphCache


class TensorRTBackend(Backend):  # pragma: no cover - needs TensorRT and a GPU
    """``TensorRTBackend(path, cuda_graph=False)``; config and profile come from the engine file."""

    name = "tensorrt"

    def __init__(self, path: str | Path, cuda_graph: bool = False) -> None:
        from ...export.tensorrt import check_engine_compatible, import_tensorrt, read_engine_file

        meta, plan = read_engine_file(path)
        trt = import_tensorrt()
        check_engine_compatible(meta, path)
        super().__init__(finalize_config(meta["config"]), "cuda")
        self.meta = meta
        self.profile = meta["profiles"]["feats"]
        self._logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self._logger)
        self.engine = self.runtime.deserialize_cuda_engine(plan)
        if self.engine is None:
            raise BackendError(f"TensorRT could not deserialize {path}; rebuild the engine")
        self.context = self.engine.create_execution_context()
        to_torch = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int32: torch.int32,
                    trt.int64: torch.int64, trt.bool: torch.bool}
        self.dtypes = {n: to_torch[self.engine.get_tensor_dtype(n)] for n in ("feats", "lengths", *OUTPUT_NAMES)}
        self._graphs = CudaGraphCache() if cuda_graph else None
        self.path = Path(path)

    def check_inputs(self, feats: torch.Tensor, lengths: torch.Tensor) -> None:
        super().check_inputs(feats, lengths)
        lo, hi = self.profile["min"], self.profile["max"]
        B, _, T = feats.shape
        if not (lo[0] <= B <= hi[0] and lo[2] <= T <= hi[2]):
            raise InputError(f"(B, T) = ({B}, {T}) is outside the engine's profile: B {lo[0]}..{hi[0]}, "
                             f"T {lo[2]}..{hi[2]}; rebuild with a larger max_batch / max_shape")

    def _run(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, ...]:
        ctx = self.context
        ctx.set_input_shape("feats", tuple(feats.shape))
        ctx.set_input_shape("lengths", tuple(lengths.shape))
        ctx.set_tensor_address("feats", feats.data_ptr())
        ctx.set_tensor_address("lengths", lengths.data_ptr())
        outs = []
        for name in OUTPUT_NAMES:
            t = torch.empty(tuple(ctx.get_tensor_shape(name)), dtype=self.dtypes[name], device=feats.device)
            ctx.set_tensor_address(name, t.data_ptr())
            outs.append(t)
        if not ctx.execute_async_v3(torch.cuda.current_stream().cuda_stream):
            raise BackendError("TensorRT execute_async_v3 failed")
        return tuple(outs)

    def _infer_impl(self, feats: torch.Tensor, lengths: torch.Tensor) -> dict:
        feats = feats.to("cuda", self.dtypes["feats"]).contiguous()
        lengths = lengths.to("cuda", self.dtypes["lengths"]).contiguous()
        outs = self._run(feats, lengths) if self._graphs is None else self._graphs.run(self._run, feats, lengths)
        return {n: t.float() for n, t in zip(OUTPUT_NAMES, outs)}
