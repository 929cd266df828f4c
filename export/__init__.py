"""Exporters of mse_rt (installed as ``mse_rt.export``): ONNX (dynamic batch and length).

Heavy packages (onnx, onnxruntime) are imported only when an exporter runs.
"""

from .formats import FORMATS, SUPPORTED_OPSETS, format_from_path, get_format
from .onnx import export_onnx, read_onnx_metadata, validate_onnx

__all__ = ["FORMATS", "SUPPORTED_OPSETS", "export_onnx", "format_from_path", "get_format", "read_onnx_metadata",
           "validate_onnx"]
