"""One table of export formats drives argument checks and format detection from file names."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mse_rt.errors import ExportError


@dataclass(frozen=True)
class ExportFormat:
    name: str
    suffix: str
    needs_gpu: bool
    backend: str
    options: tuple[str, ...]


FORMATS: dict[str, ExportFormat] = {
    "onnx": ExportFormat("onnx", ".onnx", False, "onnxruntime", ("opset", "dynamic", "batch", "max_len", "precision")),
    "engine": ExportFormat("engine", ".engine", True, "tensorrt", ("fp16", "max_batch", "workspace", "timing_cache")),
    # a folder, not a file: the Triton Inference Server model repository (export/tritonserver_repo.py)
    "triton-repo": ExportFormat("triton-repo", "", False, "tritonserver", ("max_batch", "engine")),
}

# Opsets the exporter is tested with. 17 is the default: LayerNormalization-free graph, GroupNorm
# through InstanceNormalization; 18+ adds nothing we need.
SUPPORTED_OPSETS = (17, 18, 19, 20)
DEFAULT_OPSET = 17


def format_from_path(path: str | Path) -> ExportFormat:
    """The format whose suffix the file name has; ExportError for an unknown suffix."""
    suffix = Path(path).suffix
    for fmt in FORMATS.values():
        if fmt.suffix and fmt.suffix == suffix:
            return fmt
    known = ", ".join(f"{f.suffix} ({f.name})" for f in FORMATS.values())
    raise ExportError(f"cannot tell the model format of {path}: known suffixes are {known}")


def get_format(name: str) -> ExportFormat:
    if name not in FORMATS:
        raise ExportError(f"unknown export format {name!r}; available: {', '.join(FORMATS)}")
    return FORMATS[name]
