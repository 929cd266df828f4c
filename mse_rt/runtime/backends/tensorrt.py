"""TensorRT backend: runs an mse_rt engine file (:mod:`mse_rt.export.tensorrt`).

torch CUDA tensors are bound by address (``set_tensor_address``; no host copies) and the input
shape is set per call within the engine's profiles (profile 0: batches up to max_seq_len;
profile 1: long videos; one execution context per profile, created on first use).
``execute_async_v3`` runs on a dedicated stream that waits for torch's current stream before and
is waited on after (TensorRT would otherwise add device syncs on the legacy default stream);
outputs are marked with ``record_stream`` so the caching allocator never reuses them early.
Optional CUDA graphs per (B, T) (``cuda_graph=True``): each captured shape gets its own execution
context, since a graph bakes in the context's tensor addresses and shapes. Decode and NMS run on
the GPU through the shared runtime stages.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ...config import finalize_config
from ...errors import BackendError, InputError
from ...model.detector_graph import OUTPUT_NAMES
from .base import Backend, CudaGraphCache


class TensorRTBackend(Backend):  # pragma: no cover - needs TensorRT and a GPU
    """``TensorRTBackend(path, cuda_graph=False, max_graphs=8)``; config and profiles come from the engine file."""

    name = "tensorrt"

    def __init__(self, path: str | Path, cuda_graph: bool = False, max_graphs: int = 8) -> None:
        from ...export.tensorrt import check_engine_compatible, import_tensorrt, normalize_profiles, read_engine_file

        meta, plan = read_engine_file(path)
        trt = import_tensorrt()
        check_engine_compatible(meta, path)
        super().__init__(finalize_config(meta["config"]), "cuda")
        self.meta = meta
        self.profiles = normalize_profiles(meta["profiles"])
        self._logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self._logger)
        self.engine = self.runtime.deserialize_cuda_engine(plan)
        if self.engine is None:
            raise BackendError(f"TensorRT could not deserialize {path}; rebuild the engine")
        if self.engine.num_optimization_profiles != len(self.profiles):
            raise BackendError(f"{path}: the plan has {self.engine.num_optimization_profiles} profiles, its header "
                               f"{len(self.profiles)}; rebuild the engine")
        to_torch = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int32: torch.int32,
                    trt.int64: torch.int64, trt.bool: torch.bool}
        self.dtypes = {n: to_torch[self.engine.get_tensor_dtype(n)] for n in ("feats", "lengths", *OUTPUT_NAMES)}
        self.stream = torch.cuda.Stream()
        self._contexts: dict[int, object] = {}
        self._graphs = CudaGraphCache(max_graphs, make_context=self._graph_context) if cuda_graph else None
        self.path = Path(path)

    def _new_context(self, profile: int):
        ctx = self.engine.create_execution_context()
        if ctx is None:
            raise BackendError(f"TensorRT could not create an execution context for {self.path} (GPU memory?)")
        if profile != 0 and not ctx.set_optimization_profile_async(profile, self.stream.cuda_stream):
            raise BackendError(f"TensorRT refused optimisation profile {profile} of {self.path}")
        return ctx

    def _profile(self, feats_shape: tuple) -> int:
        from ...export.tensorrt import profile_for

        B, _, T = feats_shape
        idx = profile_for(self.profiles, B, T)
        if idx is None:
            ranges = "; ".join(f"B {p['feats']['min'][0]}..{p['feats']['max'][0]}, T {p['feats']['min'][2]}.."
                               f"{p['feats']['max'][2]}" for p in self.profiles)
            raise InputError(f"(B, T) = ({B}, {T}) is outside the engine's profiles ({ranges}); rebuild with a larger "
                             "max_batch / max_shape")
        return idx

    def _graph_context(self, key: tuple):
        return self._new_context(self._profile(key[0]))  # key: the input shapes, feats first

    def check_inputs(self, feats: torch.Tensor, lengths: torch.Tensor) -> None:
        super().check_inputs(feats, lengths)
        self._profile(tuple(feats.shape))

    def _run(self, ctx, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, ...]:
        for name, t in (("feats", feats), ("lengths", lengths)):
            if not ctx.set_input_shape(name, tuple(t.shape)):
                raise BackendError(f"TensorRT rejected the shape {tuple(t.shape)} of input '{name}'")
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
        caller = torch.cuda.current_stream()
        self.stream.wait_stream(caller)  # inputs written on the caller's stream are ready
        with torch.cuda.stream(self.stream):
            if self._graphs is not None:
                outs = self._graphs.run(self._run, feats, lengths)
            else:
                idx = self._profile(tuple(feats.shape))
                if idx not in self._contexts:
                    self._contexts[idx] = self._new_context(idx)
                outs = self._run(self._contexts[idx], feats, lengths)
            outs = tuple(t.float() for t in outs)
        caller.wait_stream(self.stream)
        for t in (feats, lengths, *outs):
            t.record_stream(caller)  # used on both streams: not freed before both are done
            t.record_stream(self.stream)
        return dict(zip(OUTPUT_NAMES, outs))
