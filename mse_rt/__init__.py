"""mse_rt: deployment runtime for MSE-TAD temporal action detection.

Public API::

    cfg = mse_rt.load_config("config.yaml")
    model = mse_rt.build_model(cfg); mse_rt.load_checkpoint(model, "ckpt.pth.tar")
    det = mse_rt.Detector.from_checkpoint("config.yaml", "ckpt.pth.tar", backend="eager")
    r = det.detect(feats_T_by_C, fps=30.0)     # r.segments (M, 2) seconds, r.scores, r.labels
    mse_rt.write_results_json([r], "results.json")
"""

from .config import load_config, published_config
from .errors import (
    BackendError,
    CheckpointError,
    ConfigError,
    ConfigWarning,
    ExportError,
    InputError,
    ModelFileError,
    MseRtError,
    OutputError,
)
from .io.results import DetectionResult, write_results_json
from .model import build_model
from .model.checkpoint import load_checkpoint
from .runtime import BACKENDS, Detector
from .streaming import StreamingDetector
from .streaming.lagged import LiveResult, StreamPool
from .version import __version__

__all__ = [
    "BACKENDS",
    "BackendError",
    "CheckpointError",
    "ConfigError",
    "ConfigWarning",
    "DetectionResult",
    "ExportError",
    "Detector",
    "InputError",
    "ModelFileError",
    "MseRtError",
    "OutputError",
    "LiveResult",
    "StreamPool",
    "StreamingDetector",
    "__version__",
    "build_model",
    "load_checkpoint",
    "load_config",
    "published_config",
    "write_results_json",
]
