"""The backbone contract: uint8 clips in, one float32 feature row per clip out (docs/spec/video.md "Other backbones").

    bb = mse_rt.video.load_backbone("i3d-rgb")      # mse_rt.video.registry: any backend / precision
    feats = bb.features(clips)                      # clips (N, L, S, S, 3) uint8 -> (N, bb.dim) float32
    logits = bb.logits(clips)                       # (N, num_classes) float32, where the backbone has a head

A :class:`Backbone` has a ``name``, a feature width ``dim``, the clip shape it takes
(``clip_shape`` = (L, S, S, 3); ``clip_spec`` is a :class:`~mse_rt.video.clips.ClipSpec` with that L
and S, whose stride / fps / spatial mode the caller sets from the TAD config, e.g.
``dataclasses.replace(bb.clip_spec, stride=4, fps=30.0)``), and ``features(clips)``: uint8 clips
(N, L, S, S, 3) -> (N, dim) float32, one row per clip, each row independent of the others and of
N. ``logits(clips)`` is optional (``num_classes`` > 0). Clips of another shape or dtype raise
:class:`~mse_rt.errors.InputError` naming the expected shape.

A new backbone subclasses :class:`Backbone`, implements ``_run(clips, outputs)`` on at most
``max_batch`` clips (the base class checks the input and splits a large N into chunks, so memory is
bounded by ``max_batch`` clips of activations), and is made loadable by name with
:func:`mse_rt.video.registry.register_backbone`; the TAD config's ``model.input_dim`` must equal its
``dim``.
"""

from __future__ import annotations

import abc
from typing import Any

import numpy as np

from ..errors import ConfigError, InputError
from .clips import ClipSpec
from .i3d import FEATURE_DIM, NUM_CLASSES, logits_defined

__all__ = ["Backbone", "I3dBackbone", "check_clip_shape"]


