"""The eager PyTorch backend: the reference-exact model, run as is (the parity baseline)."""

from __future__ import annotations

import torch

from ...model import MSETAD
from ...preprocess import make_mask
from .base import Backend


class EagerBackend(Backend):
    """Runs :class:`mse_rt.model.MSETAD` in eval mode under ``torch.inference_mode``."""

    name = "eager"

    def __init__(self, cfg: dict, model: MSETAD, device: str | torch.device = "cpu") -> None:
        super().__init__(cfg, device)
        self.model = model.to(self.device).eval()

    def _infer_impl(self, feats: torch.Tensor, lengths: torch.Tensor) -> dict:
        with torch.inference_mode():
            feats = feats.to(self.device)
            mask = make_mask(lengths.to(self.device), feats.shape[-1])
            return self.model(feats, mask)
