"""A backbone in OpenVINO (CPU): the exported ONNX graph in fp32, bf16 or int8, or a saved int8 backbone IR.

    bb = OpenVinoBackbone("i3d.onnx", precision="bf16", threads=2)
    bb = OpenVinoBackbone("i3d.onnx", precision="int8", calib=["a.mp4", "b.mp4"])   # NNCF, cached IR
    bb.save_ir("i3d_int8.xml"); bb = OpenVinoBackbone("i3d_int8.xml")                # no recalibration

- ``precision``: "fp32" (asked explicitly: on a BF16 CPU OpenVINO would otherwise choose bf16),
  "bf16" (the ``INFERENCE_PRECISION_HINT``; needs a CPU with BF16, else a :class:`BackendError`
  unless ``allow_fallback=True``), "int8" (:mod:`.backbone_int8`: calibrated on ``calib``, up to
  ``calib_clips`` clips; needs int8 dot-product instructions; float layers run in bf16 where the
  CPU has it). The rules are those of the TAD backend (:func:`~mse_rt.runtime.backends.openvino.loader.resolve_precision`).
- int8 from an ONNX file is quantized once per (weights, clip shape, calibration clips): the result
  is saved as an IR in the export cache (``cache_dir``) and later loads with the same calibration
  read it instead of recalibrating. :meth:`save_ir` writes it where a worker can load it directly.
- Shapes: the graph's batch is dynamic; each batch size gets its own statically reshaped compiled
  model (faster than a dynamic shape on CPU) in a small LRU (``max_compiled``). OpenVINO's compiled
  blob cache (under the export cache) spares later processes the compile.
- ``hint``: "latency" (one request for the whole batch on all ``threads``) or "throughput" (the
  clips of a batch run as single-clip requests in parallel on OpenVINO's streams). Start the
  process with ``OMP_WAIT_POLICY=PASSIVE`` when torch runs beside (its idle OpenMP threads spin otherwise).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendError
from ..runtime.options import default_threads
from .backbone import I3dBackbone
from .export import INPUT_NAME, read_backbone_onnx

__all__ = ["OpenVinoBackbone"]

_HINTS = {"latency": "LATENCY", "throughput": "THROUGHPUT"}


class OpenVinoBackbone(I3dBackbone):
    """``OpenVinoBackbone(path, precision=None, threads=None, calib=None, ...)``: ``path`` an exported backbone
    ``.onnx`` or a saved int8 backbone IR ``.xml`` (module docstring)."""

    def __init__(self, path: str | Path, *, precision: str | None = None, threads: int | None = None,
                 calib: Any = None, calib_clips: int = 64, cache_dir: str | Path | bool | None = None,
                 max_batch: int = 8, hint: str = "latency", allow_fallback: bool = False,
                 allow_unverified: bool = False, max_compiled: int = 4) -> None:
        from ..runtime.backends.base import ShapeLRU
        from ..runtime.backends.openvino.loader import import_openvino, resolve_precision
        from .backbone_ort import check_backbone_name

        ov = import_openvino()
        path = Path(path)
        if hint not in _HINTS:
            raise BackendError(f"hint must be one of {tuple(_HINTS)}, got {hint!r}")
        if precision is not None and precision not in ("fp32", "bf16", "int8"):
            raise BackendError(f"OpenVINO runs the backbone in fp32, bf16 or int8, not {precision!r}")
        self.core = ov.Core()
        caps = set(self.core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
        self.calibration: dict | None = None
        if path.suffix == ".xml":
            from .backbone_int8 import read_backbone_ir

            if precision not in (None, "int8"):
                raise BackendError(f"{path} is an int8 backbone IR; precision={precision!r} needs the fp32 .onnx file")
            if calib is not None:
                raise BackendError(f"{path} is already quantized (calibrated when it was written); drop calib")
            model, info, meta = read_backbone_ir(self.core, path, allow_unverified)
            self.calibration = meta["calibration"]
            resolve_precision("int8", caps, allow_fallback)  # BackendError on a CPU without int8 dot products
            float_precision = "bf16" if "BF16" in caps else "f32"
            precision, source, used = "int8", "ir", "int8 (saved IR)"
        else:
            info = read_backbone_onnx(path, allow_unverified=allow_unverified)
            precision, float_precision, used = resolve_precision(precision or "fp32", caps, allow_fallback)
            model = self.core.read_model(str(path))
            source = "onnx"
        check_backbone_name(info, path)
        L, S = int(info["clip_shape"][0]), int(info["clip_shape"][1])
        super().__init__(num_frames=L, size=S, backend="openvino", precision=precision,
                         weights_sha256=info["weights_sha256"], max_batch=max_batch)
        self.num_classes = int(info["num_classes"])
        self.info, self.path, self.source, self.precision_used = info, path, source, used
        if precision == "int8" and source == "onnx":
            if calib is None:
                raise BackendError("precision='int8' needs calibration clips: calib=[video files or folders], "
                                   "'synthetic', or (n, L, S, S, 3) uint8 arrays")
            model = self._int8_model(model, calib, calib_clips, cache_dir)
        self.model = model
        self.config = {"PERFORMANCE_HINT": _HINTS[hint], "INFERENCE_PRECISION_HINT": float_precision}
        threads = default_threads(threads)  # None: MSE_RT_THREADS, else OpenVINO's own
        if threads is not None:
            self.config["INFERENCE_NUM_THREADS"] = int(threads)
        if cache_dir is not False:
            from ..runtime.cache import export_cache_dir

            blobs = export_cache_dir(cache_dir or None) / "openvino_blobs"
            self.core.set_property({"CACHE_DIR": str(blobs)})
        self._compiled = ShapeLRU(max_compiled, self._compile)
        self._lock = threading.Lock()

    def _int8_model(self, model, calib: Any, calib_clips: int, cache_dir):
        """The int8 model: the cached IR for these weights, clip shape and calibration clips, else NNCF now (then saved)."""
        import hashlib

        from ..model.checkpoint import file_sha256
        from ..runtime.cache import cached, export_cache_dir
        from .backbone_int8 import calibration_clips, clips_sha256, int8_recipe, quantize_backbone, read_backbone_ir

        L, S = self.clip_shape[0], self.clip_shape[1]
        clips = calibration_clips(calib, (L, S, S), calib_clips)
        self.calibration = {"clips": len(clips), "sha256": clips_sha256(clips),
                            "source": calib if isinstance(calib, str) else type(calib).__name__}
        recipe = json.dumps(int8_recipe(), sort_keys=True)
        key = f"{self.weights_sha256}|{L}x{S}|{self.calibration['sha256']}|{recipe}"
        key = hashlib.sha256(key.encode()).hexdigest()[:20]
        entry = export_cache_dir(cache_dir or None) / "video" / f"i3d-rgb-int8-{key}.xml"
        onnx_sha = file_sha256(self.path)

        def build(xml: Path) -> None:
            self._write_ir(quantize_backbone(model, clips, INPUT_NAME), xml, onnx_sha)

        def load(xml: Path):
            return read_backbone_ir(self.core, xml)[0]

        if cache_dir is False:
            return quantize_backbone(model, clips, INPUT_NAME)
        return cached(entry, build, load)

    def _ir_config(self) -> dict:
        return {"backbone": self.name, "clip_shape": list(self.clip_shape), "outputs": self.info["outputs"],
                "feature_dim": self.dim, "num_classes": self.num_classes, "weights_sha256": self.weights_sha256}

    def _write_ir(self, model, xml: Path, onnx_sha: str) -> Path:
        from .backbone_int8 import write_backbone_ir

        return write_backbone_ir(model, xml, self._ir_config(), self.calibration or {}, onnx_sha)

    def save_ir(self, xml_path: str | Path) -> Path:
        """Write this int8 backbone as a backbone IR (``NAME.xml`` + ``NAME.bin``) that loads without calibration."""
        if self.precision != "int8":
            raise BackendError(f"save_ir writes int8 backbones; this one runs in {self.precision} (use the .onnx file)")
        from ..model.checkpoint import file_sha256

        onnx_sha = file_sha256(self.path) if self.source == "onnx" else ""
        return self._write_ir(self.model, Path(xml_path), onnx_sha)

    def _compile(self, batch: int):
        from ..runtime.backends.openvino.runner import CompiledShape

        m = self.model.clone()
        L, S = self.clip_shape[0], self.clip_shape[1]
        m.reshape({INPUT_NAME: [batch, L, S, S, 3]})
        return CompiledShape(self.core.compile_model(m, "CPU", self.config),
                             throughput=self.config["PERFORMANCE_HINT"] == "THROUGHPUT")

    def compiled(self, batch: int):
        """The compiled model for ``batch`` clips (compiled on first use; thread-safe)."""
        with self._lock:
            return self._compiled.get(int(batch))

    @staticmethod
    def _outputs(res, outputs: tuple[str, ...]) -> dict[str, np.ndarray]:
        by_name = {o.get_any_name(): v for o, v in res.items()}
        return {name: np.array(by_name[name], dtype=np.float32, copy=True) for name in outputs}

    def _run(self, clips: np.ndarray, outputs: tuple[str, ...]) -> dict[str, np.ndarray]:
        if len(clips) == 1 or self.config["PERFORMANCE_HINT"] != "THROUGHPUT":
            with self.compiled(len(clips)).request() as request:
                return self._outputs(request.infer({INPUT_NAME: clips}, share_inputs=True), outputs)
        # throughput hint: the clips run as single-clip requests in parallel on OpenVINO's streams
        shape = self.compiled(1)
        parts: list = [None] * len(clips)

        def done(request, i: int) -> None:
            parts[i] = self._outputs(request.results, outputs)

        with shape.queue_lock:
            shape.queue.set_callback(done)
            for i in range(len(clips)):
                shape.queue.start_async({INPUT_NAME: clips[i:i + 1]}, i, share_inputs=True)
            shape.queue.wait_all()
        if any(p is None for p in parts):
            raise BackendError("openvino: a clip of the batch got no result")
        return {name: np.concatenate([p[name] for p in parts]) for name in outputs}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "precision_used": self.precision_used, "source": self.source,
                "config": dict(self.config), "calibration": self.calibration}
