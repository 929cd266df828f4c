"""Native and GPU kernels of mse_rt (installed as ``mse_rt.kernels``).

- ``_nms_cpu``: the C++ CPU NMS module built by CMake (see ``kernels/nms_cpu.cpp``); use it
  through :func:`mse_rt.pipeline.nms.batched_nms_native`.
"""