class Backbone(abc.ABC):
    """Frames -> clip features: the contract every backbone follows (module docstring).

    Attributes: ``name``; ``dim`` (feature width C); ``num_classes`` (logits width, 0: none);
    ``clip_shape`` (L, S, S, 3); ``clip_spec``; ``backend`` and ``precision`` it runs in;
    ``weights_sha256`` (identity of the weights, "" when unknown); ``max_batch`` (clips per call
    of the underlying model).
    """

    name: str = ""
    dim: int = 0
    num_classes: int = 0

    def __init__(self, *, num_frames: int, size: int, backend: str, precision: str, weights_sha256: str = "",
                 max_batch: int = 8) -> None:
        if isinstance(max_batch, bool) or not isinstance(max_batch, (int, np.integer)) or max_batch < 1:
            raise ConfigError(f"max_batch must be an integer >= 1, got {max_batch!r}")
        self.clip_spec = ClipSpec(num_frames=num_frames, size=size)
        self.backend = backend
        self.precision = precision
        self.weights_sha256 = weights_sha256
        self.max_batch = int(max_batch)

    @property
    def clip_shape(self) -> tuple[int, int, int, int]:
        """(L, S, S, 3): the shape of one clip this backbone takes."""
        return self.clip_spec.clip_shape

    def check_clips(self, clips: Any) -> np.ndarray:
        """``clips`` as a C-contiguous (N, L, S, S, 3) uint8 numpy array (a torch CPU tensor is viewed,
        not copied); :class:`InputError` naming the expected shape otherwise."""
        if hasattr(clips, "detach") and hasattr(clips, "numpy"):  # a torch tensor
            clips = clips.detach().cpu().numpy()
        if not isinstance(clips, np.ndarray):
            raise InputError(f"{self.name}: clips must be a numpy array (N, L, S, S, 3) uint8, got {type(clips).__name__}")
        want = self.clip_shape
        if clips.dtype != np.uint8 or clips.ndim != 5 or tuple(clips.shape[1:]) != want or clips.shape[0] < 1:
            hint = " (one clip: pass clip[None])" if tuple(clips.shape) == want else ""
            raise InputError(f"{self.name}: clips must be (N, {', '.join(map(str, want))}) uint8 with N >= 1 "
                             f"(N clips of L frames of S x S RGB pixels), got shape {tuple(clips.shape)} "
                             f"{clips.dtype}{hint}")
        return np.ascontiguousarray(clips)

    @abc.abstractmethod
    def _run(self, clips: np.ndarray, outputs: tuple[str, ...]) -> dict[str, np.ndarray]:
        """The model on (n, L, S, S, 3) uint8, n <= max_batch -> {output name: (n, width) float32};
        each backend's subclass implements it."""

    def _call(self, clips: Any, outputs: tuple[str, ...]) -> list[np.ndarray]:
        if "logits" in outputs and not self.num_classes:
            raise InputError(self._no_logits_reason())
        clips = self.check_clips(clips)
        parts = [self._run(clips[i:i + self.max_batch], outputs) for i in range(0, len(clips), self.max_batch)]
        out = []
        for name in outputs:
            arrays = [np.asarray(p[name], dtype=np.float32) for p in parts]
            out.append(arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=0))
        return out

    def _no_logits_reason(self) -> str:
        return f"{self.name}: this backbone gives no class logits"

    def features(self, clips: Any) -> np.ndarray:
        """uint8 clips (N, L, S, S, 3) -> clip features (N, dim) float32."""
        return self._call(clips, ("features",))[0]

    def logits(self, clips: Any) -> np.ndarray:
        """uint8 clips (N, L, S, S, 3) -> class logits (N, num_classes) float32 (InputError where there are none)."""
        return self._call(clips, ("logits",))[0]

    def features_and_logits(self, clips: Any) -> tuple[np.ndarray, np.ndarray]:
        """Both outputs of one pass: ((N, dim), (N, num_classes)) float32."""
        feats, logits = self._call(clips, ("features", "logits"))
        return feats, logits

    def describe(self) -> dict[str, Any]:
        """What runs: name, backend, precision, clip shape, widths, weights digest (JSON-able)."""
        return {"name": self.name, "backend": self.backend, "precision": self.precision,
                "clip_shape": list(self.clip_shape), "dim": self.dim, "num_classes": self.num_classes,
                "weights_sha256": self.weights_sha256, "max_batch": self.max_batch}

    def __repr__(self) -> str:
        L, S = self.clip_shape[0], self.clip_shape[1]
        return f"{type(self).__name__}({self.name!r}, backend={self.backend}, precision={self.precision}, clip={L}x{S}x{S})"


def check_clip_shape(clip_shape: Any) -> tuple[int, int, int]:
    """(L, S, S) from ``clip_shape`` = (L, S, S) (square frames, positive ints); ConfigError otherwise."""
    try:
        L, H, W = (int(v) for v in clip_shape)
        ok = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in clip_shape)
    except (TypeError, ValueError):
        ok = False
    if not ok or L < 1 or H < 1 or H != W:
        raise ConfigError(f"clip_shape must be (L, S, S): frames per clip and the square frame side in pixels, "
                          f"got {clip_shape!r}")
    return L, H, W


class I3dBackbone(Backbone):
    """The I3D RGB Kinetics-400 backbone (``"i3d-rgb"``) on some backend: dim 1024; 400 Kinetics logits
    where the original head is defined (L >= 9 and 193 <= S <= 224, :func:`~mse_rt.video.i3d.logits_defined`)."""

    name = "i3d-rgb"
    dim = FEATURE_DIM

    def __init__(self, *, num_frames: int, size: int, **kw: Any) -> None:
        super().__init__(num_frames=num_frames, size=size, **kw)
        self.num_classes = NUM_CLASSES if logits_defined(num_frames, size, size) else 0

    def _no_logits_reason(self) -> str:
        L, S = self.clip_shape[0], self.clip_shape[1]
        return (f"{self.name}: the Kinetics-400 logits head is only defined for clips of L >= 9 frames of 193..224 "
                f"pixels (the original's 2 x 7 x 7 pool); this backbone takes {L} x {S} x {S} clips (features only)")
