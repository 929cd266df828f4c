"""OpenVINO backend (CPU): runs the mse_rt ONNX graph in fp32, bf16 or int8 (NNCF PTQ), or a saved
mse_rt OpenVINO IR (:mod:`.ir`: an int8 model quantized once, or a float one).

    det = Detector.from_openvino("model.onnx", precision="bf16", hint="latency")
    det = Detector.from_openvino("model.onnx", precision="int8", calib=["feats/"])   # NNCF, user's files
    det = Detector.from_openvino("model_int8.xml")    # saved by `mse-rt quantize --engine openvino`: no calibration

- ``precision``: "fp32" (asked explicitly: on a BF16 CPU OpenVINO would otherwise pick bf16 on
  its own), "bf16" (needs a CPU with BF16; else a :class:`BackendError` unless
  ``allow_fallback=True``, which runs fp32 and says so in ``precision_used``), "int8" (the recipe
  of :mod:`.quantize`, calibrated on ``calib`` feature files; needs int8 dot-product
  instructions, :mod:`mse_rt.runtime.cpu`, with the same fallback rule). ``bias_correction``:
  NNCF's "fast" (default) or "full". Default (None): "fp32" for an ONNX file, the file's own
  precision for an IR. An int8 IR runs as it was quantized (no ``calib``; another precision is
  refused); on a CPU without int8 dot-product instructions it is refused unless
  ``allow_slow_int8=True``.
- Integrity: the ONNX file's and the IR's checksums are verified on load; a file without one is
  refused unless ``allow_unverified=True``.
- bf16 / int8: the network body (backbone, neck) runs in bf16 on a BF16 CPU, the decode after
  the heads in float32 (:func:`.rewrites.mark_body_reduced_precision`, applied when a shape is
  compiled, so saved IRs carry no marks).
- ``hint``: "latency" (one request uses all cores) or "throughput" (several streams; pair it with
  batches or parallel requests). ``threads``: INFERENCE_NUM_THREADS.
- Shapes: each (B, T) gets its own statically reshaped compiled model (faster than dynamic
  shapes on CPU), kept in a bounded LRU (``max_compiled``). ``cache_dir``: OpenVINO's
  compiled-blob cache, so a later process skips compiling a shape: by default a folder under
  the mse_rt export cache (:func:`mse_rt.runtime.cache.export_cache_dir`), ``False`` turns it off.
  Used for float32-hint models only: a cached blob comes back without the bf16 body marks
  (OpenVINO rebuilds it without per-node rt_info), which would silently change a bf16 / int8
  model's numerics, so those compile at every start.
- Layout: time-first padded batches (a (B, C, T) view of (B, T, C) memory) run on a model whose
  input is declared (B, T, C) through OpenVINO's PrePostProcessor, sparing a transposing copy;
  contiguous (B, C, T) input runs the plain model; outputs are the same.
- Batches: B videos run as B single-video requests of the (1, C, T) model (``split_batch=True``;
  at THUMOS size the (B, C, T) model was slower per video), in parallel on OpenVINO's streams
  under the throughput hint.
- Threads: one backend may be shared by threads. Each compiled shape keeps a pool of infer
  requests (a request serves one call at a time; a busy one is never reused), the shape cache
  is locked, and a throughput-hint batch holds its shape's request queue for the whole batch.
  Start the process with ``OMP_WAIT_POLICY=PASSIVE`` (before torch is imported): decode runs in
  torch, whose idle OpenMP threads otherwise spin beside OpenVINO's own.

Every decision above was measured: docs/decisions.md.
"""

from __future__ import annotations

import contextlib
import json
import threading
from pathlib import Path

import numpy as np
import torch

from ....errors import BackendError
from ....model.detector_graph import INPUT_NAMES, OUTPUT_NAMES
from ...options import default_threads
from ..base import Backend, ShapeLRU
from .ir import json_entry, read_ir
from .loader import import_openvino, read_mse_rt_onnx, resolve_precision
from .quantize import BIAS_CORRECTIONS, quantize_model
from .rewrites import layernorm_means_as_convs, mark_body_reduced_precision

PRECISIONS = ("fp32", "bf16", "int8")


HINTS = {"latency": "LATENCY", "throughput": "THROUGHPUT"}


def default_blob_cache() -> Path:
    """OpenVINO's compiled-blob cache folder under the mse_rt export cache."""
    from ...cache import export_cache_dir

    return export_cache_dir() / "openvino_blobs"


