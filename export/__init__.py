"""Exporters of mse_rt (installed as ``mse_rt.export``): ONNX (dynamic batch and length, fp32 / fp16),
TensorRT engines built from that ONNX, and the TensorRT compatibility check.

Heavy packages (onnx, onnxruntime, tensorrt) are imported only when an exporter runs.
"""

from .formats import FORMATS, SUPPORTED_OPSETS, format_from_path, get_format
from .onnx import export_onnx, read_onnx_metadata, validate_onnx
from .tensorrt import build_engine, engine_profiles, read_engine_file, tensorrt_ep_providers, write_engine_file
from .trt_check import check_onnx_for_tensorrt

__all__ = ["FORMATS", "SUPPORTED_OPSETS", "build_engine", "check_onnx_for_tensorrt", "engine_profiles", "export_onnx",
           "format_from_path", "get_format", "read_engine_file", "read_onnx_metadata", "tensorrt_ep_providers",
           "validate_onnx", "write_engine_file"]
