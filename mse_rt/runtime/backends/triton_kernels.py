"""The "triton" GPU backend: the model with the fused Triton kernels swapped in.

- each MSE block: ``ldm_afm_stage1`` (LayerNorm + four depthwise convs + global gate + AFM stage 1),
  attention through ``scaled_dot_product_attention`` with a key-padding mask (flash / memory-
  efficient kernels on GPU) on a ``channel_layernorm`` input, then ``afm_residual`` (AFM stage 2 +
  residual); GroupNorm + MLP stay cuBLAS / torch;
- every channel LayerNorm (embedding, attention q/k/v norms, neck, heads) is the Triton kernel;
- precision ``fp32`` (default), ``fp16`` or ``bf16``: weights and activations in that dtype, kernel
  statistics in float32, head outputs cast to float32 before the dense decode; the accuracy cost
  is measured by benchmarks/gpu_check.py against eager fp32;
- optional CUDA-graph capture per (B, T) (``cuda_graph=True``), replayed on later calls;
- decode and NMS stay on the GPU (the Detector uses the batched Triton NMS with this backend).

It runs on CUDA tensors; on CPU only under Triton's interpreter (TRITON_INTERPRET=1, for tests).
"""

from __future__ import annotations

import copy
import types

import torch

from ...errors import BackendError
from ...model import MSETAD
from ...model.detector_graph import DetectorGraph
from ...model.layers import LayerNorm, downsample_mask
from ...model.mse_block import MSEBlock
from .base import Backend, CudaGraphCache

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def _import_kernels():
    try:
        from ...kernels import afm_residual, channel_layernorm, ldm_afm
    except ImportError as exc:
        raise BackendError("the triton backend needs Triton: pip install 'mse-rt[triton]' "
                           f"(import failed: {exc})") from exc
    return ldm_afm, afm_residual, channel_layernorm


def _layernorm_forward(self, x):
    return self._kernel(x, self.weight, self.bias, self.eps)


def _mse_block_forward(self, x, mask):
    x = self.downsample(x)
    mask = downsample_mask(mask, self.stride)
    out1, mean, rstd = self._stage1(x, self._packed)
    attn, _ = self.attn(self._ln_kernel(out1, self.ln.weight, self.ln.bias, self.ln.eps), mask)
    y = self._stage2(x, out1, attn, mean, rstd, mask, self._packed, self._s_out)
    return y + self.drop_path_mlp(self.mlp(self.gn(y))), mask


class TritonBackend(Backend):
    """``TritonBackend(cfg, model, device="cuda", precision="fp32", cuda_graph=False, max_graphs=8)``;
    ``max_graphs`` bounds the captured CUDA graphs (one per (B, T), LRU, one shared memory pool)."""

    name = "triton"

    def __init__(self, cfg: dict, model: MSETAD, device: str | torch.device = "cuda", precision: str = "fp32",
                 cuda_graph: bool = False, max_graphs: int = 8) -> None:
        ldm_afm, afm_residual, channel_layernorm = _import_kernels()
        from ...kernels._common import interpreting

        device = torch.device(device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise BackendError("the triton backend needs a CUDA GPU; none is available here")
        if device.type != "cuda" and not interpreting():
            raise BackendError(f"the triton backend runs on CUDA devices, got {device} "
                               "(set TRITON_INTERPRET=1 only to test the kernels on CPU)")
        if precision not in PRECISIONS:
            raise BackendError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        if cuda_graph and device.type != "cuda":
            raise BackendError("cuda_graph=True needs a CUDA device")
        super().__init__(cfg, device)
        self.precision = precision
        self.dtype = PRECISIONS[precision]
        self.model = copy.deepcopy(model).to(device=device, dtype=self.dtype).eval()
        for mod in self.model.modules():
            if isinstance(mod, LayerNorm):
                mod._kernel = channel_layernorm.channel_layernorm
                mod.forward = types.MethodType(_layernorm_forward, mod)
            elif isinstance(mod, MSEBlock):
                mod._packed = ldm_afm.pack_block_weights(mod)
                s_out = getattr(mod.drop_path_out, "scale", None)
                mod._s_out = (s_out.detach().reshape(-1).float() if s_out is not None
                              else torch.ones(mod.ln.weight.numel(), device=device))
                mod._stage1 = ldm_afm.ldm_afm_stage1
                mod._stage2 = afm_residual.afm_residual
                mod._ln_kernel = channel_layernorm.channel_layernorm
                mod.forward = types.MethodType(_mse_block_forward, mod)
        self.graph = DetectorGraph(self.model)
        self._graphs = CudaGraphCache(max_graphs) if cuda_graph else None

    def _forward(self, feats: torch.Tensor, lengths: torch.Tensor):
        mask = (torch.arange(feats.shape[-1], device=feats.device)[None, :] < lengths[:, None]).unsqueeze(1)
        out = self.model(feats.to(self.dtype), mask)
        out = {k: [t.float() if t.is_floating_point() else t for t in v] for k, v in out.items()}
        return self.graph.dense_outputs(out)

    def _infer_impl(self, feats: torch.Tensor, lengths: torch.Tensor) -> dict:
        feats = feats.to(self.device, non_blocking=True)
        lengths = lengths.to(self.device, non_blocking=True)
        with torch.inference_mode():
            if self._graphs is not None:
                outs = self._graphs.run(self._forward, feats, lengths)
            else:
                outs = self._forward(feats, lengths)
        return dict(zip(("cls_prob", "seg_start", "seg_end"), outs))