class CompiledShape:
    """One statically shaped compiled model and the infer requests that run it.

    :meth:`request` lends an idle request (a new one when all are busy) for one call: an OpenVINO
    infer request runs one inference at a time, so threads sharing the backend each get their own.
    ``queue`` (throughput hint): the AsyncInferQueue of a batch, held under ``queue_lock`` for the
    whole batch (its callback and result slots belong to that batch).
    """

    def __init__(self, compiled, throughput: bool) -> None:
        self.compiled = compiled
        self._idle = [compiled.create_infer_request()]
        self._lock = threading.Lock()
        self.queue = None
        self.queue_lock = threading.Lock()
        if throughput:
            ov = import_openvino()
            n = max(1, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
            self.queue = ov.AsyncInferQueue(compiled, n)

    @contextlib.contextmanager
    def request(self):
        with self._lock:
            req = self._idle.pop() if self._idle else self.compiled.create_infer_request()
        try:
            yield req
        finally:
            with self._lock:
                self._idle.append(req)


class OpenVinoBackend(Backend):
    """``OpenVinoBackend(path, precision=None, hint="latency", threads=None, calib=None, ...)``:
    ``path`` an mse_rt ONNX file or an mse_rt OpenVINO IR (``.xml``)."""

    name = "openvino"
    prefers_time_first = True

    def __init__(self, path: str | Path, precision: str | None = None, hint: str = "latency",
                 threads: int | None = None, calib=None, calib_videos: int = 32, allow_fallback: bool = False,
                 max_compiled: int = 8, cache_dir: str | Path | bool | None = None, split_batch: bool = True,
                 bias_correction: str = "fast", allow_slow_int8: bool = False, allow_unverified: bool = False) -> None:
        ov = import_openvino()
        path = Path(path)
        if precision is not None and precision not in PRECISIONS:
            raise BackendError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if hint not in HINTS:
            raise BackendError(f"hint must be one of {tuple(HINTS)}, got {hint!r}")
        if bias_correction not in BIAS_CORRECTIONS:
            raise BackendError(f"bias_correction must be one of {BIAS_CORRECTIONS}, got {bias_correction!r}")
        self.core = ov.Core()
        caps = set(self.core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
        self.calibration = None  # the int8 model's calibration summary (this process's, or the IR's)
        self.calibrated_here = False
        if path.suffix == ".xml":
            model, cfg, self.meta, self.verified = read_ir(self.core, path, allow_unverified)
            self.source = "ir"
            precision, float_precision = self._ir_precision(path, precision, calib, caps, allow_slow_int8,
                                                            allow_fallback)
            self.layernorm_mean_convs = int(self.meta.get("layernorm_mean_convs", "0") or 0)
            if self.meta["precision"] == "int8":
                self.calibration = json_entry(self.meta, "calibration", path)
        else:
            cfg, self.meta, self.verified = read_mse_rt_onnx(path, allow_unverified)
            self.source = "onnx"
            precision, float_precision, self.precision_used = resolve_precision(precision or "fp32", caps,
                                                                                allow_fallback)
            model = self.core.read_model(str(path))
            if [i.get_any_name() for i in model.inputs] != list(INPUT_NAMES):
                raise BackendError(f"{path}: inputs {[i.get_any_name() for i in model.inputs]} are not those of an "
                                   "mse_rt graph")
            self.layernorm_mean_convs = layernorm_means_as_convs(model)
        super().__init__(cfg, "cpu")
        self.config = {"PERFORMANCE_HINT": HINTS[hint], "INFERENCE_PRECISION_HINT": float_precision}
        threads = default_threads(threads)  # None: MSE_RT_THREADS, else OpenVINO's own
        if threads is not None:
            self.config["INFERENCE_NUM_THREADS"] = int(threads)
        # OpenVINO's blob cache rebuilds a cached model without its per-node rt_info, so the bf16
        # body marks would be lost on a cache hit (the residual stream back in float32; the cache key
        # does not see the marks either): no blob cache for a marked (bf16-hint) model
        self.cache_dir = None
        if cache_dir is not False and float_precision == "f32":
            self.cache_dir = Path(cache_dir) if cache_dir is not None else default_blob_cache()
            self.core.set_property({"CACHE_DIR": str(self.cache_dir)})
        if precision == "int8" and not (self.source == "ir" and self.meta["precision"] == "int8"):
            model, self.calibration = quantize_model(model, self.cfg, calib, calib_videos, bias_correction)
            self.calibrated_here = True
        self.precision = precision
        self.model = model
        self.path = path
        self.hint = hint
        self.split_batch = bool(split_batch)
        self._compiled = ShapeLRU(max_compiled, self._compile)
        self._compiled_lock = threading.Lock()

    def _ir_precision(self, path: Path, precision: str | None, calib, caps: set[str], allow_slow_int8: bool,
                      allow_fallback: bool) -> tuple[str, str]:
        """(precision, OpenVINO float precision) for a saved IR; sets ``precision_used``."""
        saved = self.meta["precision"]
        if saved != "int8":  # a float model: run it in the asked or saved float precision (or quantize it)
            precision, float_precision, self.precision_used = resolve_precision(precision or saved, caps,
                                                                                allow_fallback)
            return precision, float_precision
        if precision not in (None, "int8"):
            raise BackendError(f"{path} is an int8 model (quantized when it was written); precision={precision!r} "
                               "cannot be run from it: use the fp32 ONNX file or a float IR")
        if calib is not None:
            raise BackendError(f"{path} is already quantized (calibrated when it was written); drop calib")
        from ...cpu import int8_dot_support

        dot, why = int8_dot_support()
        if ("INT8" not in caps or dot is False) and not allow_slow_int8:
            reason = why if dot is False else f"no INT8 support in OpenVINO (capabilities: {sorted(caps)})"
            raise BackendError(f"{path} is an int8 model and {reason}; run a float model here, or pass "
                               "allow_slow_int8=True (CLI: --allow-slow-int8) to run it anyway")
        float_precision = "bf16" if "BF16" in caps else "f32"
        self.precision_used = "int8 (saved IR)"
        return "int8", float_precision

    def _shaped_model(self, B: int, C: int, T: int, layout: str):
        """A copy of the model reshaped to (B, C, T); ``layout="NTC"``: its feats input declared
        (B, T, C) (OpenVINO folds that transpose into its own reorder)."""
        m = self.model.clone()
        m.reshape({"feats": [B, C, T], "lengths": [B]})
        if self.config["INFERENCE_PRECISION_HINT"] == "bf16":
            mark_body_reduced_precision(m)
        if layout == "NTC":
            from openvino.preprocess import PrePostProcessor

            ov = import_openvino()
            ppp = PrePostProcessor(m)
            ppp.input("feats").tensor().set_layout(ov.Layout("NWC"))
            ppp.input("feats").model().set_layout(ov.Layout("NCW"))
            m = ppp.build()
        return m

    @staticmethod
    def _feed(feats: torch.Tensor) -> tuple[str, np.ndarray]:
        """(layout, array) for a checked (B, C, T) float32 tensor: time-first memory (the Detector's
        padded batches) goes as (B, T, C) without a transposing copy, anything else as (B, C, T)."""
        feats = feats.detach().cpu()
        if not feats.is_contiguous() and feats.transpose(1, 2).is_contiguous():
            return "NTC", feats.transpose(1, 2).numpy()
        return "NCT", feats.contiguous().numpy()

    def _compile(self, key: tuple) -> CompiledShape:
        m = self._shaped_model(*key)
        return CompiledShape(self.core.compile_model(m, "CPU", self.config), self.hint == "throughput")

    def compiled_shape(self, key: tuple) -> CompiledShape:
        """The compiled model of ``key`` = (B, C, T, layout), compiled on first use (thread-safe:
        one compile per key, the LRU's bookkeeping under a lock)."""
        with self._compiled_lock:
            return self._compiled.get(key)

    @staticmethod
    def _outputs(res) -> dict:
        out = {o.get_any_name(): v for o, v in res.items()}
        return {name: np.array(out[name], dtype=np.float32, copy=True) for name in OUTPUT_NAMES}

    def _infer_impl(self, feats: torch.Tensor, lengths: torch.Tensor) -> dict:
        B, C, T = feats.shape
        n = np.ascontiguousarray(lengths.cpu().numpy(), dtype=np.int64)
        # time-first memory runs on the NTC-input model (docs/decisions.md#time-first-input)
        layout, x = self._feed(feats)
        if B == 1 or not self.split_batch:
            with self.compiled_shape((B, C, T, layout)).request() as request:
                out = self._outputs(request.infer({"feats": x, "lengths": n}, share_inputs=True))
            return {k: torch.from_numpy(v) for k, v in out.items()}
        shape = self.compiled_shape((1, C, T, layout))
        parts: list = [None] * B
        if shape.queue is None:  # latency hint: one request after the other, each on all threads
            with shape.request() as request:
                for i in range(B):
                    parts[i] = self._outputs(request.infer({"feats": x[i:i + 1], "lengths": n[i:i + 1]},
                                                           share_inputs=True))
        else:  # throughput hint: the requests run in parallel on the plugin's streams
            def done(req, i):
                parts[i] = self._outputs(req.results)

            with shape.queue_lock:
                shape.queue.set_callback(done)
                for i in range(B):
                    # shared, not copied: x and n stay alive until wait_all()
                    shape.queue.start_async({"feats": x[i:i + 1], "lengths": n[i:i + 1]}, i, share_inputs=True)
                shape.queue.wait_all()
        missing = [i for i, p in enumerate(parts) if p is None]
        if missing:
            raise BackendError(f"openvino: no result for batch entries {missing}")
        return {k: torch.from_numpy(np.concatenate([p[k] for p in parts], axis=0)) for k in OUTPUT_NAMES}

    def profile(self, feats: torch.Tensor, lengths: torch.Tensor, repeat: int = 3) -> list[dict]:
        """OpenVINO's per-node timing of one forward pass (:func:`.profile.profile_backend`)."""
        from .profile import profile_backend

        return profile_backend(self, feats, lengths, repeat)

    def describe(self) -> str:
        return json.dumps({"precision": self.precision_used, "source": self.source, "hint": self.hint,
                           "split_batch": self.split_batch, **self.config})
