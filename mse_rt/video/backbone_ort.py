"""A backbone in ONNX Runtime (CPU, float32): runs a file written by :func:`mse_rt.video.export.export_backbone_onnx`.

The file's checksum is verified before the session is created (a file without one is refused
unless ``allow_unverified=True``). ``threads``: ONNX Runtime's intra-op pool (None: its default,
one thread per core). The session requests only the outputs a call needs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import BackendError
from .backbone import I3dBackbone
from .export import INPUT_NAME, read_backbone_onnx

__all__ = ["OnnxRuntimeBackbone"]


class OnnxRuntimeBackbone(I3dBackbone):
    """``OnnxRuntimeBackbone(path, threads=None, max_batch=8, allow_unverified=False)``."""

    def __init__(self, path: str | Path, *, threads: int | None = None, max_batch: int = 8,
                 allow_unverified: bool = False) -> None:
        from ..runtime.backends.onnxruntime import _import_ort, session_options

        path = Path(path)
        info = read_backbone_onnx(path, allow_unverified=allow_unverified)
        check_backbone_name(info, path)
        L, S = info["clip_shape"][0], info["clip_shape"][1]
        super().__init__(num_frames=L, size=S, backend="onnxruntime", precision="fp32",
                         weights_sha256=info["weights_sha256"], max_batch=max_batch)
        ort = _import_ort()
        try:
            self.session = ort.InferenceSession(str(path), session_options(threads, 1),
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types for a bad graph
            raise BackendError(f"ONNX Runtime cannot load {path}: {type(exc).__name__}: {exc}") from exc
        self.path = path
        self.info = info
        self.num_classes = info["num_classes"]

    def _run(self, clips: np.ndarray, outputs: tuple[str, ...]) -> dict[str, np.ndarray]:
        got = self.session.run(list(outputs), {INPUT_NAME: clips})
        return dict(zip(outputs, got, strict=True))


def check_backbone_name(info: dict, path: Path, expected: str = "i3d-rgb") -> None:
    """:class:`BackendError` unless the exported file is of the ``expected`` backbone."""
    if info["backbone"] != expected:
        raise BackendError(f"{path} holds the backbone {info['backbone']!r}; this runner runs {expected!r}")

