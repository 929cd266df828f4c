"""Checks of the ``backend_options`` a Detector is built with (kept apart from detector.py, which
holds the construction paths themselves)."""

from __future__ import annotations

import inspect
import os

from ..errors import BackendError


def check_backend_options(cls, backend: str, options) -> None:
    """``backend_options`` of ``cls.from_checkpoint`` (``cls``: :class:`~mse_rt.runtime.detector.Detector`):
    None or a dict whose keys the backend's constructor takes (:class:`BackendError` naming the
    unknown ones and the known ones)."""
    if options is None:
        return
    if not isinstance(options, dict) or not all(isinstance(k, str) for k in options):
        raise BackendError(f"backend_options must be a dict of option name -> value, got {type(options).__name__}")
    if backend == "eager":
        if options:
            raise BackendError(f"backend='eager' takes no backend_options, got {sorted(options)}")
        return
    targets = {"onnxruntime": (cls.from_onnx,), "openvino": (cls.from_openvino,),
               "tensorrt": (cls.from_engine,)}.get(backend)
    if targets is None:  # triton: its options are checked by its backend (an optional import)
        return
    known = {"fp16", "max_batch"} if backend == "tensorrt" else set()
    for f in (*targets, cls.__init__):
        known |= {n for n, prm in inspect.signature(f).parameters.items()
                  if prm.kind not in (prm.VAR_KEYWORD, prm.VAR_POSITIONAL) and n not in ("self", "cls", "path",
                                                                                          "cfg", "backend")}
    unknown = sorted(set(options) - known)
    if unknown:
        raise BackendError(f"backend_options {unknown} are not options of backend={backend!r}; "
                           f"known: {', '.join(sorted(known))}")


THREADS_ENV = "MSE_RT_THREADS"
MAX_THREADS = 1024  # ONNX Runtime tried to start 100000 threads and hung


def default_threads(threads: int | None) -> int | None:
    """The intra-op thread count of an ONNX Runtime session or an OpenVINO model (TAD or backbone):
    ``threads`` when given, else the environment's ``MSE_RT_THREADS`` (a positive integer), else None
    (the library's own default: one thread per core, spinning while it waits). Several processes
    sharing a few cores (test workers, a process per camera) set the variable once instead of
    passing ``threads`` to every constructor: two spinning pools on two cores halve each other."""
    if threads is not None:
        return threads
    raw = os.environ.get(THREADS_ENV, "").strip()
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_THREADS:
        raise BackendError(f"{THREADS_ENV}={raw!r}: expected a thread count from 1 to {MAX_THREADS}, or unset it")
    return int(raw)
