"""The eager PyTorch backend: the reference-exact model, run as is (the parity baseline)."""

from __future__ import annotations

import torch

from ...model import MSETAD
from ...model.detector_graph import DetectorGraph
from .base import Backend


class EagerBackend(Backend):
    """Runs :class:`mse_rt.model.detector_graph.DetectorGraph` (model + dense decode) under ``torch.inference_mode``."""

    name = "eager"

    def __init__(self, cfg: dict, model: MSETAD, device: str | torch.device = "cpu") -> None:
        super().__init__(cfg, device)
        self.model = model.to(self.device).eval()
        self.graph = DetectorGraph(self.model).eval()

    def _infer_impl(self, feats: torch.Tensor, lengths: torch.Tensor) -> dict:
        with torch.inference_mode():
            cls_prob, seg_start, seg_end = self.graph(feats.to(self.device), lengths.to(self.device))
        return {"cls_prob": cls_prob, "seg_start": seg_start, "seg_end": seg_end}
