"""The OpenVINO backend (CPU; ``pip install 'mse-rt[openvino]'``), one concern per module:
:mod:`.loader` (package, CPU capabilities, the ONNX file), :mod:`.ir` (mse_rt's saved IR files:
metadata, checksums, atomic writing), :mod:`.rewrites` (graph rewrites in OpenVINO's copy),
:mod:`.quantize` (the NNCF int8 recipe), :mod:`.runner` (the backend), :mod:`.profile`
(per-node timing). Writing IRs from an ONNX file: :mod:`mse_rt.export.openvino`."""

from .loader import cpu_capabilities
from .quantize import INT8_IGNORED
from .rewrites import BODY_PREFIXES, layernorm_means_as_convs, mark_body_reduced_precision
from .runner import HINTS, PRECISIONS, OpenVinoBackend

__all__ = ["BODY_PREFIXES", "HINTS", "INT8_IGNORED", "PRECISIONS", "OpenVinoBackend", "cpu_capabilities",
           "layernorm_means_as_convs", "mark_body_reduced_precision"]
