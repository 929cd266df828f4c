"""Backends: one file each behind :class:`mse_rt.runtime.backends.base.Backend`.

Heavy optional packages are imported inside the backend that needs them.
"""

from .base import Backend
from .eager import EagerBackend

BACKENDS = ("eager", "onnxruntime", "openvino", "triton", "tensorrt")

def onnxruntime_backend(*args, **kwargs):
    """Build an :class:`OnnxRuntimeBackend` (imported lazily: onnxruntime is optional)."""
    from .onnxruntime import OnnxRuntimeBackend

    return OnnxRuntimeBackend(*args, **kwargs)


def openvino_backend(*args, **kwargs):
    """Build an :class:`OpenVinoBackend` (imported lazily: openvino is optional)."""
    from .openvino import OpenVinoBackend

    return OpenVinoBackend(*args, **kwargs)


def triton_backend(*args, **kwargs):
    """Build a :class:`TritonBackend` (imported lazily: triton is optional)."""
    from .triton_kernels import TritonBackend

    return TritonBackend(*args, **kwargs)


def tensorrt_backend(*args, **kwargs):
    """Build a :class:`TensorRTBackend` (imported lazily: tensorrt is optional)."""
    from .tensorrt import TensorRTBackend

    return TensorRTBackend(*args, **kwargs)


__all__ = ["BACKENDS", "Backend", "EagerBackend"]
