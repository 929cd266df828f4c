"""OpenVINO backend (CPU): runs the mse_rt ONNX graph in fp32, bf16 or int8 (NNCF PTQ).

    det = Detector.from_openvino("model.onnx", precision="bf16", hint="latency")
    det = Detector.from_openvino("model.onnx", precision="int8", calib=["feats/"])   # NNCF, user's files

- ``precision``: "fp32" (asked explicitly: on a BF16 CPU OpenVINO would otherwise pick bf16 on
  its own), "bf16" (needs a CPU with BF16; else a :class:`BackendError` unless
  ``allow_fallback=True``, which runs fp32 and says so in ``precision_used``), "int8" (the recipe
  of :mod:`.quantize`, calibrated on ``calib`` feature files; needs int8 dot-product
  instructions, :mod:`mse_rt.runtime.cpu`, with the same fallback rule). ``bias_correction``:
  NNCF's "fast" (default) or "full".
- bf16 / int8: the network body (backbone, neck) runs in bf16 on a BF16 CPU, the decode after
  the heads in float32 (:func:`.rewrites.mark_body_reduced_precision`).
- ``hint``: "latency" (one request uses all cores) or "throughput" (several streams; pair it with
  batches or parallel requests). ``threads``: INFERENCE_NUM_THREADS.
- Shapes: each (B, T) gets its own statically reshaped compiled model (faster than dynamic
  shapes on CPU), kept in a bounded LRU (``max_compiled``). ``cache_dir`` enables OpenVINO's
  compiled-blob cache.
- Layout: time-first padded batches (a (B, C, T) view of (B, T, C) memory) run on a model whose
  input is declared (B, T, C) through OpenVINO's PrePostProcessor, sparing a transposing copy;
  contiguous (B, C, T) input runs the plain model; outputs are the same.
- Batches: B videos run as B single-video requests of the (1, C, T) model (``split_batch=True``;
  at THUMOS size the (B, C, T) model was slower per video), in parallel on OpenVINO's streams
  under the throughput hint.
- Threads: start the process with ``OMP_WAIT_POLICY=PASSIVE`` (before torch is imported): decode
  runs in torch, whose idle OpenMP threads otherwise spin beside OpenVINO's own.

Every decision above was measured: docs/decisions.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ....errors import BackendError
from ....model.detector_graph import INPUT_NAMES, OUTPUT_NAMES
from ..base import Backend, ShapeLRU
from .loader import import_openvino, read_mse_rt_onnx, resolve_precision
from .quantize import BIAS_CORRECTIONS, quantize_model
from .rewrites import layernorm_means_as_convs, mark_body_reduced_precision

PRECISIONS = ("fp32", "bf16", "int8")


HINTS = {"latency": "LATENCY", "throughput": "THROUGHPUT"}



class OpenVinoBackend(Backend):
    """``OpenVinoBackend(path, precision="fp32", hint="latency", threads=None, calib=None, ...)``."""

    name = "openvino"
    prefers_time_first = True

    def __init__(self, path: str | Path, precision: str = "fp32", hint: str = "latency", threads: int | None = None,
                 calib=None, calib_videos: int = 32, allow_fallback: bool = False, max_compiled: int = 8,
                 cache_dir: str | Path | None = None, split_batch: bool = True, bias_correction: str = "fast") -> None:
        ov = import_openvino()
        path = Path(path)
        if precision not in PRECISIONS:
            raise BackendError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if hint not in HINTS:
            raise BackendError(f"hint must be one of {tuple(HINTS)}, got {hint!r}")
        if bias_correction not in BIAS_CORRECTIONS:
            raise BackendError(f"bias_correction must be one of {BIAS_CORRECTIONS}, got {bias_correction!r}")
        cfg, _ = read_mse_rt_onnx(path)
        super().__init__(cfg, "cpu")
        self.core = ov.Core()
        caps = set(self.core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
        precision, float_precision, self.precision_used = resolve_precision(precision, caps, allow_fallback)
        self.config = {"PERFORMANCE_HINT": HINTS[hint], "INFERENCE_PRECISION_HINT": float_precision}
        if threads is not None:
            self.config["INFERENCE_NUM_THREADS"] = int(threads)
        if cache_dir is not None:
            self.core.set_property({"CACHE_DIR": str(cache_dir)})
        model = self.core.read_model(str(path))
        if [i.get_any_name() for i in model.inputs] != list(INPUT_NAMES):
            raise BackendError(f"{path}: inputs {[i.get_any_name() for i in model.inputs]} are not those of an mse_rt graph")
        self.layernorm_mean_convs = layernorm_means_as_convs(model)
        if precision == "int8":
            model, self.calibration = quantize_model(model, self.cfg, calib, calib_videos, bias_correction)
        self.model = model
        self.path = path
        self.hint = hint
        self.split_batch = bool(split_batch)
        self._compiled = ShapeLRU(max_compiled, self._compile)

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

    def _compile(self, key: tuple):
        m = self._shaped_model(*key)
        compiled = self.core.compile_model(m, "CPU", self.config)
        queue = None
        if self.hint == "throughput":
            ov = import_openvino()
            queue = ov.AsyncInferQueue(compiled, max(1, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))))
        return compiled, compiled.create_infer_request(), queue

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
            _, request, _ = self._compiled.get((B, C, T, layout))
            out = self._outputs(request.infer({"feats": x, "lengths": n}, share_inputs=True))
            return {k: torch.from_numpy(v) for k, v in out.items()}
        _, request, queue = self._compiled.get((1, C, T, layout))
        parts: list = [None] * B
        if queue is None:  # latency hint: one request after the other, each on all threads
            for i in range(B):
                parts[i] = self._outputs(request.infer({"feats": x[i:i + 1], "lengths": n[i:i + 1]}, share_inputs=True))
        else:  # throughput hint: the requests run in parallel on the plugin's streams
            def done(req, i):
                parts[i] = self._outputs(req.results)

            queue.set_callback(done)
            for i in range(B):
                # shared, not copied: x and n stay alive until wait_all()
                queue.start_async({"feats": x[i:i + 1], "lengths": n[i:i + 1]}, i, share_inputs=True)
            queue.wait_all()
        missing = [i for i, p in enumerate(parts) if p is None]
        if missing:
            raise BackendError(f"openvino: no result for batch entries {missing}")
        return {k: torch.from_numpy(np.concatenate([p[k] for p in parts], axis=0)) for k in OUTPUT_NAMES}

    def profile(self, feats: torch.Tensor, lengths: torch.Tensor, repeat: int = 3) -> list[dict]:
        """OpenVINO's per-node timing of one forward pass (:func:`.profile.profile_backend`)."""
        from .profile import profile_backend

        return profile_backend(self, feats, lengths, repeat)

    def describe(self) -> str:
        return json.dumps({"precision": self.precision_used, "hint": self.hint, "split_batch": self.split_batch,
                           **self.config})
